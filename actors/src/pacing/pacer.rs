//! The pacer: how many calls to launch now. Pure: it sees agents and calls as inputs with
//! `now`, says `Dial { count }`, and wakes on its own tick.
//!
//! Predictive mode forecasts, for each second of the next half minute, how many agents
//! will be free (idle ones, those in wrap-up, and those whose talk is likely to end, from
//! the observed talk and wrap-up time distributions) and how many live people the calls in
//! flight will produce (from the observed time-to-answer of recent calls, conditioned on
//! each call's age). It launches the most new calls for which, at every second, expected
//! people stay at or under expected free agents by a safety margin of `z` standard
//! deviations. `z` follows the abandon rate towards a target below the cap, and when the
//! window's rate comes near the cap the pacer drops to progressive, which cannot abandon:
//! it throttles before it crosses, not after.

use super::ledger::{AbandonLedger, AbandonTotals};
use super::model::{normal_cdf, DurationModel, LogNormal, OutcomeModel, Resolution};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::{Duration, Instant};
use waihu_model::CallId;

pub type AgentId = u32;

/// What the pacer needs to know of an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentPhase {
    Offline,
    /// Ready for a call.
    Idle,
    Talking,
    WrapUp,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DialMode {
    /// Agents ask for each contact: the pacer launches nothing itself.
    Preview,
    /// One line per idle agent: nobody can be abandoned.
    Progressive,
    /// A fixed number of lines per idle agent.
    Ratio {
        lines_per_agent: f64,
    },
    Predictive,
    /// No agents: keep `lines` calls up (messages, voicemail drops).
    Broadcast {
        lines: u32,
    },
}

impl DialMode {
    pub fn label(&self) -> &'static str {
        match self {
            DialMode::Preview => "preview",
            DialMode::Progressive => "progressive",
            DialMode::Ratio { .. } => "ratio",
            DialMode::Predictive => "predictive",
            DialMode::Broadcast { .. } => "broadcast",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PacerConfig {
    pub mode: DialMode,
    /// The legal abandon cap over the window (3%).
    pub abandon_cap: f64,
    /// What predictive aims at, below the cap.
    pub abandon_target: f64,
    /// Predictive falls back to progressive when fewer than two more abandons would keep
    /// the window's rate within `guard × cap`.
    pub guard: f64,
    /// The share of that room the calls in flight may risk at once (no bursts).
    pub risk_share: f64,
    /// A resolved call teaches the outcome model only once its dial is this old, when all
    /// of its dial cohort has resolved too. Sooner, the sample would hold only the quick
    /// outcomes (busy, failures, answers) and not yet the no-answers, and the live-person
    /// rate and timing would come out wrong (it over-dialled by a third at a shift's start).
    pub mature_after: Duration,
    /// Predictive waits (dialling progressively) until this many matured calls taught it,
    /// and at least `warmup_per_agent` per logged-in agent: a big team launches hundreds
    /// of calls on the estimate at once, so the estimate must rest on more calls.
    pub warmup_calls: u64,
    pub warmup_per_agent: u64,
    /// The legal window (rolling).
    pub window: Duration,
    /// Estimated share of machine verdicts that were people (counted as abandons).
    pub amd_false_positive_rate: f64,
    /// A live person must reach an agent this soon (the 2-second rule).
    pub patience: Duration,
    pub tick: Duration,
    pub horizon: Duration,
    /// Never more calls in flight than this many per logged-in agent.
    pub max_lines_per_agent: f64,
    /// Never more new calls than this in one tick.
    pub max_burst: u32,
    /// The safety margin predictive starts with, in standard deviations, its bounds, and
    /// how far one outcome moves it.
    pub z_start: f64,
    pub z_bounds: (f64, f64),
    pub z_step: f64,
    /// Priors, until the campaign's own calls say otherwise.
    pub prior_human_rate: f64,
    pub prior_talk: LogNormal,
    pub prior_wrap: LogNormal,
}

impl PacerConfig {
    /// Predictive aiming at `target` abandons: a lower target starts with a wider margin
    /// (1.5 standard deviations more per factor of ten below 2%), so the shift's first
    /// minutes do not spend what the target allows.
    pub fn for_target(target: f64) -> Self {
        let d = PacerConfig::default();
        let t = target.clamp(1e-5, d.abandon_cap);
        let z = d.z_start + 1.5 * (d.abandon_target / t).log10().max(0.0);
        PacerConfig { abandon_target: t, z_start: z, z_bounds: (d.z_bounds.0, d.z_bounds.1.max(z + 2.0)), ..d }
    }
}

impl Default for PacerConfig {
    fn default() -> Self {
        PacerConfig {
            mode: DialMode::Predictive,
            abandon_cap: 0.03,
            abandon_target: 0.02,
            guard: 0.9,
            risk_share: 0.25,
            mature_after: Duration::from_secs(60),
            warmup_calls: 200,
            warmup_per_agent: 5,
            window: Duration::from_secs(30 * 24 * 3600),
            amd_false_positive_rate: 0.0,
            patience: Duration::from_secs(2),
            tick: Duration::from_millis(500),
            horizon: Duration::from_secs(32),
            max_lines_per_agent: 6.0,
            max_burst: 500,
            z_start: 2.0,
            z_bounds: (-2.0, 4.0),
            z_step: 0.05,
            prior_human_rate: 0.15,
            prior_talk: LogNormal { mean_ms: 120_000.0, sigma: 0.6 },
            prior_wrap: LogNormal { mean_ms: 10_000.0, sigma: 0.3 },
        }
    }
}

/// How a dialled call came out, as the campaign reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A live person, ready for an agent now.
    Human,
    Machine,
    /// Busy, no answer, congestion, a failure: nobody to connect.
    NoConnect,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Input {
    Agent {
        agent: AgentId,
        phase: AgentPhase,
    },
    /// A call the pacer asked for went out.
    Dialled {
        call: CallId,
    },
    /// Calls the pacer asked for that could not go out (no contact due, a trunk full).
    NotDialled {
        count: u32,
    },
    Resolved {
        call: CallId,
        outcome: Outcome,
    },
    /// The waiting person reached an agent.
    Connected {
        call: CallId,
    },
    /// The waiting person got the safe-harbour message instead.
    Abandoned {
        call: CallId,
    },
    /// The call is over (whatever happened): a person still counted as waiting is not
    /// (they hung up before any agent came, which is no abandon of ours).
    Gone {
        call: CallId,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Dial { count: u32 },
}

/// The pacer's view, for the campaign's status.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PacerStatus {
    /// Calls in flight per available (idle or soon free) agent.
    pub dial_level: f64,
    pub lines_in_flight: usize,
    pub waiting: usize,
    pub agents_idle: usize,
    pub agents_logged_in: usize,
    /// Agents expected free within the horizon.
    pub forecast_free_agents: f64,
    /// Live people expected from the calls in flight within the horizon.
    pub forecast_people: f64,
    /// Abandons expected from the calls in flight.
    pub expected_abandons: f64,
    pub abandons: AbandonTotals,
    /// Abandons the cap still allows over the window.
    pub headroom: f64,
    /// Predictive's current safety margin (standard deviations).
    pub margin: f64,
    /// Predictive has fallen back to progressive to protect the cap.
    pub guarded: bool,
}

#[derive(Debug, Clone)]
pub struct Pacer {
    cfg: PacerConfig,
    agents: HashMap<AgentId, (AgentPhase, Instant)>,
    /// Calls in flight, by when they were dialled.
    calls: HashMap<CallId, Instant>,
    /// Calls asked for and not yet reported.
    pending: u32,
    /// Live people waiting for an agent.
    waiting: HashMap<CallId, Instant>,
    outcomes: OutcomeModel,
    talk: DurationModel,
    wrap: DurationModel,
    ledger: AbandonLedger,
    z: f64,
    next_tick: Instant,
    out: Option<Output>,
    status: PacerStatus,
    started: bool,
    /// Resolved calls waiting to mature, by dial time: (dialled, age at resolution, how).
    maturing: BinaryHeap<Reverse<(Instant, u64, bool)>>,
    matured: u64,
}

/// The forecast at one decision: per horizon second, what is expected.
#[derive(Debug, Default)]
struct Forecast {
    /// Expected people by then (waiting + in flight), and its variance.
    people: Vec<f64>,
    people_var: Vec<f64>,
    /// Expected free agents by then (plus the patience), and its variance.
    free: Vec<f64>,
    free_var: Vec<f64>,
    /// P(a call dialled now yields a person by then).
    fresh: Vec<f64>,
    /// The people expected from calls in flight (not those already waiting).
    from_calls: Vec<f64>,
    /// Relative variance of the estimated live-person rate: the calls' expected people are
    /// all off together when it is off.
    rate_rel_var: f64,
}

impl Forecast {
    /// Mean and variance of people minus free agents by horizon second `j`, with `k` new
    /// calls.
    fn net(&self, j: usize, k: f64) -> (f64, f64) {
        let g = self.fresh[j];
        let calls = self.from_calls[j] + k * g;
        let mu = self.people[j] + k * g - self.free[j];
        let var = self.people_var[j] + self.free_var[j] + k * g * (1.0 - g) + calls * calls * self.rate_rel_var;
        (mu, var)
    }
}

impl Pacer {
    /// `seed` is for the modes that draw random numbers; the current ones do not.
    pub fn new(cfg: PacerConfig, _seed: u64, now: Instant) -> Self {
        let outcomes = OutcomeModel::new(3000, cfg.prior_human_rate, (4, 28), 50.0);
        let talk = DurationModel::new(1000, 3600, 2000, cfg.prior_talk, 20.0);
        let wrap = DurationModel::new(500, 240, 2000, cfg.prior_wrap, 20.0);
        let ledger = AbandonLedger::new(cfg.window, cfg.amd_false_positive_rate);
        let z = cfg.z_start;
        Pacer {
            cfg,
            agents: HashMap::new(),
            calls: HashMap::new(),
            pending: 0,
            waiting: HashMap::new(),
            outcomes,
            talk,
            wrap,
            ledger,
            z,
            next_tick: now,
            out: None,
            status: PacerStatus {
                dial_level: 0.0,
                lines_in_flight: 0,
                waiting: 0,
                agents_idle: 0,
                agents_logged_in: 0,
                forecast_free_agents: 0.0,
                forecast_people: 0.0,
                expected_abandons: 0.0,
                abandons: AbandonLedger::new(Duration::ZERO, 0.0).totals(),
                headroom: 0.0,
                margin: 0.0,
                guarded: false,
            },
            started: false,
            maturing: BinaryHeap::new(),
            matured: 0,
        }
    }

    pub fn config(&self) -> &PacerConfig {
        &self.cfg
    }

    pub fn status(&self) -> PacerStatus {
        self.status
    }

    pub fn handle_input(&mut self, input: Input, now: Instant) {
        match input {
            Input::Agent { agent, phase } => {
                let old = self.agents.insert(agent, (phase, now));
                if let Some((was, since)) = old {
                    let lasted = now.saturating_duration_since(since).as_millis() as u64;
                    match (was, phase) {
                        (AgentPhase::Talking, p) if p != AgentPhase::Talking => self.talk.observe(lasted),
                        (AgentPhase::WrapUp, p) if p != AgentPhase::WrapUp => self.wrap.observe(lasted),
                        _ => {}
                    }
                }
                if phase == AgentPhase::Offline {
                    self.agents.remove(&agent);
                }
            }
            Input::Dialled { call } => {
                self.pending = self.pending.saturating_sub(1);
                self.calls.insert(call, now);
            }
            Input::NotDialled { count } => self.pending = self.pending.saturating_sub(count),
            Input::Resolved { call, outcome } => {
                let Some(at) = self.calls.remove(&call) else { return };
                let age = now.saturating_duration_since(at).as_millis() as u64;
                self.maturing.push(Reverse((at, age, outcome == Outcome::Human)));
                match outcome {
                    Outcome::Human => {
                        self.ledger.live(now);
                        self.waiting.insert(call, now);
                    }
                    Outcome::Machine => self.ledger.machine(now),
                    Outcome::NoConnect => {}
                }
            }
            Input::Connected { call } => {
                if self.waiting.remove(&call).is_some() {
                    self.z -= self.cfg.z_step * self.cfg.abandon_target;
                    self.clamp_z();
                }
            }
            Input::Gone { call } => {
                self.waiting.remove(&call);
                self.calls.remove(&call);
            }
            Input::Abandoned { call } => {
                if self.waiting.remove(&call).is_some() {
                    self.ledger.abandoned(now);
                    self.z += self.cfg.z_step * (1.0 - self.cfg.abandon_target);
                    self.clamp_z();
                }
            }
        }
    }

    fn clamp_z(&mut self) {
        self.z = self.z.clamp(self.cfg.z_bounds.0, self.cfg.z_bounds.1);
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        Some(self.next_tick)
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.take()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if now < self.next_tick && self.started {
            return;
        }
        self.started = true;
        self.next_tick = now + self.cfg.tick;
        self.ledger.expire(now);
        self.mature(now);
        let count = self.decide(now);
        if count > 0 {
            self.pending += count;
            self.out = Some(Output::Dial { count });
        }
    }

    /// Teaches the outcome model the calls whose whole dial cohort has resolved.
    fn mature(&mut self, now: Instant) {
        while let Some(Reverse((at, age, human))) = self.maturing.peek().copied() {
            if now.saturating_duration_since(at) < self.cfg.mature_after {
                break;
            }
            self.maturing.pop();
            let r = if human { Resolution::Human } else { Resolution::NoAgent };
            self.outcomes.observe(age, r);
            self.matured += 1;
        }
    }

    fn in_flight(&self) -> usize {
        self.calls.len() + self.pending as usize
    }

    fn decide(&mut self, now: Instant) -> u32 {
        let logged_in = self.agents.len();
        let idle = self.agents.values().filter(|(p, _)| *p == AgentPhase::Idle).count();
        let in_flight = self.in_flight();
        let waiting = self.waiting.len();
        let totals = self.ledger.totals();
        let progressive = idle.saturating_sub(in_flight + waiting);
        let mut guarded = false;
        let mut fc = None;
        let wanted = match self.cfg.mode {
            DialMode::Preview => 0,
            DialMode::Progressive => progressive,
            DialMode::Ratio { lines_per_agent } => {
                ((lines_per_agent * idle as f64).floor() as usize).saturating_sub(in_flight + waiting)
            }
            DialMode::Broadcast { lines } => (lines as usize).saturating_sub(in_flight),
            DialMode::Predictive => {
                // The abandons the window still allows under guard × cap: below two, only
                // progressive (a single burst must not cross the cap); otherwise the calls
                // in flight may risk a share of it.
                let room = totals.headroom(self.cfg.guard * self.cfg.abandon_cap);
                let warmup = self.cfg.warmup_calls.max(self.cfg.warmup_per_agent * logged_in as u64);
                guarded = room < 2.0 || self.matured < warmup;
                let f = self.forecast(now, idle);
                let k = if guarded || logged_in == 0 { 0 } else { self.most_calls(&f, room * self.cfg.risk_share) };
                fc = Some(f);
                k.max(progressive)
            }
        };
        let limit = match self.cfg.mode {
            DialMode::Broadcast { .. } => usize::MAX,
            _ => (self.cfg.max_lines_per_agent * logged_in as f64) as usize,
        };
        let count = wanted.min(limit.saturating_sub(in_flight)).min(self.cfg.max_burst as usize) as u32;
        self.update_status(idle, logged_in, in_flight + count as usize, totals, guarded, fc.as_ref(), count);
        count
    }

    #[allow(clippy::too_many_arguments)]
    fn update_status(
        &mut self,
        idle: usize,
        logged_in: usize,
        lines: usize,
        totals: AbandonTotals,
        guarded: bool,
        f: Option<&Forecast>,
        added: u32,
    ) {
        let last = |v: &Vec<f64>| v.last().copied().unwrap_or(0.0);
        let (free, people, abandons) = match f {
            Some(f) => {
                let fresh = added as f64 * last(&f.fresh);
                let mut worst = 0.0f64;
                for j in 0..f.people.len() {
                    let (mu, var) = f.net(j, added as f64);
                    worst = worst.max(expected_excess(mu, var));
                }
                (last(&f.free), last(&f.people) + fresh, worst)
            }
            None => (idle as f64, 0.0, 0.0),
        };
        let available = (idle as f64).max(free).max(1.0);
        self.status = PacerStatus {
            dial_level: lines as f64 / available,
            lines_in_flight: lines,
            waiting: self.waiting.len(),
            agents_idle: idle,
            agents_logged_in: logged_in,
            forecast_free_agents: free,
            forecast_people: people,
            expected_abandons: abandons,
            abandons: totals,
            headroom: totals.headroom(self.cfg.abandon_cap),
            margin: self.z,
            guarded,
        };
    }

    fn forecast(&mut self, now: Instant, idle: usize) -> Forecast {
        self.outcomes.refresh();
        self.talk.refresh();
        self.wrap.refresh();
        let steps = (self.cfg.horizon.as_secs() as usize).max(1);
        let patience = self.cfg.patience.saturating_sub(self.cfg.tick).as_millis() as u64;
        let wrap_mean = self.wrap.mean_ms() as u64;
        let mut f = Forecast {
            people: vec![self.waiting.len() as f64; steps],
            people_var: vec![0.0; steps],
            free: vec![idle as f64; steps],
            free_var: vec![0.0; steps],
            fresh: vec![0.0; steps],
            from_calls: vec![0.0; steps],
            rate_rel_var: self.outcomes.rate_rel_var(),
        };
        let at = |j: usize| (j as u64 + 1) * 1000;
        for (j, fresh) in f.fresh.iter_mut().enumerate() {
            *fresh = self.outcomes.human_within(0, at(j));
        }
        let mut add_people = |p: &dyn Fn(u64) -> f64| {
            for j in 0..steps {
                let q = p(at(j));
                f.people[j] += q;
                f.from_calls[j] += q;
                f.people_var[j] += q * (1.0 - q);
            }
        };
        for &dialled in self.calls.values() {
            let age = now.saturating_duration_since(dialled).as_millis() as u64;
            add_people(&|u| self.outcomes.human_within(age, u));
        }
        for _ in 0..self.pending {
            add_people(&|u| self.outcomes.human_within(0, u));
        }
        for &(phase, since) in self.agents.values() {
            let elapsed = now.saturating_duration_since(since).as_millis() as u64;
            for j in 0..steps {
                let by = at(j) + patience;
                let q = match phase {
                    AgentPhase::WrapUp => self.wrap.ends_within(elapsed, by),
                    AgentPhase::Talking => self.talk.ends_within(elapsed, by.saturating_sub(wrap_mean)),
                    AgentPhase::Idle | AgentPhase::Offline => break,
                };
                f.free[j] += q;
                f.free_var[j] += q * (1.0 - q);
            }
        }
        f
    }

    /// The most new calls for which, at every horizon second the new calls reach, expected
    /// people plus `z` standard deviations stay within expected free agents, and the
    /// people expected to find no agent stay within `risk` abandons.
    fn most_calls(&self, f: &Forecast, risk: f64) -> usize {
        let fits = |k: usize| {
            let k = k as f64;
            (0..f.people.len()).all(|j| {
                if f.fresh[j] < 1e-6 {
                    return true;
                }
                let (mu, var) = f.net(j, k);
                mu + self.z * var.sqrt() <= 0.0 && expected_excess(mu, var) <= risk
            })
        };
        let max = self.cfg.max_burst as usize;
        if !fits(1) {
            return 0;
        }
        // `fits` is monotone in k: the first that does not fit, by bisection.
        let (mut lo, mut hi) = (1usize, max + 1);
        while hi - lo > 1 {
            let mid = (lo + hi) / 2;
            if fits(mid) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        lo.min(max)
    }
}

/// E[max(X, 0)] for X ~ N(mu, var).
fn expected_excess(mu: f64, var: f64) -> f64 {
    let sd = var.max(0.0).sqrt();
    if sd < 1e-9 {
        return mu.max(0.0);
    }
    let x = mu / sd;
    let pdf = (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
    mu * normal_cdf(x) + sd * pdf
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn pacer(mode: DialMode, agents: u32, now: Instant) -> Pacer {
        let mut p = Pacer::new(PacerConfig { mode, ..PacerConfig::default() }, 7, now);
        for a in 0..agents {
            p.handle_input(Input::Agent { agent: a, phase: AgentPhase::Idle }, now);
        }
        p
    }

    fn dial(p: &mut Pacer, now: Instant) -> u32 {
        p.handle_timeout(now);
        match p.poll_output() {
            Some(Output::Dial { count }) => count,
            None => 0,
        }
    }

    #[test]
    fn progressive_dials_one_line_per_idle_agent() {
        let t0 = Instant::now();
        let mut p = pacer(DialMode::Progressive, 5, t0);
        assert_eq!(dial(&mut p, t0), 5);
        for c in 0..5 {
            p.handle_input(Input::Dialled { call: c }, t0);
        }
        assert_eq!(dial(&mut p, t0 + secs(1)), 0, "every idle agent has its line");
        p.handle_input(Input::Resolved { call: 0, outcome: Outcome::NoConnect }, t0 + secs(2));
        assert_eq!(dial(&mut p, t0 + secs(2)), 1);
    }

    #[test]
    fn asked_for_calls_count_until_reported() {
        let t0 = Instant::now();
        let mut p = pacer(DialMode::Progressive, 3, t0);
        assert_eq!(dial(&mut p, t0), 3);
        assert_eq!(dial(&mut p, t0 + secs(1)), 0, "the three asked for are in flight");
        p.handle_input(Input::NotDialled { count: 2 }, t0 + secs(1));
        assert_eq!(dial(&mut p, t0 + secs(2)), 2);
    }

    #[test]
    fn broadcast_keeps_its_lines_up_without_agents() {
        let t0 = Instant::now();
        let mut p = pacer(DialMode::Broadcast { lines: 10 }, 0, t0);
        assert_eq!(dial(&mut p, t0), 10);
        assert_eq!(dial(&mut p, t0 + secs(1)), 0);
    }

    #[test]
    fn preview_never_dials() {
        let t0 = Instant::now();
        let mut p = pacer(DialMode::Preview, 5, t0);
        assert_eq!(dial(&mut p, t0), 0);
    }

    #[test]
    fn predictive_starts_guarded_and_dials_like_progressive() {
        // No live answers yet: one abandon would be 100%, so nothing beyond progressive.
        let t0 = Instant::now();
        let mut p = pacer(DialMode::Predictive, 10, t0);
        assert_eq!(dial(&mut p, t0), 10);
        assert!(p.status().guarded);
    }

    #[test]
    fn predictive_over_dials_once_the_cap_has_room_and_stops_when_agents_are_busy() {
        let t0 = Instant::now();
        let mut p = pacer(DialMode::Predictive, 50, t0);
        // 1000 calls over 50 s, one in five a person after 10 s, no abandons: room at the guard.
        let mut now = t0;
        for c in 0..1000u64 {
            let outcome = if c % 5 == 0 { Outcome::Human } else { Outcome::NoConnect };
            p.handle_input(Input::Dialled { call: 10_000 + c }, now);
            p.handle_input(Input::Resolved { call: 10_000 + c, outcome }, now + secs(10));
            p.handle_input(Input::Connected { call: 10_000 + c }, now + secs(10));
            now += Duration::from_millis(50);
        }
        // A minute on, every one of those calls has matured: past the warm-up.
        let now = now + secs(70);
        let n = dial(&mut p, now);
        assert!(!p.status().guarded);
        assert!(n > 100, "{n}: one call in five is a person, so more lines than the 50 idle agents");
        assert!(n < 250, "{n}: but about five per agent, less the margin");
        // Everyone busy, nobody close to done: nothing more.
        let mut p2 = pacer(DialMode::Predictive, 50, now);
        for a in 0..50 {
            p2.handle_input(Input::Agent { agent: a, phase: AgentPhase::Talking }, now);
        }
        assert_eq!(dial(&mut p2, now), 0);
    }

    #[test]
    fn predictive_falls_back_when_the_window_nears_the_cap() {
        let t0 = Instant::now();
        let mut p = pacer(DialMode::Predictive, 20, t0);
        for c in 0..100u64 {
            p.handle_input(Input::Dialled { call: c }, t0);
            p.handle_input(Input::Resolved { call: c, outcome: Outcome::Human }, t0 + secs(5));
            let end = if c < 3 { Input::Abandoned { call: c } } else { Input::Connected { call: c } };
            p.handle_input(end, t0 + secs(5));
        }
        dial(&mut p, t0 + secs(6));
        let s = p.status();
        assert!(s.guarded, "3 of 100 is over the guard");
        assert!((s.abandons.rate() - 0.03).abs() < 1e-9);
        assert!(s.headroom.abs() < 1e-9);
    }
}
