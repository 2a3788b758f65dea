//! The media plane's IO shell: one glommio executor per shard (pinned to a core when
//! asked), owning its sessions' UDP sockets, analysis, playback and bridges. Nothing is
//! shared between shards; both legs of a bridge live on the same shard. The control plane
//! talks to a shard over flume channels: [`Command`]s in, [`Event`]s out. Media logic lives
//! in the pure [`crate::session`] and [`crate::sender`]; this module receives and sends
//! datagrams, keeps time and allocates ports.
//!
//! This is the only place in the engine that reads the clock.
#![allow(clippy::disallowed_methods)]

mod batch;
mod demux;
mod fasthash;
mod ports;

use crate::amd::AmdParams;
use crate::sender::RtpSender;
use crate::session::{Frame, MediaSession, PayloadMap, SessionEvent, SessionStats};
use crate::source::{Admit, Latch, SourceFilter};
use crate::wav;
use batch::{Batch, Poller};
use fasthash::FastMap;
use glommio::timer::Timer;
use glommio::{LocalExecutorBuilder, Placement};
use ports::PortPool;
use std::cell::{Cell, RefCell};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The control plane's name for a call leg.
pub type CallId = u64;

#[derive(Debug, Clone)]
pub struct ShardConfig {
    /// Core to pin the executor to; `None` leaves it unbound.
    pub cpu: Option<usize>,
    pub bind_ip: IpAddr,
    /// RTP ports this shard allocates from (even ports only; RTCP is muxed).
    pub ports: Range<u16>,
    /// glommio's registered IO buffer. RLIMIT_MEMLOCK is 8 MiB here and glommio charges
    /// it three times, so stay at or below 2.5 MiB when not root.
    pub io_memory: usize,
    /// SO_RCVBUF per socket (the 212 KB default drops bursts).
    pub recv_buffer: usize,
    /// No RTP for this long after the first packet raises [`Event::MediaTimeout`].
    pub media_timeout: Duration,
    /// Periodic [`Event::Stats`] per session; `None` for none.
    pub stats_interval: Option<Duration>,
    /// Receiver reports to each far end (RFC 3550 recommends about 5 s).
    pub rtcp_interval: Duration,
    /// Shared-port mode: every session of the shard uses this one UDP port, and packets are
    /// told apart by source address and SSRC. `None` (the default): one port per session,
    /// as carriers expect.
    pub shared_port: Option<u16>,
}

impl Default for ShardConfig {
    fn default() -> Self {
        ShardConfig {
            cpu: None,
            bind_ip: IpAddr::from([127, 0, 0, 1]),
            ports: 20_000..30_000,
            io_memory: 2 << 20,
            recv_buffer: 1 << 20,
            media_timeout: Duration::from_secs(10),
            stats_interval: None,
            rtcp_interval: Duration::from_secs(5),
            shared_port: None,
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum WorkerError {
    #[error("no free RTP port in this shard's range")]
    NoPorts,
    #[error("call {0} already has a session")]
    Exists(CallId),
    #[error("no session for call {0}")]
    NoSession(CallId),
    #[error("socket: {0}")]
    Io(String),
    #[error("session: {0}")]
    Session(String),
    #[error("the shard is gone")]
    ShardGone,
}

/// What the control plane asks of a shard.
#[derive(Debug)]
pub enum Command {
    /// Open a session on a socket the control side has already bound (socket creation
    /// can take milliseconds in the kernel; it must not stall the shard's media). Made by
    /// [`Shard::allocate`] and [`Shard::begin_allocate`]. The reply carries the local RTP
    /// address for the SDP.
    Allocate {
        call: CallId,
        payloads: PayloadMap,
        /// None in shared-port mode.
        socket: Option<UdpSocket>,
        port: u16,
        /// Where this session's events go; None: the shard's own channel.
        owner: Option<flume::Sender<Event>>,
        reply: flume::Sender<Result<SocketAddr, WorkerError>>,
    },
    /// The far end's address from its SDP. Only datagrams from exactly there are heard
    /// (strict source); with `symmetric` (NAT), the first one from the signalled IP latches
    /// the leg, once, to its exact source. Strangers are counted and dropped.
    SetRemote {
        call: CallId,
        remote: SocketAddr,
        symmetric: bool,
    },
    /// Whether the far end accepted `a=rtcp-mux` (the default until told otherwise). When
    /// it did not, RTCP goes to its RTP port + 1 (RFC 5761 §5.1.3 forbids muxing then).
    SetRtcpMux {
        call: CallId,
        mux: bool,
    },
    /// The payload types the SDP exchange settled on (before or after SetRemote): what
    /// we send switches to the first codec of the new map.
    SetPayloads {
        call: CallId,
        payloads: PayloadMap,
    },
    StartAmd {
        call: CallId,
        params: AmdParams,
    },
    StopAmd {
        call: CallId,
    },
    /// Detect DTMF sent as audio (RFC 4733 events are always reported).
    DetectInbandDtmf {
        call: CallId,
        on: bool,
    },
    /// Play 8 kHz PCM to the far end, paced at 20 ms (a prompt, a voicemail drop, music on
    /// hold). Replaces what was playing. [`Event::PlayDone`] when a non-looped one ends.
    Play {
        call: CallId,
        audio: Arc<[i16]>,
        looped: bool,
    },
    StopPlay {
        call: CallId,
    },
    /// Connect two legs of this shard: each hears the other. Same codec: payloads are
    /// relayed unchanged; different codecs: transcoded.
    Bridge {
        a: CallId,
        b: CallId,
    },
    /// Disconnect a leg from its bridge (both directions).
    Unbridge {
        call: CallId,
    },
    /// The leg hears `music` (looped) and its bridged peer hears nothing, until Resume.
    Hold {
        call: CallId,
        music: Arc<[i16]>,
    },
    Resume {
        call: CallId,
    },
    /// Record the leg: left channel what it sends us, right channel what its bridged peer
    /// sends. [`Event::Recording`] carries the stereo WAV when it stops or the leg closes.
    StartRecording {
        call: CallId,
    },
    StopRecording {
        call: CallId,
    },
    Close {
        call: CallId,
    },
    Shutdown,
}

/// What a shard reports.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    FirstPacket {
        call: CallId,
        from: SocketAddr,
    },
    Media {
        call: CallId,
        event: SessionEvent,
    },
    MediaTimeout {
        call: CallId,
        idle: Duration,
    },
    Stats {
        call: CallId,
        stats: SessionStats,
    },
    Closed {
        call: CallId,
        stats: SessionStats,
    },
    PlayDone {
        call: CallId,
    },
    /// A finished recording: stereo 16-bit 8 kHz WAV (this leg left, its peer right).
    Recording {
        call: CallId,
        wav: Vec<u8>,
    },
    /// A command for this call failed (the reply channel, where there is one, says so
    /// too).
    Error {
        call: CallId,
        error: String,
    },
    /// The shard itself failed (it could not start its poller or shared port).
    ShardError {
        error: String,
    },
}

/// The owner's bounded channel size: a call's events come a few per second at most.
pub const OWNER_CHANNEL: usize = 256;

/// Where one session's events go: its owner's bounded channel ([`OWNER_CHANNEL`]; make it
/// with [`owner_channel`]). Overflow policy: the shard never blocks. An event that finds the
/// channel full is dropped and counted in the leg's `SessionStats::events_dropped`, except
/// [`Event::Closed`] and [`Event::Recording`], which wait for room on a task of their own
/// so that the owner always learns the leg is gone.
struct Owner {
    tx: flume::Sender<Event>,
    dropped: Cell<u64>,
}

/// A channel for [`Shard::begin_allocate_for`].
pub fn owner_channel() -> (flume::Sender<Event>, flume::Receiver<Event>) {
    flume::bounded(OWNER_CHANNEL)
}

struct Session {
    state: Rc<RefCell<SessionState>>,
    socket: Rc<UdpSocket>,
    /// The socket's fd, kept in the map entry: the receive loop reads it without touching
    /// the socket's own allocation (a cache miss per ready socket at 4,000 sessions).
    fd: std::os::fd::RawFd,
    port: u16,
}

/// `repr(C)`: the fields every received packet touches come first, next to the RefCell
/// flag, followed by the session's own hot fields (`MediaSession` is laid out the same way).
#[repr(C)]
struct SessionState {
    /// Where we send: the latched source, else the signalled address (`source.remote()`).
    remote: Option<SocketAddr>,
    source: SourceFilter,
    /// RTCP shares the RTP port (the far end accepted rtcp-mux).
    rtcp_mux: bool,
    timeout_reported: bool,
    held: bool,
    first_packet: Option<Instant>,
    last_packet: Option<Instant>,
    /// RTP clock origin for arrival times (jitter).
    origin: Instant,
    bridge: Option<CallId>,
    recording: Option<Recording>,
    media: MediaSession,
    sender: Option<RtpSender>,
    play: Option<Playback>,
    /// When this session's next RTCP report is due. Each session has its own phase, so a
    /// shard's reports spread over the interval instead of leaving in one burst.
    next_rtcp: Instant,
    owner: Option<Owner>,
}

impl SessionState {
    /// Sends one of this leg's events to its owner, or to the shard's channel.
    fn emit(&self, shard: &flume::Sender<Event>, ev: Event) {
        let Some(o) = &self.owner else {
            let _ = shard.send(ev);
            return;
        };
        match o.tx.try_send(ev) {
            Ok(()) | Err(flume::TrySendError::Disconnected(_)) => {}
            Err(flume::TrySendError::Full(ev @ (Event::Closed { .. } | Event::Recording { .. }))) => {
                let tx = o.tx.clone();
                glommio::spawn_local(async move {
                    let _ = tx.send_async(ev).await;
                })
                .detach();
            }
            Err(flume::TrySendError::Full(_)) => o.dropped.set(o.dropped.get() + 1),
        }
    }
}

struct Playback {
    audio: Arc<[i16]>,
    pos: usize,
    looped: bool,
}

#[derive(Default)]
struct Recording {
    left: Vec<i16>,
    right: Vec<i16>,
}

impl Recording {
    fn into_wav(self) -> Vec<u8> {
        let n = self.left.len().max(self.right.len());
        let at = |v: &[i16], i: usize| v.get(i).copied().unwrap_or(0);
        let interleaved: Vec<i16> = (0..n).flat_map(|i| [at(&self.left, i), at(&self.right, i)]).collect();
        wav::write_pcm16_stereo(8000, &interleaved)
    }
}

thread_local! {
    static IN_SHARD_CODE: Cell<bool> = const { Cell::new(false) };
}

/// Whether this thread is running the shard's own receive, relay, playback or timer code
/// right now, as opposed to glommio's reactor or command handling. For allocation audits:
/// a counting allocator can charge allocations to the media path only
/// (tests/tests/shard_alloc.rs).
pub fn in_shard_code() -> bool {
    IN_SHARD_CODE.with(Cell::get)
}

/// Marks a stretch of shard code for [`in_shard_code`]; never held across an `.await`.
struct ShardCode;

impl ShardCode {
    fn enter() -> ShardCode {
        IN_SHARD_CODE.with(|c| c.set(true));
        ShardCode
    }
}

impl Drop for ShardCode {
    fn drop(&mut self) {
        IN_SHARD_CODE.with(|c| c.set(false));
    }
}

/// Samples per paced packet (20 ms at 8 kHz).
const PTIME_SAMPLES: usize = 160;

type Sessions = Rc<RefCell<FastMap<CallId, Session>>>;

/// A running shard: send commands, receive events.
#[derive(Debug)]
pub struct Shard {
    pub commands: flume::Sender<Command>,
    pub events: flume::Receiver<Event>,
    join: Option<glommio::ExecutorJoinHandle<()>>,
    /// The shard's ports: taken here when a socket is bound, given back by the shard when
    /// the session closes.
    pool: Arc<Mutex<PortPool>>,
    bind_ip: IpAddr,
    recv_buffer: usize,
    shared: bool,
}

impl Shard {
    /// Starts the shard's executor thread.
    pub fn spawn(index: usize, cfg: ShardConfig) -> Result<Shard, WorkerError> {
        let (ev_tx, ev_rx) = flume::unbounded();
        Shard::spawn_with_events(index, cfg, ev_tx, ev_rx)
    }

    /// Starts a shard that reports on a channel it may share with other shards.
    fn spawn_with_events(
        index: usize,
        cfg: ShardConfig,
        ev_tx: flume::Sender<Event>,
        ev_rx: flume::Receiver<Event>,
    ) -> Result<Shard, WorkerError> {
        let (cmd_tx, cmd_rx) = flume::unbounded();
        let placement = cfg.cpu.map_or(Placement::Unbound, Placement::Fixed);
        let pool = Arc::new(Mutex::new(PortPool::new(cfg.ports.clone())));
        let (bind_ip, recv_buffer, shared) = (cfg.bind_ip, cfg.recv_buffer, cfg.shared_port.is_some());
        let shard_pool = pool.clone();
        let join = LocalExecutorBuilder::new(placement)
            .name(&format!("waihu-media-{index}"))
            .io_memory(cfg.io_memory)
            // The receive task lets the others in every millisecond (see `receive`); a
            // 2 ms preemption timer bounds how long it can hold them off otherwise.
            .preempt_timer(Duration::from_millis(2))
            // When the receive task suspends for a moment, spin instead of parking: a parked
            // executor here woke up as much as 15 ms late (measured), holding up every packet.
            .spin_before_park(Duration::from_micros(100))
            .spawn(move || run(cfg, shard_pool, cmd_rx, ev_tx))
            .map_err(|e| WorkerError::Io(e.to_string()))?;
        Ok(Shard { commands: cmd_tx, events: ev_rx, join: Some(join), pool, bind_ip, recv_buffer, shared })
    }

    /// Allocates a session and waits for its local address.
    pub fn allocate(&self, call: CallId, payloads: PayloadMap) -> Result<SocketAddr, WorkerError> {
        self.begin_allocate(call, payloads)?.recv().map_err(|_| WorkerError::ShardGone)?
    }

    /// Binds the session's socket on the calling thread and hands it to the shard; the
    /// returned channel brings the local address (await it with `recv_async`). The
    /// session's events go to the shard's channel.
    pub fn begin_allocate(
        &self,
        call: CallId,
        payloads: PayloadMap,
    ) -> Result<flume::Receiver<Result<SocketAddr, WorkerError>>, WorkerError> {
        self.begin_allocate_with(call, payloads, None)
    }

    /// As [`Shard::begin_allocate`], with the session's events going to `owner` (a
    /// channel from [`owner_channel`]; see [`OWNER_CHANNEL`] for what happens when it is
    /// full).
    pub fn begin_allocate_for(
        &self,
        call: CallId,
        payloads: PayloadMap,
        owner: flume::Sender<Event>,
    ) -> Result<flume::Receiver<Result<SocketAddr, WorkerError>>, WorkerError> {
        self.begin_allocate_with(call, payloads, Some(owner))
    }

    fn begin_allocate_with(
        &self,
        call: CallId,
        payloads: PayloadMap,
        owner: Option<flume::Sender<Event>>,
    ) -> Result<flume::Receiver<Result<SocketAddr, WorkerError>>, WorkerError> {
        let (socket, port) = if self.shared {
            (None, 0)
        } else {
            let (s, p) = bind(self.bind_ip, self.recv_buffer, &self.pool)?;
            (Some(s), p)
        };
        let (tx, rx) = flume::bounded(1);
        if let Err(flume::SendError(cmd)) =
            self.commands.send(Command::Allocate { call, payloads, socket, port, owner, reply: tx })
        {
            if let Command::Allocate { port, socket: Some(_), .. } = cmd {
                release(&self.pool, port);
            }
            return Err(WorkerError::ShardGone);
        }
        Ok(rx)
    }

    pub fn send(&self, cmd: Command) -> Result<(), WorkerError> {
        self.commands.send(cmd).map_err(|_| WorkerError::ShardGone)
    }

    /// Stops the shard and waits for its thread.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(j) = self.join.take() {
            let _ = self.commands.send(Command::Shutdown);
            let _ = j.join();
        }
    }
}

/// Several shards, one per core: the port range is split between them. Events of legs
/// allocated without an owner, and shard-level errors, arrive on one channel. Call ids are the control plane's and unique across shards; both
/// legs of a bridge must be allocated on the same shard.
#[derive(Debug)]
pub struct MediaPlane {
    shards: Vec<Shard>,
    pub events: flume::Receiver<Event>,
}

impl MediaPlane {
    /// Starts `count` shards. `cfg.ports` is split between them; with `cfg.cpu` set to
    /// `Some(first)`, shard `i` is pinned to core `first + i`.
    pub fn spawn(count: usize, cfg: ShardConfig) -> Result<MediaPlane, WorkerError> {
        let ranges = ports::split(cfg.ports.clone(), count);
        if ranges.is_empty() {
            return Err(WorkerError::Io(format!("port range {:?} cannot be split between {count} shards", cfg.ports)));
        }
        let (ev_tx, ev_rx) = flume::unbounded();
        let mut shards = Vec::with_capacity(count);
        for (i, ports) in ranges.into_iter().enumerate() {
            let shard_cfg = ShardConfig { cpu: cfg.cpu.map(|c| c + i), ports, ..cfg.clone() };
            shards.push(Shard::spawn_with_events(i, shard_cfg, ev_tx.clone(), ev_rx.clone())?);
        }
        Ok(MediaPlane { shards, events: ev_rx })
    }

    pub fn len(&self) -> usize {
        self.shards.len()
    }

    pub fn is_empty(&self) -> bool {
        self.shards.is_empty()
    }

    pub fn shard(&self, index: usize) -> Option<&Shard> {
        self.shards.get(index)
    }

    /// Allocates a leg on shard `shard` (beside another leg, for a bridge), its events
    /// going to `owner`. See [`Shard::begin_allocate_for`].
    pub fn begin_allocate_on(
        &self,
        shard: usize,
        call: CallId,
        payloads: PayloadMap,
        owner: flume::Sender<Event>,
    ) -> Result<flume::Receiver<Result<SocketAddr, WorkerError>>, WorkerError> {
        self.shard(shard).ok_or(WorkerError::ShardGone)?.begin_allocate_for(call, payloads, owner)
    }

    /// The shard a new call goes to when nothing ties it to another leg.
    pub fn shard_for(&self, call: CallId) -> usize {
        (call % self.shards.len().max(1) as u64) as usize
    }

    /// Stops every shard and waits for their threads.
    pub fn shutdown(self) {
        for s in self.shards {
            s.shutdown();
        }
    }
}

impl Drop for Shard {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn run(
    cfg: ShardConfig,
    pool: Arc<Mutex<PortPool>>,
    commands: flume::Receiver<Command>,
    events: flume::Sender<Event>,
) {
    let sessions: Sessions = Rc::new(RefCell::new(FastMap::default()));
    let poller = match Poller::new() {
        Ok(p) => Rc::new(RefCell::new(p)),
        Err(e) => {
            let _ = events.send(Event::ShardError { error: format!("epoll: {e}") });
            return;
        }
    };
    let shared = match cfg.shared_port.map(|port| open_shared(&cfg, port, &poller.borrow())).transpose() {
        Ok(s) => s.map(Rc::new),
        Err(e) => {
            let _ = events.send(Event::ShardError { error: format!("shared port: {e}") });
            return;
        }
    };
    let ticker = glommio::spawn_local(tick(cfg.clone(), sessions.clone(), events.clone()));
    let pacer = glommio::spawn_local(pace(cfg.clone(), sessions.clone(), events.clone()));
    let receiver = glommio::spawn_local(receive(
        poller.clone(),
        sessions.clone(),
        events.clone(),
        shared.clone(),
        commands.clone(),
    ));
    let mut handled: u32 = 0;
    while let Ok(cmd) = commands.recv_async().await {
        if let Command::Shutdown = cmd {
            break;
        }
        handle(&cfg, &pool, &poller, shared.as_deref(), &sessions, &events, cmd);
        // A burst of commands (thousands of StartAmd at once) must not hold up the media:
        // let the receive and pacer tasks run every few commands.
        handled = handled.wrapping_add(1);
        if handled % 32 == 0 {
            glommio::executor().yield_now().await;
        }
    }
    drop(ticker);
    drop(pacer);
    drop(receiver);
    sessions.borrow_mut().clear();
}

fn handle(
    cfg: &ShardConfig,
    pool: &Mutex<PortPool>,
    poller: &RefCell<Poller>,
    shared: Option<&SharedPort>,
    sessions: &Sessions,
    events: &flume::Sender<Event>,
    cmd: Command,
) {
    let fail = |call: CallId, e: WorkerError| {
        let ev = Event::Error { call, error: e.to_string() };
        match sessions.borrow().get(&call) {
            Some(s) => s.state.borrow().emit(events, ev),
            None => {
                let _ = events.send(ev);
            }
        }
    };
    let r = match cmd {
        Command::Allocate { call, payloads, socket, port, owner, reply } => {
            let owner = owner.map(|tx| Owner { tx, dropped: Cell::new(0) });
            let r = match (socket, shared) {
                (Some(socket), _) => {
                    let r =
                        allocate(cfg, Some(&poller.borrow()), sessions, call, payloads, Rc::new(socket), port, owner);
                    if r.is_err() {
                        release(pool, port);
                    }
                    r
                }
                (None, Some(sp)) => allocate(cfg, None, sessions, call, payloads, sp.socket.clone(), 0, owner),
                (None, None) => Err(WorkerError::Io("no socket given and no shared port".into())),
            };
            let _ = reply.send(r);
            Ok(())
        }
        Command::SetRemote { call, remote, symmetric } => with_session(sessions, call, |s| {
            if let Some(sp) = shared {
                sp.demux.borrow_mut().expect(call, remote, symmetric);
            }
            s.source.signal(remote, if symmetric { Latch::Nat } else { Latch::Strict });
            s.remote = s.source.remote();
            if s.sender.is_none() {
                s.sender = Some(make_sender(call, &s.media)?);
            }
            Ok(())
        }),
        Command::SetRtcpMux { call, mux } => with_session(sessions, call, |s| {
            s.rtcp_mux = mux;
            Ok(())
        }),
        Command::SetPayloads { call, payloads } => with_session(sessions, call, |s| {
            s.media.set_payloads(payloads).map_err(|e| WorkerError::Session(e.to_string()))?;
            if s.sender.is_some() {
                s.sender = Some(make_sender(call, &s.media)?);
            }
            Ok(())
        }),
        Command::StartAmd { call, params } => with_session(sessions, call, |s| {
            s.media.start_amd(params);
            Ok(())
        }),
        Command::StopAmd { call } => with_session(sessions, call, |s| {
            s.media.stop_amd();
            Ok(())
        }),
        Command::DetectInbandDtmf { call, on } => with_session(sessions, call, |s| {
            s.media.detect_inband_dtmf(on);
            Ok(())
        }),
        Command::Play { call, audio, looped } => with_session(sessions, call, |s| {
            s.play = Some(Playback { audio, pos: 0, looped });
            if let Some(tx) = s.sender.as_mut() {
                tx.mark();
            }
            Ok(())
        }),
        Command::StopPlay { call } => with_session(sessions, call, |s| {
            s.play = None;
            Ok(())
        }),
        Command::Bridge { a, b } => bridge(sessions, &mut poller.borrow_mut(), a, b),
        Command::Unbridge { call } => {
            unbridge(sessions, &mut poller.borrow_mut(), call);
            Ok(())
        }
        Command::Hold { call, music } => with_session(sessions, call, |s| {
            s.held = true;
            s.play = Some(Playback { audio: music, pos: 0, looped: true });
            Ok(())
        }),
        Command::Resume { call } => with_session(sessions, call, |s| {
            s.held = false;
            s.play = None;
            Ok(())
        }),
        Command::StartRecording { call } => with_session(sessions, call, |s| {
            s.recording = Some(Recording::default());
            Ok(())
        }),
        Command::StopRecording { call } => {
            let map = sessions.borrow();
            let st = map.get(&call).map(|s| &s.state);
            let rec = st.map(|s| s.borrow_mut().recording.take());
            match (rec, st) {
                (Some(Some(r)), Some(st)) => {
                    st.borrow().emit(events, Event::Recording { call, wav: r.into_wav() });
                    Ok(())
                }
                (Some(None), _) => Err(WorkerError::Session(format!("call {call} is not recording"))),
                _ => Err(WorkerError::NoSession(call)),
            }
        }
        Command::Close { call } => {
            unbridge(sessions, &mut poller.borrow_mut(), call);
            let removed = sessions.borrow_mut().remove(&call);
            match removed {
                Some(s) => {
                    match shared {
                        Some(sp) if s.port == 0 => sp.demux.borrow_mut().forget(call),
                        _ => poller.borrow_mut().remove(s.fd),
                    }
                    let mut st = s.state.borrow_mut();
                    if let Some(r) = st.recording.take() {
                        st.emit(events, Event::Recording { call, wav: r.into_wav() });
                    }
                    if s.port != 0 {
                        release(pool, s.port);
                    }
                    st.emit(events, Event::Closed { call, stats: leg_stats(&st) });
                    Ok(())
                }
                None => Err(WorkerError::NoSession(call)),
            }
        }
        Command::Shutdown => Ok(()),
    };
    if let Err(e) = r {
        let call = match &e {
            WorkerError::NoSession(c) | WorkerError::Exists(c) => *c,
            _ => 0,
        };
        fail(call, e);
    }
}

/// The leg's statistics: the session's, plus the strangers its source filter dropped.
fn leg_stats(st: &SessionState) -> SessionStats {
    let events_dropped = st.owner.as_ref().map_or(0, |o| o.dropped.get());
    SessionStats { strangers: st.source.strangers(), events_dropped, ..st.media.stats() }
}

/// A sender for the session's first negotiated codec, with a per-stream SSRC, first
/// sequence number and timestamp (RFC 3550 §5.1).
fn make_sender(call: CallId, media: &MediaSession) -> Result<RtpSender, WorkerError> {
    let (codec, pt) = media.send_codec().ok_or(WorkerError::Session("no audio codec".into()))?;
    let seed = call.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    RtpSender::new(codec, pt, (seed >> 32) as u32, seed as u16, (seed >> 16) as u32)
        .map_err(|e| WorkerError::Session(e.to_string()))
}

fn with_session(
    sessions: &Sessions,
    call: CallId,
    f: impl FnOnce(&mut SessionState) -> Result<(), WorkerError>,
) -> Result<(), WorkerError> {
    match sessions.borrow().get(&call) {
        Some(s) => f(&mut s.state.borrow_mut()),
        None => Err(WorkerError::NoSession(call)),
    }
}

/// Bridges two legs; their sockets (per-call ports) join the poller's hot set.
fn bridge(sessions: &Sessions, poller: &mut Poller, a: CallId, b: CallId) -> Result<(), WorkerError> {
    if a == b {
        return Err(WorkerError::Session("cannot bridge a leg to itself".into()));
    }
    {
        let map = sessions.borrow();
        for c in [a, b] {
            if !map.contains_key(&c) {
                return Err(WorkerError::NoSession(c));
            }
        }
    }
    unbridge(sessions, poller, a);
    unbridge(sessions, poller, b);
    let map = sessions.borrow();
    for (me, peer) in [(a, b), (b, a)] {
        if let Some(s) = map.get(&me) {
            s.state.borrow_mut().bridge = Some(peer);
            if s.port != 0 {
                poller.promote(s.fd, me);
            }
        }
    }
    Ok(())
}

fn unbridge(sessions: &Sessions, poller: &mut Poller, call: CallId) {
    let map = sessions.borrow();
    let me = map.get(&call);
    let peer = me.and_then(|s| s.state.borrow_mut().bridge.take());
    let peer = peer.and_then(|p| map.get(&p));
    if let Some(p) = peer {
        p.state.borrow_mut().bridge = None;
    }
    for s in [me, peer].into_iter().flatten() {
        if s.port != 0 {
            poller.demote(s.fd);
        }
    }
}

#[allow(clippy::too_many_arguments)]
/// Registers a bound socket as session `call`. On error the caller gives the port back.
/// `poller` is None for the shared socket, which is registered once for the whole shard.
fn allocate(
    cfg: &ShardConfig,
    poller: Option<&Poller>,
    sessions: &Sessions,
    call: CallId,
    payloads: PayloadMap,
    socket: Rc<UdpSocket>,
    port: u16,
    owner: Option<Owner>,
) -> Result<SocketAddr, WorkerError> {
    if sessions.borrow().contains_key(&call) {
        return Err(WorkerError::Exists(call));
    }
    let media = MediaSession::new(payloads).map_err(|e| WorkerError::Session(e.to_string()))?;
    let local = socket.local_addr().map_err(|e| WorkerError::Io(e.to_string()))?;
    if let Some(poller) = poller {
        poller.add(socket.as_raw_fd(), call).map_err(|e| WorkerError::Io(e.to_string()))?;
    }
    let state = Rc::new(RefCell::new(SessionState {
        media,
        sender: None,
        remote: None,
        source: SourceFilter::default(),
        rtcp_mux: true,
        first_packet: None,
        last_packet: None,
        timeout_reported: false,
        origin: Instant::now(),
        bridge: None,
        held: false,
        play: None,
        recording: None,
        next_rtcp: Instant::now() + rtcp_phase(cfg.rtcp_interval, call),
        owner,
    }));
    let fd = socket.as_raw_fd();
    sessions.borrow_mut().insert(call, Session { state, socket, fd, port });
    Ok(local)
}

/// Shared-port mode's one socket and its demultiplexer.
struct SharedPort {
    socket: Rc<UdpSocket>,
    demux: RefCell<demux::Demux>,
    relays: RefCell<batch::SendBatch>,
}

fn force_recv_buffer(sock: &socket2::Socket, bytes: usize) -> bool {
    let v = bytes.min(i32::MAX as usize) as libc::c_int;
    // SAFETY: a plain setsockopt on a socket we own, with a correctly sized int.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        ) == 0
    }
}

/// Poller token of the shared socket (session tokens are call ids).
const SHARED_TOKEN: u64 = u64::MAX;

fn open_shared(cfg: &ShardConfig, port: u16, poller: &Poller) -> std::io::Result<SharedPort> {
    let domain = if cfg.bind_ip.is_ipv4() { socket2::Domain::IPV4 } else { socket2::Domain::IPV6 };
    let sock = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    // Every stream of the shard arrives here: a deep buffer. SO_RCVBUFFORCE passes
    // net.core.rmem_max when we may (CAP_NET_ADMIN); otherwise rmem_max caps it.
    let want = cfg.recv_buffer.max(32 << 20);
    if !force_recv_buffer(&sock, want) {
        let _ = sock.set_recv_buffer_size(want);
    }
    sock.bind(&SocketAddr::new(cfg.bind_ip, port).into())?;
    sock.set_nonblocking(true)?;
    let socket: UdpSocket = sock.into();
    poller.add(socket.as_raw_fd(), SHARED_TOKEN)?;
    Ok(SharedPort {
        socket: Rc::new(socket),
        demux: RefCell::new(demux::Demux::default()),
        relays: RefCell::new(batch::SendBatch::new()),
    })
}

fn release(pool: &Mutex<PortPool>, port: u16) {
    if let Ok(mut p) = pool.lock() {
        p.release(port);
    }
}

/// Binds the next free port of the pool, with an explicit receive buffer. Runs on the
/// control side, not on the shard.
fn bind(ip: IpAddr, recv_buffer: usize, pool: &Mutex<PortPool>) -> Result<(UdpSocket, u16), WorkerError> {
    let domain = if ip.is_ipv4() { socket2::Domain::IPV4 } else { socket2::Domain::IPV6 };
    let tries = pool.lock().map(|p| p.len()).unwrap_or(0);
    for _ in 0..tries {
        let Some(port) = pool.lock().ok().and_then(|mut p| p.take()) else { break };
        let sock = match socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP)) {
            Ok(s) => s,
            Err(e) => {
                release(pool, port);
                return Err(WorkerError::Io(e.to_string()));
            }
        };
        let _ = sock.set_recv_buffer_size(recv_buffer);
        if sock.bind(&SocketAddr::new(ip, port).into()).is_ok() && sock.set_nonblocking(true).is_ok() {
            return Ok((sock.into(), port));
        }
        // In use by someone else: try it again later.
        release(pool, port);
    }
    Err(WorkerError::NoPorts)
}

/// Drains every ready session socket with recvmmsg, then yields; blocks in epoll (at
/// most [`IDLE_BLOCK_MS`]) when nothing is ready. A pass over up to 256 ready sockets
/// takes about 1.5 ms at full load, so bridged legs (the poller's
/// hot set) are served first and again every [`HOT_EVERY`] sockets: relayed audio waits
/// for at most a few sockets' work, not for the whole pass.
async fn receive(
    poller: Rc<RefCell<Poller>>,
    sessions: Sessions,
    events: flume::Sender<Event>,
    shared: Option<Rc<SharedPort>>,
    commands: flume::Receiver<Command>,
) {
    let mut batch = Batch::new();
    // Packets for bridged peers, built while sessions are borrowed, sent after.
    let mut outgoing: Vec<Vec<u8>> = Vec::new();
    let mut ready: Vec<u64> = Vec::with_capacity(256);
    let mut hot: Vec<u64> = Vec::with_capacity(256);
    // One timer, re-armed: a fresh `sleep` per idle wake-up would allocate.
    let mut timer = Timer::new(Duration::from_micros(1));
    let mut rx = Receiver { sessions: &sessions, events: &events, shared: shared.as_deref(), batch: &mut batch };
    let mut suspended = Instant::now();
    loop {
        ready.clear();
        ready.extend(poller.borrow_mut().ready().iter().map(|e| e.u64));
        if ready.is_empty() {
            // Sleep in epoll itself: the kernel wakes the thread as a packet lands. A glommio
            // timer here (0.5 ms) woke up late by a millisecond or more in this VM, and every
            // packet arriving meanwhile waited for it (docs/benchmarks.md).
            ready.extend(poller.borrow_mut().ready_within(IDLE_BLOCK_MS).iter().map(|e| e.u64));
        }
        if !commands.is_empty() {
            // Commands sent before these packets (start AMD, bridge, ...) apply to them.
            suspend(&mut timer).await;
            suspended = Instant::now();
        }
        let audit = ShardCode::enter();
        let serve_hot = poller.borrow().has_hot();
        for (i, &call) in ready.iter().enumerate() {
            if serve_hot && i % HOT_EVERY == 0 {
                hot.clear();
                hot.extend(poller.borrow_mut().hot_ready().iter().map(|e| e.u64));
                for &h in &hot {
                    rx.drain(h, &mut outgoing);
                }
            }
            rx.drain(call, &mut outgoing);
        }
        drop(audit);
        // glommio polls its reactor (commands from other threads, the pacer's and the
        // ticker's timers) only when the running queue empties or its preemption timer
        // fires. So at least every millisecond, and whenever a whole idle block passed,
        // this task suspends on an already-due timer; a plain yield would keep it running
        // alone.
        if ready.is_empty() || suspended.elapsed() >= SUSPEND_EVERY {
            suspend(&mut timer).await;
            suspended = Instant::now();
        } else {
            glommio::yield_if_needed().await;
        }
    }
}

/// Lets the executor poll its reactor and run the shard's other tasks, without sleeping.
async fn suspend(timer: &mut Timer) {
    timer.reset(Duration::from_micros(1));
    timer.await;
}

/// Longest the receive loop runs before it lets the shard's other tasks in.
const SUSPEND_EVERY: Duration = Duration::from_millis(1);

/// Longest an idle receive loop blocks in epoll before the shard's other tasks run.
const IDLE_BLOCK_MS: i32 = 1;

/// Sockets of a pass between two looks at the hot set (about 5 µs of work each at full
/// load, so bridged legs are looked at every ~0.1 ms).
const HOT_EVERY: usize = 8;

/// What the receive loop needs to drain one ready socket.
struct Receiver<'a> {
    sessions: &'a Sessions,
    events: &'a flume::Sender<Event>,
    shared: Option<&'a SharedPort>,
    batch: &'a mut Batch,
}

impl Receiver<'_> {
    /// Reads everything waiting on the socket tagged `call` (or the shared socket).
    /// A socket drained moments ago (a hot one, met again in the pass) just has nothing.
    fn drain(&mut self, call: CallId, outgoing: &mut Vec<Vec<u8>>) {
        if let (SHARED_TOKEN, Some(sp)) = (call, self.shared) {
            receive_shared(sp, self.batch, self.sessions, self.events, outgoing);
            return;
        }
        let Some((state, fd)) = self.sessions.borrow().get(&call).map(|s| (s.state.clone(), s.fd)) else {
            return;
        };
        loop {
            let n = self.batch.recv(fd, batch::SESSION_BATCH);
            let now = Instant::now();
            for i in 0..n {
                let (d, from) = self.batch.get(i);
                let Some(from) = from else { continue };
                on_datagram(call, &state, self.sessions, self.events, d, from, now, outgoing, None);
            }
            if n < batch::SESSION_BATCH {
                break;
            }
        }
    }
}

/// Drains the shared socket, routing each datagram to its session by source and SSRC.
/// Datagrams no session is waiting for are dropped.
fn receive_shared(
    sp: &SharedPort,
    batch: &mut Batch,
    sessions: &Sessions,
    events: &flume::Sender<Event>,
    outgoing: &mut Vec<Vec<u8>>,
) {
    let mut relays = sp.relays.borrow_mut();
    loop {
        let n = batch.recv(sp.socket.as_raw_fd(), batch::BATCH);
        let now = Instant::now();
        for i in 0..n {
            let (d, from) = batch.get(i);
            let (Some(from), Some(ssrc)) = (from, demux::ssrc_of(d)) else { continue };
            let Some(call) = sp.demux.borrow_mut().route(from, ssrc) else { continue };
            let Some(state) = sessions.borrow().get(&call).map(|s| s.state.clone()) else { continue };
            on_datagram(call, &state, sessions, events, d, from, now, outgoing, Some(&mut relays));
        }
        // Every relay of this batch leaves the shared socket in one sendmmsg.
        relays.flush(sp.socket.as_raw_fd());
        if n < batch::BATCH {
            break;
        }
    }
}

/// One datagram for session `call`: checks the source, runs the session, relays released
/// frames to a bridged peer and records them.
#[allow(clippy::too_many_arguments)]
fn on_datagram(
    call: CallId,
    state: &Rc<RefCell<SessionState>>,
    sessions: &Sessions,
    events: &flume::Sender<Event>,
    d: &[u8],
    from: SocketAddr,
    now: Instant,
    outgoing: &mut Vec<Vec<u8>>,
    relays: Option<&mut batch::SendBatch>,
) {
    let mut used = 0;
    let peer = {
        let mut guard = state.borrow_mut();
        let s = &mut *guard;
        match s.source.admit(from) {
            Admit::Drop => return, // not the far end we negotiated with: counted, dropped
            Admit::Latched(to) => s.remote = Some(to),
            Admit::Accept => {}
        }
        if s.first_packet.is_none() {
            s.first_packet = Some(now);
            s.emit(events, Event::FirstPacket { call, from });
        }
        s.last_packet = Some(now);
        s.timeout_reported = false;
        let peer = if s.held { None } else { s.bridge };
        let peer = peer.and_then(|p| sessions.borrow().get(&p).map(|p| (p.state.clone(), p.socket.clone())));
        let arrival = now.duration_since(s.origin).as_micros() as u64 * s.media.clock_rate() as u64 / 1_000_000;
        let payloads = s.media.payloads();
        let mut peer_state = peer.as_ref().map(|(p, _)| p.borrow_mut());
        let recording = &mut s.recording;
        let mut sink = |f: Frame<'_>| {
            if let Some(r) = recording.as_mut() {
                r.left.extend_from_slice(f.pcm);
            }
            let Some(p) = peer_state.as_deref_mut() else { return };
            if let Some(r) = p.recording.as_mut() {
                r.right.extend_from_slice(f.pcm);
            }
            let (Some(tx), true) = (p.sender.as_mut(), p.remote.is_some()) else { return };
            if used == outgoing.len() {
                outgoing.push(Vec::with_capacity(1500));
            }
            let out = &mut outgoing[used];
            out.clear();
            // Same codec on both legs (by each one's negotiated payload map): relay as is.
            if !f.lost && payloads.codec_of(f.payload_type) == Some(tx.codec()) {
                tx.pack(f.payload, f.pcm.len() as u32, out);
            } else if tx.pack_pcm(f.pcm, out).is_err() {
                return;
            }
            used += 1;
        };
        // Malformed datagrams are counted in the session's stats; the shard goes on.
        let _ = s.media.on_datagram_with(d, arrival, &mut sink);
        while let Some(event) = s.media.poll_event() {
            s.emit(events, Event::Media { call, event });
        }
        drop(peer_state);
        peer
    };
    if let Some((peer_state, peer_socket)) = peer {
        let remote = peer_state.borrow().remote;
        if let Some(remote) = remote {
            match relays {
                // Shared port: queued, and sent with the rest of the batch.
                Some(r) => outgoing[..used].iter().for_each(|p| r.push(p, remote)),
                // Non-blocking: a full send buffer drops the packet, as the network would.
                None => outgoing[..used].iter().for_each(|p| {
                    let _ = peer_socket.send_to(p, remote);
                }),
            }
        }
    }
}

/// Plays prompts and music: one 20 ms packet per playing session per tick, on an
/// absolute schedule so the pace does not drift. Sends each session's RTCP when due.
async fn pace(cfg: ShardConfig, sessions: Sessions, events: flume::Sender<Event>) {
    let period = Duration::from_millis(20);
    let mut next = Instant::now() + period;
    let mut pcm = [0i16; PTIME_SAMPLES];
    let mut out: Vec<u8> = Vec::with_capacity(1500);
    let mut rtcp: Vec<u8> = Vec::with_capacity(64);
    let mut timer = Timer::new(period);
    loop {
        let now = Instant::now();
        if next > now {
            timer.reset(next - now);
            (&mut timer).await;
        }
        next += period;
        let _audit = ShardCode::enter();
        for sess in sessions.borrow().iter() {
            let (&call, sess) = sess;
            let mut guard = sess.state.borrow_mut();
            let st = &mut *guard;
            if now >= st.next_rtcp {
                st.next_rtcp = now + cfg.rtcp_interval;
                send_rtcp(st, &sess.socket, &mut rtcp);
            }
            let (Some(play), Some(tx), Some(remote)) = (st.play.as_mut(), st.sender.as_mut(), st.remote) else {
                continue;
            };
            let mut filled = 0;
            while filled < PTIME_SAMPLES {
                if play.pos >= play.audio.len() {
                    if play.looped && !play.audio.is_empty() {
                        play.pos = 0;
                    } else {
                        break;
                    }
                }
                let take = (PTIME_SAMPLES - filled).min(play.audio.len() - play.pos);
                pcm[filled..filled + take].copy_from_slice(&play.audio[play.pos..play.pos + take]);
                play.pos += take;
                filled += take;
            }
            if filled == 0 {
                st.play = None;
                st.emit(&events, Event::PlayDone { call });
                continue;
            }
            pcm[filled..].fill(0);
            out.clear();
            if tx.pack_pcm(&pcm, &mut out).is_ok() {
                let _ = sess.socket.send_to(&out, remote);
            }
        }
    }
}

/// Wall-clock time as an NTP timestamp (RFC 3550 §4), for sender reports.
fn ntp_now() -> u64 {
    const UNIX_TO_NTP: u64 = 2_208_988_800;
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let frac = ((d.subsec_nanos() as u64) << 32) / 1_000_000_000;
    ((d.as_secs() + UNIX_TO_NTP) << 32) | frac
}

/// Media timeouts and periodic statistics for every session of the shard.
async fn tick(cfg: ShardConfig, sessions: Sessions, events: flume::Sender<Event>) {
    let period = (cfg.media_timeout / 4).clamp(Duration::from_millis(20), Duration::from_millis(500));
    let mut last_stats = Instant::now();
    let mut timer = Timer::new(period);
    loop {
        timer.reset(period);
        (&mut timer).await;
        let _audit = ShardCode::enter();
        let now = Instant::now();
        let stats_due = cfg.stats_interval.is_some_and(|i| now.duration_since(last_stats) >= i);
        if stats_due {
            last_stats = now;
        }
        for (&call, s) in sessions.borrow().iter() {
            let mut st = s.state.borrow_mut();
            if let Some(last) = st.last_packet {
                let idle = now.duration_since(last);
                if idle >= cfg.media_timeout && !st.timeout_reported {
                    st.timeout_reported = true;
                    st.emit(&events, Event::MediaTimeout { call, idle });
                }
            }
            if stats_due {
                st.emit(&events, Event::Stats { call, stats: leg_stats(&st) });
            }
        }
    }
}

/// First RTCP report for `call`: somewhere in [0.5, 1.5) × the interval, as RFC 3550 §6.2
/// randomises it, so sessions opened together do not report together.
fn rtcp_phase(interval: Duration, call: CallId) -> Duration {
    let h = call.wrapping_add(0x51).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40; // 24 bits
    interval.mul_f64(0.5 + h as f64 / (1u64 << 24) as f64)
}

/// A sender report once we have sent media, a receiver report otherwise: on the RTP port
/// when the far end accepted rtcp-mux (RFC 5761), else on its RTP port + 1, so carriers'
/// session monitoring sees us as well-behaved.
fn send_rtcp(st: &mut SessionState, socket: &UdpSocket, buf: &mut Vec<u8>) {
    let (Some(remote), Some(tx)) = (st.remote, st.sender.as_ref()) else { return };
    let info = crate::rtcp::SenderInfo {
        ntp: ntp_now(),
        rtp_ts: tx.timestamp(),
        packets: tx.packets as u32,
        octets: tx.octets as u32,
    };
    let block = st.media.report_block();
    buf.clear();
    if tx.packets > 0 {
        crate::rtcp::write_sr(tx.ssrc(), &info, block.as_ref(), buf);
    } else if block.is_some() {
        crate::rtcp::write_rr(tx.ssrc(), block.as_ref(), buf);
    }
    if !buf.is_empty() {
        let to = if st.rtcp_mux { remote } else { SocketAddr::new(remote.ip(), remote.port().wrapping_add(1)) };
        let _ = socket.send_to(buf, to);
    }
}
