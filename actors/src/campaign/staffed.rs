//! What a campaign with agents adds to the campaign actor: the pacer, fed with the agents'
//! states and the calls' outcomes, granting lines; and the router, given each live person.
//! The campaign actor calls these; the decisions are the pacer's and the router's.

use super::config::{CampaignConfig, ModeName};
use crate::call::CallCommand;
use crate::pacing::{AgentId, AgentPhase, DialMode, Input, Outcome, Output, Pacer, PacerConfig};
use crate::router::actor::{CallOver, Customer, Enqueue, RouterActor, WrapTo};
use crate::router::{LiveCall, PoolId};
use actix::{Addr, Recipient};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::time::{Duration, Instant};
use waihu_model::{CallId, Disposition};

/// The router a campaign's live people go to, and the pool (its agents) they ask for.
#[derive(Debug, Clone)]
pub struct Staffing {
    pub router: Addr<RouterActor>,
    pub pool: PoolId,
    /// Skills routing: the least level a live person waits for.
    pub min_level: u8,
    /// Where each connected call's time to audio goes (µs from the AMD human decision to
    /// the first customer frame relayed to the agent), when someone collects it.
    pub time_to_audio: Option<Rc<RefCell<Vec<u64>>>>,
}

/// What the campaign adds to a live call it hands to the router.
#[derive(Debug, Clone, Default)]
pub struct CampaignSide {
    /// A callback booked for this agent.
    pub for_agent: Option<AgentId>,
    /// Where the wrap-up goes.
    pub wrap: Option<WrapTo>,
    /// The trunk a transfer to a number goes out on.
    pub trunk: Option<std::sync::Arc<waihu_sip::trunk::TrunkConfig>>,
}

#[derive(Debug)]
pub struct Staffed {
    pacer: Pacer,
    staffing: Staffing,
    /// Calls the pacer has heard the outcome of.
    resolved: HashSet<CallId>,
    /// When AMD said human, per call waiting for its first relayed frame.
    human_at: HashMap<CallId, Instant>,
    patience: Duration,
    wrap_up: Duration,
}

fn dial_mode(cfg: &CampaignConfig) -> DialMode {
    match cfg.mode {
        ModeName::Preview => DialMode::Preview,
        ModeName::Progressive => DialMode::Progressive,
        ModeName::Ratio => DialMode::Ratio { lines_per_agent: cfg.lines.max(1) as f64 },
        ModeName::Predictive => DialMode::Predictive,
        ModeName::Broadcast => DialMode::Broadcast { lines: cfg.lines },
    }
}

impl Staffed {
    pub fn new(cfg: &CampaignConfig, staffing: Staffing, seed: u64, now: Instant) -> Staffed {
        let pc = PacerConfig {
            mode: dial_mode(cfg),
            amd_false_positive_rate: cfg.amd_false_positive_rate,
            ..PacerConfig::default()
        };
        let patience = pc.patience;
        Staffed {
            pacer: Pacer::new(pc, seed, now),
            staffing,
            resolved: HashSet::new(),
            human_at: HashMap::new(),
            patience,
            wrap_up: cfg.wrap_up,
        }
    }

    pub fn agent(&mut self, agent: AgentId, phase: AgentPhase, now: Instant) {
        self.pacer.handle_input(Input::Agent { agent, phase }, now);
    }

    pub fn dialled(&mut self, call: CallId, now: Instant) {
        self.pacer.handle_input(Input::Dialled { call }, now);
    }

    /// Lines granted that no dial used.
    pub fn not_dialled(&mut self, count: u32, now: Instant) {
        if count > 0 {
            self.pacer.handle_input(Input::NotDialled { count }, now);
        }
    }

    /// AMD said a person: the pacer hears it, and the router gets the call (for the named
    /// agent, when it is their callback).
    pub fn human(
        &mut self,
        call: CallId,
        commands: Recipient<CallCommand>,
        shard: usize,
        side: CampaignSide,
        now: Instant,
    ) {
        let CampaignSide { for_agent, wrap, trunk } = side;
        self.resolve(call, Outcome::Human, now);
        self.human_at.insert(call, now);
        let live = LiveCall {
            call,
            pool: self.staffing.pool,
            priority: 0,
            min_level: self.staffing.min_level,
            for_agent,
            since: now,
            deadline: now + self.patience,
        };
        self.staffing.router.do_send(Enqueue(Customer {
            call: live,
            commands,
            shard,
            wrap_up: self.wrap_up,
            transferred: false,
            wrap,
            trunk,
        }));
    }

    pub fn machine(&mut self, call: CallId, now: Instant) {
        self.resolve(call, Outcome::Machine, now);
    }

    pub fn connected(&mut self, call: CallId, now: Instant) {
        self.pacer.handle_input(Input::Connected { call }, now);
    }

    /// The customer's audio reaches the agent: the call's time to audio is known.
    pub fn relaying(&mut self, call: CallId, now: Instant) {
        if let (Some(at), Some(sink)) = (self.human_at.remove(&call), self.staffing.time_to_audio.as_ref()) {
            sink.borrow_mut().push(now.saturating_duration_since(at).as_micros() as u64);
        }
    }

    /// The call's record is in: an outcome never heard is "nobody to connect"; an
    /// abandoned person counts against the cap; the router forgets the call.
    pub fn ended(&mut self, call: CallId, disposition: Disposition, now: Instant) {
        self.resolve(call, Outcome::NoConnect, now);
        if disposition == Disposition::Abandoned {
            self.pacer.handle_input(Input::Abandoned { call }, now);
        }
        self.pacer.handle_input(Input::Gone { call }, now);
        self.resolved.remove(&call);
        self.human_at.remove(&call);
        self.staffing.router.do_send(CallOver { call });
    }

    fn resolve(&mut self, call: CallId, outcome: Outcome, now: Instant) {
        if self.resolved.insert(call) {
            self.pacer.handle_input(Input::Resolved { call, outcome }, now);
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.pacer.handle_timeout(now);
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.pacer.poll_timeout()
    }

    /// Lines the pacer grants now.
    pub fn grants(&mut self) -> u32 {
        let mut n = 0u32;
        while let Some(Output::Dial { count }) = self.pacer.poll_output() {
            n = n.saturating_add(count);
        }
        n
    }
}
