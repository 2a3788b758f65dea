//! The media plane's IO shell: one glommio executor per shard (pinned to a core when
//! asked), owning its sessions' UDP sockets and analysis state. Nothing is shared between
//! shards. The control plane talks to a shard over flume channels: [`Command`]s in,
//! [`Event`]s out. All media logic lives in the pure [`crate::session`]; this module only
//! receives datagrams, keeps time and allocates ports.
//!
//! This is the only place in the engine that reads the clock.
#![allow(clippy::disallowed_methods)]

mod ports;

use crate::amd::AmdParams;
use crate::session::{MediaSession, PayloadMap, SessionEvent, SessionStats};
use glommio::net::UdpSocket;
use glommio::{LocalExecutorBuilder, Placement};
use ports::PortPool;
use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::rc::Rc;
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
    /// Open a session; the reply carries the local RTP address for the SDP.
    Allocate {
        call: CallId,
        payloads: PayloadMap,
        reply: flume::Sender<Result<SocketAddr, WorkerError>>,
    },
    /// The far end's address from its SDP. With `symmetric`, the source of the first
    /// packet wins instead (NAT).
    SetRemote {
        call: CallId,
        remote: SocketAddr,
        symmetric: bool,
    },
    StartAmd {
        call: CallId,
        params: AmdParams,
    },
    StopAmd {
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
    /// A command failed (the reply channel, where there is one, says so too).
    Error {
        call: CallId,
        error: String,
    },
}

struct Session {
    state: Rc<RefCell<SessionState>>,
    port: u16,
    /// Dropping the task cancels the receive loop.
    _rx_task: glommio::Task<()>,
}

struct SessionState {
    media: MediaSession,
    remote: Option<SocketAddr>,
    symmetric: bool,
    first_packet: Option<Instant>,
    last_packet: Option<Instant>,
    timeout_reported: bool,
}

/// A running shard: send commands, receive events.
#[derive(Debug)]
pub struct Shard {
    pub commands: flume::Sender<Command>,
    pub events: flume::Receiver<Event>,
    join: Option<glommio::ExecutorJoinHandle<()>>,
}

impl Shard {
    /// Starts the shard's executor thread.
    pub fn spawn(index: usize, cfg: ShardConfig) -> Result<Shard, WorkerError> {
        let (cmd_tx, cmd_rx) = flume::unbounded();
        let (ev_tx, ev_rx) = flume::unbounded();
        let placement = cfg.cpu.map_or(Placement::Unbound, Placement::Fixed);
        let join = LocalExecutorBuilder::new(placement)
            .name(&format!("waihu-media-{index}"))
            .io_memory(cfg.io_memory)
            .spawn(move || run(cfg, cmd_rx, ev_tx))
            .map_err(|e| WorkerError::Io(e.to_string()))?;
        Ok(Shard { commands: cmd_tx, events: ev_rx, join: Some(join) })
    }

    /// Allocates a session and waits for its local address.
    pub fn allocate(&self, call: CallId, payloads: PayloadMap) -> Result<SocketAddr, WorkerError> {
        let (tx, rx) = flume::bounded(1);
        self.commands.send(Command::Allocate { call, payloads, reply: tx }).map_err(|_| WorkerError::ShardGone)?;
        rx.recv().map_err(|_| WorkerError::ShardGone)?
    }

    pub fn send(&self, cmd: Command) -> Result<(), WorkerError> {
        self.commands.send(cmd).map_err(|_| WorkerError::ShardGone)
    }

    /// Stops the shard and waits for its thread.
    pub fn shutdown(mut self) {
        let _ = self.commands.send(Command::Shutdown);
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}

impl Drop for Shard {
    fn drop(&mut self) {
        if let Some(j) = self.join.take() {
            let _ = self.commands.send(Command::Shutdown);
            let _ = j.join();
        }
    }
}

async fn run(cfg: ShardConfig, commands: flume::Receiver<Command>, events: flume::Sender<Event>) {
    let sessions: Rc<RefCell<HashMap<CallId, Session>>> = Rc::new(RefCell::new(HashMap::new()));
    let mut pool = PortPool::new(cfg.ports.clone());
    let ticker = glommio::spawn_local(tick(cfg.clone(), sessions.clone(), events.clone()));
    while let Ok(cmd) = commands.recv_async().await {
        match cmd {
            Command::Allocate { call, payloads, reply } => {
                let r = allocate(&cfg, &mut pool, &sessions, &events, call, payloads);
                let _ = reply.send(r);
            }
            Command::SetRemote { call, remote, symmetric } => with_session(&sessions, &events, call, |s| {
                s.remote = Some(remote);
                s.symmetric = symmetric;
                Ok(())
            }),
            Command::StartAmd { call, params } => with_session(&sessions, &events, call, |s| {
                s.media.start_amd(params);
                Ok(())
            }),
            Command::StopAmd { call } => with_session(&sessions, &events, call, |s| {
                s.media.stop_amd();
                Ok(())
            }),
            Command::Close { call } => match sessions.borrow_mut().remove(&call) {
                Some(s) => {
                    let stats = s.state.borrow().media.stats();
                    pool.release(s.port);
                    let _ = events.send(Event::Closed { call, stats });
                }
                None => {
                    let _ = events.send(Event::Error { call, error: WorkerError::NoSession(call).to_string() });
                }
            },
            Command::Shutdown => break,
        }
    }
    drop(ticker);
    sessions.borrow_mut().clear();
}

fn with_session(
    sessions: &RefCell<HashMap<CallId, Session>>,
    events: &flume::Sender<Event>,
    call: CallId,
    f: impl FnOnce(&mut SessionState) -> Result<(), WorkerError>,
) {
    let r = match sessions.borrow().get(&call) {
        Some(s) => f(&mut s.state.borrow_mut()),
        None => Err(WorkerError::NoSession(call)),
    };
    if let Err(e) = r {
        let _ = events.send(Event::Error { call, error: e.to_string() });
    }
}

fn allocate(
    cfg: &ShardConfig,
    pool: &mut PortPool,
    sessions: &Rc<RefCell<HashMap<CallId, Session>>>,
    events: &flume::Sender<Event>,
    call: CallId,
    payloads: PayloadMap,
) -> Result<SocketAddr, WorkerError> {
    if sessions.borrow().contains_key(&call) {
        return Err(WorkerError::Exists(call));
    }
    let media = MediaSession::new(payloads).map_err(|e| WorkerError::Session(e.to_string()))?;
    let (socket, port) = bind(cfg, pool)?;
    let local = socket.local_addr().map_err(|e| WorkerError::Io(e.to_string()))?;
    let state = Rc::new(RefCell::new(SessionState {
        media,
        remote: None,
        symmetric: false,
        first_packet: None,
        last_packet: None,
        timeout_reported: false,
    }));
    let task = glommio::spawn_local(receive(call, socket, state.clone(), events.clone()));
    sessions.borrow_mut().insert(call, Session { state, port, _rx_task: task });
    Ok(local)
}

/// Binds the next free port of the pool, with an explicit receive buffer.
fn bind(cfg: &ShardConfig, pool: &mut PortPool) -> Result<(UdpSocket, u16), WorkerError> {
    let domain = if cfg.bind_ip.is_ipv4() { socket2::Domain::IPV4 } else { socket2::Domain::IPV6 };
    for _ in 0..pool.len() {
        let Some(port) = pool.take() else { break };
        let sock = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))
            .map_err(|e| WorkerError::Io(e.to_string()))?;
        let _ = sock.set_recv_buffer_size(cfg.recv_buffer);
        if sock.bind(&SocketAddr::new(cfg.bind_ip, port).into()).is_ok() {
            // SAFETY: the fd comes from a socket we own and hand over whole.
            let udp = unsafe { UdpSocket::from_raw_fd(sock.into_raw_fd()) };
            return Ok((udp, port));
        }
        // In use by someone else: try it again later.
        pool.release(port);
    }
    Err(WorkerError::NoPorts)
}

async fn receive(call: CallId, socket: UdpSocket, state: Rc<RefCell<SessionState>>, events: flume::Sender<Event>) {
    let origin = Instant::now();
    let mut buf = vec![0u8; 2048];
    let mut reported = false;
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                if !reported {
                    reported = true;
                    let _ = events.send(Event::Error { call, error: format!("receive: {e}") });
                }
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let now = Instant::now();
        let mut s = state.borrow_mut();
        if let Some(remote) = s.remote {
            if !s.symmetric && from.ip() != remote.ip() {
                continue; // not from the far end we negotiated with
            }
        }
        if s.first_packet.is_none() {
            s.first_packet = Some(now);
            if s.symmetric {
                s.remote = Some(from);
            }
            let _ = events.send(Event::FirstPacket { call, from });
        }
        s.last_packet = Some(now);
        s.timeout_reported = false;
        let arrival = now.duration_since(origin).as_micros() as u64 * s.media.clock_rate() as u64 / 1_000_000;
        // Malformed datagrams are counted in the session's stats; the loop goes on.
        let _ = s.media.on_datagram(&buf[..n], arrival);
        while let Some(event) = s.media.poll_event() {
            let _ = events.send(Event::Media { call, event });
        }
    }
}

/// Media timeouts and periodic statistics for every session of the shard.
async fn tick(cfg: ShardConfig, sessions: Rc<RefCell<HashMap<CallId, Session>>>, events: flume::Sender<Event>) {
    let period = (cfg.media_timeout / 4).clamp(Duration::from_millis(20), Duration::from_millis(500));
    let mut last_stats = Instant::now();
    loop {
        glommio::timer::sleep(period).await;
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
                    let _ = events.send(Event::MediaTimeout { call, idle });
                }
            }
            if stats_due {
                let _ = events.send(Event::Stats { call, stats: st.media.stats() });
            }
        }
    }
}
