//! Media time: a sample count at the analysis rate. Deterministic, never wall time.

use crate::ANALYSIS_RATE;
use std::fmt;

/// A point in a stream's media timeline, in samples at [`ANALYSIS_RATE`] since the
/// stream started (for an answered call: since answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MediaTime(pub u64);

impl MediaTime {
    pub const ZERO: MediaTime = MediaTime(0);

    pub const fn from_samples(samples: u64) -> Self {
        MediaTime(samples)
    }

    pub const fn from_ms(ms: u64) -> Self {
        MediaTime(ms * ANALYSIS_RATE as u64 / 1000)
    }

    pub const fn samples(self) -> u64 {
        self.0
    }

    pub const fn as_ms(self) -> u64 {
        self.0 * 1000 / ANALYSIS_RATE as u64
    }

    /// Milliseconds from `earlier` to `self`, 0 if `earlier` is later.
    pub const fn ms_since(self, earlier: MediaTime) -> u64 {
        self.0.saturating_sub(earlier.0) * 1000 / ANALYSIS_RATE as u64
    }

    pub const fn add_ms(self, ms: u64) -> Self {
        MediaTime(self.0 + ms * ANALYSIS_RATE as u64 / 1000)
    }

    pub const fn add_samples(self, n: u64) -> Self {
        MediaTime(self.0 + n)
    }
}

impl fmt::Display for MediaTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.as_ms())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_between_ms_and_samples() {
        assert_eq!(MediaTime::from_ms(10).samples(), 80);
        assert_eq!(MediaTime::from_samples(8_000).as_ms(), 1_000);
        assert_eq!(MediaTime::from_ms(250).ms_since(MediaTime::from_ms(100)), 150);
        assert_eq!(MediaTime::from_ms(100).ms_since(MediaTime::from_ms(250)), 0);
    }
}
