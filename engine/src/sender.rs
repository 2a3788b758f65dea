//! The send side of one RTP stream: our SSRC, sequence and timestamp, and the encoder for
//! the negotiated codec. Packs either PCM (prompts, transcoded audio) or a payload relayed
//! unchanged from another leg with the same codec. Pure; the caller owns the buffer.

use crate::codec::g711;
use crate::codec::opus::{OpusEncoder, OpusError};
use crate::codec::Codec;
use crate::rtp::RtpBuild;

/// Encoder state for the outgoing codec.
enum Encoder {
    Pcmu,
    Pcma,
    Opus(Box<OpusEncoder>),
}

pub struct RtpSender {
    ssrc: u32,
    seq: u16,
    ts: u32,
    payload_type: u8,
    codec: Codec,
    encoder: Encoder,
    /// RTP clock ticks per 8 kHz sample (6 for Opus' 48 kHz clock).
    ts_per_sample: u32,
    marker_next: bool,
    scratch: [u8; 1500],
    pub packets: u64,
    pub octets: u64,
}

impl std::fmt::Debug for RtpSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RtpSender").field("ssrc", &self.ssrc).field("codec", &self.codec).finish()
    }
}

impl RtpSender {
    /// `ssrc`, first `seq` and `ts` should be random per stream (RFC 3550 §5.1).
    pub fn new(codec: Codec, payload_type: u8, ssrc: u32, seq: u16, ts: u32) -> Result<Self, OpusError> {
        let (encoder, ts_per_sample) = match codec {
            Codec::Pcmu => (Encoder::Pcmu, 1),
            Codec::Pcma => (Encoder::Pcma, 1),
            Codec::Opus => (Encoder::Opus(Box::new(OpusEncoder::new(8000, 24_000, 5)?)), 6),
        };
        Ok(RtpSender {
            ssrc,
            seq,
            ts,
            payload_type,
            codec,
            encoder,
            ts_per_sample,
            marker_next: true,
            scratch: [0; 1500],
            packets: 0,
            octets: 0,
        })
    }

    pub fn codec(&self) -> Codec {
        self.codec
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Encodes 8 kHz PCM (one ptime's worth) into a packet appended to `out`.
    pub fn pack_pcm(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<(), OpusError> {
        let n = match &mut self.encoder {
            Encoder::Pcmu => g711::ulaw_encode_into(pcm, &mut self.scratch),
            Encoder::Pcma => g711::alaw_encode_into(pcm, &mut self.scratch),
            Encoder::Opus(enc) => enc.encode(pcm, &mut self.scratch)?,
        };
        let scratch = self.scratch;
        self.pack(&scratch[..n], pcm.len() as u32, out);
        Ok(())
    }

    /// Packs an already-encoded payload of `samples` 8 kHz samples (same-codec relay:
    /// the bytes go out exactly as they came in).
    pub fn pack(&mut self, payload: &[u8], samples: u32, out: &mut Vec<u8>) {
        self.pack_as(self.payload_type, payload, samples, out);
    }

    /// A packet of another payload type on this stream (RFC 3389 comfort noise), in
    /// sequence with the audio.
    pub fn pack_as(&mut self, payload_type: u8, payload: &[u8], samples: u32, out: &mut Vec<u8>) {
        let b = RtpBuild {
            marker: std::mem::take(&mut self.marker_next),
            payload_type,
            sequence: self.seq,
            timestamp: self.ts,
            ssrc: self.ssrc,
            ..Default::default()
        };
        // Invariant: no CSRCs and no extension, so the build cannot fail.
        let _ = b.write(payload, out);
        self.seq = self.seq.wrapping_add(1);
        self.ts = self.ts.wrapping_add(samples * self.ts_per_sample);
        self.packets += 1;
        self.octets += payload.len() as u64;
    }

    /// RTP timestamp of the next packet (for a sender report).
    pub fn timestamp(&self) -> u32 {
        self.ts
    }

    /// `samples` of time pass with nothing sent: the stream's clock keeps running.
    pub fn skip(&mut self, samples: u32) {
        self.ts = self.ts.wrapping_add(samples * self.ts_per_sample);
    }

    /// The next packet starts a talkspurt (after silence or a source change).
    pub fn mark(&mut self) {
        self.marker_next = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::RtpHeader;

    #[test]
    fn sequence_timestamp_and_marker_advance_per_packet() {
        let mut s = RtpSender::new(Codec::Pcma, 8, 0xfeed, 65_535, u32::MAX - 100).expect("sender");
        let mut a = Vec::new();
        s.pack_pcm(&[0; 160], &mut a).expect("pack");
        let mut b = Vec::new();
        s.pack(&[0xd5; 160], 160, &mut b);
        let (ha, ra) = RtpHeader::parse(&a).expect("a");
        let (hb, _) = RtpHeader::parse(&b).expect("b");
        assert_eq!((ha.sequence, hb.sequence), (65_535, 0));
        assert_eq!(hb.timestamp, (u32::MAX - 100).wrapping_add(160));
        assert!(ha.marker && !hb.marker);
        assert_eq!((ha.ssrc, ha.payload_type, ra.len()), (0xfeed, 8, 160));
        assert_eq!(&a[12..], &[0xd5; 160][..], "A-law silence");
    }

    #[test]
    fn opus_timestamps_run_at_48khz() {
        let mut s = RtpSender::new(Codec::Opus, 111, 1, 0, 0).expect("sender");
        let mut v = Vec::new();
        s.pack_pcm(&[0; 160], &mut v).expect("pack");
        v.clear();
        s.pack_pcm(&[0; 160], &mut v).expect("pack");
        let (h, _) = RtpHeader::parse(&v).expect("parse");
        assert_eq!(h.timestamp, 960);
    }
}
