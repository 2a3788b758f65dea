//! What the pacer learns from the calls and agents it sees: how long after the dial a call
//! turns into a live person (or into nothing), and how long agents talk and wrap up. Each
//! estimator is a histogram over a sliding window of recent observations plus a small
//! prior, so it starts sensible and follows the campaign as it drifts.

use std::collections::VecDeque;

/// Outcome ages are kept in bins of this many milliseconds.
pub const AGE_BIN_MS: u64 = 1000;
/// Ages beyond this many bins are counted in the last one.
pub const AGE_BINS: usize = 64;

/// How a dialled call resolved, as the pacer needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// A live person, ready for an agent (AMD said human).
    Human,
    /// Anything that needs no agent: a machine, busy, no answer, a failure.
    NoAgent,
}

/// P(a call dialled `age` ago turns into a live person within the next `u`), learned from
/// the last `window` resolved calls.
#[derive(Debug, Clone)]
pub struct OutcomeModel {
    window: usize,
    recent: VecDeque<(usize, Resolution)>,
    human: [f64; AGE_BINS],
    other: [f64; AGE_BINS],
    /// Cumulative sums, rebuilt when dirty: `cum_human[b]` = humans resolved before bin b.
    cum_human: [f64; AGE_BINS + 1],
    cum_all: [f64; AGE_BINS + 1],
    dirty: bool,
}

impl OutcomeModel {
    /// `prior_human` is the live-person rate to assume before any call resolves, spread
    /// over `prior_at_s` seconds after the dial; it weighs as much as `prior_weight` calls.
    pub fn new(window: usize, prior_human: f64, prior_at_s: (u64, u64), prior_weight: f64) -> Self {
        let mut m = OutcomeModel {
            window: window.max(1),
            recent: VecDeque::new(),
            human: [0.0; AGE_BINS],
            other: [0.0; AGE_BINS],
            cum_human: [0.0; AGE_BINS + 1],
            cum_all: [0.0; AGE_BINS + 1],
            dirty: true,
        };
        let (lo, hi) = (bin_of_s(prior_at_s.0), bin_of_s(prior_at_s.1).max(bin_of_s(prior_at_s.0)));
        let n = (hi - lo + 1) as f64;
        for b in lo..=hi {
            m.human[b] += prior_weight * prior_human / n;
            m.other[b] += prior_weight * (1.0 - prior_human) / n;
        }
        m
    }

    pub fn observe(&mut self, age_ms: u64, r: Resolution) {
        let b = bin_of_ms(age_ms);
        self.add(b, r, 1.0);
        self.recent.push_back((b, r));
        if self.recent.len() > self.window {
            if let Some((b, r)) = self.recent.pop_front() {
                self.add(b, r, -1.0);
            }
        }
        self.dirty = true;
    }

    fn add(&mut self, b: usize, r: Resolution, w: f64) {
        match r {
            Resolution::Human => self.human[b] += w,
            Resolution::NoAgent => self.other[b] += w,
        }
    }

    /// Rebuilds the cumulative sums (call once before a batch of queries).
    pub fn refresh(&mut self) {
        if !self.dirty {
            return;
        }
        for b in 0..AGE_BINS {
            self.cum_human[b + 1] = self.cum_human[b] + self.human[b].max(0.0);
            self.cum_all[b + 1] = self.cum_all[b] + self.human[b].max(0.0) + self.other[b].max(0.0);
        }
        self.dirty = false;
    }

    fn total(&self) -> f64 {
        self.cum_all[AGE_BINS].max(1e-9)
    }

    /// How many calls (and prior pseudo-calls) the estimate rests on.
    pub fn sample_size(&self) -> f64 {
        self.total()
    }

    /// The relative variance of the estimated live-person rate, (1 − p) / (p · n): what the
    /// forecast adds for not knowing the rate exactly.
    pub fn rate_rel_var(&self) -> f64 {
        let p = self.human_rate().clamp(1e-3, 1.0);
        (1.0 - p) / (p * self.total())
    }

    /// The share of dialled calls that reach a live person.
    pub fn human_rate(&self) -> f64 {
        self.cum_human[AGE_BINS] / self.total()
    }

    /// P(live person within `u_ms` | dialled `age_ms` ago and not resolved yet).
    pub fn human_within(&self, age_ms: u64, u_ms: u64) -> f64 {
        let a = bin_of_ms(age_ms);
        let e = bin_of_ms(age_ms + u_ms);
        let left = self.total() - self.cum_all[a];
        if left <= 1e-9 {
            // Older than anything seen: it will most likely end without a person.
            return 0.0;
        }
        ((self.cum_human[e] - self.cum_human[a]) / left).clamp(0.0, 1.0)
    }
}

fn bin_of_ms(ms: u64) -> usize {
    ((ms / AGE_BIN_MS) as usize).min(AGE_BINS - 1)
}

fn bin_of_s(s: u64) -> usize {
    bin_of_ms(s * 1000)
}

/// A duration distribution (talk time, wrap-up time) over the last `window` samples, in
/// bins of `bin_ms`, with a log-normal prior of weight `prior_weight`.
#[derive(Debug, Clone)]
pub struct DurationModel {
    bin_ms: u64,
    window: usize,
    recent: VecDeque<usize>,
    counts: Vec<f64>,
    cum: Vec<f64>,
    sum_ms: f64,
    prior_mean_ms: f64,
    prior_weight: f64,
    dirty: bool,
}

impl DurationModel {
    /// `bins` bins of `bin_ms`; longer samples land in the last bin.
    pub fn new(bin_ms: u64, bins: usize, window: usize, prior: LogNormal, prior_weight: f64) -> Self {
        let bins = bins.max(2);
        let mut counts = vec![0.0; bins];
        for (b, c) in counts.iter_mut().enumerate() {
            let lo = (b as u64 * bin_ms) as f64;
            let hi = if b + 1 == bins { f64::INFINITY } else { lo + bin_ms as f64 };
            *c = prior_weight * (prior.cdf(hi) - prior.cdf(lo));
        }
        DurationModel {
            bin_ms: bin_ms.max(1),
            window: window.max(1),
            recent: VecDeque::new(),
            counts,
            cum: vec![0.0; bins + 1],
            sum_ms: 0.0,
            prior_mean_ms: prior.mean(),
            prior_weight,
            dirty: true,
        }
    }

    pub fn observe(&mut self, ms: u64) {
        let b = self.bin(ms);
        self.counts[b] += 1.0;
        self.sum_ms += ms as f64;
        self.recent.push_back(b);
        if self.recent.len() > self.window {
            if let Some(old) = self.recent.pop_front() {
                self.counts[old] -= 1.0;
                self.sum_ms -= (old as u64 * self.bin_ms + self.bin_ms / 2) as f64;
            }
        }
        self.dirty = true;
    }

    fn bin(&self, ms: u64) -> usize {
        ((ms / self.bin_ms) as usize).min(self.counts.len() - 1)
    }

    pub fn refresh(&mut self) {
        if !self.dirty {
            return;
        }
        for b in 0..self.counts.len() {
            self.cum[b + 1] = self.cum[b] + self.counts[b].max(0.0);
        }
        self.dirty = false;
    }

    /// Mean of what was seen (the prior's mean before anything was).
    pub fn mean_ms(&self) -> f64 {
        let n = self.recent.len() as f64;
        (self.sum_ms.max(0.0) + self.prior_mean_ms * self.prior_weight) / (n + self.prior_weight).max(1e-9)
    }

    /// P(ends within `u_ms` | it has lasted `elapsed_ms`), linear inside a bin.
    pub fn ends_within(&self, elapsed_ms: u64, u_ms: u64) -> f64 {
        let total = self.cum[self.counts.len()];
        let at = |ms: u64| -> f64 {
            let b = self.bin(ms);
            let frac = ((ms - (b as u64 * self.bin_ms).min(ms)) as f64 / self.bin_ms as f64).min(1.0);
            self.cum[b] + self.counts[b].max(0.0) * frac
        };
        let f0 = at(elapsed_ms);
        let left = total - f0;
        if left <= 1e-9 {
            return 1.0;
        }
        ((at(elapsed_ms + u_ms) - f0) / left).clamp(0.0, 1.0)
    }
}

/// A log-normal distribution by its mean and the σ of the underlying normal.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogNormal {
    pub mean_ms: f64,
    pub sigma: f64,
}

impl LogNormal {
    pub fn mu(&self) -> f64 {
        self.mean_ms.max(1.0).ln() - self.sigma * self.sigma / 2.0
    }

    pub fn mean(&self) -> f64 {
        self.mean_ms
    }

    pub fn cdf(&self, x_ms: f64) -> f64 {
        if x_ms <= 0.0 {
            return 0.0;
        }
        if !x_ms.is_finite() {
            return 1.0;
        }
        normal_cdf((x_ms.ln() - self.mu()) / self.sigma.max(1e-6))
    }

    /// A sample, from a standard normal draw `z`.
    pub fn from_normal(&self, z: f64) -> f64 {
        (self.mu() + self.sigma * z).exp()
    }
}

/// Φ(x), the standard normal CDF (Abramowitz-Stegun 7.1.26 on erf; error < 1.5e-7).
pub fn normal_cdf(x: f64) -> f64 {
    let t = x.abs() / std::f64::consts::SQRT_2;
    let k = 1.0 / (1.0 + 0.327_591_1 * t);
    let poly =
        k * (0.254_829_592 + k * (-0.284_496_736 + k * (1.421_413_741 + k * (-1.453_152_027 + k * 1.061_405_429))));
    let erf = 1.0 - poly * (-t * t).exp();
    if x >= 0.0 {
        0.5 * (1.0 + erf)
    } else {
        0.5 * (1.0 - erf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_cdf_matches_known_points() {
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-7);
        assert!((normal_cdf(1.96) - 0.975).abs() < 1e-4);
        assert!((normal_cdf(-1.0) - 0.158_655).abs() < 1e-5);
    }

    #[test]
    fn outcome_model_learns_when_people_answer_and_conditions_on_age() {
        let mut m = OutcomeModel::new(1000, 0.5, (1, 30), 10.0);
        for i in 0..1000u64 {
            // A person at 10 s for one call in five, everything else ends at 25 s.
            let (age, r) = if i % 5 == 0 { (10_000, Resolution::Human) } else { (25_000, Resolution::NoAgent) };
            m.observe(age, r);
        }
        m.refresh();
        assert!((m.human_rate() - 0.2).abs() < 0.01, "{}", m.human_rate());
        assert!(m.human_within(0, 5_000) < 0.01, "nobody answers in the first 5 s");
        assert!((m.human_within(0, 15_000) - 0.2).abs() < 0.01);
        assert!(m.human_within(12_000, 10_000) < 0.01, "past 11 s nobody will answer any more");
    }

    #[test]
    fn the_window_forgets_old_calls() {
        let mut m = OutcomeModel::new(100, 0.5, (1, 30), 1.0);
        for _ in 0..100 {
            m.observe(5_000, Resolution::Human);
        }
        for _ in 0..100 {
            m.observe(5_000, Resolution::NoAgent);
        }
        m.refresh();
        assert!(m.human_rate() < 0.02, "{}", m.human_rate());
    }

    #[test]
    fn duration_model_gives_the_conditional_end_probability() {
        let prior = LogNormal { mean_ms: 120_000.0, sigma: 0.5 };
        let mut m = DurationModel::new(1000, 1800, 2000, prior, 0.0);
        for _ in 0..500 {
            m.observe(60_000);
            m.observe(180_000);
        }
        m.refresh();
        assert!((m.mean_ms() - 120_000.0).abs() < 600.0);
        assert!(m.ends_within(0, 30_000) < 0.01);
        assert!((m.ends_within(50_000, 20_000) - 0.5).abs() < 0.01, "half end at 60 s");
        assert!(m.ends_within(100_000, 90_000) > 0.99, "past 60 s the rest end at 180 s");
    }

    #[test]
    fn lognormal_prior_has_its_mean() {
        let d = LogNormal { mean_ms: 120_000.0, sigma: 0.5 };
        let median = d.mu().exp();
        assert!((d.cdf(median) - 0.5).abs() < 1e-6);
        assert!(median < 120_000.0);
    }
}
