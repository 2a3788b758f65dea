//! One outbound call: the pure [`flow::CallFlow`] (policy, timers, record) around the SIP
//! call state machine, and the thin actix [`actor::CallActor`] that carries it out.

pub mod actor;
pub mod flow;
#[cfg(test)]
mod sim;

pub use actor::{CallActor, CallCommand, CallEnv, CallSpec, ProgressSink, RecordSink, StartError};
pub use flow::{CallFlow, Command, FlowConfig, HangupOn, Input, KeepaliveMode, MediaCommand, Output, Progress, Timer};
