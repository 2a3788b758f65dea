//! The agent as an actix actor: a thin shell around [`Agent`]. It tells the router when the
//! agent is available, and connects the calls the router gives it, one of two ways:
//! - **on demand**: it calls the agent's registered phone (auto-answer headers) with a
//!   [`CallActor`] whose media leg sits on the customer's shard, and bridges the customer
//!   in when the phone answers;
//! - **persistent session**: at login it calls the phone once and the leg stays up; each
//!   customer is bridged into that open session in the media plane, with no SIP at all
//!   (across shards when the customer's leg is on another one).
#![allow(clippy::disallowed_methods)] // the shell reads the clock; the machine never does

use super::machine::{Agent, AgentId, AgentLimits, AgentState, AgentTotals, Input, Output, PhoneLoss};
use super::transfer::{Consult, Party, Step, Target, TransferError};
use super::wrapup::{self, default_codes, Effect, WrapCode, WrapError, WrapUp};
use crate::call::flow::hold_music;
use crate::call::{CallActor, CallCommand, CallEnv, CallSpec, Command, FlowConfig, HangupOn, KeepaliveMode, Progress};
use crate::campaign::actor::Dispose;
use crate::router::actor::{
    AgentReady, AgentUnavailable, CallOver, ConsultAgent, Customer, Enqueue, Reassign, RingAnswered, RingDeclined,
    RouterActor, WrapTo,
};
use crate::router::{Membership, ReadyAgent};
use actix::{Actor, ActorFutureExt, Addr, AsyncContext, Context, Handler, Message, Recipient, SpawnHandle, WrapFuture};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use waihu_engine::mixer::MonitorMode;
use waihu_engine::worker::{Command as ShardCommand, MixLeg};
use waihu_model::{CallId, CallRecord};
use waihu_sip::registrar::contact_uri;
use waihu_sip::registry::Registry;
use waihu_sip::trunk::TrunkConfig;

/// How customers reach the agent's phone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Connect {
    /// A call to the phone for each customer.
    #[default]
    OnDemand,
    /// One call to the phone at login, kept up; customers are bridged into it.
    Persistent,
}

/// Who the agent is and how their phone is reached.
#[derive(Debug, Clone)]
pub struct AgentSpec {
    pub id: AgentId,
    /// The phone's SIP user (its registrar account).
    pub phone_user: String,
    pub pools: Vec<Membership>,
    pub limits: AgentLimits,
    pub connect: Connect,
}

/// What an agent reports, to persist and publish.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentEvent {
    /// `totals` are this run's (the store adds earlier runs').
    Changed { agent: AgentId, from: AgentState, to: AgentState, totals: AgentTotals },
    /// The customer is being bridged to the agent: `time_to_agent` runs from the AMD human
    /// decision to the bridge being ordered. The shard applies it at its next command poll
    /// (within about 1 ms); across shards, after two more command round trips.
    Connected { agent: AgentId, call: CallId, time_to_agent: Duration },
    /// The agent's leg for `call` is over.
    LegRecord { agent: AgentId, call: CallId, record: Box<CallRecord> },
    /// A supervisor's monitoring leg on `call` (this agent's) is over.
    MonitorRecord { agent: AgentId, call: CallId, record: Box<CallRecord> },
    /// The agent wrapped up `call` with this code.
    WrappedUp { agent: AgentId, call: CallId, code: String },
    /// A third party's leg on `call` (consulted, or handed the customer) is over.
    ThirdPartyRecord { agent: AgentId, call: CallId, record: Box<CallRecord> },
}

pub type AgentSink = Box<dyn FnMut(&AgentEvent)>;

/// Agent legs' call ids: the top bit set, the agent's id in bits 40-59 and the customer's
/// id below (ids are the control plane's and unique across shards; a customer handed from
/// one agent to the next gets a new leg id while the old leg is still closing). Bit 61 is
/// the media plane's ([`waihu_engine::worker::PROXY_BIT`]).
pub const AGENT_LEG_BIT: CallId = 1 << 63;
/// A supervisor's monitoring leg: bit 62 alone, the monitored agent and the customer below.
pub const MONITOR_BIT: CallId = 1 << 62;
/// With [`AGENT_LEG_BIT`]: a third party's leg (consulted, or handed the customer).
pub const THIRD_PARTY_BIT: CallId = 1 << 60;
const CUSTOMER_BITS: CallId = (1 << 40) - 1;
const AGENT_BITS: CallId = (1 << 20) - 1;

fn agent_leg(agent: AgentId, customer: CallId) -> CallId {
    AGENT_LEG_BIT | ((agent as CallId & AGENT_BITS) << 40) | (customer & CUSTOMER_BITS)
}

fn third_leg(agent: AgentId, customer: CallId) -> CallId {
    agent_leg(agent, customer) | THIRD_PARTY_BIT
}

fn monitor_leg(agent: AgentId, customer: CallId) -> CallId {
    MONITOR_BIT | ((agent as CallId & AGENT_BITS) << 40) | (customer & CUSTOMER_BITS)
}
/// A persistent session's call id: the agent's id with the two top bits set.
pub const SESSION_BITS: CallId = 3 << 62;

#[derive(Debug)]
pub struct Login;

#[derive(Debug)]
pub struct Logout;

#[derive(Debug)]
pub struct Pause(pub String);

/// Ready: out of a pause, or wrap-up done.
#[derive(Debug)]
pub struct Ready;

/// The router gives this agent a customer.
#[derive(Debug)]
pub struct Take {
    pub customer: Customer,
}

/// Ring-all: the router offers this agent `customer` alongside others; the first whose
/// phone answers gets it.
#[derive(Debug)]
pub struct Ring {
    pub customer: Customer,
}

/// Ring-all: another agent took `call`, which this one was offered.
#[derive(Debug)]
pub struct Withdrawn {
    pub call: CallId,
}

/// The customer's call ended.
#[derive(Debug)]
pub struct CustomerGone {
    pub call: CallId,
}

/// The agent puts the customer on hold: the customer hears `0` (looped), the agent hears
/// nothing from the customer, and both legs stay up.
#[derive(Debug)]
pub struct HoldCustomer(pub Arc<[i16]>);

/// Blind transfer of the agent's customer: to a named agent, or back to a pool's queue
/// (the customer waits, hearing nothing, up to `wait` for the new agent, then the call
/// ends); or to a number or a registered phone (`to_target`: the customer hears music
/// while it rings, and goes back to the pool's queue if nobody answers).
#[derive(Debug)]
pub struct TransferCustomer {
    pub to_agent: Option<AgentId>,
    pub to_pool: Option<crate::router::PoolId>,
    pub to_target: Option<Target>,
    pub wait: Duration,
}

/// Attended transfer, step one: the customer holds (music) while `to` is called; the
/// agent talks with them once they answer.
#[derive(Debug)]
pub struct ConsultTransfer {
    pub to: Target,
}

/// During a consultation: back to whoever holds.
#[derive(Debug)]
pub struct SwapConsult;

/// Ends a consultation by joining the customer and the consulted party; the agent leaves
/// (to wrap-up). When either of the two hangs up, the other is hung up.
#[derive(Debug)]
pub struct CompleteTransfer;

/// Ends a consultation without a transfer: the consulted party is hung up and the agent
/// is back with the customer.
#[derive(Debug)]
pub struct CancelConsult;

impl Message for ConsultTransfer {
    type Result = Result<(), TransferError>;
}
impl Message for SwapConsult {
    type Result = Result<(), TransferError>;
}
impl Message for CompleteTransfer {
    type Result = Result<(), TransferError>;
}
impl Message for CancelConsult {
    type Result = Result<(), TransferError>;
}

/// The router hands this agent a colleague's consultation about `customer`.
#[derive(Debug)]
pub struct ConsultFor {
    pub from: Addr<AgentActor>,
    pub customer: Customer,
}

/// The consulted agent is on the line: its leg, where it is, and its actor.
#[derive(Debug)]
pub struct ConsultReady {
    call: CallId,
    from_agent: AgentId,
    leg: CallId,
    shard: usize,
    addr: Option<Addr<CallActor>>,
    agent: Addr<AgentActor>,
}

/// The consulted agent cannot be consulted (not available), or has gone (its phone).
#[derive(Debug)]
pub struct ConsultRefused {
    pub call: CallId,
    /// The agent who cannot be consulted.
    pub agent: AgentId,
}

/// To the consulted agent: the customer is yours now (the transfer completed).
#[derive(Debug)]
struct ConsultCompleted {
    call: CallId,
}

/// To the consulted agent: the consultation is over without a transfer.
#[derive(Debug)]
struct ConsultEnded {
    call: CallId,
}

/// The agent's phone REFERred its leg (its transfer key) to `target`.
#[derive(Debug)]
struct PhoneRefer {
    leg: CallId,
    target: String,
}

/// Ends [`HoldCustomer`].
#[derive(Debug)]
pub struct ResumeCustomer;

/// The agent's phone went away (its registration expired or was removed).
#[derive(Debug)]
pub struct PhoneGone(pub PhoneLoss);

/// A supervisor monitors the agent's call: the supervisor's registered phone (`supervisor`
/// names its registrar account) is called with auto-answer, on the customer's shard, and
/// mixed with the customer and the agent as `mode` says. Sent again while monitoring, it
/// changes the mode. Monitoring ends with [`StopMonitor`], when the supervisor hangs up,
/// and when the agent's call ends, is held or is transferred.
#[derive(Debug)]
pub struct Monitor {
    pub supervisor: String,
    pub mode: MonitorMode,
}

#[derive(Debug)]
pub struct StopMonitor;

/// The agent's wrap-up of their current or last call. Checked against the campaign's
/// codes at once (the reply says what is wrong); it goes to the campaign when the call has
/// ended, and ends the wrap-up: the agent is available again (or pauses, if they asked).
#[derive(Debug)]
pub struct WrapUpCall(pub WrapUp);

impl Message for WrapUpCall {
    type Result = Result<(), WrapError>;
}

#[derive(Debug)]
struct LegAnswered {
    leg: CallId,
}

#[derive(Debug)]
struct LegEnded {
    leg: CallId,
    record: Box<CallRecord>,
}

#[derive(Debug)]
struct LegStarted {
    leg: CallId,
    addr: Option<Addr<CallActor>>,
}

/// The call the agent holds now.
struct Job {
    customer: Customer,
    leg: CallId,
    leg_shard: usize,
    leg_addr: Option<Addr<CallActor>>,
    bridged: bool,
    /// The leg is the agent's persistent session: unbridged, not hung up, afterwards.
    session: bool,
    /// Offered by ring-all: whoever answers first says so, and the router gives it to them.
    ring_all: bool,
    /// The phone answered (ring-all waits for the router's word before connecting).
    answered: bool,
}

impl Job {
    /// Lets go of the agent's leg: a per-call leg is hung up, a session is unbridged.
    fn release_leg(&self) {
        let cmd = if self.session { Command::Unbridge } else { Command::Hangup };
        if let Some(leg) = &self.leg_addr {
            leg.do_send(CallCommand(cmd));
        }
    }
}

/// The call the agent wraps up: its campaign's side, and a wrap-up given while talking
/// (sent once the call has ended).
struct WrapTarget {
    call: CallId,
    to: Option<WrapTo>,
    given: Option<(WrapUp, Effect)>,
}

/// A party being consulted on the agent's call.
struct ThirdParty {
    leg: CallId,
    shard: usize,
    addr: Option<Addr<CallActor>>,
    consult: Consult,
    /// A consulted agent (through the router): its actor, once it is on the line.
    agent: Option<AgentId>,
    agent_addr: Option<Addr<AgentActor>>,
    /// The customer's call it is about.
    customer: CallId,
}

impl ThirdParty {
    /// Ends the third party's part: a consulted agent is told, another leg is hung up.
    fn let_go(&self, call: CallId) {
        match (&self.agent_addr, &self.addr) {
            (Some(a), _) => a.do_send(ConsultEnded { call }),
            (None, Some(leg)) if self.agent.is_none() => leg.do_send(CallCommand(Command::Hangup)),
            _ => {}
        }
    }
}

/// A customer handed to a third party: when either leg ends, the other is hung up.
struct Handoff {
    leg: CallId,
    addr: Option<Addr<CallActor>>,
    commands: Recipient<CallCommand>,
    /// Blind, and not answered yet: the customer, to queue again if nobody answers.
    pending: Option<Customer>,
}

/// A supervisor on the agent's call.
struct Monitoring {
    leg: CallId,
    customer: CallId,
    mode: MonitorMode,
    addr: Option<Addr<CallActor>>,
    /// The mix's legs, once it is up.
    mixed: Option<(usize, Vec<MixLeg>)>,
}

/// The agent's persistent session leg.
struct SessionLeg {
    leg: CallId,
    shard: usize,
    addr: Option<Addr<CallActor>>,
    up: bool,
}

pub struct AgentActor {
    agent: Agent,
    spec: AgentSpec,
    env: CallEnv,
    registry: Arc<Registry>,
    router: Addr<RouterActor>,
    job: Option<Job>,
    session: Option<SessionLeg>,
    monitoring: Option<Monitoring>,
    third: Option<ThirdParty>,
    handoffs: HashMap<CallId, Handoff>,
    /// This agent is being consulted by a colleague (the job's customer is theirs).
    consult_from: Option<Addr<AgentActor>>,
    wrap: Option<WrapTarget>,
    timer: Option<SpawnHandle>,
    sink: AgentSink,
}

impl std::fmt::Debug for AgentActor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentActor").field("id", &self.spec.id).field("state", self.agent.state()).finish()
    }
}

impl AgentActor {
    pub fn new(
        spec: AgentSpec,
        env: CallEnv,
        registry: Arc<Registry>,
        router: Addr<RouterActor>,
        sink: AgentSink,
    ) -> Self {
        AgentActor {
            agent: Agent::new(spec.id, spec.limits, Instant::now()),
            spec,
            env,
            registry,
            router,
            job: None,
            session: None,
            monitoring: None,
            third: None,
            handoffs: HashMap::new(),
            consult_from: None,
            wrap: None,
            timer: None,
            sink,
        }
    }

    fn feed(&mut self, input: Input, ctx: &mut Context<Self>) {
        self.agent.handle_input(input, Instant::now());
        self.drive(ctx);
    }

    fn drive(&mut self, ctx: &mut Context<Self>) {
        while let Some(o) = self.agent.poll_output() {
            match o {
                Output::Changed { from, to } => self.changed(from, to, ctx),
                Output::Abandon { call } => self.abandon(call),
            }
        }
        if let Some(h) = self.timer.take() {
            ctx.cancel_future(h);
        }
        if let Some((at, _)) = self.agent.poll_timeout() {
            self.timer = Some(ctx.run_later(at.saturating_duration_since(Instant::now()), |act, ctx| {
                act.timer = None;
                act.agent.handle_timeout(Instant::now());
                act.drive(ctx);
            }));
        }
    }

    /// Tells the router this agent is available, with what its strategies rank by.
    fn announce_ready(&self, ctx: &mut Context<Self>) {
        let t = self.agent.totals();
        let ready = ReadyAgent {
            agent: self.spec.id,
            pools: self.spec.pools.clone(),
            idle_since: self.agent.idle_since().unwrap_or_else(Instant::now),
            talk_ms: t.talk_ms,
            calls: t.calls,
        };
        self.router.do_send(AgentReady { ready, addr: ctx.address() });
    }

    fn changed(&mut self, from: AgentState, to: AgentState, ctx: &mut Context<Self>) {
        let id = self.spec.id;
        match &to {
            AgentState::Available => self.announce_ready(ctx),
            // Reserved is the router's own doing (it gave or offered this agent a call, and took
            // it out of its indexes): telling it again would withdraw a ring-all offer.
            AgentState::Reserved { .. } => {}
            _ if from == AgentState::Available => self.router.do_send(AgentUnavailable { agent: id }),
            _ => {}
        }
        // Logged out (a lost phone, a logout): a persistent session still up is hung up, so
        // the next login calls the phone afresh.
        if to == AgentState::LoggedOut {
            if let Some(s) = self.session.take() {
                if let Some(a) = s.addr {
                    a.do_send(CallCommand(Command::Hangup));
                }
            }
        }
        // A call the agent no longer holds: its leg goes, and so does a supervisor on it.
        if to.call().is_none() || matches!(to, AgentState::WrapUp { .. }) {
            let job = self.job.take();
            self.end_monitor(false);
            if let Some(t) = self.third.take() {
                t.let_go(t.customer);
            }
            if let Some(job) = job {
                job.release_leg();
                if let Some(from) = self.consult_from.take() {
                    // Consulted, and this agent's leg is gone: the customer stays the
                    // colleague's, who goes back to them.
                    from.do_send(ConsultRefused { call: job.customer.call.call, agent: self.spec.id });
                } else if matches!(to, AgentState::WrapUp { .. }) {
                    // The agent ended it, or the customer did: both sides go.
                    let _ = job.customer.commands.try_send(CallCommand(Command::Hangup));
                    self.router.do_send(CallOver { call: job.customer.call.call });
                }
            }
        }
        let totals = self.agent.totals();
        (self.sink)(&AgentEvent::Changed { agent: id, from, to: to.clone(), totals });
        match &to {
            // The call is over: a wrap-up given while talking goes now, and ends the wrap-up.
            AgentState::WrapUp { call } => {
                if let Some(given) = self.wrap.as_mut().filter(|w| w.call == *call).and_then(|w| w.given.take()) {
                    self.send_wrap_up(given);
                    ctx.notify(Ready);
                }
            }
            AgentState::OnCall { .. } => {}
            // Wrap-up over (given, or its time ran out), or the call lost: nothing more to give.
            _ => self.wrap = None,
        }
    }

    /// The wrap-up goes to the customer's campaign, and out as an event.
    fn send_wrap_up(&mut self, (wrap, effect): (WrapUp, Effect)) {
        let Some(target) = self.wrap.take() else { return };
        (self.sink)(&AgentEvent::WrappedUp { agent: self.spec.id, call: target.call, code: wrap.code.clone() });
        if let Some(to) = target.to {
            let _ = to.campaign.try_send(Dispose { call: target.call, agent: self.spec.id, wrap, effect });
        }
    }

    /// The agent cannot take the call after all. Not yet connected: the customer waits
    /// again (the router's deadline and the call's own connect timer still hold). Already
    /// talking (the phone vanished mid-call): the customer's call is ended.
    fn abandon(&mut self, call: CallId) {
        let Some(job) = self.job.take_if(|j| j.customer.call.call == call) else { return };
        job.release_leg();
        if let Some(from) = self.consult_from.take() {
            // Consulted by a colleague: the customer is theirs; they go back to them.
            from.do_send(ConsultRefused { call, agent: self.spec.id });
            return;
        }
        if job.bridged {
            let _ = job.customer.commands.try_send(CallCommand(Command::Hangup));
            self.router.do_send(CallOver { call });
        } else if job.ring_all {
            // The router still holds it, ringing the others.
            self.router.do_send(RingDeclined { call, agent: self.spec.id });
        } else {
            self.router.do_send(Enqueue(job.customer));
        }
    }

    /// Calls the agent's registered phone for `customer`, on the customer's shard (or
    /// uses the open session). `ring_all`: other agents are offered the call too.
    fn offer(&mut self, customer: Customer, ring_all: bool, ctx: &mut Context<Self>) {
        let call = customer.call.call;
        if self.spec.connect == Connect::Persistent {
            let Some(s) = self.session.as_ref().filter(|s| s.up) else {
                self.job = Some(Job::lost(customer));
                self.feed(Input::PhoneLost { why: PhoneLoss::LegEnded }, ctx);
                return;
            };
            let (leg, leg_shard, leg_addr) = (s.leg, s.shard, s.addr.clone());
            let answered = true;
            self.job =
                Some(Job { customer, leg, leg_shard, leg_addr, bridged: false, session: true, ring_all, answered });
            if ring_all {
                // The session is up already: this agent answers at once.
                self.router.do_send(RingAnswered { call, agent: self.spec.id });
            } else {
                self.connect(ctx);
            }
            return;
        }
        let shard = customer.shard;
        let Some(target) = self.phone_target() else {
            // Registered a moment ago, gone now.
            self.job = Some(Job::lost(customer));
            self.feed(Input::PhoneLost { why: PhoneLoss::RegistrationExpired }, ctx);
            return;
        };
        let leg = agent_leg(self.spec.id, call);
        let (bridged, session, answered) = (false, false, false);
        self.job = Some(Job { customer, leg, leg_shard: shard, leg_addr: None, bridged, session, ring_all, answered });
        self.call_phone(leg, shard, target, ctx);
        self.feed(Input::Offered { call }, ctx);
    }

    /// The registered phone's URI, host and port.
    fn phone_target(&self) -> Option<(String, String, u16)> {
        self.target_of(&self.spec.phone_user)
    }

    /// Where account `user`'s registered phone is: URI, host and port.
    fn target_of(&self, user: &str) -> Option<(String, String, u16)> {
        let contact = self.registry.contacts(user).into_iter().next()?;
        let uri = contact_uri(&contact).to_string();
        let (host, port) = host_port(&uri)?;
        Some((uri, host, port))
    }

    /// The supervisor's phone answered: customer, agent and supervisor are mixed on the
    /// customer's shard (the agent's leg joins through a proxy when it is on another).
    fn mix(&mut self, ctx: &mut Context<Self>) {
        let (Some(job), Some(mon)) = (self.job.as_ref().filter(|j| j.bridged), self.monitoring.as_mut()) else {
            return;
        };
        let h = mon.mode.hears();
        let home = job.customer.shard;
        let legs = vec![
            MixLeg { call: job.customer.call.call, shard: home, hears: h[0] },
            MixLeg { call: job.leg, shard: job.leg_shard, hears: h[1] },
            MixLeg { call: mon.leg, shard: home, hears: h[2] },
        ];
        if let Some((home, legs)) = &mut mon.mixed {
            // Already mixed: a new mode, the same legs.
            legs.iter_mut().zip(h).for_each(|(l, h)| l.hears = h);
            let _ = self.env.plane.remix_across(mon.leg, *home, legs);
            return;
        }
        let (plane, id) = (self.env.plane.clone(), mon.leg);
        let l = legs.clone();
        ctx.spawn(async move { plane.mix_across(id, home, &l).await }.into_actor(self).map(move |r, act, _ctx| {
            if let Err(e) = r {
                eprintln!("waihu: monitoring call {id}: no mix: {e}");
            }
            match act.monitoring.as_mut().filter(|m| m.leg == id) {
                Some(m) => m.mixed = Some((home, legs)),
                None => {
                    // Monitoring ended while the mix was being set up: undo it.
                    let _ = act.env.plane.end_mix_across(id, home, &legs);
                    act.rebridge();
                }
            }
        }));
    }

    /// Ends monitoring: the mix goes, the customer and the agent are bridged again (when
    /// the agent still holds the call), and the supervisor's leg is hung up.
    /// `rebridge`: false when the caller takes the legs elsewhere at once (hold, transfer):
    /// a bridge ordered across shards now would land after their unbridge.
    fn end_monitor(&mut self, rebridge: bool) {
        let Some(mon) = self.monitoring.take() else { return };
        if let Some((home, legs)) = &mon.mixed {
            let _ = self.env.plane.end_mix_across(mon.leg, *home, legs);
            if rebridge && self.job.as_ref().is_some_and(|j| j.customer.call.call == mon.customer) {
                self.rebridge();
            }
        }
        if let Some(a) = mon.addr {
            a.do_send(CallCommand(Command::Hangup));
        }
    }

    /// Bridges the job's customer and agent leg again (after a mix).
    fn rebridge(&self) {
        if let Some(job) = self.job.as_ref().filter(|j| j.bridged) {
            let bridge = Command::Bridge { peer: job.leg, shard: Some(job.leg_shard) };
            let _ = job.customer.commands.try_send(CallCommand(bridge));
        }
    }

    /// Bridges the job's customer to its agent leg (the phone answered, or the session is
    /// open), across shards when need be.
    fn connect(&mut self, ctx: &mut Context<Self>) {
        let Some(job) = self.job.as_mut() else { return };
        let call = job.customer.call.call;
        if let Some(from) = &self.consult_from {
            // Consulted: the colleague bridges to this leg; the customer is not ours (yet).
            let ready = ConsultReady {
                call,
                from_agent: self.spec.id,
                leg: job.leg,
                shard: job.leg_shard,
                addr: job.leg_addr.clone(),
                agent: ctx.address(),
            };
            from.do_send(ready);
            // Talking with the colleague: the leg's end is this agent's call ending.
            job.bridged = true;
            self.feed(Input::Connected { call }, ctx);
            return;
        }
        let bridge = Command::Bridge { peer: job.leg, shard: Some(job.leg_shard) };
        if job.customer.commands.try_send(CallCommand(bridge)).is_err() {
            // The customer's call is gone: release the agent.
            self.feed(Input::CallEnded { call }, ctx);
            return;
        }
        job.bridged = true;
        if job.session {
            // The agent in a persistent session hears a short beep as the customer comes in.
            let beep = ShardCommand::Announce { call, audio: connect_beep() };
            let _ = self.env.plane.shard(job.customer.shard).map(|s| s.send(beep));
        }
        self.wrap = Some(WrapTarget { call, to: job.customer.wrap.clone(), given: None });
        let waited = job.customer.call.since.elapsed();
        (self.sink)(&AgentEvent::Connected { agent: self.spec.id, call, time_to_agent: waited });
        self.feed(Input::Connected { call }, ctx);
    }

    /// Calls the agent's phone with auto-answer headers; the leg's answer and end come
    /// back as [`LegAnswered`] and [`LegEnded`].
    fn call_phone(
        &mut self,
        leg: CallId,
        shard: usize,
        (uri, host, port): (String, String, u16),
        ctx: &mut Context<Self>,
    ) {
        let mut trunk = TrunkConfig::direct(&host, port);
        trunk.name = format!("agent-{}", self.spec.id);
        trunk.headers = vec![
            ("Call-Info".into(), format!("<sip:{host}>;answer-after=0")),
            ("Alert-Info".into(), "<http://127.0.0.1/auto-answer>;info=alert-autoanswer".into()),
        ];
        let ring = self.spec.limits.ring_timeout;
        self.start_leg(leg, shard, uri, Arc::new(trunk), ring, ctx);
    }

    /// Starts a leg of the agent's (to a phone, or out over a trunk), whose media sits on
    /// `shard`; its progress and end come back as [`LegAnswered`], [`PhoneRefer`] and
    /// [`LegEnded`].
    fn start_leg(
        &mut self,
        leg: CallId,
        shard: usize,
        uri: String,
        trunk: Arc<TrunkConfig>,
        ring_timeout: Duration,
        ctx: &mut Context<Self>,
    ) {
        let flow = FlowConfig {
            id: leg,
            target: uri,
            trunk: trunk.name.clone(),
            ring_timeout,
            amd: false,
            hangup_on: HangupOn::Never,
            // A session lasts the agent's shift.
            max_duration: Duration::from_secs(12 * 3600),
            keepalive: KeepaliveMode::Silence,
            // The agent's own phone may transfer its customer (its transfer key).
            // (Not a persistent session: the phone hangs up after a transfer, which would end it.)
            honour_refer: leg & (AGENT_LEG_BIT | THIRD_PARTY_BIT | MONITOR_BIT) == AGENT_LEG_BIT,
            ..FlowConfig::default()
        };
        let spec = CallSpec { flow, trunk, shard: Some(shard), call_id: None };
        let me = ctx.address();
        let on_progress = me.clone();
        let progress = Box::new(move |_: CallId, p: &Progress| match p {
            Progress::Answered { .. } => on_progress.do_send(LegAnswered { leg }),
            Progress::ReferRequested { target } => on_progress.do_send(PhoneRefer { leg, target: target.clone() }),
            _ => {}
        });
        let on_record = me.clone();
        let record = Box::new(move |r: CallRecord| on_record.do_send(LegEnded { leg, record: Box::new(r) }));
        let env = self.env.clone();
        ctx.spawn(
            async move { CallActor::start(env, spec, progress, record).await.ok() }
                .into_actor(self)
                .map(move |addr, _act, ctx| ctx.notify(LegStarted { leg, addr })),
        );
    }

    /// Whether `to` can be dialled for the current job now (what [`AgentActor::dial_third`]
    /// would refuse at once).
    fn can_dial(&self, to: &Target) -> Result<(), TransferError> {
        let job = self.job.as_ref().filter(|j| j.bridged).ok_or(TransferError::NotOnCall)?;
        if self.third.is_some() {
            return Err(TransferError::Busy);
        }
        match to {
            Target::Phone(user) => self.target_of(user).map(|_| ()).ok_or_else(|| TransferError::NoPhone(user.clone())),
            Target::Number(_) => job.customer.trunk.as_ref().map(|_| ()).ok_or(TransferError::NoTrunk),
            Target::Agent(_) => Err(TransferError::AgentIsNotATarget),
        }
    }

    /// Calls a third party for the customer of the current job, on the customer's shard.
    fn dial_third(&mut self, to: &Target, ctx: &mut Context<Self>) -> Result<(CallId, usize), TransferError> {
        let job = self.job.as_ref().filter(|j| j.bridged).ok_or(TransferError::NotOnCall)?;
        let (call, shard) = (job.customer.call.call, job.customer.shard);
        let leg = third_leg(self.spec.id, call);
        match to {
            Target::Phone(user) => {
                let target = self.target_of(user).ok_or_else(|| TransferError::NoPhone(user.clone()))?;
                self.call_phone(leg, shard, target, ctx);
            }
            Target::Agent(agent) => {
                let consult = ConsultAgent { agent: *agent, from: ctx.address(), customer: job.customer.clone() };
                self.router.do_send(consult);
                return Ok((0, shard));
            }
            Target::Number(n) => {
                let trunk = job.customer.trunk.clone().ok_or(TransferError::NoTrunk)?;
                let uri = format!("sip:{n}@{}:{}", trunk.host, trunk.port);
                self.start_leg(leg, shard, uri, trunk, Duration::from_secs(30), ctx);
            }
        }
        Ok((leg, shard))
    }

    /// Carries out a consultation's steps on the customer's, the agent's and the
    /// consulted party's legs.
    fn apply(&mut self, steps: Vec<Step>, ctx: &mut Context<Self>) {
        for step in steps {
            let (Some(job), Some(third)) = (self.job.as_ref(), self.third.as_ref()) else { return };
            let customer = |c: Command| {
                let _ = job.customer.commands.try_send(CallCommand(c));
            };
            let consulted = |c: Command| {
                if let Some(a) = &third.addr {
                    a.do_send(CallCommand(c));
                }
            };
            let agent_unbridge = || {
                if let Some(a) = &job.leg_addr {
                    a.do_send(CallCommand(Command::Unbridge));
                }
            };
            let to_agent = Command::Bridge { peer: job.leg, shard: Some(job.leg_shard) };
            match step {
                Step::Hold(Party::Customer) => {
                    customer(Command::HoldWithMusic { music: hold_music() });
                    customer(Command::Unbridge);
                    agent_unbridge();
                }
                Step::Hold(Party::Consulted) => {
                    consulted(Command::HoldWithMusic { music: hold_music() });
                    consulted(Command::Unbridge);
                    agent_unbridge();
                }
                Step::Resume(Party::Customer) => customer(Command::EndHold),
                Step::Resume(Party::Consulted) => consulted(Command::EndHold),
                Step::Bridge(Party::Customer) => customer(to_agent),
                Step::Bridge(Party::Consulted) => consulted(to_agent),
                Step::HangUpConsulted => {
                    third.let_go(job.customer.call.call);
                    self.third = None;
                }
                Step::Join => {
                    customer(Command::Bridge { peer: third.leg, shard: Some(third.shard) });
                    let (Some(job), Some(third)) = (self.job.take(), self.third.take()) else { return };
                    let call = job.customer.call.call;
                    job.release_leg();
                    if let Some(agent) = third.agent_addr {
                        // A colleague takes the customer over: theirs from now on.
                        agent.do_send(ConsultCompleted { call });
                        if let Some(id) = third.agent {
                            self.router.do_send(Reassign { call, agent: id });
                        }
                        self.feed(Input::CallEnded { call }, ctx);
                        return;
                    }
                    let handoff =
                        Handoff { leg: third.leg, addr: third.addr, commands: job.customer.commands, pending: None };
                    self.handoffs.insert(call, handoff);
                    // The agent's part is over: wrap-up (the customer's call goes on).
                    self.feed(Input::CallEnded { call }, ctx);
                }
            }
        }
    }

    /// Blind transfer to a number or a phone: the agent leaves at once; the customer hears
    /// music until the third party answers.
    fn blind_to(&mut self, to: &Target, ctx: &mut Context<Self>) -> Result<(), TransferError> {
        if self.third.is_some() {
            return Err(TransferError::Busy);
        }
        if matches!(to, Target::Agent(_)) {
            return Err(TransferError::AgentIsNotATarget);
        }
        self.end_monitor(false);
        let (leg, _) = self.dial_third(to, ctx)?;
        let Some(job) = self.job.take() else { return Err(TransferError::NotOnCall) };
        let call = job.customer.call.call;
        job.release_leg();
        let _ = job.customer.commands.try_send(CallCommand(Command::HoldWithMusic { music: hold_music() }));
        let _ = job.customer.commands.try_send(CallCommand(Command::Unbridge));
        let commands = job.customer.commands.clone();
        self.handoffs.insert(call, Handoff { leg, addr: None, commands, pending: Some(job.customer) });
        self.feed(Input::CallEnded { call }, ctx);
        Ok(())
    }

    /// A third party's leg ended: a consultation goes back to the customer; a handed-off
    /// customer is hung up, or queued again if the blind transfer was never answered.
    fn third_gone(&mut self, leg: CallId, ctx: &mut Context<Self>) {
        if let Some(t) = self.third.as_ref().filter(|t| t.leg == leg) {
            let steps = t.consult.consulted_gone();
            self.apply(steps, ctx);
            self.third = None;
            return;
        }
        let Some(call) = self.handoffs.iter().find(|(_, h)| h.leg == leg).map(|(c, _)| *c) else { return };
        let Some(h) = self.handoffs.remove(&call) else { return };
        match h.pending {
            Some(mut customer) => {
                let _ = h.commands.try_send(CallCommand(Command::EndHold));
                let now = Instant::now();
                customer.call.since = now;
                customer.call.deadline = now + Duration::from_secs(30);
                customer.call.for_agent = None;
                customer.transferred = true;
                self.router.do_send(Enqueue(customer));
            }
            None => {
                let _ = h.commands.try_send(CallCommand(Command::Hangup));
            }
        }
    }
}

impl Job {
    /// A job whose agent leg never came to be.
    fn lost(customer: Customer) -> Job {
        let leg = customer.call.call | AGENT_LEG_BIT;
        Job {
            leg_shard: customer.shard,
            customer,
            leg,
            leg_addr: None,
            bridged: false,
            session: false,
            ring_all: false,
            answered: false,
        }
    }
}

/// The connect beep: 1.2 kHz for 120 ms with 10 ms fades, 8 kHz. Built once.
pub fn connect_beep() -> Arc<[i16]> {
    static BEEP: std::sync::OnceLock<Arc<[i16]>> = std::sync::OnceLock::new();
    BEEP.get_or_init(|| {
        let n = 960;
        (0..n)
            .map(|i| {
                let fade = (i.min(n - 1 - i) as f64 / 80.0).min(1.0);
                (6000.0 * fade * (2.0 * std::f64::consts::PI * 1200.0 * i as f64 / 8000.0).sin()) as i16
            })
            .collect()
    })
    .clone()
}

/// `sip:user@host:port;params` → (host, port).
fn host_port(uri: &str) -> Option<(String, u16)> {
    let rest = uri.strip_prefix("sip:")?;
    let hostport = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let hostport = hostport.split([';', '?', '>']).next()?;
    match hostport.rsplit_once(':') {
        Some((h, p)) => Some((h.to_string(), p.parse().ok()?)),
        None => Some((hostport.to_string(), 5060)),
    }
}

impl Actor for AgentActor {
    type Context = Context<Self>;
}

impl Handler<Login> for AgentActor {
    type Result = ();
    fn handle(&mut self, _: Login, ctx: &mut Context<Self>) {
        // An agent without a registered phone cannot take calls.
        let Some(target) = self.phone_target() else { return };
        match self.spec.connect {
            Connect::OnDemand => self.feed(Input::Login, ctx),
            // Logged in once the phone has answered the session call.
            Connect::Persistent if self.session.is_none() => {
                let leg = SESSION_BITS | self.spec.id as CallId;
                let shard = self.env.plane.shard_for(leg);
                self.session = Some(SessionLeg { leg, shard, addr: None, up: false });
                self.call_phone(leg, shard, target, ctx);
            }
            // The session is up: a registration refreshed after a lapse keeps the agent in.
            Connect::Persistent if self.session.as_ref().is_some_and(|s| s.up) => self.feed(Input::Login, ctx),
            Connect::Persistent => {}
        }
    }
}

impl Handler<Logout> for AgentActor {
    type Result = ();
    fn handle(&mut self, _: Logout, ctx: &mut Context<Self>) {
        self.feed(Input::Logout, ctx);
        if let Some(s) = self.session.take() {
            if let Some(a) = s.addr {
                a.do_send(CallCommand(Command::Hangup));
            }
        }
    }
}

impl Handler<Pause> for AgentActor {
    type Result = ();
    fn handle(&mut self, m: Pause, ctx: &mut Context<Self>) {
        self.feed(Input::Pause { reason: m.0 }, ctx);
    }
}

impl Handler<Ready> for AgentActor {
    type Result = ();
    fn handle(&mut self, _: Ready, ctx: &mut Context<Self>) {
        self.feed(Input::Ready, ctx);
    }
}

impl Handler<Take> for AgentActor {
    type Result = ();
    fn handle(&mut self, m: Take, ctx: &mut Context<Self>) {
        let call = m.customer.call.call;
        if let Some(job) = self.job.as_mut().filter(|j| j.ring_all && j.customer.call.call == call) {
            // Ring-all: this agent answered first, and the router confirms it.
            job.ring_all = false;
            if job.answered {
                self.connect(ctx);
            }
            return;
        }
        self.agent.handle_input(Input::Reserve { call }, Instant::now());
        if self.agent.state() != &(AgentState::Reserved { call }) {
            // Not available after all (a pause crossed the router's decision): back it goes.
            self.router.do_send(Enqueue(m.customer));
            self.drive(ctx);
            return;
        }
        // The wrap-up after this call is the customer's campaign's.
        self.agent.set_limits(AgentLimits { wrap_up: m.customer.wrap_up, ..self.spec.limits });
        self.drive(ctx);
        self.offer(m.customer, false, ctx);
    }
}

impl Handler<Ring> for AgentActor {
    type Result = ();
    fn handle(&mut self, m: Ring, ctx: &mut Context<Self>) {
        let call = m.customer.call.call;
        self.agent.handle_input(Input::Reserve { call }, Instant::now());
        if self.agent.state() != &(AgentState::Reserved { call }) {
            self.router.do_send(RingDeclined { call, agent: self.spec.id });
            self.drive(ctx);
            return;
        }
        self.agent.set_limits(AgentLimits { wrap_up: m.customer.wrap_up, ..self.spec.limits });
        self.drive(ctx);
        self.offer(m.customer, true, ctx);
    }
}

impl Handler<Withdrawn> for AgentActor {
    type Result = ();
    fn handle(&mut self, m: Withdrawn, ctx: &mut Context<Self>) {
        match self.agent.state() {
            AgentState::Reserved { call } | AgentState::Ringing { call } if *call == m.call => {
                self.feed(Input::Released { call: m.call }, ctx)
            }
            // Offered and withdrawn before this agent did anything: the router took it out
            // of its indexes, so it says again that it is available.
            AgentState::Available => self.announce_ready(ctx),
            _ => {}
        }
    }
}

impl Handler<HoldCustomer> for AgentActor {
    type Result = ();
    fn handle(&mut self, m: HoldCustomer, _ctx: &mut Context<Self>) {
        if self.third.is_some() {
            return; // a consultation holds the customer already
        }
        // A supervisor on the call leaves it first (the hold unbridges both sides).
        self.end_monitor(false);
        if let (Some(job), AgentState::OnCall { .. }) = (&self.job, self.agent.state()) {
            // The customer hears music and is not heard; the agent's side is unbridged too, so
            // nothing of the agent reaches the customer meanwhile (across shards as well).
            let _ = job.customer.commands.try_send(CallCommand(Command::HoldWithMusic { music: m.0 }));
            let _ = job.customer.commands.try_send(CallCommand(Command::Unbridge));
            if let Some(leg) = &job.leg_addr {
                leg.do_send(CallCommand(Command::Unbridge));
            }
        }
    }
}

impl Handler<ResumeCustomer> for AgentActor {
    type Result = ();
    fn handle(&mut self, _: ResumeCustomer, _ctx: &mut Context<Self>) {
        if self.third.is_some() {
            return;
        }
        if let (Some(job), AgentState::OnCall { .. }) = (&self.job, self.agent.state()) {
            let _ = job.customer.commands.try_send(CallCommand(Command::EndHold));
            let bridge = Command::Bridge { peer: job.leg, shard: Some(job.leg_shard) };
            let _ = job.customer.commands.try_send(CallCommand(bridge));
        }
    }
}

impl Handler<TransferCustomer> for AgentActor {
    type Result = ();
    fn handle(&mut self, m: TransferCustomer, ctx: &mut Context<Self>) {
        if !matches!(self.agent.state(), AgentState::OnCall { .. }) || self.third.is_some() {
            return;
        }
        let mut m = m;
        if let Some(Target::Agent(a)) = m.to_target {
            (m.to_agent, m.to_target) = (Some(a), None);
        }
        if let Some(to) = &m.to_target {
            if let Err(e) = self.blind_to(to, ctx) {
                eprintln!("waihu: agent {}: transfer to {to:?}: {e}", self.spec.id);
            }
            return;
        }
        self.end_monitor(false);
        let Some(job) = self.job.take() else { return };
        let call = job.customer.call.call;
        // This agent lets go of the customer (its leg unbridged or hung up), and the
        // customer goes back to the router for the named agent or the pool.
        job.release_leg();
        let _ = job.customer.commands.try_send(CallCommand(Command::Unbridge));
        let now = Instant::now();
        let mut customer = job.customer;
        customer.call.for_agent = m.to_agent;
        customer.call.pool = m.to_pool.unwrap_or(customer.call.pool);
        customer.call.since = now;
        customer.call.deadline = now + m.wait;
        customer.call.priority = customer.call.priority.saturating_add(1);
        customer.transferred = true;
        self.router.do_send(Enqueue(customer));
        self.feed(Input::CallEnded { call }, ctx);
    }
}

impl Handler<CustomerGone> for AgentActor {
    type Result = ();
    fn handle(&mut self, m: CustomerGone, ctx: &mut Context<Self>) {
        if let Some(h) = self.handoffs.remove(&m.call) {
            // A customer handed to a third party hung up: so is the third party.
            if let Some(a) = h.addr {
                a.do_send(CallCommand(Command::Hangup));
            }
            return;
        }
        self.feed(Input::CallEnded { call: m.call }, ctx);
    }
}

impl Handler<PhoneGone> for AgentActor {
    type Result = ();
    fn handle(&mut self, m: PhoneGone, ctx: &mut Context<Self>) {
        self.feed(Input::PhoneLost { why: m.0 }, ctx);
    }
}

impl Handler<ConsultTransfer> for AgentActor {
    type Result = Result<(), TransferError>;
    fn handle(&mut self, m: ConsultTransfer, ctx: &mut Context<Self>) -> Self::Result {
        if !matches!(self.agent.state(), AgentState::OnCall { .. }) {
            return Err(TransferError::NotOnCall);
        }
        if self.third.is_some() {
            return Err(TransferError::Busy);
        }
        self.end_monitor(false);
        let (leg, shard) = self.dial_third(&m.to, ctx)?;
        let (consult, steps) = Consult::start();
        let agent = match m.to {
            Target::Agent(a) => Some(a),
            _ => None,
        };
        let customer = self.job.as_ref().map_or(0, |j| j.customer.call.call);
        self.third = Some(ThirdParty { leg, shard, addr: None, consult, agent, agent_addr: None, customer });
        self.apply(steps, ctx);
        Ok(())
    }
}

impl Handler<SwapConsult> for AgentActor {
    type Result = Result<(), TransferError>;
    fn handle(&mut self, _: SwapConsult, ctx: &mut Context<Self>) -> Self::Result {
        let t = self.third.as_mut().ok_or(TransferError::NoConsult)?;
        let steps = t.consult.swap();
        self.apply(steps, ctx);
        Ok(())
    }
}

impl Handler<CompleteTransfer> for AgentActor {
    type Result = Result<(), TransferError>;
    fn handle(&mut self, _: CompleteTransfer, ctx: &mut Context<Self>) -> Self::Result {
        let t = self.third.as_ref().ok_or(TransferError::NoConsult)?;
        let steps = t.consult.complete()?;
        self.apply(steps, ctx);
        Ok(())
    }
}

impl Handler<CancelConsult> for AgentActor {
    type Result = Result<(), TransferError>;
    fn handle(&mut self, _: CancelConsult, ctx: &mut Context<Self>) -> Self::Result {
        let t = self.third.as_ref().ok_or(TransferError::NoConsult)?;
        let steps = t.consult.cancel();
        self.apply(steps, ctx);
        Ok(())
    }
}

impl Handler<ConsultFor> for AgentActor {
    type Result = ();
    fn handle(&mut self, m: ConsultFor, ctx: &mut Context<Self>) {
        let call = m.customer.call.call;
        self.agent.handle_input(Input::Reserve { call }, Instant::now());
        if self.agent.state() != &(AgentState::Reserved { call }) {
            m.from.do_send(ConsultRefused { call, agent: self.spec.id });
            self.drive(ctx);
            return;
        }
        self.agent.set_limits(AgentLimits { wrap_up: m.customer.wrap_up, ..self.spec.limits });
        self.drive(ctx);
        self.consult_from = Some(m.from);
        // The same ways as a call of its own: the open session, or a call to the phone; the
        // colleague hears of it once the phone answers.
        self.offer(m.customer, false, ctx);
    }
}

impl Handler<ConsultReady> for AgentActor {
    type Result = ();
    fn handle(&mut self, m: ConsultReady, ctx: &mut Context<Self>) {
        let ours = self.job.as_ref().is_some_and(|j| j.customer.call.call == m.call);
        let Some(t) = self.third.as_mut().filter(|t| t.agent == Some(m.from_agent) && ours) else {
            m.agent.do_send(ConsultEnded { call: m.call });
            return;
        };
        (t.leg, t.shard, t.addr, t.agent_addr) = (m.leg, m.shard, m.addr, Some(m.agent));
        let steps = t.consult.answered();
        self.apply(steps, ctx);
    }
}

impl Handler<ConsultRefused> for AgentActor {
    type Result = ();
    fn handle(&mut self, m: ConsultRefused, ctx: &mut Context<Self>) {
        let ours = self.job.as_ref().is_some_and(|j| j.customer.call.call == m.call);
        if let Some(t) = self.third.as_ref().filter(|t| t.agent == Some(m.agent) && ours) {
            // Back to the customer.
            let steps = t.consult.consulted_gone();
            self.apply(steps, ctx);
            self.third = None;
        }
    }
}

impl Handler<ConsultCompleted> for AgentActor {
    type Result = ();
    fn handle(&mut self, m: ConsultCompleted, _ctx: &mut Context<Self>) {
        let Some(job) = self.job.as_mut().filter(|j| j.customer.call.call == m.call) else { return };
        // The customer is this agent's call now, bridged in by the colleague.
        self.consult_from = None;
        job.bridged = true;
        self.wrap = Some(WrapTarget { call: m.call, to: job.customer.wrap.clone(), given: None });
    }
}

impl Handler<ConsultEnded> for AgentActor {
    type Result = ();
    fn handle(&mut self, m: ConsultEnded, ctx: &mut Context<Self>) {
        if self.consult_from.is_none() {
            return;
        }
        let Some(job) = self.job.take_if(|j| j.customer.call.call == m.call) else { return };
        self.consult_from = None;
        job.release_leg();
        // A consultation without a transfer: no wrap-up of a call that was not this agent's.
        self.feed(Input::CallEnded { call: m.call }, ctx);
        self.feed(Input::Ready, ctx);
    }
}

impl Handler<PhoneRefer> for AgentActor {
    type Result = ();
    fn handle(&mut self, m: PhoneRefer, ctx: &mut Context<Self>) {
        let leg = self.job.as_ref().filter(|j| j.leg == m.leg).and_then(|j| j.leg_addr.clone());
        let notify = |status: u16| {
            if let Some(l) = &leg {
                l.do_send(CallCommand(Command::NotifyRefer { status }));
            }
        };
        if leg.is_none() || !matches!(self.agent.state(), AgentState::OnCall { .. }) {
            notify(603);
            return;
        }
        // The phone hears how it went before anything else happens to its leg (it hangs up
        // after a 200, and keeps its call after a failure).
        let checked = match Target::from_refer_to(&m.target) {
            None => Err(format!("the REFER names nothing to call: {}", m.target)),
            Some(t) => self.can_dial(&t).map(|()| t).map_err(|e| e.to_string()),
        };
        match checked {
            Ok(to) => {
                notify(200);
                if let Err(e) = self.blind_to(&to, ctx) {
                    eprintln!("waihu: agent {}: the phone's transfer to {to:?}: {e}", self.spec.id);
                }
            }
            Err(e) => {
                notify(503);
                eprintln!("waihu: agent {}: the phone's transfer: {e}", self.spec.id);
            }
        }
    }
}

impl Handler<Monitor> for AgentActor {
    type Result = ();
    fn handle(&mut self, m: Monitor, ctx: &mut Context<Self>) {
        // Not during a consultation: the mix would take the agent's leg from the consulted party.
        if self.third.is_some() {
            return;
        }
        let Some(job) = self.job.as_ref().filter(|j| j.bridged) else { return };
        if !matches!(self.agent.state(), AgentState::OnCall { .. }) {
            return;
        }
        if let Some(mon) = self.monitoring.as_mut() {
            mon.mode = m.mode;
            self.mix(ctx);
            return;
        }
        let Some(target) = self.target_of(&m.supervisor) else {
            eprintln!("waihu: agent {}: supervisor {} has no registered phone", self.spec.id, m.supervisor);
            return;
        };
        let customer = job.customer.call.call;
        let leg = monitor_leg(self.spec.id, customer);
        let shard = job.customer.shard;
        self.monitoring = Some(Monitoring { leg, customer, mode: m.mode, addr: None, mixed: None });
        self.call_phone(leg, shard, target, ctx);
    }
}

impl Handler<WrapUpCall> for AgentActor {
    type Result = Result<(), WrapError>;
    fn handle(&mut self, m: WrapUpCall, ctx: &mut Context<Self>) -> Self::Result {
        let call = match self.agent.state() {
            AgentState::OnCall { call } | AgentState::WrapUp { call } => *call,
            _ => return Err(WrapError::NoCall),
        };
        let Some(target) = self.wrap.as_mut().filter(|w| w.call == call) else { return Err(WrapError::NoCall) };
        let defaults;
        let codes: &[WrapCode] = match &target.to {
            Some(to) => &to.codes,
            None => {
                defaults = default_codes();
                &defaults
            }
        };
        let effect = wrapup::check(codes, &m.0, self.spec.id, crate::clock::utc_now())?;
        if matches!(self.agent.state(), AgentState::OnCall { .. }) {
            // Given while talking: it goes when the call ends (the contact is not final yet).
            target.given = Some((m.0, effect));
            return Ok(());
        }
        self.send_wrap_up((m.0, effect));
        self.feed(Input::Ready, ctx);
        Ok(())
    }
}

impl Handler<StopMonitor> for AgentActor {
    type Result = ();
    fn handle(&mut self, _: StopMonitor, _ctx: &mut Context<Self>) {
        self.end_monitor(true);
    }
}

impl Handler<LegStarted> for AgentActor {
    type Result = ();
    fn handle(&mut self, m: LegStarted, ctx: &mut Context<Self>) {
        if let Some(mon) = self.monitoring.as_mut().filter(|s| s.leg == m.leg) {
            match m.addr {
                Some(a) => mon.addr = Some(a),
                None => self.monitoring = None,
            }
            return;
        }
        if m.leg & THIRD_PARTY_BIT != 0 && m.leg & AGENT_LEG_BIT != 0 {
            match m.addr {
                Some(a) => {
                    if let Some(t) = self.third.as_mut().filter(|t| t.leg == m.leg) {
                        t.addr = Some(a);
                    } else if let Some(h) = self.handoffs.values_mut().find(|h| h.leg == m.leg) {
                        h.addr = Some(a);
                    } else {
                        a.do_send(CallCommand(Command::Hangup));
                    }
                }
                None => self.third_gone(m.leg, ctx),
            }
            return;
        }
        if let Some(s) = self.session.as_mut().filter(|s| s.leg == m.leg) {
            match m.addr {
                Some(a) => s.addr = Some(a),
                None => self.session = None,
            }
            return;
        }
        match (&mut self.job, m.addr) {
            (Some(job), Some(addr)) if job.leg == m.leg => job.leg_addr = Some(addr),
            (Some(job), None) if job.leg == m.leg => {
                // No media leg for the phone: this agent cannot take calls now.
                let call = job.customer.call.call;
                self.feed(Input::Declined { call }, ctx);
            }
            // The job moved on before the leg was up: hang the stray leg up.
            (_, Some(addr)) => addr.do_send(CallCommand(Command::Hangup)),
            _ => {}
        }
    }
}

impl Handler<LegAnswered> for AgentActor {
    type Result = ();
    fn handle(&mut self, m: LegAnswered, ctx: &mut Context<Self>) {
        if self.monitoring.as_ref().is_some_and(|s| s.leg == m.leg) {
            self.mix(ctx);
            return;
        }
        if let Some(t) = self.third.as_mut().filter(|t| t.leg == m.leg) {
            let steps = t.consult.answered();
            self.apply(steps, ctx);
            return;
        }
        if let Some(h) = self.handoffs.values_mut().find(|h| h.leg == m.leg && h.pending.is_some()) {
            // A blind transfer answered: the customer's music stops and the two talk.
            if let Some(c) = h.pending.take() {
                let _ = h.commands.try_send(CallCommand(Command::EndHold));
                let bridge = Command::Bridge { peer: h.leg, shard: Some(c.shard) };
                let _ = h.commands.try_send(CallCommand(bridge));
            }
            return;
        }
        if let Some(s) = self.session.as_mut().filter(|s| s.leg == m.leg) {
            s.up = true;
            self.feed(Input::Login, ctx);
            return;
        }
        let Some(job) = self.job.as_mut().filter(|j| j.leg == m.leg && !j.session) else { return };
        if job.ring_all {
            // Ring-all: the first to answer gets it, once the router says so.
            job.answered = true;
            self.router.do_send(RingAnswered { call: job.customer.call.call, agent: self.spec.id });
        } else {
            self.connect(ctx);
        }
    }
}

impl Handler<LegEnded> for AgentActor {
    type Result = ();
    fn handle(&mut self, m: LegEnded, ctx: &mut Context<Self>) {
        if m.leg & (AGENT_LEG_BIT | THIRD_PARTY_BIT) == AGENT_LEG_BIT | THIRD_PARTY_BIT {
            self.third_gone(m.leg, ctx);
            let call = m.leg & CUSTOMER_BITS;
            (self.sink)(&AgentEvent::ThirdPartyRecord { agent: self.spec.id, call, record: m.record });
            return;
        }
        if m.leg & (AGENT_LEG_BIT | MONITOR_BIT) == MONITOR_BIT {
            // A supervisor's leg: they hung up (or never answered), or we did.
            if let Some(mon) = self.monitoring.as_mut().filter(|s| s.leg == m.leg) {
                mon.addr = None;
                self.end_monitor(true);
            }
            let call = m.leg & CUSTOMER_BITS;
            (self.sink)(&AgentEvent::MonitorRecord { agent: self.spec.id, call, record: m.record });
            return;
        }
        if self.session.as_ref().is_some_and(|s| s.leg == m.leg) {
            // The session is gone (the phone hung up, or its media stopped): logged out,
            // and a customer on it is handled by policy.
            self.session = None;
            (self.sink)(&AgentEvent::LegRecord { agent: self.spec.id, call: m.leg, record: m.record });
            self.feed(Input::PhoneLost { why: PhoneLoss::LegEnded }, ctx);
            return;
        }
        let mine = self.job.as_ref().filter(|j| j.leg == m.leg).map(|j| (j.customer.call.call, j.bridged));
        // Its record, whether the agent still holds the call (the phone hung up) or not (we
        // hung it up when the customer's side ended).
        let call = m.leg & CUSTOMER_BITS;
        (self.sink)(&AgentEvent::LegRecord { agent: self.spec.id, call, record: m.record });
        match mine {
            // The phone hung up (or never answered): the agent's side of the call is over.
            Some((call, true)) => self.feed(Input::CallEnded { call }, ctx),
            Some((call, false)) => self.feed(Input::Declined { call }, ctx),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::host_port;

    #[test]
    fn contact_host_and_port() {
        assert_eq!(host_port("sip:agent1-0x55@127.0.0.1:5070"), Some(("127.0.0.1".into(), 5070)));
        assert_eq!(host_port("sip:a@h;transport=udp"), Some(("h".into(), 5060)));
        assert_eq!(host_port("sip:h:1"), Some(("h".into(), 1)));
        assert_eq!(host_port("tel:123"), None);
        assert_eq!(host_port("sip:a@h:port"), None);
    }
}

/// Every message here is fire-and-forget.
macro_rules! unit_messages {
    ($($t:ty),*) => { $(impl Message for $t { type Result = (); })* };
}

unit_messages!(
    PhoneRefer,
    Ring,
    ConsultFor,
    ConsultReady,
    ConsultRefused,
    ConsultCompleted,
    ConsultEnded,
    Login,
    Logout,
    Pause,
    Ready,
    Take,
    Withdrawn,
    CustomerGone,
    PhoneGone,
    LegAnswered,
    LegEnded,
    LegStarted,
    HoldCustomer,
    ResumeCustomer,
    TransferCustomer,
    Monitor,
    StopMonitor
);
