//! waihu media plane, pure part: RTP, codecs, framing, VAD, tone detection and
//! answering-machine detection. No IO and no clock: time is media time (samples),
//! so the same audio gives the same decision on every run. The glommio shell that
//! carries live sessions lives in `worker/` (a later issue).

pub mod amd;
pub mod amd_asterisk;
pub mod amd_eval;
pub mod analyzer;
pub mod codec;
pub mod dtmf;
pub mod frame;
pub mod jitter;
pub mod offline;
pub mod resample;
pub mod rtcp;
pub mod rtp;
pub mod sender;
pub mod session;
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
