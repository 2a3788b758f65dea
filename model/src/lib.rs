//! Types every plane shares (one concept, one type): the control plane's call id, who or
//! what answered, and how an attempt ended. No IO, no clock.

mod answered_by;
mod disposition;
mod record;

pub use answered_by::AnsweredBy;
pub use disposition::Disposition;
pub use record::{CallRecord, EndedBy, HangupReason};

/// The control plane's name for a call leg, unique across media shards.
pub type CallId = u64;
