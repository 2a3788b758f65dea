//! A discrete-event simulation of an agent shift: a pacer, agents, and calls that ring,
//! answer (a person or a machine), or not. Pure and seeded: one seed gives one shift, on
//! any machine. It jumps from event to event, so an 8-hour shift takes well under a second.
//!
//! The agents are the real agent state machines ([`crate::agent::Agent`]) and the calls are
//! routed by the real router ([`crate::router::Router`], longest idle). A person the
//! router has no agent for within the patience (2 s) after AMD says human is abandoned (the
//! safe-harbour message). Occupancy is reported two ways: talk time, and talk plus
//! wrap-up, each ÷ logged-in time.

use super::baseline::{Baseline, BaselineConfig};
use super::model::LogNormal;
use super::pacer::{AgentPhase, Input, Outcome, Output, Pacer, PacerConfig};
use crate::agent::{self, Agent, AgentLimits, AgentState};
use crate::router::{self, LiveCall, Membership, ReadyAgent, Router};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq)]
pub struct ShiftConfig {
    pub agents: u32,
    pub length: Duration,
    /// Share of dials answered (by a person or a machine).
    pub connect_rate: f64,
    /// Share of answers that are people.
    pub live_rate: f64,
    pub talk: LogNormal,
    pub wrap: Duration,
    /// A person waits this long for an agent, then is abandoned.
    pub patience: Duration,
    /// Time from the dial to the answer.
    pub answer_after: LogNormal,
    /// Unanswered calls end after this.
    pub no_answer_after: Duration,
    /// Share of the unanswered that are busy (they end in 2-5 s) and that fail (0.5-3 s).
    pub busy_share: f64,
    pub fail_share: f64,
    /// From the answer to AMD's verdict: a person (end of greeting), a machine.
    pub human_verdict_ms: (u64, u64),
    pub machine_verdict_ms: (u64, u64),
}

impl ShiftConfig {
    /// The mix the campaign issue names: 30% connects, 60% of them people, talk log-normal
    /// around 120 s, 10 s wrap-up, an 8-hour shift.
    pub fn standard(agents: u32) -> Self {
        ShiftConfig {
            agents,
            length: Duration::from_secs(8 * 3600),
            connect_rate: 0.30,
            live_rate: 0.60,
            talk: LogNormal { mean_ms: 120_000.0, sigma: 0.6 },
            wrap: Duration::from_secs(10),
            patience: Duration::from_secs(2),
            answer_after: LogNormal { mean_ms: 9_000.0, sigma: 0.45 },
            no_answer_after: Duration::from_secs(25),
            busy_share: 0.25,
            fail_share: 0.10,
            human_verdict_ms: (1_500, 3_000),
            machine_verdict_ms: (2_500, 4_500),
        }
    }
}

/// Who paces the shift.
#[derive(Debug, Clone, PartialEq)]
pub enum Controller {
    Pacer(PacerConfig),
    Baseline(BaselineConfig),
}

impl Controller {
    pub fn label(&self) -> String {
        match self {
            Controller::Pacer(c) => format!("waihu {}", c.mode.label()),
            Controller::Baseline(_) => "vicidial-style adaptive".into(),
        }
    }
}

enum Running {
    Pacer(Box<Pacer>),
    Baseline(Box<Baseline>),
}

impl Running {
    fn input(&mut self, i: Input, now: Instant) {
        match self {
            Running::Pacer(p) => p.handle_input(i, now),
            Running::Baseline(b) => b.handle_input(i, now),
        }
    }

    fn timeout(&mut self, now: Instant) {
        match self {
            Running::Pacer(p) => p.handle_timeout(now),
            Running::Baseline(b) => b.handle_timeout(now),
        }
    }

    fn output(&mut self) -> Option<Output> {
        match self {
            Running::Pacer(p) => p.poll_output(),
            Running::Baseline(b) => b.poll_output(),
        }
    }

    fn next(&self) -> Option<Instant> {
        match self {
            Running::Pacer(p) => p.poll_timeout(),
            Running::Baseline(b) => b.poll_timeout(),
        }
    }
}

/// What one shift came to.
#[derive(Debug, Clone, PartialEq)]
pub struct ShiftReport {
    pub agents: u32,
    pub seed: u64,
    pub dials: u64,
    pub lives: u64,
    pub abandons: u64,
    pub connected: u64,
    /// Talk time ÷ logged-in time.
    pub talk_occupancy: f64,
    /// (Talk + wrap-up) ÷ logged-in time: the share of the shift agents were not idle.
    pub busy_occupancy: f64,
    /// The highest abandon rate the shift reached from its 100th live answer on (the rate
    /// so far, measured at each abandon).
    pub peak_rate: f64,
    /// Share of the pacer's ticks spent guarded (predictive fallen back to progressive).
    pub guarded_share: f64,
    /// The pacer's safety margin at the end of the shift (standard deviations).
    pub final_margin: f64,
}

impl ShiftReport {
    pub fn abandon_rate(&self) -> f64 {
        if self.lives == 0 {
            return 0.0;
        }
        self.abandons as f64 / self.lives as f64
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Resolve {
        call: u64,
        outcome: u8,
    },
    /// A router deadline falls due.
    Patience,
    TalkEnd {
        agent: u32,
        call: u64,
    },
    /// An agent's timer (its wrap-up) falls due.
    AgentTimer {
        agent: u32,
    },
}

const HUMAN: u8 = 0;
const MACHINE: u8 = 1;
const NO_CONNECT: u8 = 2;

struct World<'a> {
    cfg: &'a ShiftConfig,
    rng: StdRng,
    t0: Instant,
    now_ms: u64,
    end_ms: u64,
    events: BinaryHeap<Reverse<(u64, u64, Ev)>>,
    seq: u64,
    agents: Vec<Agent>,
    router: Router,
    next_call: u64,
    talk_ms: u64,
    wrap_ms: u64,
    report: ShiftReport,
}

impl World<'_> {
    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    fn schedule(&mut self, ms: u64, ev: Ev) {
        self.seq += 1;
        self.events.push(Reverse((ms, self.seq, ev)));
    }

    fn uniform_ms(&mut self, (lo, hi): (u64, u64)) -> u64 {
        lo + (self.rng.random::<f64>() * hi.saturating_sub(lo) as f64) as u64
    }

    fn normal(&mut self) -> f64 {
        // Box-Muller.
        let u1 = self.rng.random::<f64>().max(1e-12);
        let u2 = self.rng.random::<f64>();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// Draws how a new call will come out, and when.
    fn dial(&mut self) -> (u64, u8) {
        let cfg = self.cfg;
        let no_answer = cfg.no_answer_after.as_millis() as u64;
        if self.rng.random::<f64>() < cfg.connect_rate {
            let z = self.normal();
            let answer = (cfg.answer_after.from_normal(z) as u64).clamp(2_000, no_answer.saturating_sub(500));
            if self.rng.random::<f64>() < cfg.live_rate {
                (answer + self.uniform_ms(cfg.human_verdict_ms), HUMAN)
            } else {
                (answer + self.uniform_ms(cfg.machine_verdict_ms), MACHINE)
            }
        } else {
            let u = self.rng.random::<f64>();
            if u < cfg.busy_share {
                (self.uniform_ms((2_000, 5_000)), NO_CONNECT)
            } else if u < cfg.busy_share + cfg.fail_share {
                (self.uniform_ms((500, 3_000)), NO_CONNECT)
            } else {
                (no_answer, NO_CONNECT)
            }
        }
    }

    /// Books talk (or wrap) time, cut at the end of the shift.
    fn book(&mut self, from: u64, to: u64, talk: bool) {
        let d = to.min(self.end_ms).saturating_sub(from);
        if talk {
            self.talk_ms += d;
        } else {
            self.wrap_ms += d;
        }
    }

    /// The router gave `call` to `agent`: they talk.
    fn connect(&mut self, call: u64, agent: u32, ctl: &mut Running) {
        let now = self.at(self.now_ms);
        self.report.connected += 1;
        ctl.input(Input::Connected { call }, now);
        self.agent_input(agent, agent::Input::Reserve { call }, ctl);
        self.agent_input(agent, agent::Input::Connected { call }, ctl);
        let z = self.normal();
        let talk = self.cfg.talk.from_normal(z).max(1_000.0) as u64;
        self.book(self.now_ms, self.now_ms + talk, true);
        self.schedule(self.now_ms + talk, Ev::TalkEnd { agent, call });
    }

    /// Feeds an agent's machine, and carries its outputs to the pacer and the router.
    fn agent_input(&mut self, agent: u32, input: agent::Input, ctl: &mut Running) {
        let now = self.at(self.now_ms);
        self.agents[agent as usize].handle_input(input, now);
        self.agent_outputs(agent, ctl);
    }

    fn agent_outputs(&mut self, agent: u32, ctl: &mut Running) {
        let now = self.at(self.now_ms);
        while let Some(o) = self.agents[agent as usize].poll_output() {
            let agent::Output::Changed { to, .. } = o else { continue };
            let phase = match to {
                AgentState::LoggedOut | AgentState::Paused { .. } => AgentPhase::Offline,
                AgentState::Available => AgentPhase::Idle,
                AgentState::WrapUp { .. } => AgentPhase::WrapUp,
                _ => AgentPhase::Talking,
            };
            ctl.input(Input::Agent { agent, phase }, now);
            match to {
                AgentState::Available => {
                    let a = &self.agents[agent as usize];
                    let ready = ReadyAgent {
                        agent,
                        pools: vec![Membership { pool: 0, level: 0 }],
                        idle_since: a.idle_since().unwrap_or(now),
                        talk_ms: a.totals().talk_ms,
                        calls: a.totals().calls,
                    };
                    self.router.handle_input(router::Input::Ready(ready), now);
                }
                AgentState::WrapUp { .. } => {
                    if let Some((at, _)) = self.agents[agent as usize].poll_timeout() {
                        let ms = at.saturating_duration_since(self.t0).as_millis() as u64;
                        self.schedule(ms, Ev::AgentTimer { agent });
                    }
                }
                _ => {}
            }
        }
        self.router_outputs(ctl);
    }

    /// Carries the router's decisions out: a call given to an agent, or abandoned.
    fn router_outputs(&mut self, ctl: &mut Running) {
        let now = self.at(self.now_ms);
        while let Some(o) = self.router.poll_output() {
            match o {
                router::Output::Assign { call, agent, .. } => self.connect(call, agent, ctl),
                router::Output::Expired { call } => {
                    self.report.abandons += 1;
                    if self.report.lives >= 100 {
                        let rate = self.report.abandon_rate();
                        self.report.peak_rate = self.report.peak_rate.max(rate);
                    }
                    ctl.input(Input::Abandoned { call }, now);
                }
                router::Output::Offer { .. } | router::Output::Withdraw { .. } => {}
            }
        }
    }

    fn handle(&mut self, ev: Ev, ctl: &mut Running) {
        let now = self.at(self.now_ms);
        match ev {
            Ev::Resolve { call, outcome } => {
                let o = match outcome {
                    HUMAN => Outcome::Human,
                    MACHINE => Outcome::Machine,
                    _ => Outcome::NoConnect,
                };
                ctl.input(Input::Resolved { call, outcome: o }, now);
                if o == Outcome::Human {
                    self.report.lives += 1;
                    let deadline = now + self.cfg.patience;
                    let live =
                        LiveCall { call, pool: 0, priority: 0, min_level: 0, for_agent: None, since: now, deadline };
                    self.router.handle_input(router::Input::Enqueue(live), now);
                    if self.router.waiting() > 0 {
                        let ms = self.now_ms + self.cfg.patience.as_millis() as u64;
                        self.schedule(ms, Ev::Patience);
                    }
                    self.router_outputs(ctl);
                }
            }
            Ev::Patience => {
                self.router.handle_timeout(now);
                self.router_outputs(ctl);
            }
            Ev::TalkEnd { agent, call } => {
                let wrap = self.cfg.wrap.as_millis() as u64;
                self.book(self.now_ms, self.now_ms + wrap, false);
                self.agent_input(agent, agent::Input::CallEnded { call }, ctl);
            }
            Ev::AgentTimer { agent } => {
                self.agents[agent as usize].handle_timeout(now);
                self.agent_outputs(agent, ctl);
            }
        }
    }

    fn drain(&mut self, ctl: &mut Running) {
        while let Some(Output::Dial { count }) = ctl.output() {
            let now = self.at(self.now_ms);
            for _ in 0..count {
                let call = self.next_call;
                self.next_call += 1;
                self.report.dials += 1;
                let (after, outcome) = self.dial();
                ctl.input(Input::Dialled { call }, now);
                self.schedule(self.now_ms + after, Ev::Resolve { call, outcome });
            }
        }
    }
}

/// Runs one shift and reports it.
pub fn run_shift(cfg: &ShiftConfig, controller: &Controller, seed: u64) -> ShiftReport {
    // Any origin will do; every time is an offset from it.
    #[allow(clippy::disallowed_methods)]
    let t0 = Instant::now();
    let mut ctl = match controller {
        Controller::Pacer(c) => Running::Pacer(Box::new(Pacer::new(c.clone(), seed, t0))),
        Controller::Baseline(c) => Running::Baseline(Box::new(Baseline::new(c.clone(), t0))),
    };
    let mut w = World {
        cfg,
        rng: StdRng::seed_from_u64(seed),
        t0,
        now_ms: 0,
        end_ms: cfg.length.as_millis() as u64,
        events: BinaryHeap::new(),
        seq: 0,
        agents: (0..cfg.agents)
            .map(|a| {
                let limits = AgentLimits { wrap_up: cfg.wrap, reserve_timeout: cfg.length, ring_timeout: cfg.length };
                Agent::new(a, limits, t0)
            })
            .collect(),
        router: Router::new(t0),
        next_call: 0,
        talk_ms: 0,
        wrap_ms: 0,
        report: ShiftReport {
            agents: cfg.agents,
            seed,
            dials: 0,
            lives: 0,
            abandons: 0,
            connected: 0,
            talk_occupancy: 0.0,
            busy_occupancy: 0.0,
            peak_rate: 0.0,
            guarded_share: 0.0,
            final_margin: 0.0,
        },
    };
    let (mut ticks, mut guarded) = (0u64, 0u64);
    for agent in 0..cfg.agents {
        w.agent_input(agent, agent::Input::Login, &mut ctl);
    }
    loop {
        let tick = ctl.next().map(|t| t.saturating_duration_since(t0).as_millis() as u64);
        let ev = w.events.peek().map(|Reverse((ms, _, _))| *ms);
        let next = match (tick, ev) {
            (Some(t), Some(e)) => t.min(e),
            (Some(t), None) => t,
            (None, Some(e)) => e,
            (None, None) => break,
        };
        if next >= w.end_ms {
            break;
        }
        w.now_ms = w.now_ms.max(next);
        if ev == Some(next) {
            if let Some(Reverse((_, _, e))) = w.events.pop() {
                w.handle(e, &mut ctl);
            }
        } else {
            ctl.timeout(w.at(w.now_ms));
            if let Running::Pacer(p) = &ctl {
                ticks += 1;
                guarded += u64::from(p.status().guarded);
            }
        }
        w.drain(&mut ctl);
    }
    let logged_in = cfg.agents as f64 * w.end_ms as f64;
    w.report.talk_occupancy = w.talk_ms as f64 / logged_in.max(1.0);
    w.report.busy_occupancy = (w.talk_ms + w.wrap_ms) as f64 / logged_in.max(1.0);
    w.report.guarded_share = guarded as f64 / ticks.max(1) as f64;
    if let Running::Pacer(p) = &ctl {
        w.report.final_margin = p.status().margin;
    }
    w.report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pacing::pacer::DialMode;

    fn short(agents: u32) -> ShiftConfig {
        ShiftConfig { length: Duration::from_secs(3600), ..ShiftConfig::standard(agents) }
    }

    #[test]
    fn a_seed_gives_the_same_shift_every_time() {
        let c = Controller::Pacer(PacerConfig::default());
        let a = run_shift(&short(10), &c, 3);
        let b = run_shift(&short(10), &c, 3);
        assert_eq!(a, b);
        assert_ne!(a, run_shift(&short(10), &c, 4));
    }

    #[test]
    fn progressive_abandons_nobody() {
        let c = Controller::Pacer(PacerConfig { mode: DialMode::Progressive, ..PacerConfig::default() });
        let r = run_shift(&short(10), &c, 1);
        assert!(r.lives > 100, "{r:?}");
        assert_eq!(r.abandons, 0, "{r:?}");
    }

    #[test]
    fn predictive_beats_progressive_within_the_cap() {
        let prog = Controller::Pacer(PacerConfig { mode: DialMode::Progressive, ..PacerConfig::default() });
        let pred = Controller::Pacer(PacerConfig::default());
        let cfg = short(20);
        let a = run_shift(&cfg, &prog, 5);
        let b = run_shift(&cfg, &pred, 5);
        assert!(b.busy_occupancy > a.busy_occupancy + 0.1, "{a:?} {b:?}");
        assert!(b.abandon_rate() <= 0.03, "{b:?}");
    }

    #[test]
    fn a_small_team_is_never_worse_off_with_predictive() {
        let prog = Controller::Pacer(PacerConfig { mode: DialMode::Progressive, ..PacerConfig::default() });
        let pred = Controller::Pacer(PacerConfig::default());
        let cfg = ShiftConfig { length: Duration::from_secs(4 * 3600), ..ShiftConfig::standard(5) };
        for seed in [11, 12] {
            let a = run_shift(&cfg, &prog, seed);
            let b = run_shift(&cfg, &pred, seed);
            assert!(b.busy_occupancy >= a.busy_occupancy, "{a:?} {b:?}");
            assert!(b.abandon_rate() <= 0.03, "{b:?}");
        }
    }
}
