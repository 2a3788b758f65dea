//! Signaling: SDP offer/answer (here now) and, next, a thin adapter over rsipstack behind
//! our own interface (place call, answer, hang up, re-INVITE, REFER, registrar, digest
//! auth). Nothing outside this crate sees SIP stack types.

pub mod call;
pub mod disposition;
pub mod sdp;
