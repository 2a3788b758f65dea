//! RTP (RFC 3550) header parsing and building, zero-copy over [`bytes::Bytes`].
//!
//! Parsing never panics: every malformed packet is an [`RtpError`]. Sequence numbers and
//! timestamps wrap; [`seq_delta`], [`ts_delta`] and [`SeqUnwrapper`] do wrap-aware maths.

use bytes::{BufMut, Bytes};
use std::ops::Range;

/// Fixed header length in bytes.
pub const FIXED_HEADER: usize = 12;
/// Most CSRCs a header can carry (4-bit count).
pub const MAX_CSRC: usize = 15;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    #[error("packet of {len} bytes is shorter than the {need}-byte RTP header")]
    TooShort { len: usize, need: usize },
    #[error("RTP version {0} (only version 2 is supported)")]
    BadVersion(u8),
    #[error("header extension of {words} words runs past the packet end ({len} bytes)")]
    ExtensionOverrun { words: usize, len: usize },
    #[error("padding count {pad} is invalid for a {payload}-byte payload area")]
    BadPadding { pad: usize, payload: usize },
    #[error("{0} CSRCs given, at most 15 fit in a header")]
    TooManyCsrc(usize),
    #[error("extension data of {0} bytes is not a multiple of 4")]
    UnalignedExtension(usize),
}

/// One RTP header extension (RFC 3550 §5.3.1): a profile word and its data range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extension {
    pub profile: u16,
    /// Byte range of the extension data within the packet.
    pub data: (usize, usize),
}

/// The parsed fixed header plus where the variable parts sit in the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub csrc_count: u8,
    pub padding: bool,
    pub extension: Option<Extension>,
}

impl RtpHeader {
    /// Parses `buf` and returns the header and the byte range of the payload
    /// (padding removed).
    pub fn parse(buf: &[u8]) -> Result<(RtpHeader, Range<usize>), RtpError> {
        if buf.len() < FIXED_HEADER {
            return Err(RtpError::TooShort { len: buf.len(), need: FIXED_HEADER });
        }
        let b0 = buf[0];
        let version = b0 >> 6;
        if version != 2 {
            return Err(RtpError::BadVersion(version));
        }
        let padding = b0 & 0x20 != 0;
        let has_ext = b0 & 0x10 != 0;
        let csrc_count = b0 & 0x0f;
        let b1 = buf[1];
        let mut off = FIXED_HEADER + 4 * csrc_count as usize;
        if buf.len() < off {
            return Err(RtpError::TooShort { len: buf.len(), need: off });
        }
        let extension = if has_ext {
            if buf.len() < off + 4 {
                return Err(RtpError::TooShort { len: buf.len(), need: off + 4 });
            }
            let profile = u16::from_be_bytes([buf[off], buf[off + 1]]);
            let words = u16::from_be_bytes([buf[off + 2], buf[off + 3]]) as usize;
            let start = off + 4;
            let end = start + 4 * words;
            if end > buf.len() {
                return Err(RtpError::ExtensionOverrun { words, len: buf.len() });
            }
            off = end;
            Some(Extension { profile, data: (start, end) })
        } else {
            None
        };
        let mut end = buf.len();
        if padding {
            let pad = buf[buf.len() - 1] as usize;
            let area = buf.len() - off;
            if pad == 0 || pad > area {
                return Err(RtpError::BadPadding { pad, payload: area });
            }
            end -= pad;
        }
        let header = RtpHeader {
            marker: b1 & 0x80 != 0,
            payload_type: b1 & 0x7f,
            sequence: u16::from_be_bytes([buf[2], buf[3]]),
            timestamp: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
            ssrc: u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]),
            csrc_count,
            padding,
            extension,
        };
        Ok((header, off..end))
    }

    /// The `i`th CSRC of a packet this header was parsed from.
    pub fn csrc(&self, buf: &[u8], i: usize) -> Option<u32> {
        if i >= self.csrc_count as usize {
            return None;
        }
        let o = FIXED_HEADER + 4 * i;
        buf.get(o..o + 4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// A parsed packet that shares the received buffer: no copy of the payload.
#[derive(Debug, Clone)]
pub struct RtpPacket {
    pub header: RtpHeader,
    buf: Bytes,
    payload: Range<usize>,
}

impl RtpPacket {
    pub fn parse(buf: Bytes) -> Result<RtpPacket, RtpError> {
        let (header, payload) = RtpHeader::parse(&buf)?;
        Ok(RtpPacket { header, buf, payload })
    }

    /// The payload as a slice of the received buffer.
    pub fn payload(&self) -> &[u8] {
        &self.buf[self.payload.clone()]
    }

    /// The payload as a `Bytes` sharing the received buffer.
    pub fn payload_bytes(&self) -> Bytes {
        self.buf.slice(self.payload.clone())
    }

    pub fn csrcs(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.header.csrc_count as usize).filter_map(|i| self.header.csrc(&self.buf, i))
    }

    pub fn extension_data(&self) -> Option<&[u8]> {
        self.header.extension.map(|e| &self.buf[e.data.0..e.data.1])
    }

    pub fn as_bytes(&self) -> &Bytes {
        &self.buf
    }
}

/// What to write when building a packet.
#[derive(Debug, Clone, Copy, Default)]
pub struct RtpBuild<'a> {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub csrcs: &'a [u32],
    /// (profile, data); data length must be a multiple of 4.
    pub extension: Option<(u16, &'a [u8])>,
    /// Pad the packet to a multiple of this many bytes (0 or 1: no padding).
    pub pad_to: u8,
}

impl RtpBuild<'_> {
    /// Appends the packet to `out` (the caller owns and reuses the buffer).
    pub fn write<B: BufMut>(&self, payload: &[u8], out: &mut B) -> Result<usize, RtpError> {
        if self.csrcs.len() > MAX_CSRC {
            return Err(RtpError::TooManyCsrc(self.csrcs.len()));
        }
        if let Some((_, d)) = self.extension {
            if d.len() % 4 != 0 || d.len() / 4 > u16::MAX as usize {
                return Err(RtpError::UnalignedExtension(d.len()));
            }
        }
        let ext_len = self.extension.map_or(0, |(_, d)| 4 + d.len());
        let unpadded = FIXED_HEADER + 4 * self.csrcs.len() + ext_len + payload.len();
        let pad = match self.pad_to {
            0 | 1 => 0,
            m => (m as usize - unpadded % m as usize) % m as usize,
        };
        let mut b0 = 0x80 | self.csrcs.len() as u8;
        if pad > 0 {
            b0 |= 0x20;
        }
        if self.extension.is_some() {
            b0 |= 0x10;
        }
        out.put_u8(b0);
        out.put_u8((self.marker as u8) << 7 | (self.payload_type & 0x7f));
        out.put_u16(self.sequence);
        out.put_u32(self.timestamp);
        out.put_u32(self.ssrc);
        for c in self.csrcs {
            out.put_u32(*c);
        }
        if let Some((profile, d)) = self.extension {
            out.put_u16(profile);
            out.put_u16((d.len() / 4) as u16);
            out.put_slice(d);
        }
        out.put_slice(payload);
        if pad > 0 {
            for _ in 0..pad - 1 {
                out.put_u8(0);
            }
            out.put_u8(pad as u8);
        }
        Ok(unpadded + pad)
    }
}

/// Signed distance from sequence `a` to `b`, wrap-aware (`seq_delta(65535, 0) == 1`).
pub fn seq_delta(a: u16, b: u16) -> i16 {
    b.wrapping_sub(a) as i16
}

/// Signed distance from timestamp `a` to `b`, wrap-aware.
pub fn ts_delta(a: u32, b: u32) -> i32 {
    b.wrapping_sub(a) as i32
}

/// Extends 16-bit sequence numbers to a monotonic 64-bit index across wraps
/// (RFC 3550 A.1 style, tolerant of reordering within half the space).
#[derive(Debug, Clone, Default)]
pub struct SeqUnwrapper {
    last: Option<u64>,
}

impl SeqUnwrapper {
    pub fn unwrap(&mut self, seq: u16) -> u64 {
        let ext = match self.last {
            None => seq as u64 + (1 << 16),
            Some(last) => {
                let d = seq_delta(last as u16, seq) as i64;
                (last as i64 + d).max(0) as u64
            }
        };
        if self.last.is_none_or(|l| ext > l) {
            self.last = Some(ext);
        }
        ext
    }
}

/// Extends 32-bit timestamps to 64 bits across wraps, like [`SeqUnwrapper`].
#[derive(Debug, Clone, Default)]
pub struct TsUnwrapper {
    last: Option<u64>,
}

impl TsUnwrapper {
    pub fn unwrap(&mut self, ts: u32) -> u64 {
        let ext = match self.last {
            None => ts as u64 + (1 << 32),
            Some(last) => (last as i64 + ts_delta(last as u32, ts) as i64).max(0) as u64,
        };
        if self.last.is_none_or(|l| ext > l) {
            self.last = Some(ext);
        }
        ext
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(b: RtpBuild<'_>, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        b.write(payload, &mut v).expect("valid build");
        v
    }

    #[test]
    fn parses_what_it_builds_with_every_optional_part() {
        let ext = [1, 2, 3, 4, 5, 6, 7, 8];
        let v = build(
            RtpBuild {
                marker: true,
                payload_type: 0,
                sequence: 0xfffe,
                timestamp: 0xdead_beef,
                ssrc: 0x1234_5678,
                csrcs: &[7, 9],
                extension: Some((0xbede, &ext)),
                pad_to: 8,
            },
            &[0xaa; 13],
        );
        assert_eq!(v.len() % 8, 0);
        let p = RtpPacket::parse(Bytes::from(v)).expect("parses");
        assert!(p.header.marker);
        assert_eq!(p.header.sequence, 0xfffe);
        assert_eq!(p.header.timestamp, 0xdead_beef);
        assert_eq!(p.header.ssrc, 0x1234_5678);
        assert_eq!(p.csrcs().collect::<Vec<_>>(), vec![7, 9]);
        assert_eq!(p.extension_data(), Some(&ext[..]));
        assert_eq!(p.header.extension.map(|e| e.profile), Some(0xbede));
        assert_eq!(p.payload(), &[0xaa; 13]);
    }

    #[test]
    fn plain_g711_packet_round_trips() {
        let v = build(
            RtpBuild { payload_type: 8, sequence: 1, timestamp: 160, ssrc: 1, ..Default::default() },
            &[0x55; 160],
        );
        assert_eq!(v.len(), 172);
        let (h, r) = RtpHeader::parse(&v).expect("parses");
        assert_eq!((h.payload_type, h.sequence, h.timestamp, h.marker), (8, 1, 160, false));
        assert_eq!(r, 12..172);
    }

    #[test]
    fn rejects_malformed_packets_without_panicking() {
        assert!(matches!(RtpHeader::parse(&[0x80; 5]), Err(RtpError::TooShort { .. })));
        let mut v = build(RtpBuild::default(), &[1, 2, 3]);
        v[0] = 0x40;
        assert_eq!(RtpHeader::parse(&v), Err(RtpError::BadVersion(1)));
        // CSRC count larger than the packet.
        let mut v = build(RtpBuild::default(), &[]);
        v[0] = 0x8f;
        assert!(matches!(RtpHeader::parse(&v), Err(RtpError::TooShort { .. })));
        // Extension length past the end.
        let mut v = build(RtpBuild::default(), &[0, 0, 0xff, 0xff]);
        v[0] |= 0x10;
        assert!(matches!(RtpHeader::parse(&v), Err(RtpError::ExtensionOverrun { .. })));
        // Padding count larger than the payload, and zero.
        let mut v = build(RtpBuild::default(), &[1, 2, 200]);
        v[0] |= 0x20;
        assert!(matches!(RtpHeader::parse(&v), Err(RtpError::BadPadding { .. })));
        let mut v = build(RtpBuild::default(), &[1, 2, 0]);
        v[0] |= 0x20;
        assert!(matches!(RtpHeader::parse(&v), Err(RtpError::BadPadding { .. })));
    }

    #[test]
    fn every_short_prefix_of_a_valid_packet_is_an_error_or_parses() {
        let ext = [0u8; 4];
        let v = build(
            RtpBuild { csrcs: &[1, 2, 3], extension: Some((1, &ext)), pad_to: 4, ..Default::default() },
            &[9; 20],
        );
        // Fixed header + 3 CSRCs + extension header and data: anything shorter is an error.
        let header_len = FIXED_HEADER + 12 + 8;
        for n in 0..header_len {
            assert!(RtpHeader::parse(&v[..n]).is_err(), "prefix of {n} bytes accepted");
        }
        for n in header_len..v.len() {
            if let Ok((_, r)) = RtpHeader::parse(&v[..n]) {
                assert!(r.start >= header_len && r.end <= n, "payload {r:?} outside a {n}-byte prefix");
            }
        }
        for b in 0..=255u8 {
            let mut w = v.clone();
            w[0] = b;
            let r = RtpHeader::parse(&w);
            if b >> 6 != 2 {
                assert_eq!(r, Err(RtpError::BadVersion(b >> 6)));
            } else if let Ok((h, range)) = r {
                assert_eq!(h.csrc_count, b & 0x0f);
                assert!(range.end <= w.len());
            }
        }
    }

    #[test]
    fn rtp_sequence_and_timestamp_wrap() {
        assert_eq!(seq_delta(65535, 0), 1);
        assert_eq!(seq_delta(0, 65535), -1);
        assert_eq!(ts_delta(u32::MAX - 79, 80), 160);
        let mut u = SeqUnwrapper::default();
        let a = u.unwrap(65534);
        let b = u.unwrap(65535);
        let c = u.unwrap(0);
        let late = u.unwrap(65533);
        let d = u.unwrap(1);
        assert_eq!((b - a, c - b, d - c), (1, 1, 1));
        assert_eq!(a - late, 1);
        let mut t = TsUnwrapper::default();
        let x = t.unwrap(u32::MAX - 159);
        let y = t.unwrap(160);
        assert_eq!(y - x, 320);
    }

    #[test]
    fn rejects_builds_that_do_not_fit_a_header() {
        let many = [0u32; 16];
        let mut v = Vec::new();
        assert_eq!(RtpBuild { csrcs: &many, ..Default::default() }.write(&[], &mut v), Err(RtpError::TooManyCsrc(16)));
        assert_eq!(
            RtpBuild { extension: Some((1, &[1, 2, 3])), ..Default::default() }.write(&[], &mut v),
            Err(RtpError::UnalignedExtension(3))
        );
    }
}
