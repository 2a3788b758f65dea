//! AMD on the project's own sample calls (samples/, real speech audio in µ-law, A-law and
//! PCM at 8, 16 and 48 kHz), runnable on a fresh clone.

use waihu_engine::amd_eval::score;
use waihu_engine::analyzer::Analyzer;
use waihu_engine::codec::g711;
use waihu_engine::codec::Codec;
use waihu_engine::{offline, resample, wav, AmdParams};
use waihu_tests::{predict_dir, read_labels, samples_dir};

#[test]
fn sample_calls_are_classified_and_timed() {
    let dir = samples_dir();
    let labels = read_labels(&dir);
    assert!(labels.len() >= 30, "expected a few dozen samples, found {}", labels.len());
    let preds = predict_dir(&dir, &labels, AmdParams::default());
    let s = score(&labels, &preds.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>());
    eprintln!("{s}");
    assert!(s.accuracy >= 0.9, "accuracy {:.3}", s.accuracy);
    assert_eq!(s.human_as_machine, 0, "a live person would have been hung up on");
    assert!(s.beep_end_rate() >= 0.8, "beep end rate {:.3}", s.beep_end_rate());
    for (p, a) in &preds {
        // A decision is made within the analysis window, and message ends only for machines.
        assert!(a.decision.at.as_ms() <= 8_000, "{}: decided at {}", p.file, a.decision.at);
        if p.label != "machine" {
            assert_eq!(a.message_end, None, "{}", p.file);
        }
    }
}

#[test]
fn same_audio_gives_the_same_decision_every_run() {
    let dir = samples_dir();
    let labels = read_labels(&dir);
    let a = predict_dir(&dir, &labels[..12], AmdParams::default());
    let b = predict_dir(&dir, &labels[..12], AmdParams::default());
    assert_eq!(a.iter().map(|x| x.1).collect::<Vec<_>>(), b.iter().map(|x| x.1).collect::<Vec<_>>());
}

/// Feeding a call as G.711 RTP packets (the live path) decides exactly as the offline
/// path does on the same G.711-decoded audio.
#[test]
fn rtp_packet_path_matches_the_offline_path() {
    let dir = samples_dir();
    for l in read_labels(&dir).iter().take(8) {
        let w = wav::parse(&std::fs::read(dir.join(&l.file)).expect("read")).expect("wav");
        let pcm = resample::convert(&w.samples, w.rate, 8000).expect("resample");
        let ulaw: Vec<u8> = pcm.iter().map(|&s| g711::ulaw_encode(s)).collect();
        let decoded: Vec<i16> = ulaw.iter().map(|&b| g711::ulaw_decode(b)).collect();
        let offline = offline::analyze_pcm(&decoded, AmdParams::default());

        let mut an = Analyzer::new(AmdParams::default());
        let mut decision = None;
        for pkt in waihu_tests::g711_packets(&ulaw, 0, 0, 0, 7) {
            an.push_rtp(&pkt, Codec::Pcmu, 0).expect("valid packet");
            while let Some(e) = an.poll_event() {
                if let waihu_engine::amd::AmdEvent::Decided(d) = e {
                    decision = Some(d);
                }
            }
            if decision.is_some() {
                break;
            }
        }
        let d = decision.unwrap_or_else(|| panic!("{}: no decision over RTP", l.file));
        assert!(!matches!(offline.decision.cause, waihu_engine::AmdCause::Hangup { .. }), "{}", l.file);
        assert_eq!(d, offline.decision, "{}", l.file);
    }
}
