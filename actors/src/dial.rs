//! Bulk dialling at a trunk's caps: the driver behind `waihu dial` (the SIP throughput
//! benchmark). It admits calls at the trunk's rate and channel caps
//! ([`waihu_sip::trunk::Admission`]), starts each as a [`CallActor`], ends the live ones on
//! shutdown, and tallies the records. It runs on the actix system's thread; the campaign's
//! pacer takes its place in a campaign.
#![allow(clippy::disallowed_methods)] // the driver keeps real time; the calls' flows do not

use crate::call::{CallActor, CallCommand, CallEnv, CallSpec, Command, FlowConfig, Progress};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use waihu_model::{CallId, CallRecord, Disposition};
use waihu_sip::trunk::{Admission, Admit, TrunkConfig};

/// What the records added up to.
#[derive(Debug, Default)]
pub struct Tally {
    pub dispositions: BTreeMap<String, u64>,
    pub answered_by: BTreeMap<String, u64>,
    pub setup_ms: Vec<u64>,
    pub errors: BTreeMap<String, u64>,
    pub rtp_packets: u64,
    pub rtp_lost: u64,
}

/// The driver: admission, calls, records.
#[derive(Debug)]
pub struct BulkDial {
    pub env: CallEnv,
    pub trunk: Arc<TrunkConfig>,
    pub flow: FlowConfig,
    pub calls: u64,
    pub trunk_up: Arc<AtomicBool>,
    pub stop: watch::Receiver<bool>,
}

/// Shared by the driver and the calls' sinks, on the actix thread.
#[derive(Default)]
struct Shared {
    tally: RefCell<Tally>,
    live_calls: RefCell<HashMap<CallId, actix::Addr<CallActor>>>,
    /// Shutdown has begun: a call that finishes starting after it is ended at once.
    stopping: Cell<bool>,
    outstanding: Cell<u64>,
    answered_now: Cell<u64>,
    peak: Cell<u64>,
    ended: tokio::sync::Notify,
}

/// What a run did.
#[derive(Debug)]
pub struct Report {
    pub placed: u64,
    pub span: Duration,
    pub wall: Duration,
    pub peak: u64,
    pub tally: Tally,
}

impl BulkDial {
    /// Places every call, waits for every record, and reports.
    pub async fn run(self) -> Report {
        let admission = Rc::new(RefCell::new(Admission::for_trunk(&self.trunk)));
        let shared = Rc::new(Shared::default());
        let started = Instant::now();
        let mut first_start = None;
        let mut last_start = started;
        let mut placed = 0;
        let mut report_at = started + Duration::from_secs(5);
        let stopping = |s: &watch::Receiver<bool>| *s.borrow();
        while placed < self.calls {
            if stopping(&self.stop) {
                eprintln!("waihu dial: stopping: {placed} calls placed, ending the live ones");
                break;
            }
            let now = Instant::now();
            if now >= report_at {
                report_at += Duration::from_secs(5);
                eprintln!(
                    "waihu dial: {:>5.1} s: {placed} placed, {} answered now (peak {})",
                    (now - started).as_secs_f64(),
                    shared.answered_now.get(),
                    shared.peak.get()
                );
            }
            if !self.trunk_up.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            let admit = admission.borrow_mut().try_admit(now);
            match admit {
                Admit::WaitUntil(t) => {
                    tokio::time::sleep_until(t.into()).await;
                    continue;
                }
                Admit::ChannelsFull => {
                    let _ = tokio::time::timeout(Duration::from_millis(20), shared.ended.notified()).await;
                    continue;
                }
                Admit::Go => {}
            }
            placed += 1;
            first_start.get_or_insert(now);
            last_start = now;
            let spec = CallSpec {
                flow: FlowConfig { id: placed, ..self.flow.clone() },
                trunk: self.trunk.clone(),
                shard: None,
                call_id: None,
            };
            shared.outstanding.set(shared.outstanding.get() + 1);
            actix::spawn(start_call(self.env.clone(), spec, shared.clone(), admission.clone()));
        }
        if stopping(&self.stop) {
            shared.stopping.set(true);
            for call in shared.live_calls.borrow().values() {
                call.do_send(CallCommand(Command::Shutdown));
            }
        } else {
            // A signal while the last calls run ends them too.
            let (s, stop) = (shared.clone(), self.stop.clone());
            actix::spawn(async move {
                let mut stop = stop;
                stopped(&mut stop).await;
                s.stopping.set(true);
                for call in s.live_calls.borrow().values() {
                    call.do_send(CallCommand(Command::Shutdown));
                }
            });
        }
        while shared.outstanding.get() > 0 {
            let _ = tokio::time::timeout(Duration::from_millis(100), shared.ended.notified()).await;
        }
        let wall = started.elapsed();
        let span = last_start.duration_since(first_start.unwrap_or(started));
        let tally = std::mem::take(&mut *shared.tally.borrow_mut());
        Report { placed, span, wall, peak: shared.peak.get(), tally }
    }
}

/// Starts one call and wires its progress and record into the tally.
async fn start_call(env: CallEnv, spec: CallSpec, shared: Rc<Shared>, admission: Rc<RefCell<Admission>>) {
    let id = spec.flow.id;
    let s = shared.clone();
    let progress = Box::new(move |_: CallId, p: &Progress| {
        if let Progress::Answered { .. } = p {
            let n = s.answered_now.get() + 1;
            s.answered_now.set(n);
            s.peak.set(s.peak.get().max(n));
        }
    });
    let (s, adm) = (shared.clone(), admission.clone());
    let record = Box::new(move |r: CallRecord| {
        if r.answer_ms.is_some() {
            s.answered_now.set(s.answered_now.get().saturating_sub(1));
        }
        s.live_calls.borrow_mut().remove(&r.id);
        s.tally.borrow_mut().add(&r);
        done(&s, &adm);
    });
    match CallActor::start(env, spec, progress, record).await {
        // The actor starts running once this task yields: its record comes after this.
        Ok(addr) => {
            if shared.stopping.get() {
                addr.do_send(CallCommand(Command::Shutdown));
            }
            shared.live_calls.borrow_mut().insert(id, addr);
        }
        Err(e) => {
            *shared.tally.borrow_mut().errors.entry(e.to_string()).or_default() += 1;
            *shared.tally.borrow_mut().dispositions.entry(Disposition::LocalFailure.to_string()).or_default() += 1;
            done(&shared, &admission);
        }
    }
}

fn done(s: &Shared, admission: &RefCell<Admission>) {
    admission.borrow_mut().release();
    s.outstanding.set(s.outstanding.get().saturating_sub(1));
    s.ended.notify_one();
}

impl Tally {
    pub fn add(&mut self, c: &CallRecord) {
        *self.dispositions.entry(c.disposition.to_string()).or_default() += 1;
        if let Some(by) = c.answered_by {
            *self.answered_by.entry(by.to_string()).or_default() += 1;
        }
        if let Some(ms) = c.answer_ms {
            self.setup_ms.push(ms);
        }
        for e in [&c.sip_error, &c.media_error].into_iter().flatten() {
            *self.errors.entry(e.clone()).or_default() += 1;
        }
        self.rtp_packets += c.rtp_packets;
        self.rtp_lost += c.rtp_lost;
    }
}

/// Resolves when `stop` turns true (never, if its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}
