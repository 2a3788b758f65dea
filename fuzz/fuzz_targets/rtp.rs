//! Any datagram at a media session (RTP, RTCP, junk), with AMD and in-band DTMF running:
//! never a panic, and the session keeps counting.
#![no_main]

use libfuzzer_sys::fuzz_target;
use waihu_engine::session::{MediaSession, PayloadMap};
use waihu_engine::AmdParams;

fuzz_target!(|data: &[u8]| {
    let payloads = PayloadMap { opus: Some(111), ..PayloadMap::default() };
    let Ok(mut s) = MediaSession::new(payloads) else { return };
    s.start_amd(AmdParams::default(), 0);
    s.detect_inband_dtmf(true);
    // The input split into datagrams at 0xFE bytes, so one run can carry many packets.
    for (i, d) in data.split(|&b| b == 0xfe).enumerate() {
        let _ = s.on_datagram(d, i as u64 * 160);
        while s.poll_event().is_some() {}
    }
    let _ = s.stats();
});
