//! `waihu dial`: the SIP throughput benchmark. It places many calls to one target at a
//! capped rate (the trunk's calls-per-second and channel caps, enforced by
//! `waihu_sip::trunk::Admission`), runs media and AMD on each answered call, holds it for a
//! while, hangs up, and reports what it sustained: calls per second, failures, setup
//! latency, peak concurrent answered calls, CPU and memory.
//!
//! Against a SIPp UAS that answers and streams audio (tests/sipp/uas_load.xml), see
//! `make sip-bench` and docs/benchmarks.md.

use crate::call_cmd::{host_port, port_range};
use crate::dialer::{CallOptions, Dialer, HangupOn, Progress};
use anyhow::{bail, Result};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use waihu_engine::worker::ShardConfig;
use waihu_sip::trunk::{Admission, Admit, TrunkConfig, TrunkHealth, TrunkState};
use waihu_sip::AgentConfig;

#[derive(clap::Args, Debug)]
pub struct DialArgs {
    /// Who to call, e.g. sip:load@127.0.0.1:5061 (every call goes to this URI).
    pub target: String,
    /// Calls to place in all.
    #[arg(long, default_value_t = 100)]
    pub calls: u64,
    /// Calls per second (the trunk's max_cps; overrides the trunk file).
    #[arg(long)]
    pub cps: Option<f64>,
    /// Concurrent channels (the trunk's max_channels; overrides the trunk file).
    #[arg(long)]
    pub channels: Option<u32>,
    /// Trunk file (TOML). Without it the target's host and port are the trunk.
    #[arg(long)]
    pub trunk: Option<PathBuf>,
    /// Hold each answered call this many seconds, then hang up.
    #[arg(long, default_value_t = 4.0)]
    pub hold: f64,
    /// Run AMD on every answered call.
    #[arg(long)]
    pub amd: bool,
    /// Media shards (one per core).
    #[arg(long, default_value_t = 1)]
    pub shards: usize,
    #[arg(long, default_value = "127.0.0.1:0")]
    pub sip_bind: SocketAddr,
    #[arg(long, default_value = "127.0.0.1")]
    pub rtp_ip: IpAddr,
    #[arg(long, default_value = "20000-39999")]
    pub rtp_ports: String,
    /// Runtime worker threads for signaling.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
}

#[derive(Default)]
struct Tally {
    dispositions: BTreeMap<String, u64>,
    answered_by: BTreeMap<String, u64>,
    setup_ms: Vec<u64>,
    errors: BTreeMap<String, u64>,
    rtp_packets: u64,
    rtp_lost: u64,
}

pub fn run(a: DialArgs) -> Result<ExitCode> {
    if a.calls == 0 || a.hold < 0.0 || !a.hold.is_finite() {
        bail!("--calls must be at least 1 and --hold a non-negative number of seconds");
    }
    let mut trunk = match &a.trunk {
        Some(p) => TrunkConfig::load(p)?,
        None => {
            let (h, p) = host_port(&a.target)?;
            TrunkConfig::direct(&h, p)
        }
    };
    if let Some(c) = a.cps {
        trunk.max_cps = c;
    }
    if let Some(c) = a.channels {
        trunk.max_channels = c;
    }
    trunk.validate()?;
    let opts = CallOptions {
        amd: a.amd,
        hangup_on: HangupOn::Never,
        max_duration: Duration::from_secs_f64(a.hold),
        ..CallOptions::default()
    };
    let media = ShardConfig { bind_ip: a.rtp_ip, ports: port_range(&a.rtp_ports)?, ..ShardConfig::default() };
    let sip = AgentConfig { bind: a.sip_bind, ..AgentConfig::default() };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(a.threads.max(1)).enable_all().build()?;
    let cpu0 = process_cpu();
    let code = rt.block_on(async move {
        let dialer = Arc::new(Dialer::start(sip, media, a.shards.max(1)).await?);
        crate::shutdown::on_signals(dialer.stopper())?;
        eprintln!(
            "waihu dial: {} calls to {} at {} cps, {} channels, hold {} s, AMD {}",
            a.calls,
            a.target,
            trunk.max_cps,
            trunk.max_channels,
            a.hold,
            if a.amd { "on" } else { "off" }
        );
        let admission = Arc::new(Mutex::new(Admission::for_trunk(&trunk)));
        let ended = Arc::new(tokio::sync::Notify::new());
        let tally = Arc::new(Mutex::new(Tally::default()));
        let (live, peak) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let trunk = Arc::new(trunk);
        // OPTIONS keepalive (trunk options_interval_secs > 0): no new calls while it is down.
        let trunk_up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        if trunk.options_interval_secs > 0 {
            let (agent, t, up) = (dialer.sip().clone(), trunk.clone(), trunk_up.clone());
            tokio::spawn(async move {
                let mut health = TrunkHealth::new(2);
                let every = Duration::from_secs(t.options_interval_secs);
                loop {
                    let answer = agent.options(&t, Duration::from_secs(2)).await;
                    if let Some(state) = health.record(answer, Instant::now()) {
                        eprintln!("waihu dial: trunk {} is {state:?}", t.name);
                        up.store(state != TrunkState::Down, Ordering::Relaxed);
                    }
                    tokio::time::sleep(every).await;
                }
            });
        }
        let started = Instant::now();
        let mut first_start = None;
        let mut last_start = started;
        let mut tasks = Vec::with_capacity(a.calls as usize);
        let mut placed = 0;
        let mut report_at = started + Duration::from_secs(5);
        while placed < a.calls {
            if dialer.stopping() {
                eprintln!("waihu dial: stopping: {placed} calls placed, waiting for the live ones to end");
                break;
            }
            let now = Instant::now();
            if now >= report_at {
                report_at += Duration::from_secs(5);
                eprintln!(
                    "waihu dial: {:>5.1} s: {placed} placed, {} answered now (peak {})",
                    (now - started).as_secs_f64(),
                    live.load(Ordering::Relaxed),
                    peak.load(Ordering::Relaxed)
                );
            }
            if !trunk_up.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            let admit = admission.lock().map(|mut a| a.try_admit(now)).unwrap_or(Admit::ChannelsFull);
            match admit {
                Admit::WaitUntil(t) => {
                    tokio::time::sleep_until(t.into()).await;
                    continue;
                }
                Admit::ChannelsFull => {
                    let _ = tokio::time::timeout(Duration::from_millis(20), ended.notified()).await;
                    continue;
                }
                Admit::Go => {}
            }
            placed += 1;
            first_start.get_or_insert(now);
            last_start = now;
            let (d, t, o, adm, end, tal) =
                (dialer.clone(), trunk.clone(), opts.clone(), admission.clone(), ended.clone(), tally.clone());
            let (live, peak) = (live.clone(), peak.clone());
            let target = a.target.clone();
            tasks.push(tokio::spawn(async move {
                let mut was_answered = false;
                let progress = |p: Progress| {
                    if let Progress::Answered { .. } = p {
                        was_answered = true;
                        let n = live.fetch_add(1, Ordering::Relaxed) + 1;
                        peak.fetch_max(n, Ordering::Relaxed);
                    }
                };
                let r = d.call(&target, &t, &o, progress).await;
                if was_answered {
                    live.fetch_sub(1, Ordering::Relaxed);
                }
                if let Ok(mut a) = adm.lock() {
                    a.release();
                }
                end.notify_one();
                if let Ok(mut t) = tal.lock() {
                    match r {
                        Ok(c) => {
                            *t.dispositions.entry(c.disposition.clone()).or_default() += 1;
                            if let Some(by) = c.answered_by {
                                *t.answered_by.entry(by.to_string()).or_default() += 1;
                            }
                            if let Some(ms) = c.answer_ms {
                                t.setup_ms.push(ms);
                            }
                            if let Some(e) = c.sip_error {
                                *t.errors.entry(e).or_default() += 1;
                            }
                            t.rtp_packets += c.rtp_packets;
                            t.rtp_lost += c.rtp_lost;
                        }
                        Err(e) => *t.errors.entry(e.to_string()).or_default() += 1,
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        let wall = started.elapsed();
        let span = last_start.duration_since(first_start.unwrap_or(started));
        let t = tally.lock().map(|mut t| std::mem::take(&mut *t)).unwrap_or_default();
        let mut setup = t.setup_ms.clone();
        setup.sort_unstable();
        let q = |p: f64| setup.get(((setup.len().max(1) - 1) as f64 * p) as usize).copied().unwrap_or(0);
        // An answer is an answer whoever (or whatever, by AMD) picked up.
        let answered = ["answered", "machine"].iter().filter_map(|k| t.dispositions.get(*k)).sum::<u64>();
        let failed = placed - answered;
        println!(
            "waihu dial: {} calls placed over {:.1} s ({:.1} calls/s between the first and last INVITE)",
            placed,
            span.as_secs_f64(),
            (placed.saturating_sub(1)) as f64 / span.as_secs_f64().max(1e-9)
        );
        println!("  dispositions: {:?}", t.dispositions);
        println!("  answered by (AMD): {:?}", t.answered_by);
        println!("  failed calls (not answered): {failed}");
        println!("  setup latency INVITE->200: p50 {} ms, p99 {} ms, max {} ms", q(0.5), q(0.99), q(1.0));
        println!("  peak concurrent answered calls: {}", peak.load(Ordering::Relaxed));
        println!("  RTP received: {} packets, {} lost", t.rtp_packets, t.rtp_lost);
        if !t.errors.is_empty() {
            println!("  errors: {:?}", t.errors);
        }
        println!("  SIP dialogs left in the stack: {}", dialer.sip().dialog_count());
        let cpu = process_cpu().saturating_sub(cpu0);
        println!(
            "  wall {:.1} s, process CPU {:.1} s ({:.0}% of one core), peak RSS {:.1} MiB",
            wall.as_secs_f64(),
            cpu.as_secs_f64(),
            100.0 * cpu.as_secs_f64() / wall.as_secs_f64(),
            peak_rss_kib() as f64 / 1024.0
        );
        Ok::<_, anyhow::Error>(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
    })?;
    Ok(code)
}

/// CPU time (user + system) of this process so far.
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
