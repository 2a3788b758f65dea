//! Tone detection on 10 ms frames: a Goertzel bank for the fixed tones of fax (CNG 1100 Hz,
//! CED 2100 Hz) and SIT (913.8/985.2, 1370.6/1428.5, 1776.7 Hz), and a single-tone
//! estimator that finds a steady tone at *any* frequency (answering-machine beeps come
//! anywhere in 400-2100 Hz). Everything runs in one pass over the frame.
//!
//! The estimator is Pisarenko's: for a sinusoid in white noise the lag-1 and lag-2
//! autocorrelations are noise-free, which gives the frequency and the tone's share of the
//! frame energy from three sums. [`ToneTracker`] turns per-frame estimates into segments.

use crate::{MediaTime, ANALYSIS_RATE, FRAME_SAMPLES};

/// A bank of `N` Goertzel filters evaluated in one pass over a frame.
#[derive(Debug, Clone)]
pub struct GoertzelBank<const N: usize> {
    coeff: [f32; N],
    freqs: [f32; N],
}

impl<const N: usize> GoertzelBank<N> {
    pub fn new(freqs: [f32; N]) -> Self {
        let coeff =
            freqs.map(|f| 2.0 * (2.0 * std::f32::consts::PI * f / ANALYSIS_RATE as f32).cos());
        GoertzelBank { coeff, freqs }
    }

    pub fn freqs(&self) -> &[f32; N] {
        &self.freqs
    }

    /// Power at each frequency, normalised by the frame energy: a pure on-bin tone
    /// gives about 1.0, broadband noise about 2/frame-length. 0 for a silent frame.
    pub fn relative_powers(&self, frame: &[f32], energy: f32) -> [f32; N] {
        let mut s1 = [0f32; N];
        let mut s2 = [0f32; N];
        for &x in frame {
            for k in 0..N {
                let s0 = x + self.coeff[k] * s1[k] - s2[k];
                s2[k] = s1[k];
                s1[k] = s0;
            }
        }
        let mut out = [0f32; N];
        if energy <= 0.0 {
            return out;
        }
        let norm = 2.0 / (frame.len() as f32 * energy);
        for k in 0..N {
            let p = s1[k] * s1[k] + s2[k] * s2[k] - self.coeff[k] * s1[k] * s2[k];
            out[k] = p * norm;
        }
        out
    }
}

/// Fixed tones the bank looks for.
pub const BANK_FREQS: [f32; 7] = [1100.0, 2100.0, 913.8, 985.2, 1370.6, 1428.5, 1776.7];
pub const BIN_CNG: usize = 0;
pub const BIN_CED: usize = 1;
/// SIT segment bins: (low, high) alternatives per segment; the third has one frequency.
pub const SIT_BINS: [(usize, usize); 3] = [(2, 3), (4, 5), (6, 6)];

/// What one 10 ms frame holds, tone-wise.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FrameTones {
    /// Frame level in dBFS (full-scale sine = 0 dBFS). -120 for digital silence.
    pub level_db: f32,
    /// Estimated frequency of the dominant single tone, Hz (0 when none).
    pub tone_hz: f32,
    /// Share of the frame's energy in that tone, 0..1.
    pub tone_share: f32,
    /// Goertzel relative power per [`BANK_FREQS`] bin.
    pub bank: [f32; 7],
    /// Lag-1 autocorrelation over energy, -1..1: high for voiced speech (energy below
    /// 1 kHz), near 0 for the band-limited noise of rustle and clicks.
    pub low_band: f32,
}

/// Per-stream tone analyser: keeps the two samples of history the estimator needs.
#[derive(Debug, Clone)]
pub struct ToneAnalyzer {
    bank: GoertzelBank<7>,
    hist: [f32; 4],
}

impl Default for ToneAnalyzer {
    fn default() -> Self {
        ToneAnalyzer {
            bank: GoertzelBank::new(BANK_FREQS),
            hist: [0.0; 4],
        }
    }
}

impl ToneAnalyzer {
    pub fn analyze(&mut self, frame: &[i16; FRAME_SAMPLES]) -> FrameTones {
        let mut x = [0f32; FRAME_SAMPLES];
        for (o, &s) in x.iter_mut().zip(frame) {
            *o = s as f32 * (1.0 / 32768.0);
        }
        // Autocorrelations at lags 0..=4 over this frame, with four samples of history.
        let mut r = [0f32; 5];
        let mut h = self.hist; // h[0] = x[n-1], h[1] = x[n-2], ...
        for &v in &x {
            r[0] += v * v;
            r[1] += v * h[0];
            r[2] += v * h[1];
            r[3] += v * h[2];
            r[4] += v * h[3];
            h = [v, h[0], h[1], h[2]];
        }
        self.hist = h;
        let mean_sq = r[0] / FRAME_SAMPLES as f32;
        let level_db = if mean_sq > 1e-12 {
            10.0 * (2.0 * mean_sq).log10()
        } else {
            -120.0
        };
        let (tone_hz, tone_share) = single_tone(&r);
        let bank = self.bank.relative_powers(&x, r[0]);
        let low_band = if r[0] > 1e-9 { r[1] / r[0] } else { 0.0 };
        FrameTones {
            level_db,
            tone_hz,
            tone_share,
            bank,
            low_band,
        }
    }
}

/// Frequency and energy share of a single sinusoid from autocorrelations at lags 0..=4.
/// Lags 1 and 2 give the frequency and power (Pisarenko); lags 3 and 4 check that the
/// signal really keeps oscillating like a sinusoid (a damped formant resonance does not),
/// and the share is reduced by the misfit.
fn single_tone(r: &[f32; 5]) -> (f32, f32) {
    let (r0, r1, r2) = (r[0], r[1], r[2]);
    if r0 <= 1e-9 || r1.abs() < 1e-12 {
        return (0.0, 0.0);
    }
    let cos_w = ((r2 + (r2 * r2 + 8.0 * r1 * r1).sqrt()) / (4.0 * r1)).clamp(-1.0, 1.0);
    if cos_w.abs() < 1e-3 {
        return (ANALYSIS_RATE as f32 / 4.0, 0.0);
    }
    let power = r1 / cos_w;
    let w = cos_w.acos();
    let misfit =
        ((r[3] - power * (3.0 * w).cos()).abs() + (r[4] - power * (4.0 * w).cos()).abs()) / r0;
    let share = (power / r0 - misfit).clamp(0.0, 1.0);
    (
        w * ANALYSIS_RATE as f32 / (2.0 * std::f32::consts::PI),
        share,
    )
}

/// Thresholds for calling a frame part of a steady tone.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ToneParams {
    /// Least share of the frame energy in one tone.
    pub min_share: f32,
    /// Quietest tone level, dBFS.
    pub min_level_db: f32,
    /// Largest distance of a frame's frequency from its segment's mean, Hz; at least
    /// 4% of the frequency is allowed, since the 10 ms estimate wobbles more for low tones.
    pub max_drift_hz: f32,
    /// Frequency range a segment may have, Hz.
    pub min_hz: f32,
    pub max_hz: f32,
}

impl Default for ToneParams {
    fn default() -> Self {
        ToneParams {
            min_share: 0.96,
            min_level_db: -45.0,
            max_drift_hz: 15.0,
            min_hz: 300.0,
            max_hz: 2300.0,
        }
    }
}

/// A steady tone segment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ToneSegment {
    pub start: MediaTime,
    /// End of the last tonal frame.
    pub end: MediaTime,
    /// Mean frequency, Hz.
    pub hz: f32,
}

impl ToneSegment {
    pub fn duration_ms(&self) -> u64 {
        self.end.ms_since(self.start)
    }
}

/// Groups consecutive tonal frames of stable frequency into segments.
#[derive(Debug, Clone, Default)]
pub struct ToneTracker {
    params: ToneParams,
    run: Option<Run>,
}

#[derive(Debug, Clone, Copy)]
struct Run {
    start: MediaTime,
    end: MediaTime,
    sum_hz: f32,
    frames: u32,
    /// Consecutive non-tonal frames tolerated inside a run (one glitch).
    misses: u8,
}

impl Run {
    fn mean_hz(&self) -> f32 {
        self.sum_hz / self.frames as f32
    }

    fn segment(&self) -> ToneSegment {
        ToneSegment {
            start: self.start,
            end: self.end,
            hz: self.sum_hz / self.frames as f32,
        }
    }
}

impl ToneTracker {
    pub fn new(params: ToneParams) -> Self {
        ToneTracker { params, run: None }
    }

    /// Feeds one frame that started at `at`. Returns a segment when one has just ended.
    pub fn push(&mut self, at: MediaTime, t: &FrameTones) -> Option<ToneSegment> {
        let p = &self.params;
        let end = at.add_samples(FRAME_SAMPLES as u64);
        let tonal = t.tone_share >= p.min_share
            && t.level_db >= p.min_level_db
            && (p.min_hz..=p.max_hz).contains(&t.tone_hz);
        match (&mut self.run, tonal) {
            (Some(r), true)
                if (t.tone_hz - r.mean_hz()).abs() <= p.max_drift_hz.max(0.04 * r.mean_hz()) =>
            {
                r.end = end;
                r.sum_hz += t.tone_hz;
                r.frames += 1;
                r.misses = 0;
                None
            }
            (Some(r), false) if r.misses == 0 && r.frames >= 3 => {
                r.misses = 1;
                None
            }
            (run, tonal) => {
                let done = run.take().filter(|r| r.frames >= 2).map(|r| r.segment());
                if tonal {
                    *run = Some(Run {
                        start: at,
                        end,
                        sum_hz: t.tone_hz,
                        frames: 1,
                        misses: 0,
                    });
                }
                done
            }
        }
    }

    /// The segment in progress, if any.
    pub fn current(&self) -> Option<ToneSegment> {
        self.run.filter(|r| r.frames >= 2).map(|r| r.segment())
    }
}

/// Special information tone segment classes (ITU-T E.180 / Telcordia SR-2275).
pub fn sit_segment_index(hz: f32) -> Option<usize> {
    match hz {
        f if (880.0..=1020.0).contains(&f) => Some(0),
        f if (1340.0..=1460.0).contains(&f) => Some(1),
        f if (1740.0..=1810.0).contains(&f) => Some(2),
        _ => None,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sine(hz: f32, amp: f32, start: usize, n: usize) -> Vec<i16> {
        (start..start + n)
            .map(|i| {
                (amp * 32767.0 * (2.0 * std::f32::consts::PI * hz * i as f32 / 8000.0).sin()) as i16
            })
            .collect()
    }

    fn frames(x: &[i16]) -> impl Iterator<Item = [i16; FRAME_SAMPLES]> + '_ {
        x.chunks_exact(FRAME_SAMPLES).map(|c| {
            let mut f = [0i16; FRAME_SAMPLES];
            f.copy_from_slice(c);
            f
        })
    }

    #[test]
    fn estimator_finds_any_tone_frequency_and_level() {
        for hz in [440.0, 850.0, 1000.0, 1400.0, 2100.0] {
            let x = sine(hz, 0.1, 0, 800);
            let mut a = ToneAnalyzer::default();
            let t = frames(&x).map(|f| a.analyze(&f)).last().expect("frames");
            assert!((t.tone_hz - hz).abs() < 3.0, "{hz}: {}", t.tone_hz);
            assert!(t.tone_share > 0.95, "{hz}: share {}", t.tone_share);
            assert!(
                (t.level_db + 20.0).abs() < 0.5,
                "{hz}: level {}",
                t.level_db
            );
        }
    }

    #[test]
    fn goertzel_bank_picks_out_its_bins() {
        let x = sine(2100.0, 0.2, 0, 80);
        let e: f32 = x.iter().map(|&s| (s as f32 / 32768.0).powi(2)).sum();
        let xf: Vec<f32> = x.iter().map(|&s| s as f32 / 32768.0).collect();
        let p = GoertzelBank::new(BANK_FREQS).relative_powers(&xf, e);
        assert!(p[BIN_CED] > 0.9, "{p:?}");
        assert!(p[BIN_CNG] < 0.05, "{p:?}");
    }

    #[test]
    fn tracker_reports_a_beep_with_its_bounds() {
        let mut x = vec![0i16; 1600];
        x.extend(sine(1000.0, 0.2, 0, 4000));
        x.extend(vec![0i16; 1600]);
        let mut a = ToneAnalyzer::default();
        let mut tr = ToneTracker::default();
        let segs: Vec<ToneSegment> = frames(&x)
            .enumerate()
            .filter_map(|(i, f)| {
                tr.push(
                    MediaTime::from_samples((i * FRAME_SAMPLES) as u64),
                    &a.analyze(&f),
                )
            })
            .collect();
        assert_eq!(segs.len(), 1, "{segs:?}");
        let s = segs[0];
        assert!((s.hz - 1000.0).abs() < 3.0);
        assert!(s.start.as_ms().abs_diff(200) <= 10, "{s:?}");
        assert!(s.end.as_ms().abs_diff(700) <= 10, "{s:?}");
    }

    #[test]
    fn white_noise_is_not_a_tone() {
        let mut a = ToneAnalyzer::default();
        let mut tr = ToneTracker::default();
        let mut seed = 12345u32;
        for i in 0..200u64 {
            let mut f = [0i16; FRAME_SAMPLES];
            for s in f.iter_mut() {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                *s = ((seed >> 16) as i16) / 8;
            }
            assert_eq!(
                tr.push(MediaTime::from_samples(i * 80), &a.analyze(&f)),
                None
            );
        }
        assert_eq!(tr.current(), None);
    }
}
