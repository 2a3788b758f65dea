//! Runs AMD over a WAV and prints the detector's state every frame, for tuning.
//! `cargo run --release -p waihu-engine --example amdtrace -- FILE.wav`
use waihu_engine::analyzer::Analyzer;
use waihu_engine::{wav, AmdParams, FRAME_SAMPLES};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let bytes = std::fs::read(&args[1]).expect("read");
    let w = wav::parse(&bytes).expect("wav");
    let mut a = Analyzer::new(AmdParams::default());
    for c in w.samples.chunks_exact(FRAME_SAMPLES) {
        a.push_pcm(c);
        println!("{:5} {}", a.media_time().as_ms(), a.amd().debug_state());
        while let Some(e) = a.poll_event() {
            println!("EVENT {e:?}");
        }
        if a.amd().is_done() {
            break;
        }
    }
}
