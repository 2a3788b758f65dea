//! The call flow: everything one outbound call decides, as a pure state machine.
//!
//! It wraps the SIP call state machine ([`waihu_sip::call::Call`], the protocol part:
//! INVITE, CANCEL, ACK, BYE and what the final response means) and adds the call's
//! policy: when to hang up on an AMD verdict, waiting for a machine's beep, the maximum
//! duration, the session-timer refresh, hold and resume, blind transfer, the answers to
//! the far end's re-offers and REFERs, and the call record. Inputs come in with `now`;
//! outputs say what to send to SIP and to the media shard. Time comes only from `now`.
//!
//! One in-dialog request (re-INVITE, refresh, REFER) is in flight at a time: a request
//! that falls due meanwhile waits for the previous one's result.

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use waihu_engine::amd::AmdEvent;
use waihu_engine::session::{SessionEvent, SessionStats};
use waihu_engine::worker::{Event as MediaEvent, Keepalive};
use waihu_engine::AmdParams;
use waihu_model::{AnsweredBy, CallId, CallRecord, EndedBy, HangupReason};
use waihu_sip::agent::{Request, SipCommand, SipEvent};
use waihu_sip::call::{self as sip_call, Call, CallConfig, Failure};
use waihu_sip::sdp::{self, Direction, LocalMedia, Negotiated};

/// When to hang up once AMD has decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

impl HangupOn {
    pub const ALL: [HangupOn; 4] = [HangupOn::Machine, HangupOn::Human, HangupOn::Any, HangupOn::Never];

    pub const fn label(self) -> &'static str {
        match self {
            HangupOn::Machine => "machine",
            HangupOn::Human => "human",
            HangupOn::Any => "any",
            HangupOn::Never => "never",
        }
    }
}

/// The variant of `all` whose label is `s` (any case), or an error naming the choices.
fn parse_label<T: Copy>(all: &[T], label: fn(T) -> &'static str, s: &str) -> Result<T, String> {
    all.iter().copied().find(|v| label(*v).eq_ignore_ascii_case(s)).ok_or_else(|| {
        let choices: Vec<&str> = all.iter().map(|v| label(*v)).collect();
        format!("{s:?} is not one of {}", choices.join(", "))
    })
}

impl fmt::Display for HangupOn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

impl FromStr for HangupOn {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_label(&HangupOn::ALL, HangupOn::label, s)
    }
}

/// What an answered call sends while it has nothing to say (so carriers' NAT and no-RTP
/// timers see it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum KeepaliveMode {
    /// RFC 3389 comfort noise when the far end accepted it, else a stream of silence.
    #[default]
    Auto,
    /// Always a stream of silence (a packet every 20 ms).
    Silence,
    /// Nothing.
    Off,
}

impl KeepaliveMode {
    pub const ALL: [KeepaliveMode; 3] = [KeepaliveMode::Auto, KeepaliveMode::Silence, KeepaliveMode::Off];

    pub const fn label(self) -> &'static str {
        match self {
            KeepaliveMode::Auto => "auto",
            KeepaliveMode::Silence => "silence",
            KeepaliveMode::Off => "off",
        }
    }

    /// What the shard sends, given what the SDP exchange settled.
    pub fn for_media(self, n: &Negotiated) -> Keepalive {
        match (self, n.comfort_noise) {
            (KeepaliveMode::Off, _) => Keepalive::Off,
            (KeepaliveMode::Auto, Some(pt)) => Keepalive::ComfortNoise { pt },
            (KeepaliveMode::Auto | KeepaliveMode::Silence, _) => Keepalive::Silence,
        }
    }
}

impl fmt::Display for KeepaliveMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

impl FromStr for KeepaliveMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_label(&KeepaliveMode::ALL, KeepaliveMode::label, s)
    }
}

/// What one call does, fixed when it starts.
#[derive(Debug, Clone)]
pub struct FlowConfig {
    pub id: CallId,
    pub target: String,
    pub trunk: String,
    /// Ring this long before giving up with CANCEL.
    pub ring_timeout: Duration,
    /// No final response to the INVITE within this (SIP timer B) ends the attempt.
    pub invite_timeout: Duration,
    /// Answering-machine detection on the answered call. Early media is analysed for SIT
    /// tones either way.
    pub amd: bool,
    pub amd_params: AmdParams,
    pub hangup_on: HangupOn,
    /// On a machine, wait for the beep (or the end of its message) before hanging up.
    pub wait_for_beep: bool,
    /// Ends an answered call after this long whatever happens.
    pub max_duration: Duration,
    /// Put the answered call on hold this long after the answer (re-INVITE a=sendonly; the
    /// far end hears music), and resume it `hold_for` after the hold took.
    pub hold_after: Option<Duration>,
    pub hold_for: Duration,
    /// Blind transfer: REFER the far end to this URI `transfer_after` the answer (after
    /// any scheduled hold and resume), then hang up once the transfer has gone through.
    pub transfer_to: Option<String>,
    pub transfer_after: Duration,
    /// After our REFER is accepted, how long to wait for the NOTIFY that says how the
    /// transfer went. Without one the call is ended as transferred.
    pub transfer_wait: Duration,
    /// An in-dialog request with no result after this is given up (the stack's own
    /// transaction timeout is 32 s).
    pub request_timeout: Duration,
    /// After the call has ended, how long to wait for the BYE's response and the media
    /// statistics before writing the record without them.
    pub linger: Duration,
    /// What the answered call sends while it plays nothing.
    pub keepalive: KeepaliveMode,
    /// A broadcast message: played to a person as soon as AMD says so, or to a machine
    /// once its greeting (and beep) has ended; the call is hung up when it has played.
    /// With a message the hang-up policy is the message's: `hangup_on` is not used.
    pub message: Option<Arc<[i16]>>,
    /// The 2-second rule: a live person (AMD human) not bridged to an agent within
    /// `connect_within` of the verdict (the end of their greeting) hears this, and the call
    /// is released as abandoned.
    pub safe_harbour: Option<Arc<[i16]>>,
    pub connect_within: Duration,
    /// An agent's own phone may REFER its leg (its transfer key): accepted (202, then a
    /// NOTIFY), and reported as [`Progress::ReferRequested`] for the agent to carry out.
    /// Otherwise a far end's REFER is declined (603).
    pub honour_refer: bool,
    /// Record the first this-long of the answered call; kept (as
    /// [`Progress::ReviewSample`]) only if AMD says machine, for an operator to check the
    /// verdict (the abandon rate counts AMD's false positives).
    pub review_sample: Option<Duration>,
    /// Wall-clock time of the start (Unix ms): the record's timestamps are this plus the
    /// monotonic offsets, so a wall-clock jump mid-call cannot bend them.
    pub started_unix_ms: u64,
}

impl FlowConfig {
    /// The INVITE and request timeouts that go with the SIP stack's T1: the stack gives a
    /// transaction up after 64·T1 (timers B and F), and the flow waits that long for the
    /// INVITE's final answer, and 2 s more for any other request's result.
    pub fn with_sip_t1(self, t1: Duration) -> Self {
        FlowConfig { invite_timeout: t1 * 64, request_timeout: t1 * 64 + Duration::from_secs(2), ..self }
    }
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            id: 0,
            target: String::new(),
            trunk: String::new(),
            ring_timeout: Duration::from_secs(30),
            invite_timeout: Duration::from_secs(32),
            amd: true,
            amd_params: AmdParams::default(),
            hangup_on: HangupOn::Machine,
            wait_for_beep: false,
            max_duration: Duration::from_secs(60),
            hold_after: None,
            hold_for: Duration::from_secs(2),
            transfer_to: None,
            transfer_after: Duration::from_secs(1),
            transfer_wait: Duration::from_secs(5),
            request_timeout: Duration::from_secs(34),
            linger: Duration::from_secs(2),
            keepalive: KeepaliveMode::Auto,
            message: None,
            safe_harbour: None,
            connect_within: Duration::from_secs(2),
            honour_refer: false,
            review_sample: None,
            started_unix_ms: 0,
        }
    }
}

/// What the control plane asks of a live call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// End the call: CANCEL before the answer, BYE after.
    Hangup,
    /// Put the answered call on hold (music to the far end) until `Resume`.
    Hold,
    Resume,
    /// Blind transfer to this SIP URI.
    Transfer {
        to: String,
    },
    /// Connect this call's media to another leg: on `shard`, or on this call's own when
    /// None.
    Bridge {
        peer: CallId,
        shard: Option<usize>,
    },
    Unbridge,
    /// The agent's hold, in the media plane: the far end hears `music` (looped) and its
    /// bridged peer hears nothing from it; the SIP dialog is untouched (`Hold` re-INVITEs).
    HoldWithMusic {
        music: Arc<[i16]>,
    },
    /// Ends [`Command::HoldWithMusic`].
    EndHold,
    /// After a REFER this call accepted (`honour_refer`): tell the far end how the transfer
    /// went (a NOTIFY with this status).
    NotifyRefer {
        status: u16,
    },
    /// We are shutting down: end the call as `Hangup` does, but an attempt cut short before
    /// its answer is `Interrupted`, not held against the contact.
    Shutdown,
}

/// Everything that happens to a call.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// The INVITE is on its way with this Call-ID.
    Invited {
        call_id: String,
    },
    /// The INVITE could not be sent (a bad URI, no transport): our fault, not an answer.
    InviteFailed {
        error: String,
    },
    Sip(SipEvent),
    /// One of this call's media events.
    Media(MediaEvent),
    Command(Command),
}

/// What the media shard must do for this call.
#[derive(Debug, Clone, PartialEq)]
pub enum MediaCommand {
    /// Point the session at what an offer/answer settled: payload types, rtcp-mux, and the
    /// far end's address (strict source: only it is heard).
    Follow(Negotiated),
    /// Start (or restart) AMD as analysis run `run`; events of other runs are stale.
    StartAmd {
        params: AmdParams,
        run: u32,
    },
    StopAmd,
    /// What to send while nothing plays (from the answer on).
    Keepalive(Keepalive),
    /// Play this to the far end, looped, and mute its bridged peer (music on hold).
    Hold {
        music: Arc<[i16]>,
    },
    Resume,
    Bridge {
        peer: CallId,
        shard: Option<usize>,
    },
    Unbridge,
    /// Play this once to the far end ([`MediaEvent::PlayDone`] when it has).
    Play {
        audio: Arc<[i16]>,
    },
    /// Record the leg (its far end on the left channel); the WAV comes back as
    /// [`MediaEvent::Recording`] when it stops or the leg closes.
    StartRecording,
    StopRecording,
    /// Close the session: its statistics come back as [`MediaEvent::Closed`].
    Close,
}

/// What the call reports as it goes, for people watching (stderr, a console).
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// No agent took the live person in time: the safe-harbour message plays.
    SafeHarbour,
    /// The call was bridged to `peer` (an agent) in time.
    Connected {
        peer: CallId,
    },
    /// The bridge carries the far end's audio to its peer now (its first frame went out).
    Relaying,
    /// The INVITE left, offering media on our `rtp_port`.
    Inviting {
        call_id: String,
        rtp_port: u16,
    },
    Ringing {
        status: u16,
        early_media: bool,
    },
    Answered {
        after_ms: u64,
    },
    Amd {
        answered_by: AnsweredBy,
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
    /// Our hold or resume re-INVITE's final status (0: none came).
    Hold {
        status: u16,
    },
    Resume {
        status: u16,
    },
    /// Our REFER's final status (0: none came).
    Transfer {
        to: String,
        status: u16,
    },
    /// The far end's NOTIFY: how the transfer went.
    TransferResult {
        status: u16,
    },
    ReferDeclined {
        target: String,
    },
    /// The agent's phone asked for its customer to be transferred to `target` (accepted).
    ReferRequested {
        target: String,
    },
    /// The first seconds of a call AMD said was a machine, kept for an operator's review
    /// (`review_sample`): 8 kHz WAV, the far end on the left channel.
    ReviewSample {
        wav: Arc<[u8]>,
    },
    HangingUp {
        reason: HangupReason,
    },
}

/// What the shell must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Send the INVITE with this offer; answer with [`Input::Invited`] or
    /// [`Input::InviteFailed`].
    Invite {
        sdp: String,
    },
    Sip(SipCommand),
    Media(MediaCommand),
    Progress(Progress),
    /// The call is over: its record. Nothing follows.
    Finished(Box<CallRecord>),
}

/// The flow's timers, each with its own deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// Ringing too long: CANCEL (the SIP call's).
    Ring,
    /// No final response to the INVITE (the SIP call's).
    Invite,
    MaxDuration,
    /// Our session-timer refresh is due.
    Refresh,
    Hold,
    Resume,
    Transfer,
    /// Waiting for the NOTIFY that ends an accepted transfer.
    TransferWait,
    /// The review recording's first seconds are over.
    Review,
    /// A live person waits for an agent: the 2-second rule's deadline.
    Connect,
    /// The in-flight in-dialog request has had no result.
    Request,
    /// The call is over; the BYE's response and the media statistics are late.
    Linger,
}

const TIMERS: [Timer; 10] = [
    Timer::MaxDuration,
    Timer::Review,
    Timer::Connect,
    Timer::Refresh,
    Timer::Hold,
    Timer::Resume,
    Timer::Transfer,
    Timer::TransferWait,
    Timer::Request,
    Timer::Linger,
];

/// The timers that start an in-dialog request: they wait while another is in flight.
fn starts_request(t: Timer) -> bool {
    matches!(t, Timer::Refresh | Timer::Hold | Timer::Resume | Timer::Transfer)
}

fn slot(t: Timer) -> usize {
    TIMERS.iter().position(|&x| x == t).unwrap_or(0)
}

/// The in-dialog request we are waiting on.
#[derive(Debug, Clone, PartialEq, Eq)]
enum InFlight {
    Hold { next: LocalMedia, scheduled: bool },
    Resume { next: LocalMedia },
    Refresh,
    Refer { to: String },
}

impl InFlight {
    fn request(&self) -> Request {
        match self {
            InFlight::Hold { .. } | InFlight::Resume { .. } => Request::Reinvite,
            InFlight::Refresh => Request::Refresh,
            InFlight::Refer { .. } => Request::Refer,
        }
    }
}

/// The call, from INVITE to record.
#[derive(Debug)]
pub struct CallFlow {
    cfg: FlowConfig,
    call: Call,
    /// Our media as of the last offer/answer (direction and o= version change on hold).
    local: LocalMedia,
    started: Instant,
    out: VecDeque<Output>,
    timers: [Option<Instant>; TIMERS.len()],
    rec: CallRecord,
    answered: Option<Instant>,
    early_analysis: bool,
    machine_waiting_for_beep: bool,
    /// The review recording, done before AMD decided: kept if it says machine.
    pending_review: Option<Arc<[u8]>>,
    hung_up: bool,
    cancel_sent: bool,
    held: bool,
    /// Resume after `hold_for` (the hold came from the schedule, not a command).
    auto_resume: bool,
    in_flight: Option<InFlight>,
    /// Session-Expires we refresh (RFC 4028, refresher=uac).
    refresh_secs: Option<u32>,
    transfer_to: Option<String>,
    transfer_accepted: bool,
    /// A final NOTIFY that overtook our REFER's 202 (UDP reorders): applied when it lands.
    early_notify: Option<u16>,
    /// The SIP call's own record, once it has ended.
    ended: Option<sip_call::CallRecord>,
    bye_pending: bool,
    media_closed: bool,
    done: bool,
    /// The media the last offer/answer settled.
    negotiated: Option<Negotiated>,
    keepalive_sent: bool,
    /// The AMD run whose events count (bumped by every start and stop).
    amd_run: u32,
    /// The broadcast message is playing.
    playing: bool,
    /// The safe-harbour message is playing: the call is abandoned.
    abandoning: bool,
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

fn is_2xx(s: Option<u16>) -> bool {
    matches!(s, Some(200..=299))
}

impl CallFlow {
    /// Starts the call on a media session at `local`. The first output is the INVITE.
    pub fn new(cfg: FlowConfig, local: LocalMedia, now: Instant) -> CallFlow {
        let call_cfg = CallConfig {
            ring_timeout: cfg.ring_timeout,
            invite_timeout: cfg.invite_timeout,
            amd: cfg.amd,
            hangup_on_machine: cfg.message.is_none() && cfg.hangup_on == HangupOn::Machine && !cfg.wait_for_beep,
        };
        let rec = CallRecord {
            id: cfg.id,
            target: cfg.target.clone(),
            trunk: cfg.trunk.clone(),
            started_unix_ms: cfg.started_unix_ms,
            ..CallRecord::default()
        };
        let mut flow = CallFlow {
            call: Call::new(call_cfg, local.clone(), now),
            local,
            started: now,
            out: VecDeque::new(),
            timers: [None; TIMERS.len()],
            rec,
            answered: None,
            early_analysis: false,
            machine_waiting_for_beep: false,
            pending_review: None,
            hung_up: false,
            cancel_sent: false,
            held: false,
            auto_resume: false,
            in_flight: None,
            refresh_secs: None,
            transfer_to: cfg.transfer_to.clone(),
            transfer_accepted: false,
            early_notify: None,
            ended: None,
            bye_pending: false,
            media_closed: false,
            done: false,
            negotiated: None,
            keepalive_sent: false,
            amd_run: 0,
            playing: false,
            abandoning: false,
            cfg,
        };
        flow.pump(now);
        flow
    }

    pub fn id(&self) -> CallId {
        self.cfg.id
    }

    /// Who the call is to (the INVITE's Request-URI).
    pub fn target(&self) -> &str {
        &self.cfg.target
    }

    /// Whether the record has been written: nothing more will come out.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Whether the call has been answered (and not yet ended).
    pub fn is_answered(&self) -> bool {
        self.answered.is_some() && self.ended.is_none()
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// The earliest deadline and what it is for.
    pub fn poll_timeout(&self) -> Option<(Instant, Timer)> {
        if self.done {
            return None;
        }
        let sip = self.call.poll_timeout().map(|(at, t)| {
            (
                at,
                match t {
                    sip_call::CallTimer::Ring => Timer::Ring,
                    sip_call::CallTimer::Invite => Timer::Invite,
                },
            )
        });
        let busy = self.in_flight.is_some();
        TIMERS
            .iter()
            .filter(|&&t| !(busy && starts_request(t)))
            .filter_map(|&t| self.timers[slot(t)].map(|at| (at, t)))
            .chain(sip)
            .min_by_key(|&(at, _)| at)
    }

    fn set(&mut self, t: Timer, at: Option<Instant>) {
        self.timers[slot(t)] = at;
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.done {
            return;
        }
        // Each due timer once, in deadline order; what one does may clear the others. A
        // clock that jumped far ahead fires what fell due on the way, each once.
        for _ in 0..2 * TIMERS.len() + 4 {
            let Some((at, t)) = self.poll_timeout().filter(|&(at, _)| now >= at) else { break };
            match t {
                Timer::Ring | Timer::Invite => {
                    self.call.handle_timeout(now);
                    self.pump(now);
                    if self.call.poll_timeout().is_some_and(|(next, _)| next == at) {
                        break;
                    }
                }
                _ => {
                    self.set(t, None);
                    self.fire(t, now);
                    self.pump(now);
                }
            }
            if self.done {
                break;
            }
        }
    }

    fn fire(&mut self, t: Timer, now: Instant) {
        match t {
            Timer::Ring | Timer::Invite => {}
            Timer::MaxDuration => self.hang_up(HangupReason::MaxDuration, now),
            Timer::Refresh => {
                if let Some(secs) = self.refresh_secs.filter(|_| self.live()) {
                    self.request(InFlight::Refresh, SipCommand::Refresh { sdp: sdp::offer(&self.local), secs }, now);
                }
            }
            Timer::Hold => {
                if self.live() && !self.held {
                    let next = self.reoffer(Direction::SendOnly);
                    let sdp = sdp::offer(&next);
                    self.request(
                        InFlight::Hold { next, scheduled: self.auto_resume },
                        SipCommand::Reinvite { sdp },
                        now,
                    );
                }
            }
            Timer::Resume => {
                if self.live() && self.held {
                    let next = self.reoffer(Direction::SendRecv);
                    let sdp = sdp::offer(&next);
                    self.request(InFlight::Resume { next }, SipCommand::Reinvite { sdp }, now);
                }
            }
            Timer::Transfer => {
                if let Some(to) = self.transfer_to.clone().filter(|_| self.live()) {
                    self.request(InFlight::Refer { to: to.clone() }, SipCommand::Refer { target: to }, now);
                }
            }
            Timer::Connect => {
                if let Some(audio) = self.cfg.safe_harbour.clone().filter(|_| self.live()) {
                    self.abandoning = true;
                    self.progress(Progress::SafeHarbour);
                    self.media(MediaCommand::Play { audio });
                }
            }
            Timer::Review => {
                if !self.media_closed {
                    self.media(MediaCommand::StopRecording);
                }
            }
            // The REFER was accepted and no NOTIFY said how it went: it is the far end's now.
            Timer::TransferWait => self.hang_up(HangupReason::Transferred, now),
            Timer::Request => {
                if let Some(f) = self.in_flight.take() {
                    let request = f.request();
                    self.sip_error(format!("{request:?}: no result in {:?}", self.cfg.request_timeout));
                    self.on_result(f, None, None, now);
                }
            }
            Timer::Linger => {
                self.bye_pending = false;
                self.media_closed = true;
                self.try_finish();
            }
        }
    }

    /// Answered and not ending.
    /// Whether the media leg is closed (or given up on).
    pub fn media_closed(&self) -> bool {
        self.media_closed
    }

    fn live(&self) -> bool {
        self.answered.is_some() && !self.hung_up && self.ended.is_none()
    }

    fn reoffer(&self, direction: Direction) -> LocalMedia {
        LocalMedia { direction, version: self.local.version + 1, ..self.local.clone() }
    }

    fn request(&mut self, f: InFlight, cmd: SipCommand, now: Instant) {
        self.in_flight = Some(f);
        self.set(Timer::Request, Some(now + self.cfg.request_timeout));
        self.out.push_back(Output::Sip(cmd));
    }

    fn sip_error(&mut self, e: String) {
        self.rec.sip_error.get_or_insert(e);
    }

    fn progress(&mut self, p: Progress) {
        self.out.push_back(Output::Progress(p));
    }

    fn media(&mut self, m: MediaCommand) {
        self.out.push_back(Output::Media(m));
    }

    pub fn handle_input(&mut self, input: Input, now: Instant) {
        if self.done {
            return;
        }
        match input {
            Input::Invited { call_id } => {
                self.rec.call_id = call_id.clone();
                let rtp_port = self.local.address.port();
                self.progress(Progress::Inviting { call_id, rtp_port });
            }
            Input::InviteFailed { error } => {
                self.sip_error(error);
                self.call.handle_input(sip_call::Input::Failed(Failure::Local), now);
            }
            Input::Sip(ev) => self.on_sip(ev, now),
            Input::Media(ev) => self.on_media(ev, now),
            Input::Command(c) => self.on_command(c, now),
        }
        self.pump(now);
    }

    fn on_command(&mut self, c: Command, now: Instant) {
        match c {
            Command::Hangup => self.hang_up(HangupReason::Command, now),
            Command::Shutdown => self.end(HangupReason::Shutdown, sip_call::Input::Shutdown, now),
            Command::NotifyRefer { status } => {
                if self.live() && self.cfg.honour_refer {
                    self.out.push_back(Output::Sip(SipCommand::NotifyRefer { status }));
                }
            }
            Command::Hold => {
                if self.live() {
                    self.auto_resume = false;
                    self.set(Timer::Hold, Some(now));
                }
            }
            Command::Resume => {
                if self.live() {
                    self.set(Timer::Resume, Some(now));
                }
            }
            Command::Transfer { to } => {
                if self.live() {
                    self.transfer_to = Some(to);
                    self.set(Timer::Transfer, Some(now));
                }
            }
            Command::Bridge { peer, shard } => {
                // Too late once the safe-harbour message has begun: the call is abandoned.
                if self.live() && !self.abandoning {
                    self.set(Timer::Connect, None);
                    self.rec.connect_ms.get_or_insert(ms(now.saturating_duration_since(self.started)));
                    self.media(MediaCommand::Bridge { peer, shard });
                    self.progress(Progress::Connected { peer });
                }
            }
            Command::Unbridge => self.media(MediaCommand::Unbridge),
            Command::HoldWithMusic { music } => {
                if self.live() {
                    self.media(MediaCommand::Hold { music });
                }
            }
            Command::EndHold => {
                if self.live() {
                    self.media(MediaCommand::Resume);
                }
            }
        }
    }

    fn on_sip(&mut self, ev: SipEvent, now: Instant) {
        match ev {
            SipEvent::Provisional { status, sdp } => {
                self.rec.early_media |= sdp.is_some();
                if status >= 180 && self.rec.ring_ms.is_none() {
                    self.rec.ring_ms = Some(ms(now.saturating_duration_since(self.started)));
                    self.progress(Progress::Ringing { status, early_media: sdp.is_some() });
                }
                self.call.handle_input(sip_call::Input::Provisional { status, sdp }, now);
            }
            SipEvent::Final { status, sdp } => {
                let ok = (200..300).contains(&status);
                if ok && self.ended.is_none() && !self.call.is_done() {
                    self.answered = Some(now);
                    self.progress(Progress::Answered { after_ms: ms(now.saturating_duration_since(self.started)) });
                }
                self.call.handle_input(sip_call::Input::Final { status, sdp }, now);
                if ok && self.answered == Some(now) && !self.call.is_done() {
                    self.on_answer(now);
                }
            }
            SipEvent::SessionTimer { secs, we_refresh } => {
                if we_refresh && self.live() {
                    // Refresh at half the interval (RFC 4028 §10).
                    self.refresh_secs = Some(secs);
                    self.set(Timer::Refresh, Some(now + Duration::from_millis(u64::from(secs) * 500)));
                }
            }
            SipEvent::Bye => self.call.handle_input(sip_call::Input::Bye, now),
            SipEvent::Reoffer { id, offer } => {
                // Our policy: answer from our current media (a held call stays held).
                let sdp = match offer {
                    Some(offer) => match sdp::answer(&offer, &self.local) {
                        Ok((answer, n)) => {
                            self.rec.remote_reoffers += 1;
                            self.media(MediaCommand::Follow(n));
                            Some(answer)
                        }
                        Err(e) => {
                            self.rec.sdp_error.get_or_insert(format!("re-offer: {e}"));
                            None
                        }
                    },
                    // No offer: ours goes in the 200 and the ACK carries their answer.
                    None => {
                        self.rec.remote_reoffers += 1;
                        Some(sdp::offer(&self.local))
                    }
                };
                self.out.push_back(Output::Sip(SipCommand::AnswerReoffer { id, sdp }));
            }
            SipEvent::Refer { id, target } if self.cfg.honour_refer => {
                // The agent's own phone: the transfer is ours to make; how it went follows
                // as Command::NotifyRefer.
                self.out.push_back(Output::Sip(SipCommand::AnswerRefer { id, status: 202 }));
                self.progress(Progress::ReferRequested { target });
            }
            SipEvent::Refer { id, target } => {
                // An outbound dialer does not go where the callee sends it.
                self.out.push_back(Output::Sip(SipCommand::AnswerRefer { id, status: 603 }));
                self.progress(Progress::ReferDeclined { target: target.clone() });
                self.rec.refer_declined = Some(target);
            }
            SipEvent::Notify { status } => self.on_notify(status, now),
            SipEvent::Response { request, status, sdp, error } => {
                if let Some(e) = error {
                    self.sip_error(format!("{request:?}: {e}"));
                }
                match request {
                    Request::Bye => {
                        self.bye_pending = false;
                        self.try_finish();
                    }
                    // The CANCEL's outcome is the INVITE's final response.
                    Request::Cancel => {}
                    _ => {
                        if self.in_flight.as_ref().is_some_and(|f| f.request() == request) {
                            if let Some(f) = self.in_flight.take() {
                                self.set(Timer::Request, None);
                                self.on_result(f, status, sdp, now);
                            }
                        }
                    }
                }
            }
            SipEvent::Failed { failure, detail } => {
                self.sip_error(detail);
                self.call.handle_input(sip_call::Input::Failed(failure), now);
            }
            SipEvent::Ended => {
                // The stack has nothing more for this call.
                self.bye_pending = false;
                if !self.call.is_done() {
                    self.sip_error("the SIP dialog ended unexpectedly".into());
                    // Before the answer this is the stack's failure, not the callee's;
                    // after it the dialog is gone as if by BYE.
                    let input = if self.answered.is_some() {
                        sip_call::Input::Bye
                    } else {
                        sip_call::Input::Failed(Failure::Local)
                    };
                    self.call.handle_input(input, now);
                }
                self.try_finish();
            }
        }
    }

    fn on_answer(&mut self, now: Instant) {
        if self.early_analysis && !self.cfg.amd {
            self.stop_amd();
        }
        self.set(Timer::MaxDuration, Some(now + self.cfg.max_duration));
        if let Some(first) = self.cfg.review_sample {
            self.media(MediaCommand::StartRecording);
            self.set(Timer::Review, Some(now + first));
        }
        if let Some(after) = self.cfg.hold_after {
            self.auto_resume = true;
            self.set(Timer::Hold, Some(now + after));
        } else if self.transfer_to.is_some() {
            self.set(Timer::Transfer, Some(now + self.cfg.transfer_after));
        }
    }

    /// The scheduled hold and resume are over (or failed): a scheduled transfer is next.
    fn after_hold_sequence(&mut self, now: Instant) {
        if let (Some(_), Some(answered)) = (&self.transfer_to, self.answered) {
            if self.cfg.transfer_to.is_some() && !self.transfer_accepted && self.rec.refer_status.is_none() {
                self.set(Timer::Transfer, Some((answered + self.cfg.transfer_after).max(now)));
            }
        }
    }

    fn on_result(&mut self, f: InFlight, status: Option<u16>, answer: Option<String>, now: Instant) {
        let ok = is_2xx(status);
        let code = status.unwrap_or(0);
        match f {
            InFlight::Hold { next, scheduled } => {
                self.rec.hold_status = Some(code);
                if ok {
                    self.follow_answer(answer.as_deref(), &next);
                    self.local = next;
                    self.held = true;
                    self.media(MediaCommand::Hold { music: hold_music() });
                }
                self.progress(Progress::Hold { status: code });
                if ok && scheduled {
                    self.set(Timer::Resume, Some(now + self.cfg.hold_for));
                } else if scheduled {
                    self.after_hold_sequence(now);
                }
            }
            InFlight::Resume { next } => {
                self.rec.resume_status = Some(code);
                if ok {
                    self.follow_answer(answer.as_deref(), &next);
                    self.local = next;
                    self.held = false;
                    self.media(MediaCommand::Resume);
                }
                self.progress(Progress::Resume { status: code });
                self.after_hold_sequence(now);
            }
            InFlight::Refresh => {
                if ok {
                    self.rec.session_refreshes += 1;
                    if let Some(secs) = self.refresh_secs {
                        self.set(Timer::Refresh, Some(now + Duration::from_millis(u64::from(secs) * 500)));
                    }
                } else {
                    self.hang_up(HangupReason::SessionRefreshFailed, now);
                }
            }
            InFlight::Refer { to } => {
                self.rec.refer_status = Some(code);
                self.progress(Progress::Transfer { to, status: code });
                if ok {
                    self.transfer_accepted = true;
                    self.set(Timer::TransferWait, Some(now + self.cfg.transfer_wait));
                    if let Some(status) = self.early_notify.take() {
                        self.on_notify(Some(status), now);
                    }
                }
            }
        }
    }

    /// The far end's answer to our re-offer, if it sent one we can use.
    fn follow_answer(&mut self, answer: Option<&str>, next: &LocalMedia) {
        match answer.map(|a| sdp::accept_answer(a, next)) {
            Some(Ok(n)) => self.media(MediaCommand::Follow(n)),
            Some(Err(e)) => {
                self.rec.sdp_error.get_or_insert(format!("re-INVITE answer: {e}"));
            }
            None => {}
        }
    }

    fn on_notify(&mut self, status: Option<u16>, now: Instant) {
        let Some(status) = status.filter(|&s| s >= 200) else { return };
        if !self.transfer_accepted && matches!(self.in_flight, Some(InFlight::Refer { .. })) {
            self.early_notify = Some(status);
            return;
        }
        if !self.transfer_accepted || self.rec.transfer_status.is_some() {
            return;
        }
        self.rec.transfer_status = Some(status);
        self.set(Timer::TransferWait, None);
        self.progress(Progress::TransferResult { status });
        if (200..300).contains(&status) {
            self.hang_up(HangupReason::Transferred, now);
        }
        // A failed transfer leaves the call with us, as it was.
    }

    fn on_media(&mut self, ev: MediaEvent, now: Instant) {
        match ev {
            // A restarted or stopped analysis can leave its events in flight.
            MediaEvent::Media { event: SessionEvent::Amd { run, event }, .. } if run == self.amd_run => {
                self.on_amd(event, now)
            }
            MediaEvent::Media { event: SessionEvent::Amd { .. }, .. } => {}
            MediaEvent::Media { event: SessionEvent::Dtmf { digit, .. }, .. } => {
                self.progress(Progress::Dtmf { digit })
            }
            MediaEvent::MediaTimeout { .. } => {
                if self.live() {
                    self.hang_up(HangupReason::MediaTimeout, now);
                }
            }
            MediaEvent::Closed { .. } if self.media_closed => {}
            MediaEvent::Closed { stats, .. } => {
                self.take_stats(&stats);
                self.media_closed = true;
                if self.ended.is_none() {
                    // We did not ask for it: the shard is gone from under a live call.
                    self.rec.media_error.get_or_insert_with(|| "the media leg closed under a live call".into());
                    self.hang_up(HangupReason::MediaLost, now);
                }
                self.try_finish();
            }
            MediaEvent::Error { error, .. } | MediaEvent::ShardError { error } => {
                self.rec.media_error.get_or_insert(error);
            }
            MediaEvent::Media { event: SessionEvent::NewStream { .. }, .. }
            | MediaEvent::FirstPacket { .. }
            | MediaEvent::Stats { .. } => {}
            // The review recording: kept only for a machine verdict.
            MediaEvent::Recording { wav, .. } if self.cfg.review_sample.is_some() => match self.rec.answered_by {
                Some(AnsweredBy::Machine) => self.progress(Progress::ReviewSample { wav: wav.into() }),
                // Recorded before the verdict: it waits for it.
                None => self.pending_review = Some(wav.into()),
                Some(_) => {}
            },
            MediaEvent::Recording { .. } => {}
            MediaEvent::Relaying { .. } => self.progress(Progress::Relaying),
            MediaEvent::PlayDone { .. } => {
                if self.abandoning && self.live() {
                    self.hang_up(HangupReason::SafeHarbour, now);
                } else if self.playing && self.live() {
                    self.playing = false;
                    self.hang_up(HangupReason::MessagePlayed, now);
                }
            }
        }
    }

    fn take_stats(&mut self, s: &SessionStats) {
        self.rec.rtp_packets = s.packets;
        self.rec.rtp_lost = s.lost;
        self.rec.rtp_jitter_ms = s.jitter_ms;
        self.rec.rtp_malformed = s.malformed;
        self.rec.rtp_strangers = s.strangers;
    }

    fn on_amd(&mut self, e: AmdEvent, now: Instant) {
        let Some(answered) = self.answered else {
            // Before the answer only SIT tones matter; ringback and announcements are no
            // verdict on who will answer, so listening starts over.
            if let AmdEvent::Decided(dec) = e {
                if dec.verdict.answered_by() == AnsweredBy::Sit {
                    self.progress(Progress::EarlySit { media_ms: dec.at.as_ms() });
                    self.call.handle_input(sip_call::Input::Amd(AnsweredBy::Sit), now);
                } else if self.ended.is_none() {
                    self.start_amd();
                }
            }
            return;
        };
        if self.ended.is_some() {
            return;
        }
        match e {
            AmdEvent::Decided(dec) => {
                if self.rec.answered_by.is_some() {
                    return;
                }
                let by = dec.verdict.answered_by();
                let after = ms(now.saturating_duration_since(answered));
                self.rec.answered_by = Some(by);
                if let Some(wav) = self.pending_review.take().filter(|_| by == AnsweredBy::Machine) {
                    self.progress(Progress::ReviewSample { wav });
                }
                self.rec.amd_cause = Some(dec.cause.to_string());
                self.rec.amd_after_answer_ms = Some(after);
                self.progress(Progress::Amd {
                    answered_by: by,
                    cause: dec.cause.to_string(),
                    media_ms: dec.at.as_ms(),
                    after_answer_ms: after,
                });
                self.call.handle_input(sip_call::Input::Amd(by), now);
                if self.call.is_done() {
                    // The SIP call hung up itself (a machine, a fax, silence).
                    self.mark_hung_up(HangupReason::Amd);
                    return;
                }
                if self.cfg.message.is_some() {
                    match by {
                        AnsweredBy::Human | AnsweredBy::NotSure => self.play_message(),
                        AnsweredBy::Machine => self.machine_waiting_for_beep = true,
                        AnsweredBy::Fax | AnsweredBy::Silence | AnsweredBy::Sit => self.hang_up(HangupReason::Amd, now),
                    }
                    return;
                }
                // The 2-second rule covers whoever may be a person.
                if matches!(by, AnsweredBy::Human | AnsweredBy::NotSure) && self.cfg.safe_harbour.is_some() {
                    self.set(Timer::Connect, Some(now + self.cfg.connect_within));
                }
                match (self.cfg.hangup_on, by) {
                    (HangupOn::Any, _) | (HangupOn::Human, AnsweredBy::Human) => self.hang_up(HangupReason::Amd, now),
                    (HangupOn::Machine, AnsweredBy::Machine) => self.machine_waiting_for_beep = true,
                    _ => {}
                }
            }
            AmdEvent::Beep { start, end, hz } => {
                self.rec.beep_hz.get_or_insert(hz);
                self.rec.beep_end_media_ms.get_or_insert(end.as_ms());
                self.progress(Progress::Beep { hz, start_ms: start.as_ms(), end_ms: end.as_ms() });
            }
            AmdEvent::MessageEnd { at } => {
                self.progress(Progress::MessageEnd { at_ms: at.map(|t| t.as_ms()) });
                if self.machine_waiting_for_beep {
                    self.machine_waiting_for_beep = false;
                    if self.cfg.message.is_some() {
                        self.play_message();
                    } else {
                        self.hang_up(HangupReason::MachineMessageEnd, now);
                    }
                }
            }
        }
    }

    fn play_message(&mut self) {
        if let Some(audio) = self.cfg.message.clone() {
            if self.live() && !self.playing {
                self.playing = true;
                self.media(MediaCommand::Play { audio });
            }
        }
    }

    fn start_amd(&mut self) {
        self.amd_run += 1;
        self.media(MediaCommand::StartAmd { params: self.cfg.amd_params, run: self.amd_run });
    }

    fn stop_amd(&mut self) {
        self.amd_run += 1;
        self.media(MediaCommand::StopAmd);
    }

    fn hang_up(&mut self, reason: HangupReason, now: Instant) {
        self.end(reason, sip_call::Input::Hangup, now);
    }

    fn mark_hung_up(&mut self, reason: HangupReason) {
        self.hung_up = true;
        self.rec.hangup_reason = Some(reason);
        self.progress(Progress::HangingUp { reason });
    }

    fn end(&mut self, reason: HangupReason, input: sip_call::Input, now: Instant) {
        if self.hung_up || self.ended.is_some() {
            return;
        }
        self.mark_hung_up(reason);
        self.call.handle_input(input, now);
    }

    /// Carries the SIP call's outputs out.
    fn pump(&mut self, now: Instant) {
        while let Some(o) = self.call.poll_output() {
            match o {
                sip_call::Output::SendInvite { sdp } => self.out.push_back(Output::Invite { sdp }),
                sip_call::Output::SendCancel => {
                    self.cancel_sent = true;
                    self.out.push_back(Output::Sip(SipCommand::Cancel));
                }
                // The stack ACKs 2xx responses itself (and non-2xx inside the transaction).
                sip_call::Output::SendAck => {}
                sip_call::Output::SendBye => {
                    self.bye_pending = true;
                    self.out.push_back(Output::Sip(SipCommand::Bye));
                }
                sip_call::Output::Media(n) => {
                    self.negotiated = Some(n.clone());
                    self.media(MediaCommand::Follow(n));
                    if self.answered.is_none() && !self.early_analysis {
                        // Early media: listen for SIT tones before the answer.
                        self.early_analysis = true;
                        self.start_amd();
                    }
                }
                sip_call::Output::StartAmd => self.start_amd(),
                sip_call::Output::Finished(r) => {
                    self.ended = Some(r);
                    self.timers = [None; TIMERS.len()];
                    self.in_flight = None;
                    self.set(Timer::Linger, Some(now + self.cfg.linger));
                    self.media(MediaCommand::Close);
                }
            }
        }
        if self.live() && !self.keepalive_sent {
            if let Some(n) = &self.negotiated {
                self.keepalive_sent = true;
                let k = self.cfg.keepalive.for_media(n);
                if k != Keepalive::Off {
                    self.media(MediaCommand::Keepalive(k));
                }
            }
        }
        self.try_finish();
    }

    fn try_finish(&mut self) {
        if self.done || self.bye_pending || !self.media_closed {
            return;
        }
        let Some(r) = self.ended.take() else { return };
        self.done = true;
        let rec = &mut self.rec;
        let since = |t: Instant| ms(t.saturating_duration_since(self.started));
        rec.disposition = if self.abandoning { waihu_model::Disposition::Abandoned } else { r.disposition };
        rec.final_status = r.final_status;
        rec.answered_by = rec.answered_by.or(r.answered_by);
        rec.early_sit = r.early_sit;
        rec.answer_ms = r.answered.map(since);
        rec.answered_unix_ms = rec.answer_ms.map(|a| rec.started_unix_ms + a);
        rec.talk_ms = r.answered.map(|a| ms(r.ended.saturating_duration_since(a)));
        rec.duration_ms = since(r.ended);
        rec.ended_unix_ms = rec.started_unix_ms + rec.duration_ms;
        // The far end hung up, or refused the call (a final failure we did not cause).
        let refused = r.final_status.is_some_and(|s| s >= 300) && !self.cancel_sent;
        rec.ended_by = if r.remote_hangup || refused { EndedBy::Remote } else { EndedBy::Local };
        if let Some(e) = r.sdp_error {
            rec.sdp_error.get_or_insert(e.to_string());
        }
        let rec = std::mem::take(&mut self.rec);
        self.out.push_back(Output::Finished(Box::new(rec)));
    }
}

/// Music on hold: a soft two-tone chime, 8 kHz, looped by the shard. Built once; every
/// hold shares the same buffer.
pub fn hold_music() -> Arc<[i16]> {
    static MUSIC: OnceLock<Arc<[i16]>> = OnceLock::new();
    MUSIC
        .get_or_init(|| {
            let note = |hz: f64, n: usize| {
                (0..n).map(move |i| (2500.0 * (2.0 * std::f64::consts::PI * hz * i as f64 / 8000.0).sin()) as i16)
            };
            note(523.25, 4000).chain(note(659.25, 4000)).chain(std::iter::repeat_n(0, 8000)).collect()
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hangup_on_parses_its_labels() {
        for h in HangupOn::ALL {
            assert_eq!(h.to_string().parse::<HangupOn>(), Ok(h));
        }
        assert_eq!("MACHINE".parse::<HangupOn>(), Ok(HangupOn::Machine));
        assert!("sometimes".parse::<HangupOn>().is_err());
    }

    #[test]
    fn hold_music_is_built_once() {
        assert!(Arc::ptr_eq(&hold_music(), &hold_music()));
        assert_eq!(hold_music().len(), 16_000);
    }
}
