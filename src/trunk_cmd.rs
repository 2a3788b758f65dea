//! `waihu trunk-check`: OPTIONS keepalives to a trunk, and its up/down state as they go.
//! Each probe and each state change is printed on stderr; the final state is printed as
//! JSON on stdout. Exit code 0 when the trunk ends up, 1 when down.

use crate::call_cmd::host_port;
use anyhow::Result;
use serde::Serialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use waihu_sip::trunk::{TrunkConfig, TrunkHealth, TrunkState};
use waihu_sip::{AgentConfig, SipAgent};

#[derive(clap::Args, Debug)]
pub struct TrunkCheckArgs {
    /// The trunk as a URI (sip:host:port) when no --trunk file is given.
    pub target: Option<String>,
    #[arg(long)]
    pub trunk: Option<PathBuf>,
    /// How many OPTIONS to send.
    #[arg(long, default_value_t = 3)]
    pub probes: u32,
    /// Seconds between probes.
    #[arg(long, default_value_t = 1.0)]
    pub interval: f64,
    /// Seconds to wait for each answer.
    #[arg(long, default_value_t = 2.0)]
    pub timeout: f64,
    /// Missed answers in a row that mark the trunk down.
    #[arg(long, default_value_t = 2)]
    pub fail_after: u32,
    #[arg(long, default_value = "127.0.0.1:0")]
    pub sip_bind: SocketAddr,
    #[arg(long)]
    pub tcp: bool,
}

#[derive(Serialize)]
struct Report {
    trunk: String,
    state: &'static str,
    probes: Vec<Option<u16>>,
}

fn label(s: TrunkState) -> &'static str {
    match s {
        TrunkState::Unknown => "unknown",
        TrunkState::Up => "up",
        TrunkState::Down => "down",
    }
}

pub fn run(a: TrunkCheckArgs) -> Result<ExitCode> {
    let trunk = match (&a.trunk, &a.target) {
        (Some(p), _) => TrunkConfig::load(p)?,
        (None, Some(t)) => {
            let (h, p) = host_port(t)?;
            TrunkConfig::direct(&h, p)
        }
        (None, None) => anyhow::bail!("give a trunk file (--trunk) or a sip:host:port target"),
    };
    let valid = |x: f64| x.is_finite() && x >= 0.0;
    if !(valid(a.interval) && valid(a.timeout)) {
        anyhow::bail!("--interval and --timeout are non-negative seconds");
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let report = rt.block_on(async {
        let agent = SipAgent::start(AgentConfig { bind: a.sip_bind, tcp: a.tcp, ..AgentConfig::default() }).await?;
        let mut health = TrunkHealth::new(a.fail_after);
        let mut probes = Vec::new();
        for i in 0..a.probes {
            if i > 0 {
                tokio::time::sleep(Duration::from_secs_f64(a.interval)).await;
            }
            let answer = agent.options(&trunk, Duration::from_secs_f64(a.timeout)).await;
            probes.push(answer);
            match answer {
                Some(code) => eprintln!("waihu: OPTIONS {} -> {code}", i + 1),
                None => eprintln!("waihu: OPTIONS {} -> no answer", i + 1),
            }
            if let Some(s) = health.record(answer, Instant::now()) {
                eprintln!("waihu: trunk {} is {}", trunk.name, label(s));
            }
        }
        agent.shutdown();
        Ok::<_, anyhow::Error>(Report { trunk: trunk.name.clone(), state: label(health.state()), probes })
    })?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(if report.state == "up" { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
