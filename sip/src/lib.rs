//! Signaling: a thin adapter over rsipstack behind our own interface (place call, answer,
//! hang up, re-INVITE, REFER, registrar, digest auth) plus SDP offer/answer.
//! Filled by a later issue.
