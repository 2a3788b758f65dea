//! `waihu amd` and `waihu demo` end to end, as a user runs them.

use std::path::{Path, PathBuf};
use std::process::Command;

fn waihu() -> Command {
    Command::new(env!("CARGO_BIN_EXE_waihu"))
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("waihu-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

#[test]
fn amd_on_files_prints_one_csv_row_each() {
    let s = root().join("samples");
    let out = waihu().arg("amd").arg(s.join("call_00.wav")).arg(s.join("call_04.wav")).output().expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("utf8");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "file,label,decision_ms,end_ms,cause");
    assert_eq!(lines.len(), 3, "{text}");
    for l in &lines[1..] {
        let f: Vec<&str> = l.split(',').collect();
        assert_eq!(f.len(), 5, "{l}");
        assert!(["human", "machine", "fax", "silence", "sit", "notsure"].contains(&f[1]), "{l}");
        assert!(f[2].parse::<u64>().is_ok(), "{l}");
    }
}

#[test]
fn amd_dir_writes_predictions_for_every_wav() {
    let d = tmp("dir");
    let out_csv = d.join("predictions.csv");
    let s = root().join("samples");
    let out = waihu().args(["amd", "--dir"]).arg(&s).arg("--out").arg(&out_csv).output().expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&out_csv).expect("predictions");
    let wavs = std::fs::read_dir(&s)
        .expect("samples")
        .filter(|e| e.as_ref().is_ok_and(|e| e.path().extension().is_some_and(|x| x == "wav")))
        .count();
    assert_eq!(text.lines().count(), wavs + 1);
}

fn write(p: &Path, bytes: &[u8]) {
    std::fs::write(p, bytes).expect("write");
}

#[test]
fn corrupt_and_unsupported_files_get_clear_errors_and_others_still_run() {
    let d = tmp("bad");
    write(&d.join("text.wav"), b"this is not audio");
    let mut float = std::fs::read(root().join("samples/call_05.wav")).expect("sample");
    float[20] = 3; // IEEE float format tag
    write(&d.join("float.wav"), &float);
    let good = std::fs::read(root().join("samples/call_05.wav")).expect("sample");
    write(&d.join("cut.wav"), &good[..30]);
    write(&d.join("good.wav"), &good);
    let out = waihu().args(["amd", "--dir"]).arg(&d).output().expect("run");
    assert_eq!(out.status.code(), Some(1), "partial failure exits 1");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("text.wav") && err.contains("not a RIFF/WAVE file"), "{err}");
    assert!(err.contains("float.wav") && err.contains("unsupported WAV encoding"), "{err}");
    assert!(err.contains("cut.wav") && err.contains("truncated"), "{err}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.lines().any(|l| l.starts_with("good.wav,")), "{stdout}");

    let missing = waihu().args(["amd", "/nonexistent/x.wav"]).output().expect("run");
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read"));
    let none = waihu().arg("amd").output().expect("run");
    assert_eq!(none.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&none.stderr).contains("no input"));
}

#[test]
fn demo_prints_a_table_and_a_score() {
    let out = waihu().arg("demo").arg("--samples").arg(root().join("samples")).output().expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("call_00.wav"), "{text}");
    assert!(text.contains("accuracy"), "{text}");
    assert!(text.contains("human -> machine"), "{text}");
}

fn run(args: &[&str]) -> (bool, String, String) {
    let out = waihu().args(args).output().expect("run");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

/// A campaign config and its message in `d`.
fn campaign_files(d: &Path) -> String {
    let pcm: Vec<i16> = (0..8000).map(|i| ((i % 40) * 100) as i16).collect();
    write(&d.join("m.wav"), &waihu_engine::wav::write_pcm16(8000, &pcm));
    let cfg = d.join("campaign.toml");
    write(&cfg, b"mode = \"broadcast\"\nmessage = \"m.wav\"\n[[trunk]]\nhost = \"127.0.0.1\"\n");
    cfg.to_string_lossy().to_string()
}

#[test]
fn campaign_commands_refuse_bad_input_and_keep_the_store_whole() {
    let d = tmp("campaign");
    let store = d.join("store").to_string_lossy().to_string();
    let cfg = campaign_files(&d);
    // A config that does not parse is refused before anything is stored.
    let bad = d.join("bad.toml");
    write(&bad, b"mode = \"broadcast\"\nmessage = \"nowhere.wav\"\n[[trunk]]\nhost = \"127.0.0.1\"\n");
    let (ok, _, err) =
        run(&["campaign", "create", "--store", &store, "--name", "c", "--config", &bad.to_string_lossy()]);
    assert!(!ok && err.contains("message: cannot read") && err.contains("nowhere.wav"), "{err}");
    let (ok, out, err) = run(&["campaign", "create", "--store", &store, "--name", "c", "--config", &cfg]);
    assert!(ok, "{out}{err}");
    let (ok, _, err) = run(&["campaign", "create", "--store", &store, "--name", "c", "--config", &cfg]);
    assert!(!ok && err.contains("already exists"), "{err}");
    // A list with a bad row imports nothing, and says where.
    let csv = d.join("list.csv");
    write(&csv, b"phone,name,timezone\n+8613800138000,A,Asia/Shanghai\n12,B,\n+8613800138001,C,Mars/Base\n");
    let list = csv.to_string_lossy().to_string();
    let (ok, _, err) = run(&["campaign", "import", "--store", &store, "--name", "c", &list]);
    assert!(!ok, "{err}");
    assert!(err.contains("list.csv:3:phone:") && err.contains("list.csv:4:timezone:"), "{err}");
    assert!(err.contains("nothing was imported"), "{err}");
    let (ok, out, err) = run(&["campaign", "status", "--store", &store, "--name", "c", "--json"]);
    assert!(ok, "{err}");
    assert!(out.contains("\"contacts\":0"), "{out}");
    let (ok, _, err) = run(&["campaign", "start", "--store", &store, "--name", "c"]);
    assert!(!ok && err.contains("no contacts"), "{err}");
    // With --skip-bad-rows the good one goes in, and the bad ones are still reported.
    let (ok, out, err) = run(&["campaign", "import", "--store", &store, "--name", "c", &list, "--skip-bad-rows"]);
    assert!(ok && out.contains("imported 1 contacts") && err.contains("list.csv:3:phone:"), "{out}{err}");
    // A DNC list with a bad number adds nothing; a good one adds its numbers.
    let dnc = d.join("dnc.csv");
    write(&dnc, b"number\n+8613800138000\nnot a number\n");
    let (ok, _, err) = run(&["dnc", "import", "--store", &store, &dnc.to_string_lossy()]);
    assert!(!ok && err.contains("dnc.csv:3:1:") && err.contains("nothing was added"), "{err}");
    write(&dnc, b"number\n+8613800138000\n");
    let (ok, out, err) = run(&["dnc", "import", "--store", &store, &dnc.to_string_lossy()]);
    assert!(ok && out.contains("(1 new)"), "{out}{err}");
    let (ok, out, err) = run(&["campaign", "status", "--store", &store, "--name", "c"]);
    assert!(ok && out.contains("contacts 1"), "{out}{err}");
    // A callback for the contact, at a time with its offset; a bad time or an unknown number
    // is refused.
    let cb = ["campaign", "callback", "--store", &store, "--name", "c", "--phone", "+8613800138000"];
    let (ok, _, err) = run(&[&cb[..], &["--at", "tomorrow"]].concat());
    assert!(!ok && err.contains("RFC 3339"), "{err}");
    let (ok, _, err) = run(&[
        "campaign",
        "callback",
        "--store",
        &store,
        "--name",
        "c",
        "--phone",
        "+8613900139000",
        "--at",
        "2030-01-02T10:00:00+08:00",
    ]);
    assert!(!ok && err.contains("no contact with that number"), "{err}");
    let (ok, out, err) = run(&[&cb[..], &["--at", "2030-01-02T10:00:00+08:00", "--agent", "alice"]].concat());
    assert!(ok && out.contains("2030-01-02T02:00:00+00:00"), "{out}{err}");
    let (ok, out, err) = run(&["campaign", "status", "--store", &store, "--name", "c", "--json"]);
    assert!(ok && out.contains("\"callbacks\":1"), "{out}{err}");
    let _ = std::fs::remove_dir_all(&d);
}

/// Agent assist from the command line: a campaign's script filled in for a contact (a
/// field the list lacks is shown and reported), and the knowledge base searched in Chinese
/// (no spaces: segmented) and English, per campaign.
#[test]
fn scripts_fill_in_contacts_and_the_knowledge_base_finds_chinese_and_english_articles() {
    let d = tmp("assist");
    let store = d.join("store").to_string_lossy().to_string();
    campaign_files(&d);
    write(&d.join("script.txt"), "您好，{name}，我是{agent}。关于您的{plan}：{missing_col}".as_bytes());
    let cfg = d.join("assist.toml");
    write(
        &cfg,
        b"mode = \"broadcast\"\nmessage = \"m.wav\"\nscript = \"script.txt\"\n[[trunk]]\nhost = \"127.0.0.1\"\n",
    );
    let (ok, out, err) =
        run(&["campaign", "create", "--store", &store, "--name", "renew", "--config", &cfg.to_string_lossy()]);
    assert!(ok, "{out}{err}");
    let csv = d.join("list.csv");
    write(&csv, "phone,name,timezone,plan\n+8613800138000,王芳,Asia/Shanghai,宽带 500M\n".as_bytes());
    let (ok, out, err) = run(&["campaign", "import", "--store", &store, "--name", "renew", &csv.to_string_lossy()]);
    assert!(ok, "{out}{err}");
    let (ok, out, err) = run(&["script", "--store", &store, "renew", "--phone", "+8613800138000", "--agent", "李明"]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "您好，王芳，我是李明。关于您的宽带 500M：[missing_col?]");
    assert!(err.contains("no value for: missing_col"), "{err}");
    let (ok, _, err) = run(&["script", "--store", &store, "renew", "--phone", "+8613900000000"]);
    assert!(!ok && err.contains("no such contact"), "{err}");

    let add = |title: &str, body: &str, campaign: Option<&str>| {
        let mut args = vec!["kb", "add", "--store", &store, "--title", title, "--body", body];
        if let Some(c) = campaign {
            args.extend(["--campaign", c]);
        }
        let (ok, out, err) = run(&args);
        assert!(ok && out.starts_with("article "), "{out}{err}");
    };
    add("宽带套餐退订流程", "客户要求退订宽带套餐时，先核实身份，再说明违约金。", None);
    add("信用卡分期还款", "分期手续费按月收取。", Some("renew"));
    add("Cancelling a broadband plan", "Verify the customer's identity first.", None);
    let (ok, _, err) = run(&["kb", "add", "--store", &store, "--title", "x", "--body", "y", "--campaign", "nope"]);
    assert!(!ok && err.contains("no campaign named \"nope\""), "{err}");
    let (ok, out, err) = run(&["kb", "search", "--store", &store, "宽带退订"]);
    assert!(ok, "{err}");
    let first = out.lines().next().unwrap_or_default();
    assert!(first.contains("宽带套餐退订流程") && first.contains("宽带") && first.contains("退订"), "{out}");
    let (ok, out, _) = run(&["kb", "search", "--store", &store, "cancel broadband plans", "--limit", "1"]);
    assert!(ok && out.contains("Cancelling a broadband plan") && out.lines().count() == 1, "{out}");
    let (ok, out, _) = run(&["kb", "search", "--store", &store, "信用卡", "--campaign", "other"]);
    assert!(ok && out.contains("no article matches"), "an article for another campaign: {out}");
    let (ok, out, _) = run(&["kb", "search", "--store", &store, "信用卡", "--campaign", "renew"]);
    assert!(ok && out.contains("信用卡分期还款"), "{out}");
    let (ok, out, _) = run(&["kb", "list", "--store", &store]);
    assert!(ok && out.lines().count() == 3, "{out}");
    let _ = std::fs::remove_dir_all(&d);
}

/// A full disk during an import: a 40 MiB tmpfs, filled part of the way by the import. Needs root (to mount); says so and skips
/// without it.
#[test]
fn a_full_disk_during_an_import_refuses_it_whole_and_the_store_stays_readable() {
    let d = tmp("fulldisk");
    let mnt = d.join("mnt");
    std::fs::create_dir_all(&mnt).expect("mnt");
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=40m", "tmpfs"])
        .arg(&mnt)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("SKIPPED: a_full_disk_during_an_import: cannot mount a small tmpfs here (not root?)");
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(mnt.clone());
    let store = mnt.join("store").to_string_lossy().to_string();
    let cfg = campaign_files(&d);
    let (ok, out, err) = run(&["campaign", "create", "--store", &store, "--name", "c", "--config", &cfg]);
    assert!(ok, "{out}{err}");
    let small = d.join("small.csv");
    write(&small, b"phone\n+8613800138000\n+8613800138001\n");
    let (ok, out, err) = run(&["campaign", "import", "--store", &store, "--name", "c", &small.to_string_lossy()]);
    assert!(ok, "{out}{err}");
    // 200,000 contacts do not fit in what is left.
    let mut big = String::from("phone,name\n");
    for i in 0..200_000 {
        big += &format!("+86139{i:08},Customer number {i} with a longish name\n");
    }
    let big_csv = d.join("big.csv");
    write(&big_csv, big.as_bytes());
    let (ok, out, err) = run(&["campaign", "import", "--store", &store, "--name", "c", &big_csv.to_string_lossy()]);
    assert!(!ok, "the import cannot fit: {out}{err}");
    assert!(err.contains("disk is almost full") || err.contains("No space left on device"), "a clear reason: {err}");
    assert!(!err.contains("panicked"), "{err}");
    eprintln!("full-disk import: {}", err.trim());
    // The store opens, and holds the two contacts from before and nothing of the big list.
    let (ok, out, err) = run(&["campaign", "status", "--store", &store, "--name", "c", "--json"]);
    assert!(ok, "the store stays readable: {out}{err}");
    assert!(out.contains("\"contacts\":2"), "{out}");
    let _ = std::fs::remove_dir_all(&d);
}
