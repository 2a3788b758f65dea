//! Any bytes as a far end's SDP: parsing, answering an offer and accepting an answer never
//! panic, and every answer we produce parses back to what was negotiated.
#![no_main]

use libfuzzer_sys::fuzz_target;
use waihu_sip::sdp::{self, Codec, Direction, LocalMedia};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let local = LocalMedia {
        address: "127.0.0.1:20000".parse().expect("addr"),
        codecs: vec![Codec::Pcmu, Codec::Pcma, Codec::Opus],
        telephone_event: true,
        comfort_noise: true,
        ptime: 20,
        direction: Direction::SendRecv,
        session_id: 1,
        version: 1,
    };
    let _ = sdp::parse(text);
    let _ = sdp::accept_answer(text, &local);
    if let Ok((answer, negotiated)) = sdp::answer(text, &local) {
        let back = sdp::parse(&answer).expect("our own answer parses");
        assert!(!back.formats.is_empty(), "answer without formats: {answer}");
        let _ = negotiated;
    }
});
