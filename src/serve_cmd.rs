//! `waihu serve --store DIR`: runs the store's campaigns. Each running campaign is a
//! `CampaignActor` on one actix system, its calls `CallActor`s; the SIP agent and the media
//! shards are shared, and so are the trunks' CPS and channel caps. On SIGINT/SIGTERM the
//! live calls are ended (each writes its record) before the process exits; after a SIGKILL
//! the next start closes the attempts that were in flight as `interrupted`.

use crate::call_cmd::port_range;
use crate::campaign_cmd::{config_of, load, open_store, status_json, status_text};
use actix::Actor;
use anyhow::Result;
use clap::Args;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use waihu_actors::campaign::actor::{CampaignActor, CampaignEnv, GetStatus, Shutdown, TrunkPool};
use waihu_actors::campaign::staffed::Staffing;
use waihu_actors::router::actor::RouterActor;
use waihu_actors::router::actor::SetPool;
use waihu_actors::router::PoolConfig;
use waihu_engine::worker::ShardConfig;
use waihu_sip::registrar::RegistrarConfig;
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
    // The registrar for agents' phones (their credentials come from the store).
    let registrar = RegistrarConfig { realm: crate::agent_cmd::REALM.into(), ..RegistrarConfig::default() };
    let sip = AgentConfig { bind: a.sip_bind, t1, registrar: Some(registrar), ..AgentConfig::default() };
    let (sip_rt, env) = crate::platform::start(sip, media, a.shards, a.threads)?;
    let mut stop = crate::platform::signals(&sip_rt)?;
    let socket = crate::campaign_cmd::control_socket(&a.store.store);
    let sock = socket.clone();
    let system = actix::System::new();
    let code = system.block_on(async move {
        let pool = TrunkPool::default();
        let cenv = CampaignEnv { calls: env.clone(), store: store.clone(), trunks: pool, sip_t1: t1 };
        let mut actors = HashMap::new();
        let mut skills: HashMap<u64, Option<String>> = HashMap::new();
        let router = RouterActor::new(Box::new(|_| {})).start();
        let time_to_audio: std::rc::Rc<std::cell::RefCell<Vec<u64>>> = Default::default();
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
            // The campaign's agents are its router pool, ranked as its config says.
            let pool = rec.id as u32;
            let config = PoolConfig { strategy: cfg.routing, ..PoolConfig::default() };
            router.do_send(SetPool { pool, config });
            let skill = cfg.skill.clone();
            let min_level = cfg.min_skill_level;
            let staffing =
                Staffing { router: router.clone(), pool, min_level, time_to_audio: Some(time_to_audio.clone()) };
            let addr = actix::Actor::start(
                CampaignActor::new(machine, cfg, cenv.clone(), Box::new(move |_| l.set(l.get() - 1)))
                    .with_staffing(staffing),
            );
            skills.insert(rec.id, skill);
            actors.insert(rec.id, (rec, addr));
        }
        let by_name: HashMap<String, (u64, actix::Addr<CampaignActor>, Option<String>)> = actors
            .values()
            .map(|(rec, addr)| (rec.name.clone(), (rec.id, addr.clone(), skills[&rec.id].clone())))
            .collect();
        let floor = match crate::floor::start(&store, &env, router.clone(), &by_name) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("waihu serve: agents: {e:#}");
                return ExitCode::from(2);
            }
        };
        eprintln!("waihu serve: {} campaigns loaded, {} agents", actors.len(), floor.agents);
        let actors = std::rc::Rc::new(actors);
        let _ = std::fs::remove_file(&sock);
        match tokio::net::UnixListener::bind(&sock) {
            Ok(listener) => {
                let actors = actors.clone();
                actix::spawn(async move {
                    while let Ok((conn, _)) = listener.accept().await {
                        actix::spawn(control(conn, actors.clone()));
                    }
                });
            }
            Err(e) => eprintln!("waihu serve: no control socket at {}: {e}", sock.display()),
        }
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
        floor.logout_all();
        // Every campaign ends its calls and writes their records, then stops.
        let deadline = std::time::Instant::now() + Duration::from_secs(40);
        while live.get() > 0 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The agents' sessions end with their BYE (a moment).
        tokio::time::sleep(Duration::from_millis(300)).await;
        print_times("time to agent (AMD human decision to the bridge ordered)", &floor.connects.borrow());
        print_times(
            "time to audio (AMD human decision to the first customer frame relayed to the agent)",
            &time_to_audio.borrow(),
        );
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
    let _ = std::fs::remove_file(&socket);
    drop(sip_rt);
    Ok(code)
}

/// Median, p99 and max of per-call times (µs), on stderr.
fn print_times(what: &str, times: &[u64]) {
    if times.is_empty() {
        return;
    }
    let mut t = times.to_vec();
    t.sort_unstable();
    let q = |p: f64| t[((t.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0;
    eprintln!(
        "waihu serve: {what} over {} calls: median {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        t.len(),
        q(0.5),
        q(0.99),
        q(1.0)
    );
}

type Actors = std::rc::Rc<HashMap<u64, (waihu_storage::CampaignRecord, actix::Addr<CampaignActor>)>>;

/// One control connection: a command line in (`start|pause|stop NAME`, `status NAME|*`,
/// `status-json NAME|*`), its answer out, then `ok` or `error: ...`.
async fn control(conn: tokio::net::UnixStream, actors: Actors) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let (read, mut write) = conn.into_split();
    let mut line = String::new();
    let mut reader = tokio::io::BufReader::new(read);
    let reply = match tokio::time::timeout(Duration::from_secs(5), reader.read_line(&mut line)).await {
        Ok(Ok(n)) if n > 0 && n < 1024 => answer(line.trim(), &actors).await,
        _ => Err("expected one command line".to_string()),
    };
    let text = match reply {
        Ok(out) => format!("{out}ok\n"),
        Err(e) => format!("error: {e}\n"),
    };
    let _ = write.write_all(text.as_bytes()).await;
}

async fn answer(line: &str, actors: &Actors) -> Result<String, String> {
    use waihu_actors::campaign::actor::Control;
    let (verb, name) = line.split_once(' ').unwrap_or((line, "*"));
    let chosen: Vec<_> = actors.values().filter(|(rec, _)| name == "*" || rec.name == name).collect();
    if chosen.is_empty() {
        return Err(format!(
            "no campaign {name:?} is loaded (campaigns stopped or finished before this start are not)"
        ));
    }
    let mut out = String::new();
    for (rec, addr) in chosen {
        let control = match verb {
            "start" => Some(Control::Start),
            "pause" => Some(Control::Pause),
            "stop" => Some(Control::Stop),
            "status" | "status-json" => None,
            other => return Err(format!("unknown command {other:?}")),
        };
        if let Some(c) = control {
            addr.send(c).await.map_err(|e| e.to_string())?;
        }
        let r = addr.send(GetStatus).await.map_err(|e| e.to_string())?;
        match verb {
            "status-json" => out += &format!("{}\n", status_json(rec, &r.status, Some(&r.calls_by_phase))),
            "status" => out += &status_text(&rec.name, &r.status, Some(&r.calls_by_phase)),
            _ => out += &format!("campaign {:?}: {}\n", rec.name, r.status.run.map_or("?", |s| s.label())),
        }
    }
    Ok(out)
}
