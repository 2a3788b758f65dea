//! Control plane: actix actors (CampaignActor, CallActor, AgentActor, Router) as thin
//! shells around pure state machines (pacing, call FSM, agent FSM, compliance).
//! Filled by a later issue; the crate exists so the layout shows the architecture.
