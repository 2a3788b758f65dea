//! `waihu amd`: analyse files and print or write `file,label,decision_ms,end_ms,cause`.

use anyhow::{bail, Context, Result};
use clap::Args;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use waihu_engine::amd::AmdParams;
use waihu_engine::amd_asterisk::{self, AsteriskParams};
use waihu_engine::offline::{analyze_pcm, wav_to_analysis_pcm};

/// Which detector to run.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Detector {
    /// waihu's detector.
    #[default]
    Waihu,
    /// A re-implementation of Asterisk's app_amd with amd.conf defaults (baseline).
    Asterisk,
}

/// One file's result, whichever detector made it.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub label: &'static str,
    pub decision_ms: u64,
    /// Machines: when the message ended (beep end, or silence after the greeting).
    pub end_ms: Option<u64>,
    pub cause: String,
    pub duration_ms: u64,
}

/// AMD parameters; names follow Asterisk's amd.conf so settings carry over.
#[derive(Args, Debug, Clone)]
pub struct ParamArgs {
    /// No speech for this long after answer means silence (ms).
    #[arg(long)]
    pub initial_silence: Option<u64>,
    /// Longest greeting a live person says (ms); longer is a machine.
    #[arg(long)]
    pub greeting: Option<u64>,
    /// Silence after a short greeting that makes it a human (ms).
    #[arg(long)]
    pub after_greeting_silence: Option<u64>,
    /// Give up after this long without a decision (ms).
    #[arg(long)]
    pub total_analysis_time: Option<u64>,
    /// Shortest burst that counts as a word (ms).
    #[arg(long)]
    pub min_word_length: Option<u64>,
    /// Gap that splits two words (ms).
    #[arg(long)]
    pub between_words_silence: Option<u64>,
    /// More words than this is a machine (off unless given).
    #[arg(long)]
    pub maximum_number_of_words: Option<u32>,
    /// Mean absolute amplitude below which a frame is silence (Asterisk units).
    #[arg(long)]
    pub silence_threshold: Option<u16>,
}

impl ParamArgs {
    pub fn params(&self) -> AmdParams {
        let mut p = AmdParams::default();
        let set = |dst: &mut u64, v: Option<u64>| {
            if let Some(v) = v {
                *dst = v;
            }
        };
        set(&mut p.initial_silence_ms, self.initial_silence);
        set(&mut p.greeting_ms, self.greeting);
        set(&mut p.after_greeting_silence_ms, self.after_greeting_silence);
        set(&mut p.total_analysis_time_ms, self.total_analysis_time);
        set(&mut p.min_word_length_ms, self.min_word_length);
        set(&mut p.between_words_silence_ms, self.between_words_silence);
        if self.maximum_number_of_words.is_some() {
            p.maximum_number_of_words = self.maximum_number_of_words;
        }
        if let Some(t) = self.silence_threshold {
            p.silence_threshold = t;
        }
        p
    }
}

#[derive(Args, Debug)]
pub struct AmdArgs {
    /// WAV files to analyse.
    pub files: Vec<PathBuf>,
    /// Analyse every .wav file in this directory.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Write CSV here instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Worker threads (default: available cores).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Detector to run; `asterisk` is the app_amd baseline for comparison.
    #[arg(long, value_enum, default_value_t = Detector::Waihu)]
    pub detector: Detector,
    #[command(flatten)]
    pub params: ParamArgs,
}

/// Lists the .wav files of a directory, sorted.
pub fn wav_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read directory {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("wav")))
        .collect();
    v.sort();
    Ok(v)
}

/// Analyses one WAV file.
pub fn analyze_file(path: &Path, params: AmdParams, detector: Detector) -> Result<Row> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let pcm = wav_to_analysis_pcm(&bytes).with_context(|| format!("{}", path.display()))?;
    let duration_ms = pcm.len() as u64 / 8;
    Ok(match detector {
        Detector::Waihu => {
            let a = analyze_pcm(&pcm, params);
            Row {
                label: a.decision.verdict.label(),
                decision_ms: a.decision.at.as_ms(),
                end_ms: a.message_end.map(|t| t.as_ms()),
                cause: a.decision.cause.to_string(),
                duration_ms,
            }
        }
        Detector::Asterisk => {
            let d = amd_asterisk::analyze_pcm(&pcm, AsteriskParams::default());
            Row { label: d.verdict.label(), decision_ms: d.at.as_ms(), end_ms: None, cause: d.cause, duration_ms }
        }
    })
}

/// Analyses files on `jobs` threads, keeping input order.
pub fn analyze_all(files: &[PathBuf], params: AmdParams, detector: Detector, jobs: usize) -> Vec<Result<Row>> {
    let jobs = jobs.clamp(1, files.len().max(1));
    let chunk = files.len().div_ceil(jobs).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = files
            .chunks(chunk)
            .map(|c| s.spawn(move || c.iter().map(|p| analyze_file(p, params, detector)).collect::<Vec<_>>()))
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect()
    })
}

/// One predictions-CSV row.
pub fn csv_row(name: &str, r: &Row) -> String {
    let end = r.end_ms.map(|t| t.to_string()).unwrap_or_default();
    format!("{name},{},{},{end},{}", r.label, r.decision_ms, r.cause)
}

pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

pub fn run(a: AmdArgs) -> Result<ExitCode> {
    let mut files = a.files.clone();
    if let Some(d) = &a.dir {
        files.extend(wav_files(d)?);
    }
    if files.is_empty() {
        bail!("no input: give WAV files or --dir DIR");
    }
    let results = analyze_all(&files, a.params.params(), a.detector, a.jobs.unwrap_or_else(default_jobs));
    let mut out: Box<dyn Write> = match &a.out {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => Box::new(std::io::stdout().lock()),
    };
    writeln!(out, "file,label,decision_ms,end_ms,cause")?;
    let mut failed = 0;
    for (p, r) in files.iter().zip(results) {
        let name = p.file_name().map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into_owned());
        match r {
            Ok(an) => writeln!(out, "{}", csv_row(&name, &an))?,
            Err(e) => {
                failed += 1;
                eprintln!("waihu amd: {e:#}");
            }
        }
    }
    out.flush()?;
    if let Some(p) = &a.out {
        eprintln!("wrote {} predictions to {}", files.len() - failed, p.display());
    }
    Ok(if failed > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
