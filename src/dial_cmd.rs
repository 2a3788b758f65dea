//! `waihu dial`: the SIP throughput benchmark. It places many calls to one target at a
//! capped rate (the trunk's calls-per-second and channel caps, enforced by
//! `waihu_sip::trunk::Admission`), runs media and AMD on each answered call, holds it for a
//! while, hangs up, and reports what it sustained: calls per second, failures, setup
//! latency, peak concurrent answered calls, CPU and memory.
//!
//! Against a SIPp UAS that answers and streams audio (tests/sipp/uas_load.xml), see
//! `make sip-bench` and docs/benchmarks.md.

use crate::call_cmd::{host_port, port_range};
use anyhow::{bail, Result};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use waihu_actors::call::{FlowConfig, HangupOn, KeepaliveMode};
use waihu_actors::dial::{BulkDial, Report};
use waihu_engine::worker::ShardConfig;
use waihu_sip::trunk::{TrunkConfig, TrunkHealth, TrunkState};
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
    /// What answered calls send while they play nothing: auto (comfort noise when
    /// accepted, else silence every 20 ms), silence, or off. Off by default here: silence
    /// costs a packet per call per 20 ms, in both directions of the benchmark.
    #[arg(long, default_value = "off")]
    pub keepalive: KeepaliveMode,
    /// Media shards (one per core).
    #[arg(long, default_value_t = 1)]
    pub shards: usize,
    #[arg(long, default_value = "127.0.0.1:0")]
    pub sip_bind: SocketAddr,
    /// SIP timer T1 in ms (RFC 3261: 500 on the open Internet; smaller on a link with a
    /// known small round trip). The 64×T1 timers follow it, among them Timer M, which
    /// decides how long each answered INVITE's transaction is kept (its memory with it).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(10..=5000))]
    pub sip_t1_ms: u64,
    #[arg(long, default_value = "127.0.0.1")]
    pub rtp_ip: IpAddr,
    #[arg(long, default_value = "20000-39999")]
    pub rtp_ports: String,
    /// Runtime worker threads for signaling.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
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
    let flow = FlowConfig {
        target: a.target.clone(),
        trunk: trunk.name.clone(),
        ring_timeout: trunk.ring_timeout(),
        amd: a.amd,
        hangup_on: HangupOn::Never,
        max_duration: Duration::from_secs_f64(a.hold),
        keepalive: a.keepalive,
        ..FlowConfig::default()
    }
    .with_sip_t1(Duration::from_millis(a.sip_t1_ms));
    let media = ShardConfig { bind_ip: a.rtp_ip, ports: port_range(&a.rtp_ports)?, ..ShardConfig::default() };
    let sip = AgentConfig { bind: a.sip_bind, t1: Duration::from_millis(a.sip_t1_ms), ..AgentConfig::default() };
    let cpu0 = process_cpu();
    let (sip_rt, env) = crate::platform::start(sip, media, a.shards, a.threads)?;
    let stop = crate::platform::signals(&sip_rt)?;
    eprintln!(
        "waihu dial: {} calls to {} at {} cps, {} channels, hold {} s, AMD {}",
        a.calls,
        a.target,
        trunk.max_cps,
        trunk.max_channels,
        a.hold,
        if a.amd { "on" } else { "off" }
    );
    let trunk = Arc::new(trunk);
    // OPTIONS keepalive (trunk options_interval_secs > 0): no new calls while it is down.
    let trunk_up = Arc::new(std::sync::atomic::AtomicBool::new(true));
    if trunk.options_interval_secs > 0 {
        let (agent, t, up) = (env.sip.clone(), trunk.clone(), trunk_up.clone());
        sip_rt.spawn(async move {
            let mut health = TrunkHealth::new(2);
            let every = Duration::from_secs(t.options_interval_secs);
            loop {
                let answer = agent.options(&t, Duration::from_secs(2)).await;
                #[allow(clippy::disallowed_methods)]
                let now = Instant::now();
                if let Some(state) = health.record(answer, now) {
                    eprintln!("waihu dial: trunk {} is {state:?}", t.name);
                    up.store(state != TrunkState::Down, Ordering::Relaxed);
                }
                tokio::time::sleep(every).await;
            }
        });
    }
    let dial = BulkDial { env: env.clone(), trunk, flow, calls: a.calls, trunk_up, stop };
    let report = actix::System::new().block_on(dial.run());
    let code = print(report, env.sip.dialog_count(), process_cpu().saturating_sub(cpu0));
    drop(sip_rt);
    Ok(code)
}

/// Prints a run's report; the exit code says whether every call was answered.
fn print(mut r: Report, dialogs_left: usize, cpu: Duration) -> ExitCode {
    let (t, placed) = (&mut r.tally, r.placed);
    t.setup_ms.sort_unstable();
    let setup = &t.setup_ms;
    let q = |p: f64| setup.get(((setup.len().max(1) - 1) as f64 * p) as usize).copied().unwrap_or(0);
    // An answer is an answer whoever (or whatever, by AMD) picked up.
    let answered = ["answered", "machine"].iter().filter_map(|k| t.dispositions.get(*k)).sum::<u64>();
    let failed = placed.saturating_sub(answered);
    println!(
        "waihu dial: {} calls placed over {:.1} s ({:.1} calls/s between the first and last INVITE)",
        placed,
        r.span.as_secs_f64(),
        (placed.saturating_sub(1)) as f64 / r.span.as_secs_f64().max(1e-9)
    );
    println!("  dispositions: {:?}", t.dispositions);
    println!("  answered by (AMD): {:?}", t.answered_by);
    println!("  failed calls (not answered): {failed}");
    println!("  setup latency INVITE->200: p50 {} ms, p99 {} ms, max {} ms", q(0.5), q(0.99), q(1.0));
    println!("  peak concurrent answered calls: {}", r.peak);
    println!("  RTP received: {} packets, {} lost", t.rtp_packets, t.rtp_lost);
    if !t.errors.is_empty() {
        println!("  errors: {:?}", t.errors);
    }
    println!("  SIP dialogs left in the stack: {dialogs_left}");
    println!(
        "  wall {:.1} s, process CPU {:.1} s ({:.0}% of one core), peak RSS {:.1} MiB",
        r.wall.as_secs_f64(),
        cpu.as_secs_f64(),
        100.0 * cpu.as_secs_f64() / r.wall.as_secs_f64(),
        peak_rss_kib() as f64 / 1024.0
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
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
