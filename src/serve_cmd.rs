//! `waihu serve --store DIR`: runs the store's campaigns. Each running campaign is a
//! `CampaignActor` on one actix system, its calls `CallActor`s; the SIP agent and the media
//! shards are shared, and so are the trunks' CPS and channel caps. On SIGINT/SIGTERM the
//! live calls are ended (each writes its record) before the process exits; after a SIGKILL
//! the next start closes the attempts that were in flight as `interrupted`.

use crate::call_cmd::port_range;
use crate::campaign_cmd::{config_of, load, open_store, status_json, status_text};
use anyhow::Result;
use clap::Args;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use waihu_actors::campaign::actor::{CampaignActor, CampaignEnv, GetStatus, Shutdown, TrunkPool};
use waihu_engine::worker::ShardConfig;
use waihu_sip::AgentConfig;
use waihu_storage::RunState;

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    pub store: crate::campaign_cmd::StoreArg,
    /// Our SIP address (UDP).
    #[arg(long, default_value = "0.0.0.0:5060")]
    pub sip_bind: SocketAddr,
    /// SIP timer T1 in ms.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(10..=5000))]
    pub sip_t1_ms: u64,
    #[arg(long, default_value = "127.0.0.1")]
    pub rtp_ip: IpAddr,
    #[arg(long, default_value = "20000-39999")]
    pub rtp_ports: String,
    /// Media shards (threads carrying RTP; one per core).
    #[arg(long, default_value_t = 1)]
    pub shards: usize,
    /// Runtime worker threads for signalling.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Print each campaign's status this often (seconds; 0: never).
    #[arg(long, default_value_t = 10)]
    pub status_every: u64,
    /// Exit once no campaign is running and no call is up (for batch runs and tests).
    #[arg(long)]
    pub exit_when_idle: bool,
}

pub fn run(a: ServeArgs) -> Result<ExitCode> {
    let store = open_store(&a.store.store)?;
    let media = ShardConfig { bind_ip: a.rtp_ip, ports: port_range(&a.rtp_ports)?, ..ShardConfig::default() };
    let t1 = Duration::from_millis(a.sip_t1_ms);
    let sip = AgentConfig { bind: a.sip_bind, t1, ..AgentConfig::default() };
    let (sip_rt, env) = crate::platform::start(sip, media, a.shards, a.threads)?;
    let mut stop = crate::platform::signals(&sip_rt)?;
    let system = actix::System::new();
    let code = system.block_on(async move {
        let pool = TrunkPool::default();
        let cenv = CampaignEnv { calls: env.clone(), store: store.clone(), trunks: pool, sip_t1: t1 };
        let mut actors = HashMap::new();
        let live = std::rc::Rc::new(std::cell::Cell::new(0usize));
        let recs = match store.campaigns() {
            Ok(r) => r,
            Err(e) => {
                eprintln!("waihu serve: {e}");
                return ExitCode::from(2);
            }
        };
        for rec in recs {
            if matches!(rec.state, RunState::Finished | RunState::Stopped)
                && store.open_attempts(rec.id).map_or(true, |o| o.is_empty())
            {
                continue;
            }
            let cfg = match config_of(&rec) {
                Ok(c) => Arc::new(c),
                Err(e) => {
                    eprintln!("waihu serve: campaign {:?} not started: {e:#}", rec.name);
                    continue;
                }
            };
            let machine = match load(&store, &rec, cfg.clone()) {
                Ok(m) => m,
                Err(e) => {
                    eprintln!("waihu serve: campaign {:?} not loaded: {e:#}", rec.name);
                    continue;
                }
            };
            let recovered = store.open_attempts(rec.id).map_or(0, |o| o.len());
            if recovered > 0 {
                eprintln!(
                    "waihu serve: campaign {:?}: {recovered} attempts in flight at the last stop closed as interrupted",
                    rec.name
                );
            }
            live.set(live.get() + 1);
            let l = live.clone();
            let addr = actix::Actor::start(CampaignActor::new(
                machine,
                cfg,
                cenv.clone(),
                Box::new(move |_| l.set(l.get() - 1)),
            ));
            actors.insert(rec.id, (rec, addr));
        }
        eprintln!("waihu serve: {} campaigns loaded", actors.len());
        let mut last_status = std::time::Instant::now();
        let every = Duration::from_secs(a.status_every);
        loop {
            tokio::select! {
                _ = crate::platform::stopped(&mut stop) => break,
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
            let print = !every.is_zero() && last_status.elapsed() >= every;
            let mut busy = false;
            for (rec, addr) in actors.values() {
                let Ok(r) = addr.send(GetStatus).await else { continue };
                busy |= r.status.run == Some(RunState::Running) || r.status.in_flight > 0;
                if print {
                    eprint!("{}", status_text(&rec.name, &r.status, Some(&r.calls_by_phase)));
                }
            }
            if print {
                last_status = std::time::Instant::now();
            }
            if a.exit_when_idle && !busy {
                break;
            }
        }
        for (rec, addr) in actors.values() {
            if let Ok(r) = addr.send(GetStatus).await {
                println!("{}", status_json(rec, &r.status, Some(&r.calls_by_phase)));
            }
            addr.do_send(Shutdown);
        }
        // Every campaign ends its calls and writes their records, then stops.
        let deadline = std::time::Instant::now() + Duration::from_secs(40);
        while live.get() > 0 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let c = store.commit_stats();
        eprintln!(
            "waihu serve: group commit: {} commits in {} flushes ({:.1} per fsync)",
            c.commits,
            c.flushes,
            c.commits as f64 / c.flushes.max(1) as f64
        );
        if let Err(e) = store.flush() {
            eprintln!("waihu serve: flushing the store: {e}");
            return ExitCode::from(2);
        }
        ExitCode::SUCCESS
    });
    drop(sip_rt);
    Ok(code)
}
