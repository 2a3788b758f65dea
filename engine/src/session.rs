//! One call's media, receive side, without IO: datagrams in (RTP or muxed RTCP), through
//! the reorder buffer and stream statistics, decoded (PCMU, PCMA, Opus; RFC 4733 events;
//! comfort noise tolerated), into the analysis pipeline. The glommio worker owns the
//! socket and the clock and calls in here.

use crate::amd::{AmdEvent, AmdParams};
use crate::analyzer::Analyzer;
use crate::codec::opus::{OpusDecoder, OpusError};
use crate::codec::{g711, Codec};
use crate::dtmf::{DtmfDetector, TelephoneEvent};
use crate::frame::Framer;
use crate::jitter::{JitterBuffer, JitterError, Pushed, Released};
use crate::rtcp;
use crate::rtp::{RtpError, RtpHeader};
use crate::stats::RtpStats;
use crate::MediaTime;

/// Payload types negotiated in SDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadMap {
    pub pcmu: Option<u8>,
    pub pcma: Option<u8>,
    pub opus: Option<u8>,
    pub telephone_event: Option<u8>,
}

impl PayloadMap {
    /// The codec payload type `pt` carries under this map; None for one not negotiated
    /// (and for telephone-event, which is no audio codec).
    pub fn codec_of(&self, pt: u8) -> Option<Codec> {
        [(self.pcmu, Codec::Pcmu), (self.pcma, Codec::Pcma), (self.opus, Codec::Opus)]
            .into_iter()
            .find(|(p, _)| *p == Some(pt))
            .map(|(_, c)| c)
    }
}

impl Default for PayloadMap {
    fn default() -> Self {
        PayloadMap { pcmu: Some(0), pcma: Some(8), opus: None, telephone_event: Some(101) }
    }
}

/// RFC 3389 comfort noise: tolerated, not decoded.
pub const PT_CN: u8 = 13;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Rtp(#[from] RtpError),
    #[error(transparent)]
    Rtcp(#[from] rtcp::RtcpError),
    #[error(transparent)]
    Jitter(#[from] JitterError),
    #[error("payload type {0} was not negotiated")]
    UnknownPayloadType(u8),
    #[error(transparent)]
    Opus(#[from] OpusError),
}

/// What a session reports, in order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SessionEvent {
    /// An AMD event of the analysis run numbered `run` (see `Command::StartAmd`): a
    /// restarted analysis leaves events of the old run in flight, and the owner tells
    /// them apart by this number.
    Amd { run: u32, event: AmdEvent },
    /// A DTMF key (RFC 4733 event, or in-band when detection is on).
    Dtmf { digit: char, at: MediaTime },
    /// The sender's SSRC changed: a new stream (re-INVITE, transfer, restart).
    NewStream { ssrc: u32 },
}

/// Receive-side counters (RFC 3550 plus what we dropped and why).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SessionStats {
    pub packets: u64,
    pub bytes: u64,
    pub lost: u64,
    pub expected: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
    /// Interarrival jitter, ms.
    pub jitter_ms: f64,
    pub malformed: u64,
    pub rtcp: u64,
    pub media_time: MediaTime,
    /// Datagrams dropped because they did not come from the far end (strict source; set by
    /// the shard, which owns the source filter).
    pub strangers: u64,
    /// Events for this leg the shard dropped because its owner's channel was full.
    pub events_dropped: u64,
}

const EVENTS: usize = 8;

/// One released frame of received audio.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    pub payload_type: u8,
    /// The payload as received (empty for a concealed loss).
    pub payload: &'a [u8],
    /// Decoded 8 kHz audio (concealment for a loss).
    pub pcm: &'a [i16],
    pub lost: bool,
}

/// `repr(C)`, in this order: what every packet reads and writes (counters, stats, the
/// reorder buffer's header) sits in a few adjacent cache lines at the front. At thousands
/// of sessions each packet finds its session cold, and every extra line is a miss.
#[repr(C)]
pub struct MediaSession {
    payloads: PayloadMap,
    ev_len: usize,
    /// Samples in the last decoded packet: what a lost packet is concealed with.
    last_samples: usize,
    /// Media time of received audio, for in-band DTMF timestamps.
    received: MediaTime,
    malformed: u64,
    rtcp: u64,
    last_event_ts: Option<u32>,
    stats: RtpStats,
    /// Counts of the streams (SSRCs) before the current one: the leg's totals span them all.
    earlier: [u64; 6],
    jitter: JitterBuffer,
    analyzer: Option<Analyzer>,
    amd_run: u32,
    /// In-band DTMF detection (IVR navigation), independent of AMD.
    dtmf: Option<(Framer, DtmfDetector)>,
    opus: Option<OpusDecoder>,
    events: [Option<SessionEvent>; EVENTS],
}

impl std::fmt::Debug for MediaSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaSession").field("payloads", &self.payloads).field("stats", &self.stats()).finish()
    }
}

impl MediaSession {
    pub fn new(payloads: PayloadMap) -> Result<Self, SessionError> {
        Ok(MediaSession {
            payloads,
            jitter: JitterBuffer::new(3),
            stats: RtpStats::default(),
            earlier: [0; 6],
            analyzer: None,
            amd_run: 0,
            dtmf: None,
            received: MediaTime::ZERO,
            opus: payloads.opus.map(|_| OpusDecoder::new(8000)).transpose()?,
            last_samples: 160,
            last_event_ts: None,
            malformed: 0,
            rtcp: 0,
            events: [None; EVENTS],
            ev_len: 0,
        })
    }

    /// New payload types from an SDP answer or a re-INVITE: what arrives and what we send
    /// follow them from now on.
    /// The payload types in force.
    pub fn payloads(&self) -> PayloadMap {
        self.payloads
    }

    pub fn set_payloads(&mut self, payloads: PayloadMap) -> Result<(), SessionError> {
        if payloads.opus.is_some() && self.opus.is_none() {
            self.opus = Some(OpusDecoder::new(8000)?);
        }
        self.payloads = payloads;
        Ok(())
    }

    /// Starts answering-machine detection from the current media time onwards, as run
    /// number `run` (its events carry it).
    pub fn start_amd(&mut self, params: AmdParams, run: u32) {
        self.analyzer = Some(Analyzer::new(params));
        self.amd_run = run;
    }

    /// Turns in-band DTMF detection on or off (RFC 4733 events are always reported).
    pub fn detect_inband_dtmf(&mut self, on: bool) {
        self.dtmf = on.then(|| (Framer::default(), DtmfDetector::default()));
    }

    pub fn stop_amd(&mut self) {
        self.analyzer = None;
    }

    /// The codec a payload type stands for in this session.
    pub fn codec_of(&self, pt: u8) -> Option<Codec> {
        self.payloads.codec_of(pt)
    }

    /// The codec and payload type we send with: the first negotiated of PCMU, PCMA, Opus.
    pub fn send_codec(&self) -> Option<(Codec, u8)> {
        let p = self.payloads;
        [(p.pcmu, Codec::Pcmu), (p.pcma, Codec::Pcma), (p.opus, Codec::Opus)]
            .into_iter()
            .find_map(|(t, c)| t.map(|t| (c, t)))
    }

    /// RTP clock rate of the negotiated audio (Opus runs a 48 kHz RTP clock).
    pub fn clock_rate(&self) -> u32 {
        if self.payloads.opus.is_some() && self.payloads.pcmu.is_none() && self.payloads.pcma.is_none() {
            48_000
        } else {
            8_000
        }
    }

    /// A receiver-report block for the stream we receive (RFC 3550 §6.4.1), taking the
    /// fraction lost since the previous one. `None` before any RTP arrived.
    pub fn report_block(&mut self) -> Option<rtcp::ReportBlock> {
        let ssrc = self.jitter.ssrc()?;
        Some(rtcp::ReportBlock {
            ssrc,
            fraction_lost: self.stats.take_fraction_lost(),
            cumulative_lost: self.stats.lost().min(0x7f_ffff) as i32,
            highest_seq: self.stats.highest_seq() as u32,
            jitter: self.stats.jitter(),
            last_sr: 0,
            delay_since_last_sr: 0,
        })
    }

    pub fn stats(&self) -> SessionStats {
        let c = counts(&self.stats);
        let [packets, bytes, lost, expected, duplicates, out_of_order] =
            std::array::from_fn(|i| self.earlier[i] + c[i]);
        SessionStats {
            packets,
            bytes,
            lost,
            expected,
            duplicates,
            out_of_order,
            jitter_ms: self.stats.jitter() as f64 * 1000.0 / self.clock_rate() as f64,
            malformed: self.malformed,
            rtcp: self.rtcp,
            media_time: self.analyzer.as_ref().map_or(MediaTime::ZERO, |a| a.media_time()),
            strangers: 0,
            events_dropped: 0,
        }
    }

    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        if self.ev_len == 0 {
            return None;
        }
        let e = self.events[0].take();
        self.events.rotate_left(1);
        self.ev_len -= 1;
        e
    }

    fn emit(&mut self, e: SessionEvent) {
        if self.ev_len == EVENTS {
            // Invariant: the worker drains after every datagram; at most a few per packet.
            self.poll_event();
        }
        self.events[self.ev_len] = Some(e);
        self.ev_len += 1;
    }

    /// Handles one datagram that arrived at `arrival` (in RTP clock units of this
    /// stream, from any fixed origin). Malformed input is counted and returned as an error;
    /// the session carries on.
    pub fn on_datagram(&mut self, d: &[u8], arrival: u64) -> Result<(), SessionError> {
        self.on_datagram_with(d, arrival, &mut |_| {})
    }

    /// Like [`Self::on_datagram`], and hands every released frame (in order, losses
    /// concealed) to `sink`: the worker relays it to a bridged leg and records it.
    pub fn on_datagram_with(
        &mut self,
        d: &[u8],
        arrival: u64,
        sink: &mut dyn FnMut(Frame<'_>),
    ) -> Result<(), SessionError> {
        let r = self.receive(d, arrival, sink);
        if r.is_err() {
            self.malformed += 1;
        }
        r
    }

    fn receive(&mut self, d: &[u8], arrival: u64, sink: &mut dyn FnMut(Frame<'_>)) -> Result<(), SessionError> {
        if rtcp::is_rtcp(d) {
            rtcp::parse(d)?;
            self.rtcp += 1;
            return Ok(());
        }
        let (h, range) = RtpHeader::parse(d)?;
        let pt = h.payload_type;
        let known = [self.payloads.pcmu, self.payloads.pcma, self.payloads.opus, self.payloads.telephone_event];
        if pt != PT_CN && !known.contains(&Some(pt)) {
            return Err(SessionError::UnknownPayloadType(pt));
        }
        let payload = &d[range];
        let pushed = self.jitter.offer(&h, payload)?;
        if pushed == Pushed::NewStream {
            let old = std::mem::take(&mut self.stats);
            for (sum, n) in self.earlier.iter_mut().zip(counts(&old)) {
                *sum += n;
            }
            self.emit(SessionEvent::NewStream { ssrc: h.ssrc });
        }
        let dup = matches!(pushed, Pushed::Duplicate | Pushed::TooLate);
        self.stats.on_packet(h.sequence, h.timestamp, arrival, payload.len(), dup);
        if pushed == Pushed::Direct {
            // The usual case: next in order with nothing held, played straight from the
            // datagram (no copy through a jitter slot).
            self.play_frame(Some((pt, h.timestamp, payload)), sink)?;
        }
        self.play_out(sink)
    }

    /// Plays what the reorder buffer releases (packets that waited for a gap, and gaps
    /// given up as lost).
    fn play_out(&mut self, sink: &mut dyn FnMut(Frame<'_>)) -> Result<(), SessionError> {
        loop {
            let Some(released) = self.jitter.pop() else { return Ok(()) };
            let mut buf = [0u8; crate::jitter::MAX_PAYLOAD];
            let packet = match released {
                Released::Lost { .. } => None,
                Released::Packet { payload_type, timestamp, payload, .. } => {
                    buf[..payload.len()].copy_from_slice(payload);
                    Some((payload_type, timestamp, payload.len()))
                }
            };
            self.play_frame(packet.map(|(pt, ts, n)| (pt, ts, &buf[..n])), sink)?;
        }
    }

    /// One frame in sequence: a packet (payload type, RTP timestamp, payload), or `None`
    /// for a loss to conceal. Decodes it, hands it to `sink`, and runs DTMF and AMD on it.
    fn play_frame(
        &mut self,
        packet: Option<(u8, u32, &[u8])>,
        sink: &mut dyn FnMut(Frame<'_>),
    ) -> Result<(), SessionError> {
        let p = self.payloads;
        // Decoded audio lives on the stack, hot in cache; a buffer in the session would be
        // a cold cache line per 32 samples at thousands of sessions. Nothing in it is
        // needed after this frame.
        let mut pcm = [0i16; 960];
        let (n, lost, pt, payload): (usize, bool, u8, &[u8]) = match packet {
            None => (0, true, 0, &[]),
            Some((pt, timestamp, payload)) => {
                let n = if Some(pt) == p.pcmu {
                    g711::ulaw_decode_into(payload, &mut pcm)
                } else if Some(pt) == p.pcma {
                    g711::alaw_decode_into(payload, &mut pcm)
                } else if Some(pt) == p.opus {
                    match self.opus.as_mut() {
                        Some(dec) => dec.decode(payload, &mut pcm)?,
                        None => 0,
                    }
                } else if Some(pt) == p.telephone_event {
                    if let Ok(ev) = TelephoneEvent::parse(payload) {
                        if self.last_event_ts != Some(timestamp) {
                            self.last_event_ts = Some(timestamp);
                            if let Some(digit) = ev.digit() {
                                let at = self.analyzer.as_ref().map_or(MediaTime::ZERO, |a| a.media_time());
                                self.emit(SessionEvent::Dtmf { digit, at });
                            }
                        }
                    }
                    return Ok(());
                } else {
                    0 // comfort noise
                };
                (n, false, pt, payload)
            }
        };
        let samples = if lost {
            // Conceal: keep the media clock running with silence (or Opus PLC).
            let n = self.last_samples.min(pcm.len());
            match (self.opus.as_mut(), p.pcmu.or(p.pcma)) {
                (Some(dec), None) => dec.conceal(&mut pcm[..n]).unwrap_or(0),
                _ => {
                    pcm[..n].fill(0);
                    n
                }
            }
        } else {
            if n > 0 {
                self.last_samples = n;
            }
            n
        };
        sink(Frame { payload_type: pt, payload, pcm: &pcm[..samples], lost });
        if let Some((framer, det)) = self.dtmf.as_mut() {
            let mut at = self.received;
            let (events, ev_len) = (&mut self.events, &mut self.ev_len);
            framer.push(&pcm[..samples], |frame| {
                if let Some(d) = det.push(at, frame) {
                    if *ev_len < EVENTS {
                        events[*ev_len] = Some(SessionEvent::Dtmf { digit: d.digit, at: d.at });
                        *ev_len += 1;
                    }
                }
                at = at.add_samples(crate::FRAME_SAMPLES as u64);
            });
        }
        self.received = self.received.add_samples(samples as u64);
        if let Some(a) = self.analyzer.as_mut() {
            a.push_pcm(&pcm[..samples]);
            while let Some(e) = a.poll_event() {
                if self.ev_len == EVENTS {
                    break;
                }
                self.events[self.ev_len] = Some(SessionEvent::Amd { run: self.amd_run, event: e });
                self.ev_len += 1;
            }
        }
        Ok(())
    }
}

/// A stream's counts that add up across streams, in the order of [`MediaSession::earlier`]:
/// packets, bytes, lost, expected, duplicates, out of order.
fn counts(s: &RtpStats) -> [u64; 6] {
    [s.packets, s.bytes, s.lost(), s.expected(), s.duplicates, s.out_of_order]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::RtpBuild;

    fn packet(seq: u16, pt: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        RtpBuild { payload_type: pt, sequence: seq, timestamp: seq as u32 * 160, ssrc: 5, ..Default::default() }
            .write(payload, &mut v)
            .expect("build");
        v
    }

    #[test]
    fn counts_loss_reordering_duplicates_and_keeps_the_media_clock() {
        let mut s = MediaSession::new(PayloadMap::default()).expect("session");
        s.start_amd(AmdParams::default(), 0);
        let order = [0u16, 1, 3, 2, 2, 4, 6, 7, 8, 9];
        for (k, &seq) in order.iter().enumerate() {
            s.on_datagram(&packet(seq, 0, &[0xff; 160]), k as u64 * 160).expect("valid");
        }
        let st = s.stats();
        assert_eq!((st.packets, st.duplicates, st.out_of_order), (9, 1, 1));
        assert_eq!((st.expected, st.lost), (10, 1));
        // All ten slots played out (5 concealed once 8 arrived): 200 ms of media time.
        assert_eq!(st.media_time.as_ms(), 200);
    }

    #[test]
    fn a_new_ssrc_does_not_restart_the_leg_packet_count() {
        let mut s = MediaSession::new(PayloadMap::default()).expect("session");
        for seq in 0..10u16 {
            s.on_datagram(&packet(seq, 0, &[0xff; 160]), seq as u64 * 160).expect("valid");
        }
        for seq in 0..5u16 {
            let mut v = Vec::new();
            RtpBuild {
                payload_type: 0,
                sequence: 5000 + seq,
                timestamp: seq as u32 * 160,
                ssrc: 77,
                ..Default::default()
            }
            .write(&[0xff; 160], &mut v)
            .expect("build");
            s.on_datagram(&v, (10 + seq as u64) * 160).expect("valid");
        }
        let st = s.stats();
        assert_eq!((st.packets, st.expected, st.lost), (15, 15, 0), "both streams count: {st:?}");
    }

    #[test]
    fn rfc4733_digit_is_reported_once_per_event() {
        let mut s = MediaSession::new(PayloadMap::default()).expect("session");
        for (k, dur) in [160u16, 320, 480].iter().enumerate() {
            let ev = TelephoneEvent { event: 5, end: k == 2, volume: 10, duration: *dur };
            let mut v = Vec::new();
            RtpBuild { payload_type: 101, sequence: k as u16, timestamp: 8000, ssrc: 5, ..Default::default() }
                .write(&ev.to_bytes(), &mut v)
                .expect("build");
            s.on_datagram(&v, 0).expect("valid");
        }
        while let Some(e) = s.jitter.drain() {
            let _ = e;
        }
        let digits: Vec<_> = std::iter::from_fn(|| s.poll_event()).collect();
        assert_eq!(digits, vec![SessionEvent::Dtmf { digit: '5', at: MediaTime::ZERO }]);
    }

    #[test]
    fn malformed_and_unknown_input_is_counted_not_fatal() {
        let mut s = MediaSession::new(PayloadMap::default()).expect("session");
        assert!(s.on_datagram(&[1, 2, 3], 0).is_err());
        assert!(matches!(s.on_datagram(&packet(1, 96, &[0; 10]), 0), Err(SessionError::UnknownPayloadType(96))));
        assert!(s.on_datagram(&[0x80, 201, 0, 9], 0).is_err());
        s.on_datagram(&packet(2, PT_CN, &[40]), 0).expect("comfort noise tolerated");
        let mut rr = Vec::new();
        rtcp::write_rr(9, None, &mut rr);
        s.on_datagram(&rr, 0).expect("rtcp");
        let st = s.stats();
        assert_eq!((st.malformed, st.rtcp, st.packets), (3, 1, 1));
    }
}
