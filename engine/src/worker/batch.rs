//! Batched receive for a shard: every session socket is registered with one epoll
//! instance, and the shard drains ready sockets with `recvmmsg`, many datagrams per system
//! call. This replaces one glommio `recv_from` per packet per socket, which costs about
//! 10 µs a packet here (docs/benchmarks.md).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

/// Most datagrams taken per `recvmmsg` call (the shared socket of shared-port mode).
pub(crate) const BATCH: usize = 64;
/// Datagrams taken per call on a per-session socket (rarely more than one is waiting).
pub(crate) const SESSION_BATCH: usize = 16;
/// Largest datagram received (RTP audio is far smaller).
pub(crate) const MAX_DATAGRAM: usize = 512;

/// Readiness of the shard's sockets: every socket is in the main epoll set; the sockets
/// of bridged legs are also in a small "hot" set that the receive loop checks between
/// every few sockets of a long pass, so relayed audio does not wait behind a thousand
/// sockets of analysis-only traffic.
#[derive(Debug)]
pub(crate) struct Poller {
    ep: RawFd,
    events: Vec<libc::epoll_event>,
    hot: RawFd,
    hot_events: Vec<libc::epoll_event>,
    hot_len: usize,
}

fn epoll() -> std::io::Result<RawFd> {
    // SAFETY: plain syscall; the fd is owned by the Poller and closed on drop.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if ep < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(ep)
}

fn ctl(ep: RawFd, op: libc::c_int, fd: RawFd, token: u64) -> std::io::Result<()> {
    let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: token };
    // SAFETY: `ev` lives across the call; `fd` is a socket the caller owns.
    if unsafe { libc::epoll_ctl(ep, op, fd, &mut ev) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn wait(ep: RawFd, events: &mut [libc::epoll_event], timeout_ms: i32) -> usize {
    // SAFETY: the buffer is valid for `len` events.
    let n = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as i32, timeout_ms) };
    n.max(0) as usize
}

impl Poller {
    pub(crate) fn new() -> std::io::Result<Self> {
        let ep = epoll()?;
        let hot = match epoll() {
            Ok(h) => h,
            Err(e) => {
                // SAFETY: we own `ep` and nothing else refers to it yet.
                unsafe { libc::close(ep) };
                return Err(e);
            }
        };
        let none = libc::epoll_event { events: 0, u64: 0 };
        // A pass over 256 ready sockets is about 1.5 ms of work at full load: the pacer and
        // commands wait at most that long.
        Ok(Poller { ep, events: vec![none; 256], hot, hot_events: vec![none; 256], hot_len: 0 })
    }

    /// Watches `fd` for input, tagging its events with `token`.
    pub(crate) fn add(&self, fd: RawFd, token: u64) -> std::io::Result<()> {
        ctl(self.ep, libc::EPOLL_CTL_ADD, fd, token)
    }

    pub(crate) fn remove(&mut self, fd: RawFd) {
        self.demote(fd);
        // Removing an fd that is not watched is harmless (ENOENT).
        let _ = ctl(self.ep, libc::EPOLL_CTL_DEL, fd, 0);
    }

    /// Also watches `fd` in the hot set (a bridged leg). Idempotent.
    pub(crate) fn promote(&mut self, fd: RawFd, token: u64) {
        if ctl(self.hot, libc::EPOLL_CTL_ADD, fd, token).is_ok() {
            self.hot_len += 1;
        }
    }

    /// Takes `fd` out of the hot set, if it is there.
    pub(crate) fn demote(&mut self, fd: RawFd) {
        if ctl(self.hot, libc::EPOLL_CTL_DEL, fd, 0).is_ok() {
            self.hot_len -= 1;
        }
    }

    /// Whether any socket is in the hot set.
    pub(crate) fn has_hot(&self) -> bool {
        self.hot_len > 0
    }

    /// Tokens of the sockets ready now (never blocks).
    pub(crate) fn ready(&mut self) -> &[libc::epoll_event] {
        let n = wait(self.ep, &mut self.events, 0);
        &self.events[..n]
    }

    /// Like [`Self::ready`], but blocks the thread up to `timeout_ms` until one is.
    pub(crate) fn ready_within(&mut self, timeout_ms: i32) -> &[libc::epoll_event] {
        let n = wait(self.ep, &mut self.events, timeout_ms);
        &self.events[..n]
    }

    /// Tokens of the hot sockets ready now (never blocks).
    pub(crate) fn hot_ready(&mut self) -> &[libc::epoll_event] {
        let n = wait(self.hot, &mut self.hot_events, 0);
        &self.hot_events[..n]
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        // SAFETY: we own both epoll fds.
        unsafe {
            libc::close(self.ep);
            libc::close(self.hot);
        }
    }
}

/// Reusable buffers for one `recvmmsg` call.
pub(crate) struct Batch {
    bufs: Box<[[u8; MAX_DATAGRAM]; BATCH]>,
    addrs: Box<[libc::sockaddr_storage; BATCH]>,
    iovs: Box<[libc::iovec; BATCH]>,
    msgs: Box<[libc::mmsghdr; BATCH]>,
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Batch")
    }
}

impl Batch {
    pub(crate) fn new() -> Self {
        // SAFETY: all-zero is a valid value for these plain C structs.
        let zero_addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let zero_msg: libc::mmsghdr = unsafe { std::mem::zeroed() };
        let mut b = Batch {
            bufs: Box::new([[0; MAX_DATAGRAM]; BATCH]),
            addrs: Box::new([zero_addr; BATCH]),
            iovs: Box::new([libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; BATCH]),
            msgs: Box::new([zero_msg; BATCH]),
        };
        // The headers point into the boxed arrays, which never move: set them up once.
        for i in 0..BATCH {
            b.iovs[i] = libc::iovec { iov_base: b.bufs[i].as_mut_ptr().cast(), iov_len: MAX_DATAGRAM };
            let m = &mut b.msgs[i].msg_hdr;
            m.msg_name = (&mut b.addrs[i] as *mut libc::sockaddr_storage).cast();
            m.msg_iov = &mut b.iovs[i];
            m.msg_iovlen = 1;
        }
        b
    }

    /// Receives up to `max` (at most [`BATCH`]) datagrams from `fd` without blocking;
    /// returns how many.
    pub(crate) fn recv(&mut self, fd: RawFd, max: usize) -> usize {
        let max = max.min(BATCH);
        // The kernel writes back only the address length and the datagram length.
        for m in &mut self.msgs[..max] {
            m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as u32;
        }
        // SAFETY: every message points at buffers owned by `self` that outlive the call.
        let n =
            unsafe { libc::recvmmsg(fd, self.msgs.as_mut_ptr(), max as u32, libc::MSG_DONTWAIT, std::ptr::null_mut()) };
        n.max(0) as usize
    }

    /// The `i`th datagram of the last `recv` and its source (None for an unknown family).
    pub(crate) fn get(&self, i: usize) -> (&[u8], Option<SocketAddr>) {
        let len = (self.msgs[i].msg_len as usize).min(MAX_DATAGRAM);
        (&self.bufs[i][..len], sockaddr(&self.addrs[i]))
    }
}

fn sockaddr(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match s.ss_family as i32 {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in.
            let a: &libc::sockaddr_in = unsafe { &*(s as *const libc::sockaddr_storage).cast() };
            let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(a.sin_port))))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this storage holds a sockaddr_in6.
            let a: &libc::sockaddr_in6 = unsafe { &*(s as *const libc::sockaddr_storage).cast() };
            let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(ip, u16::from_be(a.sin6_port), a.sin6_flowinfo, a.sin6_scope_id)))
        }
        _ => None,
    }
}

/// Datagrams to many destinations from one socket, sent with one `sendmmsg` (shared-port
/// mode's relays, and the load generator's streams). Buffers are reused; nothing allocates
/// once they have grown.
pub struct SendBatch {
    bufs: Vec<Vec<u8>>,
    addrs: Vec<libc::sockaddr_storage>,
    lens: Vec<libc::socklen_t>,
    iovs: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
    len: usize,
}

impl std::fmt::Debug for SendBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendBatch").field("len", &self.len).finish()
    }
}

impl Default for SendBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl SendBatch {
    pub fn new() -> Self {
        SendBatch { bufs: Vec::new(), addrs: Vec::new(), lens: Vec::new(), iovs: Vec::new(), msgs: Vec::new(), len: 0 }
    }

    /// Datagrams queued.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queues a copy of `data` for `to`.
    pub fn push(&mut self, data: &[u8], to: SocketAddr) {
        self.next(to).extend_from_slice(data);
    }

    /// Queues a datagram for `to` and returns its buffer (empty) to write it in place.
    pub fn next(&mut self, to: SocketAddr) -> &mut Vec<u8> {
        if self.len == self.bufs.len() {
            self.bufs.push(Vec::with_capacity(MAX_DATAGRAM));
            // SAFETY: all-zero is a valid sockaddr_storage.
            self.addrs.push(unsafe { std::mem::zeroed() });
            self.lens.push(0);
        }
        let i = self.len;
        self.len += 1;
        self.bufs[i].clear();
        let sa: socket2::SockAddr = to.into();
        // SAFETY: a SockAddr's storage is a sockaddr_storage of `len` valid bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(
                sa.as_ptr().cast::<u8>(),
                (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast::<u8>(),
                sa.len() as usize,
            );
        }
        self.lens[i] = sa.len();
        &mut self.bufs[i]
    }

    /// Sends everything queued from `fd` (non-blocking: a full buffer drops the rest, as
    /// the network would) and empties the batch. Returns how many the kernel took.
    pub fn flush(&mut self, fd: RawFd) -> usize {
        self.send(fd, libc::MSG_DONTWAIT)
    }

    /// As [`SendBatch::flush`], waiting for room when `fd` is a blocking socket (a load
    /// generator that must not drop its own streams).
    pub fn flush_blocking(&mut self, fd: RawFd) -> usize {
        self.send(fd, 0)
    }

    fn send(&mut self, fd: RawFd, flags: libc::c_int) -> usize {
        if self.len == 0 {
            return 0;
        }
        self.iovs.clear();
        self.msgs.clear();
        for i in 0..self.len {
            self.iovs.push(libc::iovec { iov_base: self.bufs[i].as_mut_ptr().cast(), iov_len: self.bufs[i].len() });
        }
        for i in 0..self.len {
            // SAFETY: all-zero is a valid mmsghdr.
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            m.msg_hdr.msg_namelen = self.lens[i];
            m.msg_hdr.msg_iov = &mut self.iovs[i];
            m.msg_hdr.msg_iovlen = 1;
            self.msgs.push(m);
        }
        let mut done = 0;
        while done < self.len {
            // SAFETY: every message points at buffers owned by `self` that outlive the call.
            let n = unsafe { libc::sendmmsg(fd, self.msgs[done..].as_mut_ptr(), (self.len - done) as u32, flags) };
            if n <= 0 {
                break;
            }
            done += n as usize;
        }
        self.len = 0;
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    fn tokens(events: &[libc::epoll_event]) -> Vec<u64> {
        let mut v: Vec<u64> = events.iter().map(|e| e.u64).collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn the_hot_set_reports_only_promoted_sockets_and_follows_demote_and_remove() {
        let mut p = Poller::new().expect("epoll");
        let socks: Vec<UdpSocket> = (0..3).map(|_| UdpSocket::bind("127.0.0.1:0").expect("bind")).collect();
        for (i, s) in socks.iter().enumerate() {
            p.add(s.as_raw_fd(), i as u64).expect("add");
        }
        assert!(!p.has_hot());
        p.promote(socks[1].as_raw_fd(), 1);
        p.promote(socks[1].as_raw_fd(), 1); // twice: still one
        p.promote(socks[2].as_raw_fd(), 2);
        let tx = UdpSocket::bind("127.0.0.1:0").expect("tx");
        for s in &socks {
            tx.send_to(b"x", s.local_addr().expect("addr")).expect("send");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(tokens(p.ready()), [0, 1, 2], "every socket is in the main set");
        assert_eq!(tokens(p.hot_ready()), [1, 2], "only bridged ones in the hot set");
        p.demote(socks[1].as_raw_fd());
        assert_eq!(tokens(p.hot_ready()), [2]);
        assert!(p.has_hot());
        p.remove(socks[2].as_raw_fd());
        assert!(!p.has_hot(), "removing a hot socket takes it out of the hot set too");
        assert!(p.hot_ready().is_empty());
        assert_eq!(tokens(p.ready()), [0, 1]);
        p.demote(socks[0].as_raw_fd()); // never promoted: no effect
        assert!(!p.has_hot());
    }
}
