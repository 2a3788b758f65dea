//! Which datagrams a leg accepts: only the far end the SDP named (strict source, as
//! rtpengine's strict-source mode). A stranger's packets (another port or host streaming at
//! our RTP port) are counted and dropped, so they can neither feed AMD nor be relayed.
//!
//! With NAT latching the far end may send from another port of the signalled IP: the first
//! such packet latches the leg, once, to its exact address, and only that address is heard
//! from then on. A new signalled address (a re-offer) starts over.

use std::net::SocketAddr;

/// How strictly a leg matches its far end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Latch {
    /// Only the exact signalled address and port.
    #[default]
    Strict,
    /// The signalled IP, any port, until the first packet latches the exact address.
    Nat,
}

/// What to do with one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Accept,
    /// Accept; this datagram latched the leg to its source (send to it from now on).
    Latched(SocketAddr),
    Drop,
}

#[derive(Debug, Clone, Default)]
pub struct SourceFilter {
    signalled: Option<SocketAddr>,
    latched: Option<SocketAddr>,
    latch: Latch,
    strangers: u64,
}

impl SourceFilter {
    /// The far end's address from its SDP (the answer, or a later re-offer).
    pub fn signal(&mut self, remote: SocketAddr, latch: Latch) {
        if self.signalled != Some(remote) || self.latch != latch {
            self.latched = None;
        }
        self.signalled = Some(remote);
        self.latch = latch;
    }

    /// Whether a datagram from `from` belongs to this leg.
    pub fn admit(&mut self, from: SocketAddr) -> Admit {
        let verdict = match (self.signalled, self.latched) {
            // Nobody signalled yet: we cannot know who the far end is.
            (None, _) => Admit::Drop,
            (Some(_), Some(l)) if l == from => Admit::Accept,
            (Some(_), Some(_)) => Admit::Drop,
            (Some(s), None) if s == from || (self.latch == Latch::Nat && s.ip() == from.ip()) => {
                self.latched = Some(from);
                Admit::Latched(from)
            }
            (Some(_), None) => Admit::Drop,
        };
        if verdict == Admit::Drop {
            self.strangers += 1;
        }
        verdict
    }

    /// Where to send: the latched source, else the signalled address.
    pub fn remote(&self) -> Option<SocketAddr> {
        self.latched.or(self.signalled)
    }

    /// Datagrams dropped because they came from someone other than the far end.
    pub fn strangers(&self) -> u64 {
        self.strangers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().expect("address")
    }

    #[test]
    fn strict_hears_only_the_signalled_address() {
        let mut f = SourceFilter::default();
        assert_eq!(f.admit(a("10.0.0.1:4000")), Admit::Drop, "nothing signalled yet");
        f.signal(a("10.0.0.1:4000"), Latch::Strict);
        assert_eq!(f.admit(a("10.0.0.1:4002")), Admit::Drop, "same host, another port: a stranger");
        assert_eq!(f.admit(a("10.0.0.1:4000")), Admit::Latched(a("10.0.0.1:4000")));
        assert_eq!(f.admit(a("10.0.0.1:4000")), Admit::Accept);
        assert_eq!(f.admit(a("10.9.9.9:4000")), Admit::Drop);
        assert_eq!(f.strangers(), 3);
    }

    #[test]
    fn nat_latches_once_and_does_not_follow_new_sources() {
        let mut f = SourceFilter::default();
        f.signal(a("10.0.0.1:4000"), Latch::Nat);
        assert_eq!(f.admit(a("10.0.0.2:4000")), Admit::Drop, "another IP never latches");
        assert_eq!(f.admit(a("10.0.0.1:5555")), Admit::Latched(a("10.0.0.1:5555")));
        assert_eq!(f.remote(), Some(a("10.0.0.1:5555")));
        assert_eq!(f.admit(a("10.0.0.1:4000")), Admit::Drop, "latched once: the signalled port is now a stranger");
        assert_eq!(f.admit(a("10.0.0.1:5555")), Admit::Accept);
    }

    #[test]
    fn a_re_offer_to_a_new_address_starts_over() {
        let mut f = SourceFilter::default();
        f.signal(a("10.0.0.1:4000"), Latch::Strict);
        assert_eq!(f.admit(a("10.0.0.1:4000")), Admit::Latched(a("10.0.0.1:4000")));
        f.signal(a("10.0.0.1:4000"), Latch::Strict);
        assert_eq!(f.admit(a("10.0.0.1:4000")), Admit::Accept, "the same address again keeps the latch");
        f.signal(a("10.0.0.7:6000"), Latch::Strict);
        assert_eq!(f.admit(a("10.0.0.1:4000")), Admit::Drop);
        assert_eq!(f.admit(a("10.0.0.7:6000")), Admit::Latched(a("10.0.0.7:6000")));
    }
}
