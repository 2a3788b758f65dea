//! Places calls: the glue between the SIP agent (`waihu_sip::agent`), the pure call state
//! machine (`waihu_sip::call`) and the media plane (`waihu_engine::worker`). It carries out
//! the state machine's outputs and feeds it SIP events, AMD decisions and its timer.
//! Nothing here decides anything a call does; the state machine does.

use anyhow::{anyhow, Context, Result};
use serde::Serialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use waihu_engine::amd::{AmdEvent, Verdict};
use waihu_engine::session::{PayloadMap, SessionEvent};
use waihu_engine::worker::{CallId, Command, Event, MediaPlane, ShardConfig};
use waihu_engine::AmdParams;
use waihu_sip::call::{AnsweredBy, Call, CallConfig, Failure, Input, Output};
use waihu_sip::sdp::{AudioCodec, Direction, LocalMedia, Negotiated};
use waihu_sip::trunk::TrunkConfig;
use waihu_sip::{AgentConfig, OutboundCall, SipAgent, SipEvent};

/// When to hang up once AMD has decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HangupOn {
    /// Hang up on a machine; keep a human (and anything unsure) connected.
    Machine,
    /// Hang up on a human (a machine-only campaign, e.g. a voicemail drop list).
    Human,
    /// Hang up as soon as AMD has decided, whatever it said (a line-check probe).
    Any,
    /// Keep every answered call until the far end hangs up or `max_duration` passes.
    Never,
}

#[derive(Debug, Clone)]
pub struct CallOptions {
    pub amd: bool,
    pub amd_params: AmdParams,
    pub hangup_on: HangupOn,
    /// On a machine, wait for the beep (or the end of its message) before hanging up.
    pub wait_for_beep: bool,
    /// Ends an answered call after this long whatever happens.
    pub max_duration: Duration,
    /// Put the answered call on hold this long after the answer (re-INVITE a=sendonly; the
    /// far end hears music), and resume it `hold_for` later (re-INVITE a=sendrecv).
    pub hold_after: Option<Duration>,
    pub hold_for: Duration,
    /// Blind transfer: REFER the far end to this URI `transfer_after` the answer, then hang
    /// up once the REFER is accepted.
    pub transfer_to: Option<String>,
    pub transfer_after: Duration,
}

impl Default for CallOptions {
    fn default() -> Self {
        CallOptions {
            amd: true,
            amd_params: AmdParams::default(),
            hangup_on: HangupOn::Machine,
            wait_for_beep: false,
            max_duration: Duration::from_secs(60),
            hold_after: None,
            hold_for: Duration::from_secs(2),
            transfer_to: None,
            transfer_after: Duration::from_secs(1),
        }
    }
}

/// Progress of one call, as it happens.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    Inviting {
        call_id: String,
        sdp_port: u16,
    },
    Ringing {
        status: u16,
        early_media: bool,
    },
    Answered {
        after_ms: u64,
    },
    Amd {
        answered_by: &'static str,
        cause: String,
        media_ms: u64,
        after_answer_ms: u64,
    },
    Beep {
        hz: u32,
        start_ms: u64,
        end_ms: u64,
    },
    MessageEnd {
        at_ms: Option<u64>,
    },
    Dtmf {
        digit: char,
    },
    /// Special information tones in early media (the attempt is cancelled).
    EarlySit {
        media_ms: u64,
    },
    Hold {
        status: u16,
    },
    Resume {
        status: u16,
    },
    Transfer {
        to: String,
        status: u16,
    },
    ReferDeclined {
        target: String,
    },
    HangingUp {
        reason: &'static str,
    },
}

/// The call detail record, as printed and stored.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CallDetail {
    pub call_id: String,
    pub target: String,
    pub trunk: String,
    pub disposition: String,
    pub final_status: Option<u16>,
    pub answered_by: Option<&'static str>,
    pub amd_cause: Option<String>,
    /// Wall time from the answer to the AMD decision.
    pub amd_after_answer_ms: Option<u64>,
    pub beep_hz: Option<u32>,
    /// Media time of the beep's end, from the first RTP packet of the call.
    pub beep_end_media_ms: Option<u64>,
    pub early_media: bool,
    /// SIT tones heard in early media (disposition "intercept" unless the network's final
    /// response came first).
    pub early_sit: bool,
    pub started_unix_ms: u64,
    /// INVITE to the first 18x.
    pub ring_ms: Option<u64>,
    /// INVITE to the 200.
    pub answer_ms: Option<u64>,
    /// Answer to the end.
    pub talk_ms: Option<u64>,
    pub duration_ms: u64,
    /// "remote" when the far end sent BYE first, else "local".
    pub ended_by: &'static str,
    pub hangup_reason: Option<&'static str>,
    pub sip_error: Option<String>,
    pub sdp_error: Option<String>,
    pub rtp_packets: u64,
    pub rtp_lost: u64,
    pub rtp_jitter_ms: f64,
    pub rtp_malformed: u64,
    /// RTP datagrams from anyone but the negotiated far end, dropped (strict source).
    pub rtp_strangers: u64,
    /// Final status of our hold re-INVITE, and of the resume.
    pub hold_status: Option<u16>,
    pub resume_status: Option<u16>,
    /// Final status of our REFER (blind transfer).
    pub refer_status: Option<u16>,
    /// Where the far end asked us to go with a REFER (declined).
    pub refer_declined: Option<String>,
    /// re-INVITEs/UPDATEs from the far end we answered.
    pub remote_reoffers: u32,
    /// Session-timer refreshes we sent and had accepted (RFC 4028, refresher=uac).
    pub session_refreshes: u32,
}

/// One SIP agent and one media plane, shared by every call placed through them.
pub struct Dialer {
    agent: SipAgent,
    plane: Arc<MediaPlane>,
    routes: Arc<Mutex<HashMap<CallId, mpsc::UnboundedSender<Event>>>>,
    next_call: AtomicU64,
    /// Set once on shutdown: every live call ends (BYE or CANCEL) and writes its record.
    stop: Arc<tokio::sync::watch::Sender<bool>>,
}

impl std::fmt::Debug for Dialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dialer").field("sip", &self.agent.local_addr()).finish()
    }
}

fn event_call(e: &Event) -> CallId {
    match e {
        Event::FirstPacket { call, .. }
        | Event::Media { call, .. }
        | Event::MediaTimeout { call, .. }
        | Event::Stats { call, .. }
        | Event::Closed { call, .. }
        | Event::PlayDone { call }
        | Event::Recording { call, .. }
        | Event::Error { call, .. } => *call,
    }
}

impl Dialer {
    /// Starts the SIP agent and `shards` media shards. Must run inside a tokio runtime.
    pub async fn start(sip: AgentConfig, media: ShardConfig, shards: usize) -> Result<Dialer> {
        let agent = SipAgent::start(sip).await.context("starting the SIP agent")?;
        let plane = Arc::new(MediaPlane::spawn(shards, media).map_err(|e| anyhow!("starting the media plane: {e}"))?);
        let routes: Arc<Mutex<HashMap<CallId, mpsc::UnboundedSender<Event>>>> = Arc::default();
        let (events, r) = (plane.events.clone(), routes.clone());
        tokio::spawn(async move {
            while let Ok(e) = events.recv_async().await {
                let call = event_call(&e);
                let tx = r.lock().ok().and_then(|m| m.get(&call).cloned());
                if let Some(tx) = tx {
                    let _ = tx.send(e);
                }
            }
        });
        let stop = Arc::new(tokio::sync::watch::channel(false).0);
        Ok(Dialer { agent, plane, routes, next_call: AtomicU64::new(1), stop })
    }

    pub fn sip(&self) -> &SipAgent {
        &self.agent
    }

    /// What ends every live call on shutdown: `send(true)` on it.
    pub fn stopper(&self) -> Arc<tokio::sync::watch::Sender<bool>> {
        self.stop.clone()
    }

    /// Whether shutdown has begun (no new calls).
    pub fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Places one call and follows it to the end.
    pub async fn call(
        &self,
        target: &str,
        trunk: &TrunkConfig,
        opts: &CallOptions,
        mut progress: impl FnMut(Progress),
    ) -> Result<CallDetail> {
        let call = self.next_call.fetch_add(1, Ordering::Relaxed);
        let shard_index = self.plane.shard_for(call);
        let shard = self.plane.shard(shard_index).ok_or_else(|| anyhow!("no media shard"))?;
        let (tx, mut media_events) = mpsc::unbounded_channel();
        self.routes.lock().map_err(|_| anyhow!("route table poisoned"))?.insert(call, tx);
        let _route = RouteGuard { routes: self.routes.clone(), call };
        // Binding a socket can block for milliseconds in the kernel: not on a runtime worker
        // that also carries SIP (it delayed responses enough to cost calls at 500 cps).
        let plane = self.plane.clone();
        let reply = tokio::task::spawn_blocking(move || {
            plane.shard(shard_index).map(|s| s.begin_allocate(call, PayloadMap::default()))
        })
        .await?
        .ok_or_else(|| anyhow!("no media shard"))?
        .map_err(|e| anyhow!("{e}"))?;
        let local_rtp: SocketAddr =
            reply.recv_async().await.map_err(|_| anyhow!("media shard gone"))?.map_err(|e| anyhow!("{e}"))?;
        let mut media_guard = MediaGuard { plane: self.plane.clone(), shard: shard_index, call, armed: true };
        let local = LocalMedia {
            address: local_rtp,
            codecs: vec![AudioCodec::Pcmu, AudioCodec::Pcma, AudioCodec::Opus],
            telephone_event: true,
            ptime: 20,
            direction: Direction::SendRecv,
            session_id: call,
            version: 1,
        };
        let cfg = CallConfig {
            ring_timeout: trunk.ring_timeout(),
            amd: opts.amd,
            hangup_on_machine: opts.hangup_on == HangupOn::Machine && !opts.wait_for_beep,
            ..CallConfig::default()
        };
        let started = Instant::now();
        let started_unix_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let mut fsm = Call::new(cfg, local.clone(), started);
        let mut media_now = local;
        let mut sip: Option<OutboundCall> = None;
        let mut d = Detail::default();
        let mut stop = self.stop.subscribe();
        let record = loop {
            // Carry out what the state machine asked for.
            let mut finished = None;
            while let Some(out) = fsm.poll_output() {
                match out {
                    // The state machine's offer is `sdp::offer(&media_now)`; the agent makes
                    // it from the same media so it can answer re-offers later.
                    Output::SendInvite { .. } => match self.agent.invite(target, trunk, &media_now) {
                        Ok(c) => {
                            progress(Progress::Inviting { call_id: c.call_id.clone(), sdp_port: local_rtp.port() });
                            d.call_id = c.call_id.clone();
                            sip = Some(c);
                        }
                        Err(e) => {
                            // Our fault (a bad URI, no transport): not a SIP answer.
                            d.sip_error = Some(e.to_string());
                            fsm.handle_input(Input::Failed(Failure::Local), Instant::now());
                        }
                    },
                    Output::SendCancel => {
                        if let Some(c) = &sip {
                            if let Err(e) = c.cancel().await {
                                d.sip_error.get_or_insert(format!("CANCEL: {e}"));
                            }
                        }
                    }
                    // The stack ACKs 2xx responses itself (and non-2xx inside the transaction).
                    Output::SendAck => {}
                    Output::SendBye => {
                        if let Some(c) = &sip {
                            if let Err(e) = c.bye().await {
                                d.sip_error.get_or_insert(format!("BYE: {e}"));
                            }
                        }
                    }
                    Output::Media(n) => {
                        follow_media(shard, call, &n)?;
                        if d.answered_at.is_none() && !d.early_analysis {
                            // Early media: listen for SIT tones before the answer.
                            d.early_analysis = true;
                            shard.send(Command::StartAmd { call, params: opts.amd_params })?;
                        }
                    }
                    Output::StartAmd => {
                        shard.send(Command::StartAmd { call, params: opts.amd_params })?;
                    }
                    Output::Finished(r) => finished = Some(r),
                }
            }
            if let Some(r) = finished {
                break r;
            }
            if let (Some(ans), false) = (d.answered_at, d.hung_up) {
                if ans.elapsed() >= opts.max_duration {
                    d.hangup(&mut fsm, &mut progress, "max_duration");
                    continue;
                }
                if let (Some(c), Some((secs, every, at))) = (&sip, d.refresh) {
                    if Instant::now() >= at {
                        let ok = matches!(c.refresh_session(&media_now, secs).await, Ok(200..=299));
                        d.session_refreshes += u32::from(ok);
                        d.refresh = Some((secs, every, at + every));
                        if !ok {
                            d.hangup(&mut fsm, &mut progress, "session_refresh_failed");
                        }
                        continue;
                    }
                }
                if let (Some(c), Some(step)) = (&sip, d.midcall_due(opts, ans, Instant::now())) {
                    self.midcall(step, c, shard, call, &mut media_now, opts, &mut d, &mut fsm, &mut progress).await?;
                    continue;
                }
            }
            let deadline = [
                fsm.poll_timeout().map(|(t, _)| t),
                d.answered_at.filter(|_| !d.hung_up).map(|a| a + opts.max_duration),
                d.answered_at.filter(|_| !d.hung_up).and_then(|a| d.midcall_at(opts, a)),
                d.refresh.filter(|_| !d.hung_up).map(|(_, _, at)| at),
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                ev = async { match sip.as_mut() { Some(c) => c.next_event().await, None => std::future::pending().await } } => {
                    let now = Instant::now();
                    match ev {
                        Some(SipEvent::Provisional { status, sdp }) => {
                            d.early_media |= sdp.is_some();
                            if status >= 180 && d.ring_at.is_none() {
                                d.ring_at = Some(now);
                                progress(Progress::Ringing { status, early_media: sdp.is_some() });
                            }
                            fsm.handle_input(Input::Provisional { status, sdp }, now);
                        }
                        Some(SipEvent::Final { status, sdp }) => {
                            if (200..300).contains(&status) {
                                d.answered_at = Some(now);
                                progress(Progress::Answered { after_ms: ms(now - started) });
                            }
                            fsm.handle_input(Input::Final { status, sdp }, now);
                            if d.early_analysis && !opts.amd && (200..300).contains(&status) {
                                shard.send(Command::StopAmd { call })?;
                            }
                            if fsm.is_done() { continue; }
                        }
                        Some(SipEvent::Bye) => fsm.handle_input(Input::Bye, now),
                        Some(SipEvent::SessionTimer { secs, we_refresh }) => {
                            if we_refresh {
                                // Refresh at half the interval (RFC 4028 §10).
                                let every = Duration::from_millis(u64::from(secs) * 500);
                                d.refresh = Some((secs, every, now + every));
                            }
                        }
                        Some(SipEvent::Reoffer(n)) => {
                            d.remote_reoffers += 1;
                            follow_media(shard, call, &n)?;
                        }
                        Some(SipEvent::ReferDeclined { target }) => {
                            progress(Progress::ReferDeclined { target: target.clone() });
                            d.refer_declined = Some(target);
                        }
                        Some(SipEvent::Failed { failure, detail }) => {
                            d.sip_error.get_or_insert(detail);
                            fsm.handle_input(Input::Failed(failure), now);
                        }
                        None => {
                            // The stack has nothing more for this call.
                            sip = None;
                            if !fsm.is_done() {
                                d.sip_error.get_or_insert("the SIP dialog ended unexpectedly".into());
                                // Before the answer this is the stack's failure, not the
                                // callee's; after it the dialog is gone as if by BYE.
                                let input = if d.answered_at.is_some() { Input::Bye } else { Input::Failed(Failure::Local) };
                                fsm.handle_input(input, now);
                            }
                        }
                    }
                }
                ev = media_events.recv() => {
                    if let Some(ev) = ev {
                        if d.on_media(ev, opts, &mut fsm, &mut progress) {
                            // An early-media verdict other than SIT: keep listening.
                            shard.send(Command::StartAmd { call, params: opts.amd_params })?;
                        }
                    }
                }
                _ = async { let _ = stop.wait_for(|s| *s).await; }, if !d.hung_up => {
                    d.end(&mut fsm, &mut progress, "shutdown", Input::Shutdown);
                }
                _ = tokio::time::sleep_until(deadline.into()) => {
                    fsm.handle_timeout(Instant::now());
                }
            }
        };
        // Close the media session and collect its statistics.
        media_guard.armed = false;
        shard.send(Command::Close { call })?;
        let closed = tokio::time::timeout(Duration::from_secs(2), async {
            while let Some(e) = media_events.recv().await {
                if let Event::Closed { stats, .. } = e {
                    return Some(stats);
                }
            }
            None
        })
        .await
        .ok()
        .flatten();
        let stats = closed.unwrap_or_default();
        let end = record.ended;
        Ok(CallDetail {
            call_id: d.call_id,
            target: target.into(),
            trunk: trunk.name.clone(),
            disposition: record.disposition.to_string(),
            final_status: record.final_status,
            answered_by: d.answered_by,
            amd_cause: d.amd_cause,
            amd_after_answer_ms: d.amd_after_answer_ms,
            beep_hz: d.beep_hz,
            beep_end_media_ms: d.beep_end_ms,
            early_media: d.early_media,
            early_sit: record.early_sit,
            started_unix_ms,
            ring_ms: record.ringing.map(|t| ms(t - started)),
            answer_ms: record.answered.map(|t| ms(t - started)),
            talk_ms: record.answered.map(|t| ms(end.saturating_duration_since(t))),
            duration_ms: ms(end - started),
            ended_by: if record.remote_hangup { "remote" } else { "local" },
            hangup_reason: d.hangup_reason,
            sip_error: d.sip_error,
            sdp_error: record.sdp_error.map(|e| e.to_string()),
            rtp_packets: stats.packets,
            rtp_lost: stats.lost,
            rtp_jitter_ms: stats.jitter_ms,
            rtp_malformed: stats.malformed,
            rtp_strangers: stats.strangers,
            hold_status: d.hold_status,
            resume_status: d.resume_status,
            refer_status: d.refer_status,
            refer_declined: d.refer_declined,
            remote_reoffers: d.remote_reoffers,
            session_refreshes: d.session_refreshes,
        })
    }
}

impl Dialer {
    /// Carries out one mid-call step: hold or resume (re-INVITE, and music on the shard),
    /// or a blind transfer (REFER, then BYE once it is accepted).
    #[allow(clippy::too_many_arguments)]
    async fn midcall(
        &self,
        step: Midcall,
        c: &OutboundCall,
        shard: &waihu_engine::worker::Shard,
        call: CallId,
        media: &mut LocalMedia,
        opts: &CallOptions,
        d: &mut Detail,
        fsm: &mut Call,
        progress: &mut impl FnMut(Progress),
    ) -> Result<()> {
        match step {
            Midcall::Hold | Midcall::Resume => {
                let mut next = media.clone();
                next.direction = if step == Midcall::Hold { Direction::SendOnly } else { Direction::SendRecv };
                next.version += 1;
                let status = match c.reinvite(&next).await {
                    Ok((status, negotiated)) => {
                        if (200..300).contains(&status) {
                            *media = next;
                            if let Some(n) = negotiated {
                                follow_media(shard, call, &n)?;
                            }
                        }
                        status
                    }
                    Err(e) => {
                        d.sip_error.get_or_insert(format!("re-INVITE: {e}"));
                        0
                    }
                };
                let ok = (200..300).contains(&status);
                if step == Midcall::Hold {
                    d.hold_status = Some(status);
                    d.held = ok;
                    if ok {
                        shard.send(Command::Hold { call, music: hold_music() })?;
                    }
                    progress(Progress::Hold { status });
                } else {
                    d.resume_status = Some(status);
                    if ok {
                        d.held = false;
                        shard.send(Command::Resume { call })?;
                    }
                    progress(Progress::Resume { status });
                }
            }
            Midcall::Transfer => {
                let to = opts.transfer_to.clone().unwrap_or_default();
                let status = match c.refer(&to).await {
                    Ok(s) => s,
                    Err(e) => {
                        d.sip_error.get_or_insert(format!("REFER: {e}"));
                        0
                    }
                };
                d.refer_status = Some(status);
                progress(Progress::Transfer { to, status });
                if (200..300).contains(&status) {
                    d.hangup(fsm, progress, "transferred");
                }
            }
        }
        Ok(())
    }
}

/// Music on hold: a soft two-tone chime, 8 kHz, looped by the shard. Built once; every
/// hold shares the same buffer.
fn hold_music() -> Arc<[i16]> {
    static MUSIC: std::sync::OnceLock<Arc<[i16]>> = std::sync::OnceLock::new();
    MUSIC
        .get_or_init(|| {
            let note = |hz: f64, n: usize| {
                (0..n).map(move |i| (2500.0 * (2.0 * std::f64::consts::PI * hz * i as f64 / 8000.0).sin()) as i16)
            };
            note(523.25, 4000).chain(note(659.25, 4000)).chain(std::iter::repeat_n(0, 8000)).collect()
        })
        .clone()
}

/// What the glue learns along the way, for the record.
#[derive(Default)]
struct Detail {
    call_id: String,
    ring_at: Option<Instant>,
    answered_at: Option<Instant>,
    early_media: bool,
    answered_by: Option<&'static str>,
    amd_cause: Option<String>,
    amd_after_answer_ms: Option<u64>,
    beep_hz: Option<u32>,
    beep_end_ms: Option<u64>,
    machine_waiting_for_beep: bool,
    hung_up: bool,
    hangup_reason: Option<&'static str>,
    sip_error: Option<String>,
    hold_status: Option<u16>,
    resume_status: Option<u16>,
    refer_status: Option<u16>,
    refer_declined: Option<String>,
    remote_reoffers: u32,
    held: bool,
    /// Session timer we refresh: (Session-Expires seconds, refresh period, next refresh).
    refresh: Option<(u32, Duration, Instant)>,
    session_refreshes: u32,
    early_analysis: bool,
}

/// Mid-call steps the options ask for, in time order after the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Midcall {
    Hold,
    Resume,
    Transfer,
}

impl Detail {
    /// When the next mid-call step is due, if any is left.
    fn midcall_at(&self, opts: &CallOptions, answered: Instant) -> Option<Instant> {
        self.next_midcall(opts).map(|(_, after)| answered + after)
    }

    fn next_midcall(&self, opts: &CallOptions) -> Option<(Midcall, Duration)> {
        if let Some(h) = opts.hold_after {
            if self.hold_status.is_none() {
                return Some((Midcall::Hold, h));
            }
            if self.held && self.resume_status.is_none() {
                return Some((Midcall::Resume, h + opts.hold_for));
            }
        }
        if opts.transfer_to.is_some() && self.refer_status.is_none() {
            return Some((Midcall::Transfer, opts.transfer_after));
        }
        None
    }

    fn midcall_due(&self, opts: &CallOptions, answered: Instant, now: Instant) -> Option<Midcall> {
        self.next_midcall(opts).filter(|&(_, after)| now >= answered + after).map(|(m, _)| m)
    }

    fn hangup(&mut self, fsm: &mut Call, progress: &mut impl FnMut(Progress), reason: &'static str) {
        self.end(fsm, progress, reason, Input::Hangup);
    }

    fn end(&mut self, fsm: &mut Call, progress: &mut impl FnMut(Progress), reason: &'static str, input: Input) {
        if self.hung_up {
            return;
        }
        self.hung_up = true;
        self.hangup_reason = Some(reason);
        progress(Progress::HangingUp { reason });
        fsm.handle_input(input, Instant::now());
    }

    /// Handles one media event; returns true when early-media analysis should restart.
    fn on_media(&mut self, ev: Event, opts: &CallOptions, fsm: &mut Call, progress: &mut impl FnMut(Progress)) -> bool {
        let now = Instant::now();
        if self.answered_at.is_none() {
            // Before the answer only SIT tones matter; ringback and announcements are no
            // verdict on who will answer.
            if let Event::Media { event: SessionEvent::Amd(AmdEvent::Decided(dec)), .. } = ev {
                if dec.verdict == Verdict::Sit {
                    progress(Progress::EarlySit { media_ms: dec.at.as_ms() });
                    fsm.handle_input(Input::Amd(AnsweredBy::Sit), now);
                    return false;
                }
                return true;
            }
            return false;
        }
        match ev {
            Event::Media { event: SessionEvent::Amd(AmdEvent::Decided(dec)), .. } => {
                let by = dec.verdict.answered_by();
                let after = self.answered_at.map_or(0, |a| ms(now.saturating_duration_since(a)));
                self.answered_by = Some(dec.verdict.label());
                self.amd_cause = Some(dec.cause.to_string());
                self.amd_after_answer_ms = Some(after);
                progress(Progress::Amd {
                    answered_by: dec.verdict.label(),
                    cause: dec.cause.to_string(),
                    media_ms: dec.at.as_ms(),
                    after_answer_ms: after,
                });
                fsm.handle_input(Input::Amd(by), now);
                if fsm.is_done() {
                    self.hung_up = true;
                    self.hangup_reason = Some("amd");
                    return false;
                }
                let hang = match (opts.hangup_on, by) {
                    (HangupOn::Any, _) => true,
                    (HangupOn::Human, AnsweredBy::Human) => true,
                    (HangupOn::Machine, AnsweredBy::Machine) => {
                        self.machine_waiting_for_beep = true;
                        false
                    }
                    _ => false,
                };
                if hang {
                    self.hangup(fsm, progress, "amd");
                }
            }
            Event::Media { event: SessionEvent::Amd(AmdEvent::Beep { start, end, hz }), .. } => {
                self.beep_hz.get_or_insert(hz);
                self.beep_end_ms.get_or_insert(end.as_ms());
                progress(Progress::Beep { hz, start_ms: start.as_ms(), end_ms: end.as_ms() });
            }
            Event::Media { event: SessionEvent::Amd(AmdEvent::MessageEnd { at }), .. } => {
                progress(Progress::MessageEnd { at_ms: at.map(|t| t.as_ms()) });
                if self.machine_waiting_for_beep {
                    self.hangup(fsm, progress, "machine_message_end");
                }
            }
            Event::Media { event: SessionEvent::Dtmf { digit, .. }, .. } => progress(Progress::Dtmf { digit }),
            Event::MediaTimeout { .. } if self.answered_at.is_some() => {
                self.hangup(fsm, progress, "media_timeout");
            }
            _ => {}
        }
        false
    }
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// Points the shard's session at what an offer/answer settled: payload types, then the far
/// end's address. Strict source: only datagrams from exactly that address are heard, so a
/// stranger streaming at our port cannot change the AMD verdict.
fn follow_media(shard: &waihu_engine::worker::Shard, call: CallId, n: &Negotiated) -> Result<()> {
    shard.send(Command::SetPayloads { call, payloads: payloads_of(n) })?;
    shard.send(Command::SetRtcpMux { call, mux: n.rtcp_mux })?;
    shard.send(Command::SetRemote { call, remote: n.remote, symmetric: false })?;
    Ok(())
}

fn payloads_of(n: &Negotiated) -> PayloadMap {
    let mut p = PayloadMap { pcmu: None, pcma: None, opus: None, telephone_event: n.telephone_event };
    match n.codec {
        AudioCodec::Pcmu => p.pcmu = Some(n.payload_type),
        AudioCodec::Pcma => p.pcma = Some(n.payload_type),
        AudioCodec::Opus => p.opus = Some(n.payload_type),
    }
    p
}

struct RouteGuard {
    routes: Arc<Mutex<HashMap<CallId, mpsc::UnboundedSender<Event>>>>,
    call: CallId,
}

impl Drop for RouteGuard {
    fn drop(&mut self) {
        if let Ok(mut m) = self.routes.lock() {
            m.remove(&self.call);
        }
    }
}

/// Closes the media session if the call ends early on an error.
struct MediaGuard {
    plane: Arc<MediaPlane>,
    shard: usize,
    call: CallId,
    armed: bool,
}

impl Drop for MediaGuard {
    fn drop(&mut self) {
        if let (true, Some(s)) = (self.armed, self.plane.shard(self.shard)) {
            let _ = s.send(Command::Close { call: self.call });
        }
    }
}
