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

/// A sample call as 8 kHz G.711 bytes (µ-law when `ulaw`, else A-law).
pub fn sample_g711(name: &str, ulaw: bool) -> Vec<u8> {
    use waihu_engine::codec::g711;
    let path = samples_dir().join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let pcm = waihu_engine::offline::wav_to_analysis_pcm(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    pcm.iter().map(|&s| if ulaw { g711::ulaw_encode(s) } else { g711::alaw_encode(s) }).collect()
}

/// 20 ms RTP packets of G.711 bytes: payload type `pt`, consecutive sequence numbers and
/// timestamps from `seq0`/`ts0` (wrapping), one SSRC.
pub fn g711_packets(g711: &[u8], pt: u8, seq0: u16, ts0: u32, ssrc: u32) -> Vec<Vec<u8>> {
    g711.chunks_exact(160)
        .enumerate()
        .map(|(i, c)| {
            let mut p = Vec::with_capacity(172);
            waihu_engine::rtp::RtpBuild {
                payload_type: pt,
                sequence: seq0.wrapping_add(i as u16),
                timestamp: ts0.wrapping_add(i as u32 * 160),
                ssrc,
                ..Default::default()
            }
            .write(c, &mut p)
            .expect("a plain G.711 packet always builds");
            p
        })
        .collect()
}

/// A global allocator that calls `on_alloc` before every allocation and reallocation, then
/// forwards to the system allocator. Test binaries that prove a path allocates nothing
/// install it with their own counter:
/// `#[global_allocator] static GLOBAL: CountingAlloc = CountingAlloc { on_alloc: count };`
#[derive(Debug)]
pub struct CountingAlloc {
    pub on_alloc: fn(),
}

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        (self.on_alloc)();
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        (self.on_alloc)();
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
    }
}

/// A free UDP port on loopback (bound and released; tests pick theirs at run time).
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr()).map(|a| a.port()).expect("a free UDP port")
}

/// Waits up to `limit` for the child to exit; its exit code, or None after killing it (by
/// its own handle) when it did not.
pub fn wait_child(child: &mut std::process::Child, limit: std::time::Duration) -> Option<i32> {
    let end = std::time::Instant::now() + limit;
    while std::time::Instant::now() < end {
        if let Ok(Some(s)) = child.try_wait() {
            return s.code();
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}
pub mod baresip;
pub mod rtp_peer;
