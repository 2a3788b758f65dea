//! Cuts a stream of PCM blocks of any length into 10 ms analysis frames, without
//! allocating: a fixed 80-sample carry buffer.

use crate::FRAME_SAMPLES;

#[derive(Debug, Clone)]
pub struct Framer {
    buf: [i16; FRAME_SAMPLES],
    fill: usize,
}

impl Default for Framer {
    fn default() -> Self {
        Framer {
            buf: [0; FRAME_SAMPLES],
            fill: 0,
        }
    }
}

impl Framer {
    /// Feeds `pcm` and calls `on_frame` for every complete frame, in order.
    pub fn push(&mut self, mut pcm: &[i16], mut on_frame: impl FnMut(&[i16; FRAME_SAMPLES])) {
        while !pcm.is_empty() {
            let take = (FRAME_SAMPLES - self.fill).min(pcm.len());
            self.buf[self.fill..self.fill + take].copy_from_slice(&pcm[..take]);
            self.fill += take;
            pcm = &pcm[take..];
            if self.fill == FRAME_SAMPLES {
                on_frame(&self.buf);
                self.fill = 0;
            }
        }
    }

    /// Samples held back waiting for a full frame.
    pub fn pending(&self) -> usize {
        self.fill
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_block_sizes_give_whole_frames_in_order() {
        let mut f = Framer::default();
        let pcm: Vec<i16> = (0..1000).map(|i| i as i16).collect();
        let mut frames = Vec::new();
        for chunk in pcm.chunks(37) {
            f.push(chunk, |fr| frames.push(fr.to_vec()));
        }
        assert_eq!(frames.len(), 12);
        assert_eq!(f.pending(), 40);
        let flat: Vec<i16> = frames.concat();
        assert_eq!(flat, pcm[..960]);
    }
}
