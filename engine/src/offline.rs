//! Whole-file analysis: WAV bytes in, AMD result out. Pure (the caller reads the file),
//! so the CLI, the demo and the corpus test share one path with live sessions.

use crate::amd::{AmdEvent, AmdParams, Decision};
use crate::analyzer::Analyzer;
use crate::resample::{self, ResampleError};
use crate::wav::{self, WavError};
use crate::{MediaTime, ANALYSIS_RATE};

#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    #[error(transparent)]
    Wav(#[from] WavError),
    #[error(transparent)]
    Resample(#[from] ResampleError),
}

/// What AMD made of one recording.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FileAnalysis {
    pub decision: Decision,
    /// The beep, if one was heard: (start, end, Hz).
    pub beep: Option<(MediaTime, MediaTime, u32)>,
    /// For machines: when the message ended (beep end, or silence after the greeting).
    pub message_end: Option<MediaTime>,
    /// Audio length at the analysis rate.
    pub duration: MediaTime,
}

/// Analyses a WAV file image from its start (= answer).
pub fn analyze_wav(bytes: &[u8], params: AmdParams) -> Result<FileAnalysis, AnalyzeError> {
    Ok(analyze_pcm(&wav_to_analysis_pcm(bytes)?, params))
}

/// Decodes a WAV file image to PCM at the analysis rate (channel 0).
pub fn wav_to_analysis_pcm(bytes: &[u8]) -> Result<Vec<i16>, AnalyzeError> {
    let w = wav::parse(bytes)?;
    Ok(resample::convert(&w.samples, w.rate, ANALYSIS_RATE)?)
}

/// Analyses 8 kHz PCM from its start, fed in 20 ms packets as a live call would be.
pub fn analyze_pcm(pcm: &[i16], params: AmdParams) -> FileAnalysis {
    let mut a = Analyzer::new(params);
    let mut out = FileAnalysis { decision: placeholder(), beep: None, message_end: None, duration: MediaTime::ZERO };
    let mut decided = false;
    let mut drain = |a: &mut Analyzer, out: &mut FileAnalysis| {
        while let Some(e) = a.poll_event() {
            match e {
                AmdEvent::Decided(d) => {
                    out.decision = d;
                    decided = true;
                }
                AmdEvent::Beep { start, end, hz } => out.beep = Some((start, end, hz)),
                AmdEvent::MessageEnd { at } => out.message_end = at,
            }
        }
    };
    for chunk in pcm.chunks(160) {
        a.push_pcm(chunk);
        drain(&mut a, &mut out);
        if a.amd().is_done() {
            break;
        }
    }
    let end = MediaTime::from_samples(pcm.len() as u64);
    if !a.amd().is_done() {
        a.finish(end);
        drain(&mut a, &mut out);
    }
    debug_assert!(decided);
    out.duration = end;
    out
}

fn placeholder() -> Decision {
    use crate::amd::{AmdCause, Verdict};
    Decision { verdict: Verdict::NotSure, cause: AmdCause::Hangup { total_ms: 0 }, at: MediaTime::ZERO }
}
