//! Prints the in-memory size of the per-stream analysis state.
//! `cargo run --release -p waihu-engine --example sizes`
fn main() {
    use waihu_engine::{amd::Amd, analyzer::Analyzer, tones::ToneAnalyzer};
    println!("Analyzer {} bytes (plus libfvad's heap state)", std::mem::size_of::<Analyzer>());
    println!("  Amd {} bytes, ToneAnalyzer {} bytes", std::mem::size_of::<Amd>(), std::mem::size_of::<ToneAnalyzer>());
}
