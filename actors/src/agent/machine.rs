//! One agent, as a pure state machine: logged out, available, reserved, ringing (on
//! demand), on a call, wrap-up (timed), paused with a reason. No state can stick: every
//! state that waits on someone else has a timer, and a lost phone or a restart puts the
//! agent in a defined state. Each change is an [`Output::Changed`] for the shell to persist
//! and publish.

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use waihu_model::CallId;

pub type AgentId = u32;

/// Where an agent is. `since_ms` fields are wall-clock milliseconds only as far as the
/// shell supplies them; the machine itself works on `Instant`s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AgentState {
    LoggedOut,
    /// Ready for a call.
    Available,
    /// The router gave this agent a call; the bridge (or the offer to the phone) follows.
    Reserved {
        call: CallId,
    },
    /// On demand: the agent's phone is being called for `call`.
    Ringing {
        call: CallId,
    },
    OnCall {
        call: CallId,
    },
    /// After `call`: a disposition and notes, for at most the campaign's wrap-up limit.
    WrapUp {
        call: CallId,
    },
    /// Not taking calls, for this reason code.
    Paused {
        reason: String,
    },
}

impl AgentState {
    pub fn label(&self) -> &'static str {
        match self {
            AgentState::LoggedOut => "logged-out",
            AgentState::Available => "available",
            AgentState::Reserved { .. } => "reserved",
            AgentState::Ringing { .. } => "ringing",
            AgentState::OnCall { .. } => "on-call",
            AgentState::WrapUp { .. } => "wrap-up",
            AgentState::Paused { .. } => "paused",
        }
    }

    /// The call this state is about, if any.
    pub fn call(&self) -> Option<CallId> {
        match self {
            AgentState::Reserved { call }
            | AgentState::Ringing { call }
            | AgentState::OnCall { call }
            | AgentState::WrapUp { call } => Some(*call),
            _ => None,
        }
    }
}

/// Why an agent's phone is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PhoneLoss {
    /// The REGISTER binding expired without a refresh.
    RegistrationExpired,
    /// The phone un-REGISTERed.
    Unregistered,
    /// No RTP from the agent's leg.
    MediaTimeout,
    /// The agent's leg ended (BYE from the phone, or no ACK).
    LegEnded,
}

/// Limits the agent's campaign sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentLimits {
    /// Reserved but not bridged (or offered) within this: the reservation is released.
    pub reserve_timeout: Duration,
    /// On demand: the phone did not answer within this (RONA: the agent is paused).
    pub ring_timeout: Duration,
    /// Wrap-up ends by itself after this.
    pub wrap_up: Duration,
}

impl Default for AgentLimits {
    fn default() -> Self {
        AgentLimits {
            reserve_timeout: Duration::from_secs(2),
            ring_timeout: Duration::from_secs(8),
            wrap_up: Duration::from_secs(10),
        }
    }
}

/// The reason code an agent gets when its phone did not answer an offered call.
pub const NO_ANSWER_REASON: &str = "no-answer";

/// What happens to an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Login,
    Logout,
    Pause {
        reason: String,
    },
    /// Back to available (from a pause, or ending wrap-up early with the disposition given).
    Ready,
    /// The router chose this agent for `call`.
    Reserve {
        call: CallId,
    },
    /// On demand: the agent's phone is being called for the reserved call.
    Offered {
        call: CallId,
    },
    /// The agent is talking to the customer of `call` (the bridge is up).
    Connected {
        call: CallId,
    },
    /// The offer failed (the phone declined or was unreachable).
    Declined {
        call: CallId,
    },
    /// The router took the reservation back (the customer hung up or was given away).
    Released {
        call: CallId,
    },
    /// The customer side of `call` ended.
    CallEnded {
        call: CallId,
    },
    PhoneLost {
        why: PhoneLoss,
    },
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Persist and publish: the agent moved from one state to another.
    Changed { from: AgentState, to: AgentState },
    /// The agent can no longer take `call` (phone lost, timeout, logout): the call's own
    /// policy handles the customer (requeue, or safe harbour).
    Abandon { call: CallId },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    Reserve,
    Ring,
    WrapUp,
}

/// Counters the router's strategies read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentTotals {
    pub calls: u32,
    pub talk_ms: u64,
    pub wrap_ms: u64,
}

#[derive(Debug, Clone)]
pub struct Agent {
    id: AgentId,
    limits: AgentLimits,
    state: AgentState,
    entered: Instant,
    /// Since when the agent has been available (for longest idle).
    idle_since: Option<Instant>,
    /// A pause asked for during a call: taken when the call's wrap-up ends.
    pending_pause: Option<String>,
    /// The phone's registration lapsed during a call whose media still flows: the call goes
    /// on, and the agent is logged out when it is over (unless the phone registers again).
    logout_after_call: bool,
    totals: AgentTotals,
    timer: Option<(Instant, Timer)>,
    out: VecDeque<Output>,
}

impl Agent {
    pub fn new(id: AgentId, limits: AgentLimits, now: Instant) -> Self {
        Agent {
            id,
            limits,
            state: AgentState::LoggedOut,
            entered: now,
            idle_since: None,
            pending_pause: None,
            logout_after_call: false,
            totals: AgentTotals::default(),
            timer: None,
            out: VecDeque::new(),
        }
    }

    /// An agent loaded from the store after a restart. Calls do not survive a restart: an
    /// agent that was reserved or ringing is available again; one that was on a call is in
    /// that call's wrap-up (to record what happened); a pause holds.
    pub fn recover(id: AgentId, limits: AgentLimits, saved: AgentState, totals: AgentTotals, now: Instant) -> Self {
        let mut a = Agent::new(id, limits, now);
        a.totals = totals;
        let state = match saved {
            AgentState::Reserved { .. } | AgentState::Ringing { .. } => AgentState::Available,
            AgentState::OnCall { call } => AgentState::WrapUp { call },
            s => s,
        };
        a.go(state, now);
        a.out.clear();
        a
    }

    pub fn id(&self) -> AgentId {
        self.id
    }

    pub fn state(&self) -> &AgentState {
        &self.state
    }

    pub fn totals(&self) -> AgentTotals {
        self.totals
    }

    /// Since when the agent has been available, while it is.
    pub fn idle_since(&self) -> Option<Instant> {
        self.idle_since
    }

    pub fn set_limits(&mut self, limits: AgentLimits) {
        self.limits = limits;
    }

    pub fn handle_input(&mut self, input: Input, now: Instant) {
        use AgentState as S;
        let call = self.state.call();
        match (input, &self.state) {
            (Input::Login, S::LoggedOut) => self.go(S::Available, now),
            (Input::Logout, S::LoggedOut) => {}
            (Input::Logout, _) => {
                self.abandon_reserved();
                // Logged out mid-call: the call is handed back (its own policy ends it).
                if let S::OnCall { call } = self.state {
                    self.out.push_back(Output::Abandon { call });
                }
                self.logout_after_call = false;
                self.go(S::LoggedOut, now)
            }
            (Input::Pause { reason }, S::Available | S::Paused { .. }) => self.go(S::Paused { reason }, now),
            (Input::Pause { reason }, S::Reserved { .. } | S::Ringing { .. } | S::OnCall { .. } | S::WrapUp { .. }) => {
                self.pending_pause = Some(reason)
            }
            (Input::Ready, S::Paused { .. }) => self.go(S::Available, now),
            (Input::Ready, S::WrapUp { .. }) => self.end_wrap_up(now),
            (Input::Reserve { call }, S::Available) => self.go(S::Reserved { call }, now),
            (Input::Offered { call: c }, S::Reserved { .. }) if Some(c) == call => self.go(S::Ringing { call: c }, now),
            (Input::Connected { call: c }, S::Reserved { .. } | S::Ringing { .. }) if Some(c) == call => {
                self.go(S::OnCall { call: c }, now)
            }
            (Input::Declined { call: c }, S::Reserved { .. } | S::Ringing { .. }) if Some(c) == call => {
                self.out.push_back(Output::Abandon { call: c });
                self.go(S::Paused { reason: NO_ANSWER_REASON.into() }, now)
            }
            (Input::Released { call: c }, S::Reserved { .. } | S::Ringing { .. }) if Some(c) == call => {
                self.go_ready(now)
            }
            (Input::CallEnded { call: c }, S::OnCall { .. }) if Some(c) == call => self.go(S::WrapUp { call: c }, now),
            (Input::CallEnded { call: c }, S::Reserved { .. } | S::Ringing { .. }) if Some(c) == call => {
                self.go_ready(now)
            }
            (Input::PhoneLost { .. }, S::LoggedOut) => {}
            // Signalling lapsed, media did not: the call is not cut over a missed REGISTER.
            (
                Input::PhoneLost { why: PhoneLoss::RegistrationExpired | PhoneLoss::Unregistered },
                S::OnCall { .. } | S::WrapUp { .. },
            ) => self.logout_after_call = true,
            // Registered again before the call ended.
            (Input::Login, S::OnCall { .. } | S::WrapUp { .. }) => self.logout_after_call = false,
            (Input::PhoneLost { .. }, _) => {
                self.abandon_reserved();
                if let S::OnCall { call } = self.state {
                    self.out.push_back(Output::Abandon { call });
                }
                self.pending_pause = None;
                self.logout_after_call = false;
                self.go(S::LoggedOut, now)
            }
            // Anything else (a stale call id, a duplicate) changes nothing.
            _ => {}
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let Some((at, which)) = self.timer else { return };
        if now < at {
            return;
        }
        self.timer = None;
        match (which, &self.state) {
            (Timer::Reserve, AgentState::Reserved { call }) => {
                self.out.push_back(Output::Abandon { call: *call });
                self.go_ready(now)
            }
            (Timer::Ring, AgentState::Ringing { call }) => {
                self.out.push_back(Output::Abandon { call: *call });
                self.go(AgentState::Paused { reason: NO_ANSWER_REASON.into() }, now)
            }
            (Timer::WrapUp, AgentState::WrapUp { .. }) => self.end_wrap_up(now),
            _ => {}
        }
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<(Instant, Timer)> {
        self.timer
    }

    fn abandon_reserved(&mut self) {
        if let AgentState::Reserved { call } | AgentState::Ringing { call } = self.state {
            self.out.push_back(Output::Abandon { call });
        }
    }

    fn end_wrap_up(&mut self, now: Instant) {
        self.go_ready(now)
    }

    /// Available, or the pause asked for meanwhile, or logged out if the phone's
    /// registration lapsed meanwhile.
    fn go_ready(&mut self, now: Instant) {
        if std::mem::take(&mut self.logout_after_call) {
            self.pending_pause = None;
            return self.go(AgentState::LoggedOut, now);
        }
        match self.pending_pause.take() {
            Some(reason) => self.go(AgentState::Paused { reason }, now),
            None => self.go(AgentState::Available, now),
        }
    }

    fn go(&mut self, to: AgentState, now: Instant) {
        let spent = now.saturating_duration_since(self.entered).as_millis() as u64;
        match &self.state {
            AgentState::OnCall { .. } => {
                self.totals.calls += 1;
                self.totals.talk_ms += spent;
            }
            AgentState::WrapUp { .. } => self.totals.wrap_ms += spent,
            _ => {}
        }
        self.timer = match &to {
            AgentState::Reserved { .. } => Some((now + self.limits.reserve_timeout, Timer::Reserve)),
            AgentState::Ringing { .. } => Some((now + self.limits.ring_timeout, Timer::Ring)),
            AgentState::WrapUp { .. } => Some((now + self.limits.wrap_up, Timer::WrapUp)),
            _ => None,
        };
        self.idle_since = match (&to, self.idle_since) {
            (AgentState::Available, Some(t)) if self.state == AgentState::Available => Some(t),
            (AgentState::Available, _) => Some(now),
            _ => None,
        };
        if to == AgentState::LoggedOut {
            self.pending_pause = None;
        }
        self.entered = now;
        let from = std::mem::replace(&mut self.state, to.clone());
        self.out.push_back(Output::Changed { from, to });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    fn drain(a: &mut Agent) -> Vec<Output> {
        std::iter::from_fn(|| a.poll_output()).collect()
    }

    fn states(a: &mut Agent) -> Vec<&'static str> {
        drain(a)
            .into_iter()
            .filter_map(|o| match o {
                Output::Changed { to, .. } => Some(to.label()),
                _ => None,
            })
            .collect()
    }

    fn logged_in(t0: Instant) -> Agent {
        let mut a = Agent::new(1, AgentLimits::default(), t0);
        a.handle_input(Input::Login, t0);
        drain(&mut a);
        a
    }

    #[test]
    fn a_call_goes_reserved_on_call_wrap_up_available() {
        let t0 = Instant::now();
        let mut a = logged_in(t0);
        a.handle_input(Input::Reserve { call: 7 }, at(t0, 100));
        a.handle_input(Input::Connected { call: 7 }, at(t0, 105));
        a.handle_input(Input::CallEnded { call: 7 }, at(t0, 60_105));
        assert_eq!(states(&mut a), ["reserved", "on-call", "wrap-up"]);
        assert_eq!(a.poll_timeout(), Some((at(t0, 70_105), Timer::WrapUp)));
        a.handle_timeout(at(t0, 70_105));
        assert_eq!(states(&mut a), ["available"]);
        assert_eq!(a.totals(), AgentTotals { calls: 1, talk_ms: 60_000, wrap_ms: 10_000 });
        assert_eq!(a.idle_since(), Some(at(t0, 70_105)));
    }

    #[test]
    fn wrap_up_ends_early_when_the_agent_is_ready() {
        let t0 = Instant::now();
        let mut a = logged_in(t0);
        a.handle_input(Input::Reserve { call: 1 }, t0);
        a.handle_input(Input::Connected { call: 1 }, t0);
        a.handle_input(Input::CallEnded { call: 1 }, at(t0, 1000));
        a.handle_input(Input::Ready, at(t0, 3000));
        assert_eq!(a.state(), &AgentState::Available);
        assert_eq!(a.poll_timeout(), None);
    }

    #[test]
    fn a_reservation_that_is_never_bridged_is_released() {
        let t0 = Instant::now();
        let mut a = logged_in(t0);
        a.handle_input(Input::Reserve { call: 3 }, t0);
        drain(&mut a);
        a.handle_timeout(at(t0, 1999));
        assert_eq!(a.state(), &AgentState::Reserved { call: 3 });
        a.handle_timeout(at(t0, 2000));
        assert_eq!(drain(&mut a)[0], Output::Abandon { call: 3 });
        assert_eq!(a.state(), &AgentState::Available);
    }

    #[test]
    fn a_phone_that_does_not_answer_pauses_the_agent() {
        let t0 = Instant::now();
        let mut a = logged_in(t0);
        a.handle_input(Input::Reserve { call: 3 }, t0);
        a.handle_input(Input::Offered { call: 3 }, at(t0, 1));
        drain(&mut a);
        a.handle_timeout(at(t0, 8001));
        assert_eq!(drain(&mut a)[0], Output::Abandon { call: 3 });
        assert_eq!(a.state(), &AgentState::Paused { reason: NO_ANSWER_REASON.into() });
        assert_eq!(a.poll_timeout(), None);
    }

    #[test]
    fn a_pause_asked_for_on_a_call_waits_for_wrap_up() {
        let t0 = Instant::now();
        let mut a = logged_in(t0);
        a.handle_input(Input::Reserve { call: 3 }, t0);
        a.handle_input(Input::Connected { call: 3 }, t0);
        a.handle_input(Input::Pause { reason: "lunch".into() }, at(t0, 10));
        assert_eq!(a.state(), &AgentState::OnCall { call: 3 });
        a.handle_input(Input::CallEnded { call: 3 }, at(t0, 20));
        a.handle_timeout(at(t0, 10_020));
        assert_eq!(a.state(), &AgentState::Paused { reason: "lunch".into() });
    }

    #[test]
    fn a_lost_phone_on_a_call_logs_out_and_hands_the_call_back() {
        let t0 = Instant::now();
        let mut a = logged_in(t0);
        a.handle_input(Input::Reserve { call: 9 }, t0);
        a.handle_input(Input::Connected { call: 9 }, t0);
        drain(&mut a);
        a.handle_input(Input::PhoneLost { why: PhoneLoss::MediaTimeout }, at(t0, 500));
        let out = drain(&mut a);
        assert!(out.contains(&Output::Abandon { call: 9 }), "{out:?}");
        assert_eq!(a.state(), &AgentState::LoggedOut);
        assert_eq!(a.poll_timeout(), None);
    }

    #[test]
    fn a_registration_lapse_on_a_call_waits_for_the_call_to_end_then_logs_out() {
        let t0 = Instant::now();
        let mut a = logged_in(t0);
        a.handle_input(Input::Reserve { call: 9 }, t0);
        a.handle_input(Input::Connected { call: 9 }, t0);
        drain(&mut a);
        a.handle_input(Input::PhoneLost { why: PhoneLoss::RegistrationExpired }, at(t0, 500));
        assert!(drain(&mut a).is_empty(), "the call goes on: its media flows");
        assert_eq!(a.state(), &AgentState::OnCall { call: 9 });
        a.handle_input(Input::CallEnded { call: 9 }, at(t0, 9000));
        a.handle_input(Input::Ready, at(t0, 9500));
        assert_eq!(states(&mut a), ["wrap-up", "logged-out"], "not offered another call");
        // Registered again before the end: the agent stays in.
        let mut a = logged_in(t0);
        a.handle_input(Input::Reserve { call: 9 }, t0);
        a.handle_input(Input::Connected { call: 9 }, t0);
        a.handle_input(Input::PhoneLost { why: PhoneLoss::Unregistered }, at(t0, 500));
        a.handle_input(Input::Login, at(t0, 600));
        a.handle_input(Input::CallEnded { call: 9 }, at(t0, 9000));
        a.handle_input(Input::Ready, at(t0, 9500));
        assert_eq!(a.state(), &AgentState::Available);
    }

    #[test]
    fn stale_call_ids_change_nothing() {
        let t0 = Instant::now();
        let mut a = logged_in(t0);
        a.handle_input(Input::Reserve { call: 1 }, t0);
        drain(&mut a);
        for i in [
            Input::Connected { call: 2 },
            Input::CallEnded { call: 2 },
            Input::Declined { call: 2 },
            Input::Reserve { call: 5 },
        ] {
            a.handle_input(i, t0);
        }
        assert_eq!(a.state(), &AgentState::Reserved { call: 1 });
        assert!(drain(&mut a).is_empty());
    }

    #[test]
    fn a_restart_leaves_no_agent_on_a_call_that_is_gone() {
        let t0 = Instant::now();
        let l = AgentLimits::default();
        let on_call = Agent::recover(1, l, AgentState::OnCall { call: 4 }, AgentTotals::default(), t0);
        assert_eq!(on_call.state(), &AgentState::WrapUp { call: 4 });
        assert_eq!(on_call.poll_timeout(), Some((at(t0, 10_000), Timer::WrapUp)));
        let ringing = Agent::recover(2, l, AgentState::Ringing { call: 5 }, AgentTotals::default(), t0);
        assert_eq!(ringing.state(), &AgentState::Available);
        let paused = Agent::recover(3, l, AgentState::Paused { reason: "x".into() }, AgentTotals::default(), t0);
        assert_eq!(paused.state(), &AgentState::Paused { reason: "x".into() });
    }

    #[test]
    fn every_state_that_waits_on_someone_has_a_timer() {
        // Drive random inputs; whenever the agent is reserved, ringing or in wrap-up, a
        // timer is armed, and firing it always leaves those states.
        use rand::{RngExt, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let t0 = Instant::now();
        let mut a = Agent::new(1, AgentLimits::default(), t0);
        let mut now = t0;
        for _ in 0..20_000 {
            now += Duration::from_millis(rng.random_range(0..3000));
            let call = rng.random_range(0..3u64);
            let input = match rng.random_range(0..11) {
                0 => Input::Login,
                1 => Input::Logout,
                2 => Input::Pause { reason: "p".into() },
                3 => Input::Ready,
                4 => Input::Reserve { call },
                5 => Input::Offered { call },
                6 => Input::Connected { call },
                7 => Input::Declined { call },
                8 => Input::Released { call },
                9 => Input::CallEnded { call },
                _ => Input::PhoneLost { why: PhoneLoss::RegistrationExpired },
            };
            a.handle_input(input, now);
            a.handle_timeout(now);
            drain(&mut a);
            let waits = matches!(
                a.state(),
                AgentState::Reserved { .. } | AgentState::Ringing { .. } | AgentState::WrapUp { .. }
            );
            assert_eq!(waits, a.poll_timeout().is_some(), "{:?}", a.state());
            if let Some((t, _)) = a.poll_timeout() {
                a.handle_timeout(t);
                assert!(!matches!(a.state(), AgentState::Reserved { .. } | AgentState::Ringing { .. }));
            }
        }
    }
}
