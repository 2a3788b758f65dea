//! Crash safety, end to end: a real `waihu serve` runs a broadcast campaign of a few
//! hundred contacts against a SIPp far end of mixed outcomes (a person, a voicemail, busy,
//! no answer: by the number's last digit, tests/sipp/uas_campaign.xml). It is killed with
//! SIGKILL at seeded random points, five times, and restarted each time; the last run goes
//! to the end. Then the store and SIPp's own message log must agree:
//!
//! - every contact has its final disposition, and no attempt is left open;
//! - the CDR has one row per attempt, and the status counts the same attempts;
//! - every INVITE SIPp received belongs to exactly one attempt (its Call-ID names the
//!   attempt), no attempt's INVITE was sent twice as new transactions, and every attempt
//!   that got an answer from SIPp is in SIPp's log.
//!
//! Needs SIPp (`make test` installs Debian's sip-tester). Ports are free ones picked at run
//! time, on loopback; every process is bounded in time and killed by its PID.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use waihu_tests::{free_udp_port, wait_child as wait};

const WAIHU: &str = env!("CARGO_BIN_EXE_waihu");
const CONTACTS: usize = 300;
const KILLS: usize = 5;

/// A small seeded generator (splitmix64): the kill points are reproducible by seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn between(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn waihu(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(WAIHU).args(args).output().expect("waihu runs");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

fn message_wav(path: &Path) {
    // One second of a soft 440 Hz tone: the broadcast message.
    let pcm: Vec<i16> =
        (0..8000).map(|i| (3000.0 * (2.0 * std::f64::consts::PI * 440.0 * i as f64 / 8000.0).sin()) as i16).collect();
    std::fs::write(path, waihu_engine::wav::write_pcm16(8000, &pcm)).expect("message");
}

struct Setup {
    dir: PathBuf,
    store: String,
    sip_port: u16,
    sipp: Child,
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = self.sipp.kill();
        let _ = self.sipp.wait();
    }
}

fn setup(tag: &str, contacts: usize, start: bool) -> Setup {
    setup_with(tag, contacts, start, "")
}

fn setup_with(tag: &str, contacts: usize, start: bool, extra_config: &str) -> Setup {
    let ok = Command::new("sipp").arg("-v").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
    assert!(ok, "SIPp is not installed: `make test` installs Debian's sip-tester (scripts/deps.sh)");
    let dir = std::env::temp_dir().join(format!("waihu-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sipp/uas_campaign.xml");
    std::fs::copy(scenario, dir.join("uas_campaign.xml")).expect("scenario");
    std::fs::write(dir.join("human.ulaw"), waihu_tests::sample_g711("call_04.wav", true)).expect("audio");
    std::fs::write(dir.join("machine.ulaw"), waihu_tests::sample_g711("call_01.wav", true)).expect("audio");
    message_wav(&dir.join("message.wav"));
    let (sipp_port, media_port, sip_port) = (free_udp_port(), free_udp_port(), free_udp_port());
    // Calling hours all day (the test may run at any hour), no minimum ring.
    std::fs::write(
        dir.join("profile.toml"),
        "name = \"test_all_day\"\nabandon_cap = 0.03\nabandon_window_hours = 24\nwindow = [\"00:00\", \"23:59\"]\n",
    )
    .expect("profile");
    let campaign = format!(
        r#"mode = "broadcast"
lines = 60
compliance = "profile.toml"
default_timezone = "UTC"
message = "message.wav"
ring_timeout_seconds = 5
max_duration_seconds = 40
{extra_config}
[[trunk]]
name = "sipp"
host = "127.0.0.1"
port = {sipp_port}
max_cps = 60
max_channels = 100
options_interval_secs = 0
[retry]
lifetime_max = 5
requeue_seconds = 1
[retry.rules]
busy = {{ delay_seconds = 2, max = 2 }}
no_answer = {{ delay_seconds = 2, max = 2 }}
machine = {{ delay_seconds = 2, max = 1 }}
"#
    );
    std::fs::write(dir.join("campaign.toml"), campaign).expect("campaign");
    let mut csv = String::from("phone,name\n");
    for i in 0..contacts {
        csv += &format!("+861380013{i:04},Person {i}\n");
    }
    std::fs::write(dir.join("contacts.csv"), csv).expect("contacts");
    let log = std::fs::File::create(dir.join("sipp.out")).expect("log");
    let sipp = Command::new("sipp")
        .current_dir(&dir)
        .args(["-sf", "uas_campaign.xml", "-i", "127.0.0.1", "-p", &sipp_port.to_string()])
        .args(["-mi", "127.0.0.1", "-mp", &media_port.to_string(), "-nostdin", "-trace_msg"])
        .args(["-timeout", "600s"])
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("SIPp starts");
    std::thread::sleep(Duration::from_millis(300));
    let store = dir.join("store").to_string_lossy().to_string();
    let config = dir.join("campaign.toml").to_string_lossy().to_string();
    let list = dir.join("contacts.csv").to_string_lossy().to_string();
    let mut steps = vec![
        vec!["campaign", "create", "--store", &store, "--name", "crash", "--config", &config],
        vec!["campaign", "import", "--store", &store, "--name", "crash", &list],
    ];
    if start {
        steps.push(vec!["campaign", "start", "--store", &store, "--name", "crash"]);
    }
    for args in steps {
        let (ok, out, err) = waihu(&args);
        assert!(ok, "waihu {args:?}: {out}\n{err}");
    }
    Setup { dir, store, sip_port, sipp }
}

fn serve(s: &Setup, run: usize) -> Child {
    serve_with(s, run, &["--rtp-ports", "46000-46399", "--exit-when-idle"])
}

fn serve_with(s: &Setup, run: usize, extra: &[&str]) -> Child {
    let err = std::fs::File::create(s.dir.join(format!("serve-{run}.err"))).expect("log");
    let out = std::fs::File::create(s.dir.join(format!("serve-{run}.out"))).expect("log");
    Command::new(WAIHU)
        .args(["serve", "--store", &s.store, "--sip-bind", &format!("127.0.0.1:{}", s.sip_port)])
        .args(extra)
        .args(["--status-every", "2"])
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("waihu serve starts")
}

/// SIPp's message log: for each Call-ID, the distinct INVITE transactions (by CSeq and
/// Via branch: a retransmission repeats both).
fn sipp_invites(dir: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for e in std::fs::read_dir(dir).expect("dir").flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if !(name.starts_with("uas_campaign_") && name.ends_with("_messages.log")) {
            continue;
        }
        let text = std::fs::read_to_string(e.path()).expect("SIPp log");
        for chunk in text.split("message received") {
            let body: Vec<&str> = chunk.lines().skip(1).map(str::trim).filter(|l| !l.is_empty()).collect();
            if !body.first().is_some_and(|l| l.starts_with("INVITE ")) {
                continue;
            }
            let header = |h: &str| {
                body.iter()
                    .find(|l| l.len() > h.len() && l[..h.len()].eq_ignore_ascii_case(h))
                    .map(|l| l[h.len()..].trim().to_string())
                    .unwrap_or_default()
            };
            let call_id = header("Call-ID:");
            let branch = header("Via:")
                .split("branch=")
                .nth(1)
                .unwrap_or_default()
                .split(';')
                .next()
                .unwrap_or_default()
                .to_string();
            out.entry(call_id).or_default().insert(format!("{} {branch}", header("CSeq:")));
        }
    }
    out
}

#[test]
fn a_broadcast_campaign_killed_five_times_accounts_for_every_call() {
    let s = setup("crash", CONTACTS, true);
    let seed = std::env::var("WAIHU_CRASH_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(20_261_203u64);
    let mut rng = Rng(seed);
    let mut killed_at = Vec::new();
    for run in 0..KILLS {
        let mut child = serve(&s, run);
        let after = rng.between(1.5, 6.0);
        std::thread::sleep(Duration::from_secs_f64(after));
        let exited = child.try_wait().expect("try_wait");
        assert!(exited.is_none(), "run {run}: waihu serve exited before its kill: {exited:?}");
        // Child::kill is SIGKILL on Unix: no handler runs, nothing is flushed.
        child.kill().expect("SIGKILL");
        let _ = child.wait();
        killed_at.push(format!("{after:.2} s"));
    }
    let mut last = serve(&s, KILLS);
    let code = wait(&mut last, Duration::from_secs(240));
    let log = |run: usize| std::fs::read_to_string(s.dir.join(format!("serve-{run}.err"))).unwrap_or_default();
    assert_eq!(code, Some(0), "the last run ends by itself once the campaign is done (seed {seed}):\n{}", log(KILLS));
    let recovered: usize = (1..=KILLS)
        .filter_map(|r| {
            let l = log(r);
            l.split(" attempts in flight at the last stop").next()?.rsplit(": ").next()?.parse::<usize>().ok()
        })
        .sum();

    // The store's own account.
    let (ok, status, err) = waihu(&["campaign", "status", "--store", &s.store, "--name", "crash", "--json"]);
    assert!(ok, "{status}\n{err}");
    let st: serde_json::Value = serde_json::from_str(status.trim()).expect("status JSON");
    assert_eq!(st["state"], "finished", "{st}");
    assert_eq!(st["final_contacts"], CONTACTS, "every contact has its final disposition: {st}");
    assert_eq!(st["in_flight"], 0, "no attempt is left open: {st}");
    let finals: u64 = st["final"].as_object().expect("final").values().filter_map(|v| v.as_u64()).sum();
    assert_eq!(finals, CONTACTS as u64, "{st}");

    let cdr = s.dir.join("cdr.csv");
    let (ok, out, err) =
        waihu(&["cdr", "export", "--store", &s.store, "--campaign", "crash", "--out", &cdr.to_string_lossy()]);
    assert!(ok, "{out}\n{err}");
    let mut rdr = csv::Reader::from_path(&cdr).expect("CDR");
    let headers = rdr.headers().expect("header").clone();
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap_or_else(|| panic!("no {name} column"));
    let (c_call, c_state, c_disp, c_status, c_phone) =
        (col("call_id"), col("state"), col("disposition"), col("final_status"), col("phone"));
    let rows: Vec<csv::StringRecord> = rdr.records().map(|r| r.expect("CDR row")).collect();
    assert_eq!(rows.len() as u64, st["attempts"].as_u64().unwrap_or(0), "CDR count = attempts: {st}");
    assert!(rows.iter().all(|r| &r[c_state] == "ended"), "every attempt is closed");
    let interrupted = rows.iter().filter(|r| &r[c_disp] == "interrupted").count();
    assert!(interrupted > 0, "the kills cut calls short (seed {seed}, kills at {killed_at:?})");
    assert_eq!(recovered, interrupted, "each restart closed what the kill left in flight, and only that");

    // SIPp's account.
    let invites = sipp_invites(&s.dir);
    assert!(!invites.is_empty(), "SIPp logged no INVITE");
    let ours: HashMap<String, &csv::StringRecord> =
        rows.iter().map(|r| (format!("{}@waihu.invalid", &r[c_call]), r)).collect();
    assert_eq!(ours.len(), rows.len(), "one Call-ID per attempt");
    for (call_id, transactions) in &invites {
        assert!(ours.contains_key(call_id), "SIPp got an INVITE that is no attempt of ours: {call_id}");
        assert_eq!(
            transactions.len(),
            1,
            "{call_id} was sent as {} INVITE transactions: {transactions:?}",
            transactions.len()
        );
    }
    for r in &rows {
        if !r[c_status].is_empty() {
            let id = format!("{}@waihu.invalid", &r[c_call]);
            assert!(invites.contains_key(&id), "attempt {id} got an answer but SIPp never saw it");
        }
    }
    // Per number: SIPp's INVITEs never outnumber our attempts.
    let mut per_phone: HashMap<&str, (usize, usize)> = HashMap::new();
    for r in &rows {
        let e = per_phone.entry(&r[c_phone]).or_default();
        e.0 += 1;
        e.1 += usize::from(invites.contains_key(&format!("{}@waihu.invalid", &r[c_call])));
    }
    assert_eq!(per_phone.len(), CONTACTS);
    assert!(per_phone.values().all(|&(attempts, seen)| seen <= attempts && attempts <= 5 + KILLS));
    eprintln!(
        "crash test (seed {seed}): kills at {killed_at:?}; {} attempts, {interrupted} interrupted, {} INVITEs at SIPp",
        rows.len(),
        invites.len()
    );
    let _ = std::fs::remove_dir_all(&s.dir);
}

/// While `waihu serve` holds the store, the campaign commands reach it on its control
/// socket: status, then start, then the campaign runs to its end.
#[test]
fn a_running_serve_takes_the_campaign_commands() {
    let s = setup("control", 10, false);
    let mut child = serve_with(&s, 0, &["--rtp-ports", "46400-46599"]);
    let status = |json: bool| {
        let mut args = vec!["campaign", "status", "--store", &s.store, "--name", "crash"];
        if json {
            args.push("--json");
        }
        waihu(&args)
    };
    // Serve is up once its control socket is.
    let sock = Path::new(&s.store).join("control.sock");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !sock.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(sock.exists(), "waihu serve made no control socket");
    let (ok, out, err) = status(false);
    assert!(ok && out.contains("created") && out.contains("calls by state"), "from serve: {out}{err}");
    let (ok, out, err) = waihu(&["campaign", "start", "--store", &s.store, "--name", "crash"]);
    assert!(ok && out.contains("running"), "{out}{err}");
    let (ok, _, err) = waihu(&["campaign", "pause", "--store", &s.store, "--name", "other"]);
    assert!(!ok && err.contains("no campaign \"other\""), "{err}");
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut last = String::new();
    while Instant::now() < deadline {
        let (ok, out, _) = status(true);
        if ok && out.contains("\"state\":\"finished\"") {
            last = out;
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(last.contains("\"final_contacts\":10"), "the campaign ran to its end: {last}");
    // SIGTERM: serve ends cleanly and lets go of the store.
    let pid = child.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    assert_eq!(wait(&mut child, Duration::from_secs(30)), Some(0));
    let (ok, out, err) = status(false);
    assert!(ok && out.contains("finished") && !out.contains("calls by state"), "from the store again: {out}{err}");
    let _ = std::fs::remove_dir_all(&s.dir);
}

/// AMD review samples, end to end: with every attempt sampled, a broadcast campaign keeps
/// the first seconds of each call AMD called machine (and of no person's), sealed in the
/// store; an operator exports one as a WAV and judges it, and the status counts the review.
#[test]
fn machine_calls_are_kept_for_review_and_an_operators_verdict_is_counted() {
    let s = setup_with("review", 20, true, "amd_review_fraction = 1.0\namd_review_seconds = 4");
    let mut child = serve_with(&s, 0, &["--rtp-ports", "46600-46799", "--exit-when-idle"]);
    assert_eq!(wait(&mut child, Duration::from_secs(120)), Some(0), "serve ran the campaign to its end");
    let cdr = s.dir.join("cdr.csv");
    let (ok, _, err) =
        waihu(&["cdr", "export", "--store", &s.store, "--campaign", "crash", "--out", &cdr.to_string_lossy()]);
    assert!(ok, "{err}");
    let text = std::fs::read_to_string(&cdr).expect("cdr");
    let mut rows = text.lines();
    let header: Vec<&str> = rows.next().unwrap_or_default().split(',').collect();
    let col = header.iter().position(|h| *h == "disposition").expect("a disposition column");
    let machines = rows.filter(|r| r.split(',').nth(col) == Some("machine")).count() as u64;
    assert!(machines > 0, "the far end answers some numbers with a voicemail: {text}");
    let (ok, list, err) = waihu(&["review", "list", "--store", &s.store, "--campaign", "crash"]);
    assert!(ok, "{err}");
    let samples: Vec<&str> = list.lines().filter(|l| l.starts_with("attempt")).collect();
    assert_eq!(samples.len() as u64, machines, "one sample per machine call, none for a person: {list}");
    let attempt = samples[0].split_whitespace().nth(1).expect("attempt id").to_string();
    let wav = s.dir.join("sample.wav");
    let (ok, _, err) = waihu(&[
        "review",
        "export",
        "--store",
        &s.store,
        "--campaign",
        "crash",
        "--attempt",
        &attempt,
        "--out",
        &wav.to_string_lossy(),
    ]);
    assert!(ok, "{err}");
    let w = waihu_engine::wav::parse(&std::fs::read(&wav).expect("sample")).expect("a WAV");
    let secs = w.samples.len() as f64 / (w.rate as f64 * w.channels as f64);
    assert!((1.0..=4.5).contains(&secs), "the first seconds of the call: {secs:.1} s");
    let (ok, out, err) =
        waihu(&["review", "judge", "--store", &s.store, "--campaign", "crash", "--attempt", &attempt, "--person"]);
    assert!(ok && out.contains("1 of 1 reviewed were people"), "{out}{err}");
    let (ok, out, _) = waihu(&["campaign", "status", "--store", &s.store, "--name", "crash"]);
    assert!(ok && out.contains("configured; 1 of 20 samples reviewed"), "{out}");
    let (ok, _, err) =
        waihu(&["review", "judge", "--store", &s.store, "--campaign", "crash", "--attempt", "999999", "--machine"]);
    assert!(!ok && err.contains("no such review sample"), "{err}");
    let _ = std::fs::remove_dir_all(&s.dir);
}
