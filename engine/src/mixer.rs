//! A small conference mixer for supervisor monitoring (listen, whisper, barge), pure: no
//! IO, no clock, no allocation after it is made.
//!
//! Each member leg's received audio goes into that member's own short FIFO as it arrives.
//! On every 20 ms tick of the shard's pacer, one frame is taken from each FIFO, and each
//! member is sent the sum of the frames of the members it may hear (`hears`, a bitmask of
//! member indexes), never its own. A FIFO that runs dry contributes silence and then waits
//! for two frames before it plays again, so arrival jitter of up to a frame costs no
//! gaps; one that fills (a far end sending faster than the clock) drops its oldest audio,
//! so the delay cannot grow.

/// Members a mix can hold: customer, agent, supervisor, and one more (a consulted party).
pub const MAX_MEMBERS: usize = 4;
/// Samples in one tick's frame (20 ms at 8 kHz).
pub const MIX_FRAME: usize = 160;
/// Frames a member's FIFO holds before its oldest audio is dropped.
const DEPTH: usize = 4;
/// Frames a dry FIFO waits for before it plays again.
const PRIME: usize = 2;

/// Who hears whom while a supervisor monitors a call. Members are, in order: the
/// customer (0), the agent (1) and the supervisor (2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MonitorMode {
    /// The supervisor hears both; nobody hears the supervisor.
    Listen,
    /// The supervisor hears both; only the agent hears the supervisor.
    Whisper,
    /// Three-way: everyone hears the other two.
    Barge,
}

impl MonitorMode {
    /// What each of customer, agent and supervisor hears, as member bitmasks.
    pub fn hears(self) -> [u8; 3] {
        const CUSTOMER: u8 = 1;
        const AGENT: u8 = 2;
        const SUPERVISOR: u8 = 4;
        match self {
            MonitorMode::Listen => [AGENT, CUSTOMER, CUSTOMER | AGENT],
            MonitorMode::Whisper => [AGENT, CUSTOMER | SUPERVISOR, CUSTOMER | AGENT],
            MonitorMode::Barge => [AGENT | SUPERVISOR, CUSTOMER | SUPERVISOR, CUSTOMER | AGENT],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MixError {
    #[error("a mix holds 1 to {MAX_MEMBERS} legs, not {0}")]
    Size(usize),
    #[error("leg {0} is in the mix twice")]
    Duplicate(u64),
}

/// One member's buffered audio: a ring of samples.
#[derive(Debug, Clone)]
struct Fifo {
    buf: [i16; MIX_FRAME * DEPTH],
    start: usize,
    len: usize,
    /// Playing (not waiting to refill after running dry).
    primed: bool,
}

impl Fifo {
    fn new() -> Fifo {
        Fifo { buf: [0; MIX_FRAME * DEPTH], start: 0, len: 0, primed: false }
    }

    fn push(&mut self, pcm: &[i16]) {
        let cap = self.buf.len();
        // More than the ring holds: only the newest part matters.
        let pcm = &pcm[pcm.len().saturating_sub(cap)..];
        let over = (self.len + pcm.len()).saturating_sub(cap);
        if over > 0 {
            self.start = (self.start + over) % cap;
            self.len -= over;
        }
        for &s in pcm {
            self.buf[(self.start + self.len) % cap] = s;
            self.len += 1;
        }
    }

    /// Takes the next frame into `out`; false (and `out` untouched) when there is none.
    fn pop(&mut self, out: &mut [i16; MIX_FRAME]) -> bool {
        if !self.primed && self.len >= PRIME * MIX_FRAME {
            self.primed = true;
        }
        if !self.primed || self.len < MIX_FRAME {
            self.primed = false;
            return false;
        }
        let cap = self.buf.len();
        for (i, o) in out.iter_mut().enumerate() {
            *o = self.buf[(self.start + i) % cap];
        }
        self.start = (self.start + MIX_FRAME) % cap;
        self.len -= MIX_FRAME;
        true
    }

    fn clear(&mut self) {
        self.len = 0;
        self.primed = false;
    }
}

/// A mix of up to [`MAX_MEMBERS`] legs.
#[derive(Debug, Clone)]
pub struct Mixer {
    legs: [u64; MAX_MEMBERS],
    hears: [u8; MAX_MEMBERS],
    n: usize,
    fifo: [Fifo; MAX_MEMBERS],
    /// This tick's frame of each member, and which members have one.
    frames: [[i16; MIX_FRAME]; MAX_MEMBERS],
    present: u8,
    /// The tick `frames` belong to.
    tick: Option<u64>,
}

impl Mixer {
    /// `members`: each leg and the bitmask of member indexes (positions in `members`) it
    /// hears. A member never hears itself, and bits past the last member are ignored.
    pub fn new(members: &[(u64, u8)]) -> Result<Mixer, MixError> {
        if members.is_empty() || members.len() > MAX_MEMBERS {
            return Err(MixError::Size(members.len()));
        }
        let mut legs = [0; MAX_MEMBERS];
        let mut hears = [0; MAX_MEMBERS];
        let all = (1u8 << members.len()) - 1;
        for (i, &(leg, h)) in members.iter().enumerate() {
            if members[..i].iter().any(|&(l, _)| l == leg) {
                return Err(MixError::Duplicate(leg));
            }
            legs[i] = leg;
            hears[i] = h & all & !(1 << i);
        }
        Ok(Mixer {
            legs,
            hears,
            n: members.len(),
            fifo: std::array::from_fn(|_| Fifo::new()),
            frames: [[0; MIX_FRAME]; MAX_MEMBERS],
            present: 0,
            tick: None,
        })
    }

    /// The member index of `leg`.
    pub fn index_of(&self, leg: u64) -> Option<usize> {
        self.legs[..self.n].iter().position(|&l| l == leg)
    }

    pub fn legs(&self) -> &[u64] {
        &self.legs[..self.n]
    }

    /// What member `i` hears (bitmask).
    pub fn hears(&self, i: usize) -> u8 {
        self.hears.get(i).copied().unwrap_or(0)
    }

    /// Audio member `i` sent us (8 kHz PCM, any length).
    pub fn push(&mut self, i: usize, pcm: &[i16]) {
        if i < self.n {
            self.fifo[i].push(pcm);
        }
    }

    /// Member `i` left (its leg closed or was taken out): nobody hears it, it hears nobody.
    pub fn remove(&mut self, i: usize) {
        if i >= self.n {
            return;
        }
        self.hears[i] = 0;
        for h in &mut self.hears {
            *h &= !(1 << i);
        }
        self.fifo[i].clear();
    }

    /// What member `i` hears on pacer tick `tick`, into `out`. The first member asked in a
    /// new tick takes that tick's frame from every FIFO; the others share it. False when
    /// `i` hears nobody (nothing to send); `out` is silence when those it hears are quiet.
    pub fn frame_for(&mut self, i: usize, tick: u64, out: &mut [i16; MIX_FRAME]) -> bool {
        if self.tick != Some(tick) {
            self.advance(tick);
        }
        let hears = self.hears(i);
        if hears == 0 {
            return false;
        }
        let heard = hears & self.present;
        let mut acc = [0i32; MIX_FRAME];
        for (m, frame) in self.frames[..self.n].iter().enumerate() {
            if heard & (1 << m) != 0 {
                acc.iter_mut().zip(frame).for_each(|(a, &s)| *a += s as i32);
            }
        }
        for (o, a) in out.iter_mut().zip(acc) {
            *o = a.clamp(i16::MIN as i32, i16::MAX as i32) as i16;
        }
        true
    }

    fn advance(&mut self, tick: u64) {
        self.tick = Some(tick);
        self.present = 0;
        for m in 0..self.n {
            if self.fifo[m].pop(&mut self.frames[m]) {
                self.present |= 1 << m;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(v: i16) -> [i16; MIX_FRAME] {
        [v; MIX_FRAME]
    }

    /// Customer sends 100s, agent 20s, supervisor 3s: each listener's sum tells who it hears.
    fn heard_by(mode: MonitorMode) -> [Option<i16>; 3] {
        let h = mode.hears();
        let mut m = Mixer::new(&[(10, h[0]), (11, h[1]), (12, h[2])]).expect("valid");
        for _ in 0..PRIME {
            m.push(0, &level(100));
            m.push(1, &level(20));
            m.push(2, &level(3));
        }
        let mut out = [0; MIX_FRAME];
        std::array::from_fn(|i| m.frame_for(i, 1, &mut out).then_some(out[0]))
    }

    #[test]
    fn listen_whisper_and_barge_route_who_hears_whom() {
        assert_eq!(heard_by(MonitorMode::Listen), [Some(20), Some(100), Some(120)]);
        assert_eq!(heard_by(MonitorMode::Whisper), [Some(20), Some(103), Some(120)]);
        assert_eq!(heard_by(MonitorMode::Barge), [Some(23), Some(103), Some(120)]);
    }

    #[test]
    fn a_member_never_hears_itself_and_a_deaf_one_gets_nothing() {
        let mut m = Mixer::new(&[(1, 0b11), (2, 0)]).expect("valid");
        m.push(0, &[5; 2 * MIX_FRAME]);
        m.push(1, &[7; 2 * MIX_FRAME]);
        let mut out = [0; MIX_FRAME];
        assert!(m.frame_for(0, 0, &mut out));
        assert_eq!(out[0], 7);
        assert!(!m.frame_for(1, 0, &mut out));
    }

    #[test]
    fn sums_saturate_instead_of_wrapping() {
        let mut m = Mixer::new(&[(1, 0b110), (2, 0), (3, 0)]).expect("valid");
        m.push(1, &[30_000; 2 * MIX_FRAME]);
        m.push(2, &[30_000; 2 * MIX_FRAME]);
        let mut out = [0; MIX_FRAME];
        assert!(m.frame_for(0, 0, &mut out));
        assert_eq!(out[0], i16::MAX);
    }

    #[test]
    fn one_frame_per_tick_shared_by_every_listener() {
        let mut m = Mixer::new(&[(1, 0b10), (2, 0b01)]).expect("valid");
        m.push(0, &[1; MIX_FRAME]);
        m.push(0, &[2; MIX_FRAME]);
        m.push(1, &[9; 2 * MIX_FRAME]);
        let mut out = [0; MIX_FRAME];
        // Tick 1: member 1 hears member 0's first frame, whoever is asked first.
        assert!(m.frame_for(1, 1, &mut out));
        assert_eq!(out[0], 1);
        assert!(m.frame_for(0, 1, &mut out));
        assert_eq!(out[0], 9);
        assert!(m.frame_for(1, 1, &mut out));
        assert_eq!(out[0], 1, "asking again in the same tick takes nothing more");
        assert!(m.frame_for(1, 2, &mut out));
        assert_eq!(out[0], 2);
    }

    #[test]
    fn a_dry_member_is_silence_then_waits_to_refill() {
        let mut m = Mixer::new(&[(1, 0b10), (2, 0)]).expect("valid");
        let mut out = [0; MIX_FRAME];
        m.push(1, &[4; MIX_FRAME]);
        assert!(m.frame_for(0, 1, &mut out));
        assert_eq!(out, [0; MIX_FRAME], "one frame is not enough to start");
        m.push(1, &[4; MIX_FRAME]);
        assert!(m.frame_for(0, 2, &mut out));
        assert_eq!(out[0], 4);
        assert!(m.frame_for(0, 3, &mut out));
        assert_eq!(out[0], 4);
        assert!(m.frame_for(0, 4, &mut out));
        assert_eq!(out[0], 0, "ran dry");
    }

    #[test]
    fn a_fast_sender_cannot_grow_the_delay() {
        let mut m = Mixer::new(&[(1, 0b10), (2, 0)]).expect("valid");
        for k in 0..50 {
            m.push(1, &[k; MIX_FRAME]);
        }
        let mut out = [0; MIX_FRAME];
        assert!(m.frame_for(0, 1, &mut out));
        assert_eq!(out[0], 50 - DEPTH as i16, "only the newest frames are kept");
    }

    #[test]
    fn a_removed_member_is_neither_heard_nor_hearing() {
        let h = MonitorMode::Barge.hears();
        let mut m = Mixer::new(&[(1, h[0]), (2, h[1]), (3, h[2])]).expect("valid");
        m.remove(2);
        for i in 0..3 {
            m.push(i, &[1 << i; 2 * MIX_FRAME]);
        }
        let mut out = [0; MIX_FRAME];
        assert!(m.frame_for(0, 1, &mut out));
        assert_eq!(out[0], 2);
        assert!(!m.frame_for(2, 1, &mut out));
    }

    #[test]
    fn bad_member_lists_are_refused() {
        assert_eq!(Mixer::new(&[]).err(), Some(MixError::Size(0)));
        assert_eq!(Mixer::new(&[(1, 0); 5]).err(), Some(MixError::Size(5)));
        assert_eq!(Mixer::new(&[(1, 0), (1, 0)]).err(), Some(MixError::Duplicate(1)));
    }
}
