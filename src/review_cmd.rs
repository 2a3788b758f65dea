//! `waihu review list|export|judge`: the AMD review samples (the first seconds of a share
//! of the calls AMD called machine). An operator listens and says whether it was a person;
//! once 20 are judged, their rate replaces the configured `amd_false_positive_rate` in the
//! abandon rate. Run with `waihu serve` stopped (the store has one writer).

use crate::campaign_cmd::{find, open_store, unix_ms, StoreArg};
use anyhow::{bail, Context, Result};
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum ReviewCmd {
    /// The samples of a campaign: attempt, when, size, verdict.
    List {
        #[command(flatten)]
        store: StoreArg,
        #[arg(long)]
        campaign: String,
    },
    /// Writes one sample's audio to a WAV file.
    Export {
        #[command(flatten)]
        store: StoreArg,
        #[arg(long)]
        campaign: String,
        #[arg(long)]
        attempt: u64,
        #[arg(long)]
        out: PathBuf,
    },
    /// The operator's verdict: `--person` (AMD was wrong) or `--machine`.
    Judge {
        #[command(flatten)]
        store: StoreArg,
        #[arg(long)]
        campaign: String,
        #[arg(long)]
        attempt: u64,
        #[arg(long, conflicts_with = "machine")]
        person: bool,
        #[arg(long)]
        machine: bool,
    },
}

pub fn run(cmd: ReviewCmd) -> Result<ExitCode> {
    match cmd {
        ReviewCmd::List { store, campaign } => {
            let s = open_store(&store.store)?;
            let rec = find(&s, &campaign)?;
            for r in s.reviews(rec.id)? {
                let verdict = match r.human {
                    Some(true) => "person (AMD was wrong)",
                    Some(false) => "machine",
                    None => "not reviewed",
                };
                let at = chrono::DateTime::from_timestamp_millis(r.at_unix_ms as i64).unwrap_or_default();
                println!("attempt {:>8}  {}  {:>6} bytes  {verdict}", r.attempt, at.to_rfc3339(), r.wav.len());
            }
            let c = s.review_counts(rec.id)?;
            println!("{} samples, {} reviewed, {} of them people", c.samples, c.reviewed, c.humans);
        }
        ReviewCmd::Export { store, campaign, attempt, out } => {
            let s = open_store(&store.store)?;
            let rec = find(&s, &campaign)?;
            let Some(r) = s.review(rec.id, attempt)? else { bail!("no review sample for attempt {attempt}") };
            std::fs::write(&out, &r.wav).with_context(|| format!("writing {}", out.display()))?;
            println!("{} bytes to {}", r.wav.len(), out.display());
        }
        ReviewCmd::Judge { store, campaign, attempt, person, machine } => {
            if person == machine {
                bail!("say --person or --machine");
            }
            let s = open_store(&store.store)?;
            let rec = find(&s, &campaign)?;
            s.judge_review(rec.id, attempt, person, unix_ms())?;
            let c = s.review_counts(rec.id)?;
            println!(
                "attempt {attempt}: {}; {} of {} reviewed were people",
                if person { "a person" } else { "a machine" },
                c.humans,
                c.reviewed
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
