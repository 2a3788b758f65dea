//! Types every plane shares (one concept, one type): the control plane's call id, the
//! audio codec, who or what answered, how an attempt ended, and its record. No IO, no clock.

mod answered_by;
mod codec;
mod disposition;
mod record;

pub use answered_by::AnsweredBy;
pub use codec::Codec;
pub use disposition::Disposition;
pub use record::{CallRecord, EndedBy, HangupReason};

/// The control plane's name for a call leg, unique across media shards.
pub type CallId = u64;
