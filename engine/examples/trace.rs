//! Prints per-frame features of a WAV (level, VAD, tone estimate), for tuning AMD.
//! `cargo run --release -p waihu-engine --example trace -- FILE.wav [every_n]`
use waihu_engine::tones::ToneAnalyzer;
use waihu_engine::vad::{Aggressiveness, Vad};
use waihu_engine::{wav, FRAME_SAMPLES};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let bytes = std::fs::read(&args[1]).expect("read");
    let every: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1);
    let w = wav::parse(&bytes).expect("wav");
    let mut vad = Vad::new(Aggressiveness::Aggressive);
    let mut ta = ToneAnalyzer::default();
    let mut floor: Option<f32> = None;
    for (i, c) in w.samples.chunks_exact(FRAME_SAMPLES).enumerate() {
        let mut f = [0i16; FRAME_SAMPLES];
        f.copy_from_slice(c);
        let v = vad.is_speech(&f);
        let t = ta.analyze(&f);
        let fl = match floor {
            None => t.level_db,
            Some(fl) if t.level_db < fl => fl + 0.3 * (t.level_db - fl),
            Some(fl) => fl + 0.015,
        };
        floor = Some(fl);
        if i % every == 0 {
            println!(
                "{:5} {:6.1} {:6.1} {} {:6.0} {:.2} {:5.2}",
                i * 10,
                t.level_db,
                fl,
                if v { "V" } else { "." },
                t.tone_hz,
                t.tone_share,
                t.low_band
            );
        }
    }
}
