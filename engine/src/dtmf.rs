//! DTMF: RFC 4733 telephone-event payloads, and an in-band detector (Goertzel over
//! 20 ms blocks, row/column pairs with energy-share and twist checks).

use crate::tones::GoertzelBank;
use crate::{MediaTime, FRAME_SAMPLES};
use thiserror::Error;

/// Event codes 0-15: digits, `*`, `#`, A-D (RFC 4733 §3.2).
pub const EVENT_CHARS: [char; 16] = ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9', '*', '#', 'A', 'B', 'C', 'D'];

/// Maps a DTMF character to its RFC 4733 event code.
pub fn event_code(c: char) -> Option<u8> {
    EVENT_CHARS.iter().position(|&e| e == c.to_ascii_uppercase()).map(|i| i as u8)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum TelephoneEventError {
    #[error("telephone-event payload of {0} bytes (needs at least 4)")]
    TooShort(usize),
}

/// One RFC 4733 named event block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    pub event: u8,
    pub end: bool,
    /// Power level as -dBm0, 0..=63.
    pub volume: u8,
    /// Duration in timestamp units since the event began.
    pub duration: u16,
}

impl TelephoneEvent {
    pub fn parse(payload: &[u8]) -> Result<TelephoneEvent, TelephoneEventError> {
        if payload.len() < 4 {
            return Err(TelephoneEventError::TooShort(payload.len()));
        }
        Ok(TelephoneEvent {
            event: payload[0],
            end: payload[1] & 0x80 != 0,
            volume: payload[1] & 0x3f,
            duration: u16::from_be_bytes([payload[2], payload[3]]),
        })
    }

    pub fn to_bytes(self) -> [u8; 4] {
        let d = self.duration.to_be_bytes();
        [self.event, (self.end as u8) << 7 | (self.volume & 0x3f), d[0], d[1]]
    }

    /// The DTMF character, for events 0-15.
    pub fn digit(&self) -> Option<char> {
        EVENT_CHARS.get(self.event as usize).copied()
    }
}

const ROWS: [f32; 4] = [697.0, 770.0, 852.0, 941.0];
const COLS: [f32; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
const KEYS: [[char; 4]; 4] = [['1', '2', '3', 'A'], ['4', '5', '6', 'B'], ['7', '8', '9', 'C'], ['*', '0', '#', 'D']];
const BLOCK: usize = 2 * FRAME_SAMPLES;

/// A detected in-band digit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfDigit {
    pub digit: char,
    pub at: MediaTime,
}

/// In-band DTMF detector. Feed 10 ms frames; it reports each key press once.
#[derive(Debug, Clone)]
pub struct DtmfDetector {
    bank: GoertzelBank<8>,
    block: [f32; BLOCK],
    fill: usize,
    block_start: MediaTime,
    candidate: Option<char>,
    reported: Option<char>,
}

impl Default for DtmfDetector {
    fn default() -> Self {
        let f = [ROWS[0], ROWS[1], ROWS[2], ROWS[3], COLS[0], COLS[1], COLS[2], COLS[3]];
        DtmfDetector {
            bank: GoertzelBank::new(f),
            block: [0.0; BLOCK],
            fill: 0,
            block_start: MediaTime::ZERO,
            candidate: None,
            reported: None,
        }
    }
}

impl DtmfDetector {
    /// Feeds a frame that starts at `at`; returns a digit when a key press is confirmed
    /// (the same key in two consecutive 20 ms blocks).
    pub fn push(&mut self, at: MediaTime, frame: &[i16; FRAME_SAMPLES]) -> Option<DtmfDigit> {
        if self.fill == 0 {
            self.block_start = at;
        }
        for (o, &s) in self.block[self.fill..self.fill + FRAME_SAMPLES].iter_mut().zip(frame) {
            *o = s as f32 * (1.0 / 32768.0);
        }
        self.fill += FRAME_SAMPLES;
        if self.fill < BLOCK {
            return None;
        }
        self.fill = 0;
        let key = self.classify();
        let out = match key {
            Some(k) if self.candidate == Some(k) && self.reported != Some(k) => {
                self.reported = Some(k);
                Some(DtmfDigit { digit: k, at: self.block_start })
            }
            _ => None,
        };
        if key.is_none() {
            self.reported = None;
        }
        self.candidate = key;
        out
    }

    fn classify(&self) -> Option<char> {
        let energy: f32 = self.block.iter().map(|v| v * v).sum();
        let level_db = 10.0 * (2.0 * energy / BLOCK as f32).max(1e-12).log10();
        if level_db < -40.0 {
            return None;
        }
        let p = self.bank.relative_powers(&self.block, energy);
        let best =
            |r: std::ops::Range<usize>| r.max_by(|&a, &b| p[a].total_cmp(&p[b])).map(|i| (i, p[i])).unwrap_or((0, 0.0));
        let (ri, rp) = best(0..4);
        let (ci, cp) = best(4..8);
        // Two tones of about equal level (relative power ~0.5 each); twist within 8 dB.
        let twist_ok = rp > 0.0 && cp > 0.0 && (10.0 * (rp / cp).log10()).abs() <= 8.0;
        let second_row = (0..4).filter(|&i| i != ri).map(|i| p[i]).fold(0.0f32, f32::max);
        let second_col = (4..8).filter(|&i| i != ci).map(|i| p[i]).fold(0.0f32, f32::max);
        if rp + cp > 0.7 && twist_ok && second_row < rp * 0.25 && second_col < cp * 0.25 {
            Some(KEYS[ri][ci - 4])
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn telephone_event_round_trips() {
        let e = TelephoneEvent { event: 11, end: true, volume: 10, duration: 1280 };
        let b = e.to_bytes();
        assert_eq!(b, [11, 0x8a, 0x05, 0x00]);
        assert_eq!(TelephoneEvent::parse(&b), Ok(e));
        assert_eq!(e.digit(), Some('#'));
        assert_eq!(event_code('a'), Some(12));
        assert_eq!(TelephoneEvent::parse(&b[..3]), Err(TelephoneEventError::TooShort(3)));
    }

    fn key_audio(row: f32, col: f32, n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| {
                let t = i as f32 / 8000.0;
                let v = (2.0 * std::f32::consts::PI * row * t).sin() + (2.0 * std::f32::consts::PI * col * t).sin();
                (v * 6000.0) as i16
            })
            .collect()
    }

    #[test]
    fn detects_each_key_once_per_press() {
        let mut audio = Vec::new();
        let expect = "159#0D";
        for c in expect.chars() {
            let (r, k) = KEYS
                .iter()
                .enumerate()
                .find_map(|(r, row)| row.iter().position(|&x| x == c).map(|k| (r, k)))
                .expect("key");
            audio.extend(key_audio(ROWS[r], COLS[k], 800));
            audio.extend(vec![0i16; 640]);
        }
        let mut d = DtmfDetector::default();
        let got: String = audio
            .chunks_exact(FRAME_SAMPLES)
            .enumerate()
            .filter_map(|(i, c)| {
                let mut f = [0i16; FRAME_SAMPLES];
                f.copy_from_slice(c);
                d.push(MediaTime::from_samples((i * FRAME_SAMPLES) as u64), &f)
            })
            .map(|d| d.digit)
            .collect();
        assert_eq!(got, expect);
    }

    #[test]
    fn a_single_tone_is_not_a_digit() {
        let mut d = DtmfDetector::default();
        let x = crate::tones::tests::sine(1000.0, 0.3, 0, 1600);
        for (i, c) in x.chunks_exact(FRAME_SAMPLES).enumerate() {
            let mut f = [0i16; FRAME_SAMPLES];
            f.copy_from_slice(c);
            assert_eq!(d.push(MediaTime::from_samples(i as u64 * 80), &f), None);
        }
    }
}
