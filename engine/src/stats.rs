//! Receiver statistics for one RTP stream, as RFC 3550 defines them (A.3 loss, A.8
//! interarrival jitter), plus duplicates and out-of-order counts. Arrival times come in as
//! a parameter in RTP timestamp units: the caller owns the clock.

use crate::rtp::SeqUnwrapper;

/// Counters since the stream started (or its SSRC last changed).
#[derive(Debug, Clone, Default)]
pub struct RtpStats {
    unwrap: SeqUnwrapper,
    pub packets: u64,
    pub bytes: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
    base_seq: Option<u64>,
    max_seq: u64,
    /// Interarrival jitter estimate, RTP timestamp units (RFC 3550 A.8).
    jitter: f64,
    last_transit: Option<i64>,
    /// For RTCP fraction lost: expected and received at the last report.
    expected_prior: u64,
    received_prior: u64,
}

impl RtpStats {
    /// Records a packet with sequence number `seq`, RTP timestamp `ts`, arriving at
    /// `arrival` (in the stream's RTP clock units), with `bytes` of payload. `duplicate`
    /// is what the reorder buffer said.
    pub fn on_packet(&mut self, seq: u16, ts: u32, arrival: u64, bytes: usize, duplicate: bool) {
        let seq = self.unwrap.unwrap(seq);
        if duplicate {
            self.duplicates += 1;
            return;
        }
        self.packets += 1;
        self.bytes += bytes as u64;
        match self.base_seq {
            None => {
                self.base_seq = Some(seq);
                self.max_seq = seq;
            }
            Some(_) if seq > self.max_seq => self.max_seq = seq,
            Some(_) => self.out_of_order += 1,
        }
        let transit = arrival as i64 - ts as i64;
        if let Some(prev) = self.last_transit {
            let d = (transit - prev).abs() as f64;
            self.jitter += (d - self.jitter) / 16.0;
        }
        self.last_transit = Some(transit);
    }

    /// Packets expected from the sequence numbers seen.
    pub fn expected(&self) -> u64 {
        self.base_seq.map_or(0, |b| self.max_seq - b + 1)
    }

    /// Cumulative packets lost (never negative here; RFC 3550 allows it with duplicates).
    pub fn lost(&self) -> u64 {
        self.expected().saturating_sub(self.packets)
    }

    /// Interarrival jitter in RTP timestamp units.
    pub fn jitter(&self) -> u32 {
        self.jitter as u32
    }

    /// Highest extended sequence number received (RFC 3550 §6.4.1: cycles in the upper 16
    /// bits). The unwrapper starts one cycle up so that early reordering cannot go below
    /// zero; that cycle never happened on the wire and is taken off here.
    pub fn highest_seq(&self) -> u64 {
        self.max_seq.saturating_sub(1 << 16)
    }

    /// Fraction lost since the last call, in 1/256 (the RTCP report block field).
    pub fn take_fraction_lost(&mut self) -> u8 {
        let expected = self.expected();
        let exp_int = expected - self.expected_prior;
        let rec_int = self.packets - self.received_prior;
        self.expected_prior = expected;
        self.received_prior = self.packets;
        if exp_int == 0 || rec_int >= exp_int {
            0
        } else {
            (((exp_int - rec_int) << 8) / exp_int) as u8
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_loss_reordering_and_duplicates() {
        let mut s = RtpStats::default();
        for (seq, dup) in [(100u16, false), (101, false), (103, false), (102, false), (103, true), (105, false)] {
            s.on_packet(seq, seq as u32 * 160, seq as u64 * 160, 160, dup);
        }
        assert_eq!((s.packets, s.duplicates, s.out_of_order), (5, 1, 1));
        assert_eq!((s.expected(), s.lost()), (6, 1));
        assert_eq!(s.take_fraction_lost(), (256 / 6) as u8);
        assert_eq!(s.take_fraction_lost(), 0);
    }

    #[test]
    fn extended_highest_sequence_counts_only_real_wraps() {
        let mut s = RtpStats::default();
        s.on_packet(100, 0, 0, 160, false);
        assert_eq!(s.highest_seq(), 100, "no wrap has happened");
        s.on_packet(65_535, 0, 0, 160, false); // reordered from before the first: no new max
        assert_eq!(s.highest_seq(), 100);
        let mut s = RtpStats::default();
        for seq in [65_534u16, 65_535, 0, 1] {
            s.on_packet(seq, 0, 0, 160, false);
        }
        assert_eq!(s.highest_seq(), (1 << 16) + 1, "one real wrap: cycles = 1");
    }

    #[test]
    fn jitter_follows_rfc3550() {
        let mut s = RtpStats::default();
        // Perfectly paced: zero jitter.
        for k in 0..50u64 {
            s.on_packet(k as u16, (k * 160) as u32, k * 160 + 1000, 160, false);
        }
        assert_eq!(s.jitter(), 0);
        // Every other packet 40 units late: D alternates +-40, J converges towards 40.
        for k in 50..400u64 {
            let late = if k % 2 == 0 { 40 } else { 0 };
            s.on_packet(k as u16, (k * 160) as u32, k * 160 + 1000 + late, 160, false);
        }
        assert!((38..=40).contains(&s.jitter()), "{}", s.jitter());
    }
}
