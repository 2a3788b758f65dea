//! Agents: the pure per-agent state machine ([`machine`]) and its actix shell ([`actor`]).

pub mod actor;
pub mod machine;
pub mod transfer;
pub mod wrapup;

pub use machine::{Agent, AgentId, AgentLimits, AgentState, AgentTotals, Input, Output, PhoneLoss, Timer};
