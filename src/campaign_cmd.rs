//! `waihu campaign …`, `waihu dnc import` and `waihu cdr export`: the operator's commands
//! on a store. They call the same store and control-plane code the HTTP API will.

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use waihu_actors::campaign::{self, Campaign, CampaignConfig, ImportOptions, Status};
use waihu_storage::{AttemptState, CampaignRecord, KeySource, RunState, Store};

#[derive(Args, Debug)]
pub struct StoreArg {
    /// The store's directory (created on first use; its key in DIR/store.key, 0600, or
    /// in the WAIHU_STORE_KEY environment variable as 64 hex digits).
    #[arg(long)]
    pub store: PathBuf,
}

#[derive(Subcommand, Debug)]
pub enum CampaignCmd {
    /// Create a campaign from a TOML configuration (checked whole first).
    Create {
        #[command(flatten)]
        store: StoreArg,
        #[arg(long)]
        name: String,
        #[arg(long)]
        config: PathBuf,
    },
    /// Import a CSV contact list into a campaign: all rows or none (see --skip-bad-rows).
    Import {
        #[command(flatten)]
        store: StoreArg,
        #[arg(long)]
        name: String,
        csv: PathBuf,
        /// ISO country for numbers written without a country code.
        #[arg(long, default_value = "US")]
        default_country: String,
        /// Import the good rows and report the bad ones (default: a bad row imports nothing).
        #[arg(long)]
        skip_bad_rows: bool,
    },
    /// Mark the campaign running (`waihu serve` dials it).
    Start {
        #[command(flatten)]
        store: StoreArg,
        #[arg(long)]
        name: String,
    },
    Pause {
        #[command(flatten)]
        store: StoreArg,
        #[arg(long)]
        name: String,
    },
    Stop {
        #[command(flatten)]
        store: StoreArg,
        #[arg(long)]
        name: String,
    },
    /// Schedule a callback: the contact is dialled at that time (calling rules permitting),
    /// even after a final disposition, optionally for a named agent.
    Callback {
        #[command(flatten)]
        store: StoreArg,
        #[arg(long)]
        name: String,
        /// The contact's number (normalised with --default-country).
        #[arg(long)]
        phone: String,
        /// When, RFC 3339 with its offset: 2026-12-04T10:30:00+08:00.
        #[arg(long)]
        at: String,
        #[arg(long)]
        agent: Option<String>,
        #[arg(long, default_value = "US")]
        default_country: String,
    },
    /// The campaign's state: dial level, abandon rate, hopper depth, attempts by outcome.
    Status {
        #[command(flatten)]
        store: StoreArg,
        /// One campaign (default: all).
        #[arg(long)]
        name: Option<String>,
        /// One JSON object per campaign instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum DncCmd {
    /// Add the numbers of a CSV (a phone/number column, or one number per line) to a
    /// do-not-call list.
    Import {
        #[command(flatten)]
        store: StoreArg,
        csv: PathBuf,
        #[arg(long, default_value = "internal")]
        list: String,
        #[arg(long, default_value = "US")]
        default_country: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum CdrCmd {
    /// Every attempt of a campaign as CSV (stdout, or --out).
    Export {
        #[command(flatten)]
        store: StoreArg,
        #[arg(long)]
        campaign: String,
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

pub fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Opens the store, saying plainly when another process (a running `waihu serve`) holds it.
pub fn open_store(dir: &Path) -> Result<Store> {
    let store = Store::open(dir, KeySource::default_for(dir)).map_err(|e| {
        let text = e.to_string();
        if text.contains("lock") || text.contains("WouldBlock") || text.contains("Resource temporarily unavailable") {
            anyhow::anyhow!(
                "the store {} is in use by another process (is `waihu serve` running on it?): {text}",
                dir.display()
            )
        } else {
            anyhow::anyhow!("opening the store {}: {text}", dir.display())
        }
    })?;
    if store.reserve_released() {
        eprintln!("waihu: warning: the disk holding {} is full: its space reserve was released to open the store; free space before writing more", dir.display());
    }
    if let Some(e) = store.purge_error() {
        eprintln!("waihu: warning: an unfinished import could not be removed yet ({e}); it stays invisible");
    }
    Ok(store)
}

pub fn find(store: &Store, name: &str) -> Result<CampaignRecord> {
    store.campaign_by_name(name)?.with_context(|| format!("no campaign named {name:?} in the store"))
}

/// The campaign's configuration, checked.
pub fn config_of(rec: &CampaignRecord) -> Result<CampaignConfig> {
    CampaignConfig::from_toml(&rec.config, Path::new(&rec.base_dir)).with_context(|| format!("campaign {:?}", rec.name))
}

/// The campaign as the store holds it (in-flight attempts closed as interrupted).
pub fn load(store: &Store, rec: &CampaignRecord, cfg: Arc<CampaignConfig>) -> Result<Campaign> {
    let index = store.contact_index(rec.id)?;
    let mut states = store.contact_states(rec.id)?;
    let contacts = index.into_iter().map(|m| {
        let s = states.remove(&m.id).unwrap_or_default();
        (m, s)
    });
    let open: Vec<(u64, u64)> = store.open_attempts(rec.id)?.into_iter().map(|a| (a.id, a.contact)).collect();
    let now = chrono::DateTime::from_timestamp_millis(unix_ms() as i64).unwrap_or_default();
    Ok(Campaign::new(rec.id, cfg, rec.state, contacts.collect(), &open, now))
}

fn country(code: &str) -> Result<phonenumber::country::Id> {
    code.parse().map_err(|_| anyhow::anyhow!("{code:?} is not an ISO 3166 country code (e.g. US, CN, GB)"))
}

pub fn run(cmd: CampaignCmd) -> Result<ExitCode> {
    match cmd {
        CampaignCmd::Create { store, name, config } => {
            let text = std::fs::read_to_string(&config).with_context(|| format!("reading {}", config.display()))?;
            let base = config.parent().map(Path::to_path_buf).unwrap_or_default();
            let base = std::fs::canonicalize(if base.as_os_str().is_empty() { Path::new(".") } else { &base })?;
            CampaignConfig::from_toml(&text, &base).with_context(|| format!("{}", config.display()))?;
            let s = open_store(&store.store)?;
            if s.campaign_by_name(&name)?.is_some() {
                bail!("a campaign named {name:?} already exists");
            }
            let rec = s.create_campaign(&name, &text, &base.to_string_lossy(), unix_ms())?;
            println!("campaign {:?} created (id {})", rec.name, rec.id);
        }
        CampaignCmd::Import { store, name, csv, default_country, skip_bad_rows } => {
            let s = open_store(&store.store)?;
            let rec = find(&s, &name)?;
            let file = std::fs::File::open(&csv).with_context(|| format!("opening {}", csv.display()))?;
            let size = file.metadata().map(|m| m.len()).unwrap_or(0);
            let opts = ImportOptions {
                default_country: country(&default_country)?,
                skip_bad_rows,
                ..ImportOptions::default()
            };
            let bar = progress_bar(size);
            let reader = bar.wrap_read(std::io::BufReader::with_capacity(1 << 20, file));
            let result = campaign::import_csv(&s, rec.id, reader, &opts, |_| {});
            bar.finish_and_clear();
            match result {
                Ok(r) => {
                    for e in &r.errors {
                        eprintln!("{}:{e}", csv.display());
                    }
                    println!(
                        "imported {} contacts into {:?}{}",
                        r.imported,
                        name,
                        if r.bad_rows > 0 { format!(" ({} bad rows skipped)", r.bad_rows) } else { String::new() }
                    );
                }
                Err(campaign::ImportError::BadRows { errors, bad, rows, .. }) => {
                    for e in &errors {
                        eprintln!("{}:{e}", csv.display());
                    }
                    bail!("{bad} of {rows} rows are bad; nothing was imported (--skip-bad-rows imports the good ones)");
                }
                Err(e) => return Err(e).with_context(|| format!("{}", csv.display())),
            }
        }
        CampaignCmd::Callback { store, name, phone, at, agent, default_country } => {
            let at = chrono::DateTime::parse_from_rfc3339(&at)
                .map_err(|e| anyhow::anyhow!("--at {at:?}: {e} (RFC 3339, e.g. 2026-12-04T10:30:00+08:00)"))?
                .with_timezone(&chrono::Utc);
            let number = campaign::import::normalise(&phone, country(&default_country)?)
                .map_err(|e| anyhow::anyhow!("--phone: {e}"))?;
            let s = open_store(&store.store)?;
            let rec = find(&s, &name)?;
            let contact = s
                .find_by_phone(rec.id, &number)?
                .with_context(|| format!("campaign {name:?} has no contact with that number"))?;
            if !s.open_attempts(rec.id)?.is_empty() {
                bail!("campaign {name:?} has attempts left open by a crash: run `waihu serve` on the store once to close them first");
            }
            let mut m = load(&s, &rec, Arc::new(config_of(&rec)?))?;
            let now = chrono::DateTime::from_timestamp_millis(unix_ms() as i64).unwrap_or_default();
            m.handle_input(campaign::machine::Input::Callback { contact: contact.id, at, agent }, now);
            // Only what the callback changed: attempts left open by a crash are closed by
            // `waihu serve` when it loads the campaign.
            while let Some(o) = m.poll_output() {
                match o {
                    campaign::machine::Output::State { contact, state } => {
                        s.set_contact_state(rec.id, contact, &state)?;
                    }
                    campaign::machine::Output::Run(run) => {
                        s.set_run_state(rec.id, run)?;
                    }
                    _ => {}
                }
            }
            s.flush()?;
            println!("callback for contact {} of {name:?} at {}", contact.id, at.to_rfc3339());
        }
        CampaignCmd::Start { store, name } => set_state(&store.store, &name, RunState::Running)?,
        CampaignCmd::Pause { store, name } => set_state(&store.store, &name, RunState::Paused)?,
        CampaignCmd::Stop { store, name } => set_state(&store.store, &name, RunState::Stopped)?,
        CampaignCmd::Status { store, name, json } => {
            let s = match open_store(&store.store) {
                Ok(s) => s,
                Err(e) => {
                    let line =
                        format!("{} {}", if json { "status-json" } else { "status" }, name.as_deref().unwrap_or("*"));
                    match via_serve(&store.store, &line)? {
                        Some(out) => {
                            print!("{out}");
                            return Ok(ExitCode::SUCCESS);
                        }
                        None => return Err(e),
                    }
                }
            };
            let recs = match name {
                Some(n) => vec![find(&s, &n)?],
                None => s.campaigns()?,
            };
            for rec in recs {
                let status = stored_status(&s, &rec)?;
                if json {
                    println!("{}", status_json(&rec, &status, None));
                } else {
                    print!("{}", status_text(&rec.name, &status, None));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The socket a running `waihu serve` takes commands on, in its store's directory.
pub fn control_socket(dir: &Path) -> PathBuf {
    dir.join("control.sock")
}

/// Sends one command line to the `waihu serve` running on this store, if there is one;
/// its answer, or None when none listens.
pub fn via_serve(dir: &Path, line: &str) -> Result<Option<String>> {
    use std::io::{BufRead, Write};
    let Ok(mut conn) = std::os::unix::net::UnixStream::connect(control_socket(dir)) else { return Ok(None) };
    conn.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    writeln!(conn, "{line}")?;
    let mut out = String::new();
    let mut ok = None;
    for l in std::io::BufReader::new(conn).lines() {
        let l = l?;
        match l.as_str() {
            "ok" => ok = Some(true),
            e if e.starts_with("error: ") => {
                ok = Some(false);
                out = e["error: ".len()..].to_string();
            }
            text => {
                out += text;
                out.push('\n');
            }
        }
    }
    match ok {
        Some(true) => Ok(Some(out)),
        Some(false) => bail!("waihu serve: {out}"),
        None => bail!("waihu serve did not answer {line:?}"),
    }
}

fn set_state(dir: &Path, name: &str, state: RunState) -> Result<()> {
    let s = match open_store(dir) {
        Ok(s) => s,
        Err(e) => {
            let verb = match state {
                RunState::Running => "start",
                RunState::Paused => "pause",
                _ => "stop",
            };
            // The store is held by a running `waihu serve`: ask it.
            return match via_serve(dir, &format!("{verb} {name}"))? {
                Some(out) => {
                    print!("{out}");
                    Ok(())
                }
                None => Err(e),
            };
        }
    };
    let rec = find(&s, name)?;
    if state == RunState::Running {
        config_of(&rec)?;
        if s.contact_count(rec.id)? == 0 {
            bail!("campaign {name:?} has no contacts: import a list first");
        }
    }
    s.set_run_state(rec.id, state)?;
    println!("campaign {name:?}: {state}");
    Ok(())
}

/// A campaign's status from the store alone (no process is dialling it).
fn stored_status(s: &Store, rec: &CampaignRecord) -> Result<Status> {
    let cfg = Arc::new(config_of(rec)?);
    let now = chrono::DateTime::from_timestamp_millis(unix_ms() as i64).unwrap_or_default();
    let open = s.open_attempts(rec.id)?.len();
    let mut machine = load(s, rec, cfg)?;
    let reviews = s.review_counts(rec.id)?;
    machine.set_reviewed(reviews.reviewed, reviews.humans);
    let mut st = machine.status(now);
    // Loading closes the in-flight attempts in memory; the stored ones are still open.
    st.in_flight = open;
    let mut ended = 0u64;
    for a in s.attempts(rec.id) {
        ended += u64::from(a?.state == AttemptState::Ended);
    }
    st.attempts = ended + open as u64;
    Ok(st)
}

pub fn status_text(name: &str, s: &Status, calls: Option<&std::collections::BTreeMap<String, u64>>) -> String {
    let run = s.run.map_or("?", |r| r.label());
    let mut out = format!(
        "campaign {name:?}: {run}, {} mode, lines {}/{} (dial level {:.2}), hopper {} ({} due now), contacts {} ({} final), attempts {}\n",
        s.mode, s.in_flight, s.lines, s.dial_level, s.hopper, s.due_now, s.contacts, s.finished_contacts, s.attempts
    );
    let source = if s.amd_reviewed >= waihu_actors::campaign::machine::MIN_REVIEWED {
        format!("measured: {} people in {} reviewed samples", s.amd_reviewed_people, s.amd_reviewed)
    } else {
        format!("configured; {} of {} samples reviewed", s.amd_reviewed, waihu_actors::campaign::machine::MIN_REVIEWED)
    };
    out += &format!(
        "  abandon rate {:.2}% over the legal window ({:.1} estimated AMD false positives counted, at {:.1}%: {source})\n",
        100.0 * s.abandon_rate,
        s.estimated_amd_false_positives,
        100.0 * s.amd_false_positive_rate
    );
    out += &format!("  outcomes {:?}\n", s.by_disposition);
    out += &format!("  final {:?}\n", s.final_by_label);
    if s.callbacks > 0 {
        out += &format!("  callbacks pending {}\n", s.callbacks);
    }
    if !s.blocked_by_rule.is_empty() {
        out += &format!("  held back by rule {:?}\n", s.blocked_by_rule);
    }
    if let Some(c) = calls {
        out += &format!("  calls by state {c:?}\n");
    }
    out
}

pub fn status_json(
    rec: &CampaignRecord,
    s: &Status,
    calls: Option<&std::collections::BTreeMap<String, u64>>,
) -> serde_json::Value {
    serde_json::json!({
        "campaign": rec.name,
        "id": rec.id,
        "state": s.run.map(|r| r.label()),
        "mode": s.mode,
        "lines": s.lines,
        "in_flight": s.in_flight,
        "dial_level": s.dial_level,
        "hopper": s.hopper,
        "due_now": s.due_now,
        "contacts": s.contacts,
        "final_contacts": s.finished_contacts,
        "attempts": s.attempts,
        "abandon_rate": s.abandon_rate,
        "estimated_amd_false_positives": s.estimated_amd_false_positives,
        "amd_false_positive_rate": s.amd_false_positive_rate,
        "amd_reviewed": s.amd_reviewed,
        "amd_reviewed_people": s.amd_reviewed_people,
        "by_disposition": s.by_disposition,
        "final": s.final_by_label,
        "blocked_by_rule": s.blocked_by_rule,
        "callbacks": s.callbacks,
        "calls_by_state": calls,
    })
}

fn progress_bar(bytes: u64) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(bytes);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
    {
        bar.set_style(style);
    }
    bar
}

pub fn dnc(cmd: DncCmd) -> Result<ExitCode> {
    let DncCmd::Import { store, csv, list, default_country } = cmd;
    let country = country(&default_country)?;
    let text = std::fs::read_to_string(&csv).with_context(|| format!("reading {}", csv.display()))?;
    let mut rdr = ::csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(text.as_bytes());
    let mut numbers = Vec::new();
    let mut bad = Vec::new();
    let mut column = 0;
    for (i, row) in rdr.records().enumerate() {
        let row = row.with_context(|| format!("{}: line {}", csv.display(), i + 1))?;
        if i == 0 {
            if let Some(c) = row
                .iter()
                .position(|h| ["phone", "number", "phone_number"].contains(&h.trim().to_ascii_lowercase().as_str()))
            {
                column = c;
                continue;
            }
        }
        let raw = row.get(column).unwrap_or_default();
        if raw.trim().is_empty() {
            continue;
        }
        match campaign::import::normalise(raw, country) {
            Ok(n) => numbers.push(n),
            Err(e) => bad.push(format!("{}:{}:{}: {e}", csv.display(), i + 1, column + 1)),
        }
    }
    if !bad.is_empty() {
        for b in bad.iter().take(100) {
            eprintln!("{b}");
        }
        bail!("{} bad numbers; nothing was added", bad.len());
    }
    let s = open_store(&store.store)?;
    let new = s.add_dnc(&list, &numbers, unix_ms())?;
    println!("{} numbers on the {list:?} do-not-call list ({new} new); {} in all", numbers.len(), s.dnc_count());
    Ok(ExitCode::SUCCESS)
}

pub fn cdr(cmd: CdrCmd) -> Result<ExitCode> {
    let CdrCmd::Export { store, campaign, out } = cmd;
    let s = open_store(&store.store)?;
    let rec = find(&s, &campaign)?;
    let sink: Box<dyn std::io::Write> = match &out {
        Some(p) => Box::new(std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut w = ::csv::Writer::from_writer(sink);
    w.write_record([
        "attempt",
        "campaign",
        "contact",
        "phone",
        "trunk",
        "call_id",
        "state",
        "created_unix_ms",
        "started_unix_ms",
        "answered_unix_ms",
        "ended_unix_ms",
        "disposition",
        "answered_by",
        "amd_cause",
        "final_status",
        "ended_by",
        "hangup_reason",
        "ring_ms",
        "answer_ms",
        "connect_ms",
        "talk_ms",
        "duration_ms",
        "sip_error",
        "media_error",
    ])?;
    let opt = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
    let mut n = 0u64;
    for a in s.attempts(rec.id) {
        let a = a?;
        let phone = s.contact(rec.id, a.contact)?.map(|c| c.contact.phone).unwrap_or_default();
        let r = a.record.clone().unwrap_or_default();
        let state = match a.state {
            AttemptState::Dialing => "dialing",
            AttemptState::Ended => "ended",
        };
        w.write_record([
            a.id.to_string(),
            rec.name.clone(),
            a.contact.to_string(),
            phone,
            a.trunk.clone(),
            a.call_id.clone(),
            state.to_string(),
            a.created_unix_ms.to_string(),
            r.started_unix_ms.to_string(),
            opt(r.answered_unix_ms),
            r.ended_unix_ms.to_string(),
            if a.record.is_some() { r.disposition.to_string() } else { String::new() },
            r.answered_by.map(|b| b.to_string()).unwrap_or_default(),
            r.amd_cause.unwrap_or_default(),
            opt(r.final_status.map(u64::from)),
            if a.record.is_some() { format!("{:?}", r.ended_by).to_lowercase() } else { String::new() },
            r.hangup_reason.map(|h| h.to_string()).unwrap_or_default(),
            opt(r.ring_ms),
            opt(r.answer_ms),
            opt(r.connect_ms),
            opt(r.talk_ms),
            r.duration_ms.to_string(),
            r.sip_error.clone().unwrap_or_default(),
            r.media_error.clone().unwrap_or_default(),
        ])?;
        n += 1;
    }
    w.flush()?;
    if out.is_some() {
        eprintln!("{n} attempts written");
    }
    Ok(ExitCode::SUCCESS)
}
