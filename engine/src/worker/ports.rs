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

#[cfg(test)]
mod tests {
    use super::*;

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
