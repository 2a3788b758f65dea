//! Audio codecs: G.711 (µ-law, A-law) by table, Opus through libopus.

pub mod g711;
pub mod opus;

/// The codecs the media plane understands: the one type every plane shares.
pub use waihu_model::Codec;
