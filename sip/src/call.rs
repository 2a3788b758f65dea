//! The outbound call as a pure state machine (str0m/quinn style): SIP and media events in
//! with `now`, commands out, one timer. It decides when to CANCEL (ring timeout), when to
//! start AMD, whether to hang up on a machine, and what the call record says. The SIP
//! adapter and the media shard only carry out its outputs.

use crate::sdp::{self, LocalMedia, Negotiated, SdpError};
use std::collections::VecDeque;
use std::time::{Duration, Instant};
pub use waihu_model::{AnsweredBy, Disposition};

/// Why the INVITE ended without a final response from the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Nothing answered the INVITE in time (SIP timer B): the trunk is not responding.
    Timeout,
    /// Our side failed: the request could not be built or sent, or the stack failed.
    Local,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallConfig {
    /// Ring this long before giving up with CANCEL (at least 15 s by default practice).
    pub ring_timeout: Duration,
    /// No final response to the INVITE within this (SIP timer B) ends the attempt.
    pub invite_timeout: Duration,
    pub amd: bool,
    /// Hang up when AMD says machine (otherwise the call is kept, e.g. for a voicemail drop).
    pub hangup_on_machine: bool,
}

impl Default for CallConfig {
    fn default() -> Self {
        CallConfig {
            ring_timeout: Duration::from_secs(30),
            invite_timeout: Duration::from_secs(32),
            amd: true,
            hangup_on_machine: false,
        }
    }
}

/// SIP and media events for this call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// 1xx (180 ringing, 183 session progress with early media).
    Provisional { status: u16, sdp: Option<String> },
    /// Final response to our INVITE.
    Final { status: u16, sdp: Option<String> },
    /// The far end hung up (BYE), or its dialog ended.
    Bye,
    /// The INVITE failed without a final response: see [`Failure`].
    Failed(Failure),
    /// AMD's decision on the answered call.
    Amd(AnsweredBy),
    /// The control plane ends the call (or stops the attempt).
    Hangup,
    /// We are shutting down: end the call as `Hangup` does, but an attempt cut short before
    /// its answer is `Interrupted`, not held against the contact.
    Shutdown,
}

/// What the shell must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    SendInvite {
        sdp: String,
    },
    SendCancel,
    SendAck,
    SendBye,
    /// Media can flow: point the shard's session at the far end (early media or answer).
    Media(Negotiated),
    StartAmd,
    /// The call is over; this is its record.
    Finished(CallRecord),
}

/// The call detail record this attempt produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    pub disposition: Disposition,
    pub answered_by: Option<AnsweredBy>,
    pub final_status: Option<u16>,
    pub started: Instant,
    pub ringing: Option<Instant>,
    pub answered: Option<Instant>,
    pub ended: Instant,
    /// True when the far end sent BYE first.
    pub remote_hangup: bool,
    /// SDP we could not use (the call was still ended cleanly).
    pub sdp_error: Option<SdpError>,
    /// SIT tones were heard in early media.
    pub early_sit: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Inviting,
    Ringing,
    Cancelling { why: CancelWhy },
    Answered,
    Done,
}

/// Why we sent CANCEL: it decides what the 487 means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CancelWhy {
    /// The control plane stopped the attempt.
    Local,
    RingTimeout,
    /// SIT tones in early media.
    Intercept,
    /// Our own shutdown.
    Shutdown,
}

/// Which timer `poll_timeout` is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallTimer {
    Ring,
    Invite,
}

#[derive(Debug)]
pub struct Call {
    cfg: CallConfig,
    local: LocalMedia,
    state: State,
    out: VecDeque<Output>,
    started: Instant,
    ringing: Option<Instant>,
    answered: Option<Instant>,
    answered_by: Option<AnsweredBy>,
    media_started: bool,
    sdp_error: Option<SdpError>,
    early_sit: bool,
}

impl Call {
    /// Starts the attempt: the first output is the INVITE with our offer.
    pub fn new(cfg: CallConfig, local: LocalMedia, now: Instant) -> Call {
        let mut out = VecDeque::new();
        out.push_back(Output::SendInvite { sdp: sdp::offer(&local) });
        Call {
            cfg,
            local,
            state: State::Inviting,
            out,
            started: now,
            ringing: None,
            answered: None,
            answered_by: None,
            media_started: false,
            sdp_error: None,
            early_sit: false,
        }
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<(Instant, CallTimer)> {
        match self.state {
            State::Inviting => Some((self.started + self.cfg.invite_timeout, CallTimer::Invite)),
            State::Ringing => Some((self.started + self.cfg.ring_timeout, CallTimer::Ring)),
            State::Cancelling { .. } => {
                Some((self.started + self.cfg.ring_timeout + self.cfg.invite_timeout, CallTimer::Invite))
            }
            State::Answered | State::Done => None,
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    fn media_from(&mut self, body: Option<&str>) {
        if self.media_started {
            return;
        }
        if let Some(body) = body {
            match sdp::accept_answer(body, &self.local) {
                Ok(n) => {
                    self.media_started = true;
                    self.out.push_back(Output::Media(n));
                }
                Err(e) => self.sdp_error = Some(e),
            }
        }
    }

    /// An answered call's disposition: a machine (or fax) if AMD said so.
    fn answered_disposition(&self) -> Disposition {
        match self.answered_by {
            Some(AnsweredBy::Machine | AnsweredBy::Fax) => Disposition::Machine,
            _ => Disposition::Answered,
        }
    }

    fn finish(&mut self, disposition: Disposition, status: Option<u16>, remote_hangup: bool, now: Instant) {
        self.state = State::Done;
        self.out.push_back(Output::Finished(CallRecord {
            disposition,
            answered_by: self.answered_by,
            final_status: status,
            started: self.started,
            ringing: self.ringing,
            answered: self.answered,
            ended: now,
            remote_hangup,
            sdp_error: self.sdp_error.clone(),
            early_sit: self.early_sit,
        }));
    }

    pub fn handle_input(&mut self, input: Input, now: Instant) {
        match (self.state, input) {
            (State::Done, _) => {}
            (State::Inviting | State::Ringing, Input::Provisional { status, sdp }) => {
                if status >= 180 {
                    self.ringing.get_or_insert(now);
                    self.state = State::Ringing;
                }
                // Early media (183 with SDP): ringback and SIT detection start here.
                self.media_from(sdp.as_deref());
            }
            (State::Inviting | State::Ringing | State::Cancelling { .. }, Input::Final { status: 200..=299, sdp }) => {
                self.out.push_back(Output::SendAck);
                if let State::Cancelling { why } = self.state {
                    // CANCEL lost the race with the answer: the call exists, end it.
                    self.out.push_back(Output::SendBye);
                    self.answered = Some(now);
                    let d = if why == CancelWhy::Shutdown { Disposition::Interrupted } else { Disposition::Cancelled };
                    return self.finish(d, Some(200), false, now);
                }
                self.answered = Some(now);
                self.state = State::Answered;
                self.media_from(sdp.as_deref());
                if self.sdp_error.is_some() && !self.media_started {
                    self.out.push_back(Output::SendBye);
                    return self.finish(Disposition::Failed { status: 488 }, Some(200), false, now);
                }
                if self.cfg.amd {
                    self.out.push_back(Output::StartAmd);
                }
            }
            (State::Inviting | State::Ringing, Input::Final { status, .. }) => {
                self.finish(Disposition::from_final_response(status, false), Some(status), false, now);
            }
            (State::Cancelling { why }, Input::Final { status, .. }) => {
                let d = match (why, status) {
                    (CancelWhy::Intercept, 487) => Disposition::Intercept,
                    (CancelWhy::Shutdown, 487) => Disposition::Interrupted,
                    _ => Disposition::from_final_response(status, why == CancelWhy::RingTimeout),
                };
                self.finish(d, Some(status), false, now);
            }
            // Early media carried special information tones: the number will not answer.
            (State::Inviting | State::Ringing, Input::Amd(AnsweredBy::Sit)) => {
                self.early_sit = true;
                self.out.push_back(Output::SendCancel);
                self.state = State::Cancelling { why: CancelWhy::Intercept };
            }
            // Anything else analysed before the answer (ringback, announcements) is not a
            // verdict on who answered.
            (State::Inviting | State::Ringing, Input::Amd(_)) => {}
            (State::Inviting | State::Ringing, Input::Hangup) => {
                self.out.push_back(Output::SendCancel);
                self.state = State::Cancelling { why: CancelWhy::Local };
            }
            (State::Inviting | State::Ringing, Input::Shutdown) => {
                self.out.push_back(Output::SendCancel);
                self.state = State::Cancelling { why: CancelWhy::Shutdown };
            }
            (State::Answered, Input::Amd(by)) => {
                self.answered_by.get_or_insert(by);
                let hang_up = match by {
                    AnsweredBy::Machine => self.cfg.hangup_on_machine,
                    AnsweredBy::Fax | AnsweredBy::Sit | AnsweredBy::Silence => true,
                    AnsweredBy::Human | AnsweredBy::NotSure => false,
                };
                if hang_up {
                    self.out.push_back(Output::SendBye);
                    let d = self.answered_disposition();
                    self.finish(d, Some(200), false, now);
                }
            }
            (State::Answered, Input::Hangup | Input::Shutdown) => {
                self.out.push_back(Output::SendBye);
                let d = self.answered_disposition();
                self.finish(d, Some(200), false, now);
            }
            (State::Answered, Input::Bye) => {
                let d = self.answered_disposition();
                self.finish(d, Some(200), true, now);
            }
            // Nobody answered: the far end ended its early dialog (a UAS may not send BYE
            // before a final response, so this is a refusal, not an answered call).
            (State::Inviting | State::Ringing | State::Cancelling { .. }, Input::Bye) => {
                self.finish(Disposition::Rejected, None, true, now);
            }
            (State::Inviting | State::Ringing | State::Cancelling { .. }, Input::Failed(f)) => {
                let d = match (f, self.state) {
                    // Our CANCEL went unanswered: what the CANCEL was for still holds.
                    (Failure::Timeout, State::Cancelling { why: CancelWhy::RingTimeout }) => Disposition::NoAnswer,
                    (Failure::Timeout, State::Cancelling { why: CancelWhy::Intercept }) => Disposition::Intercept,
                    (_, State::Cancelling { why: CancelWhy::Shutdown }) => Disposition::Interrupted,
                    // Timer B: the trunk did not answer at all. Its fault, not the contact's.
                    (Failure::Timeout, _) => Disposition::Congestion,
                    (Failure::Local, _) => Disposition::LocalFailure,
                };
                self.finish(d, None, false, now);
            }
            // The INVITE is answered; a late failure report changes nothing.
            (State::Answered, Input::Failed(_)) => {}
            _ => {}
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        match self.poll_timeout() {
            Some((at, CallTimer::Ring)) if now >= at && self.state == State::Ringing => {
                self.out.push_back(Output::SendCancel);
                self.state = State::Cancelling { why: CancelWhy::RingTimeout };
            }
            Some((at, CallTimer::Invite)) if now >= at => {
                let d = match self.state {
                    State::Cancelling { why: CancelWhy::RingTimeout } => Disposition::NoAnswer,
                    State::Cancelling { why: CancelWhy::Intercept } => Disposition::Intercept,
                    State::Cancelling { why: CancelWhy::Shutdown } => Disposition::Interrupted,
                    // No final response at all: the trunk is not answering (as timer B).
                    _ => Disposition::Congestion,
                };
                self.finish(d, None, false, now);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdp::{Codec, Direction};

    fn local() -> LocalMedia {
        LocalMedia {
            address: "127.0.0.1:20000".parse().expect("addr"),
            codecs: vec![Codec::Pcmu, Codec::Pcma],
            telephone_event: true,
            comfort_noise: true,
            ptime: 20,
            direction: Direction::SendRecv,
            session_id: 1,
            version: 1,
        }
    }

    const ANSWER: &str =
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\n";

    /// Any fixed origin will do: every other time in a test is derived from it.
    #[allow(clippy::disallowed_methods)]
    fn origin() -> Instant {
        Instant::now()
    }

    fn drain(c: &mut Call) -> Vec<Output> {
        std::iter::from_fn(|| c.poll_output()).collect()
    }

    fn record(out: &[Output]) -> CallRecord {
        out.iter()
            .find_map(|o| match o {
                Output::Finished(r) => Some(r.clone()),
                _ => None,
            })
            .expect("finished")
    }

    #[test]
    fn answered_by_a_machine_hangs_up_when_told_to() {
        let t0 = origin();
        let mut c = Call::new(CallConfig { hangup_on_machine: true, ..CallConfig::default() }, local(), t0);
        assert!(matches!(drain(&mut c)[..], [Output::SendInvite { .. }]));
        c.handle_input(Input::Provisional { status: 180, sdp: None }, t0 + Duration::from_secs(1));
        c.handle_input(Input::Final { status: 200, sdp: Some(ANSWER.into()) }, t0 + Duration::from_secs(5));
        let out = drain(&mut c);
        assert!(matches!(out[..], [Output::SendAck, Output::Media(_), Output::StartAmd]), "{out:?}");
        c.handle_input(Input::Amd(AnsweredBy::Machine), t0 + Duration::from_secs(8));
        let out = drain(&mut c);
        assert_eq!(out[0], Output::SendBye);
        let r = record(&out);
        assert_eq!(
            (r.disposition, r.answered_by, r.remote_hangup),
            (Disposition::Machine, Some(AnsweredBy::Machine), false)
        );
        assert_eq!(r.answered, Some(t0 + Duration::from_secs(5)));
        assert!(c.is_done() && c.poll_timeout().is_none());
    }

    #[test]
    fn ring_timeout_cancels_and_the_487_is_no_answer() {
        let t0 = origin();
        let mut c =
            Call::new(CallConfig { ring_timeout: Duration::from_secs(15), ..CallConfig::default() }, local(), t0);
        drain(&mut c);
        c.handle_input(Input::Provisional { status: 180, sdp: None }, t0 + Duration::from_secs(1));
        assert_eq!(c.poll_timeout(), Some((t0 + Duration::from_secs(15), CallTimer::Ring)));
        c.handle_timeout(t0 + Duration::from_secs(15));
        assert_eq!(drain(&mut c), vec![Output::SendCancel]);
        c.handle_input(Input::Final { status: 487, sdp: None }, t0 + Duration::from_millis(15_050));
        let r = record(&drain(&mut c));
        assert_eq!((r.disposition, r.final_status), (Disposition::NoAnswer, Some(487)));
    }

    #[test]
    fn busy_and_early_media_and_remote_hangup() {
        let t0 = origin();
        let mut c = Call::new(CallConfig::default(), local(), t0);
        drain(&mut c);
        c.handle_input(Input::Final { status: 486, sdp: None }, t0);
        assert_eq!(record(&drain(&mut c)).disposition, Disposition::Busy);

        let mut c = Call::new(CallConfig::default(), local(), t0);
        drain(&mut c);
        c.handle_input(Input::Provisional { status: 183, sdp: Some(ANSWER.into()) }, t0);
        assert!(matches!(drain(&mut c)[..], [Output::Media(_)]), "early media starts the session");
        c.handle_input(Input::Final { status: 200, sdp: Some(ANSWER.into()) }, t0);
        assert_eq!(drain(&mut c), vec![Output::SendAck, Output::StartAmd], "media already running");
        c.handle_input(Input::Amd(AnsweredBy::Human), t0);
        assert!(drain(&mut c).is_empty(), "a human stays connected");
        c.handle_input(Input::Bye, t0 + Duration::from_secs(30));
        let r = record(&drain(&mut c));
        assert!(r.remote_hangup);
        assert_eq!(r.answered_by, Some(AnsweredBy::Human));
    }

    #[test]
    fn answer_racing_our_cancel_is_acked_and_ended() {
        let t0 = origin();
        let mut c = Call::new(CallConfig::default(), local(), t0);
        drain(&mut c);
        c.handle_input(Input::Hangup, t0);
        assert_eq!(drain(&mut c), vec![Output::SendCancel]);
        c.handle_input(Input::Final { status: 200, sdp: Some(ANSWER.into()) }, t0);
        let out = drain(&mut c);
        assert_eq!(out[..2], [Output::SendAck, Output::SendBye]);
        assert_eq!(record(&out).disposition, Disposition::Cancelled);
    }

    #[test]
    fn sit_tones_in_early_media_cancel_the_attempt_as_an_intercept() {
        let t0 = origin();
        let mut c = Call::new(CallConfig::default(), local(), t0);
        drain(&mut c);
        c.handle_input(Input::Provisional { status: 183, sdp: Some(ANSWER.into()) }, t0);
        assert!(matches!(drain(&mut c)[..], [Output::Media(_)]));
        c.handle_input(Input::Amd(AnsweredBy::Machine), t0);
        assert!(drain(&mut c).is_empty(), "ringback or an announcement is no verdict before the answer");
        c.handle_input(Input::Amd(AnsweredBy::Sit), t0 + Duration::from_secs(2));
        assert_eq!(drain(&mut c), vec![Output::SendCancel]);
        c.handle_input(Input::Final { status: 487, sdp: None }, t0 + Duration::from_secs(2));
        let r = record(&drain(&mut c));
        assert_eq!((r.disposition, r.early_sit, r.answered), (Disposition::Intercept, true, None));

        // The network's own final response wins when it comes first.
        let mut c = Call::new(CallConfig::default(), local(), t0);
        drain(&mut c);
        c.handle_input(Input::Amd(AnsweredBy::Sit), t0);
        drain(&mut c);
        c.handle_input(Input::Final { status: 404, sdp: None }, t0);
        assert_eq!(record(&drain(&mut c)).disposition, Disposition::InvalidNumber);
    }

    #[test]
    fn bye_before_answer_is_not_an_answered_call() {
        let t0 = origin();
        for early in [None, Some(180)] {
            let mut c = Call::new(CallConfig::default(), local(), t0);
            drain(&mut c);
            if let Some(status) = early {
                c.handle_input(Input::Provisional { status, sdp: None }, t0);
            }
            c.handle_input(Input::Bye, t0 + Duration::from_secs(1));
            let r = record(&drain(&mut c));
            assert_eq!((r.disposition, r.final_status, r.answered), (Disposition::Rejected, None, None), "{early:?}");
        }
    }

    #[test]
    fn a_local_failure_is_not_a_sip_answer() {
        let t0 = origin();
        let mut c = Call::new(CallConfig::default(), local(), t0);
        drain(&mut c);
        c.handle_input(Input::Failed(Failure::Local), t0);
        let r = record(&drain(&mut c));
        assert_eq!((r.disposition, r.final_status), (Disposition::LocalFailure, None));
        assert!(!r.disposition.counts_as_attempt(), "a fault of ours is not held against the contact");

        let mut c = Call::new(CallConfig::default(), local(), t0);
        drain(&mut c);
        c.handle_input(Input::Failed(Failure::Timeout), t0 + Duration::from_secs(32));
        assert_eq!(record(&drain(&mut c)).disposition, Disposition::Congestion, "timer B: the trunk's fault");

        // A failure report after the answer does not end the call.
        let mut c = Call::new(CallConfig::default(), local(), t0);
        drain(&mut c);
        c.handle_input(Input::Final { status: 200, sdp: Some(ANSWER.into()) }, t0);
        drain(&mut c);
        c.handle_input(Input::Failed(Failure::Local), t0);
        assert!(!c.is_done());
    }

    #[test]
    fn shutdown_while_ringing_cancels_and_the_attempt_is_interrupted() {
        let t0 = origin();
        let mut c = Call::new(CallConfig::default(), local(), t0);
        drain(&mut c);
        c.handle_input(Input::Provisional { status: 180, sdp: None }, t0);
        c.handle_input(Input::Shutdown, t0 + Duration::from_secs(1));
        assert_eq!(drain(&mut c), vec![Output::SendCancel]);
        c.handle_input(Input::Final { status: 487, sdp: None }, t0 + Duration::from_secs(1));
        let r = record(&drain(&mut c));
        assert_eq!(r.disposition, Disposition::Interrupted);
        assert!(!r.disposition.counts_as_attempt());

        // Answered: a BYE, and the call keeps its disposition.
        let mut c = Call::new(CallConfig::default(), local(), t0);
        drain(&mut c);
        c.handle_input(Input::Final { status: 200, sdp: Some(ANSWER.into()) }, t0);
        drain(&mut c);
        c.handle_input(Input::Shutdown, t0 + Duration::from_secs(3));
        let out = drain(&mut c);
        assert_eq!(out[0], Output::SendBye);
        assert_eq!(record(&out).disposition, Disposition::Answered);
    }

    #[test]
    fn no_response_at_all_times_out() {
        let t0 = origin();
        let mut c = Call::new(CallConfig::default(), local(), t0);
        drain(&mut c);
        c.handle_timeout(t0 + Duration::from_secs(31));
        assert!(drain(&mut c).is_empty());
        c.handle_timeout(t0 + Duration::from_secs(32));
        assert_eq!(record(&drain(&mut c)).disposition, Disposition::Congestion);
    }

    #[test]
    fn unusable_answer_sdp_ends_the_call_cleanly() {
        let t0 = origin();
        let mut c = Call::new(CallConfig::default(), local(), t0);
        drain(&mut c);
        let bad = ANSWER.replace("RTP/AVP 0", "RTP/AVP 18");
        c.handle_input(Input::Final { status: 200, sdp: Some(bad) }, t0);
        let out = drain(&mut c);
        assert_eq!(out[..2], [Output::SendAck, Output::SendBye]);
        let r = record(&out);
        assert_eq!(r.disposition, Disposition::Failed { status: 488 });
        assert!(r.sdp_error.is_some());
    }
}
