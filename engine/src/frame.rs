//! Cuts a stream of PCM blocks of any length into fixed frames (10 ms analysis frames,
//! 20 ms VAD blocks), without allocating: a fixed carry buffer.

use crate::FRAME_SAMPLES;

/// Frames of `N` samples (default: one 10 ms analysis frame).
#[derive(Debug, Clone)]
pub struct Framer<const N: usize = FRAME_SAMPLES> {
    buf: [i16; N],
    fill: usize,
}

impl<const N: usize> Default for Framer<N> {
    fn default() -> Self {
        Framer { buf: [0; N], fill: 0 }
    }
}

impl<const N: usize> Framer<N> {
    /// Feeds `pcm` and calls `on_frame` for every complete frame, in order.
    pub fn push(&mut self, mut pcm: &[i16], mut on_frame: impl FnMut(&[i16; N])) {
        while !pcm.is_empty() {
            let take = (N - self.fill).min(pcm.len());
            self.buf[self.fill..self.fill + take].copy_from_slice(&pcm[..take]);
            self.fill += take;
            pcm = &pcm[take..];
            if self.fill == N {
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
        let mut f = Framer::<80>::default();
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
