//! Sockets: binding session ports (on the control side), the shared-port socket, and
//! giving ports back to the pool.
#![allow(clippy::disallowed_methods)]

use super::*;

/// Shared-port mode's one socket and its demultiplexer.
pub(super) struct SharedPort {
    pub(super) socket: Rc<UdpSocket>,
    pub(super) demux: RefCell<demux::Demux>,
    pub(super) relays: RefCell<batch::SendBatch>,
}

pub(super) fn force_recv_buffer(sock: &socket2::Socket, bytes: usize) -> bool {
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
pub(super) const SHARED_TOKEN: u64 = u64::MAX;

pub(super) fn open_shared(cfg: &ShardConfig, port: u16, poller: &Poller) -> std::io::Result<SharedPort> {
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

pub(super) fn release(pool: &Mutex<PortPool>, port: u16) {
    if let Ok(mut p) = pool.lock() {
        p.release(port);
    }
}

/// Binds the next free port of the pool, with an explicit receive buffer. Runs on the
/// control side, not on the shard.
pub(super) fn bind(ip: IpAddr, recv_buffer: usize, pool: &Mutex<PortPool>) -> Result<(UdpSocket, u16), WorkerError> {
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
