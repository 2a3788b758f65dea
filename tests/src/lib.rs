//! Shared helpers for the end-to-end scenarios in `tests/tests/`.

use std::path::{Path, PathBuf};
use waihu_engine::amd_eval::{parse_labels, Label, Prediction};
use waihu_engine::offline::{analyze_wav, FileAnalysis};
use waihu_engine::AmdParams;

/// The workspace root (this crate lives in `<root>/tests`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

/// The project's own sample calls (shipped in `samples/`).
pub fn samples_dir() -> PathBuf {
    workspace_root().join("samples")
}

/// Reads `dir/labels.csv`.
pub fn read_labels(dir: &Path) -> Vec<Label> {
    let text = std::fs::read_to_string(dir.join("labels.csv")).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    parse_labels(&text).unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
}

/// Analyses every labelled file of `dir` on all cores; returns predictions in label order.
pub fn predict_dir(dir: &Path, labels: &[Label], params: AmdParams) -> Vec<(Prediction, FileAnalysis)> {
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = labels.len().div_ceil(jobs).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = labels
            .chunks(chunk)
            .map(|c| {
                s.spawn(move || {
                    c.iter()
                        .map(|l| {
                            let path = dir.join(&l.file);
                            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                            let a = analyze_wav(&bytes, params).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                            let p = Prediction {
                                file: l.file.clone(),
                                label: a.decision.verdict.label().to_string(),
                                decision_ms: a.decision.at.as_ms() as f64,
                                end_ms: a.message_end.map(|t| t.as_ms() as f64),
                            };
                            (p, a)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("worker thread")).collect()
    })
}
