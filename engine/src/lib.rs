//! waihu media plane. Its modules are pure: RTP, codecs, framing, VAD, tone detection and
//! answering-machine detection, with no IO and no clock (time is media time, in samples,
//! so the same audio gives the same decision on every run). The one exception is
//! `worker/`, the glommio shell that owns the sockets and carries live sessions.

pub mod amd;
pub mod amd_asterisk;
pub mod amd_eval;
pub mod analyzer;
pub mod codec;
pub mod dtmf;
pub mod frame;
pub mod jitter;
pub mod leg;
pub mod mixer;
pub mod offline;
pub mod resample;
pub mod rtcp;
pub mod rtp;
pub mod sender;
pub mod session;
pub mod source;
pub mod stats;
pub mod time;
pub mod tones;
pub mod vad;
pub mod wav;
pub mod worker;

pub use amd::{Amd, AmdCause, AmdParams, Decision, Verdict};
pub use analyzer::Analyzer;
pub use time::MediaTime;

/// Sample rate of the analysis path (VAD, tones, AMD). Narrowband telephony.
pub const ANALYSIS_RATE: u32 = 8_000;
/// Samples in one 10 ms analysis frame at [`ANALYSIS_RATE`].
pub const FRAME_SAMPLES: usize = 80;
