//! Signaling: SDP offer/answer, the outbound call as a pure state machine, trunks and
//! their limits, and a thin adapter over rsipstack (`agent`). Nothing outside `agent`
//! sees SIP stack types.

pub mod agent;
pub mod call;
pub mod guard;
pub mod registrar;
pub mod registry;
pub mod sdp;
pub mod trunk;

pub use agent::{AgentConfig, EventSink, OutboundCall, Request, SipAgent, SipCommand, SipError, SipEvent};
pub use waihu_model::{AnsweredBy, Disposition};
