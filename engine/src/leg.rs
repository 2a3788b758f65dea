//! One leg's media rules, without IO and without a clock (time comes in as arguments): who
//! hears a leg (hold gating), whether a frame is relayed as it came or transcoded, when a
//! quiet far end counts as gone, when RTCP reports are due, and what a leg sends while it
//! plays nothing. The worker shell applies them; the source filter and the symmetric-RTP
//! latch are in [`crate::source`].

use crate::codec::Codec;
use crate::session::PayloadMap;
use std::time::{Duration, Instant};

/// The control plane's name for a leg.
pub type LegId = u64;

/// Where a leg's received audio goes: its bridged peer, unless the leg is on hold (the
/// held party hears music and the peer hears nothing).
pub fn hears_me(held: bool, bridge: Option<LegId>) -> Option<LegId> {
    if held {
        None
    } else {
        bridge
    }
}

/// Whether a frame received under `payloads` can go to a peer that sends `peer_codec`
/// unchanged (the same codec, by each leg's own negotiated payload map), or must be
/// decoded and encoded again. A frame the jitter buffer concealed (`lost`) has no payload
/// to relay.
pub fn relays_as_is(payloads: &PayloadMap, payload_type: u8, lost: bool, peer_codec: Codec) -> bool {
    !lost && payloads.codec_of(payload_type) == Some(peer_codec)
}

/// How long the far end has been quiet, when that is long enough to report (once per quiet
/// spell: `reported` is set by the caller until the next packet).
pub fn media_timeout(
    last_packet: Option<Instant>,
    now: Instant,
    timeout: Duration,
    reported: bool,
) -> Option<Duration> {
    let idle = now.saturating_duration_since(last_packet?);
    (idle >= timeout && !reported).then_some(idle)
}

/// First RTCP report for `leg`: somewhere in [0.5, 1.5) × the interval, as RFC 3550 §6.2
/// randomises it, so legs opened together do not report together. Deterministic per leg.
pub fn rtcp_phase(interval: Duration, leg: LegId) -> Duration {
    let h = leg.wrapping_add(0x51).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40; // 24 bits
    interval.mul_f64(0.5 + h as f64 / (1u64 << 24) as f64)
}

/// What a leg sends while it plays nothing and relays nothing, so that the far end's NAT
/// binding and its no-RTP timer see us (carriers and SBCs drop calls with no inbound RTP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Keepalive {
    #[default]
    Off,
    /// RFC 3389 comfort noise on payload type `pt` (when the far end accepted it): one packet
    /// when the leg falls silent, then one a second. The stream's timestamps keep running.
    ComfortNoise { pt: u8 },
    /// Encoded silence every 20 ms: a continuous stream, for far ends without CN. Costs a
    /// packet per leg per 20 ms.
    Silence,
}

/// Time between two comfort-noise packets.
pub const CN_EVERY: Duration = Duration::from_secs(1);

/// Comfort noise level sent: -70 dBov (RFC 3389 §3), a quiet line.
pub const CN_LEVEL: u8 = 70;

/// What a quiet leg does on one 20 ms pacer tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuietTick {
    /// Nothing to do (keepalive off, or a bridged leg, which carries its peer's audio).
    Nothing,
    /// Send nothing, but let the stream's clock run.
    Skip,
    SendSilence,
    /// Send a comfort-noise packet; the next one is due at `next`.
    SendCn {
        pt: u8,
        next: Instant,
    },
}

/// One tick of a leg that plays nothing.
pub fn quiet_tick(mode: Keepalive, bridged: bool, held: bool, now: Instant, cn_due: Instant) -> QuietTick {
    if bridged && !held {
        return QuietTick::Nothing;
    }
    match mode {
        Keepalive::Off => QuietTick::Nothing,
        Keepalive::Silence => QuietTick::SendSilence,
        Keepalive::ComfortNoise { .. } if now < cn_due => QuietTick::Skip,
        Keepalive::ComfortNoise { pt } => QuietTick::SendCn { pt, next: now + CN_EVERY },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Any fixed origin will do: every other time in a test is derived from it.
    #[allow(clippy::disallowed_methods)]
    fn origin() -> Instant {
        Instant::now()
    }

    #[test]
    fn a_held_leg_is_heard_by_no_one() {
        assert_eq!(hears_me(false, Some(7)), Some(7));
        assert_eq!(hears_me(true, Some(7)), None);
        assert_eq!(hears_me(false, None), None);
    }

    #[test]
    fn relay_follows_each_legs_payload_map_not_the_number() {
        let dynamic_opus = PayloadMap { pcmu: None, pcma: None, opus: Some(109), telephone_event: None };
        assert!(relays_as_is(&dynamic_opus, 109, false, Codec::Opus));
        assert!(!relays_as_is(&dynamic_opus, 101, false, Codec::Opus), "101 is not this leg's Opus");
        let default = PayloadMap::default();
        assert!(relays_as_is(&default, 0, false, Codec::Pcmu));
        assert!(!relays_as_is(&default, 0, false, Codec::Pcma), "PCMU to a PCMA leg is transcoded");
        assert!(!relays_as_is(&default, 0, true, Codec::Pcmu), "a concealed frame has no payload");
        assert!(!relays_as_is(&default, 96, false, Codec::Opus), "PT 96 is not Opus unless negotiated");
    }

    #[test]
    fn media_timeout_reports_once_per_quiet_spell_and_not_before_the_first_packet() {
        let t0 = origin();
        let limit = Duration::from_secs(10);
        assert_eq!(media_timeout(None, t0 + limit * 5, limit, false), None);
        assert_eq!(media_timeout(Some(t0), t0 + Duration::from_secs(9), limit, false), None);
        assert_eq!(media_timeout(Some(t0), t0 + limit, limit, false), Some(limit));
        assert_eq!(media_timeout(Some(t0), t0 + limit * 2, limit, true), None);
        assert_eq!(media_timeout(Some(t0 + limit), t0, limit, false), None, "a clock behind the packet");
    }

    #[test]
    fn rtcp_phases_spread_over_half_to_one_and_a_half_intervals() {
        let i = Duration::from_secs(5);
        let phases: Vec<Duration> = (0..1000).map(|leg| rtcp_phase(i, leg)).collect();
        assert!(phases.iter().all(|p| *p >= i / 2 && *p < i * 3 / 2));
        let early = phases.iter().filter(|p| **p < i).count();
        assert!((400..600).contains(&early), "about half before the interval: {early}");
        assert_eq!(rtcp_phase(i, 42), rtcp_phase(i, 42));
    }

    #[test]
    fn a_quiet_leg_sends_cn_once_a_second_or_silence_every_tick() {
        let t0 = origin();
        let cn = Keepalive::ComfortNoise { pt: 13 };
        assert_eq!(quiet_tick(cn, false, false, t0, t0), QuietTick::SendCn { pt: 13, next: t0 + CN_EVERY });
        assert_eq!(quiet_tick(cn, false, false, t0 + Duration::from_millis(20), t0 + CN_EVERY), QuietTick::Skip);
        assert_eq!(quiet_tick(Keepalive::Silence, false, false, t0, t0), QuietTick::SendSilence);
        assert_eq!(quiet_tick(Keepalive::Off, false, false, t0, t0), QuietTick::Nothing);
        assert_eq!(quiet_tick(Keepalive::Silence, true, false, t0, t0), QuietTick::Nothing, "bridged");
        assert_eq!(quiet_tick(Keepalive::Silence, true, true, t0, t0), QuietTick::SendSilence, "bridged, held");
    }
}
