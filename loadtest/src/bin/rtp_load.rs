//! `rtp-load`: N concurrent G.711 streams from a real call recording, 50 packets/s each,
//! into one media shard with AMD on every stream, on loopback; bounded in streams and time.
//! `--baseline glommio|recvmmsg` measures a baseline receiver on the same traffic instead.
//!
//!     cargo run --release -p waihu-loadtest --bin rtp-load -- --streams 1000 --seconds 20

use anyhow::{bail, Context, Result};
use clap::Parser;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use waihu_engine::codec::g711;
use waihu_engine::session::PayloadMap;
use waihu_engine::worker::{Command, Event, Shard, ShardConfig};
use waihu_engine::{offline, AmdParams};
use waihu_loadtest::{baseline, rss_bytes, thread_cpu};

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
    /// Restart AMD on every stream in the same instant (a burst of N commands) instead of
    /// spreading the restarts over the period.
    #[arg(long)]
    restart_all_at_once: bool,
    /// Receive only: no AMD (to see the IO shell's own cost).
    #[arg(long)]
    no_amd: bool,
    /// Measure a baseline receiver on the same traffic instead of the engine: `glommio`
    /// (bare recv_from per socket) or `recvmmsg` (epoll + recvmmsg + the same analysis).
    #[arg(long)]
    baseline: Option<String>,
    /// Side by side in one run: alternate the recvmmsg baseline and the engine on the
    /// same traffic for this many rounds (each phase --seconds long), then report the
    /// engine/baseline ratio of CPU per packet. Alternating cancels slow drifts in the
    /// machine's speed (a VM's neighbours) that separate runs would pick up.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=10))]
    compare: u32,
    /// Bridge the streams in pairs: the generator feeds one leg of each bridge, a sink
    /// socket receives the relayed packets, and the report adds the latency they picked up
    /// in the shard (p50/p99/max, from a send time stamped in the payload).
    #[arg(long)]
    bridged: bool,
    /// A mix: this many bridges (2 legs each, relayed as with --bridged) among --streams
    /// legs; the other legs are plain streams with AMD, as when most lines are dialling
    /// and a few are talking to agents.
    #[arg(long, default_value_t = 0)]
    bridges: usize,
    /// Shared-port mode: every session on this one UDP port, told apart by source and SSRC.
    #[arg(long)]
    shared_port: Option<u16>,
    /// Send Opus (PT 111, 24 kbit/s, encoded from the same recording) instead of PCMU.
    #[arg(long)]
    opus: bool,
    /// Core for the receiver (the generator runs on other threads).
    #[arg(long, default_value_t = 0)]
    cpu: usize,
    /// The generator spreads each 20 ms tick's packets over this many evenly spaced
    /// bursts (independent calls arrive at random phases, not all at once). 1 sends every
    /// stream's packet in one burst, the worst case.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=200))]
    slices: u32,
}

struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    late_ticks: Arc<AtomicU64>,
    thread: JoinHandle<Result<()>>,
}

/// One socket; every stream gets one 172-byte PCMU packet per 20 ms tick, on an absolute
/// schedule, sent with sendmmsg (64 datagrams per call).
fn generator(
    frames: &[Vec<u8>],
    targets: Vec<SocketAddr>,
    stamp: bool,
    opus: bool,
    slices: u32,
    avoid: usize,
) -> Result<Load> {
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let late_ticks = Arc::new(AtomicU64::new(0));
    let (st, se, lt, frames) = (stop.clone(), sent.clone(), late_ticks.clone(), frames.to_vec());
    let thread = std::thread::Builder::new().name("rtp-load-gen".into()).spawn(move || -> Result<()> {
        waihu_loadtest::avoid_core(avoid);
        let sock = UdpSocket::bind("127.0.0.1:0")?;
        let mut out = waihu_loadtest::MmsgSender::new();
        let (pt, ts_step) = if opus { (111u8, 960u64) } else { (0u8, 160u64) };
        let period = Duration::from_millis(20);
        let mut next = Instant::now();
        let mut k: u64 = 0;
        while !st.load(Ordering::Relaxed) {
            let f = &frames[(k as usize) % frames.len()];
            // Streams are spread over the 20 ms in ten slices, as independent calls are,
            // rather than all sent in one burst.
            let slice = targets.len().div_ceil(slices as usize).max(1);
            let mut behind = false;
            for (i, t) in targets.iter().enumerate() {
                if i % slice == 0 {
                    // Packets of a slice that starts more than 1 ms after its time are part
                    // of a catch-up burst; they are marked so the sink can tell them apart.
                    let at = next + period * (i / slice) as u32 / slices;
                    behind = Instant::now().saturating_duration_since(at) > Duration::from_millis(1);
                }
                if i > 0 && i % slice == 0 {
                    out.flush(&sock);
                    se.store(out.sent, Ordering::Relaxed);
                    let at = next + period * (i / slice) as u32 / slices;
                    let now = Instant::now();
                    if at > now {
                        std::thread::sleep(at - now);
                    }
                }
                let pkt = out.next(&sock, *t);
                pkt.extend_from_slice(&[0x80, pt]);
                pkt.extend_from_slice(&(k as u16).to_be_bytes());
                pkt.extend_from_slice(&((k * ts_step) as u32).to_be_bytes());
                pkt.extend_from_slice(&(i as u32 + 1).to_be_bytes());
                pkt.extend_from_slice(f);
                if stamp {
                    pkt[12..20].copy_from_slice(&realtime_ns().to_be_bytes());
                    pkt[20] = u8::from(behind);
                }
            }
            out.flush(&sock);
            se.store(out.sent, Ordering::Relaxed);
            k += 1;
            next += period;
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            } else {
                lt.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    })?;
    Ok(Load { stop, sent, late_ticks, thread })
}

/// Runs `tick` every 100 ms for `seconds` after a 2 s warm-up; returns (wall, receiver
/// CPU, packets sent in the window).
fn measure(
    load: &Load,
    thread: &str,
    seconds: u64,
    mut tick: impl FnMut() -> Result<()>,
) -> Result<(Duration, Duration, u64)> {
    std::thread::sleep(Duration::from_secs(2));
    let cpu0 = thread_cpu(thread).context("receiver thread not found")?;
    let (sent0, t0) = (load.sent.load(Ordering::Relaxed), Instant::now());
    while t0.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_millis(100));
        tick()?;
    }
    let cpu = thread_cpu(thread).context("receiver thread not found")? - cpu0;
    Ok((t0.elapsed(), cpu, load.sent.load(Ordering::Relaxed) - sent0))
}

fn finish(load: Load) -> Result<(u64, u64)> {
    load.stop.store(true, Ordering::Relaxed);
    load.thread.join().map_err(|_| anyhow::anyhow!("generator panicked"))??;
    std::thread::sleep(Duration::from_millis(300));
    Ok((load.sent.load(Ordering::Relaxed), load.late_ticks.load(Ordering::Relaxed)))
}

fn report_cpu(what: &str, wall: Duration, cpu: Duration, packets: u64) -> f64 {
    let us = cpu.as_secs_f64() * 1e6 / (packets as f64).max(1.0);
    println!(
        "{what}: measured {:.1} s, receiver CPU {:.2} s = {:.1}% of a core",
        wall.as_secs_f64(),
        cpu.as_secs_f64(),
        100.0 * cpu.as_secs_f64() / wall.as_secs_f64()
    );
    println!("CPU per stream per 20 ms packet: {us:.2} us  => {:.0} streams per core at 100%", 20_000.0 / us);
    us
}

fn main() -> Result<()> {
    let a = Args::parse();
    if a.streams == 0 || a.streams > 8_000 || a.seconds == 0 || a.seconds > 600 {
        bail!("--streams must be 1..=8000 and --seconds 1..=600");
    }
    let bytes = std::fs::read(&a.wav).with_context(|| format!("cannot read {}", a.wav.display()))?;
    let pcm = offline::wav_to_analysis_pcm(&bytes)?;
    let ulaw: Vec<u8> = pcm.iter().map(|&s| g711::ulaw_encode(s)).collect();
    let frames: Vec<Vec<u8>> = if a.opus {
        let mut enc = waihu_engine::codec::opus::OpusEncoder::new(8000, 24_000, 5)?;
        let mut buf = [0u8; 400];
        pcm.chunks_exact(160).map(|c| enc.encode(c, &mut buf).map(|n| buf[..n].to_vec())).collect::<Result<_, _>>()?
    } else {
        ulaw.chunks_exact(160).map(<[u8]>::to_vec).collect()
    };
    let pairs = if a.bridged { a.streams / 2 } else { a.bridges };
    if 2 * pairs > a.streams {
        bail!("--bridges {} needs {} legs; --streams is {}", a.bridges, 2 * a.bridges, a.streams);
    }
    if a.opus && (a.baseline.is_some() || pairs > 0) {
        bail!("--opus works with the engine alone (not with --baseline or --bridged)");
    }
    if a.compare > 0 {
        if a.baseline.is_some() || a.opus || pairs > 0 || a.shared_port.is_some() || a.no_amd {
            bail!("--compare measures plain per-call G.711 streams with AMD (no other mode flags)");
        }
        return compare(&a, &frames);
    }
    match a.baseline.as_deref() {
        None => engine(&a, &frames).map(drop),
        Some(kind @ ("glommio" | "recvmmsg")) => run_baseline(&a, kind, &frames).map(drop),
        Some(other) => bail!("unknown --baseline {other} (glommio or recvmmsg)"),
    }
}

/// Baseline and engine phases in turn; every phase must lose nothing to count.
fn compare(a: &Args, frames: &[Vec<u8>]) -> Result<()> {
    let (mut base, mut eng) = (Vec::new(), Vec::new());
    for round in 1..=a.compare {
        println!("--- round {round} of {}: baseline", a.compare);
        base.push(run_baseline(a, "recvmmsg", frames)?);
        println!("--- round {round} of {}: engine", a.compare);
        eng.push(engine(a, frames)?);
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let ratios: Vec<String> = base.iter().zip(&eng).map(|(b, e)| format!("{:.2}", e / b)).collect();
    println!("=== side by side, {} streams, {} rounds of {} s each:", a.streams, a.compare, a.seconds);
    println!(
        "baseline {:.2} us/packet, engine {:.2} us/packet, engine/baseline {:.2}x (per round: {})",
        mean(&base),
        mean(&eng),
        mean(&eng) / mean(&base),
        ratios.join(", ")
    );
    Ok(())
}

/// Returns CPU per packet, µs; an error if any packet was not received.
fn run_baseline(a: &Args, kind: &str, frames: &[Vec<u8>]) -> Result<f64> {
    let stop = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    let targets = match kind {
        "glommio" => baseline::glommio_recv(a.streams, a.cpu, stop.clone(), received.clone())?,
        _ => baseline::recvmmsg_analyze(a.streams, a.cpu, stop.clone(), received.clone())?,
    };
    if targets.len() < a.streams {
        bail!("only {} of {} sockets opened", targets.len(), a.streams);
    }
    let load = generator(frames, targets, false, false, a.slices, a.cpu)?;
    let (wall, cpu, window) = measure(&load, "baseline-rx", a.seconds, || Ok(()))?;
    let (sent, late) = finish(load)?;
    stop.store(true, Ordering::Relaxed);
    let got = received.load(Ordering::Relaxed);
    println!("rtp-load baseline `{kind}`: {} G.711 streams, 50 pps each, receiver on core {}", a.streams, a.cpu);
    let us = report_cpu("baseline", wall, cpu, window);
    println!(
        "packets sent {sent}, received {got}, not received {} ({:.3}%), generator late ticks {late}",
        sent.saturating_sub(got),
        100.0 * sent.saturating_sub(got) as f64 / sent.max(1) as f64
    );
    if a.compare > 0 && got < sent {
        bail!("the baseline lost {} packets: its CPU figure would flatter it", sent - got);
    }
    Ok(us)
}

/// Returns CPU per packet, µs; under --compare, an error if any packet was not received.
fn engine(a: &Args, frames: &[Vec<u8>]) -> Result<f64> {
    let rss0 = rss_bytes().unwrap_or(0);
    let cfg = ShardConfig {
        cpu: Some(a.cpu),
        ports: 40_000..40_000 + 2 * a.streams as u16 + 200,
        recv_buffer: 256 << 10,
        media_timeout: Duration::from_secs(5),
        shared_port: a.shared_port,
        ..ShardConfig::default()
    };
    let shard = Shard::spawn(0, cfg)?;
    // Generator-facing legs of bridges, and plain streams: interleaved below.
    let mut relayed: Vec<SocketAddr> = Vec::new();
    let mut targets: Vec<SocketAddr> = Vec::with_capacity(a.streams);
    let pairs = if a.bridged { a.streams / 2 } else { a.bridges };
    let sink = if pairs > 0 { Some(UdpSocket::bind("127.0.0.1:0")?) } else { None };
    for call in 0..a.streams as u64 {
        let payloads = if a.opus {
            PayloadMap { pcmu: None, pcma: None, opus: Some(111), telephone_event: Some(101) }
        } else {
            PayloadMap::default()
        };
        let local = shard.allocate(call, payloads)?;
        if !a.no_amd {
            shard.send(Command::StartAmd { call, params: AmdParams::default(), run: 0 })?;
        }
        match &sink {
            // Even legs face the generator (symmetric: it learns the source), odd legs
            // face the sink; each pair is bridged.
            Some(sink) if call % 2 == 1 && (call as usize) < 2 * pairs => {
                shard.send(Command::SetRemote { call, remote: sink.local_addr()?, symmetric: false })?;
                shard.send(Command::Bridge { a: call - 1, b: call })?;
            }
            Some(_) if (call as usize) < 2 * pairs => {
                shard.send(Command::SetRemote { call, remote: "127.0.0.1:9".parse()?, symmetric: true })?;
                relayed.push(local);
            }
            _ => {
                // Strict source: a session hears only its signalled far end (here the
                // generator's host, latched once to the port it sends from).
                shard.send(Command::SetRemote { call, remote: "127.0.0.1:9".parse()?, symmetric: true })?;
                targets.push(local)
            }
        }
    }
    let rss1 = rss_bytes().unwrap_or(0);
    let latencies = Arc::new(std::sync::Mutex::new(Vec::<u32>::new()));
    let sink_stop = Arc::new(AtomicBool::new(false));
    let sink_thread = sink.map(|sock| {
        let (lat, stop) = (latencies.clone(), sink_stop.clone());
        let avoid = a.cpu;
        std::thread::spawn(move || {
            waihu_loadtest::avoid_core(avoid);
            // The kernel stamps each datagram as it reaches the sink's socket, so this
            // thread's own scheduling delay (it shares a core with the generator) does not
            // count against the shard. The sink drains its socket every millisecond instead
            // of sleeping in recv: a blocked reader would make each relayed sendto wake it
            // (a cross-core wake-up, costly in a VM), a cost a remote far end never puts
            // on the shard.
            let stamped = waihu_loadtest::enable_rx_timestamps(&sock).is_ok();
            let _ = waihu_loadtest::set_recv_buffer(&sock, 8 << 20);
            let mut buf = [0u8; 512];
            let mut v = Vec::with_capacity(1 << 20);
            while !stop.load(Ordering::Relaxed) {
                while let Some((n, at)) = waihu_loadtest::recv_stamped(&sock, &mut buf) {
                    if n >= 20 && !waihu_engine::rtcp::is_rtcp(&buf[..n]) {
                        let sent = u64::from_be_bytes(buf[12..20].try_into().unwrap_or([0; 8]));
                        let now = if stamped { at.unwrap_or_else(realtime_ns) } else { realtime_ns() };
                        let us = (now.saturating_sub(sent) / 1000) as u32;
                        // The top bit marks a packet the generator sent late (catch-up).
                        v.push(if n > 20 && buf[20] == 1 { us | 1 << 31 } else { us });
                    }
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            if let Ok(mut l) = lat.lock() {
                *l = v;
            }
        })
    });
    let targets = interleave(relayed, targets);
    let load = generator(frames, targets, pairs > 0, a.opus, a.slices, a.cpu)?;
    let restart = Duration::from_secs(a.amd_restart_secs);
    let mut next_restart = Instant::now() + restart;
    // measure() calls back every 100 ms: spread the restarts over the period, one slot of
    // streams per call, as answered calls start AMD at their own moments.
    let slots = (a.amd_restart_secs * 10).max(1);
    let mut tick: u64 = 0;
    let (wall, cpu, window) = measure(&load, "waihu-media-0", a.seconds, || {
        // Drain the shard's events as a control plane would: an unread queue grows, and its
        // reallocations (copies of megabytes) land on the shard thread.
        while shard.events.try_recv().is_ok() {}
        if a.no_amd || a.amd_restart_secs == 0 {
            return Ok(());
        }
        if a.restart_all_at_once {
            if Instant::now() >= next_restart {
                next_restart += restart;
                for call in 0..a.streams as u64 {
                    shard.send(Command::StartAmd { call, params: AmdParams::default(), run: 0 })?;
                }
            }
        } else {
            for call in (0..a.streams as u64).filter(|c| c % slots == tick % slots) {
                shard.send(Command::StartAmd { call, params: AmdParams::default(), run: 0 })?;
            }
            tick += 1;
        }
        Ok(())
    })?;
    let (sent, late) = finish(load)?;
    sink_stop.store(true, Ordering::Relaxed);
    if let Some(t) = sink_thread {
        let _ = t.join();
    }
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
    shard.shutdown();
    let amd = if a.no_amd {
        "no AMD".to_string()
    } else {
        format!("AMD on every stream, restarted every {} s", a.amd_restart_secs)
    };
    let codec = if a.opus { "Opus" } else { "G.711" };
    println!("rtp-load: {} {codec} streams, 50 pps each, {amd}, 1 shard on core {}", a.streams, a.cpu);
    let us = report_cpu("engine", wall, cpu, window);
    println!("packets sent {sent}, received {received}, lost (RTP seq gaps) {lost}, not received {} ({:.3}%), malformed {malformed}",
        sent.saturating_sub(received), 100.0 * sent.saturating_sub(received) as f64 / sent.max(1) as f64);
    println!("generator ticks that ran late: {late}");
    if pairs > 0 {
        let raw = latencies.lock().map(|l| l.clone()).unwrap_or_default();
        let report = |what: &str, mut v: Vec<u32>| {
            v.sort_unstable();
            let q = |p: f64| v.get(((v.len().max(1) - 1) as f64 * p) as usize).copied().unwrap_or(0);
            println!(
                "{what}: {} packets relayed; generator->shard->sink latency min {} us, p50 {} us, p99 {} us, max {} us; added jitter (p99 - p50) {} us",
                v.len(), q(0.0), q(0.5), q(0.99), q(1.0), q(0.99).saturating_sub(q(0.5))
            );
        };
        let on_time: Vec<u32> = raw.iter().filter(|&&x| x & 1 << 31 == 0).copied().collect();
        let late = raw.len() - on_time.len();
        report("bridged", raw.iter().map(|&x| x & !(1 << 31)).collect());
        if late > 0 {
            println!("  of which {late} were sent late by the generator (a slice more than 1 ms behind its time)");
            report("bridged, sent on time", on_time);
        }
    }
    println!(
        "RSS: {:.1} MiB before sessions, {:.1} MiB after {} sessions => {:.1} KiB per session",
        rss0 as f64 / 1048576.0,
        rss1 as f64 / 1048576.0,
        a.streams,
        (rss1.saturating_sub(rss0)) as f64 / 1024.0 / a.streams as f64
    );
    if a.compare > 0 && received < sent {
        bail!("the engine lost {} packets", sent - received);
    }
    Ok(us)
}

/// Spreads the relayed streams evenly through the send order. The generator sends in
/// order, in --slices bursts per 20 ms; independent calls have independent phases, so the
/// bridged ones must not all sit in the first burst (which made every relayed packet of a
/// tick queue behind the others: with 250 bridges, 2.5 ms of relaying at once).
fn interleave(relayed: Vec<SocketAddr>, plain: Vec<SocketAddr>) -> Vec<SocketAddr> {
    let n = relayed.len() + plain.len();
    let mut out = Vec::with_capacity(n);
    let (mut r, mut p) = (relayed.into_iter().peekable(), plain.into_iter().peekable());
    let nr = r.len();
    for k in 0..n {
        // Take a relayed stream whenever they are behind their share of the order so far.
        let take_relayed = r.peek().is_some() && (p.peek().is_none() || (nr - r.len()) * n <= k * nr);
        out.extend(if take_relayed { r.next() } else { p.next() });
    }
    out
}

/// Wall-clock nanoseconds (CLOCK_REALTIME, the clock of kernel receive timestamps).
fn realtime_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relayed_streams_are_spread_through_the_send_order() {
        let addr = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        let relayed: Vec<SocketAddr> = (1..=3).map(addr).collect();
        let plain: Vec<SocketAddr> = (100..109).map(addr).collect();
        let out = interleave(relayed.clone(), plain.clone());
        assert_eq!(out.len(), 12);
        let at: Vec<usize> = relayed.iter().map(|r| out.iter().position(|o| o == r).expect("kept")).collect();
        assert_eq!(at, [0, 4, 8], "one in every four, evenly");
        // Every stream is sent exactly once, and each group keeps its own order.
        let rest: Vec<SocketAddr> = out.iter().filter(|o| o.port() >= 100).copied().collect();
        assert_eq!(rest, plain);
        assert_eq!(interleave(vec![], plain.clone()), plain);
        assert_eq!(interleave(relayed.clone(), vec![]), relayed);
    }
}
