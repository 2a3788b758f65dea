//! Receivers to compare the engine's shard against, on the same traffic: a bare glommio
//! `recv_from` loop per socket (glommio's own floor), and a raw epoll + recvmmsg loop
//! that runs the same analysis per packet (what batching could reach).

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use waihu_engine::analyzer::Analyzer;
use waihu_engine::codec::Codec;
use waihu_engine::AmdParams;

/// Bare glommio: one task per socket doing `recv_from` and nothing else.
pub fn glommio_recv(
    n: usize,
    cpu: usize,
    stop: Arc<AtomicBool>,
    received: Arc<AtomicU64>,
) -> std::io::Result<Vec<SocketAddr>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = glommio::LocalExecutorBuilder::new(glommio::Placement::Fixed(cpu))
        .name("baseline-rx")
        .io_memory(2 << 20)
        .spawn(move || async move {
            let mut addrs = Vec::with_capacity(n);
            let mut tasks = Vec::with_capacity(n);
            for _ in 0..n {
                let Ok(s) = glommio::net::UdpSocket::bind("127.0.0.1:0") else { break };
                let Ok(a) = s.local_addr() else { break };
                addrs.push(a);
                let received = received.clone();
                tasks.push(glommio::spawn_local(async move {
                    let mut buf = vec![0u8; 512];
                    while s.recv_from(&mut buf).await.is_ok() {
                        received.fetch_add(1, Ordering::Relaxed);
                    }
                }));
            }
            let _ = tx.send(addrs);
            while !stop.load(Ordering::Relaxed) {
                glommio::timer::sleep(Duration::from_millis(50)).await;
            }
            drop(tasks);
        })
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    std::thread::spawn(move || {
        let _ = handle.join();
    });
    rx.recv().map_err(|e| std::io::Error::other(e.to_string()))
}

/// Raw epoll + recvmmsg on one pinned thread, with the same per-packet analysis as a
/// shard session (RTP parse, G.711 decode, VAD, tones, AMD).
pub fn recvmmsg_analyze(
    n: usize,
    cpu: usize,
    stop: Arc<AtomicBool>,
    received: Arc<AtomicU64>,
) -> std::io::Result<Vec<SocketAddr>> {
    let mut socks = Vec::with_capacity(n);
    for _ in 0..n {
        let s = UdpSocket::bind("127.0.0.1:0")?;
        s.set_nonblocking(true)?;
        socks.push(s);
    }
    let addrs = socks.iter().map(|s| s.local_addr()).collect::<std::io::Result<Vec<_>>>()?;
    std::thread::Builder::new().name("baseline-rx".into()).spawn(move || {
        // SAFETY: plain libc calls on fds and buffers this thread owns for its whole life.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
            let ep = libc::epoll_create1(0);
            for (i, s) in socks.iter().enumerate() {
                let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: i as u64 };
                libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, s.as_raw_fd(), &mut ev);
            }
            let mut analyzers: Vec<Analyzer> = (0..n).map(|_| Analyzer::new(AmdParams::default())).collect();
            const BATCH: usize = 16;
            let mut bufs = vec![[0u8; 512]; BATCH];
            let mut iov: Vec<libc::iovec> =
                bufs.iter_mut().map(|b| libc::iovec { iov_base: b.as_mut_ptr().cast(), iov_len: b.len() }).collect();
            let mut msgs: Vec<libc::mmsghdr> = iov
                .iter_mut()
                .map(|v| {
                    let mut m: libc::mmsghdr = std::mem::zeroed();
                    m.msg_hdr.msg_iov = v;
                    m.msg_hdr.msg_iovlen = 1;
                    m
                })
                .collect();
            let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
            while !stop.load(Ordering::Relaxed) {
                let k = libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as i32, 50);
                for ev in events.iter().take(k.max(0) as usize) {
                    let i = ev.u64 as usize;
                    let fd = socks[i].as_raw_fd();
                    loop {
                        let got = libc::recvmmsg(
                            fd,
                            msgs.as_mut_ptr(),
                            BATCH as u32,
                            libc::MSG_DONTWAIT,
                            std::ptr::null_mut(),
                        );
                        if got <= 0 {
                            break;
                        }
                        for (m, b) in msgs.iter().zip(&bufs).take(got as usize) {
                            let _ = analyzers[i].push_rtp(&b[..m.msg_len as usize], Codec::Pcmu, 0);
                            while analyzers[i].poll_event().is_some() {}
                            if analyzers[i].amd().is_done() {
                                analyzers[i].reset();
                            }
                        }
                        received.fetch_add(got as u64, Ordering::Relaxed);
                        if (got as usize) < BATCH {
                            break;
                        }
                    }
                }
            }
            libc::close(ep);
        }
    })?;
    Ok(addrs)
}
