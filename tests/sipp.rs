//! SIP interop against SIPp (Debian `sip-tester`), an independent SIP implementation.
//! SIPp plays the far end from the scenarios in tests/sipp/, streaming call audio made
//! here from the labelled samples (headerless G.711, as SIPp 3.6's rtp_stream needs);
//! `waihu call` places the call over real UDP on loopback and prints its call record.
//! Each test checks our record and SIPp's own verdict (exit code 0: every message it
//! expected arrived, in order). Ports are free ones picked at run time; every process is
//! bounded in time.
//!
//! `make test` installs sip-tester when it is missing. Without SIPp these tests fail and
//! say so.

use serde_json::Value;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use waihu_tests::{free_udp_port, wait_child as wait};

const WAIHU: &str = env!("CARGO_BIN_EXE_waihu");

fn sipp_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sipp")
}

fn require_sipp() {
    let ok = Command::new("sipp").arg("-v").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
    assert!(ok, "SIPp is not installed: `make test` installs Debian's sip-tester (scripts/deps.sh)");
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// Call audio for SIPp: 8 kHz µ-law without a header.
fn answer_audio(sample: &str) -> Vec<u8> {
    waihu_tests::sample_g711(sample, true)
}

/// China ringback: 450 Hz, 1 s on, 4 s off, about -14 dBFS.
fn ringback() -> Vec<u8> {
    (0..5 * 8000)
        .map(|i| {
            let on = i < 8000;
            let v = if on { 6500.0 * (2.0 * std::f64::consts::PI * 450.0 * i as f64 / 8000.0).sin() } else { 0.0 };
            waihu_engine::codec::g711::ulaw_encode(v as i16)
        })
        .collect()
}

/// Special information tones (913.8 Hz 274 ms, 1370.6 Hz 274 ms, 1776.7 Hz 380 ms), then 2 s
/// of silence where the announcement would be.
fn sit_tones() -> Vec<u8> {
    let tone = |hz: f64, ms: usize| {
        (0..ms * 8).map(move |i| (7000.0 * (2.0 * std::f64::consts::PI * hz * i as f64 / 8000.0).sin()) as i16)
    };
    tone(913.8, 274)
        .chain(tone(1370.6, 274))
        .chain(tone(1776.7, 380))
        .chain(std::iter::repeat_n(0, 16_000))
        .map(waihu_engine::codec::g711::ulaw_encode)
        .collect()
}

struct FarEnd {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl FarEnd {
    /// Starts SIPp as the far end of one call.
    fn start(scenario: &str, answer: Option<&[u8]>) -> FarEnd {
        FarEnd::start_with(scenario, answer, &["-m", "1"])
    }

    /// Starts SIPp with extra arguments (`-m N` included: how many calls before it exits).
    fn start_with(scenario: &str, answer: Option<&[u8]>, extra: &[&str]) -> FarEnd {
        require_sipp();
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("waihu-sipp-{}-{n}-{}", std::process::id(), scenario.replace('.', "_")));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::copy(sipp_dir().join(scenario), dir.join(scenario)).expect("scenario");
        std::fs::write(dir.join("answer.ulaw"), answer.unwrap_or(&[0xff; 8000])).expect("audio");
        std::fs::write(dir.join("ringback.ulaw"), ringback()).expect("ringback");
        std::fs::write(dir.join("sit.ulaw"), sit_tones()).expect("sit");
        let (port, media) = (free_udp_port(), free_udp_port());
        let log = std::fs::File::create(dir.join("sipp.out")).expect("log");
        let child = Command::new("sipp")
            .current_dir(&dir)
            .args(["-sf", scenario, "-i", "127.0.0.1", "-p", &port.to_string()])
            .args(["-mi", "127.0.0.1", "-mp", &media.to_string(), "-nostdin"])
            .args(extra)
            .args(["-timeout", "60s", "-timeout_error", "-trace_err", "-error_file", "errors.log"])
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("SIPp starts");
        // SIPp binds its port before it reads the scenario's first message; give it a moment.
        std::thread::sleep(Duration::from_millis(300));
        FarEnd { child, port, dir }
    }

    fn target(&self) -> String {
        format!("sip:+8613800000000@127.0.0.1:{}", self.port)
    }

    /// Waits for SIPp to finish its one call; returns whether it judged the call good, and
    /// its error log.
    fn finish(mut self) -> (bool, String) {
        let status = wait(&mut self.child, Duration::from_secs(30));
        let errors = std::fs::read_to_string(self.dir.join("errors.log")).unwrap_or_default();
        let out = std::fs::read_to_string(self.dir.join("sipp.out")).unwrap_or_default();
        let ok = status == Some(0);
        if ok {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
        (ok, format!("{errors}\n{out}"))
    }
}

/// Runs `waihu call TARGET ARGS...`; returns the call record and the progress lines.
/// Runs `waihu ARGS...` to its end (bounded); returns its exit code, the JSON it printed
/// last on stdout, and its stderr.
fn run_waihu(args: &[&str], limit: Duration) -> (Option<i32>, Value, String) {
    let mut child =
        Command::new(WAIHU).args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("waihu starts");
    let code = wait(&mut child, limit);
    let out = child.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let json: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("waihu {args:?} printed no JSON ({e})\nstdout: {stdout}\nstderr: {stderr}"));
    (code, json, stderr)
}

/// Runs `waihu call TARGET ARGS...`; returns the call record and the progress lines.
fn waihu_call(target: &str, args: &[&str]) -> (Value, String) {
    let base = 41_000
        + (std::process::id() % 300) as u16 * 20
        + (SEQ.fetch_add(1, Ordering::Relaxed) % 20) as u16 * 400 % 4000;
    let ports = format!("{base}-{}", base + 19);
    let all: Vec<&str> = ["call", target, "--rtp-ports", &ports].into_iter().chain(args.iter().copied()).collect();
    let (code, record, stderr) = run_waihu(&all, Duration::from_secs(40));
    assert_eq!(code, Some(0), "waihu call failed or hung: {record}\nstderr: {stderr}");
    (record, stderr)
}

fn field<'a>(r: &'a Value, k: &str) -> &'a Value {
    r.get(k).unwrap_or_else(|| panic!("no {k} in {r}"))
}

#[test]
fn a_person_answers_and_amd_says_human() {
    let far = FarEnd::start("uas_answer.xml", Some(&answer_audio("call_04.wav")));
    let (r, log) = waihu_call(&far.target(), &["--amd", "--hangup-on", "any"]);
    let (sipp_ok, sipp_log) = far.finish();
    assert_eq!(field(&r, "disposition"), "answered", "{r}\n{log}");
    assert_eq!(field(&r, "answered_by"), "human", "{r}\n{log}");
    assert_eq!(field(&r, "ended_by"), "local");
    assert!(field(&r, "rtp_packets").as_u64().unwrap_or(0) > 50, "media reached the shard: {r}");
    assert!(log.contains("AMD: human"), "progress shows the decision: {log}");
    assert!(sipp_ok, "SIPp judged the call bad:\n{sipp_log}");
}

#[test]
fn a_voicemail_is_a_machine_and_its_beep_is_found() {
    let far = FarEnd::start("uas_answer.xml", Some(&answer_audio("call_01.wav")));
    let (r, log) = waihu_call(&far.target(), &["--amd", "--hangup-on", "machine", "--wait-for-beep"]);
    let (sipp_ok, sipp_log) = far.finish();
    assert_eq!(field(&r, "answered_by"), "machine", "{r}\n{log}");
    let hz = field(&r, "beep_hz").as_u64().unwrap_or(0);
    assert!((800..=900).contains(&hz), "the 850 Hz beep: {r}\n{log}");
    // The sample's beep ends at 9.08 s of its audio; media time counts from the first packet.
    let end = field(&r, "beep_end_media_ms").as_u64().unwrap_or(0);
    assert!((8_900..=9_400).contains(&end), "beep end at {end} ms: {r}");
    assert_eq!(field(&r, "hangup_reason"), "machine_message_end", "{r}\n{log}");
    assert!(sipp_ok, "SIPp judged the call bad:\n{sipp_log}");
}

#[test]
fn busy_is_a_disposition() {
    let far = FarEnd::start("uas_busy.xml", None);
    let (r, log) = waihu_call(&far.target(), &["--amd"]);
    let (sipp_ok, sipp_log) = far.finish();
    assert_eq!(
        (field(&r, "disposition"), field(&r, "final_status")),
        (&Value::from("busy"), &Value::from(486)),
        "{r}\n{log}"
    );
    assert!(field(&r, "answer_ms").is_null());
    assert!(sipp_ok, "SIPp expected our ACK for the 486:\n{sipp_log}");
}

#[test]
fn no_answer_is_cancelled_after_the_ring_timeout() {
    let far = FarEnd::start("uas_noanswer.xml", None);
    let (r, log) = waihu_call(&far.target(), &["--amd", "--ring-timeout", "3"]);
    let (sipp_ok, sipp_log) = far.finish();
    assert_eq!(field(&r, "disposition"), "no_answer", "{r}\n{log}");
    assert_eq!(field(&r, "final_status"), 487, "{r}");
    let ms = field(&r, "duration_ms").as_u64().unwrap_or(0);
    assert!((3_000..6_000).contains(&ms), "CANCEL after the 3 s ring timeout, call took {ms} ms");
    assert!(sipp_ok, "SIPp expected CANCEL, then our ACK for the 487:\n{sipp_log}");
}

fn trunk_file(name: &str, port: u16, extra: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("waihu-trunk-{}-{name}.toml", std::process::id()));
    let text = format!(
        "name = \"{name}\"\nhost = \"127.0.0.1\"\nport = {port}\nusername = \"alice\"\npassword = \"secret\"\n{extra}"
    );
    std::fs::write(&path, text).expect("trunk file");
    path
}

#[test]
fn a_407_challenge_is_answered_with_proxy_authorization() {
    let far = FarEnd::start("uas_auth407.xml", Some(&answer_audio("call_04.wav")));
    let trunk = trunk_file("auth407", far.port, "from = \"+861012345678\"\np_asserted_identity = \"+861012345678\"\n");
    let (r, log) =
        waihu_call(&far.target(), &["--trunk", trunk.to_str().unwrap_or_default(), "--amd", "--hangup-on", "any"]);
    let (sipp_ok, sipp_log) = far.finish();
    assert_eq!(field(&r, "disposition"), "answered", "{r}\n{log}");
    assert_eq!(field(&r, "trunk"), "auth407");
    assert_eq!(field(&r, "answered_by"), "human", "{r}\n{log}");
    assert!(sipp_ok, "SIPp did not accept our Proxy-Authorization:\n{sipp_log}");
}

#[test]
fn a_401_challenge_is_answered_with_a_correct_digest() {
    let far = FarEnd::start("uas_auth401.xml", Some(&answer_audio("call_04.wav")));
    let trunk = trunk_file("auth401", far.port, "");
    let (r, log) =
        waihu_call(&far.target(), &["--trunk", trunk.to_str().unwrap_or_default(), "--amd", "--hangup-on", "any"]);
    let (sipp_ok, sipp_log) = far.finish();
    assert_eq!(field(&r, "disposition"), "answered", "SIPp's verifyauth rejected the digest: {r}\n{log}");
    assert!(sipp_ok, "SIPp judged the call bad:\n{sipp_log}");
}

#[test]
fn ringback_in_early_media_is_not_taken_for_a_person() {
    let far = FarEnd::start("uas_early_media.xml", Some(&answer_audio("call_04.wav")));
    let (r, log) = waihu_call(&far.target(), &["--amd", "--hangup-on", "any"]);
    let (sipp_ok, sipp_log) = far.finish();
    assert_eq!(field(&r, "early_media"), true, "{r}\n{log}");
    let answered = field(&r, "answer_ms").as_u64().unwrap_or(0);
    assert!(answered >= 3_900, "answered after 4 s of ringback, not before: {r}");
    // AMD runs on the answered call only; its decision is the person's, made after the
    // answer and not during the ringback.
    assert_eq!(field(&r, "answered_by"), "human", "{r}\n{log}");
    assert!(field(&r, "amd_after_answer_ms").as_u64().unwrap_or(0) >= 500, "{r}");
    assert!(sipp_ok, "SIPp judged the call bad:\n{sipp_log}");
}

#[test]
fn the_callee_hangs_up_first_and_the_call_ends_cleanly() {
    let far = FarEnd::start("uas_callee_bye.xml", Some(&answer_audio("call_04.wav")));
    let (r, log) = waihu_call(&far.target(), &["--amd", "--hangup-on", "never", "--max-duration", "20"]);
    let (sipp_ok, sipp_log) = far.finish();
    assert_eq!(field(&r, "disposition"), "answered", "{r}\n{log}");
    assert_eq!(field(&r, "ended_by"), "remote", "{r}\n{log}");
    let talk = field(&r, "talk_ms").as_u64().unwrap_or(0);
    assert!((1_500..6_000).contains(&talk), "SIPp hangs up 2 s after the answer: talk {talk} ms");
    assert!(sipp_ok, "SIPp expected 200 to its BYE:\n{sipp_log}");
}

/// Datagrams a broken or hostile peer might send to our SIP port.
fn malformed_sip(port: u16) -> Vec<Vec<u8>> {
    let invite = format!(
        "INVITE sip:x@127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKjunk1\r\n\
         From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:x@127.0.0.1>\r\nCall-ID: junk-1\r\nCSeq: 1 INVITE\r\n\
         Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    let mut v: Vec<Vec<u8>> = vec![
        invite.as_bytes()[..60].to_vec(),                                                // truncated
        invite.replace("CSeq: 1 INVITE", "CSeq: banana").into_bytes(),                   // bad CSeq
        invite.replace("Via: SIP/2.0/UDP 127.0.0.1:9", "Via: ::::").into_bytes(),        // bad Via
        invite.replace("Content-Length: 0", "Content-Length: 5000").into_bytes(),        // longer than sent
        invite.replace("Content-Length: 0", "Content-Length: -7").into_bytes(),          // negative
        invite.replace("Content-Length: 0", "Content-Length: 1e9").into_bytes(),         // not a number
        invite.replace("Call-ID: junk-1\r\n", "").into_bytes(),                          // no Call-ID
        format!("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKnone\r\nCSeq: 9 INVITE\r\nContent-Length: 0\r\n\r\n").into_bytes(),
        b"\r\n\r\n".to_vec(),                                                            // keepalive
        Vec::new(),                                                                      // empty
        (0..1400u32).map(|i| (i * 7919 % 251) as u8).collect(),                          // binary junk
        [b"INVITE sip:x@h SIP/2.0\r\nX-Big: ".to_vec(), vec![b'a'; 60_000], b"\r\n\r\n".to_vec()].concat(), // huge header
        b"INVITE sip:x@h SIP/2.0\r\n\r\n".to_vec(),                                      // headers missing
        "BYE sip:x@127.0.0.1 SIP/2.0\r\n\u{0}\u{ff}\r\n\r\n".as_bytes().to_vec(),        // control bytes
    ];
    v.push(invite.into_bytes()); // well formed, from a stranger: refused (we only dial out)
    v
}

#[test]
fn malformed_sip_at_our_port_neither_crashes_nor_sticks_the_call() {
    use std::io::{BufRead, BufReader};
    let far = FarEnd::start("uas_answer.xml", Some(&answer_audio("call_04.wav")));
    let mut child = Command::new(WAIHU)
        .args(["call", &far.target(), "--rtp-ports", "47100-47119", "--amd", "--hangup-on", "any"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("waihu starts");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    let port: u16 = first
        .rsplit(':')
        .next()
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no SIP port in {first:?}"));
    let rest = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>().join("\n"));

    // Spray every kind of junk for the first 3 s of the call (ringing, answer, AMD).
    let sock = UdpSocket::bind("127.0.0.1:0").expect("socket");
    sock.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
    let junk = malformed_sip(port);
    for _ in 0..30 {
        for j in &junk {
            let _ = sock.send_to(j, ("127.0.0.1", port));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // The agent still answers: a well-formed stranger INVITE gets a final response.
    let mut buf = [0u8; 4096];
    let mut replies = Vec::new();
    while let Ok(n) = sock.recv(&mut buf) {
        replies.push(String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or_default().to_string());
    }
    let code = wait(&mut child, Duration::from_secs(30));
    let out = child.wait_with_output().expect("output");
    let log = rest.join().unwrap_or_default();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(code, Some(0), "waihu crashed or hung under malformed SIP\n{stdout}\n{log}");
    assert!(!log.contains("panicked"), "{log}");
    let r: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default()).expect("call record");
    assert_eq!(
        (field(&r, "disposition"), field(&r, "answered_by")),
        (&Value::from("answered"), &Value::from("human")),
        "{r}\n{log}"
    );
    assert!(replies.iter().any(|l| l.starts_with("SIP/2.0 480")), "the stranger's INVITE was refused: {replies:?}");
    let (sipp_ok, sipp_log) = far.finish();
    assert!(sipp_ok, "SIPp judged the call bad:\n{sipp_log}");
}

#[test]
fn a_call_over_tcp() {
    let far = FarEnd::start_with("uas_answer.xml", Some(&answer_audio("call_04.wav")), &["-m", "1", "-t", "t1"]);
    let trunk = trunk_file("tcp", far.port, "transport = \"tcp\"\n");
    let (r, log) =
        waihu_call(&far.target(), &["--trunk", trunk.to_str().unwrap_or_default(), "--amd", "--hangup-on", "any"]);
    let (sipp_ok, sipp_log) = far.finish();
    assert_eq!(
        (field(&r, "disposition"), field(&r, "answered_by")),
        (&Value::from("answered"), &Value::from("human")),
        "{r}\n{log}"
    );
    assert!(sipp_ok, "SIPp (TCP) judged the call bad:\n{sipp_log}\nwaihu:\n{log}");
}

fn trunk_check(args: &[&str]) -> (Option<i32>, Value, String) {
    let all: Vec<&str> = std::iter::once("trunk-check").chain(args.iter().copied()).collect();
    run_waihu(&all, Duration::from_secs(30))
}

#[test]
fn options_keepalive_sees_the_trunk_up_and_then_down() {
    let far = FarEnd::start_with("uas_options.xml", None, &["-m", "3"]);
    let target = format!("sip:127.0.0.1:{}", far.port);
    let (code, r, log) = trunk_check(&[&target, "--probes", "3", "--interval", "0.2"]);
    let (sipp_ok, sipp_log) = far.finish();
    assert_eq!((code, field(&r, "state")), (Some(0), &Value::from("up")), "{r}\n{log}");
    assert_eq!(field(&r, "probes"), &serde_json::json!([200, 200, 200]), "{r}");
    assert!(sipp_ok, "SIPp expected three OPTIONS:\n{sipp_log}");

    // Now nothing answers there: two missed keepalives mark the trunk down.
    let (code, r, log) = trunk_check(&[&target, "--probes", "3", "--interval", "0.1", "--timeout", "0.5"]);
    assert_eq!((code, field(&r, "state")), (Some(1), &Value::from("down")), "{r}\n{log}");
    assert!(log.contains("is down"), "{log}");
}

#[test]
fn hold_resume_and_transfer_with_re_invite_and_refer() {
    let far = FarEnd::start("uas_midcall.xml", Some(&answer_audio("call_04.wav")));
    let (r, log) = waihu_call(
        &far.target(),
        &["--hold-after", "1", "--hold-for", "1", "--transfer-to", "sip:agent@127.0.0.1", "--transfer-after", "3"],
    );
    let (sipp_ok, sipp_log) = far.finish();
    assert_eq!(
        (field(&r, "hold_status"), field(&r, "resume_status")),
        (&Value::from(200), &Value::from(200)),
        "{r}\n{log}"
    );
    assert_eq!(
        field(&r, "refer_declined"),
        "<sip:+19005550100@127.0.0.1>",
        "the far end's REFER was declined: {r}\n{log}"
    );
    assert_eq!(field(&r, "refer_status"), 202, "{r}\n{log}");
    assert_eq!(field(&r, "transfer_status"), 200, "the NOTIFY's sipfrag said how it went: {r}\n{log}");
    assert_eq!(field(&r, "hangup_reason"), "transferred", "{r}");
    assert!(sipp_ok, "SIPp judged the mid-call exchange bad:\n{sipp_log}");
}

#[test]
fn sit_tones_in_early_media_end_the_attempt_as_an_intercept() {
    let far = FarEnd::start("uas_sit.xml", None);
    let (r, log) = waihu_call(&far.target(), &["--amd"]);
    let (sipp_ok, sipp_log) = far.finish();
    assert_eq!(
        (field(&r, "disposition"), field(&r, "early_sit")),
        (&Value::from("intercept"), &Value::from(true)),
        "{r}\n{log}"
    );
    assert_eq!(field(&r, "final_status"), 487, "{r}");
    assert!(field(&r, "answered_by").is_null(), "nobody answered: {r}");
    assert!(sipp_ok, "SIPp expected a CANCEL, then our ACK for the 487:\n{sipp_log}");
}

#[test]
fn we_refresh_the_session_when_the_answer_makes_us_the_refresher() {
    let far = FarEnd::start("uas_session_timer.xml", Some(&answer_audio("call_04.wav")));
    let (r, log) = waihu_call(&far.target(), &["--max-duration", "2.5"]);
    let (sipp_ok, sipp_log) = far.finish();
    assert_eq!(field(&r, "session_refreshes"), 2, "refreshes at 1 s and 2 s of a 2 s session: {r}\n{log}");
    assert_eq!(field(&r, "hangup_reason"), "max_duration", "{r}");
    assert!(sipp_ok, "SIPp expected two refreshes with Session-Expires, then BYE:\n{sipp_log}");
}

/// Sends `audio` (8 kHz µ-law) as 20 ms PCMU RTP packets to `to` from its own socket (a
/// port the far end never signalled), paced in real time, for at most `limit`.
fn inject_rtp(to: std::net::SocketAddr, audio: &[u8], limit: Duration) -> u64 {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("stranger's socket");
    let start = Instant::now();
    let mut sent = 0u64;
    for (k, chunk) in audio.chunks(160).enumerate() {
        if start.elapsed() >= limit {
            break;
        }
        let mut pkt = Vec::with_capacity(172);
        waihu_engine::rtp::RtpBuild {
            payload_type: 0,
            sequence: k as u16,
            timestamp: k as u32 * 160,
            ssrc: 0x0bad_f00d,
            ..Default::default()
        }
        .write(chunk, &mut pkt)
        .expect("packet");
        if sock.send_to(&pkt, to).is_ok() {
            sent += 1;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    sent
}

/// A `waihu` run we watch as it goes: its stderr lines arrive on `lines` while it runs.
struct Live {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
    reader: std::thread::JoinHandle<String>,
}

impl Live {
    fn start(args: &[&str]) -> Live {
        use std::io::BufRead;
        let mut child =
            Command::new(WAIHU).args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("waihu starts");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut log = String::new();
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line.clone());
                log.push_str(&line);
                log.push('\n');
            }
            log
        });
        Live { child, lines, reader }
    }

    /// The first stderr line `want` picks something out of, within `limit`.
    fn wait_line<T>(&self, limit: Duration, mut want: impl FnMut(&str) -> Option<T>) -> Option<T> {
        let end = Instant::now() + limit;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(v) = want(&line) {
                        return Some(v);
                    }
                }
                Err(_) => break,
            }
        }
        None
    }

    /// Waits for the exit (bounded); returns the exit code, stdout and the whole stderr.
    fn finish(mut self, limit: Duration) -> (Option<i32>, String, String) {
        let code = wait(&mut self.child, limit);
        let mut stdout = String::new();
        std::io::Read::read_to_string(&mut self.child.stdout.take().expect("stdout"), &mut stdout).expect("read");
        (code, stdout, self.reader.join().expect("reader"))
    }
}

#[test]
fn rtp_injected_from_another_port_does_not_change_the_verdict() {
    let far = FarEnd::start("uas_answer.xml", Some(&answer_audio("call_04.wav")));
    let args = ["--amd", "--hangup-on", "machine", "--max-duration", "8", "--rtp-ports", "47000-47099"];
    let target = far.target();
    let live = Live::start(&[&["call", target.as_str()][..], &args].concat());
    let port = live
        .wait_line(Duration::from_secs(10), |l| l.split("RTP port ").nth(1)?.trim_end_matches(')').parse::<u16>().ok())
        .expect("waihu printed its RTP port");
    // A voicemail greeting (with its beep), streamed from a stranger's port on the same host.
    let greeting = answer_audio("call_01.wav");
    let to = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let sent = inject_rtp(to, &greeting, Duration::from_secs(6));
    let (code, stdout, log) = live.finish(Duration::from_secs(40));
    let (sipp_ok, sipp_log) = far.finish();
    assert_eq!(code, Some(0), "waihu call failed: {stdout}\n{log}");
    let r: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default()).expect("the call record");
    assert!(sent > 100, "the stranger sent {sent} packets");
    assert_eq!(field(&r, "answered_by"), "human", "a stranger's greeting must not make a person a machine: {r}\n{log}");
    assert_eq!(field(&r, "disposition"), "answered", "{r}");
    assert!(
        field(&r, "rtp_strangers").as_u64().unwrap_or(0) > 50,
        "the stranger's packets were counted and dropped: {r}"
    );
    assert!(sipp_ok, "SIPp judged the call bad:\n{sipp_log}");
}

#[test]
fn sigterm_mid_call_sends_bye_and_writes_the_record() {
    let far = FarEnd::start("uas_answer.xml", Some(&answer_audio("call_04.wav")));
    let target = far.target();
    let live = Live::start(&["call", &target, "--max-duration", "30", "--rtp-ports", "47200-47299"]);
    live.wait_line(Duration::from_secs(10), |l| l.contains("answered after").then_some(()))
        .expect("the call was answered");
    std::thread::sleep(Duration::from_millis(500));
    let killed = Command::new("kill").args(["-TERM", &live.child.id().to_string()]).status().expect("kill");
    assert!(killed.success());
    let (code, stdout, log) = live.finish(Duration::from_secs(10));
    let (sipp_ok, sipp_log) = far.finish();
    assert_eq!(code, Some(0), "a graceful shutdown exits cleanly: {stdout}\n{log}");
    let r: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("no call record after SIGTERM ({e}): {stdout}\n{log}"));
    assert_eq!(field(&r, "hangup_reason"), "shutdown", "{r}\n{log}");
    assert_eq!((field(&r, "disposition"), field(&r, "ended_by")), (&Value::from("answered"), &Value::from("local")));
    assert!(sipp_ok, "SIPp expected our BYE before the call ended:\n{sipp_log}");
}

/// An OPTIONS from a stranger to our SIP port.
fn options(port: u16, n: usize, version: &str) -> Vec<u8> {
    format!(
        "OPTIONS sip:waihu@127.0.0.1:{port} {version}\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKflood{n}\r\n\
         From: <sip:probe@127.0.0.1>;tag=f{n}\r\nTo: <sip:waihu@127.0.0.1>\r\nCall-ID: flood-{n}\r\n\
         CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

#[test]
fn options_flood_and_an_unknown_sip_version_leave_the_live_call_untouched() {
    let far = FarEnd::start("uas_answer.xml", Some(&answer_audio("call_04.wav")));
    let target = far.target();
    let args = ["call", &target, "--amd", "--hangup-on", "never", "--max-duration", "6", "--rtp-ports", "47300-47319"];
    let live = Live::start(&args);
    let port = live
        .wait_line(Duration::from_secs(10), |l| {
            l.strip_prefix("waihu: SIP on ")?.rsplit(':').next()?.parse::<u16>().ok()
        })
        .expect("waihu printed its SIP address");
    live.wait_line(Duration::from_secs(10), |l| l.contains("answered after").then_some(())).expect("answered");
    let sock = UdpSocket::bind("127.0.0.1:0").expect("socket");
    sock.set_read_timeout(Some(Duration::from_millis(500))).expect("timeout");
    let mut buf = [0u8; 4096];
    sock.send_to(&options(port, 0, "SIP/7.0"), ("127.0.0.1", port)).expect("send");
    let first = sock.recv(&mut buf).map(|n| String::from_utf8_lossy(&buf[..n]).to_string()).unwrap_or_default();
    assert!(first.starts_with("SIP/2.0 505"), "a SIP/7.0 request gets 505: {first:?}");
    assert!(first.contains("flood-0"), "the 505 answers that request: {first}");

    // 5,000 OPTIONS within one second, while AMD listens to the call.
    let reader = sock.try_clone().expect("clone");
    let counter = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut ok = 0;
        while let Ok(n) = reader.recv(&mut buf) {
            ok += usize::from(buf[..n].starts_with(b"SIP/2.0 200"));
        }
        ok
    });
    let start = Instant::now();
    for n in 1..=5000 {
        let _ = sock.send_to(&options(port, n, "SIP/2.0"), ("127.0.0.1", port));
        if n % 50 == 0 {
            std::thread::sleep(Duration::from_millis(9));
        }
    }
    let spent = start.elapsed();
    let answered = counter.join().expect("counter");
    let (code, stdout, log) = live.finish(Duration::from_secs(30));
    let (sipp_ok, sipp_log) = far.finish();
    assert!(spent < Duration::from_millis(1500), "the flood took {spent:?}");
    assert_eq!(code, Some(0), "{stdout}\n{log}");
    let r: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default()).expect("the call record");
    assert_eq!(field(&r, "answered_by"), "human", "the flood must not change the verdict: {r}\n{log}");
    assert_eq!(field(&r, "hangup_reason"), "max_duration", "{r}");
    assert_eq!(field(&r, "rtp_lost"), 0, "nor cost the call audio: {r}");
    assert!(answered >= 4500, "the agent kept answering: {answered} of 5,000 OPTIONS got 200");
    assert!(sipp_ok, "SIPp judged the call bad:\n{sipp_log}");
}

#[test]
fn tcp_connections_over_the_per_source_cap_are_closed_and_the_call_goes_on() {
    use std::io::Read;
    let far = FarEnd::start("uas_answer.xml", Some(&answer_audio("call_04.wav")));
    let target = far.target();
    let args = ["call", &target, "--tcp", "--amd", "--hangup-on", "never", "--max-duration", "5"];
    let live = Live::start(&[&args[..], &["--rtp-ports", "47320-47339"]].concat());
    let port = live
        .wait_line(Duration::from_secs(10), |l| {
            l.strip_prefix("waihu: SIP on ")?.rsplit(':').next()?.parse::<u16>().ok()
        })
        .expect("waihu printed its SIP address");
    // The listener starts a moment after the agent says where it is.
    let end = Instant::now() + Duration::from_secs(3);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200)); // that probe's close is counted first
                                                    // The default cap is 32 connections from one source address.
    let mut conns: Vec<std::net::TcpStream> =
        (0..40).filter_map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).ok()).collect();
    assert_eq!(conns.len(), 40, "the kernel accepts the connections");
    std::thread::sleep(Duration::from_millis(800));
    let mut closed = 0;
    for c in &mut conns {
        c.set_read_timeout(Some(Duration::from_millis(50))).expect("timeout");
        let mut b = [0u8; 16];
        closed += usize::from(matches!(c.read(&mut b), Ok(0)));
    }
    let (code, stdout, log) = live.finish(Duration::from_secs(30));
    let (sipp_ok, sipp_log) = far.finish();
    assert_eq!(closed, 8, "the connections over the cap of 32 were closed, and only those");
    assert_eq!(code, Some(0), "{stdout}\n{log}");
    let r: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default()).expect("the call record");
    assert_eq!(field(&r, "disposition"), "answered", "{r}\n{log}");
    assert!(sipp_ok, "SIPp judged the call bad:\n{sipp_log}");
}

#[test]
fn dial_places_every_call_under_the_rate_cap_with_amd_and_leaves_nothing_behind() {
    let far = FarEnd::start_with("uas_load.xml", Some(&answer_audio("call_04.wav")), &["-m", "150"]);
    let target = far.target();
    let args = [
        "dial",
        &target,
        "--calls",
        "150",
        "--cps",
        "50",
        "--channels",
        "400",
        "--hold",
        "4",
        "--amd",
        "--rtp-ports",
        "47400-47999",
    ];
    let out = Command::new(WAIHU).args(args).output().expect("waihu dial runs");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let (sipp_ok, sipp_log) = far.finish();
    assert!(out.status.success(), "every call answered: {stdout}\n{stderr}");
    let rate: f64 = stdout
        .split(" calls/s between")
        .next()
        .and_then(|l| l.rsplit('(').next())
        .and_then(|r| r.trim().parse().ok())
        .unwrap_or_else(|| panic!("no rate in {stdout}"));
    assert!((40.0..=50.5).contains(&rate), "the 50/s cap holds and is used: {rate}\n{stdout}");
    assert!(stdout.contains("failed calls (not answered): 0"), "{stdout}");
    assert!(stdout.contains(r#"answered by (AMD): {"human": 150}"#), "AMD decided on every call: {stdout}");
    assert!(stdout.contains("SIP dialogs left in the stack: 0"), "{stdout}");
    assert!(sipp_ok, "SIPp judged the calls bad:\n{sipp_log}");
}
