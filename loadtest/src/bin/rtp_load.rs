//! `rtp-load`: N concurrent G.711 streams from a real call recording, 50 packets/s each,
//! into one media shard with AMD on every stream, on loopback; bounded in streams and time.
//!
//!     cargo run --release -p waihu-loadtest --bin rtp-load -- --streams 1000 --seconds 20

use anyhow::{bail, Context, Result};
use clap::Parser;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use waihu_engine::codec::g711;
use waihu_engine::session::PayloadMap;
use waihu_engine::worker::{Command, Event, Shard, ShardConfig};
use waihu_engine::{offline, AmdParams};
use waihu_loadtest::{rss_bytes, thread_cpu};

#[derive(Parser, Debug)]
struct Args {
    /// Concurrent streams (at most 8,000: one socket each, 20,000 fds per process).
    #[arg(long, default_value_t = 500)]
    streams: usize,
    /// Measured run length, seconds (at most 600).
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Call audio to stream (looped).
    #[arg(long, default_value = "samples/call_01.wav")]
    wav: PathBuf,
    /// Restart AMD on every stream this often, so analysis never settles (worst case).
    #[arg(long, default_value_t = 3)]
    amd_restart_secs: u64,
    /// Receive only: no AMD (to see the IO shell's own cost).
    #[arg(long)]
    no_amd: bool,
    /// Core for the shard (the generator runs on the other threads).
    #[arg(long, default_value_t = 0)]
    cpu: usize,
}

fn main() -> Result<()> {
    let a = Args::parse();
    if a.streams == 0 || a.streams > 8_000 || a.seconds == 0 || a.seconds > 600 {
        bail!("--streams must be 1..=8000 and --seconds 1..=600");
    }
    let bytes = std::fs::read(&a.wav).with_context(|| format!("cannot read {}", a.wav.display()))?;
    let pcm = offline::wav_to_analysis_pcm(&bytes)?;
    let ulaw: Vec<u8> = pcm.iter().map(|&s| g711::ulaw_encode(s)).collect();
    let frames: Vec<&[u8]> = ulaw.chunks_exact(160).collect();

    let rss0 = rss_bytes().unwrap_or(0);
    let cfg = ShardConfig {
        cpu: Some(a.cpu),
        ports: 40_000..40_000 + 2 * a.streams as u16 + 200,
        recv_buffer: 256 << 10,
        media_timeout: Duration::from_secs(5),
        ..ShardConfig::default()
    };
    let shard = Shard::spawn(0, cfg)?;
    let mut targets: Vec<SocketAddr> = Vec::with_capacity(a.streams);
    for call in 0..a.streams as u64 {
        targets.push(shard.allocate(call, PayloadMap::default())?);
        if !a.no_amd {
            shard.send(Command::StartAmd { call, params: AmdParams::default() })?;
        }
    }
    let rss1 = rss_bytes().unwrap_or(0);

    // Generator: one socket, every stream gets one 172-byte packet per 20 ms tick.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let late_ticks = Arc::new(AtomicU64::new(0));
    let gen = {
        let (stop, sent, late_ticks) = (stop.clone(), sent.clone(), late_ticks.clone());
        let frames: Vec<Vec<u8>> = frames.iter().map(|f| f.to_vec()).collect();
        let targets = targets.clone();
        std::thread::Builder::new().name("rtp-load-gen".into()).spawn(move || -> Result<()> {
            let sock = UdpSocket::bind("127.0.0.1:0")?;
            let mut pkt = vec![0u8; 172];
            let period = Duration::from_millis(20);
            let mut next = Instant::now();
            let mut k: u64 = 0;
            while !stop.load(Ordering::Relaxed) {
                let f = &frames[(k as usize) % frames.len()];
                for (i, t) in targets.iter().enumerate() {
                    pkt[0] = 0x80;
                    pkt[1] = 0;
                    pkt[2..4].copy_from_slice(&(k as u16).to_be_bytes());
                    pkt[4..8].copy_from_slice(&((k * 160) as u32).to_be_bytes());
                    pkt[8..12].copy_from_slice(&(i as u32 + 1).to_be_bytes());
                    pkt[12..].copy_from_slice(f);
                    if sock.send_to(&pkt, t).is_ok() {
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                }
                k += 1;
                next += period;
                let now = Instant::now();
                if next > now {
                    std::thread::sleep(next - now);
                } else {
                    late_ticks.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(())
        })?
    };

    // Warm up 2 s, then measure.
    std::thread::sleep(Duration::from_secs(2));
    let cpu0 = thread_cpu("waihu-media-0").context("shard thread not found")?;
    let (sent0, t0) = (sent.load(Ordering::Relaxed), Instant::now());
    let mut next_restart = Instant::now() + Duration::from_secs(a.amd_restart_secs);
    while t0.elapsed() < Duration::from_secs(a.seconds) {
        std::thread::sleep(Duration::from_millis(100));
        if !a.no_amd && a.amd_restart_secs > 0 && Instant::now() >= next_restart {
            next_restart += Duration::from_secs(a.amd_restart_secs);
            for call in 0..a.streams as u64 {
                shard.send(Command::StartAmd { call, params: AmdParams::default() })?;
            }
        }
    }
    let wall = t0.elapsed();
    let cpu = thread_cpu("waihu-media-0").context("shard thread not found")? - cpu0;
    let sent_measured = sent.load(Ordering::Relaxed) - sent0;
    stop.store(true, Ordering::Relaxed);
    gen.join().map_err(|_| anyhow::anyhow!("generator panicked"))??;
    std::thread::sleep(Duration::from_millis(300));

    for call in 0..a.streams as u64 {
        shard.send(Command::Close { call })?;
    }
    let (mut received, mut lost, mut malformed, mut closed) = (0u64, 0u64, 0u64, 0usize);
    let deadline = Instant::now() + Duration::from_secs(30);
    while closed < a.streams && Instant::now() < deadline {
        if let Ok(Event::Closed { stats, .. }) = shard.events.recv_timeout(Duration::from_secs(1)) {
            received += stats.packets;
            lost += stats.lost;
            malformed += stats.malformed;
            closed += 1;
        }
    }
    let total_sent = sent.load(Ordering::Relaxed);
    shard.shutdown();

    let packets_measured = sent_measured as f64;
    let us_per_packet = cpu.as_secs_f64() * 1e6 / packets_measured.max(1.0);
    println!(
        "rtp-load: {} G.711 streams, 50 pps each, AMD on every stream (restarted every {} s), 1 shard on core {}",
        a.streams, a.amd_restart_secs, a.cpu
    );
    println!(
        "measured {:.1} s: shard CPU {:.2} s = {:.1}% of a core",
        wall.as_secs_f64(),
        cpu.as_secs_f64(),
        100.0 * cpu.as_secs_f64() / wall.as_secs_f64()
    );
    println!(
        "CPU per stream per 20 ms packet: {us_per_packet:.2} us  => {:.0} streams per core at 100%",
        20_000.0 / us_per_packet
    );
    println!("packets sent {total_sent}, received {received}, lost (RTP seq gaps) {lost}, not received {} ({:.3}%), malformed {malformed}",
        total_sent.saturating_sub(received), 100.0 * total_sent.saturating_sub(received) as f64 / total_sent.max(1) as f64);
    println!("generator ticks that ran late: {}", late_ticks.load(Ordering::Relaxed));
    println!(
        "RSS: {:.1} MiB before sessions, {:.1} MiB after {} sessions => {:.1} KiB per session",
        rss0 as f64 / 1048576.0,
        rss1 as f64 / 1048576.0,
        a.streams,
        (rss1.saturating_sub(rss0)) as f64 / 1024.0 / a.streams as f64
    );
    Ok(())
}
