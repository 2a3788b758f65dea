//! A faithful re-implementation of Asterisk's `app_amd` (the energy/word counter most
//! open-source dialers use), as a baseline to measure our detector against. It follows
//! `isAnsweringMachine()` in app_amd.c with the `ast_dsp_silence` energy test, frame by
//! frame, with amd.conf's defaults. Asterisk reports a silent line as `MACHINE`
//! (`INITIALSILENCE`); here that cause maps to [`Verdict::Silence`] so the 4-class score
//! does not penalise it twice.

use crate::amd::Verdict;
use crate::MediaTime;

/// amd.conf parameters, with Asterisk's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AsteriskParams {
    pub initial_silence_ms: u32,
    pub greeting_ms: u32,
    pub after_greeting_silence_ms: u32,
    pub total_analysis_time_ms: u32,
    pub min_word_length_ms: u32,
    pub between_words_silence_ms: u32,
    pub maximum_number_of_words: u32,
    pub silence_threshold: u32,
    pub maximum_word_length_ms: u32,
}

impl Default for AsteriskParams {
    fn default() -> Self {
        AsteriskParams {
            initial_silence_ms: 2500,
            greeting_ms: 1500,
            after_greeting_silence_ms: 800,
            total_analysis_time_ms: 5000,
            min_word_length_ms: 100,
            between_words_silence_ms: 50,
            maximum_number_of_words: 2,
            silence_threshold: 256,
            maximum_word_length_ms: 5000,
        }
    }
}

/// Asterisk's result: status, AMDCAUSE text, and when.
#[derive(Debug, Clone, PartialEq)]
pub struct AsteriskDecision {
    pub verdict: Verdict,
    pub cause: String,
    pub at: MediaTime,
}

#[derive(Debug, Clone)]
pub struct AsteriskAmd {
    p: AsteriskParams,
    total_ms: u32,
    dsp_silence_ms: u32,
    silence_ms: u32,
    consecutive_voice_ms: u32,
    voice_ms: u32,
    words: u32,
    in_word: bool,
    in_initial_silence: bool,
    in_greeting: bool,
    decision: Option<AsteriskDecision>,
}

impl AsteriskAmd {
    pub fn new(p: AsteriskParams) -> Self {
        AsteriskAmd {
            p,
            total_ms: 0,
            dsp_silence_ms: 0,
            silence_ms: 0,
            consecutive_voice_ms: 0,
            voice_ms: 0,
            words: 0,
            in_word: false,
            in_initial_silence: true,
            in_greeting: false,
            decision: None,
        }
    }

    pub fn decision(&self) -> Option<&AsteriskDecision> {
        self.decision.as_ref()
    }

    fn decide(&mut self, verdict: Verdict, cause: String) {
        self.decision = Some(AsteriskDecision { verdict, cause, at: MediaTime::from_ms(self.total_ms as u64) });
    }

    /// Feeds one voice frame (Asterisk reads 20 ms frames at 8 kHz).
    pub fn push(&mut self, frame: &[i16]) {
        if self.decision.is_some() || frame.is_empty() {
            return;
        }
        let p = self.p;
        let len_ms = (frame.len() / 8) as u32;
        self.total_ms += len_ms;
        if self.total_ms >= p.total_analysis_time_ms {
            return self.decide(Verdict::NotSure, format!("TOOLONG-{}", self.total_ms));
        }
        // ast_dsp_silence: mean absolute amplitude against the threshold; silence accumulates.
        let accum = frame.iter().map(|&s| (s as i32).unsigned_abs()).sum::<u32>() / frame.len() as u32;
        if accum < p.silence_threshold {
            self.dsp_silence_ms += len_ms;
        } else {
            self.dsp_silence_ms = 0;
        }
        if self.dsp_silence_ms > 0 {
            self.silence_ms = self.dsp_silence_ms;
            if self.silence_ms >= p.between_words_silence_ms {
                self.in_word = false;
                self.consecutive_voice_ms = 0;
            }
            if self.in_initial_silence && self.silence_ms >= p.initial_silence_ms {
                let cause = format!("INITIALSILENCE-{}-{}", self.silence_ms, p.initial_silence_ms);
                return self.decide(Verdict::Silence, cause);
            }
            if self.silence_ms >= p.after_greeting_silence_ms && self.in_greeting {
                let cause = format!("HUMAN-{}-{}", self.silence_ms, p.after_greeting_silence_ms);
                self.decide(Verdict::Human, cause);
            }
        } else {
            self.consecutive_voice_ms += len_ms;
            self.voice_ms += len_ms;
            if self.consecutive_voice_ms >= p.min_word_length_ms && !self.in_word {
                self.words += 1;
                self.in_word = true;
            }
            let machine = Verdict::Machine { beep_at: None };
            if self.consecutive_voice_ms >= p.maximum_word_length_ms {
                return self.decide(machine, format!("MAXWORDLENGTH-{}", self.consecutive_voice_ms));
            }
            if self.words >= p.maximum_number_of_words {
                return self.decide(machine, format!("MAXWORDS-{}-{}", self.words, p.maximum_number_of_words));
            }
            if self.in_greeting && self.voice_ms >= p.greeting_ms {
                return self.decide(machine, format!("LONGGREETING-{}-{}", self.voice_ms, p.greeting_ms));
            }
            if self.voice_ms >= p.min_word_length_ms {
                self.silence_ms = 0;
            }
            if self.consecutive_voice_ms >= p.min_word_length_ms && !self.in_greeting {
                self.in_initial_silence = false;
                self.in_greeting = true;
            }
        }
    }
}

/// Runs the Asterisk baseline over 8 kHz PCM in 20 ms frames.
pub fn analyze_pcm(pcm: &[i16], p: AsteriskParams) -> AsteriskDecision {
    let mut a = AsteriskAmd::new(p);
    for f in pcm.chunks(160) {
        a.push(f);
        if let Some(d) = a.decision() {
            return d.clone();
        }
    }
    let total = (pcm.len() / 8) as u64;
    AsteriskDecision { verdict: Verdict::NotSure, cause: format!("HANGUP-{total}"), at: MediaTime::from_ms(total) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn audio(script: &[(bool, usize)]) -> Vec<i16> {
        script.iter().flat_map(|&(loud, ms)| std::iter::repeat_n(if loud { 3000 } else { 20 }, ms * 8)).collect()
    }

    #[test]
    fn short_word_then_silence_is_human_after_800ms() {
        let d = analyze_pcm(&audio(&[(false, 500), (true, 400), (false, 2000)]), AsteriskParams::default());
        assert_eq!(d.verdict, Verdict::Human);
        assert_eq!(d.cause, "HUMAN-800-800");
        assert_eq!(d.at.as_ms(), 500 + 400 + 800);
    }

    #[test]
    fn two_words_are_a_machine() {
        let d = analyze_pcm(&audio(&[(false, 300), (true, 300), (false, 200), (true, 300)]), AsteriskParams::default());
        assert_eq!(d.verdict, Verdict::Machine { beep_at: None });
        assert!(d.cause.starts_with("MAXWORDS-2-2"), "{}", d.cause);
    }

    #[test]
    fn a_long_hello_is_a_long_greeting() {
        let d = analyze_pcm(&audio(&[(false, 300), (true, 1600)]), AsteriskParams::default());
        assert!(d.cause.starts_with("LONGGREETING"), "{}", d.cause);
    }

    #[test]
    fn nothing_said_is_initial_silence() {
        let d = analyze_pcm(&audio(&[(false, 4000)]), AsteriskParams::default());
        assert_eq!((d.verdict, d.cause.as_str()), (Verdict::Silence, "INITIALSILENCE-2500-2500"));
    }
}
