//! The audio codecs waihu speaks: one type for SDP, the media plane and records.

use std::fmt;

/// An audio codec. G.711 runs at 8 kHz; Opus at 48 kHz on the wire (RFC 7587), decoded to
/// 8 kHz for analysis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// G.711 µ-law.
    Pcmu,
    /// G.711 A-law.
    Pcma,
    Opus,
}

impl Codec {
    /// Static payload type (RFC 3551), `None` for dynamic ones.
    pub const fn static_pt(self) -> Option<u8> {
        match self {
            Codec::Pcmu => Some(0),
            Codec::Pcma => Some(8),
            Codec::Opus => None,
        }
    }

    /// The SDP `a=rtpmap` encoding (name/clock rate/channels).
    pub const fn rtpmap(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU/8000",
            Codec::Pcma => "PCMA/8000",
            Codec::Opus => "opus/48000/2",
        }
    }

    /// The RTP clock rate.
    pub const fn clock_rate(self) -> u32 {
        match self {
            Codec::Pcmu | Codec::Pcma => 8000,
            Codec::Opus => 48_000,
        }
    }

    /// Whether this is G.711 (µ-law or A-law).
    pub const fn is_g711(self) -> bool {
        matches!(self, Codec::Pcmu | Codec::Pcma)
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Codec::Pcmu => "pcmu",
            Codec::Pcma => "pcma",
            Codec::Opus => "opus",
        })
    }
}
