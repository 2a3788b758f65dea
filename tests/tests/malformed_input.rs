//! Network and file input never panics: random and mutated RTP packets, telephone-event
//! payloads, Opus packets and WAV files (a deterministic fuzz sweep; the proper fuzz
//! targets come with the SIP/SDP parsers).

use waihu_engine::analyzer::Analyzer;
use waihu_engine::codec::opus::OpusDecoder;
use waihu_engine::codec::Codec;
use waihu_engine::dtmf::TelephoneEvent;
use waihu_engine::rtp::{RtpBuild, RtpHeader, RtpPacket};
use waihu_engine::{wav, AmdParams};

/// xorshift64*: reproducible bytes without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn valid_packet(rng: &mut Rng) -> Vec<u8> {
    let csrcs = [1u32, 2, 3];
    let ext = [0u8; 8];
    let mut v = Vec::new();
    RtpBuild {
        payload_type: 0,
        sequence: rng.next() as u16,
        timestamp: rng.next() as u32,
        ssrc: 1,
        csrcs: &csrcs[..rng.below(4)],
        extension: (rng.below(2) == 1).then_some((0xbede, &ext[..])),
        pad_to: if rng.below(2) == 1 { 4 } else { 0 },
        ..Default::default()
    }
    .write(&rng.bytes(160), &mut v)
    .expect("valid build");
    v
}

#[test]
fn malformed_rtp_storm_never_panics_and_valid_packets_still_flow() {
    let mut rng = Rng(0x5eed_1234);
    let mut an = Analyzer::new(AmdParams::default()).with_dtmf();
    let (mut ok, mut bad, mut samples) = (0, 0, 0u64);
    for i in 0..20_000 {
        let pkt = match i % 4 {
            0 => {
                let n = rng.below(300);
                rng.bytes(n)
            }
            1 => {
                let mut p = valid_packet(&mut rng);
                for _ in 0..1 + rng.below(4) {
                    let k = rng.below(p.len());
                    p[k] = rng.next() as u8;
                }
                p
            }
            2 => {
                let p = valid_packet(&mut rng);
                p[..rng.below(p.len())].to_vec()
            }
            _ => valid_packet(&mut rng),
        };
        let _ = RtpHeader::parse(&pkt);
        let _ = RtpPacket::parse(bytes::Bytes::from(pkt.clone()));
        match an.push_rtp(&pkt, Codec::Pcmu, 0) {
            Ok(()) => {
                ok += 1;
                samples += RtpHeader::parse(&pkt).map(|(_, r)| r.len() as u64).expect("accepted packets parse");
            }
            Err(_) => bad += 1,
        }
        let _ = TelephoneEvent::parse(&pkt[..pkt.len().min(6)]);
    }
    assert!(ok >= 5_000 && bad >= 5_000, "ok {ok} bad {bad}");
    // The stream kept its media clock: exactly the accepted audio advanced it.
    assert_eq!(an.media_time().samples(), samples / 160 * 160);
}

#[test]
fn random_opus_packets_are_errors_or_audio_never_panics() {
    let mut rng = Rng(42);
    let mut dec = OpusDecoder::new(8000).expect("decoder");
    let mut out = [0i16; 960];
    for _ in 0..5_000 {
        let n = 1 + rng.below(200);
        let p = rng.bytes(n);
        if let Ok(n) = dec.decode(&p, &mut out) {
            assert!(n <= out.len());
        }
    }
}

#[test]
fn mutated_and_truncated_wavs_are_errors_or_audio_never_panics() {
    let mut rng = Rng(7);
    let samples: Vec<i16> = (0..4000).map(|i| ((i * 31) % 4000) as i16).collect();
    let images = [wav::write_pcm16(8000, &samples), wav::write_g711(8000, &samples, true)];
    for _ in 0..5_000 {
        let mut img = images[rng.below(2)].clone();
        for _ in 0..1 + rng.below(6) {
            let k = rng.below(64.min(img.len()));
            img[k] = rng.next() as u8;
        }
        img.truncate(rng.below(img.len() + 1));
        if let Ok(w) = wav::parse(&img) {
            assert!(w.samples.len() <= img.len());
        }
    }
}
