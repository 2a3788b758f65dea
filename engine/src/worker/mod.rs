//! The media plane's IO shell: one glommio executor per shard (pinned to a core when
//! asked), owning its sessions' UDP sockets, analysis, playback and bridges. Nothing is
//! shared between shards; both legs of a bridge live on the same shard. The control plane
//! talks to a shard over flume channels: [`Command`]s in, [`Event`]s out. Media logic lives
//! in the pure [`crate::session`] and [`crate::sender`]; this module receives and sends
//! datagrams, keeps time and allocates ports.
//!
//! By job: this file is the API (config, commands, events, `Shard`, `MediaPlane`) and the
//! per-leg state; `run` the run loop and command handling; `receive` the receive path;
//! `pace` playback, RTCP, media timeouts and statistics; `sockets` ports and sockets;
//! `batch` recvmmsg/sendmmsg and epoll; `demux` shared-port routing.
//!
//! This is the only place in the engine that reads the clock.
#![allow(clippy::disallowed_methods)]

mod batch;
mod demux;
mod fasthash;
mod pace;
mod ports;
mod receive;
mod run;
mod sockets;

use crate::amd::AmdParams;
use crate::leg;
pub use crate::leg::Keepalive;
use crate::sender::RtpSender;
use crate::session::{Frame, MediaSession, PayloadMap, SessionEvent, SessionStats};
use crate::source::{Admit, Latch, SourceFilter};
use crate::wav;
pub use batch::SendBatch;
use batch::{Batch, Poller};
use fasthash::FastMap;
use glommio::timer::Timer;
use glommio::{LocalExecutorBuilder, Placement};
use pace::*;
use ports::PortPool;
use receive::*;
use run::*;
use sockets::*;
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
    /// Starts (or restarts) AMD; the session's AMD events carry `run`.
    StartAmd {
        call: CallId,
        params: AmdParams,
        run: u32,
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
    /// How this leg is reached from another shard, for [`Command::BridgeRemote`]: its
    /// socket (a duplicate of its fd), where it sends, and its codec.
    Export {
        call: CallId,
        reply: flume::Sender<Result<RemoteLeg, WorkerError>>,
    },
    /// Connect this leg to one on another shard (one direction: what this leg hears is
    /// sent out of the remote leg's own socket, to the remote leg's far end). The other
    /// shard gets the mirror command. No frame crosses a thread: each shard sends on the
    /// other's socket itself, so a cross-shard bridge adds no hand-off delay.
    BridgeRemote {
        call: CallId,
        peer: RemoteLeg,
    },
    /// Mixes `audio` into what this leg relays to its bridged peer, starting with the next
    /// frame it relays (the agent's connect beep, over the customer's first words). It
    /// waits for a bridge if there is none yet; a new one replaces it.
    Announce {
        call: CallId,
        audio: Arc<[i16]>,
    },
    /// What the leg sends while it has nothing to play (see [`Keepalive`]).
    Keepalive {
        call: CallId,
        mode: Keepalive,
    },
    /// Joins legs of this shard in a mix (supervisor monitoring, see [`crate::mixer`]):
    /// each leg hears the sum of the legs its bitmask names (bit i: the i-th leg listed),
    /// paced at 20 ms. Each leg first leaves any bridge or other mix. Sent again with the
    /// same `mix`, it changes who hears whom.
    Mix {
        mix: CallId,
        legs: Vec<(CallId, u8)>,
    },
    /// Ends a mix: its legs hear nothing until they are bridged or mixed again.
    EndMix {
        mix: CallId,
    },
    /// Disconnect a leg from its bridge (both directions), or take it out of its mix.
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

/// A leg as another shard sees it (see [`Command::Export`]). The socket is a duplicate
/// of the leg's fd: sending on it from any thread is sending from the leg's own port.
#[derive(Debug, Clone)]
pub struct RemoteLeg {
    pub call: CallId,
    pub socket: Arc<UdpSocket>,
    pub remote: SocketAddr,
    pub codec: crate::codec::Codec,
    pub payload_type: u8,
}

/// One leg of [`MediaPlane::mix_across`]: where it is and whom it hears (bit i: the i-th
/// leg of the list).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MixLeg {
    pub call: CallId,
    pub shard: usize,
    pub hears: u8,
}

/// Bit 61 of a call id marks the media plane's own proxy sessions; the control plane's
/// ids keep it clear.
pub const PROXY_BIT: CallId = 1 << 61;

/// The id of the proxy twin that carries `call` into a mix on another shard.
pub fn proxy_id(call: CallId) -> CallId {
    call | PROXY_BIT
}

/// Where a local socket is reached on this host (a wildcard bind is reached on loopback).
fn loopback(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), addr.port())
    } else {
        addr
    }
}

/// The sending half of a cross-shard bridge, held by the leg whose audio it carries.
struct RemotePeer {
    socket: Arc<UdpSocket>,
    remote: SocketAddr,
    /// Packs what this leg hears for the remote far end (its own SSRC and sequence).
    sender: RtpSender,
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
    /// The first frame this leg heard since it was bridged has gone out to its peer: the
    /// bridge carries audio now (time to agent ends here).
    Relaying {
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
    /// Set when `bridge` names a leg on another shard.
    remote_peer: Option<RemotePeer>,
    /// Bridged, and no frame relayed yet: the first one raises [`Event::Relaying`].
    announce_relay: bool,
    /// The mix this leg is in (instead of a bridge).
    mix: Option<MixSlot>,
    /// Audio mixed into what this leg relays ([`Command::Announce`]).
    announce: Option<Playback>,
    recording: Option<Recording>,
    media: MediaSession,
    sender: Option<RtpSender>,
    play: Option<Playback>,
    /// When this session's next RTCP report is due. Each session has its own phase, so a
    /// shard's reports spread over the interval instead of leaving in one burst.
    next_rtcp: Instant,
    owner: Option<Owner>,
    keepalive: Keepalive,
    /// When the next comfort-noise packet is due.
    next_keepalive: Instant,
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

/// A leg's place in a mix: the mixer is shared by its members' sessions.
struct MixSlot {
    id: CallId,
    mixer: Rc<RefCell<crate::mixer::Mixer>>,
    index: usize,
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
/// allocated without an owner, and shard-level errors, arrive on one channel. Call ids are
/// the control plane's and unique across shards; both legs of a bridge must be allocated on
/// the same shard ([`MediaPlane::begin_allocate_on`]).
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

    /// Bridges leg `a` on shard `sa` with leg `b` on shard `sb`: one Bridge when they share
    /// a shard; otherwise each shard exports its leg and gets the other's (two command
    /// round trips, in parallel).
    pub async fn bridge_across(&self, (a, sa): (CallId, usize), (b, sb): (CallId, usize)) -> Result<(), WorkerError> {
        let shard = |i: usize| self.shard(i).ok_or(WorkerError::ShardGone);
        if sa == sb {
            return shard(sa)?.send(Command::Bridge { a, b });
        }
        let (ta, ra) = flume::bounded(1);
        let (tb, rb) = flume::bounded(1);
        shard(sa)?.send(Command::Export { call: a, reply: ta })?;
        shard(sb)?.send(Command::Export { call: b, reply: tb })?;
        let leg_a = ra.recv_async().await.map_err(|_| WorkerError::ShardGone)??;
        let leg_b = rb.recv_async().await.map_err(|_| WorkerError::ShardGone)??;
        shard(sa)?.send(Command::BridgeRemote { call: a, peer: leg_b })?;
        shard(sb)?.send(Command::BridgeRemote { call: b, peer: leg_a })
    }

    /// Mixes legs that may sit on different shards, on shard `home` (see [`Command::Mix`]).
    /// A leg on another shard joins through a proxy pair: a twin session on each shard,
    /// named [`proxy_id`] of the leg, the two streaming to each other over loopback RTP;
    /// the leg is bridged to its twin on its own shard, and the twin on `home` is in the
    /// mix in its place. Undo with [`MediaPlane::end_mix_across`].
    pub async fn mix_across(&self, mix: CallId, home: usize, legs: &[MixLeg]) -> Result<(), WorkerError> {
        let shard = |i: usize| self.shard(i).ok_or(WorkerError::ShardGone);
        let mut members = Vec::with_capacity(legs.len());
        for leg in legs {
            if leg.shard == home {
                members.push((leg.call, leg.hears));
                continue;
            }
            let proxy = proxy_id(leg.call);
            // Their events (a Closed at the end) are of no interest: the owner is gone.
            let (owner, _) = owner_channel();
            let near = shard(home)?.begin_allocate_for(proxy, PayloadMap::default(), owner.clone())?;
            let far = shard(leg.shard)?.begin_allocate_for(proxy, PayloadMap::default(), owner)?;
            let near = loopback(near.recv_async().await.map_err(|_| WorkerError::ShardGone)??);
            let far = loopback(far.recv_async().await.map_err(|_| WorkerError::ShardGone)??);
            shard(home)?.send(Command::SetRemote { call: proxy, remote: far, symmetric: false })?;
            shard(leg.shard)?.send(Command::SetRemote { call: proxy, remote: near, symmetric: false })?;
            shard(leg.shard)?.send(Command::Bridge { a: leg.call, b: proxy })?;
            members.push((proxy, leg.hears));
        }
        shard(home)?.send(Command::Mix { mix, legs: members })
    }

    /// Changes who hears whom in a running [`MediaPlane::mix_across`] (the same legs).
    pub fn remix_across(&self, mix: CallId, home: usize, legs: &[MixLeg]) -> Result<(), WorkerError> {
        let members = legs.iter().map(|l| (if l.shard == home { l.call } else { proxy_id(l.call) }, l.hears)).collect();
        self.shard(home).ok_or(WorkerError::ShardGone)?.send(Command::Mix { mix, legs: members })
    }

    /// Ends a [`MediaPlane::mix_across`]: the mix goes and the proxy pairs close. The legs
    /// hear nothing until they are bridged again.
    pub fn end_mix_across(&self, mix: CallId, home: usize, legs: &[MixLeg]) -> Result<(), WorkerError> {
        let shard = |i: usize| self.shard(i).ok_or(WorkerError::ShardGone);
        shard(home)?.send(Command::EndMix { mix })?;
        for leg in legs.iter().filter(|l| l.shard != home) {
            let call = proxy_id(leg.call);
            shard(leg.shard)?.send(Command::Close { call })?;
            shard(home)?.send(Command::Close { call })?;
        }
        Ok(())
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
