//! AMD quality on the labelled dev corpus (400 calls), against the floors of the AMD
//! issue. The corpus is reference material outside this repository: `AMD_CORPUS=DIR`, or
//! `../shared/corpus/dev` next to the checkout. Without it this test says so loudly and
//! passes vacuously (a user's fresh clone); set `AMD_CORPUS_REQUIRED=1` to make that a failure.

use std::io::Write;
use std::path::PathBuf;
use waihu_engine::amd_asterisk::{self, AsteriskParams};
use waihu_engine::amd_eval::{score, Prediction};
use waihu_engine::offline::wav_to_analysis_pcm;
use waihu_engine::AmdParams;
use waihu_tests::{predict_dir, read_labels, workspace_root};

fn corpus_dir() -> Option<PathBuf> {
    if let Ok(d) = std::env::var("AMD_CORPUS") {
        return Some(PathBuf::from(d));
    }
    let d = workspace_root().join("../shared/corpus/dev");
    d.join("labels.csv").exists().then_some(d)
}

#[test]
fn amd_meets_the_quality_floors_on_the_dev_corpus() {
    let Some(dir) = corpus_dir() else {
        let msg = "AMD corpus not found (set AMD_CORPUS=DIR or put it at ../shared/corpus/dev): \
                   SKIPPING the corpus quality test";
        // Straight to stderr: the test harness captures eprintln! of passing tests.
        let _ = writeln!(std::io::stderr(), "\n!!!!!!!! {msg} !!!!!!!!\n");
        assert!(std::env::var("AMD_CORPUS_REQUIRED").is_err(), "{msg}, but AMD_CORPUS_REQUIRED is set");
        return;
    };
    let labels = read_labels(&dir);
    assert!(labels.len() >= 100, "{}: only {} labelled files", dir.display(), labels.len());
    let preds: Vec<_> = predict_dir(&dir, &labels, AmdParams::default()).into_iter().map(|(p, _)| p).collect();
    let s = score(&labels, &preds);
    let _ = writeln!(std::io::stderr(), "\nAMD on {} ({} files):\n{s}", dir.display(), labels.len());
    assert!(s.accuracy >= 0.95, "4-class accuracy {:.4} < 0.95", s.accuracy);
    assert!(s.human_as_machine_rate() <= 0.02, "humans called machine {:.4} > 0.02", s.human_as_machine_rate());
    assert!(s.machine_as_human_rate() <= 0.03, "machines called human {:.4} > 0.03", s.machine_as_human_rate());
    let med = s.human_median_after_greeting_ms.expect("humans in the corpus");
    assert!(med <= 600.0, "median human decision {med:.0} ms after the greeting > 600 ms");
    assert!(s.beep_machines > 0, "no machines with a beep in the corpus");
    assert!(s.beep_end_rate() >= 0.90, "beep end within 150 ms for {:.3} < 0.90", s.beep_end_rate());

    // The energy/word counter most dialers use (Asterisk app_amd, amd.conf defaults) on
    // the same calls: ours must be clearly better.
    let base: Vec<Prediction> = labels
        .iter()
        .map(|l| {
            let bytes = std::fs::read(dir.join(&l.file)).expect("read");
            let pcm = wav_to_analysis_pcm(&bytes).expect("wav");
            let d = amd_asterisk::analyze_pcm(&pcm, AsteriskParams::default());
            Prediction {
                file: l.file.clone(),
                label: d.verdict.label().into(),
                decision_ms: d.at.as_ms() as f64,
                end_ms: None,
            }
        })
        .collect();
    let b = score(&labels, &base);
    let _ = writeln!(std::io::stderr(), "\nAsterisk app_amd baseline on the same files:\n{b}\n");
    assert!(s.accuracy >= b.accuracy + 0.2, "waihu {:.3} vs app_amd {:.3}", s.accuracy, b.accuracy);
    assert!(s.human_as_machine_rate() * 10.0 <= b.human_as_machine_rate(), "not clearly fewer live people hung up on");
}
