//! `waihu demo`: AMD over the sample calls that ship in samples/, as a table and a score.

use crate::amd_cmd::{analyze_all, default_jobs, wav_files, Detector, ParamArgs};
use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use waihu_engine::amd_eval::{parse_labels, score, Prediction};

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Directory with sample WAVs and labels.csv.
    #[arg(long, default_value = "samples")]
    pub samples: PathBuf,
    /// Detector to run; `asterisk` shows the app_amd baseline on the same calls.
    #[arg(long, value_enum, default_value_t = Detector::Waihu)]
    pub detector: Detector,
    #[command(flatten)]
    pub params: ParamArgs,
}

pub fn run(a: DemoArgs) -> Result<ExitCode> {
    let labels_path = a.samples.join("labels.csv");
    let text =
        std::fs::read_to_string(&labels_path).with_context(|| format!("cannot read {}", labels_path.display()))?;
    let labels = parse_labels(&text).with_context(|| labels_path.display().to_string())?;
    let files = wav_files(&a.samples)?;
    let t0 = std::time::Instant::now();
    let results = analyze_all(&files, a.params.params(), a.detector, default_jobs());
    let wall = t0.elapsed();
    println!("waihu demo: answering-machine detection on {} sample calls in {}\n", files.len(), a.samples.display());
    println!(
        "{:<14} {:<8} {:<8} {:>7} {:>7} {:>7}  {:<26} ok",
        "file", "truth", "decided", "at_ms", "lag_ms", "end_ms", "cause"
    );
    let mut preds = Vec::new();
    let mut audio_ms = 0;
    for (p, r) in files.iter().zip(results) {
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let row = match r {
            Ok(row) => row,
            Err(e) => {
                println!("{name:<14} error: {e:#}");
                continue;
            }
        };
        audio_ms += row.duration_ms;
        let l = labels.iter().find(|l| l.file == name);
        let truth = l.map_or("?", |l| l.label.as_str());
        let label = row.label;
        let at = row.decision_ms;
        // For humans: how long after they stopped talking we decided.
        let lag = l
            .filter(|l| l.label == "human")
            .and_then(|l| l.greeting_end_ms)
            .map_or(String::from("-"), |g| format!("{:.0}", at as f64 - g));
        let end = row.end_ms.map_or(String::from("-"), |e| e.to_string());
        let ok = if truth == label { "yes" } else { "NO" };
        println!("{name:<14} {truth:<8} {label:<8} {at:>7} {lag:>7} {end:>7}  {:<26} {ok}", row.cause);
        preds.push(Prediction {
            file: name,
            label: label.to_string(),
            decision_ms: at as f64,
            end_ms: row.end_ms.map(|e| e as f64),
        });
    }
    let s = score(&labels, &preds);
    println!("\n{s}");
    println!(
        "\n{} calls ({:.1} s of recorded audio) in {:.3} s wall on {} threads; analysis of a call stops once AMD is done",
        files.len(),
        audio_ms as f64 / 1000.0,
        wall.as_secs_f64(),
        default_jobs()
    );
    Ok(ExitCode::SUCCESS)
}
