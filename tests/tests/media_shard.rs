//! The media plane end to end over real UDP on loopback: a glommio shard receives a call's
//! RTP, reorders it, counts loss and duplicates, survives garbage, runs AMD, and times out
//! when the far end goes quiet.

use std::net::UdpSocket;
use std::sync::Arc;
use std::time::{Duration, Instant};
use waihu_engine::amd::{AmdEvent, Decision};
use waihu_engine::codec::g711;
use waihu_engine::offline;
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
    waihu_tests::sample_g711(name, true)
}

fn packets(ulaw: &[u8], seq0: u16, ts0: u32) -> Vec<Vec<u8>> {
    waihu_tests::g711_packets(ulaw, 0, seq0, ts0, 0xca11)
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
        Event::Media { event: SessionEvent::Amd { event: AmdEvent::Decided(d), .. }, .. } => Some(*d),
        _ => None,
    })
}

#[test]
fn a_call_over_udp_decides_like_the_offline_analysis_and_survives_garbage() {
    let sh = shard(2_000);
    let local = sh.allocate(1, PayloadMap::default()).expect("allocate");
    sh.send(Command::StartAmd { call: 1, params: AmdParams::default(), run: 0 }).expect("amd");
    let ulaw = sample_ulaw("call_01.wav");
    let decoded: Vec<i16> = ulaw.iter().map(|&b| g711::ulaw_decode(b)).collect();
    let expect = offline::analyze_pcm(&decoded, AmdParams::default());

    let tx = UdpSocket::bind("127.0.0.1:0").expect("sender");
    sh.send(Command::SetRemote { call: 1, remote: tx.local_addr().expect("addr"), symmetric: true }).expect("remote");
    // Strict source: datagrams that beat the SetRemote to the shard are a stranger's.
    std::thread::sleep(Duration::from_millis(50));
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
    sh.send(Command::StartAmd { call: 7, params: AmdParams::default(), run: 0 }).expect("amd");
    let ulaw = sample_ulaw("call_04.wav");
    // Sequence numbers and timestamps both wrap early in the call.
    let mut pk = packets(&ulaw, 65_500, u32::MAX - 40 * 160);
    // Swap neighbours every 7 packets, drop every 50th, duplicate every 30th.
    for i in (5..pk.len() - 1).step_by(7) {
        pk.swap(i, i + 1);
    }
    let tx = UdpSocket::bind("127.0.0.1:0").expect("sender");
    sh.send(Command::SetRemote { call: 7, remote: tx.local_addr().expect("addr"), symmetric: false }).expect("r");
    std::thread::sleep(Duration::from_millis(50));
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
    sh.send(Command::SetRemote { call: 3, remote: tx.local_addr().expect("addr"), symmetric: false }).expect("r");
    std::thread::sleep(Duration::from_millis(50));
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

/// Everything that arrives at `sock` within `span`.
fn collect_for(sock: &UdpSocket, span: Duration) -> Vec<Vec<u8>> {
    let end = Instant::now() + span;
    let mut out = Vec::new();
    let mut buf = [0u8; 2048];
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        sock.set_read_timeout(Some(left.max(Duration::from_millis(1)))).expect("timeout");
        if let Ok(n) = sock.recv(&mut buf) {
            out.push(buf[..n].to_vec());
        }
    }
    out
}

/// Equal slices, or a short message naming the first difference.
fn same<T: PartialEq + std::fmt::Debug>(got: &[T], want: &[T], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        panic!("{what}: first difference at {i}: {:?} vs {:?}", got[i], want[i]);
    }
}

/// Reads datagrams from `sock` until `quiet` passes with none, or 3 s at most (a looped
/// source never goes quiet).
fn drain(sock: &UdpSocket, quiet: Duration) -> Vec<Vec<u8>> {
    sock.set_read_timeout(Some(quiet)).expect("timeout");
    let end = Instant::now() + Duration::from_secs(3);
    let mut out = Vec::new();
    let mut buf = [0u8; 2048];
    while let Ok(n) = sock.recv(&mut buf) {
        out.push(buf[..n].to_vec());
        if Instant::now() > end {
            break;
        }
    }
    out
}

fn payloads(dgrams: &[Vec<u8>]) -> Vec<u8> {
    dgrams
        .iter()
        .filter(|d| !waihu_engine::rtcp::is_rtcp(d))
        .filter_map(|d| waihu_engine::rtp::RtpHeader::parse(d).ok().map(|(_, r)| d[r].to_vec()))
        .flatten()
        .collect()
}

#[test]
fn bridged_legs_relay_bit_exact_both_ways_and_record_both_sides() {
    let sh = shard(5_000);
    let (cust, agent) = (UdpSocket::bind("127.0.0.1:0").expect("c"), UdpSocket::bind("127.0.0.1:0").expect("a"));
    let la = sh.allocate(10, PayloadMap::default()).expect("leg a");
    let lb = sh.allocate(11, PayloadMap::default()).expect("leg b");
    sh.send(Command::SetRemote { call: 10, remote: cust.local_addr().expect("addr"), symmetric: false }).expect("r");
    sh.send(Command::SetRemote { call: 11, remote: agent.local_addr().expect("addr"), symmetric: false }).expect("r");
    sh.send(Command::Bridge { a: 10, b: 11 }).expect("bridge");
    sh.send(Command::StartRecording { call: 10 }).expect("record");
    let from_cust = sample_ulaw("call_02.wav")[..160 * 100].to_vec();
    let from_agent = sample_ulaw("call_06.wav")[..160 * 100].to_vec();
    std::thread::sleep(Duration::from_millis(50));
    let (pc, pa) = (packets(&from_cust, 1, 1), packets(&from_agent, 500, 9000));
    for (c, a) in pc.iter().zip(&pa) {
        cust.send_to(c, la).expect("send");
        agent.send_to(a, lb).expect("send");
        std::thread::sleep(Duration::from_micros(500));
    }
    let at_agent = drain(&agent, Duration::from_millis(300));
    let at_cust = drain(&cust, Duration::from_millis(300));
    // In-order packets are released at once: everything is relayed.
    let relayed = 160 * 100;
    same(&payloads(&at_agent), &from_cust[..relayed], "customer -> agent bit-exact");
    same(&payloads(&at_cust), &from_agent[..relayed], "agent -> customer bit-exact");
    // Our outgoing stream has its own SSRC and consecutive sequence numbers.
    let hdrs: Vec<_> = at_agent.iter().map(|d| waihu_engine::rtp::RtpHeader::parse(d).expect("rtp").0).collect();
    assert!(hdrs.windows(2).all(|w| w[1].sequence == w[0].sequence.wrapping_add(1) && w[1].ssrc == w[0].ssrc));
    assert!(hdrs.windows(2).all(|w| w[1].timestamp == w[0].timestamp.wrapping_add(160)));
    assert_ne!(hdrs[0].ssrc, 0xca11, "not the customer's SSRC");

    sh.send(Command::StopRecording { call: 10 }).expect("stop");
    let ev = wait_for(&sh, Duration::from_secs(3), |e| matches!(e, Event::Recording { .. }));
    let Some(Event::Recording { wav, .. }) = ev.last() else { unreachable!() };
    let w = waihu_engine::wav::parse(wav).expect("recording is a WAV");
    assert_eq!((w.channels, w.rate), (2, 8000));
    let frames = wav.len().saturating_sub(44) / 4;
    let left: Vec<i16> = (0..frames).map(|i| i16::from_le_bytes([wav[44 + 4 * i], wav[45 + 4 * i]])).collect();
    let right: Vec<i16> = (0..frames).map(|i| i16::from_le_bytes([wav[46 + 4 * i], wav[47 + 4 * i]])).collect();
    let dec = |u: &[u8]| u.iter().map(|&b| g711::ulaw_decode(b)).collect::<Vec<i16>>();
    same(&left, &dec(&from_cust[..relayed]), "left channel = what the customer sent");
    same(&right, &dec(&from_agent[..relayed]), "right channel = what the agent sent");
    sh.shutdown();
}

#[test]
fn an_announcement_is_mixed_into_the_first_relayed_frames_then_the_relay_is_bit_exact_again() {
    let sh = shard(5_000);
    let (cust, agent) = (UdpSocket::bind("127.0.0.1:0").expect("c"), UdpSocket::bind("127.0.0.1:0").expect("a"));
    let la = sh.allocate(40, PayloadMap::default()).expect("leg a");
    sh.allocate(41, PayloadMap::default()).expect("leg b");
    sh.send(Command::SetRemote { call: 40, remote: cust.local_addr().expect("addr"), symmetric: false }).expect("r");
    sh.send(Command::SetRemote { call: 41, remote: agent.local_addr().expect("addr"), symmetric: false }).expect("r");
    // A 1.2 kHz beep of 5 frames (100 ms), sent before the bridge: it waits for it.
    let beep: Vec<i16> =
        (0..800).map(|i| ((i as f64 * 1200.0 * 2.0 * std::f64::consts::PI / 8000.0).sin() * 8000.0) as i16).collect();
    sh.send(Command::Announce { call: 40, audio: beep.into() }).expect("announce");
    sh.send(Command::Bridge { a: 40, b: 41 }).expect("bridge");
    std::thread::sleep(Duration::from_millis(50));
    // The customer is silent (µ-law 0xff): what the agent hears is the beep alone.
    let silence = vec![0xffu8; 160 * 20];
    for p in packets(&silence, 1, 1) {
        cust.send_to(&p, la).expect("send");
        std::thread::sleep(Duration::from_micros(500));
    }
    let heard: Vec<i16> =
        payloads(&drain(&agent, Duration::from_millis(300))).iter().map(|&u| g711::ulaw_decode(u)).collect();
    assert_eq!(heard.len(), 160 * 20, "every frame relayed");
    let loud = |w: &[i16]| w.iter().map(|&s| (s as i64).pow(2)).sum::<i64>() / w.len() as i64 > 1_000_000;
    let frames: Vec<bool> = heard.chunks(160).map(loud).collect();
    assert_eq!(frames, [[true; 5].as_slice(), &[false; 15]].concat(), "the beep's 5 frames, then silence");
    // After it, relayed as it came (bit-exact): µ-law silence decodes to 0.
    assert!(heard[800..].iter().all(|&s| s == 0), "after the beep the customer's silence, unchanged");
    sh.shutdown();
}

#[test]
fn unbridge_stops_the_relay_and_a_new_bridge_or_a_close_takes_over() {
    // Bridged legs move in and out of the shard's hot set; the relay must follow.
    let sh = shard(5_000);
    let (cust, a1, a2) = (
        UdpSocket::bind("127.0.0.1:0").expect("c"),
        UdpSocket::bind("127.0.0.1:0").expect("a1"),
        UdpSocket::bind("127.0.0.1:0").expect("a2"),
    );
    let local = sh.allocate(60, PayloadMap::default()).expect("customer leg");
    for (call, far) in [(60u64, &cust), (61, &a1), (62, &a2)] {
        if call != 60 {
            sh.allocate(call, PayloadMap::default()).expect("agent leg");
        }
        sh.send(Command::SetRemote { call, remote: far.local_addr().expect("addr"), symmetric: false }).expect("r");
    }
    let audio = sample_ulaw("call_02.wav")[..160 * 80].to_vec();
    let pkts = packets(&audio, 1, 1);
    let mut next = pkts.chunks(20);
    let mut speak = || {
        for p in next.next().expect("20 more packets") {
            cust.send_to(p, local).expect("send");
            std::thread::sleep(Duration::from_micros(500));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    sh.send(Command::Bridge { a: 60, b: 61 }).expect("bridge");
    std::thread::sleep(Duration::from_millis(20));
    speak();
    same(&payloads(&drain(&a1, Duration::from_millis(200))), &audio[..160 * 20], "bridged: relayed to agent 1");

    sh.send(Command::Unbridge { call: 60 }).expect("unbridge");
    std::thread::sleep(Duration::from_millis(20));
    speak();
    assert!(drain(&a1, Duration::from_millis(200)).is_empty(), "unbridged: nothing relayed");

    sh.send(Command::Bridge { a: 60, b: 62 }).expect("bridge again");
    std::thread::sleep(Duration::from_millis(20));
    speak();
    same(&payloads(&drain(&a2, Duration::from_millis(200))), &audio[160 * 40..160 * 60], "to agent 2");
    assert!(drain(&a1, Duration::from_millis(100)).is_empty(), "agent 1 is out of it");

    sh.send(Command::Close { call: 62 }).expect("close agent 2");
    std::thread::sleep(Duration::from_millis(20));
    speak();
    assert!(drain(&a2, Duration::from_millis(200)).is_empty(), "a closed leg relays nothing");
    for call in [60, 61] {
        sh.send(Command::Close { call }).expect("close");
    }
    let closed = wait_for(&sh, Duration::from_secs(3), {
        let mut n = 0;
        move |e| {
            n += usize::from(matches!(e, Event::Closed { .. }));
            n == 3
        }
    });
    let Some(Event::Closed { stats, .. }) = closed.iter().find(|e| matches!(e, Event::Closed { call: 60, .. })) else {
        panic!("customer leg not closed: {closed:?}")
    };
    assert_eq!(stats.packets, 80, "{stats:?}");
    sh.shutdown();
}

#[test]
fn different_codecs_are_transcoded_and_hold_plays_music_to_one_side_only() {
    let sh = shard(5_000);
    let (cust, agent) = (UdpSocket::bind("127.0.0.1:0").expect("c"), UdpSocket::bind("127.0.0.1:0").expect("a"));
    let pcma_only = PayloadMap { pcmu: None, pcma: Some(8), opus: None, telephone_event: None };
    let la = sh.allocate(20, PayloadMap::default()).expect("pcmu leg");
    sh.allocate(21, pcma_only).expect("pcma leg");
    sh.send(Command::SetRemote { call: 20, remote: cust.local_addr().expect("addr"), symmetric: false }).expect("r");
    sh.send(Command::SetRemote { call: 21, remote: agent.local_addr().expect("addr"), symmetric: false }).expect("r");
    sh.send(Command::Bridge { a: 20, b: 21 }).expect("bridge");
    let from_cust = sample_ulaw("call_02.wav")[..160 * 50].to_vec();
    std::thread::sleep(Duration::from_millis(50));
    for p in packets(&from_cust, 1, 1) {
        cust.send_to(&p, la).expect("send");
        std::thread::sleep(Duration::from_micros(500));
    }
    let at_agent = drain(&agent, Duration::from_millis(300));
    let hdr = waihu_engine::rtp::RtpHeader::parse(&at_agent[0]).expect("rtp").0;
    assert_eq!(hdr.payload_type, 8, "agent leg gets PCMA");
    let heard: Vec<i16> = payloads(&at_agent).iter().map(|&b| g711::alaw_decode(b)).collect();
    let sent: Vec<i16> = from_cust[..heard.len()].iter().map(|&b| g711::ulaw_decode(b)).collect();
    assert_eq!(heard.len(), 160 * 50);
    // A-law re-quantisation of µ-law audio: within a few percent of each sample.
    for (h, s) in heard.iter().zip(&sent) {
        assert!((*h as i32 - *s as i32).abs() <= (s.unsigned_abs() as i32 / 16).max(16), "{h} vs {s}");
    }

    // Hold: the customer hears the music, the agent hears nothing of the customer.
    let music: Arc<[i16]> = (0..800).map(|i| ((i % 40) as i16 - 20) * 500).collect::<Vec<_>>().into();
    sh.send(Command::Hold { call: 20, music: music.clone() }).expect("hold");
    std::thread::sleep(Duration::from_millis(30));
    for p in packets(&from_cust, 100, 1) {
        cust.send_to(&p, la).expect("send");
    }
    let at_cust = collect_for(&cust, Duration::from_millis(500));
    let at_agent = drain(&agent, Duration::from_millis(100));
    assert!(at_agent.is_empty(), "agent heard {} packets while on hold", at_agent.len());
    assert!(at_cust.len() >= 10, "music packets: {}", at_cust.len());
    let played: Vec<i16> = payloads(&at_cust).iter().map(|&b| g711::ulaw_decode(b)).collect();
    let expect: Vec<i16> = music.iter().map(|&s| g711::ulaw_decode(g711::ulaw_encode(s))).collect();
    same(&played[..800], &expect, "music plays from its start");
    sh.send(Command::Resume { call: 20 }).expect("resume");
    sh.shutdown();
}

#[test]
fn a_prompt_plays_paced_at_20ms_and_reports_done() {
    let sh = shard(5_000);
    let far = UdpSocket::bind("127.0.0.1:0").expect("far");
    sh.allocate(30, PayloadMap::default()).expect("leg");
    sh.send(Command::SetRemote { call: 30, remote: far.local_addr().expect("addr"), symmetric: false }).expect("r");
    let prompt: Arc<[i16]> = (0..8000).map(|i| ((i * 37) % 2000) as i16 - 1000).collect::<Vec<_>>().into();
    let t0 = Instant::now();
    sh.send(Command::Play { call: 30, audio: prompt.clone(), looped: false }).expect("play");
    wait_for(&sh, Duration::from_secs(5), |e| matches!(e, Event::PlayDone { call: 30 }));
    let took = t0.elapsed();
    let got = drain(&far, Duration::from_millis(200));
    assert_eq!(got.len(), 50, "1 s of audio is 50 packets");
    // 50 packets at 20 ms: about 1 s; generous upper bound for a loaded CI machine.
    assert!(took >= Duration::from_millis(950) && took < Duration::from_millis(3000), "paced: {took:?}");
    let played: Vec<i16> = payloads(&got).iter().map(|&b| g711::ulaw_decode(b)).collect();
    let expect: Vec<i16> = prompt.iter().map(|&s| g711::ulaw_decode(g711::ulaw_encode(s))).collect();
    same(&played, &expect, "the prompt as played");
    let first = waihu_engine::rtp::RtpHeader::parse(&got[0]).expect("rtp").0;
    assert!(first.marker, "first packet of a talkspurt has the marker bit");
    sh.shutdown();
}

#[test]
fn receiver_reports_go_to_the_far_end() {
    let base = 30_000 + (std::process::id() % 500) as u16 * 40;
    let cfg =
        ShardConfig { ports: base..base + 40, rtcp_interval: Duration::from_millis(200), ..ShardConfig::default() };
    let sh = Shard::spawn(0, cfg).expect("shard");
    let far = UdpSocket::bind("127.0.0.1:0").expect("far");
    let local = sh.allocate(40, PayloadMap::default()).expect("leg");
    sh.send(Command::SetRemote { call: 40, remote: far.local_addr().expect("addr"), symmetric: false }).expect("r");
    std::thread::sleep(Duration::from_millis(50));
    for p in packets(&[0xff; 160 * 20], 100, 1).iter().filter(|p| p[3] != 105) {
        far.send_to(p, local).expect("send"); // seq 105 lost
    }
    let got = collect_for(&far, Duration::from_millis(800));
    let reports: Vec<_> = got
        .iter()
        .filter(|d| waihu_engine::rtcp::is_rtcp(d))
        .filter_map(|d| waihu_engine::rtcp::parse(d).ok())
        .flatten()
        .collect();
    let Some(waihu_engine::rtcp::Report::Receiver { blocks, .. }) = reports.first() else {
        panic!("no receiver report among {} datagrams", got.len());
    };
    assert_eq!(blocks[0].ssrc, 0xca11);
    assert_eq!(blocks[0].cumulative_lost, 1);
    assert_eq!(blocks[0].highest_seq, 119, "extended highest seq: no wrap happened");

    // Once we send media too, the report becomes a sender report counting what we sent.
    let tone: Arc<[i16]> = vec![1000i16; 8000].into();
    sh.send(Command::Play { call: 40, audio: tone, looped: false }).expect("play");
    let got = collect_for(&far, Duration::from_millis(900));
    let sr = got
        .iter()
        .filter(|d| waihu_engine::rtcp::is_rtcp(d))
        .filter_map(|d| waihu_engine::rtcp::parse(d).ok())
        .flatten()
        .filter_map(|r| match r {
            waihu_engine::rtcp::Report::Sender { packets, octets, .. } => Some((packets, octets)),
            _ => None,
        })
        .max();
    // Reports every 200 ms over 900 ms of playing: the latest counts a few hundred ms of it.
    let (packets, octets) = sr.expect("a sender report while playing");
    assert!(packets >= 10 && octets == packets * 160, "{packets} packets, {octets} octets");
    sh.shutdown();
}

#[test]
fn inband_dtmf_keys_are_reported_once_each() {
    let sh = shard(5_000);
    let far = UdpSocket::bind("127.0.0.1:0").expect("far");
    let local = sh.allocate(50, PayloadMap::default()).expect("leg");
    sh.send(Command::DetectInbandDtmf { call: 50, on: true }).expect("dtmf on");
    sh.send(Command::SetRemote { call: 50, remote: far.local_addr().expect("addr"), symmetric: false }).expect("r");
    std::thread::sleep(Duration::from_millis(50));
    // "1", "5", "#": row + column tones, 100 ms each with 100 ms gaps, as a phone sends them.
    let keys = [(697.0f32, 1209.0f32), (770.0, 1336.0), (941.0, 1477.0)];
    let mut pcm = Vec::new();
    for (r, c) in keys {
        pcm.extend((0..800).map(|i| {
            let t = i as f32 / 8000.0;
            (((2.0 * std::f32::consts::PI * r * t).sin() + (2.0 * std::f32::consts::PI * c * t).sin()) * 5000.0) as i16
        }));
        pcm.extend(std::iter::repeat_n(0i16, 800));
    }
    let ulaw: Vec<u8> = pcm.iter().map(|&s| g711::ulaw_encode(s)).collect();
    for p in packets(&ulaw, 1, 1) {
        far.send_to(&p, local).expect("send");
    }
    let mut digits = String::new();
    let end = Instant::now() + Duration::from_secs(3);
    while digits.len() < 3 && Instant::now() < end {
        if let Ok(Event::Media { event: SessionEvent::Dtmf { digit, .. }, .. }) =
            sh.events.recv_timeout(Duration::from_millis(200))
        {
            digits.push(digit);
        }
    }
    assert_eq!(digits, "15#");
    sh.shutdown();
}

#[test]
fn a_two_shard_media_plane_splits_ports_and_reports_on_one_channel() {
    use waihu_engine::worker::MediaPlane;
    let base = 36_000 + (std::process::id() % 200) as u16 * 20;
    let cfg = ShardConfig { ports: base..base + 20, ..ShardConfig::default() };
    let plane = MediaPlane::spawn(2, cfg).expect("plane");
    assert_eq!(plane.len(), 2);
    let ulaw = sample_ulaw("call_02.wav");
    let mut locals = Vec::new();
    for call in 0..6u64 {
        let i = plane.shard_for(call);
        let local = plane.shard(i).expect("shard").allocate(call, PayloadMap::default()).expect("allocate");
        // Shard 0 owns the lower half of the range, shard 1 the upper half.
        let half = if local.port() < base + 10 { 0 } else { 1 };
        assert_eq!(half, i, "call {call} on shard {i} got port {}", local.port());
        locals.push((call, i, local));
    }
    let tx = UdpSocket::bind("127.0.0.1:0").expect("sender");
    for &(call, i, _) in &locals {
        let remote = tx.local_addr().expect("addr");
        plane.shard(i).expect("shard").send(Command::SetRemote { call, remote, symmetric: false }).expect("r");
    }
    std::thread::sleep(Duration::from_millis(50));
    for p in packets(&ulaw, 0, 0).iter().take(25) {
        for (_, _, local) in &locals {
            tx.send_to(p, local).expect("send");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    for &(call, i, _) in &locals {
        plane.shard(i).expect("shard").send(Command::Close { call }).expect("close");
    }
    let mut closed = std::collections::HashMap::new();
    let end = Instant::now() + Duration::from_secs(5);
    while closed.len() < locals.len() && Instant::now() < end {
        if let Ok(Event::Closed { call, stats }) = plane.events.recv_timeout(Duration::from_millis(100)) {
            closed.insert(call, stats.packets);
        }
    }
    for (call, _, _) in &locals {
        assert_eq!(closed.get(call), Some(&25), "call {call}: {closed:?}");
    }
    plane.shutdown();
}

#[test]
fn shared_port_mode_tells_sessions_apart_by_source_and_ssrc() {
    // A port the kernel just handed out (ephemeral range: clear of the other tests' ranges).
    let port = UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr()).expect("free port").port();
    let cfg = ShardConfig { shared_port: Some(port), ..ShardConfig::default() };
    let sh = Shard::spawn(0, cfg).expect("shard");
    let (a, b) = (UdpSocket::bind("127.0.0.1:0").expect("a"), UdpSocket::bind("127.0.0.1:0").expect("b"));
    let la = sh.allocate(1, PayloadMap::default()).expect("allocate 1");
    let lb = sh.allocate(2, PayloadMap::default()).expect("allocate 2");
    assert_eq!((la.port(), lb.port()), (port, port), "both sessions on the one port");
    for (call, s) in [(1, &a), (2, &b)] {
        sh.send(Command::SetRemote { call, remote: s.local_addr().expect("addr"), symmetric: false }).expect("remote");
    }
    std::thread::sleep(Duration::from_millis(50));
    let ulaw = sample_ulaw("call_02.wav");
    let (pa, pb) = (packets(&ulaw, 100, 0), waihu_tests::g711_packets(&ulaw, 0, 9000, 0, 0xb0b));
    let stranger = UdpSocket::bind("127.0.0.1:0").expect("stranger");
    for i in 0..40 {
        a.send_to(&pa[i], la).expect("a");
        b.send_to(&pb[i], lb).expect("b");
        if i % 4 == 0 {
            // Nobody expects this source: dropped, never counted against a session.
            stranger.send_to(&pa[i], la).expect("stranger");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    std::thread::sleep(Duration::from_millis(100));
    for call in [1, 2] {
        sh.send(Command::Close { call }).expect("close");
    }
    let mut got = std::collections::HashMap::new();
    let end = Instant::now() + Duration::from_secs(5);
    while got.len() < 2 && Instant::now() < end {
        if let Ok(Event::Closed { call, stats }) = sh.events.recv_timeout(Duration::from_millis(100)) {
            got.insert(call, (stats.packets, stats.duplicates, stats.malformed));
        }
    }
    assert_eq!(got.get(&1), Some(&(40, 0, 0)), "{got:?}");
    assert_eq!(got.get(&2), Some(&(40, 0, 0)), "{got:?}");
}

#[test]
fn strangers_are_counted_and_dropped_and_never_reach_the_session() {
    let sh = shard(2_000);
    let local = sh.allocate(70, PayloadMap::default()).expect("leg");
    let far = UdpSocket::bind("127.0.0.1:0").expect("far end");
    let stranger = UdpSocket::bind("127.0.0.1:0").expect("stranger, same host, another port");
    sh.send(Command::SetRemote { call: 70, remote: far.local_addr().expect("addr"), symmetric: false }).expect("r");
    std::thread::sleep(Duration::from_millis(50));
    for p in packets(&[0xff; 160 * 20], 1, 1) {
        far.send_to(&p, local).expect("send");
    }
    for p in waihu_tests::g711_packets(&[0x00; 160 * 30], 0, 500, 9, 0xbad) {
        stranger.send_to(&p, local).expect("send");
    }
    std::thread::sleep(Duration::from_millis(200));
    sh.send(Command::Close { call: 70 }).expect("close");
    let closed = wait_for(&sh, Duration::from_secs(5), |e| matches!(e, Event::Closed { .. }));
    let Some(Event::Closed { stats, .. }) = closed.last() else { unreachable!() };
    assert_eq!((stats.packets, stats.strangers), (20, 30), "{stats:?}");
    sh.shutdown();
}

#[test]
fn without_rtcp_mux_reports_go_to_the_rtp_port_plus_one() {
    let base = 31_000 + (std::process::id() % 400) as u16 * 40;
    let cfg =
        ShardConfig { ports: base..base + 40, rtcp_interval: Duration::from_millis(150), ..ShardConfig::default() };
    let sh = Shard::spawn(0, cfg).expect("shard");
    // An even/odd pair of free ports for the far end's RTP and RTCP.
    let (rtp, rtcp) = (0..200)
        .find_map(|k| {
            let p = 52_000 + 2 * ((std::process::id() as u16 % 1000) + k * 7) % 8000;
            let a = UdpSocket::bind(("127.0.0.1", p)).ok()?;
            let b = UdpSocket::bind(("127.0.0.1", p + 1)).ok()?;
            Some((a, b))
        })
        .expect("a free port pair");
    let local = sh.allocate(41, PayloadMap::default()).expect("leg");
    sh.send(Command::SetRemote { call: 41, remote: rtp.local_addr().expect("addr"), symmetric: false }).expect("r");
    sh.send(Command::SetRtcpMux { call: 41, mux: false }).expect("no mux");
    std::thread::sleep(Duration::from_millis(50));
    for p in packets(&[0xff; 160 * 20], 100, 1) {
        rtp.send_to(&p, local).expect("send");
    }
    let on_rtcp_port = collect_for(&rtcp, Duration::from_millis(700));
    let on_rtp_port = collect_for(&rtp, Duration::from_millis(50));
    assert!(on_rtcp_port.iter().any(|d| waihu_engine::rtcp::is_rtcp(d)), "reports on RTP port + 1");
    assert!(!on_rtp_port.iter().any(|d| waihu_engine::rtcp::is_rtcp(d)), "no RTCP on the RTP port without mux");
    sh.shutdown();
}

#[test]
fn each_leg_reports_to_its_owner_and_a_full_owner_channel_drops_events_but_never_closed() {
    // The shard ticks every 250 ms with this media timeout: a Stats event per leg per tick.
    let sh = shard(1_000);
    let (a_tx, a_rx) = waihu_engine::worker::owner_channel();
    // A far too small channel nobody reads: the shard must neither block nor lose Closed.
    let (b_tx, b_rx) = flume::bounded(2);
    let allocate = |call, owner| {
        sh.begin_allocate_for(call, PayloadMap::default(), owner).expect("allocate").recv().expect("reply")
    };
    let la = allocate(81, a_tx).expect("leg a");
    allocate(82, b_tx).expect("leg b");
    let tx = UdpSocket::bind("127.0.0.1:0").expect("sender");
    sh.send(Command::SetRemote { call: 81, remote: tx.local_addr().expect("addr"), symmetric: false }).expect("remote");
    std::thread::sleep(Duration::from_millis(50));
    for p in packets(&sample_ulaw("call_01.wav"), 1, 0).iter().take(10) {
        tx.send_to(p, la).expect("send");
    }
    let first = a_rx.recv_timeout(Duration::from_secs(5)).expect("leg a hears of its first packet");
    assert!(matches!(first, Event::FirstPacket { call: 81, .. }), "{first:?}");
    // Six ticks: leg b's channel of two overflows.
    std::thread::sleep(Duration::from_millis(1500));
    sh.send(Command::Close { call: 82 }).expect("close b");
    let mut b_events = Vec::new();
    while let Ok(e) = b_rx.recv_timeout(Duration::from_secs(2)) {
        let closed = matches!(e, Event::Closed { .. });
        b_events.push(e);
        if closed {
            break;
        }
    }
    let Some(Event::Closed { call: 82, stats }) = b_events.last() else {
        panic!("leg b's Closed was lost: {b_events:?}");
    };
    assert!(stats.events_dropped >= 2, "overflow is counted: {stats:?}");
    assert!(b_events.iter().all(|e| matches!(e, Event::Stats { call: 82, .. } | Event::Closed { call: 82, .. })));
    assert!(a_rx.try_iter().all(|e| !matches!(e, Event::Stats { call: 82, .. })), "no leg hears another's events");
    assert!(sh.events.try_recv().is_err(), "owned legs' events do not reach the shard's channel");
    sh.shutdown();
}

#[test]
fn a_quiet_leg_keeps_the_far_end_fed_with_comfort_noise_or_silence() {
    use waihu_engine::rtp::RtpHeader;
    use waihu_engine::worker::Keepalive;
    let sh = shard(60_000);
    let far = UdpSocket::bind("127.0.0.1:0").expect("far end");
    far.set_read_timeout(Some(Duration::from_millis(100))).expect("timeout");
    let to = far.local_addr().expect("addr");
    sh.allocate(91, PayloadMap::default()).expect("leg");
    sh.send(Command::SetRemote { call: 91, remote: to, symmetric: false }).expect("remote");
    let collect = |for_: Duration| {
        let end = Instant::now() + for_;
        let mut got = Vec::new();
        let mut b = [0u8; 1500];
        while Instant::now() < end {
            if let Ok(n) = far.recv(&mut b) {
                if let Ok((h, payload)) = RtpHeader::parse(&b[..n]) {
                    got.push((h.payload_type, h.timestamp, b[payload].to_vec()));
                }
            }
        }
        got
    };
    assert!(collect(Duration::from_millis(300)).iter().all(|p| p.0 != 0 && p.0 != 13), "off by default");

    sh.send(Command::Keepalive { call: 91, mode: Keepalive::ComfortNoise { pt: 13 } }).expect("cn");
    let cn: Vec<_> = collect(Duration::from_millis(2300)).into_iter().filter(|p| p.0 == 13).collect();
    assert!((2..=4).contains(&cn.len()), "about one CN packet a second: {}", cn.len());
    assert!(cn.iter().all(|p| p.2 == [70]), "one noise-level byte, -70 dBov");
    let step = cn[1].1.wrapping_sub(cn[0].1);
    assert!((7_000..=9_000).contains(&step), "the RTP clock runs between CN packets: {step}");

    sh.send(Command::Keepalive { call: 91, mode: Keepalive::Silence }).expect("silence");
    let _ = collect(Duration::from_millis(100));
    let silence: Vec<_> = collect(Duration::from_millis(1000)).into_iter().filter(|p| p.0 == 0).collect();
    assert!(silence.len() >= 40, "a packet every 20 ms: {}", silence.len());
    assert!(silence.iter().all(|p| p.2.len() == 160 && p.2.iter().all(|&b| b == 0xff)), "µ-law silence");
    sh.shutdown();
}
