//! The per-packet path (RTP parse -> G.711 decode -> VAD -> tones -> AMD) does not touch
//! the heap in steady state. A counting global allocator proves it.

use std::cell::Cell;
use waihu_engine::analyzer::Analyzer;
use waihu_engine::codec::Codec;
use waihu_engine::AmdParams;
use waihu_tests::CountingAlloc;

thread_local! {
    /// Allocations made by this thread (other test-harness threads do not count).
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

fn count() {
    ALLOCS.with(|c| c.set(c.get() + 1));
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc { on_alloc: count };

#[test]
fn per_packet_path_allocates_nothing() {
    let dir = waihu_tests::samples_dir();
    // A machine greeting with a beep: speech, pauses and a tone all go through the path.
    let labels = waihu_tests::read_labels(&dir);
    let l = labels.iter().find(|l| l.label == "machine" && l.beep_end_ms.is_some()).expect("a beep sample");
    let packets = waihu_tests::g711_packets(&waihu_tests::sample_g711(&l.file, false), 8, 0, 0, 9);
    let mut an = Analyzer::new(AmdParams { max_listen_after_decision_ms: 60_000, ..AmdParams::default() }).with_dtmf();
    // Warm-up: the first packets may touch lazily initialised state.
    for p in &packets[..10] {
        an.push_rtp(p, Codec::Pcma, 8).expect("packet");
    }
    let before = ALLOCS.with(Cell::get);
    let mut events = 0;
    for p in &packets[10..] {
        an.push_rtp(p, Codec::Pcma, 8).expect("packet");
        while an.poll_event().is_some() {
            events += 1;
        }
    }
    let after = ALLOCS.with(Cell::get);
    assert!(events >= 1, "the call produced no AMD event");
    assert_eq!(after - before, 0, "{} allocations over {} packets", after - before, packets.len() - 10);
}

/// The receive side of a live session: RTP (with reordering and a duplicate) through the
/// reorder buffer, RFC 3550 stats, decode, the frame sink and AMD, allocates nothing.
#[test]
fn media_session_receive_path_allocates_nothing() {
    use waihu_engine::session::{MediaSession, PayloadMap};
    let mut packets = waihu_tests::g711_packets(&waihu_tests::sample_g711("call_01.wav", true), 0, 0, 0, 3);
    for i in (20..packets.len() - 1).step_by(9) {
        packets.swap(i, i + 1);
    }
    let mut s = MediaSession::new(PayloadMap::default()).expect("session");
    s.start_amd(AmdParams::default(), 0);
    for (k, p) in packets[..10].iter().enumerate() {
        s.on_datagram(p, k as u64 * 160).expect("packet");
    }
    let mut sunk = 0usize;
    let before = ALLOCS.with(Cell::get);
    for (k, p) in packets[10..].iter().enumerate() {
        s.on_datagram_with(p, (k as u64 + 10) * 160, &mut |f| sunk += f.pcm.len()).expect("packet");
        if k == 100 {
            s.on_datagram(p, 0).expect("duplicate");
        }
        while s.poll_event().is_some() {}
    }
    let after = ALLOCS.with(Cell::get);
    assert!(sunk > 160 * 400, "frames reached the sink: {sunk}");
    assert_eq!(after - before, 0, "{} allocations", after - before);
}
