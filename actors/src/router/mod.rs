//! The router (ACD), pure: live calls wait in queues by priority and then by how long they
//! have waited; available agents sit in each of their pools' indexes, ordered by the pool's
//! strategy. A decision is a walk to the front of one ordered set, so it stays in the
//! microseconds with 10,000 agents and 1,000 waiting calls (benches/benches/router.rs).
//!
//! A pool is what a call asks for: a campaign's agents, or the holders of a skill. The shell
//! interns pool names to [`PoolId`]s. The router knows only available agents: an agent the
//! router hands a call to leaves its indexes until the shell says it is ready again.

pub mod actor;

use crate::agent::AgentId;
use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};
use waihu_model::CallId;

pub type PoolId = u32;

/// How a pool picks among its available agents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// The agent available the longest.
    #[default]
    LongestIdle,
    /// The least talk time so far, then the longest idle.
    LeastTalk,
    /// The fewest calls so far, then the longest idle.
    FewestCalls,
    /// The highest skill level, then the longest idle; a call may ask for a minimum level.
    Skills,
    /// On demand: ring up to `ring_all` available agents at once; the first to answer gets
    /// the call.
    RingAll,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolConfig {
    pub strategy: Strategy,
    /// How many phones ring at once under [`Strategy::RingAll`].
    pub ring_all: usize,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig { strategy: Strategy::LongestIdle, ring_all: 5 }
    }
}

/// An agent's place in a pool: a campaign membership (level 0) or a skill with its level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Membership {
    pub pool: PoolId,
    pub level: u8,
}

/// An agent that has become available.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadyAgent {
    pub agent: AgentId,
    pub pools: Vec<Membership>,
    pub idle_since: Instant,
    pub talk_ms: u64,
    pub calls: u32,
}

/// A live person waiting for an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveCall {
    pub call: CallId,
    pub pool: PoolId,
    /// Higher goes first.
    pub priority: u8,
    /// Skills pools: the lowest level that may take it.
    pub min_level: u8,
    /// A callback reserved for this agent: only they take it.
    pub for_agent: Option<AgentId>,
    /// Since when the person has been waiting (the AMD human decision); a requeued call
    /// keeps its place.
    pub since: Instant,
    /// No agent by then: [`Output::Expired`] (the safe-harbour path).
    pub deadline: Instant,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Pool {
        pool: PoolId,
        config: PoolConfig,
    },
    Ready(ReadyAgent),
    /// The agent is no longer available (paused, logged out, reserved elsewhere).
    Unavailable {
        agent: AgentId,
    },
    Enqueue(LiveCall),
    /// The customer hung up, or the call gave up on its own.
    Cancel {
        call: CallId,
    },
    /// Ring-all: this agent answered first.
    Answered {
        call: CallId,
        agent: AgentId,
    },
    /// Ring-all: this agent's phone declined or did not answer.
    Declined {
        call: CallId,
        agent: AgentId,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Give `call` to `agent` (bridge it, or call the agent's phone).
    Assign { call: CallId, agent: AgentId, waited: Duration },
    /// Ring-all: ring these agents' phones for `call`.
    Offer { call: CallId, agents: Vec<AgentId> },
    /// Stop ringing these agents for `call` (someone else answered, or the call is gone).
    Withdraw { call: CallId, agents: Vec<AgentId> },
    /// No agent in time: the call takes the safe-harbour path.
    Expired { call: CallId },
}

/// Queue order: priority (higher first), then the longest wait, then the id.
type QueueKey = (Reverse<u8>, Instant, CallId);
/// Index order within a pool: the strategy's keys, then the id.
type AgentKey = (u64, u64, AgentId);

#[derive(Debug, Default)]
struct Pool {
    config: PoolConfig,
    agents: BTreeSet<AgentKey>,
    queue: BTreeSet<QueueKey>,
}

#[derive(Debug)]
struct Available {
    /// The key it holds in each pool's index.
    keys: Vec<(PoolId, AgentKey, u8)>,
}

#[derive(Debug)]
struct Waiting {
    call: LiveCall,
    /// Ring-all: the phones ringing for it now.
    ringing: Vec<AgentId>,
}

#[derive(Debug)]
pub struct Router {
    epoch: Instant,
    pools: HashMap<PoolId, Pool>,
    available: HashMap<AgentId, Available>,
    /// Calls not yet given to anyone (queued, or ringing under ring-all).
    waiting: HashMap<CallId, Waiting>,
    /// Callbacks waiting for their named agent.
    named: HashMap<AgentId, BTreeSet<QueueKey>>,
    deadlines: BTreeSet<(Instant, CallId)>,
    out: VecDeque<Output>,
}

impl Router {
    pub fn new(now: Instant) -> Self {
        Router {
            epoch: now,
            pools: HashMap::new(),
            available: HashMap::new(),
            waiting: HashMap::new(),
            named: HashMap::new(),
            deadlines: BTreeSet::new(),
            out: VecDeque::new(),
        }
    }

    /// Calls waiting for an agent (queued or ringing).
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    pub fn available(&self) -> usize {
        self.available.len()
    }

    /// Whether `agent` is available now (in the router's indexes).
    pub fn is_available(&self, agent: AgentId) -> bool {
        self.available.contains_key(&agent)
    }

    pub fn handle_input(&mut self, input: Input, now: Instant) {
        match input {
            Input::Pool { pool, config } => self.pools.entry(pool).or_default().config = config,
            Input::Ready(a) => self.ready(a, now),
            Input::Unavailable { agent } => {
                self.remove_agent(agent);
                self.stop_ringing(agent, now);
            }
            Input::Enqueue(call) => self.enqueue(call, now),
            Input::Cancel { call } => {
                if let Some(w) = self.forget(call) {
                    if !w.ringing.is_empty() {
                        self.out.push_back(Output::Withdraw { call, agents: w.ringing });
                    }
                }
            }
            Input::Answered { call, agent } => {
                let Some(w) = self.waiting.get(&call) else { return };
                if !w.ringing.contains(&agent) {
                    return;
                }
                let Some(w) = self.forget(call) else { return };
                let others: Vec<AgentId> = w.ringing.into_iter().filter(|a| *a != agent).collect();
                if !others.is_empty() {
                    self.out.push_back(Output::Withdraw { call, agents: others });
                }
                let waited = now.saturating_duration_since(w.call.since);
                self.out.push_back(Output::Assign { call, agent, waited });
            }
            Input::Declined { call, agent } => self.declined(call, agent, now),
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(at, call)) = self.deadlines.first() {
            if at > now {
                break;
            }
            if let Some(w) = self.forget(call) {
                if !w.ringing.is_empty() {
                    self.out.push_back(Output::Withdraw { call, agents: w.ringing });
                }
                self.out.push_back(Output::Expired { call });
            } else {
                self.deadlines.pop_first();
            }
        }
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.first().map(|(t, _)| *t)
    }

    fn key(&self, strategy: Strategy, a: &ReadyAgent, level: u8) -> AgentKey {
        let idle = a.idle_since.saturating_duration_since(self.epoch).as_micros() as u64;
        match strategy {
            Strategy::LongestIdle | Strategy::RingAll => (idle, 0, a.agent),
            Strategy::LeastTalk => (a.talk_ms, idle, a.agent),
            Strategy::FewestCalls => (a.calls as u64, idle, a.agent),
            Strategy::Skills => (255 - level as u64, idle, a.agent),
        }
    }

    fn ready(&mut self, a: ReadyAgent, now: Instant) {
        self.remove_agent(a.agent);
        // A call reserved for this agent, or the best waiting call of its pools.
        if let Some(call) = self.best_call_for(&a) {
            self.give(call, a.agent, now);
            return;
        }
        let mut keys = Vec::with_capacity(a.pools.len());
        for m in &a.pools {
            let strategy = self.pools.get(&m.pool).map(|p| p.config.strategy).unwrap_or_default();
            let key = self.key(strategy, &a, m.level);
            self.pools.entry(m.pool).or_default().agents.insert(key);
            keys.push((m.pool, key, m.level));
        }
        self.available.insert(a.agent, Available { keys });
    }

    /// The waiting call this newly ready agent should take: the best by priority and wait
    /// among its named callbacks and the heads of its pools' queues (skills pools: the first
    /// the agent's level qualifies for).
    fn best_call_for(&self, a: &ReadyAgent) -> Option<CallId> {
        let mut best: Option<QueueKey> = self.named.get(&a.agent).and_then(|q| q.first().copied());
        for m in &a.pools {
            let Some(pool) = self.pools.get(&m.pool) else { continue };
            let head = pool.queue.iter().find(|k| self.waiting.get(&k.2).is_some_and(|w| w.call.min_level <= m.level));
            if let Some(k) = head {
                if best.is_none_or(|b| *k < b) {
                    best = Some(*k);
                }
            }
        }
        best.map(|k| k.2)
    }

    fn enqueue(&mut self, call: LiveCall, now: Instant) {
        if call.deadline <= now {
            self.out.push_back(Output::Expired { call: call.call });
            return;
        }
        if let Some(w) = self.forget(call.call) {
            if !w.ringing.is_empty() {
                self.out.push_back(Output::Withdraw { call: call.call, agents: w.ringing });
            }
        }
        let key: QueueKey = (Reverse(call.priority), call.since, call.call);
        self.waiting.insert(call.call, Waiting { call, ringing: Vec::new() });
        self.deadlines.insert((call.deadline, call.call));
        if let Some(agent) = call.for_agent {
            if self.available.contains_key(&agent) {
                self.give(call.call, agent, now);
            } else {
                self.named.entry(agent).or_default().insert(key);
            }
            return;
        }
        let pool = self.pools.entry(call.pool).or_default();
        let config = pool.config;
        if config.strategy == Strategy::RingAll {
            let agents: Vec<AgentId> = pool.agents.iter().take(config.ring_all.max(1)).map(|k| k.2).collect();
            if !agents.is_empty() {
                self.ring(call.call, agents);
                return;
            }
        } else {
            let level_ok = |k: &AgentKey| config.strategy != Strategy::Skills || 255 - k.0 >= call.min_level as u64;
            // Skills pools are ordered by level: if the best does not qualify, none does.
            if let Some(k) = pool.agents.first().copied().filter(level_ok) {
                self.give(call.call, k.2, now);
                return;
            }
        }
        self.pools.entry(call.pool).or_default().queue.insert(key);
    }

    /// Hands `call` to `agent`: both leave the router.
    fn give(&mut self, call: CallId, agent: AgentId, now: Instant) {
        self.remove_agent(agent);
        let Some(w) = self.forget(call) else { return };
        let strategy = self.pools.get(&w.call.pool).map(|p| p.config.strategy);
        if strategy == Some(Strategy::RingAll) && w.call.for_agent.is_none() {
            self.waiting.insert(call, Waiting { call: w.call, ringing: Vec::new() });
            self.deadlines.insert((w.call.deadline, call));
            self.ring(call, vec![agent]);
            return;
        }
        let waited = now.saturating_duration_since(w.call.since);
        self.out.push_back(Output::Assign { call, agent, waited });
    }

    fn ring(&mut self, call: CallId, agents: Vec<AgentId>) {
        for a in &agents {
            self.remove_agent(*a);
        }
        if let Some(w) = self.waiting.get_mut(&call) {
            w.ringing.extend(agents.iter().copied());
        }
        self.out.push_back(Output::Offer { call, agents });
    }

    fn declined(&mut self, call: CallId, agent: AgentId, now: Instant) {
        let Some(w) = self.waiting.get_mut(&call) else { return };
        let before = w.ringing.len();
        w.ringing.retain(|a| *a != agent);
        if before == w.ringing.len() || !w.ringing.is_empty() {
            return;
        }
        // Nobody rings for it any more: it waits for the next agent, or rings whoever is
        // free now.
        let c = w.call;
        self.waiting.remove(&call);
        self.deadlines.remove(&(c.deadline, call));
        self.enqueue(c, now);
    }

    /// A ringing agent that went away no longer rings for its call.
    fn stop_ringing(&mut self, agent: AgentId, now: Instant) {
        let calls: Vec<CallId> =
            self.waiting.iter().filter(|(_, w)| w.ringing.contains(&agent)).map(|(c, _)| *c).collect();
        for call in calls {
            self.declined(call, agent, now);
        }
    }

    fn remove_agent(&mut self, agent: AgentId) {
        if let Some(a) = self.available.remove(&agent) {
            for (pool, key, _) in a.keys {
                if let Some(p) = self.pools.get_mut(&pool) {
                    p.agents.remove(&key);
                }
            }
        }
    }

    /// Takes a call out of every queue and index.
    fn forget(&mut self, call: CallId) -> Option<Waiting> {
        let w = self.waiting.remove(&call)?;
        let key = (Reverse(w.call.priority), w.call.since, call);
        self.deadlines.remove(&(w.call.deadline, call));
        if let Some(agent) = w.call.for_agent {
            if let Some(q) = self.named.get_mut(&agent) {
                q.remove(&key);
                if q.is_empty() {
                    self.named.remove(&agent);
                }
            }
        } else if let Some(p) = self.pools.get_mut(&w.call.pool) {
            p.queue.remove(&key);
        }
        Some(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(t0: Instant, n: u64) -> Instant {
        t0 + Duration::from_millis(n)
    }

    fn agent(id: AgentId, pools: &[(PoolId, u8)], idle_since: Instant) -> ReadyAgent {
        ReadyAgent {
            agent: id,
            pools: pools.iter().map(|&(pool, level)| Membership { pool, level }).collect(),
            idle_since,
            talk_ms: 0,
            calls: 0,
        }
    }

    fn call(id: CallId, pool: PoolId, since: Instant) -> LiveCall {
        LiveCall {
            call: id,
            pool,
            priority: 0,
            min_level: 0,
            for_agent: None,
            since,
            deadline: since + Duration::from_secs(2),
        }
    }

    fn drain(r: &mut Router) -> Vec<Output> {
        std::iter::from_fn(|| r.poll_output()).collect()
    }

    fn assigned(out: &[Output]) -> Vec<(CallId, AgentId)> {
        out.iter()
            .filter_map(|o| match o {
                Output::Assign { call, agent, .. } => Some((*call, *agent)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn longest_idle_agent_gets_the_call() {
        let t0 = Instant::now();
        let mut r = Router::new(t0);
        r.handle_input(Input::Ready(agent(1, &[(0, 0)], ms(t0, 300))), t0);
        r.handle_input(Input::Ready(agent(2, &[(0, 0)], ms(t0, 100))), t0);
        r.handle_input(Input::Ready(agent(3, &[(0, 0)], ms(t0, 200))), t0);
        r.handle_input(Input::Enqueue(call(10, 0, ms(t0, 400))), ms(t0, 400));
        r.handle_input(Input::Enqueue(call(11, 0, ms(t0, 400))), ms(t0, 400));
        assert_eq!(assigned(&drain(&mut r)), [(10, 2), (11, 3)]);
        assert_eq!(r.available(), 1);
    }

    #[test]
    fn least_talk_and_fewest_calls_order_by_their_totals() {
        let t0 = Instant::now();
        let mut r = Router::new(t0);
        r.handle_input(Input::Pool { pool: 1, config: PoolConfig { strategy: Strategy::LeastTalk, ring_all: 1 } }, t0);
        r.handle_input(
            Input::Pool { pool: 2, config: PoolConfig { strategy: Strategy::FewestCalls, ring_all: 1 } },
            t0,
        );
        for (id, talk, calls) in [(1, 500, 9), (2, 100, 30), (3, 900, 2)] {
            let mut a = agent(id, &[(1, 0), (2, 0)], t0);
            a.talk_ms = talk;
            a.calls = calls;
            r.handle_input(Input::Ready(a), t0);
        }
        r.handle_input(Input::Enqueue(call(10, 1, t0)), t0);
        r.handle_input(Input::Enqueue(call(11, 2, t0)), t0);
        assert_eq!(assigned(&drain(&mut r)), [(10, 2), (11, 3)]);
    }

    #[test]
    fn skills_route_to_the_highest_level_and_respect_a_minimum() {
        let t0 = Instant::now();
        let mut r = Router::new(t0);
        r.handle_input(Input::Pool { pool: 5, config: PoolConfig { strategy: Strategy::Skills, ring_all: 1 } }, t0);
        r.handle_input(Input::Ready(agent(1, &[(5, 3)], t0)), t0);
        r.handle_input(Input::Ready(agent(2, &[(5, 7)], ms(t0, 50))), t0);
        let mut c = call(10, 5, t0);
        c.min_level = 8;
        r.handle_input(Input::Enqueue(c), t0);
        assert!(drain(&mut r).is_empty(), "nobody has level 8");
        r.handle_input(Input::Enqueue(call(11, 5, t0)), t0);
        assert_eq!(assigned(&drain(&mut r)), [(11, 2)]);
        // A level-9 agent coming free takes the call that needs 8.
        r.handle_input(Input::Ready(agent(3, &[(5, 9)], t0)), ms(t0, 10));
        assert_eq!(assigned(&drain(&mut r)), [(10, 3)]);
    }

    #[test]
    fn a_freed_agent_takes_the_highest_priority_then_the_longest_waiting_call() {
        let t0 = Instant::now();
        let mut r = Router::new(t0);
        r.handle_input(Input::Enqueue(call(1, 0, ms(t0, 0))), t0);
        let mut urgent = call(2, 1, ms(t0, 50));
        urgent.priority = 9;
        r.handle_input(Input::Enqueue(urgent), t0);
        r.handle_input(Input::Enqueue(call(3, 1, ms(t0, 10))), t0);
        assert_eq!(r.waiting(), 3);
        r.handle_input(Input::Ready(agent(7, &[(0, 0), (1, 0)], t0)), ms(t0, 100));
        r.handle_input(Input::Ready(agent(8, &[(0, 0), (1, 0)], t0)), ms(t0, 100));
        r.handle_input(Input::Ready(agent(9, &[(1, 0)], t0)), ms(t0, 100));
        let out = drain(&mut r);
        assert_eq!(assigned(&out), [(2, 7), (1, 8), (3, 9)]);
        assert!(matches!(out[1], Output::Assign { waited, .. } if waited == Duration::from_millis(100)));
    }

    #[test]
    fn a_call_with_no_agent_in_time_expires() {
        let t0 = Instant::now();
        let mut r = Router::new(t0);
        r.handle_input(Input::Enqueue(call(1, 0, t0)), t0);
        assert_eq!(r.poll_timeout(), Some(ms(t0, 2000)));
        r.handle_timeout(ms(t0, 1999));
        assert!(drain(&mut r).is_empty());
        r.handle_timeout(ms(t0, 2000));
        assert_eq!(drain(&mut r), [Output::Expired { call: 1 }]);
        assert_eq!((r.waiting(), r.poll_timeout()), (0, None));
        // An agent coming free later gets nothing.
        r.handle_input(Input::Ready(agent(1, &[(0, 0)], t0)), ms(t0, 2100));
        assert!(drain(&mut r).is_empty());
    }

    #[test]
    fn a_callback_waits_for_its_named_agent() {
        let t0 = Instant::now();
        let mut r = Router::new(t0);
        let mut cb = call(1, 0, t0);
        cb.for_agent = Some(4);
        cb.deadline = ms(t0, 30_000);
        r.handle_input(Input::Enqueue(cb), t0);
        r.handle_input(Input::Ready(agent(3, &[(0, 0)], t0)), t0);
        assert!(drain(&mut r).is_empty(), "agent 3 must not take agent 4's callback");
        r.handle_input(Input::Ready(agent(4, &[(9, 0)], t0)), ms(t0, 5));
        assert_eq!(assigned(&drain(&mut r)), [(1, 4)]);
    }

    #[test]
    fn ring_all_rings_several_and_the_first_answer_wins() {
        let t0 = Instant::now();
        let mut r = Router::new(t0);
        r.handle_input(Input::Pool { pool: 0, config: PoolConfig { strategy: Strategy::RingAll, ring_all: 3 } }, t0);
        for id in 1..=4 {
            r.handle_input(Input::Ready(agent(id, &[(0, 0)], ms(t0, id as u64))), t0);
        }
        r.handle_input(Input::Enqueue(call(9, 0, t0)), t0);
        assert_eq!(drain(&mut r), [Output::Offer { call: 9, agents: vec![1, 2, 3] }]);
        assert_eq!(r.available(), 1);
        r.handle_input(Input::Answered { call: 9, agent: 2 }, ms(t0, 300));
        let out = drain(&mut r);
        assert_eq!(out[0], Output::Withdraw { call: 9, agents: vec![1, 3] });
        assert_eq!(assigned(&out), [(9, 2)]);
        // A late answer from a withdrawn phone changes nothing.
        r.handle_input(Input::Answered { call: 9, agent: 1 }, ms(t0, 301));
        assert!(drain(&mut r).is_empty());
    }

    #[test]
    fn ring_all_with_every_phone_declining_waits_for_the_next_agent() {
        let t0 = Instant::now();
        let mut r = Router::new(t0);
        r.handle_input(Input::Pool { pool: 0, config: PoolConfig { strategy: Strategy::RingAll, ring_all: 2 } }, t0);
        r.handle_input(Input::Ready(agent(1, &[(0, 0)], t0)), t0);
        r.handle_input(Input::Enqueue(call(9, 0, t0)), t0);
        drain(&mut r);
        r.handle_input(Input::Declined { call: 9, agent: 1 }, ms(t0, 100));
        assert!(drain(&mut r).is_empty());
        assert_eq!(r.waiting(), 1);
        r.handle_input(Input::Ready(agent(2, &[(0, 0)], t0)), ms(t0, 200));
        assert_eq!(drain(&mut r), [Output::Offer { call: 9, agents: vec![2] }]);
    }

    #[test]
    fn a_cancelled_call_is_forgotten_and_its_phones_stop_ringing() {
        let t0 = Instant::now();
        let mut r = Router::new(t0);
        r.handle_input(Input::Pool { pool: 0, config: PoolConfig { strategy: Strategy::RingAll, ring_all: 2 } }, t0);
        r.handle_input(Input::Ready(agent(1, &[(0, 0)], t0)), t0);
        r.handle_input(Input::Enqueue(call(9, 0, t0)), t0);
        r.handle_input(Input::Enqueue(call(10, 0, t0)), t0);
        drain(&mut r);
        r.handle_input(Input::Cancel { call: 9 }, t0);
        r.handle_input(Input::Cancel { call: 10 }, t0);
        assert_eq!(drain(&mut r), [Output::Withdraw { call: 9, agents: vec![1] }]);
        assert_eq!((r.waiting(), r.poll_timeout()), (0, None));
    }

    #[test]
    fn an_agent_in_several_pools_is_taken_once() {
        let t0 = Instant::now();
        let mut r = Router::new(t0);
        r.handle_input(Input::Ready(agent(1, &[(0, 0), (1, 0), (2, 0)], t0)), t0);
        r.handle_input(Input::Enqueue(call(1, 1, t0)), t0);
        r.handle_input(Input::Enqueue(call(2, 2, t0)), t0);
        r.handle_input(Input::Enqueue(call(3, 0, t0)), t0);
        assert_eq!(assigned(&drain(&mut r)), [(1, 1)]);
        assert_eq!((r.waiting(), r.available()), (2, 0));
        r.handle_input(Input::Unavailable { agent: 1 }, t0);
        assert!(r.pools.values().all(|p| p.agents.is_empty()));
    }
}
