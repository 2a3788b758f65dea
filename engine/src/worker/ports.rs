//! A shard's RTP ports: even ports of its range, handed out least-recently-used first so a
//! closed call's port is not reused while stray packets may still arrive for it.

use std::collections::VecDeque;
use std::ops::Range;

#[derive(Debug)]
pub(crate) struct PortPool {
    free: VecDeque<u16>,
}

impl PortPool {
    pub(crate) fn new(range: Range<u16>) -> Self {
        PortPool { free: range.filter(|p| p % 2 == 0).collect() }
    }

    pub(crate) fn take(&mut self) -> Option<u16> {
        self.free.pop_front()
    }

    pub(crate) fn release(&mut self, port: u16) {
        self.free.push_back(port);
    }

    pub(crate) fn len(&self) -> usize {
        self.free.len()
    }
}

/// Splits `range` into `n` contiguous parts of near-equal size, each starting on an even
/// port, so shards never hand out the same port. Empty when the range cannot give every
/// part at least one even port.
pub(crate) fn split(range: Range<u16>, n: usize) -> Vec<Range<u16>> {
    let start = range.start + range.start % 2;
    let evens = (range.end.saturating_sub(start) as usize).div_ceil(2);
    if n == 0 || evens < n {
        return Vec::new();
    }
    let mut parts = Vec::with_capacity(n);
    let mut at = start as usize;
    for i in 0..n {
        let count = evens / n + usize::from(i < evens % n);
        let end = (at + 2 * count).min(range.end as usize);
        parts.push(at as u16..end as u16);
        at = end;
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_gives_disjoint_even_ranges_covering_every_even_port() {
        for (range, n) in [(20_000..30_000, 2), (20_001..20_010, 3), (10_000..10_007, 4), (1000..1001, 1)] {
            let parts = split(range.clone(), n);
            let want: Vec<u16> = range.clone().filter(|p| p % 2 == 0).collect();
            if want.len() < n {
                assert!(parts.is_empty(), "{range:?} / {n}");
                continue;
            }
            assert_eq!(parts.len(), n);
            let got: Vec<u16> = parts.iter().flat_map(|r| r.clone().filter(|p| p % 2 == 0)).collect();
            assert_eq!(got, want, "{range:?} / {n}: {parts:?}");
            let sizes: Vec<usize> = parts.iter().map(|r| r.clone().filter(|p| p % 2 == 0).count()).collect();
            assert!(sizes.iter().max().unwrap_or(&0) - sizes.iter().min().unwrap_or(&0) <= 1, "{sizes:?}");
        }
        assert!(split(10_000..10_004, 3).is_empty());
    }

    #[test]
    fn even_ports_least_recently_used_first() {
        let mut p = PortPool::new(10_001..10_008);
        assert_eq!(p.len(), 3);
        assert_eq!(p.take(), Some(10_002));
        p.release(10_002);
        assert_eq!(p.take(), Some(10_004));
        assert_eq!(p.take(), Some(10_006));
        assert_eq!(p.take(), Some(10_002));
        assert_eq!(p.take(), None);
    }
}
