//! The abandon ledger: live answers, abandons and machine verdicts over the legal window
//! (rolling 30 days per campaign in the US, 24 h in the UK), in one-minute buckets.
//!
//! Abandon rate = (abandons + estimated AMD false positives) ÷ live answers, where the
//! false positives are the configured false-positive rate times the machine verdicts: a
//! person AMD hung up on was abandoned too.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

const BUCKET: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Bucket {
    lives: u64,
    abandons: u64,
    machines: u64,
}

#[derive(Debug, Clone)]
pub struct AbandonLedger {
    window: Duration,
    fp_rate: f64,
    buckets: VecDeque<(Instant, Bucket)>,
    total: Bucket,
}

/// The ledger's sums over the window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AbandonTotals {
    pub lives: u64,
    pub abandons: u64,
    pub machines: u64,
    /// Abandons plus the estimated false positives.
    pub counted: f64,
}

impl AbandonTotals {
    /// The abandon rate over the window (0 before any live answer).
    pub fn rate(&self) -> f64 {
        if self.lives == 0 {
            return 0.0;
        }
        self.counted / self.lives as f64
    }

    /// How many more abandons the cap allows now (negative: over it).
    pub fn headroom(&self, cap: f64) -> f64 {
        cap * self.lives as f64 - self.counted
    }
}

impl AbandonLedger {
    pub fn new(window: Duration, fp_rate: f64) -> Self {
        AbandonLedger { window, fp_rate: fp_rate.clamp(0.0, 1.0), buckets: VecDeque::new(), total: Bucket::default() }
    }

    pub fn live(&mut self, now: Instant) {
        self.bucket(now).lives += 1;
        self.total.lives += 1;
    }

    pub fn abandoned(&mut self, now: Instant) {
        self.bucket(now).abandons += 1;
        self.total.abandons += 1;
    }

    pub fn machine(&mut self, now: Instant) {
        self.bucket(now).machines += 1;
        self.total.machines += 1;
    }

    fn bucket(&mut self, now: Instant) -> &mut Bucket {
        self.expire(now);
        let fresh = self.buckets.back().is_none_or(|(start, _)| now.saturating_duration_since(*start) >= BUCKET);
        if fresh {
            self.buckets.push_back((now, Bucket::default()));
        }
        // Invariant: a bucket was just pushed if there was none.
        &mut self.buckets.back_mut().expect("a bucket").1
    }

    /// Drops the buckets that have left the window.
    pub fn expire(&mut self, now: Instant) {
        while let Some((start, b)) = self.buckets.front().copied() {
            if now.saturating_duration_since(start) < self.window + BUCKET {
                break;
            }
            self.total.lives -= b.lives;
            self.total.abandons -= b.abandons;
            self.total.machines -= b.machines;
            self.buckets.pop_front();
        }
    }

    pub fn totals(&self) -> AbandonTotals {
        let t = self.total;
        AbandonTotals {
            lives: t.lives,
            abandons: t.abandons,
            machines: t.machines,
            counted: t.abandons as f64 + self.fp_rate * t.machines as f64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_counts_false_positives_and_forgets_past_the_window() {
        let t0 = Instant::now();
        let mut l = AbandonLedger::new(Duration::from_secs(3600), 0.05);
        for _ in 0..100 {
            l.live(t0);
        }
        l.abandoned(t0);
        for _ in 0..20 {
            l.machine(t0);
        }
        let t = l.totals();
        assert!((t.rate() - 0.02).abs() < 1e-9, "1 abandon + 5% of 20 machines over 100 lives");
        assert!((t.headroom(0.03) - 1.0).abs() < 1e-9);
        let later = t0 + Duration::from_secs(3600 + 120);
        l.live(later);
        let t = l.totals();
        assert_eq!((t.lives, t.abandons, t.machines), (1, 0, 0), "the first hour left the window");
    }
}
