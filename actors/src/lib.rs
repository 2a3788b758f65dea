//! waihu's control plane: pure state machines (`handle_input(input, now)`,
//! `handle_timeout(now)`, `poll_output()`, `poll_timeout()`) for calls, and later for
//! campaigns, agents and routing, each with a thin actix actor that carries out its
//! outputs. Only the actors read the clock.

pub mod agent;
pub mod assist;
pub mod call;
pub mod campaign;
pub mod compliance;
pub mod dial;
pub mod pacing;
pub mod router;

/// The wall clock, for the actor shells (the machines take time as an argument).
#[allow(clippy::disallowed_methods)]
pub mod clock {
    use std::time::{SystemTime, UNIX_EPOCH};

    /// Milliseconds since the Unix epoch (0 if the clock is before it).
    pub fn unix_ms() -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
    }

    pub fn utc_now() -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::from_timestamp_millis(unix_ms() as i64).unwrap_or_default()
    }
}
