//! The baseline predictive pacing waihu is measured against: a VICIdial-style adaptive dial
//! level. Lines = level × idle agents. Every 15 s the level moves by the surplus of idle
//! agents over waiting calls (per logged-in agent), clamped to [1, 3]; once the day's drop
//! rate passes the cap, the level is halved (not below 1) at each adjustment.

use super::pacer::{AgentId, AgentPhase, Input, Output};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};
use waihu_model::CallId;

#[derive(Debug, Clone, PartialEq)]
pub struct BaselineConfig {
    pub tick: Duration,
    pub adjust_every: Duration,
    pub level_bounds: (f64, f64),
    pub drop_cap: f64,
}

impl Default for BaselineConfig {
    fn default() -> Self {
        BaselineConfig {
            tick: Duration::from_millis(500),
            adjust_every: Duration::from_secs(15),
            level_bounds: (1.0, 3.0),
            drop_cap: 0.03,
        }
    }
}

#[derive(Debug)]
pub struct Baseline {
    cfg: BaselineConfig,
    level: f64,
    agents: HashMap<AgentId, AgentPhase>,
    calls: HashSet<CallId>,
    pending: u32,
    waiting: HashSet<CallId>,
    lives: u64,
    drops: u64,
    /// Sums of idle agents and waiting calls over the samples since the last adjustment.
    idle_sum: f64,
    waiting_sum: f64,
    samples: u32,
    next_tick: Instant,
    next_adjust: Instant,
    out: Option<Output>,
}

impl Baseline {
    pub fn new(cfg: BaselineConfig, now: Instant) -> Self {
        let level = cfg.level_bounds.0;
        Baseline {
            next_adjust: now + cfg.adjust_every,
            cfg,
            level,
            agents: HashMap::new(),
            calls: HashSet::new(),
            pending: 0,
            waiting: HashSet::new(),
            lives: 0,
            drops: 0,
            idle_sum: 0.0,
            waiting_sum: 0.0,
            samples: 0,
            next_tick: now,
            out: None,
        }
    }

    pub fn level(&self) -> f64 {
        self.level
    }

    pub fn handle_input(&mut self, input: Input, _now: Instant) {
        match input {
            Input::Agent { agent, phase } => {
                if phase == AgentPhase::Offline {
                    self.agents.remove(&agent);
                } else {
                    self.agents.insert(agent, phase);
                }
            }
            Input::Dialled { call } => {
                self.pending = self.pending.saturating_sub(1);
                self.calls.insert(call);
            }
            Input::NotDialled { count } => self.pending = self.pending.saturating_sub(count),
            Input::Resolved { call, outcome } => {
                if self.calls.remove(&call) && outcome == super::pacer::Outcome::Human {
                    self.lives += 1;
                    self.waiting.insert(call);
                }
            }
            Input::Connected { call } | Input::Gone { call } => {
                self.waiting.remove(&call);
                self.calls.remove(&call);
            }
            Input::Abandoned { call } => {
                if self.waiting.remove(&call) {
                    self.drops += 1;
                }
            }
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        Some(self.next_tick.min(self.next_adjust))
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.take()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let idle = self.agents.values().filter(|p| **p == AgentPhase::Idle).count();
        if now >= self.next_adjust {
            self.next_adjust = now + self.cfg.adjust_every;
            let n = self.agents.len().max(1) as f64;
            if self.samples > 0 {
                let surplus = (self.idle_sum - self.waiting_sum) / self.samples as f64;
                self.level += surplus / n;
            }
            if self.lives > 0 && self.drops as f64 / self.lives as f64 > self.cfg.drop_cap {
                self.level /= 2.0;
            }
            self.level = self.level.clamp(self.cfg.level_bounds.0, self.cfg.level_bounds.1);
            (self.idle_sum, self.waiting_sum, self.samples) = (0.0, 0.0, 0);
        }
        if now < self.next_tick {
            return;
        }
        self.next_tick = now + self.cfg.tick;
        self.idle_sum += idle as f64;
        self.waiting_sum += self.waiting.len() as f64;
        self.samples += 1;
        let lines = (self.level * idle as f64).floor() as usize;
        let in_flight = self.calls.len() + self.pending as usize;
        let count = lines.saturating_sub(in_flight) as u32;
        if count > 0 {
            self.pending += count;
            self.out = Some(Output::Dial { count });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_rises_with_idle_agents_and_halves_past_the_cap() {
        let t0 = Instant::now();
        let mut b = Baseline::new(BaselineConfig::default(), t0);
        for a in 0..10 {
            b.handle_input(Input::Agent { agent: a, phase: AgentPhase::Idle }, t0);
        }
        let mut now = t0;
        while now < t0 + Duration::from_secs(16) {
            b.handle_timeout(now);
            // Nothing is reported dialled: the in-flight count stays at what was asked.
            b.pending = 0;
            now += Duration::from_millis(500);
        }
        assert!((b.level() - 2.0).abs() < 1e-9, "all idle for 15 s: +1, {}", b.level());
        for c in 0..10 {
            b.handle_input(Input::Dialled { call: c }, now);
            b.handle_input(Input::Resolved { call: c, outcome: super::super::pacer::Outcome::Human }, now);
            b.handle_input(Input::Abandoned { call: c }, now);
        }
        for a in 0..10 {
            b.handle_input(Input::Agent { agent: a, phase: AgentPhase::Talking }, now);
        }
        while now < t0 + Duration::from_secs(31) {
            b.handle_timeout(now);
            now += Duration::from_millis(500);
        }
        assert!(b.level() < 1.1, "every call dropped: halved, {}", b.level());
    }
}
