//! Load generators. `rtp-load` drives N concurrent RTP streams from real call audio into
//! media-plane shards on loopback and reports what the shards cost: CPU per stream per
//! 20 ms (from the shard thread's own CPU time), packet loss, and memory per session.
//! The SIP carrier simulator and the load driver for whole calls come with the SIP issue.

pub mod baseline;

use std::time::Duration;

/// CPU time (user + system) a thread of this process has used, found by its name prefix
/// (glommio names an executor thread `<name>-<id>`).
pub fn thread_cpu(name: &str) -> Option<Duration> {
    let tick = 100.0; // USER_HZ on Linux
    for entry in std::fs::read_dir("/proc/self/task").ok()? {
        let path = entry.ok()?.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if !comm.trim().starts_with(name) {
            continue;
        }
        let stat = std::fs::read_to_string(path.join("stat")).ok()?;
        // Fields after the command name (which is in parentheses and may hold spaces).
        let rest = stat.rsplit_once(')')?.1;
        let f: Vec<&str> = rest.split_whitespace().collect();
        let (utime, stime): (f64, f64) = (f.get(11)?.parse().ok()?, f.get(12)?.parse().ok()?);
        return Some(Duration::from_secs_f64((utime + stime) / tick));
    }
    None
}

/// Resident set size of this process, bytes.
pub fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Asks the kernel to stamp each datagram with its arrival time (SO_TIMESTAMPNS).
pub fn enable_rx_timestamps(sock: &std::net::UdpSocket) -> std::io::Result<()> {
    set_int_option(sock, libc::SO_TIMESTAMPNS, 1)
}

/// One integer SOL_SOCKET option.
fn set_int_option(sock: &std::net::UdpSocket, option: libc::c_int, value: libc::c_int) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain setsockopt on a socket we own, with a correctly sized int.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Receives one datagram without blocking; returns its length and, when the kernel stamped
/// it, its arrival time in CLOCK_REALTIME nanoseconds. None when nothing is queued.
pub fn recv_stamped(sock: &std::net::UdpSocket, buf: &mut [u8]) -> Option<(usize, Option<u64>)> {
    use std::os::fd::AsRawFd;
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    let mut control = [0u64; 16];
    // SAFETY: all-zero is a valid msghdr; every pointer set below outlives the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: `msg` points at live buffers owned by this frame.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return None;
    }
    let mut at = None;
    // SAFETY: the CMSG_* walk stays inside `control`, as the kernel filled it.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                at = Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64);
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Some((n as usize, at))
}

/// SO_RCVBUF for a socket (the kernel caps it at net.core.rmem_max).
pub fn set_recv_buffer(sock: &std::net::UdpSocket, bytes: usize) -> std::io::Result<()> {
    set_int_option(sock, libc::SO_RCVBUF, bytes.min(libc::c_int::MAX as usize) as libc::c_int)
}

/// Datagrams queued for one `sendmmsg` call: the generator sends a whole slice of streams
/// per system call instead of one `sendto` each. The engine's own send batch, flushed in
/// batches of [`MmsgSender::BATCH`] and waiting for room rather than dropping.
#[derive(Debug, Default)]
pub struct MmsgSender {
    /// Datagrams the kernel has taken so far.
    pub sent: u64,
    batch: waihu_engine::worker::SendBatch,
}

impl MmsgSender {
    /// Datagrams per `sendmmsg` call.
    pub const BATCH: usize = 64;

    pub fn new() -> Self {
        Self::default()
    }

    /// The next datagram's buffer (cleared) for `to`; flushes first when the batch is full.
    pub fn next(&mut self, sock: &std::net::UdpSocket, to: std::net::SocketAddr) -> &mut Vec<u8> {
        if self.batch.len() == Self::BATCH {
            self.flush(sock);
        }
        self.batch.next(to)
    }

    /// Sends what is queued; returns how many datagrams the kernel took.
    pub fn flush(&mut self, sock: &std::net::UdpSocket) -> usize {
        use std::os::fd::AsRawFd;
        let done = self.batch.flush_blocking(sock.as_raw_fd());
        self.sent += done as u64;
        done
    }
}

/// Pins the calling thread to every core but `avoid` (the receiver's), so the generator
/// and the sink never take the receiver's core from it. A no-op on a one-core machine.
pub fn avoid_core(avoid: usize) {
    // SAFETY: plain libc calls on a zeroed cpu_set_t owned by this frame.
    unsafe {
        let n = libc::sysconf(libc::_SC_NPROCESSORS_ONLN).max(1) as usize;
        if n < 2 {
            return;
        }
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for c in (0..n).filter(|&c| c != avoid) {
            libc::CPU_SET(c, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}
