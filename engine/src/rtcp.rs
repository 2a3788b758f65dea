//! RTCP (RFC 3550 §6.4) sender and receiver reports: parse what arrives (compound packets
//! included), build a receiver report from our stream statistics. Never panics on input.

use bytes::BufMut;

pub const PT_SR: u8 = 200;
pub const PT_RR: u8 = 201;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtcpError {
    #[error("RTCP packet shorter than its header ({0} bytes)")]
    TooShort(usize),
    #[error("RTCP version {0} (only 2 is supported)")]
    BadVersion(u8),
    #[error("RTCP length field runs past the datagram")]
    LengthOverrun,
}

/// One report block (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    pub ssrc: u32,
    pub fraction_lost: u8,
    /// 24-bit signed cumulative loss.
    pub cumulative_lost: i32,
    pub highest_seq: u32,
    pub jitter: u32,
    pub last_sr: u32,
    pub delay_since_last_sr: u32,
}

/// A parsed SR or RR (other packet types in a compound are skipped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    Sender {
        ssrc: u32,
        ntp: u64,
        rtp_ts: u32,
        packets: u32,
        octets: u32,
        blocks: Vec<ReportBlock>,
    },
    Receiver {
        ssrc: u32,
        blocks: Vec<ReportBlock>,
    },
    /// Another RTCP packet type (SDES, BYE, APP, feedback...).
    Other {
        packet_type: u8,
    },
}

fn u32be(b: &[u8], o: usize) -> u32 {
    u32::from_be_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

fn parse_block(b: &[u8]) -> ReportBlock {
    let lost24 = u32::from_be_bytes([0, b[5], b[6], b[7]]);
    let cumulative_lost = ((lost24 << 8) as i32) >> 8;
    ReportBlock {
        ssrc: u32be(b, 0),
        fraction_lost: b[4],
        cumulative_lost,
        highest_seq: u32be(b, 8),
        jitter: u32be(b, 12),
        last_sr: u32be(b, 16),
        delay_since_last_sr: u32be(b, 20),
    }
}

/// True when a datagram on a muxed RTP/RTCP port is RTCP (RFC 5761 §4: PT 192-223).
pub fn is_rtcp(datagram: &[u8]) -> bool {
    datagram.len() >= 2 && (192..=223).contains(&datagram[1])
}

/// Parses a (compound) RTCP datagram.
pub fn parse(mut d: &[u8]) -> Result<Vec<Report>, RtcpError> {
    let mut out = Vec::new();
    while !d.is_empty() {
        if d.len() < 4 {
            return Err(RtcpError::TooShort(d.len()));
        }
        let version = d[0] >> 6;
        if version != 2 {
            return Err(RtcpError::BadVersion(version));
        }
        let count = (d[0] & 0x1f) as usize;
        let pt = d[1];
        let len = (u16::from_be_bytes([d[2], d[3]]) as usize + 1) * 4;
        if len > d.len() {
            return Err(RtcpError::LengthOverrun);
        }
        let p = &d[..len];
        let blocks_at = |off: usize| -> Result<Vec<ReportBlock>, RtcpError> {
            if off + 24 * count > p.len() {
                return Err(RtcpError::LengthOverrun);
            }
            Ok((0..count).map(|i| parse_block(&p[off + 24 * i..off + 24 * (i + 1)])).collect())
        };
        out.push(match pt {
            PT_SR if p.len() >= 28 => Report::Sender {
                ssrc: u32be(p, 4),
                ntp: (u32be(p, 8) as u64) << 32 | u32be(p, 12) as u64,
                rtp_ts: u32be(p, 16),
                packets: u32be(p, 20),
                octets: u32be(p, 24),
                blocks: blocks_at(28)?,
            },
            PT_RR if p.len() >= 8 => Report::Receiver { ssrc: u32be(p, 4), blocks: blocks_at(8)? },
            PT_SR | PT_RR => return Err(RtcpError::TooShort(p.len())),
            other => Report::Other { packet_type: other },
        });
        d = &d[len..];
    }
    Ok(out)
}

/// What a sender report says about our own stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderInfo {
    /// NTP timestamp (seconds since 1900 in the high 32 bits, fraction in the low 32).
    pub ntp: u64,
    pub rtp_ts: u32,
    pub packets: u32,
    pub octets: u32,
}

/// Writes a sender report (we send media too) with one reception block (or none).
pub fn write_sr<B: BufMut>(ssrc: u32, info: &SenderInfo, block: Option<&ReportBlock>, out: &mut B) {
    let count = block.is_some() as u8;
    out.put_u8(0x80 | count);
    out.put_u8(PT_SR);
    out.put_u16(6 + 6 * count as u16);
    out.put_u32(ssrc);
    out.put_u64(info.ntp);
    out.put_u32(info.rtp_ts);
    out.put_u32(info.packets);
    out.put_u32(info.octets);
    if let Some(b) = block {
        write_block(b, out);
    }
}

fn write_block<B: BufMut>(b: &ReportBlock, out: &mut B) {
    out.put_u32(b.ssrc);
    out.put_u8(b.fraction_lost);
    let lost = (b.cumulative_lost.clamp(-(1 << 23), (1 << 23) - 1) as u32) & 0x00ff_ffff;
    out.put_slice(&lost.to_be_bytes()[1..]);
    out.put_u32(b.highest_seq);
    out.put_u32(b.jitter);
    out.put_u32(b.last_sr);
    out.put_u32(b.delay_since_last_sr);
}

/// Writes a receiver report with one block (or none).
pub fn write_rr<B: BufMut>(ssrc: u32, block: Option<&ReportBlock>, out: &mut B) {
    let count = block.is_some() as u8;
    out.put_u8(0x80 | count);
    out.put_u8(PT_RR);
    out.put_u16(1 + 6 * count as u16);
    out.put_u32(ssrc);
    if let Some(b) = block {
        write_block(b, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receiver_report_round_trips() {
        let b = ReportBlock {
            ssrc: 0xabc,
            fraction_lost: 12,
            cumulative_lost: -3,
            highest_seq: 70_000,
            jitter: 33,
            last_sr: 5,
            delay_since_last_sr: 6,
        };
        let mut v = Vec::new();
        write_rr(0x1234, Some(&b), &mut v);
        assert_eq!(v.len(), 32);
        assert!(is_rtcp(&v));
        assert_eq!(parse(&v), Ok(vec![Report::Receiver { ssrc: 0x1234, blocks: vec![b] }]));
    }

    #[test]
    fn sender_report_round_trips() {
        let info = SenderInfo { ntp: (3_900_000_000u64 << 32) | 7, rtp_ts: 160, packets: 50, octets: 8000 };
        let b = ReportBlock { ssrc: 9, highest_seq: 100, ..ReportBlock::default() };
        let mut v = Vec::new();
        write_sr(0x77, &info, Some(&b), &mut v);
        assert_eq!(v.len(), 52);
        let r = parse(&v).expect("sr");
        assert_eq!(
            r,
            vec![Report::Sender { ssrc: 0x77, ntp: info.ntp, rtp_ts: 160, packets: 50, octets: 8000, blocks: vec![b] }]
        );
    }

    #[test]
    fn parses_a_compound_sr_plus_sdes() {
        let mut v = vec![0x80, PT_SR, 0, 6];
        v.extend_from_slice(&7u32.to_be_bytes());
        v.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 2]);
        v.extend_from_slice(&160u32.to_be_bytes());
        v.extend_from_slice(&10u32.to_be_bytes());
        v.extend_from_slice(&1600u32.to_be_bytes());
        v.extend_from_slice(&[0x81, 202, 0, 1, 0, 0, 0, 7]);
        let r = parse(&v).expect("compound");
        assert_eq!(r.len(), 2);
        assert!(
            matches!(r[0], Report::Sender { ssrc: 7, ntp, packets: 10, octets: 1600, .. } if ntp == (1u64 << 32) | 2)
        );
        assert_eq!(r[1], Report::Other { packet_type: 202 });
    }

    #[test]
    fn malformed_reports_are_errors() {
        assert_eq!(parse(&[0x80]), Err(RtcpError::TooShort(1)));
        assert_eq!(parse(&[0x40, PT_RR, 0, 1, 0, 0, 0, 0]), Err(RtcpError::BadVersion(1)));
        assert_eq!(parse(&[0x80, PT_RR, 0, 9, 0, 0, 0, 0]), Err(RtcpError::LengthOverrun));
        // Claims one report block but has none.
        assert_eq!(parse(&[0x81, PT_RR, 0, 1, 0, 0, 0, 0]), Err(RtcpError::LengthOverrun));
        for b0 in 0..=255u8 {
            let _ = parse(&[b0, PT_SR, 0, 0]);
        }
    }
}
