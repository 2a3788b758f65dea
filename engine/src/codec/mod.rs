//! Audio codecs: G.711 (µ-law, A-law) by table, Opus through libopus.

pub mod g711;
pub mod opus;

/// RTP static payload types and codecs the media plane understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    Pcmu,
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
}
