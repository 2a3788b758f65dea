//! The campaign as an actix actor: a thin shell around [`Campaign`]. It asks the shared
//! trunk admission for lines, feeds the machine `Line` for each, writes what comes out to
//! the store, and starts a [`CallActor`] for each dial once its attempt is durable (a group
//! commit: one fsync covers every attempt written meanwhile). Records come back as
//! messages and go in as `Ended`. It decides nothing itself.
#![allow(clippy::disallowed_methods)] // the shell reads the clock; the machine does not

use super::config::{CampaignConfig, ModeName};
use super::machine::{Campaign, Input, Output, Status};
use super::staffed::{CampaignSide, Staffed, Staffing};
use crate::agent::wrapup::{Effect, WrapUp};
use crate::call::{CallActor, CallCommand, CallEnv, CallSpec, Command, FlowConfig, HangupOn, Progress};
use crate::clock::{unix_ms, utc_now};
use crate::pacing::{AgentId, AgentPhase};
use crate::router::actor::WrapTo;
use actix::prelude::*;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use waihu_model::{AnsweredBy, CallId, CallRecord, Disposition, EndedBy};
use waihu_sip::trunk::{Admission, Admit};
use waihu_storage::{Attempt, AttemptId, AttemptState, CampaignId, ContactId, Decision, Store, WrapUpRecord, Write};

/// Every trunk's admission (CPS and channels), shared by all campaigns on this thread, so
/// the caps hold across campaigns.
pub type TrunkPool = Rc<RefCell<HashMap<String, Admission>>>;

/// `+86138****0000`: enough to tell numbers apart in a log, not enough to dial.
pub fn mask(number: &str) -> String {
    let chars: Vec<char> = number.chars().collect();
    let (head, tail) = if chars.len() > 10 { (6, 4) } else { (3.min(chars.len()), 2.min(chars.len())) };
    if chars.len() <= head + tail {
        return "*".repeat(chars.len());
    }
    let h: String = chars[..head].iter().collect();
    let t: String = chars[chars.len() - tail..].iter().collect();
    format!("{h}****{t}")
}

/// Where an attempt is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Written; waiting for its group commit.
    Committing,
    /// Durable; its media leg is being opened.
    Starting,
    Inviting,
    Ringing,
    Answered,
}

impl Phase {
    fn label(self) -> &'static str {
        match self {
            Phase::Committing => "committing",
            Phase::Starting => "starting",
            Phase::Inviting => "inviting",
            Phase::Ringing => "ringing",
            Phase::Answered => "answered",
        }
    }
}

#[derive(Debug)]
struct Live {
    attempt: Attempt,
    trunk: usize,
    target: String,
    phase: Phase,
    call: Option<Addr<CallActor>>,
    /// A callback booked for this agent.
    for_agent: Option<AgentId>,
}

/// What the campaign actor needs to run.
#[derive(Debug, Clone)]
pub struct CampaignEnv {
    pub calls: CallEnv,
    pub store: Store,
    pub trunks: TrunkPool,
    /// The SIP stack's T1 (the calls' transaction timeouts follow it).
    pub sip_t1: Duration,
}

pub struct CampaignActor {
    machine: Campaign,
    cfg: Arc<CampaignConfig>,
    env: CampaignEnv,
    live: HashMap<AttemptId, Live>,
    timer: Option<SpawnHandle>,
    /// Shutting down: no new calls; the actor stops once the live ones have their records.
    stopping: bool,
    on_stopped: Option<Box<dyn FnOnce(CampaignId)>>,
    /// Campaigns with agents: the pacer and the router.
    staffed: Option<Staffed>,
}

impl std::fmt::Debug for CampaignActor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CampaignActor").field("id", &self.machine.id()).field("live", &self.live.len()).finish()
    }
}

/// Start, pause or stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Start,
    Pause,
    Stop,
}

impl Message for Control {
    type Result = ();
}

/// The campaign's state, with its calls by phase.
#[derive(Debug)]
pub struct GetStatus;

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub status: Status,
    pub calls_by_phase: BTreeMap<String, u64>,
}

impl Message for GetStatus {
    type Result = Report;
}

/// Stop dialling, end the live calls (as interrupted before their answer), and stop once
/// every record is written.
#[derive(Debug)]
pub struct Shutdown;

impl Message for Shutdown {
    type Result = ();
}

#[derive(Debug)]
struct Durable {
    attempt: AttemptId,
    result: Result<(), String>,
}

impl Message for Durable {
    type Result = ();
}

#[derive(Debug)]
struct CallDone {
    attempt: AttemptId,
    record: Box<CallRecord>,
}

impl Message for CallDone {
    type Result = ();
}

/// An agent wrapped up one of this campaign's calls (checked against its codes): the
/// wrap-up is stored and the contact closed, reopened or booked for its callback.
#[derive(Debug)]
pub struct Dispose {
    pub call: CallId,
    pub agent: AgentId,
    pub wrap: WrapUp,
    pub effect: Effect,
}

impl Message for Dispose {
    type Result = ();
}

/// An agent's phase, for the pacer of a campaign the agent works.
#[derive(Debug)]
pub struct AgentPhaseChanged {
    pub agent: AgentId,
    pub phase: AgentPhase,
}

impl Message for AgentPhaseChanged {
    type Result = ();
}

/// What a staffed campaign's pacer and router hear of a call.
#[derive(Debug, Clone, Copy)]
enum Heard {
    Human,
    Machine,
    Connected,
    Relaying,
}

#[derive(Debug)]
struct CallHeard {
    attempt: AttemptId,
    heard: Heard,
}

impl Message for CallHeard {
    type Result = ();
}

#[derive(Debug)]
struct CallProgress {
    attempt: AttemptId,
    phase: Phase,
}

impl Message for CallProgress {
    type Result = ();
}

impl CampaignActor {
    pub fn new(
        machine: Campaign,
        cfg: Arc<CampaignConfig>,
        env: CampaignEnv,
        on_stopped: Box<dyn FnOnce(CampaignId)>,
    ) -> CampaignActor {
        {
            let mut pool = env.trunks.borrow_mut();
            for t in &cfg.trunks {
                pool.entry(t.name.clone()).or_insert_with(|| Admission::for_trunk(t));
            }
        }
        CampaignActor {
            machine,
            cfg,
            env,
            live: HashMap::new(),
            timer: None,
            stopping: false,
            on_stopped: Some(on_stopped),
            staffed: None,
        }
    }

    /// A campaign with agents: its live people go to `staffing`'s router, and its pacer
    /// dials from the agents' states. Broadcast campaigns ignore it.
    pub fn with_staffing(mut self, staffing: Staffing) -> CampaignActor {
        if self.cfg.mode != ModeName::Broadcast {
            self.staffed = Some(Staffed::new(&self.cfg, staffing, self.machine.id(), Instant::now()));
        }
        self
    }

    fn id(&self) -> CampaignId {
        self.machine.id()
    }

    /// Feeds lines while the machine wants them and a trunk admits, carries the outputs
    /// out, and re-arms the one timer.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        self.drain(ctx);
        if let Some(s) = self.staffed.as_mut() {
            let n = s.grants();
            self.machine.grant(n);
        }
        let mut wait: Option<Duration> = None;
        while !self.stopping && self.machine.wants_lines(utc_now()) > 0 {
            let now = utc_now();
            let mut admitted = None;
            for i in self.machine.trunk_order(now) {
                let name = &self.cfg.trunks[i].name;
                let mut pool = self.env.trunks.borrow_mut();
                let Some(adm) = pool.get_mut(name) else { continue };
                match adm.try_admit(Instant::now()) {
                    Admit::Go => {
                        admitted = Some(i);
                        break;
                    }
                    Admit::WaitUntil(t) => {
                        let d = t.saturating_duration_since(Instant::now());
                        wait = Some(wait.map_or(d, |w| w.min(d)));
                    }
                    // A call's end pumps again; meanwhile look again soon (another
                    // campaign may hold the channels).
                    Admit::ChannelsFull => {
                        wait = Some(wait.map_or(Duration::from_millis(50), |w| w.min(Duration::from_millis(50))))
                    }
                }
            }
            let Some(trunk) = admitted else { break };
            let attempt = match self.env.store.next_attempt_id() {
                Ok(a) => a,
                Err(e) => {
                    self.release(trunk);
                    self.store_failed(&e.to_string(), ctx);
                    break;
                }
            };
            self.machine.handle_input(Input::Line { attempt, trunk }, now);
            if !self.drain(ctx) {
                // Nothing was due after all (every due contact was blocked by a rule).
                self.release(trunk);
                break;
            }
            if let Some(s) = self.staffed.as_mut() {
                s.dialled(attempt as CallId, Instant::now());
            }
        }
        if let Some(s) = self.staffed.as_mut() {
            // What the pacer granted and nothing used (no contact due, a trunk full).
            let unused = self.machine.take_unused_grant();
            s.not_dialled(unused, Instant::now());
        }
        if let Some(h) = self.timer.take() {
            ctx.cancel_future(h);
        }
        let due = self.machine.poll_timeout().map(|t| (t - utc_now()).to_std().unwrap_or(Duration::ZERO));
        let pacer =
            self.staffed.as_ref().and_then(|s| s.poll_timeout()).map(|t| t.saturating_duration_since(Instant::now()));
        let next = [due, wait, pacer].into_iter().flatten().min();
        if let Some(d) = next.filter(|_| !self.stopping) {
            // A floor keeps a due-now contact that cannot be placed from spinning the loop.
            self.timer = Some(ctx.run_later(d.max(Duration::from_millis(5)), |act, ctx| {
                act.timer = None;
                if let Some(s) = act.staffed.as_mut() {
                    s.handle_timeout(Instant::now());
                }
                act.pump(ctx);
            }));
        }
    }

    /// Carries out the machine's outputs; true if one was a dial.
    fn drain(&mut self, ctx: &mut Context<Self>) -> bool {
        let mut dialled = false;
        while let Some(o) = self.machine.poll_output() {
            match o {
                Output::Dial { attempt, contact, trunk, state } => {
                    dialled = true;
                    self.dial(attempt, contact, trunk, state, ctx);
                }
                Output::Ended { attempt, disposition, state, .. } => {
                    self.finish(attempt, disposition, &state, ctx);
                }
                Output::Blocked { contact, rule, reason, until, state } => {
                    let d = Decision {
                        campaign: self.id(),
                        contact,
                        at_unix_ms: unix_ms(),
                        rule: rule.to_string(),
                        reason,
                        until_unix_ms: until.map(|t| t.timestamp_millis().max(0) as u64),
                    };
                    let id = self.id();
                    self.env.store.submit(Write::ContactState { campaign: id, contact, state });
                    let rx = self.env.store.submit(Write::Decision(d));
                    self.report_failure(rx, ctx);
                }
                Output::State { contact, state } => {
                    let id = self.id();
                    let rx = self.env.store.submit(Write::ContactState { campaign: id, contact, state });
                    self.report_failure(rx, ctx);
                }
                Output::Run(run) => {
                    if let Err(e) = self.env.store.set_run_state(self.id(), run) {
                        eprintln!("waihu: campaign {}: cannot store its state {run}: {e}", self.id());
                    } else {
                        eprintln!("waihu: campaign {}: {run}", self.id());
                    }
                }
            }
        }
        dialled
    }

    /// The store refused a write: nothing more is dialled until an operator resumes.
    fn store_failed(&mut self, error: &str, _ctx: &mut Context<Self>) {
        eprintln!("waihu: campaign {}: {error}; campaign paused (calls up go on)", self.id());
        self.machine.handle_input(Input::Pause, utc_now());
        // The pause itself may not be storable: it holds in memory until the store is.
        while let Some(o) = self.machine.poll_output() {
            if let Output::Run(run) = o {
                let _ = self.env.store.set_run_state(self.id(), run);
            }
        }
    }

    fn release(&mut self, trunk: usize) {
        if let Some(adm) = self.env.trunks.borrow_mut().get_mut(&self.cfg.trunks[trunk].name) {
            adm.release();
        }
    }

    fn dial(
        &mut self,
        attempt: AttemptId,
        contact: ContactId,
        trunk: usize,
        state: waihu_storage::ContactState,
        ctx: &mut Context<Self>,
    ) {
        let store = &self.env.store;
        let phone = match (store.contact(self.id(), contact), store.contact_dnc(self.id(), contact)) {
            (Ok(Some(c)), Ok(None)) => c.contact.phone,
            (Ok(Some(_)), Ok(Some(list))) => {
                self.release(trunk);
                let reason = format!("on a do-not-call list ({list})");
                self.machine.handle_input(Input::Refused { attempt, rule: "dnc", reason }, utc_now());
                return;
            }
            (Ok(None), _) => {
                self.release(trunk);
                let reason = "the contact is not in the store".to_string();
                self.machine.handle_input(Input::Refused { attempt, rule: "missing", reason }, utc_now());
                return;
            }
            (Err(e), _) | (_, Err(e)) => {
                self.release(trunk);
                self.machine.handle_input(Input::Aborted { attempt }, utc_now());
                self.store_failed(&e.to_string(), ctx);
                return;
            }
        };
        let t = &self.cfg.trunks[trunk];
        let rec = Attempt {
            id: attempt,
            campaign: self.id(),
            contact,
            trunk: t.name.clone(),
            call_id: format!("w{}-{attempt}", self.id()),
            created_unix_ms: unix_ms(),
            state: AttemptState::Dialing,
            record: None,
        };
        let target = format!("sip:{phone}@{}:{}", t.host, t.port);
        // Written and made durable on the commit thread (a group commit); the INVITE waits
        // for it, the actor does not.
        // A callback booked for a named agent (their id, or their name): routed to them.
        let for_agent = state
            .callback
            .as_ref()
            .and_then(|c| c.agent.as_deref())
            .and_then(|a| a.parse().ok().or_else(|| store.agent_by_name(a).ok().flatten().map(|r| r.id)));
        let rx = self.env.store.submit(Write::BeginAttempt(rec.clone(), state));
        self.live
            .insert(attempt, Live { attempt: rec, trunk, target, phase: Phase::Committing, call: None, for_agent });
        ctx.spawn(
            async move {
                let result = rx.recv_async().await.unwrap_or_else(|_| Err("the commit thread is gone".into()));
                Durable { attempt, result }
            }
            .into_actor(self)
            .map(|d, act, ctx| act.on_durable(d, ctx)),
        );
    }

    fn on_durable(&mut self, d: Durable, ctx: &mut Context<Self>) {
        let Some(live) = self.live.get_mut(&d.attempt) else { return };
        live.phase = Phase::Starting;
        if let Err(e) = d.result {
            // Not durable: not sent. The attempt is closed as ours, not the contact's, after
            // the pause (closing it pumps, and nothing more may be dialled).
            self.store_failed(&e, ctx);
            self.end_without_call(d.attempt, Disposition::LocalFailure, Some(format!("store: {e}")), ctx);
            return;
        }
        if self.stopping {
            self.end_without_call(d.attempt, Disposition::Interrupted, None, ctx);
            return;
        }
        let t = self.cfg.trunks[live.trunk].clone();
        let flow = FlowConfig {
            id: d.attempt as CallId,
            target: live.target.clone(),
            trunk: t.name.clone(),
            ring_timeout: self.cfg.ring_timeout,
            amd: self.cfg.amd,
            // A broadcast's message decides its hang-ups; with agents, a machine (and a fax,
            // silence, an intercept) is hung up at the verdict, so it holds no line.
            hangup_on: HangupOn::Machine,
            wait_for_beep: self.cfg.message.is_some(),
            max_duration: self.cfg.max_duration,
            message: self.cfg.message.clone(),
            safe_harbour: self.cfg.safe_harbour.clone(),
            keepalive: self.cfg.keepalive,
            review_sample: (self.cfg.amd && sampled(d.attempt, self.cfg.amd_review_fraction))
                .then(|| Duration::from_secs(self.cfg.amd_review_seconds)),
            ..FlowConfig::default()
        }
        .with_sip_t1(self.env.sip_t1);
        let spec = CallSpec { flow, trunk: t, shard: None, call_id: Some(live.attempt.call_id.clone()) };
        let attempt = d.attempt;
        let (a1, a2) = (ctx.address(), ctx.address());
        let staffed = self.staffed.is_some();
        let progress = Box::new(move |_: CallId, p: &Progress| {
            if let Progress::ReviewSample { wav } = p {
                a1.do_send(ReviewSampled { attempt, wav: wav.clone() });
                return;
            }
            let heard = match p {
                // Not sure: maybe a person, so they get an agent (or the safe-harbour
                // message), never silence.
                Progress::Amd { answered_by: AnsweredBy::Human | AnsweredBy::NotSure, .. } => Some(Heard::Human),
                Progress::Amd { .. } => Some(Heard::Machine),
                Progress::Connected { .. } => Some(Heard::Connected),
                Progress::Relaying => Some(Heard::Relaying),
                _ => None,
            };
            if let Some(heard) = heard.filter(|_| staffed) {
                a1.do_send(CallHeard { attempt, heard });
                return;
            }
            let phase = match p {
                Progress::Inviting { .. } => Phase::Inviting,
                Progress::Ringing { .. } => Phase::Ringing,
                Progress::Answered { .. } => Phase::Answered,
                _ => return,
            };
            a1.do_send(CallProgress { attempt, phase });
        });
        let record = Box::new(move |r: CallRecord| a2.do_send(CallDone { attempt, record: Box::new(r) }));
        ctx.spawn(CallActor::start(self.env.calls.clone(), spec, progress, record).into_actor(self).map(
            move |started, act, ctx| match started {
                Ok(addr) => {
                    if act.stopping {
                        addr.do_send(CallCommand(Command::Shutdown));
                    }
                    if let Some(l) = act.live.get_mut(&attempt) {
                        l.call = Some(addr);
                    }
                }
                Err(e) => act.end_without_call(attempt, Disposition::LocalFailure, Some(e.to_string()), ctx),
            },
        ));
    }

    /// An attempt that ends before its call started: a record of our own.
    fn end_without_call(
        &mut self,
        attempt: AttemptId,
        disposition: Disposition,
        error: Option<String>,
        ctx: &mut Context<Self>,
    ) {
        let now = unix_ms();
        let record = CallRecord {
            id: attempt as CallId,
            disposition,
            started_unix_ms: now,
            ended_unix_ms: now,
            ended_by: EndedBy::Local,
            media_error: error,
            ..CallRecord::default()
        };
        self.on_record(attempt, record, ctx);
    }

    fn on_record(&mut self, attempt: AttemptId, mut record: CallRecord, ctx: &mut Context<Self>) {
        let Some(live) = self.live.get_mut(&attempt) else { return };
        // The number stays sealed in the contact.
        record.target.clear();
        record.trunk = live.attempt.trunk.clone();
        if record.call_id.is_empty() {
            record.call_id = format!("{}@waihu.invalid", live.attempt.call_id);
        }
        live.attempt.record = Some(record.clone());
        self.machine.handle_input(Input::Ended { attempt, disposition: record.disposition }, utc_now());
        self.pump(ctx);
        self.maybe_stop(ctx);
    }

    fn finish(
        &mut self,
        attempt: AttemptId,
        disposition: Disposition,
        state: &waihu_storage::ContactState,
        ctx: &mut Context<Self>,
    ) {
        let mut rec = match self.live.remove(&attempt) {
            Some(live) => {
                self.release(live.trunk);
                live.attempt
            }
            // An attempt in flight at the last stop, closed at load.
            None => match self.env.store.attempt(self.id(), attempt) {
                Ok(Some(a)) => a,
                Ok(None) => return,
                Err(e) => {
                    eprintln!("waihu: campaign {}: attempt {attempt}: {e}", self.id());
                    return;
                }
            },
        };
        // Every end passes here (a call's record, or a dial refused before any call): the
        // pacer and the router hear of it once.
        if let Some(s) = self.staffed.as_mut() {
            s.ended(attempt as CallId, disposition, Instant::now());
        }
        rec.state = AttemptState::Ended;
        if rec.record.is_none() {
            let now = unix_ms();
            rec.record = Some(CallRecord {
                id: attempt as CallId,
                trunk: rec.trunk.clone(),
                disposition,
                started_unix_ms: rec.created_unix_ms,
                ended_unix_ms: now,
                ended_by: EndedBy::Local,
                ..CallRecord::default()
            });
        }
        let rx = self.env.store.submit(Write::EndAttempt(rec, state.clone()));
        self.report_failure(rx, ctx);
    }

    /// A write nobody waits for: its failure pauses the campaign.
    fn report_failure(&mut self, rx: flume::Receiver<Result<(), String>>, ctx: &mut Context<Self>) {
        ctx.spawn(async move { rx.recv_async().await.ok() }.into_actor(self).map(|r, act, ctx| {
            if let Some(Err(e)) = r {
                act.store_failed(&e, ctx);
            }
        }));
    }

    fn maybe_stop(&mut self, ctx: &mut Context<Self>) {
        if self.stopping && self.live.is_empty() {
            // Stop once every write so far is on disk.
            let rx = self.env.store.durable();
            ctx.wait(
                async move { rx.recv_async().await.ok() }
                    .into_actor(self)
                    .map(|_, _, ctx: &mut Context<Self>| ctx.stop()),
            );
        }
    }

    fn report(&mut self) -> Report {
        let mut calls_by_phase = BTreeMap::new();
        for l in self.live.values() {
            *calls_by_phase.entry(l.phase.label().to_string()).or_default() += 1;
        }
        Report { status: self.machine.status(utc_now()), calls_by_phase }
    }
}

impl Actor for CampaignActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // The operators' verdicts so far set the AMD false-positive rate.
        if let Ok(c) = self.env.store.review_counts(self.id()) {
            self.machine.set_reviewed(c.reviewed, c.humans);
        }
        // Attempts closed as interrupted at load go to the store first.
        self.pump(ctx);
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        if let Some(f) = self.on_stopped.take() {
            f(self.id());
        }
    }
}

impl Handler<Control> for CampaignActor {
    type Result = ();

    fn handle(&mut self, c: Control, ctx: &mut Context<Self>) {
        let input = match c {
            Control::Start => Input::Start,
            Control::Pause => Input::Pause,
            Control::Stop => Input::Stop,
        };
        self.machine.handle_input(input, utc_now());
        self.pump(ctx);
    }
}

impl Handler<GetStatus> for CampaignActor {
    type Result = MessageResult<GetStatus>;

    fn handle(&mut self, _: GetStatus, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.report())
    }
}

impl Handler<Shutdown> for CampaignActor {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) {
        self.stopping = true;
        for l in self.live.values() {
            if let Some(c) = &l.call {
                c.do_send(CallCommand(Command::Shutdown));
            }
        }
        self.maybe_stop(ctx);
    }
}

impl Handler<Durable> for CampaignActor {
    type Result = ();

    fn handle(&mut self, d: Durable, ctx: &mut Context<Self>) {
        self.on_durable(d, ctx);
    }
}

impl Handler<CallDone> for CampaignActor {
    type Result = ();

    fn handle(&mut self, m: CallDone, ctx: &mut Context<Self>) {
        self.on_record(m.attempt, *m.record, ctx);
    }
}

impl Handler<AgentPhaseChanged> for CampaignActor {
    type Result = ();

    fn handle(&mut self, m: AgentPhaseChanged, ctx: &mut Context<Self>) {
        if let Some(s) = self.staffed.as_mut() {
            s.agent(m.agent, m.phase, Instant::now());
            s.handle_timeout(Instant::now());
            self.pump(ctx);
        }
    }
}

impl Handler<CallHeard> for CampaignActor {
    type Result = ();

    fn handle(&mut self, m: CallHeard, ctx: &mut Context<Self>) {
        let Some(s) = self.staffed.as_mut() else { return };
        let call = m.attempt as CallId;
        let now = Instant::now();
        match m.heard {
            Heard::Human => {
                let live = self.live.get(&m.attempt);
                let (addr, for_agent) = (live.and_then(|l| l.call.clone()), live.and_then(|l| l.for_agent));
                let wrap = WrapTo { campaign: ctx.address().recipient(), codes: self.cfg.dispositions.clone() };
                match addr {
                    Some(addr) => {
                        let shard = self.env.calls.plane.shard_for(call);
                        let trunk = self.live.get(&m.attempt).and_then(|l| self.cfg.trunks.get(l.trunk)).cloned();
                        let side = CampaignSide { for_agent, wrap: Some(wrap), trunk };
                        s.human(call, addr.recipient(), shard, side, now)
                    }
                    // Not started as far as we know: nobody to connect.
                    None => s.machine(call, now),
                }
            }
            Heard::Machine => s.machine(call, now),
            Heard::Connected => s.connected(call, now),
            Heard::Relaying => s.relaying(call, now),
        }
        if let Some(l) = self.live.get_mut(&m.attempt) {
            l.phase = Phase::Answered;
        }
        self.pump(ctx);
    }
}

/// A machine call's first seconds, for an operator's review.
#[derive(Debug)]
struct ReviewSampled {
    attempt: AttemptId,
    wav: Arc<[u8]>,
}

impl Message for ReviewSampled {
    type Result = ();
}

impl Handler<ReviewSampled> for CampaignActor {
    type Result = ();
    fn handle(&mut self, m: ReviewSampled, ctx: &mut Context<Self>) {
        let w = Write::Review { campaign: self.id(), attempt: m.attempt, at_unix_ms: unix_ms(), wav: m.wav.to_vec() };
        let rx = self.env.store.submit(w);
        self.report_failure(rx, ctx);
    }
}

/// Whether attempt `attempt` is in the review sample: a fixed share of attempts, spread by
/// a hash of the id (deterministic: the same attempt is always in or out).
fn sampled(attempt: AttemptId, fraction: f64) -> bool {
    let h = attempt.wrapping_add(0x9e37_79b9).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40; // 24 bits
    (h as f64) < fraction * (1u64 << 24) as f64
}

impl Handler<Dispose> for CampaignActor {
    type Result = ();

    fn handle(&mut self, m: Dispose, ctx: &mut Context<Self>) {
        let campaign = self.id();
        let contact = match self.env.store.attempt(campaign, m.call as AttemptId) {
            Ok(a) => a.map(|a| a.contact),
            Err(e) => {
                self.store_failed(&e.to_string(), ctx);
                return;
            }
        };
        let w = WrapUpRecord {
            campaign,
            call: m.call,
            contact,
            agent: m.agent,
            code: m.wrap.code.clone(),
            notes: m.wrap.notes.clone(),
            follow_up: m.wrap.follow_up.clone(),
            callback_unix_ms: m.wrap.callback.as_ref().map(|c| c.at.timestamp_millis().max(0) as u64),
            callback_same_agent: m.wrap.callback.as_ref().is_some_and(|c| c.same_agent),
            at_unix_ms: unix_ms(),
        };
        let rx = self.env.store.submit(Write::WrapUp(w));
        self.report_failure(rx, ctx);
        let Some(contact) = contact else { return };
        if m.effect.dnc {
            // The person asked not to be called again: on the `agent` list, for every campaign.
            let phone = self.env.store.contact(campaign, contact).ok().flatten().map(|c| c.contact.phone);
            if let Some(phone) = phone {
                if let Err(e) = self.env.store.add_dnc("agent", &[phone], unix_ms()) {
                    self.store_failed(&e.to_string(), ctx);
                }
            }
        }
        self.machine.handle_input(Input::WrappedUp { contact, effect: m.effect }, utc_now());
        self.pump(ctx);
    }
}

impl Handler<CallProgress> for CampaignActor {
    type Result = ();

    fn handle(&mut self, m: CallProgress, _ctx: &mut Context<Self>) {
        if let Some(l) = self.live.get_mut(&m.attempt) {
            l.phase = m.phase;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::mask;

    #[test]
    fn the_review_sample_takes_its_share_of_attempts() {
        let n = (1..=100_000).filter(|&a| super::sampled(a, 0.05)).count();
        assert!((4_700..=5_300).contains(&n), "{n} of 100,000 for 5%");
        assert_eq!((1..=1000).filter(|&a| super::sampled(a, 0.0)).count(), 0);
        assert_eq!((1..=1000).filter(|&a| super::sampled(a, 1.0)).count(), 1000);
    }

    #[test]
    fn numbers_are_masked_in_logs() {
        assert_eq!(mask("+8613800000000"), "+86138****0000");
        assert_eq!(mask("+15551234"), "+15****34");
        assert_eq!(mask("123"), "***");
    }
}
