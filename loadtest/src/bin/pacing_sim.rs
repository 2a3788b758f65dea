//! pacing-sim: the pacing benchmark. Runs simulated agent shifts (actors/src/pacing/shift.rs)
//! for each agent count and seed under three pacers (progressive, a VICIdial-style adaptive
//! dial level, waihu's predictive) and prints a Markdown table: occupancy and abandon rate,
//! the mean over seeds and the worst seed.
//!
//! cargo run --release -p waihu-loadtest --bin pacing-sim -- --seeds 20 --hours 8

use clap::Parser;
use std::sync::Mutex;
use std::time::Duration;
use waihu_actors::pacing::baseline::BaselineConfig;
use waihu_actors::pacing::pacer::{DialMode, PacerConfig};
use waihu_actors::pacing::shift::{run_shift, Controller, ShiftConfig, ShiftReport};

#[derive(Parser, Debug)]
#[command(about = "Simulated shifts: waihu's predictive pacer against progressive and a VICIdial-style baseline")]
struct Args {
    /// Agent counts, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "5,20,50,200")]
    agents: Vec<u32>,
    /// Seeds per agent count (1..=N).
    #[arg(long, default_value_t = 20)]
    seeds: u64,
    /// Shift length, hours.
    #[arg(long, default_value_t = 8.0)]
    hours: f64,
    /// Abandon targets for predictive, comma-separated: one row each (the cap stays 3%).
    #[arg(long, value_delimiter = ',', default_value = "0.02")]
    targets: Vec<f64>,
    /// Worker threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

fn controllers(targets: &[f64]) -> Vec<Controller> {
    let mut c = vec![
        Controller::Pacer(PacerConfig { mode: DialMode::Progressive, ..PacerConfig::default() }),
        Controller::Baseline(BaselineConfig::default()),
    ];
    for &t in targets {
        c.push(Controller::Pacer(PacerConfig::for_target(t)));
    }
    c
}

fn label(c: &Controller) -> String {
    match c {
        Controller::Pacer(p) if p.mode == DialMode::Predictive => {
            format!("{} (target {}%)", c.label(), p.abandon_target * 100.0)
        }
        _ => c.label(),
    }
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    anyhow::ensure!(a.seeds > 0 && a.hours > 0.0 && a.threads > 0, "--seeds, --hours and --threads must be positive");
    anyhow::ensure!(a.targets.iter().all(|t| *t > 0.0 && *t < 0.03), "--targets are fractions below the 3% cap");
    let ctls = controllers(&a.targets);
    let mut jobs = Vec::new();
    for &agents in &a.agents {
        for c in 0..ctls.len() {
            for seed in 1..=a.seeds {
                jobs.push((agents, c, seed));
            }
        }
    }
    let jobs = Mutex::new(jobs.into_iter());
    let results: Mutex<Vec<(u32, usize, ShiftReport)>> = Mutex::new(Vec::new());
    let started = std::time::Instant::now();
    std::thread::scope(|s| {
        for _ in 0..a.threads {
            s.spawn(|| loop {
                let next = jobs.lock().map(|mut j| j.next()).unwrap_or(None);
                let Some((agents, c, seed)) = next else { break };
                let cfg =
                    ShiftConfig { length: Duration::from_secs_f64(a.hours * 3600.0), ..ShiftConfig::standard(agents) };
                let r = run_shift(&cfg, &ctls[c], seed);
                if let Ok(mut out) = results.lock() {
                    out.push((agents, c, r));
                }
            });
        }
    });
    let results = results.into_inner().map_err(|_| anyhow::anyhow!("a worker panicked"))?;
    println!(
        "{} seeds per row, {} h shifts, 30% connects, 60% of them people, talk log-normal mean 120 s (σ 0.6), 10 s wrap-up, 2 s to connect ({:.0} s)\n",
        a.seeds,
        a.hours,
        started.elapsed().as_secs_f64()
    );
    println!("| agents | pacer | busy (talk+wrap) mean | worst | talk mean | worst | abandon mean | worst | peak after 100 lives (worst) | dials/h |");
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &agents in &a.agents {
        for (c, ctl) in ctls.iter().enumerate() {
            let rs: Vec<&ShiftReport> =
                results.iter().filter(|(n, k, _)| *n == agents && *k == c).map(|(_, _, r)| r).collect();
            let n = rs.len().max(1) as f64;
            let mean = |f: &dyn Fn(&ShiftReport) -> f64| rs.iter().map(|r| f(r)).sum::<f64>() / n;
            let min = |f: &dyn Fn(&ShiftReport) -> f64| rs.iter().map(|r| f(r)).fold(f64::INFINITY, f64::min);
            let max = |f: &dyn Fn(&ShiftReport) -> f64| rs.iter().map(|r| f(r)).fold(0.0, f64::max);
            println!(
                "| {agents} | {} | {:.1}% | {:.1}% | {:.1}% | {:.1}% | {:.2}% | {:.2}% | {:.2}% | {:.0} |",
                label(ctl),
                100.0 * mean(&|r| r.busy_occupancy),
                100.0 * min(&|r| r.busy_occupancy),
                100.0 * mean(&|r| r.talk_occupancy),
                100.0 * min(&|r| r.talk_occupancy),
                100.0 * mean(&|r| r.abandon_rate()),
                100.0 * max(&|r| r.abandon_rate()),
                100.0 * max(&|r| r.peak_rate),
                mean(&|r| r.dials as f64) / a.hours,
            );
        }
    }
    Ok(())
}
