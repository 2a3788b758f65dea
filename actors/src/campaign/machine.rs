//! The campaign as a pure state machine: whom to dial next, on which trunk, and what
//! follows each attempt. It holds the hopper, applies the calling rules before every dial
//! (each refusal comes out with its reason for the audit trail), runs the disposition →
//! retry step, and moves away from a trunk that answers with congestion. Time comes only
//! from `now`; the actor persists what comes out and starts the calls.
//!
//! The shell's loop: while [`Campaign::wants_lines`] is above zero and a trunk (in
//! [`Campaign::trunk_order`]) admits a call, feed [`Input::Line`]; carry out every output;
//! re-arm one timer at [`Campaign::poll_timeout`].

use super::config::{CampaignConfig, ModeName};
use super::hopper::{Entry, Hopper};
use super::retry::{AttemptTally, Next};
use crate::compliance::{self, PastAttempt, Subject};
use chrono::{DateTime, Duration, TimeZone, Utc};
use chrono_tz::Tz;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use waihu_model::Disposition;
use waihu_storage::{AttemptId, Callback, CampaignId, ContactId, ContactMeta, ContactState, PastCall, RunState};

/// How far ahead a blocked contact's next chance is looked for before it is given up.
const LOOKAHEAD_DAYS: i64 = 8;
/// Attempts kept per contact for the calling rules (they look back at most 72 h).
const HISTORY: usize = 32;
/// A trunk that answered with congestion is passed over this long.
const CONGESTION_BACKOFF_SECS: i64 = 30;

#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Start,
    Pause,
    /// No more dialling; calls up go on to their end.
    Stop,
    /// The shell holds a line on `trunk` for the next due contact, as attempt `attempt`.
    Line {
        attempt: AttemptId,
        trunk: usize,
    },
    /// The attempt ended this way.
    Ended {
        attempt: AttemptId,
        disposition: Disposition,
    },
    /// The contact turned out to be undiallable when its attempt was about to start (a
    /// number added to a do-not-call list since the campaign loaded).
    Refused {
        attempt: AttemptId,
        rule: &'static str,
        reason: String,
    },
    /// The attempt never started (it could not be written): as if it had not been
    /// taken, the contact is due again at once.
    Aborted {
        attempt: AttemptId,
    },
    /// The contact asked to be called back at a time (optionally by a named agent).
    Callback {
        contact: ContactId,
        at: DateTime<Utc>,
        agent: Option<String>,
    },
    /// The agent wrapped up the contact's call (after it ended): close the contact under
    /// the agent's code, or dial it again later, or book its callback.
    WrappedUp {
        contact: ContactId,
        effect: crate::agent::wrapup::Effect,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Write the attempt and this contact state (durably), then place the call.
    Dial { attempt: AttemptId, contact: ContactId, trunk: usize, state: ContactState },
    /// The attempt is over: write its record with this contact state.
    Ended { attempt: AttemptId, contact: ContactId, disposition: Disposition, state: ContactState },
    /// A rule kept the contact from being dialled: write the decision and the state.
    Blocked {
        contact: ContactId,
        rule: &'static str,
        reason: String,
        until: Option<DateTime<Utc>>,
        state: ContactState,
    },
    /// Write this contact state (a callback was scheduled).
    State { contact: ContactId, state: ContactState },
    /// Persist the run state.
    Run(RunState),
}

/// What the campaign's state shows an operator.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Status {
    pub run: Option<RunState>,
    pub mode: String,
    pub lines: u32,
    pub in_flight: usize,
    /// Calls up ÷ lines allowed.
    pub dial_level: f64,
    pub hopper: usize,
    pub due_now: usize,
    pub contacts: usize,
    pub finished_contacts: usize,
    pub attempts: u64,
    pub by_disposition: BTreeMap<String, u64>,
    pub blocked_by_rule: BTreeMap<String, u64>,
    pub final_by_label: BTreeMap<String, u64>,
    /// Callbacks scheduled and not yet made.
    pub callbacks: usize,
    /// Abandoned ÷ live-answered over the profile's window, the estimated AMD false
    /// positives counted as both where the profile says so (broadcast: no abandons).
    pub abandon_rate: f64,
    pub estimated_amd_false_positives: f64,
    /// The AMD false-positive rate used: measured from the operators' reviews once
    /// [`MIN_REVIEWED`] samples are judged, the configured one before.
    pub amd_false_positive_rate: f64,
    /// Review samples judged (and how many of them were people).
    pub amd_reviewed: u64,
    pub amd_reviewed_people: u64,
}

/// Review samples judged before their rate replaces the configured one.
pub const MIN_REVIEWED: u64 = 20;

#[derive(Debug)]
struct Slot {
    priority: i32,
    zones: Vec<Tz>,
    region: Option<String>,
    dnc: Option<String>,
    state: ContactState,
    /// A wrap-up that came while the contact's attempt was still up (the agent's side ended
    /// first): applied once the attempt's own end is in.
    pending_wrap: Option<crate::agent::wrapup::Effect>,
}

#[derive(Debug)]
pub struct Campaign {
    id: CampaignId,
    cfg: Arc<CampaignConfig>,
    run: RunState,
    hopper: Hopper,
    contacts: HashMap<ContactId, Slot>,
    in_flight: HashMap<AttemptId, (ContactId, usize)>,
    congested_until: Vec<Option<DateTime<Utc>>>,
    out: VecDeque<Output>,
    attempts: u64,
    by_disposition: BTreeMap<String, u64>,
    blocked_by_rule: BTreeMap<String, u64>,
    final_by_label: BTreeMap<String, u64>,
    /// Contacts with their final disposition.
    finals: usize,
    /// Answers within the abandon window: people, abandoned people, and machines (some of
    /// which AMD got wrong).
    live: VecDeque<(DateTime<Utc>, Answer)>,
    /// Campaigns with agents: the lines the pacer has granted and no dial has used yet.
    granted: u32,
    /// Review samples the operators judged, and how many were people.
    reviewed: (u64, u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Live,
    Abandoned,
    Machine,
}

fn unix_ms(t: DateTime<Utc>) -> u64 {
    u64::try_from(t.timestamp_millis()).unwrap_or(0)
}

fn from_ms(ms: u64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(i64::try_from(ms).unwrap_or(i64::MAX)).single().unwrap_or(DateTime::<Utc>::MAX_UTC)
}

fn tally_of(s: &ContactState) -> AttemptTally {
    AttemptTally { counted: s.counted, by_label: s.by_label.clone() }
}

impl Campaign {
    /// The campaign as the store left it: each contact with its state, and the attempts
    /// that were in flight (a crash, or a stop mid-call). Those are closed at once as
    /// `interrupted`, each contact getting its retry; none is dialled again as the same
    /// attempt.
    pub fn new(
        id: CampaignId,
        cfg: Arc<CampaignConfig>,
        run: RunState,
        contacts: Vec<(ContactMeta, ContactState)>,
        open_attempts: &[(AttemptId, ContactId)],
        now: DateTime<Utc>,
    ) -> Campaign {
        let mut c = Campaign {
            id,
            congested_until: vec![None; cfg.trunks.len().max(1)],
            cfg,
            run,
            hopper: Hopper::default(),
            contacts: HashMap::with_capacity(contacts.len()),
            in_flight: HashMap::new(),
            out: VecDeque::new(),
            attempts: 0,
            by_disposition: BTreeMap::new(),
            blocked_by_rule: BTreeMap::new(),
            final_by_label: BTreeMap::new(),
            finals: 0,
            reviewed: (0, 0),
            granted: 0,
            live: VecDeque::new(),
        };
        for (meta, state) in contacts {
            // The list's zone; else the number's candidates (all of them apply); else the
            // campaign's default.
            let zones = match meta.timezone.as_deref().and_then(|z| z.parse::<Tz>().ok()) {
                Some(z) => vec![z],
                None => {
                    let derived: Vec<Tz> = meta.zones.iter().filter_map(|z| z.parse().ok()).collect();
                    if derived.is_empty() {
                        c.cfg.default_timezone.into_iter().collect()
                    } else {
                        derived
                    }
                }
            };
            c.attempts += u64::from(state.attempts);
            if let Some(label) = &state.final_label {
                *c.final_by_label.entry(label.clone()).or_default() += 1;
                c.finals += 1;
            }
            c.contacts.insert(
                meta.id,
                Slot { priority: meta.priority, zones, region: meta.region, dnc: meta.dnc, state, pending_wrap: None },
            );
        }
        let open: HashMap<AttemptId, ContactId> = open_attempts.iter().copied().collect();
        let ids: Vec<ContactId> = c.contacts.keys().copied().collect();
        let mut due = Vec::with_capacity(ids.len());
        let mut closed = std::collections::HashSet::new();
        for id in ids {
            let Some(slot) = c.contacts.get_mut(&id) else { continue };
            match slot.state.in_flight {
                Some(a) if open.get(&a) == Some(&id) => {
                    closed.insert(a);
                    c.in_flight.insert(a, (id, 0));
                    c.on_ended(a, Disposition::Interrupted, now);
                }
                Some(_) => {
                    // A state that names an attempt the store does not hold open: the
                    // attempt ended; the contact is due again.
                    slot.state.in_flight = None;
                    due.push(id);
                }
                None if slot.state.final_label.is_none() => due.push(id),
                None => {}
            }
        }
        // Open attempts the contact's state does not name (its end was written and the
        // state overwritten since, or the state was lost): closed too, the state kept.
        for &(a, contact) in open_attempts {
            if closed.contains(&a) {
                continue;
            }
            let Some(slot) = c.contacts.get(&contact) else { continue };
            *c.by_disposition.entry(Disposition::Interrupted.to_string()).or_default() += 1;
            let state = slot.state.clone();
            c.out.push_back(Output::Ended { attempt: a, contact, disposition: Disposition::Interrupted, state });
        }
        let entries: Vec<Entry> = due
            .into_iter()
            .filter_map(|id| {
                let slot = c.contacts.get(&id)?;
                Some(Entry { contact: id, priority: slot.priority, due: slot.state.due_unix_ms.map_or(now, from_ms) })
            })
            .collect();
        // Contacts interrupted above are in the hopper already; `load` would drop them.
        let mut hopper = Hopper::load(entries, now);
        let old = std::mem::take(&mut c.hopper);
        for e in old.into_entries() {
            hopper.push(e);
        }
        c.hopper = hopper;
        c.reconcile();
        c
    }

    /// The stored run state against the contacts: a running campaign with every contact
    /// final is finished; a finished one with work left runs again.
    fn reconcile(&mut self) {
        let all_final = self.finals == self.contacts.len();
        if self.run == RunState::Finished && !all_final {
            self.run = RunState::Running;
            self.out.push_back(Output::Run(RunState::Running));
        }
        self.check_finished();
    }

    pub fn id(&self) -> CampaignId {
        self.id
    }

    pub fn run_state(&self) -> RunState {
        self.run
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// How many more calls the campaign would place now.
    pub fn wants_lines(&self, now: DateTime<Utc>) -> u32 {
        if self.run != RunState::Running || self.hopper.is_empty() || self.hopper.next_due().is_some_and(|t| t > now) {
            return 0;
        }
        match self.cfg.mode {
            ModeName::Broadcast => self.cfg.lines.saturating_sub(self.in_flight.len() as u32),
            // Campaigns with agents dial what the pacer granted from the agents' states.
            _ => self.granted,
        }
    }

    /// Campaigns with agents: the pacer allows `lines` more calls now.
    pub fn grant(&mut self, lines: u32) {
        self.granted = self.granted.saturating_add(lines);
    }

    /// Takes back the grant no dial used (nothing was due): the pacer hears it did not go.
    pub fn take_unused_grant(&mut self) -> u32 {
        std::mem::take(&mut self.granted)
    }

    /// The trunks to try, in order: by priority, a congested one after the others.
    pub fn trunk_order(&self, now: DateTime<Utc>) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.cfg.trunks.len()).collect();
        order.sort_by_key(|&i| self.congested_until[i].filter(|&t| t > now).is_some());
        order
    }

    /// When the campaign next has something to do by itself (a contact falls due).
    pub fn poll_timeout(&self) -> Option<DateTime<Utc>> {
        // With every line busy a call's end is what comes next, not a contact falling due.
        let lines_free = match self.cfg.mode {
            ModeName::Broadcast => (self.in_flight.len() as u32) < self.cfg.lines,
            _ => self.granted > 0,
        };
        if self.run != RunState::Running || !lines_free {
            return None;
        }
        self.hopper.next_due()
    }

    pub fn handle_input(&mut self, input: Input, now: DateTime<Utc>) {
        match input {
            Input::Start => self.set_run(RunState::Running),
            Input::Pause => self.set_run(RunState::Paused),
            Input::Stop => self.set_run(RunState::Stopped),
            Input::Line { attempt, trunk } => self.dial_next(attempt, trunk, now),
            Input::Ended { attempt, disposition } => self.on_ended(attempt, disposition, now),
            Input::Refused { attempt, rule, reason } => {
                if let Some(contact) = self.untake(attempt) {
                    self.block(contact, rule, reason, None, now);
                }
            }
            Input::Aborted { attempt } => {
                if let Some(contact) = self.untake(attempt) {
                    self.requeue(contact, now);
                }
            }
            Input::Callback { contact, at, agent } => self.schedule_callback(contact, at, agent),
            Input::WrappedUp { contact, effect } => self.wrapped_up(contact, effect),
        }
        self.check_finished();
    }

    fn schedule_callback(&mut self, contact: ContactId, at: DateTime<Utc>, agent: Option<String>) {
        self.reopen(contact, at, Some(Callback { at_unix_ms: unix_ms(at), agent }));
    }

    fn wrapped_up(&mut self, contact: ContactId, e: crate::agent::wrapup::Effect) {
        if let Some(slot) = self.contacts.get_mut(&contact).filter(|s| s.state.in_flight.is_some()) {
            slot.pending_wrap = Some(e);
            return;
        }
        match e.again_at {
            Some(at) if e.is_callback => {
                self.schedule_callback(contact, at, e.for_agent.map(|a| a.to_string()));
                return;
            }
            Some(at) => {
                self.reopen(contact, at, None);
                return;
            }
            None => {}
        }
        let Some(slot) = self.contacts.get_mut(&contact) else { return };
        if !e.close || slot.state.in_flight.is_some() {
            return;
        }
        // Final under the agent's code (in place of the call's own label).
        match slot.state.final_label.replace(e.code.clone()) {
            Some(old) => {
                if let Some(n) = self.final_by_label.get_mut(&old) {
                    *n = n.saturating_sub(1);
                }
            }
            None => {
                self.finals += 1;
                self.hopper.remove(contact);
            }
        }
        *self.final_by_label.entry(e.code).or_default() += 1;
        slot.state.due_unix_ms = None;
        let state = slot.state.clone();
        self.out.push_back(Output::State { contact, state });
    }

    /// The contact is due again at `at` (a callback, when given): a final contact is
    /// reopened.
    fn reopen(&mut self, contact: ContactId, at: DateTime<Utc>, callback: Option<Callback>) {
        let Some(slot) = self.contacts.get_mut(&contact) else { return };
        if callback.is_some() {
            slot.state.callback = callback;
        }
        if slot.state.in_flight.is_some() {
            // It waits for the call up to end; `on_ended` schedules it then.
            return;
        }
        if let Some(label) = slot.state.final_label.take() {
            self.finals -= 1;
            if let Some(n) = self.final_by_label.get_mut(&label) {
                *n = n.saturating_sub(1);
            }
        }
        slot.state.due_unix_ms = Some(unix_ms(at));
        let priority = slot.priority;
        // A contact already waiting is moved to the callback's time.
        self.hopper.remove(contact);
        self.hopper.push(Entry { contact, priority, due: at });
        let state = slot.state.clone();
        self.out.push_back(Output::State { contact, state });
        if self.run == RunState::Finished {
            // A finished campaign has work again.
            self.run = RunState::Running;
            self.out.push_back(Output::Run(RunState::Running));
        }
    }

    /// Undoes taking a contact for an attempt that never started.
    fn untake(&mut self, attempt: AttemptId) -> Option<ContactId> {
        let (contact, _) = self.in_flight.remove(&attempt)?;
        let slot = self.contacts.get_mut(&contact)?;
        slot.state.in_flight = None;
        slot.state.attempts = slot.state.attempts.saturating_sub(1);
        slot.state.history.pop();
        self.attempts = self.attempts.saturating_sub(1);
        Some(contact)
    }

    fn set_run(&mut self, run: RunState) {
        if self.run != run && !(self.run == RunState::Finished && run == RunState::Running) {
            self.run = run;
            self.out.push_back(Output::Run(run));
        }
    }

    fn check_finished(&mut self) {
        let all_final = self.finals == self.contacts.len();
        if self.run == RunState::Running && self.in_flight.is_empty() && all_final {
            self.run = RunState::Finished;
            self.out.push_back(Output::Run(RunState::Finished));
        }
    }

    fn requeue(&mut self, id: ContactId, now: DateTime<Utc>) {
        let Some(slot) = self.contacts.get(&id) else { return };
        let due = slot.state.due_unix_ms.map_or(now, from_ms);
        self.hopper.push(Entry { contact: id, priority: slot.priority, due });
    }

    fn dial_next(&mut self, attempt: AttemptId, trunk: usize, now: DateTime<Utc>) {
        if self.run != RunState::Running {
            return;
        }
        while let Some(e) = self.hopper.pop(now) {
            let Some(slot) = self.contacts.get(&e.contact) else { continue };
            if slot.state.final_label.is_some() || slot.state.in_flight.is_some() {
                continue;
            }
            let history: Vec<PastAttempt> = slot
                .state
                .history
                .iter()
                .map(|p| PastAttempt { at: from_ms(p.at_unix_ms), abandoned: p.abandoned })
                .collect();
            let subject = Subject { zones: &slot.zones, region: slot.region.as_deref(), on_dnc: slot.dnc.is_some() };
            if let Err(b) = compliance::check(&self.cfg.profile, &subject, &history, now) {
                let until = compliance::next_allowed(
                    &self.cfg.profile,
                    &subject,
                    &history,
                    now,
                    Duration::days(LOOKAHEAD_DAYS),
                );
                let reason = match &slot.dnc {
                    Some(list) if b == compliance::Blocked::DoNotCall => format!("{b} ({list})"),
                    _ => b.to_string(),
                };
                self.block(e.contact, b.label(), reason, until, now);
                continue;
            }
            let Some(slot) = self.contacts.get_mut(&e.contact) else { continue };
            slot.state.in_flight = Some(attempt);
            slot.state.attempts += 1;
            slot.state.due_unix_ms = None;
            slot.state.last_block = None;
            slot.state.history.push(PastCall { at_unix_ms: unix_ms(now), abandoned: false });
            let keep = slot.state.history.len().saturating_sub(HISTORY);
            slot.state.history.drain(..keep);
            self.attempts += 1;
            self.granted = self.granted.saturating_sub(1);
            self.in_flight.insert(attempt, (e.contact, trunk));
            let state = slot.state.clone();
            self.out.push_back(Output::Dial { attempt, contact: e.contact, trunk, state });
            return;
        }
    }

    /// A rule refused the contact: it waits for `until`, or (none) is done with.
    fn block(
        &mut self,
        contact: ContactId,
        rule: &'static str,
        reason: String,
        until: Option<DateTime<Utc>>,
        _now: DateTime<Utc>,
    ) {
        let Some(slot) = self.contacts.get_mut(&contact) else { return };
        *self.blocked_by_rule.entry(rule.to_string()).or_default() += 1;
        slot.state.last_block = Some(format!("{rule}: {reason}"));
        match until {
            Some(t) => {
                slot.state.due_unix_ms = Some(unix_ms(t));
                let priority = slot.priority;
                self.hopper.push(Entry { contact, priority, due: t });
            }
            None => {
                slot.state.due_unix_ms = None;
                slot.state.final_label = Some(rule.to_string());
                *self.final_by_label.entry(rule.to_string()).or_default() += 1;
                self.finals += 1;
            }
        }
        let state = slot.state.clone();
        self.out.push_back(Output::Blocked { contact, rule, reason, until, state });
    }

    fn on_ended(&mut self, attempt: AttemptId, d: Disposition, now: DateTime<Utc>) {
        let Some((contact, trunk)) = self.in_flight.remove(&attempt) else { return };
        let cfg = self.cfg.clone();
        let Some(slot) = self.contacts.get_mut(&contact) else { return };
        *self.by_disposition.entry(d.to_string()).or_default() += 1;
        slot.state.in_flight = None;
        let mut tally = tally_of(&slot.state);
        tally.record(d);
        slot.state.counted = tally.counted;
        slot.state.by_label = tally.by_label.clone();
        if let Some(last) = slot.state.history.last_mut() {
            last.abandoned = d == Disposition::Abandoned;
        }
        match d {
            Disposition::Answered => self.live.push_back((now, Answer::Live)),
            Disposition::Abandoned => self.live.push_back((now, Answer::Abandoned)),
            Disposition::Machine => self.live.push_back((now, Answer::Machine)),
            _ => {}
        }
        let mut next = cfg.retry.next(d, &tally, now);
        if d.trunk_failure() {
            if let Some(c) = self.congested_until.get_mut(trunk) {
                *c = Some(now + Duration::seconds(CONGESTION_BACKOFF_SECS));
            }
            // Another trunk that is not congested takes it at once.
            let other = self.congested_until.iter().take(self.cfg.trunks.len()).any(|c| c.is_none_or(|t| t <= now));
            if other {
                next = Next::RetryAt(now);
            }
        }
        // A callback still ahead comes next, whatever the policy says; one that this
        // attempt made is done (unless our side or the trunk cut the attempt short).
        if let Some(cb) = &slot.state.callback {
            let due = from_ms(cb.at_unix_ms);
            if due > now {
                next = Next::RetryAt(due);
            } else if d.counts_as_attempt() {
                slot.state.callback = None;
            }
        }
        match next {
            Next::RetryAt(t) => {
                slot.state.due_unix_ms = Some(unix_ms(t));
                let priority = slot.priority;
                self.hopper.push(Entry { contact, priority, due: t });
            }
            Next::Final(label) => {
                slot.state.due_unix_ms = None;
                slot.state.final_label = Some(label.to_string());
                *self.final_by_label.entry(label.to_string()).or_default() += 1;
                self.finals += 1;
            }
        }
        let state = slot.state.clone();
        let pending = slot.pending_wrap.take();
        self.out.push_back(Output::Ended { attempt, contact, disposition: d, state });
        // The agent's wrap-up, given before the attempt's end was in: it decides now.
        if let Some(e) = pending {
            self.wrapped_up(contact, e);
        }
    }

    /// The operators' verdicts on the review samples so far: `reviewed` judged, `people`
    /// of them live people AMD called machines.
    pub fn set_reviewed(&mut self, reviewed: u64, people: u64) {
        self.reviewed = (reviewed, people.min(reviewed));
    }

    /// The AMD false-positive rate: measured once enough samples are judged.
    fn fp_rate(&self) -> f64 {
        match self.reviewed {
            (n, people) if n >= MIN_REVIEWED => people as f64 / n as f64,
            _ => self.cfg.amd_false_positive_rate,
        }
    }

    pub fn status(&mut self, now: DateTime<Utc>) -> Status {
        let window = Duration::from_std(self.cfg.profile.abandon_window).unwrap_or(Duration::days(30));
        while self.live.front().is_some_and(|(t, _)| *t + window < now) {
            self.live.pop_front();
        }
        let count = |k: Answer| self.live.iter().filter(|(_, a)| *a == k).count() as f64;
        let (people, abandoned, machines) = (count(Answer::Live), count(Answer::Abandoned), count(Answer::Machine));
        // People AMD took for machines were hung up on: abandoned calls too, where the
        // profile says so (estimated from the reviewed sample's false-positive rate).
        let rate = self.fp_rate();
        let fp = if self.cfg.profile.count_amd_false_positives { rate * machines } else { 0.0 };
        let answered = people + abandoned + fp;
        Status {
            run: Some(self.run),
            mode: format!("{:?}", self.cfg.mode).to_lowercase(),
            lines: self.cfg.lines,
            in_flight: self.in_flight.len(),
            dial_level: self.in_flight.len() as f64 / f64::from(self.cfg.lines.max(1)),
            hopper: self.hopper.len(),
            due_now: self.hopper.due_count(now),
            contacts: self.contacts.len(),
            finished_contacts: self.finals,
            attempts: self.attempts,
            by_disposition: self.by_disposition.clone(),
            blocked_by_rule: self.blocked_by_rule.clone(),
            final_by_label: self.final_by_label.clone(),
            callbacks: self.contacts.values().filter(|s| s.state.callback.is_some()).count(),
            abandon_rate: if answered > 0.0 { (abandoned + fp) / answered } else { 0.0 },
            estimated_amd_false_positives: fp,
            amd_false_positive_rate: rate,
            amd_reviewed: self.reviewed.0,
            amd_reviewed_people: self.reviewed.1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaign::retry::{RetryPolicy, RetryRule};
    use crate::compliance::Profile;
    use waihu_sip::trunk::TrunkConfig;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("time").with_timezone(&Utc)
    }

    fn config(trunks: usize, lines: u32) -> Arc<CampaignConfig> {
        let mut retry = RetryPolicy::default();
        retry.rules.insert("busy".into(), RetryRule { delay_minutes: 0, delay_seconds: 30, max: 2 });
        Arc::new(CampaignConfig {
            mode: ModeName::Broadcast,
            lines,
            profile: Profile::builtin("us_tsr").expect("us"),
            default_timezone: Some(chrono_tz::America::New_York),
            message: Some(vec![0i16; 800].into()),
            safe_harbour: None,
            ring_timeout: std::time::Duration::from_secs(20),
            max_duration: std::time::Duration::from_secs(60),
            amd: true,
            keepalive: crate::call::KeepaliveMode::Auto,
            amd_false_positive_rate: 0.05,
            amd_review_fraction: 0.0,
            amd_review_seconds: 6,
            wrap_up: std::time::Duration::from_secs(10),
            dispositions: crate::agent::wrapup::default_codes().into(),
            script: None,
            routing: Default::default(),
            skill: None,
            min_skill_level: 0,
            trunks: (0..trunks)
                .map(|i| Arc::new(TrunkConfig { name: format!("t{i}"), ..TrunkConfig::direct("127.0.0.1", 5060) }))
                .collect(),
            retry,
        })
    }

    fn contact(id: ContactId, priority: i32) -> (ContactMeta, ContactState) {
        (
            ContactMeta { id, priority, timezone: None, zones: Vec::new(), region: None, dnc: None },
            ContactState::default(),
        )
    }

    fn outputs(c: &mut Campaign) -> Vec<Output> {
        std::iter::from_fn(|| c.poll_output()).collect()
    }

    fn dials(out: &[Output]) -> Vec<(AttemptId, ContactId, usize)> {
        out.iter()
            .filter_map(|o| match o {
                Output::Dial { attempt, contact, trunk, .. } => Some((*attempt, *contact, *trunk)),
                _ => None,
            })
            .collect()
    }

    /// 14:00 UTC in July: 10:00 in New York, inside calling hours.
    const OPEN: &str = "2026-07-15T14:00:00Z";

    #[test]
    fn broadcast_fills_its_lines_by_priority_and_retries_busy_until_final() {
        let now = utc(OPEN);
        let contacts = vec![contact(1, 0), contact(2, 5), contact(3, 1)];
        let mut c = Campaign::new(7, config(1, 2), RunState::Created, contacts, &[], now);
        assert_eq!(c.wants_lines(now), 0, "not started");
        c.handle_input(Input::Start, now);
        assert_eq!(outputs(&mut c), vec![Output::Run(RunState::Running)]);
        assert_eq!(c.wants_lines(now), 2);
        c.handle_input(Input::Line { attempt: 100, trunk: 0 }, now);
        c.handle_input(Input::Line { attempt: 101, trunk: 0 }, now);
        assert_eq!(dials(&outputs(&mut c)), vec![(100, 2, 0), (101, 3, 0)], "priority 5, then 1");
        assert_eq!(c.wants_lines(now), 0, "both lines up");
        c.handle_input(Input::Ended { attempt: 100, disposition: Disposition::Busy }, now);
        let out = outputs(&mut c);
        let Some(Output::Ended { state, .. }) = out.first() else { panic!("{out:?}") };
        assert_eq!(state.due_unix_ms, Some(unix_ms(now + Duration::seconds(30))));
        c.handle_input(Input::Line { attempt: 102, trunk: 0 }, now);
        assert_eq!(dials(&outputs(&mut c)), vec![(102, 1, 0)], "the busy one waits its 30 s");
        c.handle_input(Input::Ended { attempt: 101, disposition: Disposition::Answered }, now);
        c.handle_input(Input::Ended { attempt: 102, disposition: Disposition::Answered }, now);
        outputs(&mut c);
        assert_eq!(c.poll_timeout(), Some(now + Duration::seconds(30)));
        let later = now + Duration::seconds(30);
        c.handle_input(Input::Line { attempt: 103, trunk: 0 }, later);
        assert_eq!(dials(&outputs(&mut c)), vec![(103, 2, 0)]);
        c.handle_input(Input::Ended { attempt: 103, disposition: Disposition::Busy }, later);
        let out = outputs(&mut c);
        assert!(
            matches!(&out[..], [Output::Ended { state, .. }, Output::Run(RunState::Finished)] if state.final_label.as_deref() == Some("busy")),
            "second busy is final under max = 2, and the campaign is done: {out:?}"
        );
        let s = c.status(later);
        assert_eq!((s.attempts, s.finished_contacts, s.in_flight), (4, 3, 0));
        assert_eq!(s.abandon_rate, 0.0, "no abandons, no machines");
        assert_eq!(s.final_by_label.get("answered"), Some(&2));
    }

    #[test]
    fn rules_block_with_a_reason_and_a_time_and_dnc_is_final() {
        // 11:00 UTC: 07:00 in New York, before calling hours.
        let now = utc("2026-07-15T11:00:00Z");
        let mut dnc = contact(2, 0);
        dnc.0.dnc = Some("internal".into());
        let mut la = contact(3, 0);
        la.0.timezone = Some("America/Los_Angeles".into());
        let mut c = Campaign::new(1, config(1, 5), RunState::Running, vec![contact(1, 0), dnc, la], &[], now);
        c.handle_input(Input::Line { attempt: 10, trunk: 0 }, now);
        let out = outputs(&mut c);
        assert!(dials(&out).is_empty(), "nobody may be called at 07:00");
        let blocked: Vec<(ContactId, &str, Option<DateTime<Utc>>)> = out
            .iter()
            .filter_map(|o| match o {
                Output::Blocked { contact, rule, until, .. } => Some((*contact, *rule, *until)),
                _ => None,
            })
            .collect();
        assert_eq!(blocked.len(), 3);
        assert!(blocked.contains(&(1, "outside_hours", Some(utc("2026-07-15T12:00:00Z")))), "{blocked:?}");
        assert!(blocked.contains(&(3, "outside_hours", Some(utc("2026-07-15T15:00:00Z")))), "{blocked:?}");
        assert!(blocked.contains(&(2, "dnc", None)), "{blocked:?}");
        assert_eq!(c.poll_timeout(), Some(utc("2026-07-15T12:00:00Z")));
        let open = utc("2026-07-15T12:00:00Z");
        c.handle_input(Input::Line { attempt: 11, trunk: 0 }, open);
        assert_eq!(dials(&outputs(&mut c)), vec![(11, 1, 0)], "New York opens first; Los Angeles waits");
    }

    #[test]
    fn a_florida_number_follows_floridas_hours() {
        // 00:30 UTC in July: 20:30 in New York and Miami; us_tsr allows 21:00, Florida 20:00.
        let now = utc("2026-07-16T00:30:00Z");
        let mut fl = contact(2, 9);
        fl.0.region = Some("US-FL".into());
        let mut c = Campaign::new(1, config(1, 5), RunState::Running, vec![contact(1, 0), fl], &[], now);
        c.handle_input(Input::Line { attempt: 1, trunk: 0 }, now);
        let out = outputs(&mut c);
        assert_eq!(dials(&out), vec![(1, 1, 0)], "the higher-priority Florida contact waits: {out:?}");
        assert!(out.iter().any(|o| matches!(o, Output::Blocked { contact: 2, rule: "outside_hours", .. })));
    }

    #[test]
    fn a_restart_closes_the_attempts_in_flight_as_interrupted_and_retries_them() {
        let now = utc(OPEN);
        let mut flying = contact(1, 0);
        flying.1.in_flight = Some(55);
        flying.1.attempts = 1;
        flying.1.history.push(PastCall { at_unix_ms: unix_ms(now - Duration::seconds(5)), abandoned: false });
        let mut done = contact(2, 0);
        done.1.final_label = Some("answered".into());
        let mut c = Campaign::new(1, config(1, 5), RunState::Running, vec![flying, done], &[(55, 1)], now);
        let out = outputs(&mut c);
        assert!(
            matches!(&out[..], [Output::Ended { attempt: 55, contact: 1, disposition: Disposition::Interrupted, state }]
                if state.in_flight.is_none() && state.counted == 0),
            "{out:?}"
        );
        // Requeued after the policy's delay, as a new attempt.
        let later = now + Duration::seconds(60);
        assert_eq!(c.poll_timeout(), Some(later));
        c.handle_input(Input::Line { attempt: 56, trunk: 0 }, later);
        assert_eq!(dials(&outputs(&mut c)), vec![(56, 1, 0)]);
        assert_eq!(c.status(later).attempts, 2);
    }

    #[test]
    fn a_restart_closes_an_open_attempt_its_contact_no_longer_names_and_fixes_the_run_state() {
        let now = utc(OPEN);
        let mut done = contact(1, 0);
        done.1.final_label = Some("answered".into());
        // Attempt 7 is open in the store, but the contact moved on (its end was lost).
        let mut c = Campaign::new(1, config(1, 5), RunState::Running, vec![done], &[(7, 1)], now);
        let out = outputs(&mut c);
        assert!(
            matches!(&out[..], [Output::Ended { attempt: 7, contact: 1, disposition: Disposition::Interrupted, state }, Output::Run(RunState::Finished)]
                if state.final_label.as_deref() == Some("answered")),
            "closed, the contact left final, and the campaign is finished: {out:?}"
        );
        // A finished campaign with a contact that is not final runs again.
        let mut c = Campaign::new(1, config(1, 5), RunState::Finished, vec![contact(2, 0)], &[], now);
        assert_eq!(outputs(&mut c), vec![Output::Run(RunState::Running)]);
        assert_eq!(c.wants_lines(now), 5);
    }

    #[test]
    fn congestion_moves_to_the_next_trunk_at_once() {
        let now = utc(OPEN);
        let mut c = Campaign::new(1, config(2, 5), RunState::Running, vec![contact(1, 0)], &[], now);
        assert_eq!(c.trunk_order(now), vec![0, 1]);
        c.handle_input(Input::Line { attempt: 1, trunk: 0 }, now);
        outputs(&mut c);
        c.handle_input(Input::Ended { attempt: 1, disposition: Disposition::Congestion }, now);
        outputs(&mut c);
        assert_eq!(c.trunk_order(now), vec![1, 0], "the congested trunk goes last");
        assert_eq!(c.wants_lines(now), 5, "due again at once");
        c.handle_input(Input::Line { attempt: 2, trunk: 1 }, now);
        assert_eq!(dials(&outputs(&mut c)), vec![(2, 1, 1)]);
        assert_eq!(c.trunk_order(now + Duration::seconds(31)), vec![0, 1], "the back-off ends");
    }

    #[test]
    fn a_wrap_up_relabels_a_final_contact_or_reopens_it_later() {
        use crate::agent::wrapup::{check, default_codes, CallbackAsk, WrapUp};
        let now = utc(OPEN);
        let done = |id| {
            let mut d = contact(id, 0);
            d.1.final_label = Some("answered".into());
            d.1.attempts = 1;
            d
        };
        let mut c = Campaign::new(1, config(1, 5), RunState::Finished, vec![done(1), done(2), done(3)], &[], now);
        outputs(&mut c);
        let codes = default_codes();
        let effect = |w: WrapUp| check(&codes, &w, 4, now).expect("valid");
        // A sale: still final, now under "sale".
        c.handle_input(
            Input::WrappedUp { contact: 1, effect: effect(WrapUp { code: "sale".into(), ..WrapUp::default() }) },
            now,
        );
        let out = outputs(&mut c);
        assert!(
            matches!(&out[..], [Output::State { contact: 1, state }] if state.final_label.as_deref() == Some("sale")),
            "{out:?}"
        );
        let st = c.status(now);
        assert_eq!((st.final_by_label.get("sale"), st.final_by_label.get("answered")), (Some(&1), Some(&2)));
        // Not the right person: dialled again in two hours.
        let wrong = effect(WrapUp { code: "wrong-person".into(), ..WrapUp::default() });
        c.handle_input(Input::WrappedUp { contact: 2, effect: wrong }, now);
        let out = outputs(&mut c);
        assert!(
            matches!(&out[..], [Output::State { contact: 2, state }, Output::Run(RunState::Running)]
                if state.final_label.is_none() && state.due_unix_ms == Some(unix_ms(now + Duration::minutes(120)))),
            "{out:?}"
        );
        // A callback with the same agent: reserved for agent 4 ("4") at its time.
        let at = now + Duration::hours(3);
        let cb = WrapUp {
            code: "callback".into(),
            callback: Some(CallbackAsk { at, same_agent: true }),
            ..WrapUp::default()
        };
        c.handle_input(Input::WrappedUp { contact: 3, effect: effect(cb) }, now);
        let out = outputs(&mut c);
        assert!(
            matches!(&out[..], [Output::State { contact: 3, state }]
                if state.callback.as_ref().and_then(|c| c.agent.as_deref()) == Some("4") && state.final_label.is_none()),
            "{out:?}"
        );
        assert_eq!(c.status(now).callbacks, 1);

        // A wrap-up that reaches the campaign before its attempt's end waits for it.
        let mut c = Campaign::new(1, config(1, 5), RunState::Running, vec![contact(7, 0)], &[], now);
        c.handle_input(Input::Line { attempt: 70, trunk: 0 }, now);
        outputs(&mut c);
        c.handle_input(
            Input::WrappedUp { contact: 7, effect: effect(WrapUp { code: "sale".into(), ..WrapUp::default() }) },
            now,
        );
        assert!(outputs(&mut c).is_empty(), "not while the call is up");
        c.handle_input(Input::Ended { attempt: 70, disposition: Disposition::Answered }, now);
        let out = outputs(&mut c);
        assert!(
            out.iter().any(
                |o| matches!(o, Output::State { contact: 7, state } if state.final_label.as_deref() == Some("sale"))
            ),
            "{out:?}"
        );
    }

    #[test]
    fn a_callback_reopens_a_final_contact_at_its_time_and_is_done_after_its_attempt() {
        let now = utc(OPEN);
        let mut done = contact(1, 0);
        done.1.final_label = Some("answered".into());
        done.1.attempts = 1;
        let mut c = Campaign::new(1, config(1, 5), RunState::Finished, vec![done], &[], now);
        let at = now + Duration::hours(2);
        c.handle_input(Input::Callback { contact: 1, at, agent: Some("alice".into()) }, now);
        let out = outputs(&mut c);
        assert!(
            matches!(&out[..], [Output::State { contact: 1, state }, Output::Run(RunState::Running)]
                if state.final_label.is_none() && state.callback.as_ref().and_then(|c| c.agent.as_deref()) == Some("alice")),
            "{out:?}"
        );
        assert_eq!(c.poll_timeout(), Some(at));
        c.handle_input(Input::Line { attempt: 9, trunk: 0 }, now + Duration::hours(1));
        assert!(dials(&outputs(&mut c)).is_empty(), "not before its time");
        c.handle_input(Input::Line { attempt: 10, trunk: 0 }, at);
        let out = outputs(&mut c);
        assert_eq!(dials(&out), vec![(10, 1, 0)]);
        assert!(
            matches!(&out[0], Output::Dial { state, .. } if state.callback.is_some()),
            "the agent goes with the dial"
        );
        c.handle_input(Input::Ended { attempt: 10, disposition: Disposition::Answered }, at);
        let out = outputs(&mut c);
        assert!(
            matches!(&out[..], [Output::Ended { state, .. }, Output::Run(RunState::Finished)]
                if state.callback.is_none() && state.final_label.as_deref() == Some("answered")),
            "{out:?}"
        );
    }

    #[test]
    fn a_callback_asked_for_during_a_call_comes_after_it() {
        let now = utc(OPEN);
        let mut c = Campaign::new(1, config(1, 5), RunState::Running, vec![contact(1, 0)], &[], now);
        c.handle_input(Input::Line { attempt: 1, trunk: 0 }, now);
        outputs(&mut c);
        let at = now + Duration::days(1);
        c.handle_input(Input::Callback { contact: 1, at, agent: None }, now);
        c.handle_input(Input::Ended { attempt: 1, disposition: Disposition::Answered }, now + Duration::minutes(3));
        let out = outputs(&mut c);
        assert!(
            matches!(&out[..], [Output::Ended { state, .. }] if state.final_label.is_none() && state.due_unix_ms == Some(unix_ms(at))),
            "answered, but due again at the callback: {out:?}"
        );
    }

    #[test]
    fn the_abandon_rate_counts_estimated_amd_false_positives() {
        let now = utc(OPEN);
        let contacts = (1..=40).map(|i| contact(i, 0)).collect();
        let mut c = Campaign::new(1, config(1, 50), RunState::Running, contacts, &[], now);
        for a in 1..=40 {
            c.handle_input(Input::Line { attempt: a, trunk: 0 }, now);
        }
        // 18 people, 2 abandoned, 20 machines; AMD's estimated false-positive rate 5%.
        for a in 1..=40 {
            let d = match a {
                1..=18 => Disposition::Answered,
                19 | 20 => Disposition::Abandoned,
                _ => Disposition::Machine,
            };
            c.handle_input(Input::Ended { attempt: a, disposition: d }, now);
        }
        let s = c.status(now);
        assert!((s.estimated_amd_false_positives - 1.0).abs() < 1e-9);
        assert!((s.abandon_rate - 3.0 / 21.0).abs() < 1e-9, "{}", s.abandon_rate);
        // Reviews replace the configured rate once 20 are judged: 2 people in 19 is not yet
        // enough; 4 in 20 (20%) is.
        c.set_reviewed(19, 2);
        assert!((c.status(now).amd_false_positive_rate - 0.05).abs() < 1e-9);
        c.set_reviewed(20, 4);
        let s = c.status(now);
        assert!((s.amd_false_positive_rate - 0.2).abs() < 1e-9);
        assert!((s.estimated_amd_false_positives - 4.0).abs() < 1e-9, "20% of 20 machines");
        assert!((s.abandon_rate - 6.0 / 24.0).abs() < 1e-9, "{}", s.abandon_rate);
        c.set_reviewed(0, 0);
        // The profile's window: a day later under us_tsr's 30 days they still count.
        assert!(c.status(now + Duration::days(1)).abandon_rate > 0.1);
        assert_eq!(c.status(now + Duration::days(31)).abandon_rate, 0.0);
    }

    #[test]
    fn an_attempt_that_never_started_is_undone() {
        let now = utc(OPEN);
        let mut c = Campaign::new(1, config(1, 5), RunState::Running, vec![contact(1, 0)], &[], now);
        c.handle_input(Input::Line { attempt: 1, trunk: 0 }, now);
        outputs(&mut c);
        c.handle_input(Input::Aborted { attempt: 1 }, now);
        assert_eq!(c.status(now).attempts, 0);
        c.handle_input(Input::Line { attempt: 2, trunk: 0 }, now);
        let out = outputs(&mut c);
        let Some(Output::Dial { state, .. }) = out.first() else { panic!("{out:?}") };
        assert_eq!((state.attempts, state.history.len()), (1, 1));
    }
}
