//! Supervisor monitoring in the media plane over real UDP on loopback: customer, agent and
//! supervisor far ends each stream their own tone, and what each one hears shows who
//! hears whom in listen, whisper and barge, with every leg on one shard and with the agent
//! on another shard (joined through a proxy pair).

use std::time::Duration;
use waihu_engine::codec::g711;
use waihu_engine::mixer::MonitorMode;
use waihu_engine::session::PayloadMap;
use waihu_engine::worker::{Command, MediaPlane, MixLeg, ShardConfig};
use waihu_tests::baresip::{tone, tone_frames_at};
use waihu_tests::rtp_peer::RtpPeer;

/// The customer's, the agent's and the supervisor's tones.
const TONES: [f64; 3] = [500.0, 1000.0, 1500.0];

/// Runs one monitored call in `mode`, the three legs on `shards`; returns what each far
/// end heard.
fn monitored(plane: &MediaPlane, mode: MonitorMode, shards: [usize; 3], first_id: u64) -> Vec<Vec<i16>> {
    let peers: Vec<RtpPeer> = TONES
        .iter()
        .map(|&hz| {
            let ulaw = tone(hz, 1.6, 0.0).iter().map(|&s| g711::ulaw_encode(s)).collect();
            RtpPeer::start(ulaw, Duration::from_secs(5))
        })
        .collect();
    let hears = mode.hears();
    let mut legs = Vec::new();
    for (i, peer) in peers.iter().enumerate() {
        let call = first_id + i as u64;
        let shard = plane.shard(shards[i]).expect("shard");
        shard.allocate(call, PayloadMap::default()).expect("allocate");
        let remote = format!("127.0.0.1:{}", peer.port).parse().expect("addr");
        shard.send(Command::SetRemote { call, remote, symmetric: false }).expect("remote");
        legs.push(MixLeg { call, shard: shards[i], hears: hears[i] });
    }
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    rt.block_on(plane.mix_across(first_id, shards[0], &legs)).expect("mix");
    std::thread::sleep(Duration::from_millis(2200));
    plane.end_mix_across(first_id, shards[0], &legs).expect("end the mix");
    for leg in &legs {
        plane.shard(leg.shard).expect("shard").send(Command::Close { call: leg.call }).expect("close");
    }
    peers.into_iter().map(RtpPeer::finish).collect()
}

/// Checks each party heard exactly the tones `mode` lets it hear.
fn check(mode: MonitorMode, heard: &[Vec<i16>]) {
    let who = ["customer", "agent", "supervisor"];
    for (listener, pcm) in heard.iter().enumerate() {
        for (speaker, &hz) in TONES.iter().enumerate() {
            if speaker == listener {
                continue;
            }
            let frames = tone_frames_at(pcm, hz, 0.2);
            let should = mode.hears()[listener] & (1 << speaker) != 0;
            // 1.6 s of tone is 80 frames.
            if should {
                assert!(
                    frames >= 50,
                    "{mode:?}: the {} heard only {frames} frames of the {}",
                    who[listener],
                    who[speaker]
                );
            } else {
                assert!(frames <= 2, "{mode:?}: the {} heard {frames} frames of the {}", who[listener], who[speaker]);
            }
        }
    }
}

fn plane(shards: usize, offset: u16) -> MediaPlane {
    let base = 44_000 + offset + (std::process::id() % 100) as u16 * 40;
    MediaPlane::spawn(shards, ShardConfig { ports: base..base + 20, ..ShardConfig::default() }).expect("plane")
}

#[test]
fn listen_whisper_and_barge_on_one_shard() {
    let plane = plane(1, 0);
    for (k, mode) in [MonitorMode::Listen, MonitorMode::Whisper, MonitorMode::Barge].into_iter().enumerate() {
        let heard = monitored(&plane, mode, [0, 0, 0], 100 + 10 * k as u64);
        check(mode, &heard);
    }
    plane.shutdown();
}

#[test]
fn listen_whisper_and_barge_with_the_agent_on_another_shard() {
    let plane = plane(2, 20);
    for (k, mode) in [MonitorMode::Listen, MonitorMode::Whisper, MonitorMode::Barge].into_iter().enumerate() {
        let heard = monitored(&plane, mode, [0, 1, 0], 200 + 10 * k as u64);
        check(mode, &heard);
    }
    plane.shutdown();
}
