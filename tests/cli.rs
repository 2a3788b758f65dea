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
