//! The shard thread itself, not only the session code, allocates nothing in steady state:
//! a live glommio shard receives RTP over UDP for 13 sessions (all running AMD; two of
//! them bridged and relaying to each other, three mixed three-way) while a counting allocator watches everything the
//! shard's own code does: epoll and recvmmsg, the session, AMD, relaying, events, the
//! pacer and the timer task (`worker::in_shard_code`). glommio's reactor is not ours and
//! allocates per wake-up; that count is printed, not asserted.
//!
//! The window is the middle of a long voicemail greeting, before AMD can decide, so no
//! events are due; stats and RTCP timers are set beyond the window. Everything the test
//! thread does inside the window (send_to on pre-built packets, sleep) does not allocate.
//! This file holds one test so nothing else runs in the process during the window.

use std::net::UdpSocket;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use waihu_engine::session::PayloadMap;
use waihu_engine::worker::{in_shard_code, Command, Event, Shard, ShardConfig};
use waihu_engine::AmdParams;
use waihu_tests::CountingAlloc;

/// Allocations made by the shard's own code ([`in_shard_code`]).
static ALLOCS: AtomicUsize = AtomicUsize::new(0);
/// Every allocation in the process, glommio's reactor included (reported, not asserted).
static ALL: AtomicUsize = AtomicUsize::new(0);

fn count() {
    ALL.fetch_add(1, Ordering::Relaxed);
    if in_shard_code() {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc { on_alloc: count };

const SESSIONS: u64 = 13;

#[test]
fn a_live_shard_allocates_nothing_per_packet() {
    let base = 34_000 + (std::process::id() % 150) as u16 * 32;
    let cfg = ShardConfig {
        ports: base..base + 32,
        media_timeout: Duration::from_secs(60),
        stats_interval: None,
        rtcp_interval: Duration::from_secs(60),
        ..ShardConfig::default()
    };
    let shard = Shard::spawn(0, cfg).expect("shard");
    // call_32: speech from 1.77 s to 10.9 s, so AMD cannot decide before about 5.3 s.
    let ulaw = waihu_tests::sample_g711("call_32.wav", true);
    let mut senders = Vec::new();
    let sink = UdpSocket::bind("127.0.0.1:0").expect("sink");
    for call in 0..SESSIONS {
        let local = shard.allocate(call, PayloadMap::default()).expect("allocate");
        let tx = UdpSocket::bind("127.0.0.1:0").expect("sender");
        // Bridged legs send their relayed audio to `sink`, which never reads: the kernel
        // drops what overflows, as a slow far end would.
        let remote = if call >= 8 { sink.local_addr().expect("addr") } else { tx.local_addr().expect("addr") };
        shard.send(Command::SetRemote { call, remote, symmetric: false }).expect("remote");
        shard.send(Command::StartAmd { call, params: AmdParams::default(), run: 0 }).expect("amd");
        let packets = waihu_tests::g711_packets(&ulaw, 0, call as u16 * 1000, call as u32 * 7, 0x5000 + call as u32);
        senders.push((tx, local, packets));
    }
    shard.send(Command::Bridge { a: 8, b: 9 }).expect("bridge");
    // Three-way (a supervisor's barge): mixed on every pacer tick.
    let barge = waihu_engine::mixer::MonitorMode::Barge.hears();
    let legs = vec![(10, barge[0]), (11, barge[1]), (12, barge[2])];
    shard.send(Command::Mix { mix: 10, legs }).expect("mix");

    let progress = Arc::new(AtomicUsize::new(0));
    let p = progress.clone();
    let ticks = 240; // 4.8 s of audio
    let thread = std::thread::spawn(move || {
        let start = Instant::now();
        for k in 0..ticks {
            for (tx, local, packets) in &senders {
                let _ = tx.send_to(&packets[k], *local);
            }
            p.store(k + 1, Ordering::Release);
            let next = start + Duration::from_millis(20 * (k as u64 + 1));
            if let Some(d) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(d);
            }
        }
    });
    let wait_until = |tick: usize| {
        while progress.load(Ordering::Acquire) < tick {
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    wait_until(100); // 2 s of warm-up: first packets, buffers and channels settle
    let (before, all_before) = (ALLOCS.load(Ordering::Relaxed), ALL.load(Ordering::Relaxed));
    wait_until(225);
    let (after, all_after) = (ALLOCS.load(Ordering::Relaxed), ALL.load(Ordering::Relaxed));
    thread.join().expect("sender");

    // The shard really was working: every session saw its audio and none decided yet.
    shard.send(Command::Close { call: 0 }).expect("close");
    let mut closed = None;
    let end = Instant::now() + Duration::from_secs(5);
    while closed.is_none() && Instant::now() < end {
        match shard.events.recv_timeout(Duration::from_millis(100)) {
            Ok(Event::Closed { call: 0, stats }) => closed = Some(stats),
            Ok(Event::Error { error, .. }) => panic!("shard error: {error}"),
            _ => {}
        }
    }
    let stats = closed.expect("session 0 closed");
    assert!(stats.packets >= 200, "session 0 received {} packets", stats.packets);
    let packets = (225 - 100) * SESSIONS as usize;
    // glommio's reactor allocates on each park (preemption timer sources, submission
    // chains, timer-map splits): a cost per wake-up, not per packet. Shown, not judged.
    println!("process-wide allocations in the window: {} (glommio's reactor included)", all_after - all_before);
    assert_eq!(
        after - before,
        0,
        "{} allocations by shard code while the shard took {packets} packets",
        after - before
    );
}
