//! The per-stream analysis pipeline: PCM or G.711 RTP in, 10 ms frames through VAD, the
//! tone analyser, optional DTMF, and AMD. Allocation-free after construction: a shard runs
//! one `Analyzer` per call.

use crate::amd::{Amd, AmdEvent, AmdParams, FrameInput};
use crate::codec::{g711, Codec};
use crate::dtmf::{DtmfDetector, DtmfDigit};
use crate::frame::Framer;
use crate::rtp::{RtpError, RtpHeader};
use crate::tones::ToneAnalyzer;
use crate::vad::{Aggressiveness, Vad};
use crate::{MediaTime, FRAME_SAMPLES};

/// Largest G.711 payload decoded in one go (60 ms ptime at 8 kHz).
const MAX_PAYLOAD: usize = 480;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PacketError {
    #[error(transparent)]
    Rtp(#[from] RtpError),
    #[error("payload type {0} is not the negotiated G.711 type")]
    UnexpectedPayloadType(u8),
    #[error("{0} is not G.711: decode it before analysis (MediaSession does)")]
    NotG711(Codec),
}

/// Per-stream analysis state.
#[derive(Debug)]
pub struct Analyzer {
    vad: Vad,
    tones: ToneAnalyzer,
    /// 20 ms blocks: the VAD runs once per block, tones and AMD per 10 ms half.
    framer: Framer<{ 2 * FRAME_SAMPLES }>,
    amd: Amd,
    dtmf: Option<DtmfDetector>,
    /// Media time of the next frame to be completed.
    next_frame_at: MediaTime,
    digit: Option<DtmfDigit>,
}

impl Analyzer {
    pub fn new(params: AmdParams) -> Self {
        Analyzer {
            vad: Vad::new(Aggressiveness::Aggressive),
            tones: ToneAnalyzer::default(),
            framer: Framer::default(),
            amd: Amd::new(params),
            dtmf: None,
            next_frame_at: MediaTime::ZERO,
            digit: None,
        }
    }

    /// Starts over for a new call with the same parameters, reusing this state without
    /// allocating (a session that restarts AMD keeps its analyser; there is no pool).
    pub fn reset(&mut self) {
        self.vad.reset();
        self.tones = ToneAnalyzer::default();
        self.framer = Framer::default();
        self.amd = Amd::new(*self.amd.params());
        if self.dtmf.is_some() {
            self.dtmf = Some(DtmfDetector::default());
        }
        self.next_frame_at = MediaTime::ZERO;
        self.digit = None;
    }

    /// Also run the in-band DTMF detector (IVR navigation; off for plain AMD).
    pub fn with_dtmf(mut self) -> Self {
        self.dtmf = Some(DtmfDetector::default());
        self
    }

    pub fn amd(&self) -> &Amd {
        &self.amd
    }

    /// Next AMD event.
    pub fn poll_event(&mut self) -> Option<AmdEvent> {
        self.amd.poll_event()
    }

    /// The last in-band DTMF digit detected, taken.
    pub fn take_digit(&mut self) -> Option<DtmfDigit> {
        self.digit.take()
    }

    /// Media time up to which audio has been analysed (whole frames).
    pub fn media_time(&self) -> MediaTime {
        self.next_frame_at
    }

    /// The audio ended (hang-up or end of file) at `at`.
    pub fn finish(&mut self, at: MediaTime) {
        self.amd.finish(at);
    }

    /// Feeds linear PCM at 8 kHz.
    pub fn push_pcm(&mut self, pcm: &[i16]) {
        let Analyzer { vad, tones, framer, amd, dtmf, next_frame_at, digit } = self;
        framer.push(pcm, |block| {
            // Once AMD has settled and no DTMF is wanted there is nothing left to analyse.
            if amd.is_done() && dtmf.is_none() {
                *next_frame_at = next_frame_at.add_samples(2 * FRAME_SAMPLES as u64);
                return;
            }
            let voiced = vad.is_speech_20ms(block);
            let pair = tones.analyze_pair(block);
            for (half, t) in block.chunks_exact(FRAME_SAMPLES).zip(pair) {
                // Invariant: chunks_exact yields FRAME_SAMPLES-long slices.
                let frame: &[i16; FRAME_SAMPLES] = half.try_into().expect("10 ms half");
                let at = *next_frame_at;
                amd.push(&FrameInput { at, voiced, mean_abs: mean_abs(frame), tones: t });
                if let Some(d) = dtmf.as_mut().and_then(|d| d.push(at, frame)) {
                    *digit = Some(d);
                }
                *next_frame_at = at.add_samples(FRAME_SAMPLES as u64);
            }
        });
    }

    /// Feeds one G.711 RTP packet (the per-packet hot path). Loss and reordering are
    /// the jitter buffer's job, upstream of this.
    pub fn push_rtp(&mut self, packet: &[u8], codec: Codec, payload_type: u8) -> Result<(), PacketError> {
        if !codec.is_g711() {
            return Err(PacketError::NotG711(codec));
        }
        let (h, range) = RtpHeader::parse(packet)?;
        if h.payload_type != payload_type {
            return Err(PacketError::UnexpectedPayloadType(h.payload_type));
        }
        let mut pcm = [0i16; MAX_PAYLOAD];
        for chunk in packet[range].chunks(MAX_PAYLOAD) {
            let n = match codec {
                Codec::Pcma => g711::alaw_decode_into(chunk, &mut pcm),
                _ => g711::ulaw_decode_into(chunk, &mut pcm),
            };
            self.push_pcm(&pcm[..n]);
        }
        Ok(())
    }
}

fn mean_abs(frame: &[i16; FRAME_SAMPLES]) -> u16 {
    let sum: u32 = frame.iter().map(|&s| (s as i32).unsigned_abs()).sum();
    (sum / FRAME_SAMPLES as u32) as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amd::Verdict;

    #[test]
    fn media_clock_keeps_running_after_amd_settles() {
        let mut a = Analyzer::new(AmdParams::default());
        let silence = [0i16; 160];
        for _ in 0..250 {
            a.push_pcm(&silence);
        }
        assert_eq!(a.media_time().as_ms(), 5_000);
        let d = a.amd().decision().expect("decided");
        assert_eq!(d.verdict, Verdict::Silence);
        assert!(a.amd().is_done());
    }

    #[test]
    fn reset_starts_a_fresh_call() {
        let mut a = Analyzer::new(AmdParams::default());
        for _ in 0..250 {
            a.push_pcm(&[0i16; 160]);
        }
        a.reset();
        assert_eq!(a.media_time(), MediaTime::ZERO);
        assert_eq!(a.amd().decision(), None);
        assert!(a.poll_event().is_none());
    }

    #[test]
    fn wrong_payload_type_is_rejected() {
        let mut a = Analyzer::new(AmdParams::default());
        let mut pkt = Vec::new();
        crate::rtp::RtpBuild { payload_type: 8, ..Default::default() }.write(&[0xd5; 160], &mut pkt).expect("build");
        assert_eq!(a.push_rtp(&pkt, Codec::Pcmu, 0), Err(PacketError::UnexpectedPayloadType(8)));
        assert_eq!(
            a.push_rtp(&pkt[..5], Codec::Pcmu, 0),
            Err(PacketError::Rtp(RtpError::TooShort { len: 5, need: 12 }))
        );
        assert_eq!(a.push_rtp(&pkt, Codec::Pcma, 8), Ok(()));
        assert_eq!(a.media_time().as_ms(), 20);
    }
}
