//! Shared inputs for the criterion benches in `benches/benches/`: real call audio from
//! the project's samples, as 8 kHz PCM and as G.711 RTP packets.

use std::path::Path;
use waihu_engine::codec::g711;
use waihu_engine::rtp::RtpBuild;
use waihu_engine::{resample, wav};

/// 8 kHz PCM of a sample call (`samples/<name>`).
pub fn sample_pcm(name: &str) -> Vec<i16> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples").join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let w = wav::parse(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    resample::convert(&w.samples, w.rate, 8000).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The audio as 20 ms PCMU RTP packets (172 bytes each).
pub fn pcmu_packets(pcm: &[i16]) -> Vec<Vec<u8>> {
    pcm.chunks_exact(160)
        .enumerate()
        .map(|(i, c)| {
            let payload: Vec<u8> = c.iter().map(|&s| g711::ulaw_encode(s)).collect();
            let mut p = Vec::with_capacity(172);
            let b = RtpBuild {
                payload_type: 0,
                sequence: i as u16,
                timestamp: (i * 160) as u32,
                ssrc: 0x5eed,
                ..Default::default()
            };
            // Invariant: a plain header with a 160-byte payload always builds.
            b.write(&payload, &mut p).expect("valid packet");
            p
        })
        .collect()
}
