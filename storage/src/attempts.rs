//! Attempts and contact state: what a campaign did, durably.
//!
//! An attempt is written (`Dialing`) together with its contact's state in one transaction
//! *before* its INVITE leaves, and made durable by a group commit ([`Store::durable`]):
//! many attempts share one fsync, and each INVITE waits only for its own batch. When the
//! call ends, the attempt (now `Ended`, with the call's record) and the contact's new state
//! are written in one transaction again. After a crash, [`Store::open_attempts`] finds the
//! attempts that were in flight; the campaign closes them as `interrupted`.
//!
//! The call record kept here has its number removed: the number lives sealed in the
//! contact, and the CDR export joins the two.

use crate::codec::{decode, encode, Record};
use crate::contacts::{key, CampaignId, ContactId};
use crate::{Store, StoreError};
use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use waihu_model::CallRecord;

pub type AttemptId = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AttemptState {
    /// Written before the INVITE; not yet ended.
    Dialing,
    Ended,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub id: AttemptId,
    pub campaign: CampaignId,
    pub contact: ContactId,
    pub trunk: String,
    /// The INVITE's Call-ID, chosen before it is sent.
    pub call_id: String,
    pub created_unix_ms: u64,
    pub state: AttemptState,
    /// The call's record once it ended (its `target` is empty: the number is personal
    /// data and stays sealed in the contact).
    pub record: Option<CallRecord>,
}

impl Record for Attempt {
    const TREE: &'static str = "attempts";
    const VERSION: u8 = 1;
}

/// One earlier attempt, as the calling rules need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PastCall {
    pub at_unix_ms: u64,
    pub abandoned: bool,
}

/// Where a contact stands in its campaign.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactState {
    /// Attempts made (all of them).
    pub attempts: u32,
    /// Attempts that count against the retry caps.
    pub counted: u32,
    /// Attempts by retry-rule label.
    pub by_label: BTreeMap<String, u32>,
    /// Recent attempts (the calling rules look back at most a few days).
    pub history: Vec<PastCall>,
    /// Not before this (a retry delay, a callback, the calling window); None: now.
    pub due_unix_ms: Option<u64>,
    /// The attempt in flight.
    pub in_flight: Option<AttemptId>,
    /// Done with the contact, and why (its final disposition, or a cap, or a rule).
    pub final_label: Option<String>,
    /// The last rule that kept the contact from being dialled, with its reason.
    pub last_block: Option<String>,
    /// A callback the contact asked for: dialled at its time (calling rules permitting),
    /// even after a final disposition; cleared by the attempt that makes it.
    pub callback: Option<Callback>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Callback {
    pub at_unix_ms: u64,
    /// The agent the contact should reach, when one was named.
    pub agent: Option<String>,
}

impl Record for ContactState {
    const TREE: &'static str = "contact_state";
    const VERSION: u8 = 1;
}

/// One row of the rule-decision audit trail: a contact not dialled, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub campaign: CampaignId,
    pub contact: ContactId,
    pub at_unix_ms: u64,
    /// The rule's stable label (`outside_hours`, `dnc`, ...).
    pub rule: String,
    pub reason: String,
    pub until_unix_ms: Option<u64>,
}

impl Record for Decision {
    const TREE: &'static str = "decisions";
    const VERSION: u8 = 1;
}

fn tail_id(k: &[u8]) -> Result<u64, StoreError> {
    let b = k.get(8..16).and_then(|s| <[u8; 8]>::try_from(s).ok());
    b.map(u64::from_be_bytes).ok_or(StoreError::Corrupt { tree: "attempts", reason: "bad key".into() })
}

/// A write for the group-commit thread.
#[derive(Debug, Clone)]
pub enum Write {
    /// [`Store::begin_attempt`].
    BeginAttempt(Attempt, ContactState),
    /// [`Store::end_attempt`].
    EndAttempt(Attempt, ContactState),
    ContactState {
        campaign: CampaignId,
        contact: ContactId,
        state: ContactState,
    },
    Decision(Decision),
    /// An agent's new state, and its line in the agent log.
    AgentStatus {
        agent: crate::agents::AgentId,
        status: crate::agents::AgentStatus,
    },
    /// An agent's wrap-up of a call.
    WrapUp(crate::WrapUpRecord),
    /// The record of an agent-side leg of a customer's call.
    Leg(Box<crate::LegRecord>),
    /// An AMD review sample (sealed on write).
    Review {
        campaign: CampaignId,
        attempt: AttemptId,
        at_unix_ms: u64,
        wav: Vec<u8>,
    },
    /// Nothing to write: resolves once everything before it is on disk.
    Barrier,
}

type Reply = flume::Sender<Result<(), String>>;

/// The group commit: one thread applies writes in the order they came and flushes the
/// store once for every batch, so one fsync covers every write that arrived during the
/// previous one. Callers never block on sled: they get a receiver that resolves when their
/// write is on disk (or failed).
#[derive(Debug)]
pub(crate) struct Committer {
    tx: Option<flume::Sender<(Write, Reply)>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Committer {
    pub(crate) fn start(store: Store) -> Result<Committer, StoreError> {
        let (tx, rx) = flume::unbounded::<(Write, Reply)>();
        let thread = std::thread::Builder::new().name("waihu-commit".into()).spawn(move || {
            while let Ok(first) = rx.recv() {
                let mut batch = vec![first];
                batch.extend(rx.try_iter());
                let results: Vec<Result<(), String>> =
                    batch.iter().map(|(w, _)| store.apply(w).map_err(|e| e.to_string())).collect();
                let flushed = store.db.flush().map(|_| ()).map_err(|e| format!("store: {e}"));
                store.commit_counters.0.fetch_add(1, Ordering::Relaxed);
                store.commit_counters.1.fetch_add(batch.len() as u64, Ordering::Relaxed);
                for ((_, reply), r) in batch.into_iter().zip(results) {
                    let _ = reply.send(r.and(flushed.clone()));
                }
            }
        })?;
        Ok(Committer { tx: Some(tx), thread: Some(thread) })
    }

    fn submit(&self, w: Write) -> flume::Receiver<Result<(), String>> {
        let (tx, rx) = flume::bounded(1);
        match &self.tx {
            Some(q) => {
                if let Err(flume::SendError((_, reply))) = q.send((w, tx)) {
                    let _ = reply.send(Err("the store's commit thread is gone".into()));
                }
            }
            None => {
                let _ = tx.send(Err("the store's commit thread is gone".into()));
            }
        }
        rx
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Group-commit counters: how many writes the flushes covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitStats {
    pub flushes: u64,
    pub commits: u64,
}

impl Store {
    /// Resolves once everything written before this call is on disk (a group commit).
    pub fn durable(&self) -> flume::Receiver<Result<(), String>> {
        self.submit(Write::Barrier)
    }

    /// Hands a write to the group-commit thread; the receiver resolves once it is on disk.
    /// The caller never waits on sled (an actor thread must not).
    pub fn submit(&self, w: Write) -> flume::Receiver<Result<(), String>> {
        match self.committer.get() {
            Some(c) => c.submit(w),
            None => {
                let (tx, rx) = flume::bounded(1);
                let _ = tx.send(Err("the store has no commit thread".into()));
                rx
            }
        }
    }

    fn apply(&self, w: &Write) -> Result<(), StoreError> {
        match w {
            Write::BeginAttempt(a, s) => self.begin_attempt(a, s),
            Write::EndAttempt(a, s) => self.end_attempt(a, s),
            Write::ContactState { campaign, contact, state } => self.set_contact_state(*campaign, *contact, state),
            Write::Decision(d) => self.record_decision(d),
            Write::AgentStatus { agent, status } => self.put_agent_status(*agent, status),
            Write::WrapUp(w) => self.put_wrap_up(w),
            Write::Leg(l) => self.put_leg(l),
            Write::Review { campaign, attempt, at_unix_ms, wav } => {
                self.put_review(*campaign, *attempt, *at_unix_ms, wav)
            }
            Write::Barrier => Ok(()),
        }
    }

    pub fn commit_stats(&self) -> CommitStats {
        CommitStats {
            flushes: self.commit_counters.0.load(Ordering::Relaxed),
            commits: self.commit_counters.1.load(Ordering::Relaxed),
        }
    }

    /// A new attempt id (unique in the store, increasing).
    pub fn next_attempt_id(&self) -> Result<AttemptId, StoreError> {
        Ok(self.db.generate_id()? + 1)
    }

    /// Writes a new attempt and its contact's state together. Not yet durable: wait on
    /// [`Store::durable`] before the INVITE. Refused when the contact already has an
    /// attempt in flight (one attempt at a time per contact).
    pub fn begin_attempt(&self, a: &Attempt, state: &ContactState) -> Result<(), StoreError> {
        let ak = key(a.campaign, a.id);
        let ck = key(a.campaign, a.contact);
        let (av, cv) = (encode(a)?, encode(state)?);
        let r = (&self.attempts, &self.contact_state).transaction(|(attempts, states)| {
            if let Some(old) = states.get(ck)? {
                let old: ContactState =
                    decode(&old).map_err(|_| ConflictableTransactionError::Abort("unreadable contact state"))?;
                if old.in_flight.is_some() {
                    return Err(ConflictableTransactionError::Abort("the contact has an attempt in flight"));
                }
            }
            attempts.insert(&ak[..], av.as_slice())?;
            states.insert(&ck[..], cv.as_slice())?;
            Ok(())
        });
        tx_result(r)
    }

    /// Ends an attempt: the attempt with its record and the contact's new state, together.
    pub fn end_attempt(&self, a: &Attempt, state: &ContactState) -> Result<(), StoreError> {
        let ak = key(a.campaign, a.id);
        let ck = key(a.campaign, a.contact);
        let (av, cv) = (encode(a)?, encode(state)?);
        let r = (&self.attempts, &self.contact_state).transaction(|(attempts, states)| {
            attempts.insert(&ak[..], av.as_slice())?;
            states.insert(&ck[..], cv.as_slice())?;
            Ok(())
        });
        tx_result(r)
    }

    pub fn attempt(&self, campaign: CampaignId, id: AttemptId) -> Result<Option<Attempt>, StoreError> {
        self.attempts.get(key(campaign, id))?.map(|v| decode(&v)).transpose()
    }

    /// Every attempt of the campaign, oldest first.
    pub fn attempts(&self, campaign: CampaignId) -> impl Iterator<Item = Result<Attempt, StoreError>> + '_ {
        self.attempts.scan_prefix(campaign.to_be_bytes()).map(|kv| decode(&kv?.1))
    }

    /// The attempts still `Dialing`: in flight at a crash, or now.
    pub fn open_attempts(&self, campaign: CampaignId) -> Result<Vec<Attempt>, StoreError> {
        self.attempts(campaign).filter(|a| !matches!(a, Ok(a) if a.state == AttemptState::Ended)).collect()
    }

    pub fn contact_state(&self, campaign: CampaignId, contact: ContactId) -> Result<ContactState, StoreError> {
        Ok(self.contact_state.get(key(campaign, contact))?.map(|v| decode(&v)).transpose()?.unwrap_or_default())
    }

    pub fn set_contact_state(
        &self,
        campaign: CampaignId,
        contact: ContactId,
        state: &ContactState,
    ) -> Result<(), StoreError> {
        self.contact_state.insert(key(campaign, contact), encode(state)?)?;
        Ok(())
    }

    /// Every contact state the campaign has written, by contact.
    pub fn contact_states(&self, campaign: CampaignId) -> Result<BTreeMap<ContactId, ContactState>, StoreError> {
        let mut out = BTreeMap::new();
        for kv in self.contact_state.scan_prefix(campaign.to_be_bytes()) {
            let (k, v) = kv?;
            out.insert(tail_id(&k)?, decode(&v)?);
        }
        Ok(out)
    }

    /// Records why a contact was not dialled.
    pub fn record_decision(&self, d: &Decision) -> Result<(), StoreError> {
        let id = self.db.generate_id()?;
        self.decisions.insert(key(d.campaign, id), encode(d)?)?;
        Ok(())
    }

    /// The audit trail of one campaign, oldest first.
    pub fn decisions(&self, campaign: CampaignId) -> impl Iterator<Item = Result<Decision, StoreError>> + '_ {
        self.decisions.scan_prefix(campaign.to_be_bytes()).map(|kv| decode(&kv?.1))
    }
}

fn tx_result(r: Result<(), TransactionError<&'static str>>) -> Result<(), StoreError> {
    match r {
        Ok(()) => Ok(()),
        Err(TransactionError::Abort(why)) => Err(StoreError::Refused(why)),
        Err(TransactionError::Storage(e)) => Err(e.into()),
    }
}
