//! Opus through libopus (the `opus` crate). The decoder runs straight at the analysis
//! rate (libopus decodes to 8/12/16/24/48 kHz natively), so no resampler is needed.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum OpusError {
    #[error("opus: {0}")]
    Lib(#[from] opus::Error),
    #[error("opus frame of {0} samples is not 2.5/5/10/20/40/60 ms at {1} Hz")]
    BadFrame(usize, u32),
}

/// Mono Opus decoder to 16-bit PCM at a fixed rate.
pub struct OpusDecoder {
    inner: opus::Decoder,
    rate: u32,
}

impl std::fmt::Debug for OpusDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusDecoder").field("rate", &self.rate).finish()
    }
}

impl OpusDecoder {
    /// `rate` is one of 8000, 12000, 16000, 24000, 48000.
    pub fn new(rate: u32) -> Result<Self, OpusError> {
        Ok(OpusDecoder { inner: opus::Decoder::new(rate, opus::Channels::Mono)?, rate })
    }

    /// Decodes one packet into `out`; returns samples written. Corrupt packets are errors.
    pub fn decode(&mut self, packet: &[u8], out: &mut [i16]) -> Result<usize, OpusError> {
        Ok(self.inner.decode(packet, out, false)?)
    }

    /// Packet-loss concealment for one missing frame of `out.len()` samples.
    pub fn conceal(&mut self, out: &mut [i16]) -> Result<usize, OpusError> {
        Ok(self.inner.decode(&[], out, false)?)
    }

    pub fn rate(&self) -> u32 {
        self.rate
    }
}

/// Mono Opus encoder (VoIP application).
pub struct OpusEncoder {
    inner: opus::Encoder,
    rate: u32,
}

impl std::fmt::Debug for OpusEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusEncoder").field("rate", &self.rate).finish()
    }
}

impl OpusEncoder {
    pub fn new(rate: u32, bitrate: i32, complexity: i32) -> Result<Self, OpusError> {
        let mut inner = opus::Encoder::new(rate, opus::Channels::Mono, opus::Application::Voip)?;
        inner.set_bitrate(opus::Bitrate::Bits(bitrate))?;
        inner.set_complexity(complexity)?;
        Ok(OpusEncoder { inner, rate })
    }

    /// Encodes one frame (2.5-60 ms of samples) into `out`; returns bytes written.
    pub fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<usize, OpusError> {
        let ms_x10 = pcm.len() as u64 * 10_000 / self.rate as u64;
        if ![25, 50, 100, 200, 400, 600].contains(&ms_x10) {
            return Err(OpusError::BadFrame(pcm.len(), self.rate));
        }
        Ok(self.inner.encode(pcm, out)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_and_decodes_a_tone_at_8k() {
        let mut enc = OpusEncoder::new(8000, 24_000, 5).expect("encoder");
        let mut dec = OpusDecoder::new(8000).expect("decoder");
        let mut pkt = [0u8; 400];
        let mut out = [0i16; 160];
        let mut energy = 0f64;
        for k in 0..20 {
            let pcm: Vec<i16> = (0..160)
                .map(|i| ((2.0 * std::f64::consts::PI * 440.0 * (k * 160 + i) as f64 / 8000.0).sin() * 8000.0) as i16)
                .collect();
            let n = enc.encode(&pcm, &mut pkt).expect("encode");
            let m = dec.decode(&pkt[..n], &mut out).expect("decode");
            assert_eq!(m, 160);
            if k > 5 {
                energy += out.iter().map(|&s| (s as f64).powi(2)).sum::<f64>();
            }
        }
        let rms = (energy / (14.0 * 160.0)).sqrt();
        assert!((4000.0..7000.0).contains(&rms), "decoded rms {rms}");
    }

    #[test]
    fn corrupt_packet_is_an_error_not_a_panic() {
        let mut dec = OpusDecoder::new(8000).expect("decoder");
        let mut out = [0i16; 160];
        // TOC for a code-3 packet with an impossible frame count.
        assert!(dec.decode(&[0x03, 0xff], &mut out).is_err());
        assert!(OpusEncoder::new(8000, 24_000, 5).expect("enc").encode(&[0; 100], &mut [0; 10]).is_err());
    }
}
