//! waihu's control plane: pure state machines (`handle_input(input, now)`,
//! `handle_timeout(now)`, `poll_output()`, `poll_timeout()`) for calls, and later for
//! campaigns, agents and routing, each with a thin actix actor that carries out its
//! outputs. Only the actors read the clock.

pub mod agent;
pub mod call;
pub mod campaign;
pub mod compliance;
pub mod dial;
pub mod pacing;
pub mod router;
