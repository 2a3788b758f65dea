//! A far end's phone media, played by the test itself: a UDP socket that, once the other
//! side's first packet shows where it is, streams G.711 µ-law at 20 ms pace, and records
//! every PCMU payload it hears (decoded). With SIPp playing only the signalling (its SDP
//! names this socket), a test can check by content what the far end heard.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use waihu_engine::codec::g711;
use waihu_engine::rtp::RtpHeader;

#[derive(Debug)]
pub struct RtpPeer {
    pub port: u16,
    heard: Arc<Mutex<Vec<i16>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RtpPeer {
    /// Binds a loopback port; streams `ulaw` (then silence) once the first packet arrives,
    /// for at most `limit`.
    pub fn start(ulaw: Vec<u8>, limit: Duration) -> RtpPeer {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind the peer's RTP socket");
        let port = socket.local_addr().expect("local address").port();
        socket.set_read_timeout(Some(Duration::from_millis(5))).expect("read timeout");
        let heard = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, s) = (heard.clone(), stop.clone());
        let thread = std::thread::spawn(move || run(socket, ulaw, limit, h, s));
        RtpPeer { port, heard, stop, thread: Some(thread) }
    }

    /// Stops and returns what it heard (8 kHz PCM, in arrival order).
    pub fn finish(mut self) -> Vec<i16> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        std::mem::take(&mut *self.heard.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Drop for RtpPeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(socket: UdpSocket, ulaw: Vec<u8>, limit: Duration, heard: Arc<Mutex<Vec<i16>>>, stop: Arc<AtomicBool>) {
    let end = Instant::now() + limit;
    let mut remote: Option<SocketAddr> = None;
    let mut next_send = Instant::now();
    let (mut seq, mut ts, mut pos) = (0u16, 0u32, 0usize);
    let mut buf = [0u8; 2048];
    let mut pkt = Vec::with_capacity(172);
    while !stop.load(Ordering::Relaxed) && Instant::now() < end {
        if let Ok((n, from)) = socket.recv_from(&mut buf) {
            if remote.is_none() {
                // The stream's clock starts now, not when the thread did (a peer that waited
                // seconds for its first packet must not send those seconds in one burst).
                remote = Some(from);
                next_send = Instant::now();
            }
            if let Ok((h, body)) = RtpHeader::parse(&buf[..n]) {
                if h.payload_type == 0 {
                    let mut out = heard.lock().unwrap_or_else(|p| p.into_inner());
                    out.extend(buf[body].iter().map(|&u| g711::ulaw_decode(u)));
                }
            }
        }
        let Some(to) = remote else { continue };
        while Instant::now() >= next_send {
            let chunk: Vec<u8> = (0..160).map(|i| ulaw.get(pos + i).copied().unwrap_or(0xff)).collect();
            pos += 160;
            pkt.clear();
            let b = waihu_engine::rtp::RtpBuild {
                payload_type: 0,
                sequence: seq,
                timestamp: ts,
                ssrc: 0x5eed,
                ..Default::default()
            };
            if b.write(&chunk, &mut pkt).is_ok() {
                let _ = socket.send_to(&pkt, to);
            }
            seq = seq.wrapping_add(1);
            ts = ts.wrapping_add(160);
            next_send += Duration::from_millis(20);
        }
    }
}
