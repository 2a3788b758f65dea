//! The router as an actix actor: a thin shell around [`Router`]. It keeps who is who (the
//! agents' actors, the waiting customers' calls) and carries the router's decisions to
//! them; it decides nothing itself.
#![allow(clippy::disallowed_methods)] // the shell reads the clock; the router never does

use super::{Input, LiveCall, Output, PoolConfig, PoolId, ReadyAgent, Router};
use crate::agent::actor::{AgentActor, ConsultFor, ConsultRefused, Ring, Take};
use crate::agent::AgentId;
use crate::call::CallCommand;
use actix::{Actor, Addr, AsyncContext, Context, Handler, Message, Recipient, SpawnHandle};
use std::collections::HashMap;
use std::time::Instant;
use waihu_model::CallId;

/// A live customer: the call's command address and the shard its media is on (an agent's
/// leg goes on the same one).
#[derive(Debug, Clone)]
pub struct Customer {
    pub call: LiveCall,
    pub commands: Recipient<CallCommand>,
    pub shard: usize,
    /// The campaign's wrap-up limit for the agent who takes it.
    pub wrap_up: std::time::Duration,
    /// Transferred by an agent (already talking, so the 2-second rule is behind it): if
    /// nobody takes it by the deadline, the router ends the call.
    pub transferred: bool,
    /// Where the agent's wrap-up goes, and the codes it may use (None: no campaign).
    pub wrap: Option<WrapTo>,
    /// The campaign's trunk, for a transfer to a number.
    pub trunk: Option<std::sync::Arc<waihu_sip::trunk::TrunkConfig>>,
}

/// A campaign's side of wrap-up: its actor and its disposition codes.
#[derive(Debug, Clone)]
pub struct WrapTo {
    pub campaign: Recipient<crate::campaign::actor::Dispose>,
    pub codes: std::sync::Arc<[crate::agent::wrapup::WrapCode]>,
}

#[derive(Debug)]
pub struct SetPool {
    pub pool: PoolId,
    pub config: PoolConfig,
}

/// An agent became available.
#[derive(Debug)]
pub struct AgentReady {
    pub ready: ReadyAgent,
    pub addr: Addr<AgentActor>,
}

#[derive(Debug)]
pub struct AgentUnavailable {
    pub agent: AgentId,
}

/// A live person waits for an agent (AMD said human), or waits again (the agent's phone
/// failed).
#[derive(Debug)]
pub struct Enqueue(pub Customer);

/// Ring-all: this agent's phone answered the offered call.
#[derive(Debug)]
pub struct RingAnswered {
    pub call: CallId,
    pub agent: AgentId,
}

/// Ring-all: this agent cannot take the offered call (the phone declined or did not
/// answer, or the agent was no longer free).
#[derive(Debug)]
pub struct RingDeclined {
    pub call: CallId,
    pub agent: AgentId,
}

/// An agent asks to consult `agent` about `customer` (attended transfer to a colleague):
/// if that agent is available, the router takes it out of its indexes and hands it the
/// request; otherwise the asker hears that it cannot.
#[derive(Debug)]
pub struct ConsultAgent {
    pub agent: AgentId,
    pub from: Addr<AgentActor>,
    pub customer: Customer,
}

/// `call` now belongs to `agent` (an attended transfer completed to them).
#[derive(Debug)]
pub struct Reassign {
    pub call: CallId,
    pub agent: AgentId,
}

/// The customer's call is over: it leaves the queue, or its agent is told.
#[derive(Debug)]
pub struct CallOver {
    pub call: CallId,
}

/// What the router reports as it goes (for counters and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouterEvent {
    Assigned {
        call: CallId,
        agent: AgentId,
        waited_us: u64,
    },
    /// Nobody in time: the call's own connect timer takes the safe-harbour path.
    Expired {
        call: CallId,
    },
}

pub type RouterSink = Box<dyn FnMut(&RouterEvent)>;

pub struct RouterActor {
    router: Router,
    agents: HashMap<AgentId, Addr<AgentActor>>,
    waiting: HashMap<CallId, Customer>,
    /// Calls handed to an agent, until they are over.
    held: HashMap<CallId, AgentId>,
    timer: Option<SpawnHandle>,
    sink: RouterSink,
}

impl std::fmt::Debug for RouterActor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouterActor").field("waiting", &self.waiting.len()).field("held", &self.held.len()).finish()
    }
}

impl RouterActor {
    pub fn new(sink: RouterSink) -> Self {
        RouterActor {
            router: Router::new(Instant::now()),
            agents: HashMap::new(),
            waiting: HashMap::new(),
            held: HashMap::new(),
            timer: None,
            sink,
        }
    }

    fn feed(&mut self, input: Input, ctx: &mut Context<Self>) {
        self.router.handle_input(input, Instant::now());
        self.drive(ctx);
    }

    fn drive(&mut self, ctx: &mut Context<Self>) {
        while let Some(o) = self.router.poll_output() {
            match o {
                Output::Assign { call, agent, waited } => {
                    let (Some(customer), Some(addr)) = (self.waiting.remove(&call), self.agents.get(&agent)) else {
                        continue;
                    };
                    self.held.insert(call, agent);
                    addr.do_send(Take { customer });
                    (self.sink)(&RouterEvent::Assigned { call, agent, waited_us: waited.as_micros() as u64 });
                }
                Output::Expired { call } => {
                    if let Some(c) = self.waiting.remove(&call).filter(|c| c.transferred) {
                        let _ = c.commands.try_send(CallCommand(crate::call::Command::Hangup));
                    }
                    (self.sink)(&RouterEvent::Expired { call });
                }
                // Ring-all: every offered agent's phone rings (their own actors call them);
                // the first to answer says so, and gets the call.
                Output::Offer { call, agents } => {
                    let Some(customer) = self.waiting.get(&call) else { continue };
                    for a in agents {
                        match self.agents.get(&a) {
                            Some(addr) => addr.do_send(Ring { customer: customer.clone() }),
                            None => self.router.handle_input(Input::Declined { call, agent: a }, Instant::now()),
                        }
                    }
                }
                Output::Withdraw { call, agents } => {
                    for a in agents {
                        if let Some(addr) = self.agents.get(&a) {
                            addr.do_send(crate::agent::actor::Withdrawn { call });
                        }
                    }
                }
            }
        }
        if let Some(h) = self.timer.take() {
            ctx.cancel_future(h);
        }
        if let Some(at) = self.router.poll_timeout() {
            self.timer = Some(ctx.run_later(at.saturating_duration_since(Instant::now()), |act, ctx| {
                act.timer = None;
                act.router.handle_timeout(Instant::now());
                act.drive(ctx);
            }));
        }
    }
}

impl Actor for RouterActor {
    type Context = Context<Self>;
}

impl Handler<SetPool> for RouterActor {
    type Result = ();
    fn handle(&mut self, m: SetPool, ctx: &mut Context<Self>) {
        self.feed(Input::Pool { pool: m.pool, config: m.config }, ctx);
    }
}

impl Handler<AgentReady> for RouterActor {
    type Result = ();
    fn handle(&mut self, m: AgentReady, ctx: &mut Context<Self>) {
        self.agents.insert(m.ready.agent, m.addr);
        self.feed(Input::Ready(m.ready), ctx);
    }
}

impl Handler<AgentUnavailable> for RouterActor {
    type Result = ();
    fn handle(&mut self, m: AgentUnavailable, ctx: &mut Context<Self>) {
        self.feed(Input::Unavailable { agent: m.agent }, ctx);
    }
}

impl Handler<Enqueue> for RouterActor {
    type Result = ();
    fn handle(&mut self, m: Enqueue, ctx: &mut Context<Self>) {
        let call = m.0.call;
        self.held.remove(&call.call);
        self.waiting.insert(call.call, m.0);
        self.feed(Input::Enqueue(call), ctx);
    }
}

impl Handler<RingAnswered> for RouterActor {
    type Result = ();
    fn handle(&mut self, m: RingAnswered, ctx: &mut Context<Self>) {
        self.feed(Input::Answered { call: m.call, agent: m.agent }, ctx);
    }
}

impl Handler<RingDeclined> for RouterActor {
    type Result = ();
    fn handle(&mut self, m: RingDeclined, ctx: &mut Context<Self>) {
        self.feed(Input::Declined { call: m.call, agent: m.agent }, ctx);
    }
}

impl Handler<ConsultAgent> for RouterActor {
    type Result = ();
    fn handle(&mut self, m: ConsultAgent, ctx: &mut Context<Self>) {
        let call = m.customer.call.call;
        let addr = self.agents.get(&m.agent).filter(|_| self.router.is_available(m.agent)).cloned();
        match addr {
            Some(addr) => {
                self.feed(Input::Unavailable { agent: m.agent }, ctx);
                addr.do_send(ConsultFor { from: m.from, customer: m.customer });
            }
            None => m.from.do_send(ConsultRefused { call, agent: m.agent }),
        }
    }
}

impl Handler<Reassign> for RouterActor {
    type Result = ();
    fn handle(&mut self, m: Reassign, _ctx: &mut Context<Self>) {
        if self.held.contains_key(&m.call) {
            self.held.insert(m.call, m.agent);
        }
    }
}

impl Handler<CallOver> for RouterActor {
    type Result = ();
    fn handle(&mut self, m: CallOver, ctx: &mut Context<Self>) {
        if let Some(agent) = self.held.remove(&m.call) {
            if let Some(addr) = self.agents.get(&agent) {
                addr.do_send(crate::agent::actor::CustomerGone { call: m.call });
            }
        }
        if self.waiting.remove(&m.call).is_some() {
            self.feed(Input::Cancel { call: m.call }, ctx);
        }
    }
}

/// Every message here is fire-and-forget.
macro_rules! unit_messages {
    ($($t:ty),*) => { $(impl Message for $t { type Result = (); })* };
}

unit_messages!(
    SetPool,
    AgentReady,
    AgentUnavailable,
    Enqueue,
    CallOver,
    RingAnswered,
    RingDeclined,
    ConsultAgent,
    Reassign
);
