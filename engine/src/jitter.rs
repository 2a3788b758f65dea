//! A small reorder buffer for one RTP stream: puts packets back in sequence order, drops
//! duplicates and packets that arrive after their turn, declares a gap lost once enough
//! later packets have arrived, and starts over when the SSRC changes. Pure and
//! allocation-free: fixed slots that copy the payload.

use crate::rtp::{RtpHeader, SeqUnwrapper};

/// Largest payload a slot holds: 60 ms of G.711, or any Opus packet we offer for.
pub const MAX_PAYLOAD: usize = 512;
/// Slots: how far out of order a packet may arrive and still be used.
pub const SLOTS: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JitterError {
    #[error("payload of {0} bytes exceeds the {MAX_PAYLOAD}-byte slot")]
    PayloadTooLarge(usize),
}

/// What happened to a pushed packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// Same sequence number as a packet already queued or played.
    Duplicate,
    /// Arrived after its turn had been given up.
    TooLate,
    /// A new SSRC: the stream restarted (the buffer was cleared first).
    NewStream,
    /// From [`JitterBuffer::offer`]: due now with nothing held; not queued, the caller
    /// plays it.
    Direct,
}

/// What the buffer releases, in order.
#[derive(Debug, PartialEq, Eq)]
pub enum Released<'a> {
    Packet {
        seq: u64,
        timestamp: u32,
        marker: bool,
        payload_type: u8,
        payload: &'a [u8],
    },
    /// The packet with this extended sequence number never came.
    Lost {
        seq: u64,
    },
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    seq: Option<u64>,
    timestamp: u32,
    marker: bool,
    payload_type: u8,
    len: u16,
    data: [u8; MAX_PAYLOAD],
}

const EMPTY: Slot = Slot { seq: None, timestamp: 0, marker: false, payload_type: 0, len: 0, data: [0; MAX_PAYLOAD] };

/// `repr(C)` keeps the few fields every packet reads together at the front, ahead of the
/// 4 KiB of slots that an in-order packet never touches (one cache line, not several).
#[derive(Debug, Clone)]
#[repr(C)]
pub struct JitterBuffer {
    ssrc: Option<u32>,
    /// Next extended sequence number to release.
    next: Option<u64>,
    /// Highest extended sequence number queued.
    highest: Option<u64>,
    /// Packets held past a gap before the gap is declared lost.
    depth: u64,
    unwrap: SeqUnwrapper,
    slots: [Slot; SLOTS],
}

impl JitterBuffer {
    /// `depth` (1..SLOTS) is how many later packets may arrive before a missing one is
    /// given up: 2-3 absorbs ordinary reordering at 20 ms ptime.
    pub fn new(depth: usize) -> Self {
        JitterBuffer {
            slots: [EMPTY; SLOTS],
            unwrap: SeqUnwrapper::default(),
            ssrc: None,
            next: None,
            highest: None,
            depth: depth.clamp(1, SLOTS - 1) as u64,
        }
    }

    fn reset(&mut self) {
        self.slots = [EMPTY; SLOTS];
        self.unwrap = SeqUnwrapper::default();
        self.next = None;
        self.highest = None;
    }

    /// SSRC of the stream being received.
    pub fn ssrc(&self) -> Option<u32> {
        self.ssrc
    }

    /// Queues a parsed packet (header and its payload).
    pub fn push(&mut self, h: &RtpHeader, payload: &[u8]) -> Result<Pushed, JitterError> {
        self.accept(h, payload, false)
    }

    /// Like [`Self::push`], except that the packet due next, arriving while nothing is
    /// held, is not copied into a slot: it is counted as released and [`Pushed::Direct`]
    /// tells the caller to play it from its own buffer now.
    pub fn offer(&mut self, h: &RtpHeader, payload: &[u8]) -> Result<Pushed, JitterError> {
        self.accept(h, payload, true)
    }

    fn accept(&mut self, h: &RtpHeader, payload: &[u8], direct: bool) -> Result<Pushed, JitterError> {
        if payload.len() > MAX_PAYLOAD {
            return Err(JitterError::PayloadTooLarge(payload.len()));
        }
        let mut outcome = Pushed::Queued;
        if self.ssrc != Some(h.ssrc) {
            if self.ssrc.is_some() {
                outcome = Pushed::NewStream;
            }
            self.reset();
            self.ssrc = Some(h.ssrc);
        }
        let seq = self.unwrap.unwrap(h.sequence);
        let next = *self.next.get_or_insert(seq);
        if seq < next {
            return Ok(if seq + SLOTS as u64 >= next { Pushed::Duplicate } else { Pushed::TooLate });
        }
        if seq >= next + SLOTS as u64 {
            // Too far ahead to keep what is queued in order: a jump (long loss or a sender
            // restart). Start releasing from here.
            self.slots = [EMPTY; SLOTS];
            self.next = Some(seq);
        }
        let next = self.next.unwrap_or(seq);
        if direct && outcome == Pushed::Queued && seq == next && self.highest.is_none_or(|hi| hi < next) {
            self.next = Some(seq + 1);
            self.highest = Some(seq);
            return Ok(Pushed::Direct);
        }
        let slot = &mut self.slots[(seq % SLOTS as u64) as usize];
        if slot.seq == Some(seq) {
            return Ok(Pushed::Duplicate);
        }
        // Field by field: a struct literal would copy the whole 512-byte slot twice.
        slot.seq = Some(seq);
        slot.timestamp = h.timestamp;
        slot.marker = h.marker;
        slot.payload_type = h.payload_type;
        slot.len = payload.len() as u16;
        slot.data[..payload.len()].copy_from_slice(payload);
        self.highest = Some(self.highest.map_or(seq, |hi| hi.max(seq)));
        Ok(outcome)
    }

    /// Releases the next packet or gap, if its turn has come.
    pub fn pop(&mut self) -> Option<Released<'_>> {
        self.release(false)
    }

    /// Releases everything still held, declaring gaps lost (end of stream).
    pub fn drain(&mut self) -> Option<Released<'_>> {
        self.release(true)
    }

    fn release(&mut self, force: bool) -> Option<Released<'_>> {
        let next = self.next?;
        let highest = self.highest?;
        if next > highest {
            return None;
        }
        let idx = (next % SLOTS as u64) as usize;
        if self.slots[idx].seq == Some(next) {
            self.next = Some(next + 1);
            self.slots[idx].seq = None;
            let s = &self.slots[idx];
            return Some(Released::Packet {
                seq: next,
                timestamp: s.timestamp,
                marker: s.marker,
                payload_type: s.payload_type,
                payload: &s.data[..s.len as usize],
            });
        }
        if force || highest - next >= self.depth {
            self.next = Some(next + 1);
            return Some(Released::Lost { seq: next });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(seq: u16, ssrc: u32) -> RtpHeader {
        RtpHeader {
            marker: false,
            payload_type: 0,
            sequence: seq,
            timestamp: seq as u32 * 160,
            ssrc,
            csrc_count: 0,
            padding: false,
            extension: None,
        }
    }

    fn out(jb: &mut JitterBuffer) -> Vec<String> {
        let mut v = Vec::new();
        while let Some(r) = jb.pop() {
            v.push(match r {
                Released::Packet { payload, .. } => format!("p{}", payload[0]),
                Released::Lost { .. } => "lost".into(),
            });
        }
        v
    }

    #[test]
    fn reorders_within_the_window() {
        let mut jb = JitterBuffer::new(3);
        let mut got = Vec::new();
        for s in [10u16, 12, 11, 13, 15, 14] {
            jb.push(&hdr(s, 1), &[s as u8]).expect("push");
            got.extend(out(&mut jb));
        }
        assert_eq!(got, ["p10", "p11", "p12", "p13", "p14", "p15"]);
    }

    #[test]
    fn offer_passes_in_order_packets_through_and_queues_the_rest() {
        let mut jb = JitterBuffer::new(3);
        let mut got = Vec::new();
        for s in [10u16, 11, 13, 12, 14, 14, 16, 17, 18, 19, 20] {
            match jb.offer(&hdr(s, 1), &[s as u8]).expect("offer") {
                Pushed::Direct => got.push(format!("d{s}")),
                Pushed::Duplicate => got.push(format!("dup{s}")),
                _ => {}
            }
            got.extend(out(&mut jb));
        }
        // 13 waits for 12; once 12 is played from the buffer, 13 follows from its slot;
        // 15 never comes and is given up when 18 arrives (depth 3), then 19 and 20 are
        // direct again.
        let want = ["d10", "d11", "p12", "p13", "d14", "dup14", "lost", "p16", "p17", "p18", "d19", "d20"];
        assert_eq!(got, want);
    }

    #[test]
    fn drops_duplicates_and_late_packets() {
        let mut jb = JitterBuffer::new(2);
        assert_eq!(jb.push(&hdr(1, 1), &[1]), Ok(Pushed::Queued));
        assert_eq!(jb.push(&hdr(1, 1), &[1]), Ok(Pushed::Duplicate));
        assert_eq!(out(&mut jb), ["p1"]);
        assert_eq!(jb.push(&hdr(1, 1), &[1]), Ok(Pushed::Duplicate));
        for s in 2..30u16 {
            jb.push(&hdr(s, 1), &[s as u8]).expect("push");
        }
        out(&mut jb);
        assert_eq!(jb.push(&hdr(3, 1), &[3]), Ok(Pushed::TooLate));
    }

    #[test]
    fn declares_a_gap_lost_after_depth_later_packets() {
        let mut jb = JitterBuffer::new(2);
        let mut got = Vec::new();
        for s in [1u16, 2, 4, 5, 6] {
            jb.push(&hdr(s, 1), &[s as u8]).expect("push");
            got.extend(out(&mut jb));
        }
        assert_eq!(got, ["p1", "p2", "lost", "p4", "p5", "p6"]);
    }

    #[test]
    fn sequence_wrap_keeps_order() {
        let mut jb = JitterBuffer::new(2);
        let mut got = Vec::new();
        for s in [65534u16, 0, 65535, 1] {
            jb.push(&hdr(s, 1), &[s as u8]).expect("push");
            got.extend(out(&mut jb));
        }
        assert_eq!(got, ["p254", "p255", "p0", "p1"]);
    }

    #[test]
    fn new_ssrc_restarts_the_stream() {
        let mut jb = JitterBuffer::new(2);
        jb.push(&hdr(100, 1), &[1]).expect("push");
        out(&mut jb);
        assert_eq!(jb.push(&hdr(7, 2), &[7]), Ok(Pushed::NewStream));
        assert_eq!(out(&mut jb), ["p7"]);
    }

    #[test]
    fn a_big_jump_restarts_release_there() {
        let mut jb = JitterBuffer::new(2);
        jb.push(&hdr(1, 1), &[1]).expect("push");
        out(&mut jb);
        jb.push(&hdr(500, 1), &[9]).expect("push");
        assert_eq!(out(&mut jb), ["p9"]);
        assert_eq!(jb.push(&hdr(600, 1), &[0; 600]), Err(JitterError::PayloadTooLarge(600)));
    }

    #[test]
    fn drain_releases_what_is_held() {
        let mut jb = JitterBuffer::new(3);
        for s in [1u16, 3] {
            jb.push(&hdr(s, 1), &[s as u8]).expect("push");
        }
        assert_eq!(out(&mut jb), ["p1"]);
        let mut rest = Vec::new();
        while let Some(r) = jb.drain() {
            rest.push(matches!(r, Released::Lost { .. }));
        }
        assert_eq!(rest, [true, false]);
    }
}
