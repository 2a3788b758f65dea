//! Trunks: where calls go and under which limits. A trunk is read from TOML (the store
//! comes later). `Admission` enforces its calls-per-second and channel caps, and
//! `TrunkHealth` turns OPTIONS keepalive results into an up/down state. Both are pure and
//! take `now`.
//!
//! ```toml
//! name = "carrier-a"
//! host = "127.0.0.1"
//! port = 5060
//! transport = "udp"          # or "tcp"
//! username = "alice"         # digest auth for 401 and 407 challenges
//! password = "secret"
//! realm = "sipp.test"        # optional: answer only this realm's challenges
//! from = "+861012345678"     # caller ID (From user part)
//! from_display = "Acme"
//! p_asserted_identity = "sip:+861012345678@carrier.example"
//! max_cps = 50.0
//! max_channels = 500
//! ring_timeout_secs = 30
//! options_interval_secs = 30 # 0 turns the keepalive off
//! ```

use serde::Deserialize;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    #[default]
    Udp,
    Tcp,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrunkConfig {
    #[serde(default = "default_name")]
    pub name: String,
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    #[serde(default)]
    pub transport: Transport,
    pub username: Option<String>,
    pub password: Option<String>,
    pub realm: Option<String>,
    /// Caller ID: the From user part (a number) or a whole SIP URI.
    pub from: Option<String>,
    pub from_display: Option<String>,
    /// Sent as P-Asserted-Identity when set (a number or a URI).
    pub p_asserted_identity: Option<String>,
    /// Extra headers on every INVITE, as (name, value): an agent's phone gets
    /// `Call-Info: <sip:host>;answer-after=0` and `Alert-Info` to answer on its own.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    #[serde(default = "default_cps")]
    pub max_cps: f64,
    #[serde(default = "default_channels")]
    pub max_channels: u32,
    #[serde(default = "default_ring")]
    pub ring_timeout_secs: u64,
    #[serde(default = "default_options")]
    pub options_interval_secs: u64,
}

fn default_name() -> String {
    "trunk".into()
}
fn default_port() -> u16 {
    5060
}
fn default_cps() -> f64 {
    10.0
}
fn default_channels() -> u32 {
    100
}
fn default_ring() -> u64 {
    30
}
fn default_options() -> u64 {
    30
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TrunkError {
    #[error("trunk file {path}: {error}")]
    Read { path: String, error: String },
    #[error("trunk config: {0}")]
    Parse(String),
    #[error("trunk config: {0}")]
    Invalid(String),
}

impl TrunkConfig {
    /// A trunk with defaults pointing at `host:port` (used when no trunk file is given:
    /// the target URI's host is the trunk).
    pub fn direct(host: &str, port: u16) -> TrunkConfig {
        TrunkConfig {
            name: "direct".into(),
            host: host.into(),
            port,
            transport: Transport::Udp,
            username: None,
            password: None,
            realm: None,
            from: None,
            from_display: None,
            p_asserted_identity: None,
            headers: Vec::new(),
            max_cps: default_cps(),
            max_channels: default_channels(),
            ring_timeout_secs: default_ring(),
            options_interval_secs: 0,
        }
    }

    pub fn from_toml(text: &str) -> Result<TrunkConfig, TrunkError> {
        let t: TrunkConfig = toml::from_str(text).map_err(|e| TrunkError::Parse(e.to_string()))?;
        t.validate()?;
        Ok(t)
    }

    pub fn load(path: &std::path::Path) -> Result<TrunkConfig, TrunkError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| TrunkError::Read { path: path.display().to_string(), error: e.to_string() })?;
        TrunkConfig::from_toml(&text)
    }

    pub fn validate(&self) -> Result<(), TrunkError> {
        let bad = |m: &str| Err(TrunkError::Invalid(m.into()));
        if self.host.trim().is_empty() || self.host.contains(char::is_whitespace) {
            return bad("host must be a host name or address");
        }
        if self.port == 0 {
            return bad("port must not be 0");
        }
        if !(self.max_cps.is_finite() && self.max_cps > 0.0) {
            return bad("max_cps must be a positive number");
        }
        if self.max_channels == 0 {
            return bad("max_channels must be at least 1");
        }
        if self.ring_timeout_secs == 0 {
            return bad("ring_timeout_secs must be at least 1");
        }
        if self.password.is_some() && self.username.is_none() {
            return bad("password given without username");
        }
        Ok(())
    }

    pub fn ring_timeout(&self) -> Duration {
        Duration::from_secs(self.ring_timeout_secs)
    }
}

/// Whether a new call may start now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Go,
    /// The calls-per-second cap: try again at this time.
    WaitUntil(Instant),
    /// Every channel is busy: try again after a call ends.
    ChannelsFull,
}

/// The trunk's calls-per-second cap and its concurrent-channel cap.
///
/// The rate cap is hard: no one-second window ever holds more than `max_cps` starts
/// (a sliding log of recent starts; for rates under one per second, the window is
/// 1 / max_cps). Within it, a token bucket spreads starts evenly: it holds at most 20 ms
/// worth of calls (at least one), so a caller that wakes late catches up with a small
/// burst rather than losing the rate.
#[derive(Debug, Clone)]
pub struct Admission {
    window: Duration,
    per_window: usize,
    rate: f64,
    burst: f64,
    tokens: f64,
    refilled: Option<Instant>,
    recent: VecDeque<Instant>,
    in_use: u32,
    max_channels: u32,
}

impl Admission {
    pub fn new(max_cps: f64, max_channels: u32) -> Admission {
        let cps = if max_cps.is_finite() && max_cps > 0.0 { max_cps } else { 1.0 };
        let window = if cps >= 1.0 { Duration::from_secs(1) } else { Duration::from_secs_f64(1.0 / cps) };
        let per_window = ((cps * window.as_secs_f64()).floor() as usize).max(1);
        Admission {
            window,
            per_window,
            rate: cps,
            burst: (cps * 0.02).max(1.0),
            tokens: 1.0,
            refilled: None,
            recent: VecDeque::with_capacity(per_window + 1),
            in_use: 0,
            max_channels,
        }
    }

    pub fn for_trunk(t: &TrunkConfig) -> Admission {
        Admission::new(t.max_cps, t.max_channels)
    }

    /// Takes a channel and a start slot if both are free.
    pub fn try_admit(&mut self, now: Instant) -> Admit {
        if self.in_use >= self.max_channels {
            return Admit::ChannelsFull;
        }
        while self.recent.front().is_some_and(|&t| now.saturating_duration_since(t) >= self.window) {
            self.recent.pop_front();
        }
        if let Some(t) = self.refilled {
            self.tokens = (self.tokens + now.saturating_duration_since(t).as_secs_f64() * self.rate).min(self.burst);
        }
        self.refilled = Some(now);
        let mut earliest = now;
        if self.tokens < 1.0 {
            earliest = now + Duration::from_secs_f64((1.0 - self.tokens) / self.rate);
        }
        if self.recent.len() >= self.per_window {
            if let Some(&first) = self.recent.front() {
                earliest = earliest.max(first + self.window);
            }
        }
        if earliest > now {
            return Admit::WaitUntil(earliest);
        }
        self.recent.push_back(now);
        self.tokens -= 1.0;
        self.in_use += 1;
        Admit::Go
    }

    /// A call admitted earlier has ended.
    pub fn release(&mut self) {
        self.in_use = self.in_use.saturating_sub(1);
    }

    pub fn in_use(&self) -> u32 {
        self.in_use
    }
}

/// Trunk up/down from OPTIONS keepalives: down after `fail_after` failures in a row,
/// up again on the first answer. Any final response counts as an answer (a trunk that
/// says 403 or 405 to OPTIONS is still there); a timeout or a transport error is a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrunkState {
    Unknown,
    Up,
    Down,
}

#[derive(Debug, Clone)]
pub struct TrunkHealth {
    state: TrunkState,
    failures: u32,
    fail_after: u32,
    pub last_change: Option<Instant>,
}

impl TrunkHealth {
    pub fn new(fail_after: u32) -> TrunkHealth {
        TrunkHealth { state: TrunkState::Unknown, failures: 0, fail_after: fail_after.max(1), last_change: None }
    }

    pub fn state(&self) -> TrunkState {
        self.state
    }

    /// Records one keepalive result; returns the new state when it changed.
    pub fn record(&mut self, answered: Option<u16>, now: Instant) -> Option<TrunkState> {
        let next = match answered {
            Some(_) => {
                self.failures = 0;
                TrunkState::Up
            }
            None => {
                self.failures += 1;
                if self.failures >= self.fail_after {
                    TrunkState::Down
                } else {
                    self.state
                }
            }
        };
        if next != self.state {
            self.state = next;
            self.last_change = Some(now);
            return Some(next);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::disallowed_methods)]
    fn origin() -> Instant {
        Instant::now()
    }

    #[test]
    fn a_full_trunk_file_parses_and_bad_ones_say_why() {
        let t = TrunkConfig::from_toml(
            r#"
            name = "carrier-a"
            host = "127.0.0.1"
            port = 5061
            transport = "tcp"
            username = "alice"
            password = "secret"
            realm = "sipp.test"
            from = "+861012345678"
            p_asserted_identity = "sip:+861012345678@carrier.example"
            max_cps = 50.5
            max_channels = 500
            ring_timeout_secs = 20
            options_interval_secs = 0
            "#,
        )
        .expect("parses");
        assert_eq!((t.port, t.transport, t.max_channels), (5061, Transport::Tcp, 500));
        assert_eq!(t.ring_timeout(), Duration::from_secs(20));
        let d = TrunkConfig::from_toml("host = \"10.0.0.1\"").expect("defaults");
        assert_eq!((d.port, d.transport, d.ring_timeout_secs, d.max_cps), (5060, Transport::Udp, 30, 10.0));

        for (text, says) in [
            ("port = 5060", "missing field `host`"),
            ("host = \"a\"\nmax_cps = 0", "max_cps"),
            ("host = \"a\"\nmax_channels = 0", "max_channels"),
            ("host = \"a\"\npassword = \"x\"", "without username"),
            ("host = \"a\"\ntransport = \"sctp\"", "unknown variant"),
            ("host = \"a\"\nmax_cps = \"fast\"", "invalid type"),
            ("host = \"a\"\ncolour = 1", "unknown field"),
            ("host = ", "TOML parse error at line 1"),
        ] {
            let e = TrunkConfig::from_toml(text).expect_err(text).to_string();
            assert!(e.contains(says), "{text:?}: {e}");
        }
    }

    #[test]
    fn admission_caps_calls_per_second_in_every_window_and_channels() {
        let t0 = origin();
        let mut a = Admission::new(50.0, 1_000);
        let mut starts = Vec::new();
        // Ask every millisecond for 10 s.
        for ms in 0..10_000u64 {
            let now = t0 + Duration::from_millis(ms);
            if a.try_admit(now) == Admit::Go {
                starts.push(now);
            }
        }
        assert!((495..=500).contains(&starts.len()), "{} starts in 10 s at 50 cps", starts.len());
        for (i, s) in starts.iter().enumerate() {
            let in_window = starts[i..].iter().take_while(|t| **t < *s + Duration::from_secs(1)).count();
            assert!(in_window <= 50, "{in_window} starts within 1 s of start {i}");
        }
        // A caller that wakes up late (every 3 ms here, at 500 cps) still gets the full
        // rate, and still never more than 500 in any second.
        let mut a = Admission::new(500.0, 10_000);
        let mut starts = Vec::new();
        let mut now = t0;
        while now < t0 + Duration::from_secs(10) {
            while a.try_admit(now) == Admit::Go {
                starts.push(now);
            }
            now += Duration::from_millis(3);
        }
        assert!(starts.len() >= 4_950, "{} starts in 10 s at 500 cps with late wake-ups", starts.len());
        for (i, s) in starts.iter().enumerate() {
            let in_window = starts[i..].iter().take_while(|t| **t < *s + Duration::from_secs(1)).count();
            assert!(in_window <= 500, "{in_window} starts within 1 s of start {i}");
        }
        // Under one call per second: one per 1/cps seconds.
        let mut a = Admission::new(0.5, 9);
        assert_eq!(a.try_admit(t0), Admit::Go);
        assert_eq!(a.try_admit(t0 + Duration::from_secs(1)), Admit::WaitUntil(t0 + Duration::from_secs(2)));

        let mut a = Admission::new(1_000.0, 3);
        let mut now = t0;
        for _ in 0..3 {
            now += Duration::from_millis(5);
            assert_eq!(a.try_admit(now), Admit::Go);
        }
        now += Duration::from_millis(5);
        assert_eq!(a.try_admit(now), Admit::ChannelsFull);
        a.release();
        assert_eq!(a.try_admit(now), Admit::Go);
        assert_eq!(a.in_use(), 3);
        assert!(matches!(Admission::new(1.0, 9).try_admit(now), Admit::Go));
        let mut slow = Admission::new(1.0, 9);
        assert_eq!(slow.try_admit(now), Admit::Go);
        assert_eq!(slow.try_admit(now + Duration::from_millis(600)), Admit::WaitUntil(now + Duration::from_secs(1)));
    }

    #[test]
    fn trunk_goes_down_after_missed_keepalives_and_up_on_an_answer() {
        let t0 = origin();
        let mut h = TrunkHealth::new(2);
        assert_eq!(h.record(Some(200), t0), Some(TrunkState::Up));
        assert_eq!(h.record(None, t0), None);
        assert_eq!(h.record(None, t0), Some(TrunkState::Down));
        assert_eq!(h.record(None, t0), None);
        assert_eq!(h.record(Some(405), t0), Some(TrunkState::Up));
        assert_eq!(h.state(), TrunkState::Up);
    }
}
