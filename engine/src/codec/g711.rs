//! G.711 µ-law and A-law (ITU-T G.711), bit-exact with the ITU-T G.191 reference
//! implementation (checked against `audio-codec-algorithms` on every input). Decoding is a 256-entry table lookup; encoding is branch-light integer code.

const fn ulaw_to_linear(u: u8) -> i16 {
    let u = !u;
    let t = (((u & 0x0f) as i32) << 3) + 0x84;
    let t = t << ((u & 0x70) >> 4);
    (if u & 0x80 != 0 { 0x84 - t } else { t - 0x84 }) as i16
}

const fn alaw_to_linear(a: u8) -> i16 {
    let a = a ^ 0x55;
    let mut t = ((a & 0x0f) as i32) << 4;
    let seg = ((a & 0x70) >> 4) as i32;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= seg - 1;
        }
    }
    (if a & 0x80 != 0 { t } else { -t }) as i16
}

const fn table(alaw: bool) -> [i16; 256] {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = if alaw { alaw_to_linear(i as u8) } else { ulaw_to_linear(i as u8) };
        i += 1;
    }
    t
}

static ULAW_DECODE: [i16; 256] = table(false);
static ALAW_DECODE: [i16; 256] = table(true);

/// Decodes one µ-law byte.
#[inline]
pub fn ulaw_decode(u: u8) -> i16 {
    ULAW_DECODE[u as usize]
}

/// Decodes one A-law byte.
#[inline]
pub fn alaw_decode(a: u8) -> i16 {
    ALAW_DECODE[a as usize]
}

/// Segment number (0..=8) of a magnitude against the segment end points `ends`.
#[inline]
fn segment(val: i32, ends: &[i32; 8]) -> usize {
    ends.iter().position(|&e| val <= e).unwrap_or(8)
}

const SEG_UEND: [i32; 8] = [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF];
const SEG_AEND: [i32; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];

/// Encodes one 16-bit linear sample to µ-law.
#[inline]
pub fn ulaw_encode(pcm: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 8159;
    let mut v = (pcm as i32) >> 2;
    let mask = if v < 0 {
        // One's complement magnitude, as in ITU-T G.191's reference g711.c.
        v = -v - 1;
        0x7f
    } else {
        0xff
    };
    v = v.min(CLIP) + (BIAS >> 2);
    let seg = segment(v, &SEG_UEND);
    if seg >= 8 {
        return (0x7f ^ mask) as u8;
    }
    let uval = ((seg as i32) << 4) | ((v >> (seg + 1)) & 0x0f);
    (uval ^ mask) as u8
}

/// Encodes one 16-bit linear sample to A-law.
#[inline]
pub fn alaw_encode(pcm: i16) -> u8 {
    let mut v = (pcm as i32) >> 3;
    let mask = if v >= 0 {
        0xd5
    } else {
        v = -v - 1;
        0x55
    };
    let seg = segment(v, &SEG_AEND);
    if seg >= 8 {
        return (0x7f ^ mask) as u8;
    }
    let mut aval = (seg as i32) << 4;
    aval |= if seg < 2 { (v >> 1) & 0x0f } else { (v >> seg) & 0x0f };
    (aval ^ mask) as u8
}

/// Decodes µ-law bytes into `out` (same length). Returns samples written.
pub fn ulaw_decode_into(input: &[u8], out: &mut [i16]) -> usize {
    let n = input.len().min(out.len());
    for (o, &b) in out[..n].iter_mut().zip(input) {
        *o = ULAW_DECODE[b as usize];
    }
    n
}

/// Decodes A-law bytes into `out` (same length). Returns samples written.
pub fn alaw_decode_into(input: &[u8], out: &mut [i16]) -> usize {
    let n = input.len().min(out.len());
    for (o, &b) in out[..n].iter_mut().zip(input) {
        *o = ALAW_DECODE[b as usize];
    }
    n
}

/// Encodes samples to µ-law into `out`. Returns bytes written.
pub fn ulaw_encode_into(input: &[i16], out: &mut [u8]) -> usize {
    let n = input.len().min(out.len());
    for (o, &s) in out[..n].iter_mut().zip(input) {
        *o = ulaw_encode(s);
    }
    n
}

/// Encodes samples to A-law into `out`. Returns bytes written.
pub fn alaw_encode_into(input: &[i16], out: &mut [u8]) -> usize {
    let n = input.len().min(out.len());
    for (o, &s) in out[..n].iter_mut().zip(input) {
        *o = alaw_encode(s);
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulaw_matches_reference_on_all_inputs() {
        for s in i16::MIN..=i16::MAX {
            assert_eq!(ulaw_encode(s), audio_codec_algorithms::encode_ulaw(s), "encode {s}");
        }
        for b in 0..=255u8 {
            assert_eq!(ulaw_decode(b), audio_codec_algorithms::decode_ulaw(b), "decode {b:#x}");
        }
    }

    #[test]
    fn alaw_matches_reference_on_all_inputs() {
        for s in i16::MIN..=i16::MAX {
            assert_eq!(alaw_encode(s), audio_codec_algorithms::encode_alaw(s), "encode {s}");
        }
        for b in 0..=255u8 {
            assert_eq!(alaw_decode(b), audio_codec_algorithms::decode_alaw(b), "decode {b:#x}");
        }
    }

    #[test]
    fn decoded_values_reencode_to_themselves() {
        for b in 0..=255u8 {
            let u = ulaw_encode(ulaw_decode(b));
            // 0x7f and 0xff are both zero in µ-law; zero encodes as 0xff.
            assert!(u == b || (ulaw_decode(b) == 0 && u == 0xff), "ulaw {b:#x}");
            assert_eq!(alaw_encode(alaw_decode(b)), b, "alaw {b:#x}");
        }
    }
}
