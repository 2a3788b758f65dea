//! WAV (RIFF) reading for analysis input: 16-bit PCM, µ-law and A-law, any rate,
//! mono or multi-channel (channel 0 is used: a call recording's customer side).
//! Corrupt and unsupported files give a [`WavError`] naming the problem.

use crate::codec::g711;
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum WavError {
    #[error("not a RIFF/WAVE file")]
    NotWav,
    #[error("truncated: {0}")]
    Truncated(&'static str),
    #[error("no `fmt ` chunk before the `data` chunk")]
    NoFormat,
    #[error("no `data` chunk")]
    NoData,
    #[error("unsupported WAV encoding: format tag {tag:#06x}, {bits} bits (supported: 16-bit PCM, 8-bit mu-law, 8-bit A-law)")]
    Unsupported { tag: u16, bits: u16 },
    #[error("bad `fmt ` chunk: {0}")]
    BadFormat(&'static str),
}

/// Sample encoding found in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Pcm16,
    Ulaw,
    Alaw,
}

/// A decoded WAV: channel 0 as 16-bit linear PCM.
#[derive(Debug, Clone)]
pub struct Wav {
    pub rate: u32,
    pub channels: u16,
    pub encoding: Encoding,
    pub samples: Vec<i16>,
}

fn u16le(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}

fn u32le(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

/// Parses a whole WAV file held in memory.
pub fn parse(bytes: &[u8]) -> Result<Wav, WavError> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err(WavError::NotWav);
    }
    let mut off = 12;
    let mut fmt: Option<(Encoding, u16, u32, u16)> = None;
    while off + 8 <= bytes.len() {
        let id = &bytes[off..off + 4];
        let len = u32le(bytes, off + 4) as usize;
        let body = off + 8;
        match id {
            b"fmt " => {
                if len < 16 || body + 16 > bytes.len() {
                    return Err(WavError::Truncated("fmt chunk"));
                }
                let mut tag = u16le(bytes, body);
                let channels = u16le(bytes, body + 2);
                let rate = u32le(bytes, body + 4);
                let block_align = u16le(bytes, body + 12);
                let bits = u16le(bytes, body + 14);
                if tag == 0xfffe {
                    // WAVE_FORMAT_EXTENSIBLE: the sub-format GUID starts with the real tag.
                    if len < 40 || body + 26 > bytes.len() {
                        return Err(WavError::Truncated("extensible fmt chunk"));
                    }
                    tag = u16le(bytes, body + 24);
                }
                let enc = match (tag, bits) {
                    (1, 16) => Encoding::Pcm16,
                    (7, 8) => Encoding::Ulaw,
                    (6, 8) => Encoding::Alaw,
                    _ => return Err(WavError::Unsupported { tag, bits }),
                };
                if channels == 0 {
                    return Err(WavError::BadFormat("zero channels"));
                }
                if !(4_000..=192_000).contains(&rate) {
                    return Err(WavError::BadFormat("sample rate outside 4-192 kHz"));
                }
                let width = if enc == Encoding::Pcm16 { 2 } else { 1 };
                if block_align as usize != width * channels as usize {
                    return Err(WavError::BadFormat("block align does not match channels and bits"));
                }
                fmt = Some((enc, channels, rate, block_align));
            }
            b"data" => {
                let (enc, channels, rate, align) = fmt.ok_or(WavError::NoFormat)?;
                // Streaming writers leave the length at 0 or 0xffffffff: take what is there.
                let avail = bytes.len() - body;
                let len = if len == 0 || len == u32::MAX as usize { avail } else { len };
                if len > avail {
                    return Err(WavError::Truncated("data chunk is shorter than its header says"));
                }
                let data = &bytes[body..body + len];
                let frames = data.chunks_exact(align as usize);
                let samples: Vec<i16> = match enc {
                    Encoding::Pcm16 => frames.map(|f| i16::from_le_bytes([f[0], f[1]])).collect(),
                    Encoding::Ulaw => frames.map(|f| g711::ulaw_decode(f[0])).collect(),
                    Encoding::Alaw => frames.map(|f| g711::alaw_decode(f[0])).collect(),
                };
                return Ok(Wav { rate, channels, encoding: enc, samples });
            }
            _ => {}
        }
        off = body + len + (len & 1);
    }
    Err(if fmt.is_some() { WavError::NoData } else { WavError::NoFormat })
}

/// Writes mono 16-bit PCM as a WAV file image (for fixtures and recordings).
pub fn write_pcm16(rate: u32, samples: &[i16]) -> Vec<u8> {
    let data_len = (samples.len() * 2) as u32;
    let mut v = Vec::with_capacity(44 + samples.len() * 2);
    v.extend_from_slice(b"RIFF");
    v.extend_from_slice(&(36 + data_len).to_le_bytes());
    v.extend_from_slice(b"WAVEfmt ");
    v.extend_from_slice(&16u32.to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes());
    v.extend_from_slice(&rate.to_le_bytes());
    v.extend_from_slice(&(rate * 2).to_le_bytes());
    v.extend_from_slice(&2u16.to_le_bytes());
    v.extend_from_slice(&16u16.to_le_bytes());
    v.extend_from_slice(b"data");
    v.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        v.extend_from_slice(&s.to_le_bytes());
    }
    v
}

/// Writes interleaved stereo 16-bit PCM (left, right, left, ...) as a WAV file image.
pub fn write_pcm16_stereo(rate: u32, interleaved: &[i16]) -> Vec<u8> {
    let mut v = write_pcm16(rate, interleaved);
    // Same layout as mono but two channels: fix channels, byte rate and block align.
    v[22..24].copy_from_slice(&2u16.to_le_bytes());
    v[28..32].copy_from_slice(&(rate * 4).to_le_bytes());
    v[32..34].copy_from_slice(&4u16.to_le_bytes());
    v
}

/// Writes mono G.711 (µ-law when `ulaw`, else A-law) as a WAV file image.
pub fn write_g711(rate: u32, samples: &[i16], ulaw: bool) -> Vec<u8> {
    let n = samples.len() as u32;
    let mut v = Vec::with_capacity(58 + samples.len());
    v.extend_from_slice(b"RIFF");
    v.extend_from_slice(&(50 + n + (n & 1)).to_le_bytes());
    v.extend_from_slice(b"WAVEfmt ");
    v.extend_from_slice(&18u32.to_le_bytes());
    v.extend_from_slice(&(if ulaw { 7u16 } else { 6u16 }).to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes());
    v.extend_from_slice(&rate.to_le_bytes());
    v.extend_from_slice(&rate.to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes());
    v.extend_from_slice(&8u16.to_le_bytes());
    v.extend_from_slice(&0u16.to_le_bytes());
    v.extend_from_slice(b"fact");
    v.extend_from_slice(&4u32.to_le_bytes());
    v.extend_from_slice(&n.to_le_bytes());
    v.extend_from_slice(b"data");
    v.extend_from_slice(&n.to_le_bytes());
    v.extend(samples.iter().map(|&s| if ulaw { g711::ulaw_encode(s) } else { g711::alaw_encode(s) }));
    if n & 1 == 1 {
        v.push(0);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_back_pcm_ulaw_and_alaw() {
        let x: Vec<i16> = (0..800).map(|i| ((i * 37) % 2000 - 1000) as i16 * 8).collect();
        let w = parse(&write_pcm16(8000, &x)).expect("pcm");
        assert_eq!((w.rate, w.encoding, w.samples.clone()), (8000, Encoding::Pcm16, x.clone()));
        let u = parse(&write_g711(8000, &x[..799], true)).expect("ulaw");
        assert_eq!(u.encoding, Encoding::Ulaw);
        assert_eq!(u.samples.len(), 799);
        let expect: Vec<i16> = x[..799].iter().map(|&s| g711::ulaw_decode(g711::ulaw_encode(s))).collect();
        assert_eq!(u.samples, expect);
        let a = parse(&write_g711(16000, &x, false)).expect("alaw");
        assert_eq!((a.rate, a.encoding, a.samples.len()), (16000, Encoding::Alaw, 800));
    }

    #[test]
    fn corrupt_and_unsupported_files_are_clear_errors() {
        assert_eq!(parse(b"hello").expect_err("not a wav"), WavError::NotWav);
        let good = write_pcm16(8000, &[1, 2, 3, 4]);
        for n in 12..good.len() - 8 {
            assert!(parse(&good[..n]).is_err(), "prefix {n} accepted");
        }
        let mut float = good.clone();
        float[20] = 3; // IEEE float tag
        float[34] = 32;
        assert!(matches!(parse(&float), Err(WavError::Unsupported { tag: 3, bits: 32 })));
        let mut big = good.clone();
        big[40..44].copy_from_slice(&1000u32.to_le_bytes());
        assert!(matches!(parse(&big), Err(WavError::Truncated(_))));
    }
}
