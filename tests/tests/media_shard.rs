//! The media plane end to end over real UDP on loopback: a glommio shard receives a call's
//! RTP, reorders it, counts loss and duplicates, survives garbage, runs AMD, and times out
//! when the far end goes quiet.

use std::net::UdpSocket;
use std::time::{Duration, Instant};
use waihu_engine::amd::{AmdEvent, Decision};
use waihu_engine::codec::g711;
use waihu_engine::offline;
use waihu_engine::rtp::RtpBuild;
use waihu_engine::session::{PayloadMap, SessionEvent};
use waihu_engine::worker::{Command, Event, Shard, ShardConfig};
use waihu_engine::AmdParams;

fn shard(timeout_ms: u64) -> Shard {
    // A port range per test process, so parallel test binaries do not collide.
    let base = 30_000 + (std::process::id() % 500) as u16 * 40;
    let cfg = ShardConfig {
        ports: base..base + 40,
        media_timeout: Duration::from_millis(timeout_ms),
        stats_interval: Some(Duration::from_millis(200)),
        ..ShardConfig::default()
    };
    Shard::spawn(0, cfg).expect("shard starts")
}

fn sample_ulaw(name: &str) -> Vec<u8> {
    let bytes = std::fs::read(waihu_tests::samples_dir().join(name)).expect("sample");
    let pcm = offline::wav_to_analysis_pcm(&bytes).expect("wav");
    pcm.iter().map(|&s| g711::ulaw_encode(s)).collect()
}

fn packets(ulaw: &[u8], seq0: u16, ts0: u32) -> Vec<Vec<u8>> {
    ulaw.chunks_exact(160)
        .enumerate()
        .map(|(i, c)| {
            let mut p = Vec::new();
            RtpBuild {
                payload_type: 0,
                sequence: seq0.wrapping_add(i as u16),
                timestamp: ts0.wrapping_add(i as u32 * 160),
                ssrc: 0xca11,
                ..Default::default()
            }
            .write(c, &mut p)
            .expect("packet");
            p
        })
        .collect()
}

fn wait_for(shard: &Shard, deadline: Duration, mut want: impl FnMut(&Event) -> bool) -> Vec<Event> {
    let end = Instant::now() + deadline;
    let mut seen = Vec::new();
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        match shard.events.recv_timeout(left) {
            Ok(e) => {
                let done = want(&e);
                seen.push(e);
                if done {
                    return seen;
                }
            }
            Err(_) => break,
        }
    }
    panic!("event not seen within {deadline:?}; saw {seen:?}");
}

fn decision_of(events: &[Event]) -> Option<Decision> {
    events.iter().find_map(|e| match e {
        Event::Media { event: SessionEvent::Amd(AmdEvent::Decided(d)), .. } => Some(*d),
        _ => None,
    })
}

#[test]
fn a_call_over_udp_decides_like_the_offline_analysis_and_survives_garbage() {
    let sh = shard(2_000);
    let local = sh.allocate(1, PayloadMap::default()).expect("allocate");
    sh.send(Command::StartAmd { call: 1, params: AmdParams::default() }).expect("amd");
    let ulaw = sample_ulaw("call_01.wav");
    let decoded: Vec<i16> = ulaw.iter().map(|&b| g711::ulaw_decode(b)).collect();
    let expect = offline::analyze_pcm(&decoded, AmdParams::default());

    let tx = UdpSocket::bind("127.0.0.1:0").expect("sender");
    sh.send(Command::SetRemote { call: 1, remote: tx.local_addr().expect("addr"), symmetric: true }).expect("remote");
    let mut garbage = 0;
    for (i, p) in packets(&ulaw, 1000, 5000).iter().enumerate() {
        tx.send_to(p, local).expect("send");
        if i % 10 == 3 {
            // Truncated header, wrong version, RTCP with a bad length, an unknown PT.
            let junk: [&[u8]; 4] =
                [&p[..7], &[0x40; 20], &[0x80, 201, 0, 50, 1, 2], &[0x80, 99, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1]];
            tx.send_to(junk[garbage % 4], local).expect("send junk");
            garbage += 1;
        }
        std::thread::sleep(Duration::from_micros(300));
    }
    let events = wait_for(&sh, Duration::from_secs(10), |e| decision_of(std::slice::from_ref(e)).is_some());
    assert!(events.iter().any(|e| matches!(e, Event::FirstPacket { call: 1, .. })), "{events:?}");
    assert_eq!(decision_of(&events), Some(expect.decision), "UDP path vs offline");

    sh.send(Command::Close { call: 1 }).expect("close");
    let closed = wait_for(&sh, Duration::from_secs(5), |e| matches!(e, Event::Closed { .. }));
    let Some(Event::Closed { stats, .. }) = closed.last() else { unreachable!() };
    assert_eq!(stats.malformed, garbage as u64, "{stats:?}");
    assert_eq!(stats.lost, 0, "{stats:?}");
    sh.shutdown();
}

#[test]
fn reordering_duplicates_loss_and_wraps_are_handled_and_counted() {
    let sh = shard(2_000);
    let local = sh.allocate(7, PayloadMap::default()).expect("allocate");
    sh.send(Command::StartAmd { call: 7, params: AmdParams::default() }).expect("amd");
    let ulaw = sample_ulaw("call_04.wav");
    // Sequence numbers and timestamps both wrap early in the call.
    let mut pk = packets(&ulaw, 65_500, u32::MAX - 40 * 160);
    // Swap neighbours every 7 packets, drop every 50th, duplicate every 30th.
    for i in (5..pk.len() - 1).step_by(7) {
        pk.swap(i, i + 1);
    }
    let tx = UdpSocket::bind("127.0.0.1:0").expect("sender");
    let (mut sent, mut lost, mut dups) = (0u64, 0u64, 0u64);
    for (i, p) in pk.iter().enumerate() {
        if i % 50 == 25 {
            lost += 1;
            continue;
        }
        tx.send_to(p, local).expect("send");
        sent += 1;
        if i % 30 == 10 {
            tx.send_to(p, local).expect("dup");
            dups += 1;
        }
        std::thread::sleep(Duration::from_micros(300));
    }
    std::thread::sleep(Duration::from_millis(300));
    sh.send(Command::Close { call: 7 }).expect("close");
    let events = wait_for(&sh, Duration::from_secs(10), |e| matches!(e, Event::Closed { .. }));
    let Some(Event::Closed { stats, .. }) = events.last() else { unreachable!() };
    assert_eq!(stats.packets, sent, "{stats:?}");
    assert_eq!(stats.duplicates, dups, "{stats:?}");
    assert_eq!(stats.lost, lost, "{stats:?}");
    assert!(stats.out_of_order > 0, "{stats:?}");
    assert!(decision_of(&events).is_some(), "AMD decided despite loss and reordering: {events:?}");
    sh.shutdown();
}

#[test]
fn media_timeout_fires_when_the_far_end_goes_quiet() {
    let sh = shard(300);
    let local = sh.allocate(3, PayloadMap::default()).expect("allocate");
    let tx = UdpSocket::bind("127.0.0.1:0").expect("sender");
    for p in packets(&[0xff; 160 * 10], 1, 1) {
        tx.send_to(&p, local).expect("send");
    }
    let t0 = Instant::now();
    let events = wait_for(&sh, Duration::from_secs(3), |e| matches!(e, Event::MediaTimeout { call: 3, .. }));
    let waited = t0.elapsed();
    assert!(waited >= Duration::from_millis(250), "timeout fired after {waited:?}");
    assert!(events.iter().any(|e| matches!(e, Event::Stats { call: 3, .. })), "periodic stats: {events:?}");
    // Closing frees the port for reuse; a second allocation works, a duplicate id does not.
    sh.send(Command::Close { call: 3 }).expect("close");
    wait_for(&sh, Duration::from_secs(3), |e| matches!(e, Event::Closed { call: 3, .. }));
    sh.allocate(4, PayloadMap::default()).expect("allocate again");
    assert!(sh.allocate(4, PayloadMap::default()).is_err());
    sh.shutdown();
}
