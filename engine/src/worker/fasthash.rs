//! A small multiplicative hasher for the shard's per-packet maps (sessions by call id,
//! shared-port routes by source and SSRC). Every key in them was inserted by the shard
//! for a session it runs, so SipHash's flooding resistance buys nothing there, and its
//! cost is paid on every packet.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Rotate, xor, multiply per 64-bit word (the rustc "Fx" scheme); the multiply spreads
/// sequential call ids across the high bits hashbrown uses for its control bytes.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FastHasher(u64);

const K: u64 = 0x517c_c1b7_2722_0a95;

impl FastHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(K);
    }
}

impl Hasher for FastHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w));
        }
    }

    #[inline]
    fn write_u8(&mut self, n: u8) {
        self.add(n as u64);
    }

    #[inline]
    fn write_u16(&mut self, n: u16) {
        self.add(n as u64);
    }

    #[inline]
    fn write_u32(&mut self, n: u32) {
        self.add(n as u64);
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }
}

/// A `HashMap` keyed through [`FastHasher`].
pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::{BuildHasher, Hash};
    use std::net::SocketAddr;

    fn hash<T: Hash>(t: &T) -> u64 {
        BuildHasherDefault::<FastHasher>::default().hash_one(t)
    }

    #[test]
    fn sequential_ids_spread_over_the_high_bits() {
        // hashbrown takes its 7-bit tag from the top of the hash: sequential call ids must
        // not all share one tag.
        let tags: std::collections::HashSet<u64> = (0..1000u64).map(|c| hash(&c) >> 57).collect();
        assert!(tags.len() > 100, "only {} distinct tags", tags.len());
    }

    #[test]
    fn maps_keyed_by_address_and_ssrc_work() {
        let mut m: FastMap<(SocketAddr, u32), u64> = FastMap::default();
        for i in 0..500u32 {
            let a: SocketAddr = format!("127.0.0.1:{}", 10_000 + i).parse().expect("addr");
            m.insert((a, i), i as u64);
        }
        let a: SocketAddr = "127.0.0.1:10007".parse().expect("addr");
        assert_eq!(m.get(&(a, 7)), Some(&7));
        assert_eq!(m.get(&(a, 8)), None);
        assert_eq!(m.len(), 500);
    }
}
