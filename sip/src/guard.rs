//! What the agent refuses before the SIP stack sees it:
//! - a request in a SIP version other than 2.0 gets `505 Version Not Supported` (RFC 3261
//!   §8.2.1, §21.5.7);
//! - inbound TCP connections beyond a total cap or a per-source cap are closed on arrival.
//!   Idle connections are closed by the stack's own stream idle timeout, which the agent sets.
//!
//! The accounting is pure ([`TcpAdmission`]); the agent's transport inspector carries it out.

use std::collections::HashMap;
use std::net::IpAddr;

/// Limits on inbound TCP connections (outbound ones, to our trunks, are ours and not
/// counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpLimits {
    /// Open inbound connections in all.
    pub max_connections: usize,
    /// Open inbound connections from one IP address.
    pub max_per_source: usize,
}

impl Default for TcpLimits {
    fn default() -> Self {
        TcpLimits { max_connections: 1024, max_per_source: 32 }
    }
}

/// Counts inbound connections by source; `K` names one connection.
#[derive(Debug)]
pub struct TcpAdmission<K> {
    limits: TcpLimits,
    open: HashMap<K, IpAddr>,
    per_source: HashMap<IpAddr, usize>,
    refused: u64,
}

impl<K: std::hash::Hash + Eq> TcpAdmission<K> {
    pub fn new(limits: TcpLimits) -> Self {
        TcpAdmission { limits, open: HashMap::new(), per_source: HashMap::new(), refused: 0 }
    }

    /// A new inbound connection: true to keep it, false to close it now.
    pub fn admit(&mut self, key: K, source: IpAddr) -> bool {
        if self.open.contains_key(&key) {
            return true;
        }
        let from_source = self.per_source.get(&source).copied().unwrap_or(0);
        if self.open.len() >= self.limits.max_connections || from_source >= self.limits.max_per_source {
            self.refused += 1;
            return false;
        }
        self.open.insert(key, source);
        *self.per_source.entry(source).or_default() += 1;
        true
    }

    /// A connection closed (admitted or not: closing an unknown one does nothing).
    pub fn closed(&mut self, key: &K) {
        let Some(source) = self.open.remove(key) else { return };
        if let Some(n) = self.per_source.get_mut(&source) {
            *n -= 1;
            if *n == 0 {
                self.per_source.remove(&source);
            }
        }
    }

    pub fn open(&self) -> usize {
        self.open.len()
    }

    /// Connections closed on arrival so far.
    pub fn refused(&self) -> u64 {
        self.refused
    }
}

/// Whether a request line's version is one we speak.
pub fn version_supported(major: u8, minor: u8) -> bool {
    (major, minor) == (2, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn per_source_and_total_caps_hold_and_closing_frees_a_place() {
        let mut a = TcpAdmission::new(TcpLimits { max_connections: 3, max_per_source: 2 });
        assert!(a.admit(1, ip(1)));
        assert!(a.admit(2, ip(1)));
        assert!(!a.admit(3, ip(1)), "a third from one source");
        assert!(a.admit(4, ip(2)));
        assert!(!a.admit(5, ip(3)), "the total cap");
        assert_eq!((a.open(), a.refused()), (3, 2));
        a.closed(&1);
        assert!(a.admit(6, ip(1)), "closing one frees its source's place");
        a.closed(&3); // never admitted: nothing changes
        assert_eq!(a.open(), 3);
        assert!(a.admit(6, ip(1)), "the same connection twice is one");
        assert_eq!(a.open(), 3);
    }

    #[test]
    fn only_sip_2_0_is_spoken() {
        assert!(version_supported(2, 0));
        assert!(!version_supported(7, 0));
        assert!(!version_supported(2, 1));
        assert!(!version_supported(1, 0));
    }
}
