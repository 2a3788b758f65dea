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
        let coeff = freqs.map(|f| 2.0 * (2.0 * std::f32::consts::PI * f / ANALYSIS_RATE as f32).cos());
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
            self.step(x, &mut s1, &mut s2);
        }
        self.finish(&s1, &s2, frame.len(), energy)
    }

    /// [`Self::relative_powers`] for two frames at once: the two recurrences are
    /// independent, so interleaving them hides the latency of each.
    pub fn relative_powers_pair(&self, a: &[f32], b: &[f32], energy: [f32; 2]) -> [[f32; N]; 2] {
        let (mut a1, mut a2, mut b1, mut b2) = ([0f32; N], [0f32; N], [0f32; N], [0f32; N]);
        for (&xa, &xb) in a.iter().zip(b) {
            self.step(xa, &mut a1, &mut a2);
            self.step(xb, &mut b1, &mut b2);
        }
        [self.finish(&a1, &a2, a.len(), energy[0]), self.finish(&b1, &b2, b.len(), energy[1])]
    }

    #[inline(always)]
    fn step(&self, x: f32, s1: &mut [f32; N], s2: &mut [f32; N]) {
        for k in 0..N {
            let s0 = x + self.coeff[k] * s1[k] - s2[k];
            s2[k] = s1[k];
            s1[k] = s0;
        }
    }

    fn finish(&self, s1: &[f32; N], s2: &[f32; N], len: usize, energy: f32) -> [f32; N] {
        if energy <= 0.0 {
            return [0.0; N];
        }
        let norm = 2.0 / (len as f32 * energy);
        std::array::from_fn(|k| (s1[k] * s1[k] + s2[k] * s2[k] - self.coeff[k] * s1[k] * s2[k]) * norm)
    }
}

/// Fixed tones the bank looks for: fax CNG and CED, the SIT frequencies, and the V.21
/// mark tone of fax flags (eight bins: one SIMD-friendly pass).
pub const BANK_FREQS: [f32; 8] = [1100.0, 2100.0, 913.8, 985.2, 1370.6, 1428.5, 1776.7, 1650.0];
pub const BIN_CNG: usize = 0;
pub const BIN_CED: usize = 1;
pub const BIN_V21_MARK: usize = 7;
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
    pub bank: [f32; 8],
    /// Lag-1 autocorrelation over energy, -1..1: high for voiced speech (energy below
    /// 1 kHz), near 0 for the band-limited noise of rustle and clicks.
    pub low_band: f32,
}

/// Per-stream tone analyser: keeps the four samples of history the estimator needs.
#[derive(Debug, Clone)]
pub struct ToneAnalyzer {
    bank: GoertzelBank<8>,
    /// The last four samples of the previous frame, oldest first.
    hist: [f32; HIST],
}

impl Default for ToneAnalyzer {
    fn default() -> Self {
        ToneAnalyzer { bank: GoertzelBank::new(BANK_FREQS), hist: [0.0; 4] }
    }
}

impl ToneAnalyzer {
    /// Analyses one 10 ms frame.
    pub fn analyze(&mut self, frame: &[i16; FRAME_SAMPLES]) -> FrameTones {
        let buf = self.load(frame);
        let r = autocorr(&buf);
        let bank = self.bank.relative_powers(&buf[HIST..], r[0]);
        frame_tones(&r, bank)
    }

    /// Analyses two consecutive 10 ms frames (a 20 ms packet) in one pass.
    pub fn analyze_pair(&mut self, block: &[i16; 2 * FRAME_SAMPLES]) -> [FrameTones; 2] {
        let (first, second) = block.split_at(FRAME_SAMPLES);
        // Invariant: both halves of a 160-sample block are 80 samples long.
        let a = self.load(first.try_into().expect("10 ms"));
        let b = self.load(second.try_into().expect("10 ms"));
        let (ra, rb) = (autocorr(&a), autocorr(&b));
        let [pa, pb] = self.bank.relative_powers_pair(&a[HIST..], &b[HIST..], [ra[0], rb[0]]);
        [frame_tones(&ra, pa), frame_tones(&rb, pb)]
    }

    /// Four samples of history, then the frame as floats: `x[n - k]` for every lag `k`
    /// is one contiguous slice.
    fn load(&mut self, frame: &[i16; FRAME_SAMPLES]) -> [f32; HIST + FRAME_SAMPLES] {
        let mut buf = [0f32; HIST + FRAME_SAMPLES];
        buf[..HIST].copy_from_slice(&self.hist);
        for (o, &s) in buf[HIST..].iter_mut().zip(frame) {
            *o = s as f32 * (1.0 / 32768.0);
        }
        self.hist.copy_from_slice(&buf[FRAME_SAMPLES..]);
        buf
    }
}

/// Autocorrelations at lags 0..=4 of the frame in `buf[HIST..]`.
fn autocorr(buf: &[f32; HIST + FRAME_SAMPLES]) -> [f32; 5] {
    let x = &buf[HIST..];
    std::array::from_fn(|k| dot(x, &buf[HIST - k..HIST - k + FRAME_SAMPLES]))
}

fn frame_tones(r: &[f32; 5], bank: [f32; 8]) -> FrameTones {
    let mean_sq = r[0] / FRAME_SAMPLES as f32;
    let level_db = if mean_sq > 1e-12 { 10.0 * (2.0 * mean_sq).log10() } else { -120.0 };
    let (tone_hz, tone_share) = single_tone(r);
    let low_band = if r[0] > 1e-9 { r[1] / r[0] } else { 0.0 };
    FrameTones { level_db, tone_hz, tone_share, bank, low_band }
}

const HIST: usize = 4;

/// Dot product with eight independent accumulators, so the compiler can use SIMD.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for j in 0..8 {
            acc[j] += x[j] * y[j];
        }
    }
    acc.iter().sum::<f32>() + tail
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
    let misfit = ((r[3] - power * (3.0 * w).cos()).abs() + (r[4] - power * (4.0 * w).cos()).abs()) / r0;
    let share = (power / r0 - misfit).clamp(0.0, 1.0);
    (w * ANALYSIS_RATE as f32 / (2.0 * std::f32::consts::PI), share)
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
        ToneParams { min_share: 0.96, min_level_db: -45.0, max_drift_hz: 15.0, min_hz: 300.0, max_hz: 2300.0 }
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
        ToneSegment { start: self.start, end: self.end, hz: self.sum_hz / self.frames as f32 }
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
        let tonal =
            t.tone_share >= p.min_share && t.level_db >= p.min_level_db && (p.min_hz..=p.max_hz).contains(&t.tone_hz);
        match (&mut self.run, tonal) {
            (Some(r), true) if (t.tone_hz - r.mean_hz()).abs() <= p.max_drift_hz.max(0.04 * r.mean_hz()) => {
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
                    *run = Some(Run { start: at, end, sum_hz: t.tone_hz, frames: 1, misses: 0 });
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
            .map(|i| (amp * 32767.0 * (2.0 * std::f32::consts::PI * hz * i as f32 / 8000.0).sin()) as i16)
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
            assert!((t.level_db + 20.0).abs() < 0.5, "{hz}: level {}", t.level_db);
        }
    }

    #[test]
    fn pair_analysis_equals_two_single_frames() {
        let x = sine(1400.0, 0.1, 0, 1600);
        let (mut one, mut two) = (ToneAnalyzer::default(), ToneAnalyzer::default());
        for block in x.chunks_exact(160) {
            let mut b = [0i16; 160];
            b.copy_from_slice(block);
            let pair = two.analyze_pair(&b);
            for (h, got) in block.chunks_exact(80).zip(pair) {
                let mut f = [0i16; 80];
                f.copy_from_slice(h);
                assert_eq!(one.analyze(&f), got);
            }
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
            .filter_map(|(i, f)| tr.push(MediaTime::from_samples((i * FRAME_SAMPLES) as u64), &a.analyze(&f)))
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
            assert_eq!(tr.push(MediaTime::from_samples(i * 80), &a.analyze(&f)), None);
        }
        assert_eq!(tr.current(), None);
    }
}
