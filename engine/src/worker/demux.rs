//! Shared-port mode: many sessions on one socket, told apart by the packet's source
//! address and SSRC. A session waits for its far end by exact address (from the SDP) or,
//! with symmetric RTP (NAT), by IP address only; the first packet from there with a new SSRC
//! latches it. Latching allocates once per session, never per packet.

use super::fasthash::FastMap;
use super::CallId;
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};

#[derive(Debug, Default)]
pub(crate) struct Demux {
    latched: FastMap<(SocketAddr, u32), CallId>,
    by_call: FastMap<CallId, (SocketAddr, u32)>,
    exact: FastMap<SocketAddr, VecDeque<CallId>>,
    by_ip: FastMap<IpAddr, VecDeque<CallId>>,
}

impl Demux {
    /// `call` expects media from `remote` (any port of its IP when `symmetric`).
    pub(crate) fn expect(&mut self, call: CallId, remote: SocketAddr, symmetric: bool) {
        self.forget(call);
        if symmetric {
            self.by_ip.entry(remote.ip()).or_default().push_back(call);
        } else {
            self.exact.entry(remote).or_default().push_back(call);
        }
    }

    /// The session a datagram from `from` carrying `ssrc` belongs to.
    pub(crate) fn route(&mut self, from: SocketAddr, ssrc: u32) -> Option<CallId> {
        if let Some(&c) = self.latched.get(&(from, ssrc)) {
            return Some(c);
        }
        let call = self
            .exact
            .get_mut(&from)
            .and_then(VecDeque::pop_front)
            .or_else(|| self.by_ip.get_mut(&from.ip()).and_then(VecDeque::pop_front))?;
        self.latched.insert((from, ssrc), call);
        self.by_call.insert(call, (from, ssrc));
        Some(call)
    }

    /// Drops everything about `call` (closed, or expecting a new far end).
    pub(crate) fn forget(&mut self, call: CallId) {
        if let Some(key) = self.by_call.remove(&call) {
            self.latched.remove(&key);
        }
        for q in self.exact.values_mut().chain(self.by_ip.values_mut()) {
            q.retain(|&c| c != call);
        }
        self.exact.retain(|_, q| !q.is_empty());
        self.by_ip.retain(|_, q| !q.is_empty());
    }
}

/// The sender's SSRC of an RTP or RTCP datagram (None when too short to say).
pub(crate) fn ssrc_of(d: &[u8]) -> Option<u32> {
    let at = if crate::rtcp::is_rtcp(d) { 4 } else { 8 };
    d.get(at..at + 4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().expect("addr")
    }

    #[test]
    fn exact_then_ip_latching_and_forgetting() {
        let mut d = Demux::default();
        d.expect(1, a("10.0.0.1:4000"), false);
        d.expect(2, a("10.0.0.9:1"), true);
        d.expect(3, a("10.0.0.9:1"), true);
        // A stranger gets nothing, and nothing is used up by it.
        assert_eq!(d.route(a("10.0.0.5:4000"), 7), None);
        assert_eq!(d.route(a("10.0.0.1:4000"), 77), Some(1));
        assert_eq!(d.route(a("10.0.0.1:4000"), 77), Some(1));
        // Another SSRC from the same exact address has no session waiting there.
        assert_eq!(d.route(a("10.0.0.1:4000"), 78), None);
        // NAT: any port of the IP, latched in arrival order, each by its own SSRC.
        assert_eq!(d.route(a("10.0.0.9:6000"), 5), Some(2));
        assert_eq!(d.route(a("10.0.0.9:6000"), 6), Some(3));
        assert_eq!(d.route(a("10.0.0.9:6000"), 5), Some(2));
        d.forget(2);
        assert_eq!(d.route(a("10.0.0.9:6000"), 5), None);
        assert_eq!(d.route(a("10.0.0.9:6000"), 6), Some(3));
    }

    #[test]
    fn ssrc_of_rtp_and_rtcp() {
        let rtp = [0x80, 0, 0, 1, 0, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef];
        assert_eq!(ssrc_of(&rtp), Some(0xdead_beef));
        let rr = [0x80, 201, 0, 1, 0x12, 0x34, 0x56, 0x78];
        assert_eq!(ssrc_of(&rr), Some(0x1234_5678));
        assert_eq!(ssrc_of(&rtp[..7]), None);
    }
}
