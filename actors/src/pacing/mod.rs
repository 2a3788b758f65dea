//! Pacing: how many calls a campaign launches now. Pure state machines (the pacer, the
//! VICIdial-style baseline it is measured against), the estimators and the abandon ledger
//! they use, and a seeded discrete-event simulation of a shift to test them in.

pub mod baseline;
pub mod ledger;
pub mod model;
pub mod pacer;
pub mod shift;

pub use pacer::{AgentId, AgentPhase, DialMode, Input, Outcome, Output, Pacer, PacerConfig, PacerStatus};
