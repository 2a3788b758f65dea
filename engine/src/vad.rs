//! Voice activity detection over 10 ms frames, via webrtc-vad (libfvad). One instance
//! per stream; it is `!Send`, which suits a thread-per-core shard.

use crate::FRAME_SAMPLES;
use webrtc_vad::{SampleRate, Vad as Fvad, VadMode};

/// How eagerly the VAD calls a frame speech (webrtc's 0..=3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggressiveness {
    Quality,
    LowBitrate,
    Aggressive,
    VeryAggressive,
}

/// Per-stream VAD at 8 kHz.
pub struct Vad {
    inner: Fvad,
    mode: Aggressiveness,
}

impl std::fmt::Debug for Vad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Vad")
    }
}

impl Vad {
    pub fn new(mode: Aggressiveness) -> Self {
        Vad { inner: Fvad::new_with_rate_and_mode(SampleRate::Rate8kHz, fvad_mode(mode)), mode }
    }

    /// Forgets the noise statistics (a new call on a recycled instance). libfvad's reset
    /// also restores its default mode and rate, so both are set again.
    pub fn reset(&mut self) {
        self.inner.reset();
        self.inner.set_sample_rate(SampleRate::Rate8kHz);
        self.inner.set_mode(fvad_mode(self.mode));
    }

    /// True when the 20 ms block holds speech. One call per 20 ms costs about half of
    /// two 10 ms calls.
    pub fn is_speech_20ms(&mut self, block: &[i16; 2 * FRAME_SAMPLES]) -> bool {
        // Invariant: 160 samples at 8 kHz is a valid 20 ms frame, the only error case.
        self.inner.is_voice_segment(block).unwrap_or(false)
    }

    /// True when the 10 ms frame holds speech.
    pub fn is_speech(&mut self, frame: &[i16; FRAME_SAMPLES]) -> bool {
        // Invariant: 80 samples at 8 kHz is a valid 10 ms frame, the only error case.
        self.inner.is_voice_segment(frame).unwrap_or(false)
    }
}

fn fvad_mode(mode: Aggressiveness) -> VadMode {
    match mode {
        Aggressiveness::Quality => VadMode::Quality,
        Aggressiveness::LowBitrate => VadMode::LowBitrate,
        Aggressiveness::Aggressive => VadMode::Aggressive,
        Aggressiveness::VeryAggressive => VadMode::VeryAggressive,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_is_not_speech_and_voiced_buzz_is() {
        let mut vad = Vad::new(Aggressiveness::Aggressive);
        let zero = [0i16; FRAME_SAMPLES];
        assert!(!vad.is_speech(&zero));
        // A glottal-pulse-like harmonic buzz at 120 Hz with formant-ish harmonics.
        let mut hits = 0;
        for k in 0..50 {
            let mut f = [0i16; FRAME_SAMPLES];
            for (i, s) in f.iter_mut().enumerate() {
                let t = (k * FRAME_SAMPLES + i) as f64 / 8000.0;
                let v: f64 =
                    (1..25).map(|h| (2.0 * std::f64::consts::PI * 120.0 * h as f64 * t).sin() / h as f64).sum();
                *s = (v * 3000.0) as i16;
            }
            hits += vad.is_speech(&f) as u32;
        }
        assert!(hits > 30, "voiced frames {hits}/50");
    }
}
