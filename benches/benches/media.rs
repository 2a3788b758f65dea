//! Per-stage and whole-path costs of the media analysis pipeline on a 20 ms packet.
//! Run: `make bench` (or `cargo bench -p waihu-benches`). Results: docs/benchmarks.md.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use waihu_benches::{pcmu_packets, sample_pcm};
use waihu_engine::amd::{Amd, FrameInput};
use waihu_engine::analyzer::Analyzer;
use waihu_engine::codec::g711;
use waihu_engine::codec::opus::{OpusDecoder, OpusEncoder};
use waihu_engine::codec::Codec;
use waihu_engine::rtp::RtpHeader;
use waihu_engine::tones::ToneAnalyzer;
use waihu_engine::vad::{Aggressiveness, Vad};
use waihu_engine::{AmdParams, MediaTime, FRAME_SAMPLES};

/// A machine greeting with a beep: speech, pauses and a tone.
const CALL: &str = "call_01.wav";

fn frames(pcm: &[i16]) -> Vec<[i16; FRAME_SAMPLES]> {
    pcm.chunks_exact(FRAME_SAMPLES)
        .map(|c| {
            let mut f = [0i16; FRAME_SAMPLES];
            f.copy_from_slice(c);
            f
        })
        .collect()
}

fn stages(c: &mut Criterion) {
    let pcm = sample_pcm(CALL);
    let packets = pcmu_packets(&pcm);
    let fr = frames(&pcm);
    let mut g = c.benchmark_group("stage_per_20ms_packet");
    g.throughput(Throughput::Elements(1));

    let mut i = 0;
    g.bench_function("rtp_parse", |b| {
        b.iter(|| {
            i = (i + 1) % packets.len();
            black_box(RtpHeader::parse(black_box(&packets[i])).map(|(h, r)| (h.sequence, r.len())))
        })
    });

    let mut out = [0i16; 160];
    g.bench_function("g711_ulaw_decode_160", |b| {
        b.iter(|| {
            i = (i + 1) % packets.len();
            black_box(g711::ulaw_decode_into(black_box(&packets[i][12..]), &mut out))
        })
    });

    let mut vad = Vad::new(Aggressiveness::Aggressive);
    let blocks: Vec<[i16; 160]> = pcm
        .chunks_exact(160)
        .map(|c| {
            let mut f = [0i16; 160];
            f.copy_from_slice(c);
            f
        })
        .collect();
    g.bench_function("vad_1x20ms", |b| {
        b.iter(|| {
            i = (i + 1) % blocks.len();
            black_box(vad.is_speech_20ms(&blocks[i]))
        })
    });
    g.bench_function("vad_2x10ms", |b| {
        b.iter(|| {
            i = (i + 2) % (fr.len() - 1);
            black_box(vad.is_speech(&fr[i]) ^ vad.is_speech(&fr[i + 1]))
        })
    });

    let mut tones = ToneAnalyzer::default();
    g.bench_function("tones_20ms_goertzel8_plus_single_tone", |b| {
        b.iter(|| {
            i = (i + 1) % blocks.len();
            black_box(tones.analyze_pair(&blocks[i]))
        })
    });

    // AMD state machine alone, fed precomputed frame features.
    let mut vad = Vad::new(Aggressiveness::Aggressive);
    let mut ta = ToneAnalyzer::default();
    let inputs: Vec<FrameInput> = fr
        .iter()
        .enumerate()
        .map(|(k, f)| FrameInput {
            at: MediaTime::from_samples((k * FRAME_SAMPLES) as u64),
            voiced: vad.is_speech(f),
            mean_abs: 0,
            tones: ta.analyze(f),
        })
        .collect();
    let mut amd = Amd::new(AmdParams::default());
    let mut k = 0;
    g.bench_function("amd_2x10ms", |b| {
        b.iter(|| {
            if k + 1 >= inputs.len() || amd.is_done() {
                amd = Amd::new(AmdParams::default());
                k = 0;
            }
            amd.push(black_box(&inputs[k]));
            amd.push(black_box(&inputs[k + 1]));
            k += 2;
            while let Some(e) = amd.poll_event() {
                black_box(e);
            }
        })
    });
    g.finish();
}

/// The whole per-packet path: RTP parse -> G.711 decode -> VAD -> tones -> AMD, over a
/// real call, recycling the analyser (as a shard would) when AMD is done.
fn packet_path(c: &mut Criterion) {
    let mut g = c.benchmark_group("packet_path");
    g.throughput(Throughput::Elements(1));
    let pcm = sample_pcm(CALL);
    let packets = pcmu_packets(&pcm);
    let mut an = Analyzer::new(AmdParams::default());
    let mut i = 0;
    g.bench_function("g711_rtp_to_amd_per_20ms_packet", |b| {
        b.iter(|| {
            if i == packets.len() || an.amd().is_done() {
                an.reset();
                i = 0;
            }
            let r = an.push_rtp(black_box(&packets[i]), Codec::Pcmu, 0);
            while an.poll_event().is_some() {}
            i += 1;
            black_box(r)
        })
    });

    // 2,000 concurrent streams served round-robin, as a shard does: each packet finds its
    // stream's state cold in cache.
    const STREAMS: usize = 2_000;
    let mut streams: Vec<(Analyzer, usize)> =
        (0..STREAMS).map(|k| (Analyzer::new(AmdParams::default()), (k * 7) % packets.len())).collect();
    let mut s = 0;
    g.bench_function("g711_rtp_to_amd_per_20ms_packet_2000_streams", |b| {
        b.iter(|| {
            let (an, pos) = &mut streams[s];
            s = (s + 1) % STREAMS;
            if *pos == packets.len() || an.amd().is_done() {
                an.reset();
                *pos = 0;
            }
            let r = an.push_rtp(black_box(&packets[*pos]), Codec::Pcmu, 0);
            while an.poll_event().is_some() {}
            *pos += 1;
            black_box(r)
        })
    });
    g.finish();
}

fn opus(c: &mut Criterion) {
    let pcm = sample_pcm(CALL);
    let mut enc = OpusEncoder::new(8000, 24_000, 5).expect("encoder");
    let mut buf = [0u8; 400];
    let encoded: Vec<Vec<u8>> = pcm
        .chunks_exact(160)
        .map(|c| {
            let n = enc.encode(c, &mut buf).expect("encode");
            buf[..n].to_vec()
        })
        .collect();
    let mut g = c.benchmark_group("opus_per_20ms_frame");
    g.throughput(Throughput::Elements(1));
    let mut dec = OpusDecoder::new(8000).expect("decoder");
    let mut out = [0i16; 960];
    let mut i = 0;
    g.bench_function("decode_to_8khz", |b| {
        b.iter(|| {
            i = (i + 1) % encoded.len();
            black_box(dec.decode(black_box(&encoded[i]), &mut out).expect("decode"))
        })
    });
    let mut dec16 = OpusDecoder::new(16_000).expect("decoder");
    g.bench_function("decode_to_16khz", |b| {
        b.iter(|| {
            i = (i + 1) % encoded.len();
            black_box(dec16.decode(black_box(&encoded[i]), &mut out).expect("decode"))
        })
    });
    let mut enc5 = OpusEncoder::new(8000, 24_000, 5).expect("encoder");
    let mut k = 0;
    g.bench_function("encode_8khz_complexity5", |b| {
        b.iter(|| {
            k = (k + 1) % (pcm.len() / 160);
            black_box(enc5.encode(black_box(&pcm[k * 160..k * 160 + 160]), &mut buf).expect("encode"))
        })
    });
    g.finish();
}

criterion_group!(benches, stages, packet_path, opus);
criterion_main!(benches);
