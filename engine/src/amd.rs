//! Answering-machine detection: a pure state machine fed 10 ms frames stamped in media
//! time. It decides once (`Human | Machine | Fax | Silence | Sit | NotSure`), says why
//! (an [`AmdCause`], in the spirit of Asterisk's AMDCAUSE), and after a `Machine` decision
//! keeps listening for the beep or the end of the greeting, so a voicemail can be dropped.
//!
//! How it decides (and why it beats an energy/word counter):
//! - Speech is a frame the VAD calls voice *and* that stands clear of the tracked noise
//!   floor, so line noise, hum and TV in the background do not make "words".
//! - A live person says something short and then waits for us. A recorded greeting talks
//!   on, pausing only briefly between phrases. So the decision rests on the *greeting
//!   span* (first speech to last speech) and the *silence after it*. The silence needed to
//!   call a human grows with the span: after a short "Hello?" 450 ms suffices; after a long
//!   phrase, when a recording's sentence pause is likely, it waits longer (and hears a beep
//!   if one comes). A span longer than any human greeting is a machine.
//! - Tones are evidence on their own: fax CNG/CED, SIT tri-tones, and a steady beep.
//!
//! Counting words is optional ([`AmdParams::maximum_number_of_words`]); it is off by
//! default because it is what hangs up on talkative live people.

use crate::tones::{sit_segment_index, FrameTones, ToneParams, ToneSegment, ToneTracker, BIN_CED};
use crate::{MediaTime, FRAME_SAMPLES};
use std::fmt;

/// Tunable parameters. Defaults were tuned on generated dev/validation corpora (see
/// docs/amd.md); the Asterisk-compatible names keep their Asterisk meaning.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AmdParams {
    /// Asterisk `initial_silence`: no speech for this long after answer is `Silence`.
    pub initial_silence_ms: u64,
    /// Asterisk `greeting`: the longest greeting span a live person says before pausing.
    /// A span beyond this is a machine (`LONGGREETING`).
    pub greeting_ms: u64,
    /// Asterisk `after_greeting_silence`: silence that ends a *short* greeting (a span up
    /// to [`Self::short_greeting_ms`]) and makes it a human.
    pub after_greeting_silence_ms: u64,
    /// Spans up to this use `after_greeting_silence_ms`.
    pub short_greeting_ms: u64,
    /// Silence that ends a greeting whose span is `long_greeting_ms` or longer; the
    /// silence needed rises linearly from `short_greeting_ms` to there.
    pub after_long_greeting_silence_ms: u64,
    /// Span from which `after_long_greeting_silence_ms` applies.
    pub long_greeting_ms: u64,
    /// Asterisk `total_analysis_time`: give up (`NotSure`) if still undecided.
    pub total_analysis_time_ms: u64,
    /// Asterisk `min_word_length`: a burst of speech shorter than this is not a word
    /// (clicks, rustle).
    pub min_word_length_ms: u64,
    /// Asterisk `between_words_silence`: gaps shorter than this do not split a word.
    pub between_words_silence_ms: u64,
    /// Asterisk `maximum_number_of_words`: more words than this in the greeting is a
    /// machine. `None` (the default) disables the rule.
    pub maximum_number_of_words: Option<u32>,
    /// Asterisk `silence_threshold` (mean absolute amplitude of 16-bit samples, 256 in
    /// Asterisk): frames quieter than this are never speech.
    pub silence_threshold: u16,
    /// Speech must stand this far above the tracked noise floor, dB.
    pub speech_over_noise_db: f32,
    /// A word whose loudest frame is more than this far below the loudest word of the
    /// call is background, even when it came first (a TV before the person spoke), dB.
    pub background_below_loudest_db: f32,
    /// A burst of speech whose loudest frame stays more than this far below the active
    /// speech level of the greeting so far is background (a TV, people in the room), not
    /// the person who answered, dB.
    pub background_below_peak_db: f32,
    /// Shortest steady tone that counts as a beep.
    pub min_beep_ms: u64,
    /// Longest; a longer tone is not a beep.
    pub max_beep_ms: u64,
    /// After a machine decision without a beep, silence that marks the end of the message.
    pub message_end_silence_ms: u64,
    /// After a machine decision, stop listening for a beep after this long.
    pub max_listen_after_decision_ms: u64,
    /// Single-tone detector thresholds (beep, fax, SIT).
    pub tone: ToneParams,
}

impl Default for AmdParams {
    fn default() -> Self {
        AmdParams {
            initial_silence_ms: 3500,
            greeting_ms: 3600,
            after_greeting_silence_ms: 450,
            short_greeting_ms: 1000,
            after_long_greeting_silence_ms: 1100,
            long_greeting_ms: 2000,
            total_analysis_time_ms: 8000,
            min_word_length_ms: 100,
            between_words_silence_ms: 160,
            maximum_number_of_words: None,
            silence_threshold: 64,
            speech_over_noise_db: 6.0,
            background_below_peak_db: 6.0,
            background_below_loudest_db: 12.0,
            min_beep_ms: 100,
            max_beep_ms: 2500,
            message_end_silence_ms: 1200,
            max_listen_after_decision_ms: 30_000,
            tone: ToneParams::default(),
        }
    }
}

impl AmdParams {
    /// Silence needed after a greeting of `span_ms` to call it finished.
    pub fn silence_needed_ms(&self, span_ms: u64) -> u64 {
        let (s0, s1) = (self.after_greeting_silence_ms, self.after_long_greeting_silence_ms);
        if span_ms <= self.short_greeting_ms || self.long_greeting_ms <= self.short_greeting_ms {
            return s0;
        }
        let ramp = self.long_greeting_ms - self.short_greeting_ms;
        let f = (span_ms - self.short_greeting_ms).min(ramp);
        s0 + (s1.saturating_sub(s0)) * f / ramp
    }
}

/// Who (or what) answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Human,
    Machine { beep_at: Option<MediaTime> },
    Fax,
    Silence,
    Sit,
    NotSure,
}

impl Verdict {
    /// Who answered, without the verdict's detail: the type the control plane uses.
    pub fn answered_by(&self) -> waihu_model::AnsweredBy {
        use waihu_model::AnsweredBy;
        match self {
            Verdict::Human => AnsweredBy::Human,
            Verdict::Machine { .. } => AnsweredBy::Machine,
            Verdict::Fax => AnsweredBy::Fax,
            Verdict::Silence => AnsweredBy::Silence,
            Verdict::Sit => AnsweredBy::Sit,
            Verdict::NotSure => AnsweredBy::NotSure,
        }
    }

    /// Lower-case label as used in predictions CSVs and CDRs.
    pub fn label(&self) -> &'static str {
        self.answered_by().label()
    }
}

/// Why the detector decided as it did (cf. Asterisk's AMDCAUSE).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AmdCause {
    /// `HUMAN`: a greeting of `greeting_ms`, then `silence_ms` of silence.
    Human { greeting_ms: u64, silence_ms: u64 },
    /// `LONGGREETING`: the greeting ran past the longest human greeting.
    LongGreeting { greeting_ms: u64, limit_ms: u64 },
    /// `MAXWORDS`: more words than allowed.
    MaxWords { words: u32, limit: u32 },
    /// `BEEP`: a steady tone after (or instead of) a greeting.
    Beep { hz: u32 },
    /// `INITIALSILENCE`: nobody spoke.
    InitialSilence { silence_ms: u64 },
    /// `FAX`: CNG or CED tone.
    FaxTone { hz: u32 },
    /// `SIT`: special information tone sequence (intercept, vacant, reorder).
    SitTone,
    /// `TOOLONG`: analysis time ran out without a decision.
    TooLong { total_ms: u64 },
    /// `HANGUP`: the audio ended before a decision.
    Hangup { total_ms: u64 },
}

impl fmt::Display for AmdCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            AmdCause::Human { greeting_ms, silence_ms } => write!(f, "HUMAN-{greeting_ms}-{silence_ms}"),
            AmdCause::LongGreeting { greeting_ms, limit_ms } => write!(f, "LONGGREETING-{greeting_ms}-{limit_ms}"),
            AmdCause::MaxWords { words, limit } => write!(f, "MAXWORDS-{words}-{limit}"),
            AmdCause::Beep { hz } => write!(f, "BEEP-{hz}"),
            AmdCause::InitialSilence { silence_ms } => write!(f, "INITIALSILENCE-{silence_ms}"),
            AmdCause::FaxTone { hz } => write!(f, "FAX-{hz}"),
            AmdCause::SitTone => f.write_str("SIT"),
            AmdCause::TooLong { total_ms } => write!(f, "TOOLONG-{total_ms}"),
            AmdCause::Hangup { total_ms } => write!(f, "HANGUP-{total_ms}"),
        }
    }
}

/// The one decision.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    pub verdict: Verdict,
    pub cause: AmdCause,
    /// Media time at which the decision was made.
    pub at: MediaTime,
}

/// What the detector reports, in order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AmdEvent {
    Decided(Decision),
    /// A beep heard after a machine decision (or the one that made it).
    Beep {
        start: MediaTime,
        end: MediaTime,
        hz: u32,
    },
    /// The machine's message is over (beep ended, or silence after the greeting): the
    /// moment to start a voicemail drop. `None` when listening gave up.
    MessageEnd {
        at: Option<MediaTime>,
    },
}

/// One analysed 10 ms frame.
#[derive(Debug, Clone, Copy, Default)]
pub struct FrameInput {
    /// Start of the frame.
    pub at: MediaTime,
    /// VAD says voice.
    pub voiced: bool,
    /// Mean absolute amplitude (Asterisk's energy measure).
    pub mean_abs: u16,
    pub tones: FrameTones,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Before the decision.
    Listening,
    /// Machine decided; waiting for a beep or the end of the message.
    AfterMachine {
        since: MediaTime,
    },
    Done,
}

const EVENTS: usize = 4;
/// CED (2100 Hz answer tone) heard this long before anyone speaks is a fax.
const CED_MS: u64 = 500;
/// Shortest tone segment considered at all.
const MIN_TONE_MS: u64 = 60;
/// Longest gap between the segments of a SIT sequence.
const SIT_GAP_MS: u64 = 80;
/// Frames whose lag-1 correlation reaches this are voiced (see `FrameTones::low_band`).
const VOICED_LOW_BAND: f32 = 0.5;

/// Words remembered per call; more are merged into the last one (a greeting of 3.6 s
/// holds about 15).
const MAX_WORDS: usize = 32;

/// A counted word: start and end in samples (u32 covers 149 hours), loudest frame.
#[derive(Debug, Clone, Copy, Default)]
struct WordRec {
    start: u32,
    end: u32,
    max_db: f32,
}

#[derive(Debug, Clone, Copy)]
struct Burst {
    start: MediaTime,
    speech_frames: u32,
    voiced_frames: u32,
    gap_frames: u32,
    max_db: f32,
    last_end: MediaTime,
    counted: bool,
}

/// The detector for one call.
#[derive(Debug, Clone)]
pub struct Amd {
    p: AmdParams,
    phase: Phase,
    tones: ToneTracker,
    noise_floor_db: Option<f32>,
    /// Active speech level of the greeting so far (power mean of its frames), dBFS.
    peak_db: Option<f32>,
    speech_power: f32,
    speech_frames: u32,
    /// The burst of speech in progress.
    burst: Option<Burst>,
    /// First and last speech of the greeting (only runs of a word's length count).
    onset: Option<MediaTime>,
    last_speech_end: MediaTime,
    /// The words counted so far; the greeting is the span of the foreground ones.
    word_recs: [WordRec; MAX_WORDS],
    n_words: usize,
    /// End of the last voiced burst that did not count as a word.
    last_activity_end: MediaTime,
    words: u32,
    /// SIT: segment classes seen in order so far.
    sit_seen: u8,
    sit_last_end: MediaTime,
    /// CED heard so far in finished segments, ms.
    ced_ms: u64,
    /// A beep-like tone held back because it may be a SIT's first segment.
    held_beep: Option<ToneSegment>,
    decision: Option<Decision>,
    events: [Option<AmdEvent>; EVENTS],
    ev_head: usize,
    ev_len: usize,
}

impl Amd {
    pub fn new(p: AmdParams) -> Self {
        Amd {
            p,
            phase: Phase::Listening,
            tones: ToneTracker::new(p.tone),
            noise_floor_db: None,
            peak_db: None,
            speech_power: 0.0,
            speech_frames: 0,
            burst: None,
            onset: None,
            last_speech_end: MediaTime::ZERO,
            word_recs: [WordRec::default(); MAX_WORDS],
            n_words: 0,
            last_activity_end: MediaTime::ZERO,
            words: 0,
            sit_seen: 0,
            sit_last_end: MediaTime::ZERO,
            ced_ms: 0,
            held_beep: None,
            decision: None,
            events: [None; EVENTS],
            ev_head: 0,
            ev_len: 0,
        }
    }

    pub fn params(&self) -> &AmdParams {
        &self.p
    }

    /// A one-line view of the internal state, for tuning tools.
    pub fn debug_state(&self) -> String {
        format!(
            "floor={:.1} peak={:.1} onset={:?} last_end={} burst={}",
            self.noise_floor_db.unwrap_or(0.0),
            self.peak_db.unwrap_or(0.0),
            self.onset.map(|o| o.as_ms()),
            self.last_speech_end.as_ms(),
            self.burst.map_or(String::from("-"), |b| format!(
                "{}+{}f/{}v max={:.1}{}",
                b.start.as_ms(),
                b.speech_frames,
                b.voiced_frames,
                b.max_db,
                if b.counted { " C" } else { "" }
            ))
        )
    }

    /// The decision, once made.
    pub fn decision(&self) -> Option<Decision> {
        self.decision
    }

    /// True when there is nothing more to listen for.
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// Next event, in order.
    pub fn poll_event(&mut self) -> Option<AmdEvent> {
        if self.ev_len == 0 {
            return None;
        }
        let e = self.events[self.ev_head].take();
        self.ev_head = (self.ev_head + 1) % EVENTS;
        self.ev_len -= 1;
        e
    }

    fn emit(&mut self, e: AmdEvent) {
        if self.ev_len == EVENTS {
            // Invariant: at most 3 events per frame and callers drain each frame; drop the
            // oldest rather than grow if a caller does not.
            self.poll_event();
        }
        self.events[(self.ev_head + self.ev_len) % EVENTS] = Some(e);
        self.ev_len += 1;
    }

    fn decide(&mut self, verdict: Verdict, cause: AmdCause, at: MediaTime) {
        let d = Decision { verdict, cause, at };
        self.decision = Some(d);
        self.emit(AmdEvent::Decided(d));
        self.phase = match verdict {
            Verdict::Machine { .. } => Phase::AfterMachine { since: at },
            _ => Phase::Done,
        };
    }

    /// Feeds one frame. Frames must come in media-time order, 10 ms apart.
    pub fn push(&mut self, f: &FrameInput) {
        if self.phase == Phase::Done {
            return;
        }
        let end = f.at.add_samples(FRAME_SAMPLES as u64);
        let finished_tone = self.tones.push(f.at, &f.tones);
        let in_tone = self.tones.current().is_some();
        let speech = self.is_speech(f) && !in_tone;
        self.track_speech(speech, f.tones.low_band >= VOICED_LOW_BAND, f.tones.level_db, end, f.at);

        match self.phase {
            Phase::Listening => self.listen(f, end, finished_tone),
            Phase::AfterMachine { since } => self.after_machine(end, since, finished_tone),
            Phase::Done => {}
        }
    }

    /// The audio ended at `at` (hang-up, end of file): settle what is still open.
    pub fn finish(&mut self, at: MediaTime) {
        match self.phase {
            Phase::Listening => {
                self.decide(Verdict::NotSure, AmdCause::Hangup { total_ms: at.as_ms() }, at);
                self.phase = Phase::Done;
            }
            Phase::AfterMachine { .. } => {
                self.emit(AmdEvent::MessageEnd { at: None });
                self.phase = Phase::Done;
            }
            Phase::Done => {}
        }
    }

    fn is_speech(&mut self, f: &FrameInput) -> bool {
        let level = f.tones.level_db;
        let floor = match self.noise_floor_db {
            None => level,
            Some(fl) if level < fl => fl + 0.3 * (level - fl),
            // Rise slowly (1.5 dB/s) so a greeting does not lift the floor much.
            Some(fl) => fl + 0.015,
        };
        self.noise_floor_db = Some(floor);
        f.voiced && f.mean_abs >= self.p.silence_threshold && level >= floor + self.p.speech_over_noise_db
    }

    /// Groups speech frames into words: bursts that bridge gaps shorter than
    /// `between_words_silence`, and count once they hold `min_word_length` of speech of
    /// which some is voiced (clicks and rustle are unvoiced noise bursts).
    fn track_speech(&mut self, speech: bool, voiced: bool, level: f32, end: MediaTime, at: MediaTime) {
        const FRAME_MS: u64 = 10;
        const MIN_VOICED_FRAMES: u32 = 3;
        if speech {
            let b = self.burst.get_or_insert(Burst {
                start: at,
                speech_frames: 0,
                voiced_frames: 0,
                gap_frames: 0,
                max_db: level,
                last_end: end,
                counted: false,
            });
            b.speech_frames += 1;
            b.last_end = end;
            b.voiced_frames += voiced as u32;
            b.gap_frames = 0;
            b.max_db = b.max_db.max(level);
            let foreground = self.peak_db.is_none_or(|pk| b.max_db >= pk - self.p.background_below_peak_db);
            let newly_counted = !b.counted
                && b.speech_frames as u64 * FRAME_MS >= self.p.min_word_length_ms
                && b.voiced_frames >= MIN_VOICED_FRAMES
                && foreground;
            if newly_counted {
                b.counted = true;
                self.words += 1;
            }
            // Inside a word, frames far below the speaker's level (a TV carrying on right
            // after the greeting) do not keep the greeting going.
            let faint = self.peak_db.is_some_and(|pk| level < pk - 3.0 * self.p.background_below_peak_db);
            let (counted, start, max_db) = (b.counted, b.start, b.max_db);
            if newly_counted {
                let rec = WordRec { start: start.samples() as u32, end: end.samples() as u32, max_db };
                if self.n_words < MAX_WORDS {
                    self.word_recs[self.n_words] = rec;
                    self.n_words += 1;
                } else {
                    // Full: the new word extends the last record.
                    self.word_recs[MAX_WORDS - 1].max_db = self.word_recs[MAX_WORDS - 1].max_db.max(max_db);
                }
            }
            if counted && !faint {
                if let Some(w) = self.word_recs[..self.n_words].last_mut() {
                    w.end = end.samples() as u32;
                    w.max_db = w.max_db.max(max_db);
                }
                self.speech_power += 10f32.powf(level / 10.0);
                self.speech_frames += 1;
                self.peak_db = Some(10.0 * (self.speech_power / self.speech_frames as f32).log10());
            }
            if counted {
                self.update_greeting();
            }
        } else if let Some(b) = &mut self.burst {
            b.gap_frames += 1;
            if b.gap_frames as u64 * FRAME_MS >= self.p.between_words_silence_ms {
                // A voiced burst too short or quiet to count as a word still shows the
                // speaker has not finished (a weak first syllable of the next phrase).
                let near = self.peak_db.is_some_and(|pk| b.max_db >= pk - 2.0 * self.p.background_below_peak_db);
                if !b.counted && b.voiced_frames >= MIN_VOICED_FRAMES && near {
                    self.last_activity_end = self.last_activity_end.max(b.last_end);
                }
                self.burst = None;
            }
        }
    }

    /// The greeting runs from the first to the last *foreground* word: words far quieter
    /// than the loudest one are background, even if they came first (a TV playing before
    /// the person answered).
    fn update_greeting(&mut self) {
        let words = &self.word_recs[..self.n_words];
        let loudest = words.iter().map(|w| w.max_db).fold(f32::MIN, f32::max);
        let floor = loudest - self.p.background_below_loudest_db;
        let mut fg = words.iter().filter(|w| w.max_db >= floor);
        if let Some(first) = fg.next() {
            self.onset = Some(MediaTime::from_samples(first.start as u64));
            self.last_speech_end = MediaTime::from_samples(fg.next_back().unwrap_or(first).end as u64);
        }
    }

    fn listen(&mut self, f: &FrameInput, end: MediaTime, finished: Option<ToneSegment>) {
        let p = self.p;
        // Tones first: they are unambiguous.
        // Fragments shorter than any tone we look for (transitions between tones) are noise.
        if let Some(seg) = finished.filter(|s| s.duration_ms() >= MIN_TONE_MS) {
            if self.onset.is_none() && self.is_cng(&seg) {
                return self.decide(Verdict::Fax, AmdCause::FaxTone { hz: seg.hz as u32 }, end);
            }
            if self.onset.is_none() && is_ced(&seg) {
                // 2100 Hz with nobody speaking is an answer tone, even when noise or a phase
                // reversal breaks it into pieces: add them up.
                self.ced_ms += seg.duration_ms();
                if self.ced_ms >= CED_MS {
                    return self.decide(Verdict::Fax, AmdCause::FaxTone { hz: seg.hz as u32 }, end);
                }
                return;
            }
            if self.sit_step(&seg) {
                self.held_beep = None;
                return self.decide(Verdict::Sit, AmdCause::SitTone, end);
            }
            if self.is_beep(&seg) {
                if self.sit_seen > 0 {
                    // Could be the start of a SIT sequence: hold it until the next tone is due.
                    self.held_beep = Some(seg);
                } else {
                    return self.beep_decision(seg, end);
                }
            }
        }
        if let Some(seg) = self.held_beep {
            if self.tones.current().is_none() && end.ms_since(seg.end) > SIT_GAP_MS {
                return self.beep_decision(seg, end);
            }
        }
        if let Some(cur) = self.tones.current() {
            let ced = is_ced(&cur) && f.tones.bank[BIN_CED] > 0.5;
            if self.onset.is_none() && ced && self.ced_ms + cur.duration_ms() >= CED_MS {
                return self.decide(Verdict::Fax, AmdCause::FaxTone { hz: cur.hz as u32 }, end);
            }
        }
        let since_answer = end.as_ms();
        match self.onset {
            None => {
                if since_answer >= p.initial_silence_ms && self.tones.current().is_none() {
                    return self.decide(Verdict::Silence, AmdCause::InitialSilence { silence_ms: since_answer }, end);
                }
            }
            Some(onset) => {
                let span = self.last_speech_end.ms_since(onset);
                let silence = end.ms_since(self.last_speech_end.max(self.last_activity_end));
                if let Some(limit) = p.maximum_number_of_words {
                    if self.words > limit {
                        return self.decide(
                            Verdict::Machine { beep_at: None },
                            AmdCause::MaxWords { words: self.words, limit },
                            end,
                        );
                    }
                }
                if span > p.greeting_ms {
                    let cause = AmdCause::LongGreeting { greeting_ms: span, limit_ms: p.greeting_ms };
                    return self.decide(Verdict::Machine { beep_at: None }, cause, end);
                }
                // A burst that may yet turn out to be speech holds the decision.
                // Judged after 300 ms of speech frames at most: by then a burst that has not
                // counted is background or noise.
                let young = |b: &Burst| (b.speech_frames as u64) * 10 < p.min_word_length_ms.max(300);
                let pending = self.burst.is_some_and(|b| !b.counted && young(&b));
                if silence >= p.silence_needed_ms(span) && self.tones.current().is_none() && !pending {
                    let cause = AmdCause::Human { greeting_ms: span, silence_ms: silence };
                    return self.decide(Verdict::Human, cause, end);
                }
            }
        }
        if since_answer >= p.total_analysis_time_ms {
            self.decide(Verdict::NotSure, AmdCause::TooLong { total_ms: since_answer }, end);
        }
    }

    fn after_machine(&mut self, end: MediaTime, since: MediaTime, finished: Option<ToneSegment>) {
        if let Some(seg) = finished.filter(|s| self.is_beep(s)) {
            return self.found_beep(seg);
        }
        let silence = end.ms_since(self.last_speech_end);
        if silence >= self.p.message_end_silence_ms && self.tones.current().is_none() && self.burst.is_none() {
            self.emit(AmdEvent::MessageEnd { at: Some(end) });
            self.phase = Phase::Done;
        } else if end.ms_since(since) >= self.p.max_listen_after_decision_ms {
            self.emit(AmdEvent::MessageEnd { at: None });
            self.phase = Phase::Done;
        }
    }

    fn beep_decision(&mut self, seg: ToneSegment, end: MediaTime) {
        self.held_beep = None;
        self.sit_seen = 0;
        let cause = AmdCause::Beep { hz: seg.hz as u32 };
        self.decide(Verdict::Machine { beep_at: Some(seg.start) }, cause, end);
        self.found_beep(seg);
    }

    fn found_beep(&mut self, seg: ToneSegment) {
        self.emit(AmdEvent::Beep { start: seg.start, end: seg.end, hz: seg.hz as u32 });
        self.emit(AmdEvent::MessageEnd { at: Some(seg.end) });
        self.phase = Phase::Done;
    }

    fn is_beep(&self, s: &ToneSegment) -> bool {
        let d = s.duration_ms();
        (380.0..=2150.0).contains(&s.hz) && d >= self.p.min_beep_ms && d <= self.p.max_beep_ms
    }

    fn is_cng(&self, s: &ToneSegment) -> bool {
        (s.hz - 1100.0).abs() <= 38.0 && (350..=800).contains(&s.duration_ms())
    }

    /// Advances SIT matching with a finished segment; true when all three were heard.
    fn sit_step(&mut self, s: &ToneSegment) -> bool {
        let d = s.duration_ms();
        let idx = sit_segment_index(s.hz);
        let timely = self.sit_seen == 0 || s.start.ms_since(self.sit_last_end) <= SIT_GAP_MS;
        match idx {
            Some(i) if (200..=450).contains(&d) && timely && i == self.sit_seen as usize => {
                self.sit_seen += 1;
                self.sit_last_end = s.end;
            }
            Some(0) if (200..=450).contains(&d) => {
                self.sit_seen = 1;
                self.sit_last_end = s.end;
            }
            _ => self.sit_seen = 0,
        }
        if self.sit_seen == 3 {
            self.sit_seen = 0;
            return true;
        }
        false
    }
}

fn is_ced(s: &ToneSegment) -> bool {
    (s.hz - 2100.0).abs() <= 25.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tones::ToneAnalyzer;

    /// What a scripted stretch of audio looks like to the detector.
    #[derive(Clone, Copy)]
    enum Seg {
        Silence(u64),
        /// Foreground speech at -20 dBFS.
        Speech(u64),
        /// Quiet background speech (a TV) 20 dB under the speaker.
        Background(u64),
        /// A pure tone, analysed by the real tone analyser: (Hz, ms).
        Tone(f32, u64),
    }

    fn frames(script: &[Seg]) -> Vec<FrameInput> {
        let mut out = Vec::new();
        let mut ta = ToneAnalyzer::default();
        let mut n = 0u64;
        let mut push = |f: FrameInput, out: &mut Vec<FrameInput>| {
            out.push(FrameInput { at: MediaTime::from_samples(n * FRAME_SAMPLES as u64), ..f });
            n += 1;
        };
        for seg in script {
            match *seg {
                Seg::Silence(ms) | Seg::Speech(ms) | Seg::Background(ms) => {
                    let (voiced, level, mean_abs) = match seg {
                        Seg::Speech(_) => (true, -20.0, 2000),
                        Seg::Background(_) => (true, -40.0, 200),
                        _ => (false, -60.0, 20),
                    };
                    let tones = FrameTones { level_db: level, low_band: 0.8, ..FrameTones::default() };
                    for _ in 0..ms / 10 {
                        push(FrameInput { at: MediaTime::ZERO, voiced, mean_abs, tones }, &mut out);
                    }
                }
                Seg::Tone(hz, ms) => {
                    for k in 0..ms / 10 {
                        let mut f = [0i16; FRAME_SAMPLES];
                        for (i, s) in f.iter_mut().enumerate() {
                            let t = (k as usize * FRAME_SAMPLES + i) as f32 / 8000.0;
                            *s = (6000.0 * (2.0 * std::f32::consts::PI * hz * t).sin()) as i16;
                        }
                        let tones = ta.analyze(&f);
                        push(FrameInput { at: MediaTime::ZERO, voiced: true, mean_abs: 3800, tones }, &mut out);
                    }
                }
            }
        }
        out
    }

    fn run(p: AmdParams, script: &[Seg]) -> (Option<Decision>, Vec<AmdEvent>) {
        let mut amd = Amd::new(p);
        let mut events = Vec::new();
        for f in frames(script) {
            amd.push(&f);
            while let Some(e) = amd.poll_event() {
                events.push(e);
            }
        }
        (amd.decision(), events)
    }

    #[test]
    fn short_hello_then_silence_is_a_human_soon_after() {
        let (d, _) = run(AmdParams::default(), &[Seg::Silence(800), Seg::Speech(500), Seg::Silence(2000)]);
        let d = d.expect("decided");
        assert_eq!(d.verdict, Verdict::Human);
        // 450 ms of silence after the greeting ends at 1300 ms.
        assert_eq!(d.at.as_ms(), 1300 + 450);
        assert!(matches!(d.cause, AmdCause::Human { greeting_ms: 500, silence_ms: 450 }), "{}", d.cause);
    }

    #[test]
    fn greeting_longer_than_any_human_is_a_machine() {
        let p = AmdParams::default();
        let (d, _) = run(p, &[Seg::Silence(300), Seg::Speech(1500), Seg::Silence(300), Seg::Speech(3000)]);
        let d = d.expect("decided");
        assert_eq!(d.verdict, Verdict::Machine { beep_at: None });
        assert!(matches!(d.cause, AmdCause::LongGreeting { .. }), "{}", d.cause);
        assert_eq!(d.at.as_ms(), 300 + p.greeting_ms + 10);
    }

    #[test]
    fn a_sentence_pause_inside_a_long_greeting_is_not_the_end() {
        // 1.8 s phrase, 800 ms pause (a recording moving to its next sentence), more speech.
        let (d, _) =
            run(AmdParams::default(), &[Seg::Silence(300), Seg::Speech(1800), Seg::Silence(800), Seg::Speech(3000)]);
        assert_eq!(d.expect("decided").verdict, Verdict::Machine { beep_at: None });
    }

    #[test]
    fn machine_decision_then_beep_marks_the_message_end() {
        let (d, ev) = run(
            AmdParams::default(),
            &[Seg::Silence(500), Seg::Speech(4000), Seg::Silence(400), Seg::Tone(1000.0, 500), Seg::Silence(1000)],
        );
        assert_eq!(d.expect("decided").verdict, Verdict::Machine { beep_at: None });
        let beep = ev.iter().find_map(|e| match e {
            AmdEvent::Beep { start, end, hz } => Some((*start, *end, *hz)),
            _ => None,
        });
        let (start, end, hz) = beep.expect("beep found");
        assert!(start.as_ms().abs_diff(4900) <= 10 && end.as_ms().abs_diff(5400) <= 10, "{start} {end}");
        assert!(hz.abs_diff(1000) <= 5);
        assert_eq!(ev.last(), Some(&AmdEvent::MessageEnd { at: Some(end) }));
    }

    #[test]
    fn machine_without_beep_ends_after_message_end_silence() {
        let p = AmdParams::default();
        let (_, ev) = run(p, &[Seg::Silence(300), Seg::Speech(4700), Seg::Silence(3000)]);
        assert_eq!(
            ev.last(),
            Some(&AmdEvent::MessageEnd { at: Some(MediaTime::from_ms(5000 + p.message_end_silence_ms)) })
        );
    }

    #[test]
    fn beep_with_no_greeting_is_a_machine_with_beep_time() {
        let (d, _) = run(AmdParams::default(), &[Seg::Silence(500), Seg::Tone(850.0, 400), Seg::Silence(500)]);
        let d = d.expect("decided");
        assert!(matches!(d.verdict, Verdict::Machine { beep_at: Some(t) } if t.as_ms().abs_diff(500) <= 10), "{d:?}");
        assert!(matches!(d.cause, AmdCause::Beep { hz } if hz.abs_diff(850) <= 5));
    }

    #[test]
    fn nobody_speaking_is_silence_at_the_initial_silence_limit() {
        let p = AmdParams::default();
        let (d, _) = run(p, &[Seg::Silence(6000)]);
        let d = d.expect("decided");
        assert_eq!((d.verdict, d.at.as_ms()), (Verdict::Silence, p.initial_silence_ms));
    }

    #[test]
    fn fax_calling_tone_and_answer_tone_are_fax() {
        let (d, _) = run(AmdParams::default(), &[Seg::Silence(300), Seg::Tone(1100.0, 500), Seg::Silence(3000)]);
        assert_eq!(d.expect("cng").verdict, Verdict::Fax);
        let (d, _) = run(AmdParams::default(), &[Seg::Silence(300), Seg::Tone(2100.0, 3000)]);
        let d = d.expect("ced");
        assert_eq!(d.verdict, Verdict::Fax);
        assert!(d.at.as_ms() <= 300 + 600, "CED decided at {}", d.at);
    }

    #[test]
    fn sit_tri_tone_is_an_intercept() {
        let (d, _) = run(
            AmdParams::default(),
            &[
                Seg::Silence(200),
                Seg::Tone(913.8, 274),
                Seg::Tone(1370.6, 274),
                Seg::Tone(1776.7, 380),
                Seg::Silence(500),
            ],
        );
        assert_eq!(d.expect("decided").verdict, Verdict::Sit);
    }

    #[test]
    fn background_tv_does_not_lengthen_a_short_greeting() {
        let (d, _) = run(AmdParams::default(), &[Seg::Silence(300), Seg::Speech(600), Seg::Background(6000)]);
        let d = d.expect("decided");
        assert_eq!(d.verdict, Verdict::Human, "{}", d.cause);
    }

    #[test]
    fn tv_heard_before_the_person_answers_is_not_their_greeting() {
        let script = [
            Seg::Silence(300),
            Seg::Background(1200),
            Seg::Silence(250),
            Seg::Background(1500),
            Seg::Silence(250),
            Seg::Speech(600),
            Seg::Silence(250),
            Seg::Background(3000),
        ];
        let (d, _) = run(AmdParams::default(), &script);
        let d = d.expect("decided");
        assert_eq!(d.verdict, Verdict::Human, "{}", d.cause);
        assert!(matches!(d.cause, AmdCause::Human { greeting_ms: 600, .. }), "{}", d.cause);
    }

    #[test]
    fn word_limit_applies_only_when_configured() {
        let script = [
            Seg::Silence(300),
            Seg::Speech(300),
            Seg::Silence(200),
            Seg::Speech(300),
            Seg::Silence(200),
            Seg::Speech(300),
            Seg::Silence(2000),
        ];
        let (d, _) = run(AmdParams::default(), &script);
        assert_eq!(d.expect("decided").verdict, Verdict::Human);
        let (d, _) = run(AmdParams { maximum_number_of_words: Some(2), ..AmdParams::default() }, &script);
        let d = d.expect("decided");
        assert!(matches!(d.cause, AmdCause::MaxWords { words: 3, limit: 2 }), "{}", d.cause);
    }

    #[test]
    fn clicks_shorter_than_a_word_are_not_speech() {
        let script = [Seg::Silence(500), Seg::Speech(50), Seg::Silence(1000), Seg::Speech(60), Seg::Silence(3000)];
        let (d, _) = run(AmdParams::default(), &script);
        assert_eq!(d.expect("decided").verdict, Verdict::Silence);
    }

    #[test]
    fn undecided_when_audio_ends_is_not_sure() {
        let mut amd = Amd::new(AmdParams::default());
        for f in frames(&[Seg::Silence(1000)]) {
            amd.push(&f);
        }
        amd.finish(MediaTime::from_ms(1000));
        let d = amd.decision().expect("decided");
        assert_eq!(d.verdict, Verdict::NotSure);
        assert_eq!(d.cause.to_string(), "HANGUP-1000");
        assert!(amd.is_done());
    }

    #[test]
    fn silence_needed_grows_with_the_greeting() {
        let p = AmdParams::default();
        assert_eq!(p.silence_needed_ms(300), p.after_greeting_silence_ms);
        assert_eq!(p.silence_needed_ms(p.long_greeting_ms), p.after_long_greeting_silence_ms);
        assert_eq!(p.silence_needed_ms(10_000), p.after_long_greeting_silence_ms);
        let mid = p.silence_needed_ms((p.short_greeting_ms + p.long_greeting_ms) / 2);
        assert!(mid > p.after_greeting_silence_ms && mid < p.after_long_greeting_silence_ms);
    }

    #[test]
    fn causes_print_like_asterisk() {
        assert_eq!(AmdCause::Human { greeting_ms: 500, silence_ms: 450 }.to_string(), "HUMAN-500-450");
        assert_eq!(AmdCause::LongGreeting { greeting_ms: 3610, limit_ms: 3600 }.to_string(), "LONGGREETING-3610-3600");
        assert_eq!(AmdCause::InitialSilence { silence_ms: 3500 }.to_string(), "INITIALSILENCE-3500");
    }
}
