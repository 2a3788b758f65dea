//! Sample-rate conversion with rubato, for audio that arrives at another rate than
//! the 8 kHz analysis path (16/48 kHz WAV, wideband PCM). Live Opus never needs it: it
//! is decoded straight to 8 kHz.

use rubato::{FftFixedIn, Resampler};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ResampleError {
    #[error("cannot build a {from} Hz -> {to} Hz resampler: {msg}")]
    Construct { from: u32, to: u32, msg: String },
    #[error("resampling failed: {0}")]
    Process(String),
}

const CHUNK: usize = 1024;

/// Converts a whole mono signal from `from` Hz to `to` Hz, compensating the filter
/// delay so output sample `i` lines up with input time `i / to`.
pub fn convert(pcm: &[i16], from: u32, to: u32) -> Result<Vec<i16>, ResampleError> {
    if from == to {
        return Ok(pcm.to_vec());
    }
    let mut rs = FftFixedIn::<f32>::new(from as usize, to as usize, CHUNK, 2, 1)
        .map_err(|e| ResampleError::Construct { from, to, msg: e.to_string() })?;
    let delay = rs.output_delay();
    let want = (pcm.len() as u64 * to as u64 / from as u64) as usize;
    let mut out: Vec<f32> = Vec::with_capacity(want + delay + CHUNK);
    let input: Vec<f32> = pcm.iter().map(|&s| s as f32 / 32768.0).collect();
    let mut chunks = input.chunks_exact(CHUNK);
    for c in &mut chunks {
        let o = rs.process(&[c], None).map_err(|e| ResampleError::Process(e.to_string()))?;
        out.extend_from_slice(&o[0]);
    }
    let rest = chunks.remainder();
    let o = rs.process_partial(Some(&[rest]), None).map_err(|e| ResampleError::Process(e.to_string()))?;
    out.extend_from_slice(&o[0]);
    while out.len() < want + delay {
        let o = rs.process_partial::<&[f32]>(None, None).map_err(|e| ResampleError::Process(e.to_string()))?;
        if o[0].is_empty() {
            break;
        }
        out.extend_from_slice(&o[0]);
    }
    Ok(out.iter().skip(delay).take(want).map(|&v| (v * 32768.0).round().clamp(-32768.0, 32767.0) as i16).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freq: f64, rate: u32, n: usize) -> Vec<i16> {
        (0..n).map(|i| ((2.0 * std::f64::consts::PI * freq * i as f64 / rate as f64).sin() * 10_000.0) as i16).collect()
    }

    #[test]
    fn keeps_a_tone_in_place_when_halving_the_rate() {
        let x = tone(1000.0, 16_000, 16_000);
        let y = convert(&x, 16_000, 8_000).expect("resample");
        assert_eq!(y.len(), 8_000);
        // Compare against the ideal 8 kHz tone in the middle (away from edges).
        let ideal = tone(1000.0, 8_000, 8_000);
        let err: f64 = (1000..7000).map(|i| (y[i] as f64 - ideal[i] as f64).powi(2)).sum::<f64>() / 6000.0;
        assert!(err.sqrt() < 300.0, "rms error {}", err.sqrt());
    }

    #[test]
    fn removes_content_above_the_new_nyquist() {
        let x = tone(6000.0, 48_000, 48_000);
        let y = convert(&x, 48_000, 8_000).expect("resample");
        let rms = (y[500..7500].iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / 7000.0).sqrt();
        assert!(rms < 100.0, "6 kHz leaked through: rms {rms}");
    }
}
