//! Simulated time for the call flow: a scripted far end (network and media shard) that
//! answers the flow's outputs after a delay, and a `progress()` that jumps to the earliest
//! deadline (the flow's timer or the next scripted event) each step. No clock, no IO:
//! every test is deterministic and runs in microseconds. Each test is named after the
//! edge case it pins.

use super::flow::*;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use waihu_engine::amd::{AmdEvent, Verdict};
use waihu_engine::session::{SessionEvent, SessionStats};
use waihu_engine::worker::{Event as MediaEvent, Keepalive};
use waihu_engine::{AmdCause, Decision, MediaTime};
use waihu_model::{AnsweredBy, CallRecord, Disposition, EndedBy, HangupReason};
use waihu_sip::agent::{Request, SipCommand, SipEvent};
use waihu_sip::call::Failure;
use waihu_sip::sdp::{Codec, Direction, LocalMedia};

const ANSWER: &str =
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\n";

fn offer(direction: &str) -> String {
    format!("{ANSWER}a={direction}\r\n")
}

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

/// How the far end answers our requests.
#[derive(Debug, Clone)]
struct Far {
    /// One-way delay of everything the far end does.
    rtt: Duration,
    /// What answers our CANCEL: 487, or 200 when the answer races it.
    cancel_final: u16,
    reinvite_status: Option<u16>,
    refresh_status: Option<u16>,
    refer_status: Option<u16>,
    /// The NOTIFY that follows an accepted REFER (None: none comes).
    notify: Option<u16>,
    /// The final NOTIFY overtakes the REFER's 202.
    notify_first: bool,
    /// The BYE's result never comes (a dead trunk).
    bye_lost: bool,
    /// Our commands cannot reach the SIP side (its task is gone).
    send_fails: bool,
}

impl Default for Far {
    fn default() -> Self {
        Far {
            rtt: Duration::from_millis(20),
            cancel_final: 487,
            reinvite_status: Some(200),
            refresh_status: Some(200),
            refer_status: Some(202),
            notify: Some(200),
            notify_first: false,
            bye_lost: false,
            send_fails: false,
        }
    }
}

struct Sim {
    flow: CallFlow,
    far: Far,
    t0: Instant,
    now: Instant,
    /// Scripted inputs by time (a counter keeps same-time events in order).
    queue: BTreeMap<(Instant, u64), Input>,
    seq: u64,
    /// Everything the flow said, with when.
    log: Vec<(Duration, Output)>,
    record: Option<CallRecord>,
    steps: usize,
    /// The shard's AMD run: what an analysis event scripted with `CURRENT_RUN` carries.
    media_run: u32,
}

/// Scripted AMD events with this run take the shard's current run when delivered.
const CURRENT_RUN: u32 = u32::MAX;

impl Sim {
    fn new(cfg: FlowConfig, far: Far) -> Sim {
        // Any fixed origin will do: every other time is derived from it.
        #[allow(clippy::disallowed_methods)]
        let t0 = Instant::now();
        let mut s = Sim {
            flow: CallFlow::new(cfg, local(), t0),
            far,
            t0,
            now: t0,
            queue: BTreeMap::new(),
            seq: 0,
            log: Vec::new(),
            record: None,
            steps: 0,
            media_run: 0,
        };
        s.drain();
        s
    }

    fn at(&mut self, after: Duration, input: Input) {
        self.seq += 1;
        self.queue.insert((self.t0 + after, self.seq), input);
    }

    fn sip_at(&mut self, ms: u64, ev: SipEvent) {
        self.at(Duration::from_millis(ms), Input::Sip(ev));
    }

    fn later(&mut self, input: Input) {
        let d = self.now - self.t0 + self.far.rtt;
        self.at(d, input);
    }

    /// The far end's reaction to one output.
    fn react(&mut self, o: &Output) {
        let resp = |request, status: Option<u16>, sdp: Option<String>| {
            Input::Sip(SipEvent::Response {
                request,
                status,
                sdp,
                error: status.is_none().then(|| "no response".into()),
            })
        };
        if self.far.send_fails && matches!(o, Output::Sip(_)) {
            // What the shell feeds back when the command channel is gone.
            if let Output::Sip(c) = o {
                let Some(request) = c.request() else { return };
                let err = SipEvent::Response { request, status: None, sdp: None, error: Some("dialog gone".into()) };
                self.at(self.now - self.t0, Input::Sip(err));
            }
            return;
        }
        match o {
            Output::Invite { .. } => {
                self.at(self.now - self.t0, Input::Invited { call_id: "sim-1@waihu.invalid".into() });
            }
            Output::Sip(SipCommand::Cancel) => {
                let sdp = (self.far.cancel_final == 200).then(|| ANSWER.to_string());
                self.later(Input::Sip(SipEvent::Final { status: self.far.cancel_final, sdp }));
            }
            Output::Sip(SipCommand::Bye) if !self.far.bye_lost => {
                let done = SipEvent::Response { request: Request::Bye, status: None, sdp: None, error: None };
                self.later(Input::Sip(done));
                self.later(Input::Sip(SipEvent::Ended));
            }
            Output::Sip(SipCommand::Reinvite { sdp }) => {
                let answer = sdp.contains("a=sendonly").then(|| offer("recvonly")).or(Some(offer("sendrecv")));
                let status = self.far.reinvite_status;
                self.later(resp(Request::Reinvite, status, answer.filter(|_| status == Some(200))));
            }
            Output::Sip(SipCommand::Refresh { .. }) => {
                let status = self.far.refresh_status;
                self.later(resp(Request::Refresh, status, status.map(|_| offer("sendrecv"))));
            }
            Output::Sip(SipCommand::Refer { .. }) => {
                let status = self.far.refer_status;
                if status == Some(202) && self.far.notify_first {
                    self.later(Input::Sip(SipEvent::Notify { status: self.far.notify }));
                }
                self.later(resp(Request::Refer, status, None));
                if status == Some(202) && !self.far.notify_first {
                    if let Some(n) = self.far.notify {
                        self.later(Input::Sip(SipEvent::Notify { status: Some(100) }));
                        let d = self.now - self.t0 + self.far.rtt * 10;
                        self.at(d, Input::Sip(SipEvent::Notify { status: Some(n) }));
                    }
                }
            }
            Output::Media(MediaCommand::StartAmd { run, .. }) => self.media_run = *run,
            // The shard plays 8 kHz audio in real time.
            Output::Media(MediaCommand::Play { audio }) => {
                let d = self.now - self.t0 + Duration::from_millis(audio.len() as u64 / 8);
                self.at(d, Input::Media(MediaEvent::PlayDone { call: 1 }));
            }
            Output::Media(MediaCommand::Close) => {
                let stats = SessionStats { packets: 42, ..SessionStats::default() };
                self.at(
                    self.now - self.t0 + Duration::from_millis(1),
                    Input::Media(MediaEvent::Closed { call: 1, stats }),
                );
            }
            _ => {}
        }
    }

    fn drain(&mut self) {
        while let Some(o) = self.flow.poll_output() {
            self.react(&o);
            if let Output::Finished(r) = &o {
                assert!(self.record.is_none(), "one record per call");
                self.record = Some((**r).clone());
            }
            self.log.push((self.now - self.t0, o));
        }
    }

    /// One step: to the earliest of the flow's deadline and the next scripted input.
    fn step(&mut self) -> bool {
        self.steps += 1;
        assert!(self.steps < 10_000, "the call does not settle");
        let timer = self.flow.poll_timeout().map(|(at, _)| at);
        let next = self.queue.keys().next().copied();
        match (timer, next) {
            (None, None) => return false,
            (Some(t), Some((q, _))) if t < q => self.timeout(t),
            (Some(t), None) => self.timeout(t),
            (_, Some(key)) => {
                if let Some(mut input) = self.queue.remove(&key) {
                    self.now = self.now.max(key.0);
                    if let Input::Media(MediaEvent::Media { event: SessionEvent::Amd { run, .. }, .. }) = &mut input {
                        if *run == CURRENT_RUN {
                            *run = self.media_run;
                        }
                    }
                    self.flow.handle_input(input, self.now);
                }
            }
        }
        self.drain();
        true
    }

    fn timeout(&mut self, t: Instant) {
        self.now = self.now.max(t);
        self.flow.handle_timeout(self.now);
    }

    /// Runs until nothing is left to happen.
    fn progress(&mut self) -> CallRecord {
        while self.step() {}
        assert!(self.flow.is_done(), "no record: {:#?}", self.log);
        self.record.clone().expect("record")
    }

    /// Runs until `after` from the start.
    fn run_until(&mut self, after: Duration) {
        let end = self.t0 + after;
        loop {
            let timer = self.flow.poll_timeout().map(|(at, _)| at);
            let next = self.queue.keys().next().map(|k| k.0);
            match timer.into_iter().chain(next).min() {
                Some(t) if t <= end => {
                    self.step();
                }
                _ => break,
            }
        }
        self.now = self.now.max(end);
    }

    fn sent(&self, f: impl Fn(&Output) -> bool) -> Vec<Duration> {
        self.log.iter().filter(|(_, o)| f(o)).map(|(t, _)| *t).collect()
    }

    fn count(&self, f: impl Fn(&Output) -> bool) -> usize {
        self.sent(f).len()
    }
}

fn answered_at(sim: &mut Sim, ms: u64) {
    sim.sip_at(ms / 2, SipEvent::Provisional { status: 180, sdp: None });
    sim.sip_at(ms, SipEvent::Final { status: 200, sdp: Some(ANSWER.into()) });
}

fn amd(sim: &mut Sim, ms: u64, e: AmdEvent) {
    amd_of_run(sim, ms, CURRENT_RUN, e);
}

fn amd_of_run(sim: &mut Sim, ms: u64, run: u32, e: AmdEvent) {
    sim.at(
        Duration::from_millis(ms),
        Input::Media(MediaEvent::Media { call: 1, event: SessionEvent::Amd { run, event: e } }),
    );
}

fn decided(verdict: Verdict, at_ms: u64) -> AmdEvent {
    let cause = match verdict {
        Verdict::Human => AmdCause::Human { greeting_ms: 800, silence_ms: 800 },
        Verdict::Sit => AmdCause::SitTone,
        _ => AmdCause::LongGreeting { greeting_ms: 3000, limit_ms: 2500 },
    };
    AmdEvent::Decided(Decision { verdict, cause, at: MediaTime::from_ms(at_ms) })
}

fn is_bye(o: &Output) -> bool {
    matches!(o, Output::Sip(SipCommand::Bye))
}

fn is_cancel(o: &Output) -> bool {
    matches!(o, Output::Sip(SipCommand::Cancel))
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn bye_before_answer_is_a_refusal_not_an_answered_call() {
    let mut sim = Sim::new(FlowConfig::default(), Far::default());
    sim.sip_at(100, SipEvent::Provisional { status: 180, sdp: None });
    sim.sip_at(900, SipEvent::Bye);
    sim.sip_at(910, SipEvent::Ended);
    let r = sim.progress();
    assert_eq!((r.disposition, r.final_status, r.answer_ms), (Disposition::Rejected, None, None));
    assert_eq!(r.ended_by, EndedBy::Remote);
    assert_eq!(sim.count(is_bye) + sim.count(is_cancel), 0, "nothing to end: the far end did");
    assert_eq!(r.ring_ms, Some(100));
    assert_eq!(r.rtp_packets, 42, "the media statistics make it into the record");
}

#[test]
fn answer_racing_our_cancel_is_ended_with_a_bye_and_counted_cancelled() {
    let far = Far { cancel_final: 200, ..Far::default() };
    let mut sim = Sim::new(FlowConfig::default(), far);
    sim.sip_at(100, SipEvent::Provisional { status: 180, sdp: None });
    sim.at(Duration::from_millis(500), Input::Command(Command::Hangup));
    let r = sim.progress();
    assert_eq!(sim.sent(is_cancel), vec![Duration::from_millis(500)]);
    assert_eq!(sim.sent(is_bye), vec![Duration::from_millis(520)], "the 200 that raced the CANCEL is hung up");
    assert_eq!((r.disposition, r.final_status), (Disposition::Cancelled, Some(200)));
    assert_eq!(r.hangup_reason, Some(HangupReason::Command));
    assert_eq!(r.ended_by, EndedBy::Local);
    assert_eq!(sim.count(|o| matches!(o, Output::Media(MediaCommand::StartAmd { .. }))), 0, "no AMD on a call we end");
}

#[test]
fn hangup_command_while_ringing_cancels_and_487_is_cancelled() {
    let mut sim = Sim::new(FlowConfig::default(), Far::default());
    sim.sip_at(100, SipEvent::Provisional { status: 180, sdp: None });
    sim.at(secs(3), Input::Command(Command::Hangup));
    let r = sim.progress();
    assert_eq!(sim.sent(is_cancel), vec![secs(3)]);
    assert_eq!((r.disposition, r.final_status), (Disposition::Cancelled, Some(487)));
    assert_eq!((r.ended_by, r.hangup_reason), (EndedBy::Local, Some(HangupReason::Command)));
    assert_eq!(r.duration_ms, 3020);
}

#[test]
fn ring_timeout_cancels_and_is_no_answer() {
    let cfg = FlowConfig { ring_timeout: secs(15), ..FlowConfig::default() };
    let mut sim = Sim::new(cfg, Far::default());
    sim.sip_at(100, SipEvent::Provisional { status: 180, sdp: None });
    let r = sim.progress();
    assert_eq!(sim.sent(is_cancel), vec![secs(15)]);
    assert_eq!(r.disposition, Disposition::NoAnswer);
    assert!(r.hangup_reason.is_none(), "the ring timeout is the SIP call's, not a hang-up");
}

#[test]
fn reinvite_from_the_far_end_during_hold_is_answered_sendonly_and_music_keeps_playing() {
    let cfg = FlowConfig { amd: false, hold_after: Some(secs(1)), hold_for: secs(5), ..FlowConfig::default() };
    let mut sim = Sim::new(cfg, Far::default());
    answered_at(&mut sim, 1000);
    // While we hold (from 2.02 s), the far end re-offers sendrecv (a refresh, or a new address).
    sim.sip_at(3000, SipEvent::Reoffer { id: 7, offer: Some(offer("sendrecv")) });
    sim.sip_at(20_000, SipEvent::Bye);
    sim.run_until(secs(4));
    let answer = sim.log.iter().find_map(|(_, o)| match o {
        Output::Sip(SipCommand::AnswerReoffer { id: 7, sdp: Some(s) }) => Some(s.clone()),
        _ => None,
    });
    let answer = answer.expect("the re-offer is answered");
    assert!(answer.contains("a=sendonly"), "a held call stays held: {answer}");
    assert_eq!(sim.count(|o| matches!(o, Output::Media(MediaCommand::Hold { .. }))), 1);
    assert_eq!(sim.count(|o| matches!(o, Output::Media(MediaCommand::Resume))), 0, "the re-offer does not resume");
    let r = sim.progress();
    assert_eq!((r.hold_status, r.resume_status, r.remote_reoffers), (Some(200), Some(200), 1));
    // Resume is hold_for after the hold took: 1 s + 20 ms round trip + 5 s.
    let resumed = sim.sent(|o| matches!(o, Output::Media(MediaCommand::Resume)));
    assert_eq!(resumed, vec![Duration::from_millis(7040)]);
    assert_eq!((r.disposition, r.ended_by), (Disposition::Answered, EndedBy::Remote));
}

#[test]
fn refused_session_refresh_hangs_up() {
    let far = Far { refresh_status: Some(481), ..Far::default() };
    let cfg = FlowConfig { amd: false, max_duration: secs(600), ..FlowConfig::default() };
    let mut sim = Sim::new(cfg, far);
    answered_at(&mut sim, 1000);
    sim.sip_at(1001, SipEvent::SessionTimer { secs: 90, we_refresh: true });
    let r = sim.progress();
    let refreshes = sim.sent(|o| matches!(o, Output::Sip(SipCommand::Refresh { secs: 90, .. })));
    assert_eq!(refreshes, vec![Duration::from_millis(46_001)], "at half the interval");
    assert_eq!(r.hangup_reason, Some(HangupReason::SessionRefreshFailed));
    assert_eq!(sim.sent(is_bye), vec![Duration::from_millis(46_021)]);
    assert_eq!(r.session_refreshes, 0);
}

#[test]
fn accepted_refreshes_repeat_and_are_counted() {
    let cfg = FlowConfig { amd: false, max_duration: secs(100), ..FlowConfig::default() };
    let mut sim = Sim::new(cfg, Far::default());
    answered_at(&mut sim, 0);
    sim.sip_at(1, SipEvent::SessionTimer { secs: 60, we_refresh: true });
    let r = sim.progress();
    assert_eq!(r.session_refreshes, 3, "at 30, 60 and 90 s");
    assert_eq!(r.hangup_reason, Some(HangupReason::MaxDuration));
}

#[test]
fn unanswered_session_refresh_gives_up_after_the_request_timeout() {
    let far = Far { refresh_status: None, ..Far::default() };
    let cfg = FlowConfig { amd: false, max_duration: secs(600), ..FlowConfig::default() };
    let mut sim = Sim::new(cfg, far);
    answered_at(&mut sim, 0);
    sim.sip_at(1, SipEvent::SessionTimer { secs: 90, we_refresh: true });
    let r = sim.progress();
    assert_eq!(r.hangup_reason, Some(HangupReason::SessionRefreshFailed));
    assert!(r.sip_error.as_deref().is_some_and(|e| e.contains("Refresh")), "{:?}", r.sip_error);
}

#[test]
fn media_timeout_mid_call_hangs_up() {
    let cfg = FlowConfig { amd: false, ..FlowConfig::default() };
    let mut sim = Sim::new(cfg, Far::default());
    answered_at(&mut sim, 1000);
    sim.at(secs(12), Input::Media(MediaEvent::MediaTimeout { call: 1, idle: secs(10) }));
    let r = sim.progress();
    assert_eq!(sim.sent(is_bye), vec![secs(12)]);
    assert_eq!((r.hangup_reason, r.ended_by), (Some(HangupReason::MediaTimeout), EndedBy::Local));
    assert_eq!(r.talk_ms, Some(11_000));
}

#[test]
fn shard_gone_mid_call_ends_the_call_instead_of_leaving_it_deaf() {
    // What the actor feeds when the leg's channel closes without `Closed`.
    let cfg = FlowConfig { amd: false, ..FlowConfig::default() };
    let mut sim = Sim::new(cfg, Far::default());
    answered_at(&mut sim, 1000);
    sim.at(secs(5), Input::Media(MediaEvent::ShardError { error: "shard gone".into() }));
    sim.at(secs(5), Input::Media(MediaEvent::Closed { call: 1, stats: SessionStats::default() }));
    let r = sim.progress();
    assert_eq!(sim.sent(is_bye), vec![secs(5)]);
    assert_eq!(r.hangup_reason, Some(HangupReason::MediaLost));
    assert_eq!(r.media_error.as_deref(), Some("shard gone"));
    assert_eq!(r.rtp_packets, 0, "the later Closed of our own Close is not counted twice");
}

#[test]
fn media_timeout_before_the_answer_changes_nothing() {
    let cfg = FlowConfig { amd: false, ring_timeout: secs(20), ..FlowConfig::default() };
    let mut sim = Sim::new(cfg, Far::default());
    sim.sip_at(100, SipEvent::Provisional { status: 183, sdp: Some(ANSWER.into()) });
    sim.at(secs(11), Input::Media(MediaEvent::MediaTimeout { call: 1, idle: secs(10) }));
    let r = sim.progress();
    assert_eq!(r.disposition, Disposition::NoAnswer, "the ring timeout ended it");
    assert_eq!(sim.sent(is_cancel), vec![secs(20)]);
}

#[test]
fn refer_accepted_then_notify_failure_keeps_the_call() {
    let far = Far { notify: Some(486), ..Far::default() };
    let cfg = FlowConfig {
        amd: false,
        transfer_to: Some("sip:agent@127.0.0.1:5090".into()),
        transfer_after: secs(2),
        max_duration: secs(30),
        ..FlowConfig::default()
    };
    let mut sim = Sim::new(cfg, far);
    answered_at(&mut sim, 1000);
    let r = sim.progress();
    let refers = sim.sent(|o| matches!(o, Output::Sip(SipCommand::Refer { .. })));
    assert_eq!(refers, vec![secs(3)]);
    assert_eq!((r.refer_status, r.transfer_status), (Some(202), Some(486)));
    assert_eq!(r.hangup_reason, Some(HangupReason::MaxDuration), "a failed transfer leaves the call with us");
    assert_eq!(sim.sent(is_bye), vec![secs(31)]);
}

#[test]
fn refer_accepted_then_notify_success_hangs_up_as_transferred() {
    let cfg = FlowConfig { amd: false, transfer_to: Some("sip:agent@127.0.0.1".into()), ..FlowConfig::default() };
    let mut sim = Sim::new(cfg, Far::default());
    answered_at(&mut sim, 1000);
    let r = sim.progress();
    assert_eq!((r.refer_status, r.transfer_status), (Some(202), Some(200)));
    assert_eq!(r.hangup_reason, Some(HangupReason::Transferred));
    // REFER at 2 s, its 202 at 2.02 s, the final NOTIFY 200 ms after the REFER.
    assert_eq!(sim.sent(is_bye), vec![Duration::from_millis(2200)]);
}

#[test]
fn notify_that_overtakes_the_202_still_completes_the_transfer() {
    let far = Far { notify_first: true, ..Far::default() };
    let cfg = FlowConfig { amd: false, transfer_to: Some("sip:agent@127.0.0.1".into()), ..FlowConfig::default() };
    let mut sim = Sim::new(cfg, far);
    answered_at(&mut sim, 1000);
    let r = sim.progress();
    assert_eq!((r.refer_status, r.transfer_status), (Some(202), Some(200)));
    assert_eq!(r.hangup_reason, Some(HangupReason::Transferred));
    assert_eq!(sim.sent(is_bye), vec![Duration::from_millis(2020)], "at the 202, not after the wait");
}

#[test]
fn refer_accepted_without_a_notify_is_transferred_after_the_wait() {
    let far = Far { notify: None, ..Far::default() };
    let cfg = FlowConfig {
        amd: false,
        transfer_to: Some("sip:agent@127.0.0.1".into()),
        transfer_wait: secs(5),
        ..FlowConfig::default()
    };
    let mut sim = Sim::new(cfg, far);
    answered_at(&mut sim, 1000);
    let r = sim.progress();
    assert_eq!((r.refer_status, r.transfer_status), (Some(202), None));
    assert_eq!(r.hangup_reason, Some(HangupReason::Transferred));
    assert_eq!(sim.sent(is_bye), vec![Duration::from_millis(7020)]);
}

#[test]
fn scheduled_transfer_waits_for_hold_and_resume() {
    let cfg = FlowConfig {
        amd: false,
        hold_after: Some(secs(1)),
        hold_for: secs(1),
        transfer_to: Some("sip:agent@127.0.0.1".into()),
        transfer_after: secs(1),
        ..FlowConfig::default()
    };
    let mut sim = Sim::new(cfg, Far::default());
    answered_at(&mut sim, 0);
    let r = sim.progress();
    let refer = sim.sent(|o| matches!(o, Output::Sip(SipCommand::Refer { .. })));
    let reinvites = sim.sent(|o| matches!(o, Output::Sip(SipCommand::Reinvite { .. })));
    assert_eq!(reinvites, vec![secs(1), Duration::from_millis(2020)]);
    assert_eq!(refer, vec![Duration::from_millis(2040)], "right after the resume's answer");
    assert_eq!((r.hold_status, r.resume_status, r.transfer_status), (Some(200), Some(200), Some(200)));
}

#[test]
fn far_end_refer_is_declined_by_policy() {
    let cfg = FlowConfig { amd: false, max_duration: secs(5), ..FlowConfig::default() };
    let mut sim = Sim::new(cfg, Far::default());
    answered_at(&mut sim, 1000);
    sim.sip_at(2000, SipEvent::Refer { id: 3, target: "<sip:elsewhere@10.0.0.1>".into() });
    let r = sim.progress();
    assert_eq!(sim.count(|o| matches!(o, Output::Sip(SipCommand::AnswerRefer { id: 3, status: 603 }))), 1);
    assert_eq!(r.refer_declined.as_deref(), Some("<sip:elsewhere@10.0.0.1>"));
}

#[test]
fn an_agent_phones_refer_is_accepted_notified_and_reported() {
    let cfg = FlowConfig { amd: false, max_duration: secs(5), honour_refer: true, ..FlowConfig::default() };
    let mut sim = Sim::new(cfg, Far::default());
    answered_at(&mut sim, 1000);
    sim.sip_at(2000, SipEvent::Refer { id: 4, target: "<sip:+8613900000001@127.0.0.1>".into() });
    let r = sim.progress();
    assert_eq!(sim.count(|o| matches!(o, Output::Sip(SipCommand::AnswerRefer { id: 4, status: 202 }))), 1);
    assert_eq!(
        sim.count(|o| matches!(o, Output::Sip(SipCommand::NotifyRefer { .. }))),
        0,
        "not before the agent tried"
    );
    assert_eq!(
        sim.count(
            |o| matches!(o, Output::Progress(Progress::ReferRequested { target }) if target.contains("+8613900000001"))
        ),
        1
    );
    assert_eq!(r.refer_declined, None);
    // The agent's side says how it went: the NOTIFY carries it.
    let cfg = FlowConfig { amd: false, max_duration: secs(5), honour_refer: true, ..FlowConfig::default() };
    let mut sim = Sim::new(cfg, Far::default());
    answered_at(&mut sim, 1000);
    sim.sip_at(2000, SipEvent::Refer { id: 4, target: "<sip:+8613900000001@127.0.0.1>".into() });
    sim.at(Duration::from_millis(2001), Input::Command(Command::NotifyRefer { status: 503 }));
    sim.progress();
    assert_eq!(sim.count(|o| matches!(o, Output::Sip(SipCommand::NotifyRefer { status: 503 }))), 1);
}

#[test]
fn unusable_reoffer_gets_488_and_the_call_goes_on() {
    let cfg = FlowConfig { amd: false, max_duration: secs(5), ..FlowConfig::default() };
    let mut sim = Sim::new(cfg, Far::default());
    answered_at(&mut sim, 1000);
    sim.sip_at(2000, SipEvent::Reoffer { id: 1, offer: Some(ANSWER.replace("RTP/AVP 0", "RTP/AVP 18")) });
    let r = sim.progress();
    assert_eq!(sim.count(|o| matches!(o, Output::Sip(SipCommand::AnswerReoffer { id: 1, sdp: None }))), 1);
    assert_eq!((r.remote_reoffers, r.hangup_reason), (0, Some(HangupReason::MaxDuration)));
    assert!(r.sdp_error.is_some());
}

#[test]
fn amd_machine_then_beep_then_message_end_hangs_up_at_the_message_end() {
    let cfg = FlowConfig { hangup_on: HangupOn::Machine, wait_for_beep: true, ..FlowConfig::default() };
    let mut sim = Sim::new(cfg, Far::default());
    answered_at(&mut sim, 1000);
    amd(&mut sim, 4000, decided(Verdict::Machine { beep_at: None }, 3000));
    amd(&mut sim, 9000, AmdEvent::Beep { start: MediaTime::from_ms(7800), end: MediaTime::from_ms(8000), hz: 1000 });
    amd(&mut sim, 9500, AmdEvent::MessageEnd { at: Some(MediaTime::from_ms(8000)) });
    let r = sim.progress();
    assert_eq!(sim.sent(is_bye), vec![Duration::from_millis(9500)], "not at the verdict, at the message end");
    assert_eq!((r.disposition, r.answered_by), (Disposition::Machine, Some(AnsweredBy::Machine)));
    assert_eq!((r.beep_hz, r.beep_end_media_ms, r.amd_after_answer_ms), (Some(1000), Some(8000), Some(3000)));
    assert_eq!(r.hangup_reason, Some(HangupReason::MachineMessageEnd));
    assert_eq!(r.amd_cause.as_deref(), Some("LONGGREETING-3000-2500"));
}

#[test]
fn broadcast_plays_to_a_person_at_the_verdict_and_to_a_machine_after_its_message() {
    let message: std::sync::Arc<[i16]> = vec![0i16; 8000 * 3].into();
    let cfg = FlowConfig { message: Some(message), max_duration: secs(60), ..FlowConfig::default() };
    let plays = |o: &Output| matches!(o, Output::Media(MediaCommand::Play { .. }));
    let mut sim = Sim::new(cfg.clone(), Far::default());
    answered_at(&mut sim, 1000);
    amd(&mut sim, 3000, decided(Verdict::Human, 2000));
    let r = sim.progress();
    assert_eq!(sim.sent(plays), vec![secs(3)]);
    assert_eq!(sim.sent(is_bye), vec![secs(6)], "once the 3 s message has played");
    assert_eq!((r.disposition, r.hangup_reason), (Disposition::Answered, Some(HangupReason::MessagePlayed)));

    let mut sim = Sim::new(cfg, Far::default());
    answered_at(&mut sim, 1000);
    amd(&mut sim, 4000, decided(Verdict::Machine { beep_at: None }, 3000));
    amd(&mut sim, 9000, AmdEvent::Beep { start: MediaTime::from_ms(7800), end: MediaTime::from_ms(8000), hz: 1000 });
    amd(&mut sim, 9500, AmdEvent::MessageEnd { at: Some(MediaTime::from_ms(8000)) });
    let r = sim.progress();
    assert_eq!(sim.sent(plays), vec![Duration::from_millis(9500)], "after the beep, not at the verdict");
    assert_eq!(sim.sent(is_bye), vec![Duration::from_millis(12_500)]);
    assert_eq!((r.disposition, r.hangup_reason), (Disposition::Machine, Some(HangupReason::MessagePlayed)));
}

#[test]
fn a_live_person_not_connected_in_two_seconds_hears_the_safe_harbour_and_is_abandoned() {
    let sorry: std::sync::Arc<[i16]> = vec![0i16; 8000].into();
    let cfg = FlowConfig { safe_harbour: Some(sorry), max_duration: secs(60), ..FlowConfig::default() };
    let plays = |o: &Output| matches!(o, Output::Media(MediaCommand::Play { .. }));
    let mut sim = Sim::new(cfg.clone(), Far::default());
    answered_at(&mut sim, 1000);
    amd(&mut sim, 3000, decided(Verdict::Human, 2000));
    let r = sim.progress();
    assert_eq!(sim.sent(plays), vec![secs(5)], "2 s after the verdict");
    assert_eq!(sim.sent(is_bye), vec![secs(6)], "once the 1 s message has played");
    assert_eq!((r.disposition, r.hangup_reason), (Disposition::Abandoned, Some(HangupReason::SafeHarbour)));
    assert_eq!(r.connect_ms, None);

    // Bridged within the 2 s: no message, the call goes on, and the connect time is kept.
    let mut sim = Sim::new(cfg.clone(), Far::default());
    answered_at(&mut sim, 1000);
    amd(&mut sim, 3000, decided(Verdict::Human, 2000));
    sim.at(Duration::from_millis(4500), Input::Command(Command::Bridge { peer: 9, shard: None }));
    sim.at(secs(8), Input::Command(Command::Hangup));
    let r = sim.progress();
    assert!(sim.sent(plays).is_empty());
    assert_eq!((r.disposition, r.connect_ms), (Disposition::Answered, Some(4500)));

    // A bridge that comes after the message began is too late: still abandoned.
    let mut sim = Sim::new(cfg, Far::default());
    answered_at(&mut sim, 1000);
    amd(&mut sim, 3000, decided(Verdict::Human, 2000));
    sim.at(Duration::from_millis(5500), Input::Command(Command::Bridge { peer: 9, shard: None }));
    let r = sim.progress();
    assert_eq!((r.disposition, r.connect_ms), (Disposition::Abandoned, None));
}

#[test]
fn a_not_sure_verdict_is_treated_as_a_person_under_the_two_second_rule() {
    let sorry: std::sync::Arc<[i16]> = vec![0i16; 8000].into();
    let cfg = FlowConfig {
        safe_harbour: Some(sorry),
        hangup_on: HangupOn::Machine,
        max_duration: secs(60),
        ..FlowConfig::default()
    };
    let plays = |o: &Output| matches!(o, Output::Media(MediaCommand::Play { .. }));
    let mut sim = Sim::new(cfg, Far::default());
    answered_at(&mut sim, 1000);
    amd(&mut sim, 3000, decided(Verdict::NotSure, 2000));
    let r = sim.progress();
    assert_eq!(sim.sent(plays), vec![secs(5)], "not hung up, not left in silence: the safe harbour 2 s on");
    assert_eq!((r.disposition, r.answered_by), (Disposition::Abandoned, Some(AnsweredBy::NotSure)));
}

#[test]
fn a_review_sample_records_the_first_seconds_and_keeps_them_only_for_a_machine() {
    let cfg = FlowConfig {
        hangup_on: HangupOn::Never,
        review_sample: Some(secs(6)),
        max_duration: secs(20),
        ..FlowConfig::default()
    };
    let records = |o: &Output| matches!(o, Output::Media(MediaCommand::StartRecording));
    let stops = |o: &Output| matches!(o, Output::Media(MediaCommand::StopRecording));
    let kept = |o: &Output| matches!(o, Output::Progress(Progress::ReviewSample { wav }) if wav.len() == 3);
    for (verdict, keep) in [(Verdict::Machine { beep_at: None }, 1), (Verdict::Human, 0)] {
        let mut sim = Sim::new(cfg.clone(), Far::default());
        answered_at(&mut sim, 1000);
        amd(&mut sim, 3000, decided(verdict, 2000));
        sim.at(Duration::from_millis(7100), Input::Media(MediaEvent::Recording { call: 0, wav: vec![1, 2, 3] }));
        sim.progress();
        assert_eq!(sim.sent(records), vec![secs(1)], "from the answer");
        assert_eq!(sim.sent(stops), vec![secs(7)], "6 s later");
        assert_eq!(sim.count(kept), keep, "{verdict:?}");
    }
    // A verdict after the recording's end: the recording waits for it.
    let mut sim = Sim::new(cfg, Far::default());
    answered_at(&mut sim, 1000);
    sim.at(Duration::from_millis(7100), Input::Media(MediaEvent::Recording { call: 0, wav: vec![1, 2, 3] }));
    amd(&mut sim, 8000, decided(Verdict::Machine { beep_at: None }, 7000));
    sim.progress();
    assert_eq!(sim.count(kept), 1, "kept at the late machine verdict");
}

#[test]
fn amd_machine_without_waiting_hangs_up_at_the_verdict() {
    let cfg = FlowConfig { hangup_on: HangupOn::Machine, ..FlowConfig::default() };
    let mut sim = Sim::new(cfg, Far::default());
    answered_at(&mut sim, 1000);
    amd(&mut sim, 4000, decided(Verdict::Machine { beep_at: None }, 3000));
    amd(&mut sim, 9000, AmdEvent::Beep { start: MediaTime::from_ms(7800), end: MediaTime::from_ms(8000), hz: 1000 });
    let r = sim.progress();
    assert_eq!(sim.sent(is_bye), vec![secs(4)]);
    assert_eq!((r.disposition, r.hangup_reason, r.beep_hz), (Disposition::Machine, Some(HangupReason::Amd), None));
}

#[test]
fn amd_human_is_kept_under_hangup_on_machine_and_dropped_under_hangup_on_human() {
    for (on, bye) in [(HangupOn::Machine, None), (HangupOn::Human, Some(secs(3))), (HangupOn::Any, Some(secs(3)))] {
        let cfg = FlowConfig { hangup_on: on, max_duration: secs(10), ..FlowConfig::default() };
        let mut sim = Sim::new(cfg, Far::default());
        answered_at(&mut sim, 1000);
        amd(&mut sim, 3000, decided(Verdict::Human, 2000));
        let r = sim.progress();
        assert_eq!(sim.sent(is_bye).first().copied(), bye.or(Some(secs(11))), "{on}");
        assert_eq!((r.disposition, r.answered_by), (Disposition::Answered, Some(AnsweredBy::Human)), "{on}");
    }
}

#[test]
fn sit_in_early_media_cancels_as_intercept_and_ringback_restarts_listening() {
    let mut sim = Sim::new(FlowConfig::default(), Far::default());
    sim.sip_at(100, SipEvent::Provisional { status: 183, sdp: Some(ANSWER.into()) });
    amd(&mut sim, 2000, decided(Verdict::Machine { beep_at: None }, 1900));
    amd(&mut sim, 3000, decided(Verdict::Sit, 2900));
    let r = sim.progress();
    let starts = sim.sent(|o| matches!(o, Output::Media(MediaCommand::StartAmd { .. })));
    assert_eq!(starts, vec![Duration::from_millis(100), secs(2)], "early analysis, then again after ringback");
    assert_eq!(sim.sent(is_cancel), vec![secs(3)]);
    assert_eq!((r.disposition, r.early_sit, r.early_media), (Disposition::Intercept, true, true));
    assert_eq!(r.answered_by, None);
}

#[test]
fn early_analysis_stops_at_the_answer_when_amd_is_off() {
    let cfg = FlowConfig { amd: false, max_duration: secs(2), ..FlowConfig::default() };
    let mut sim = Sim::new(cfg, Far::default());
    sim.sip_at(100, SipEvent::Provisional { status: 183, sdp: Some(ANSWER.into()) });
    sim.sip_at(1000, SipEvent::Final { status: 200, sdp: Some(ANSWER.into()) });
    sim.progress();
    assert_eq!(sim.sent(|o| matches!(o, Output::Media(MediaCommand::StopAmd))), vec![secs(1)]);
}

#[test]
fn early_media_verdict_in_flight_at_the_answer_is_not_the_answered_verdict() {
    // The early analysis (run 1) decided on the ringback just before the 200; its event
    // reaches the flow after the answer restarted AMD (run 2).
    let cfg = FlowConfig { hangup_on: HangupOn::Machine, max_duration: secs(20), ..FlowConfig::default() };
    let mut sim = Sim::new(cfg, Far::default());
    sim.sip_at(100, SipEvent::Provisional { status: 183, sdp: Some(ANSWER.into()) });
    sim.sip_at(1000, SipEvent::Final { status: 200, sdp: Some(ANSWER.into()) });
    amd_of_run(&mut sim, 1010, 1, decided(Verdict::Machine { beep_at: None }, 950));
    amd(&mut sim, 4000, decided(Verdict::Human, 2900));
    let r = sim.progress();
    assert_eq!((r.disposition, r.answered_by), (Disposition::Answered, Some(AnsweredBy::Human)));
    assert_eq!(r.amd_after_answer_ms, Some(3000));
    assert_eq!(sim.sent(is_bye), vec![secs(21)], "the person is not hung up on as a machine");
}

#[test]
fn early_media_verdict_after_the_answer_is_ignored_when_amd_is_off() {
    let cfg = FlowConfig { amd: false, hangup_on: HangupOn::Any, max_duration: secs(5), ..FlowConfig::default() };
    let mut sim = Sim::new(cfg, Far::default());
    sim.sip_at(100, SipEvent::Provisional { status: 183, sdp: Some(ANSWER.into()) });
    sim.sip_at(1000, SipEvent::Final { status: 200, sdp: Some(ANSWER.into()) });
    amd_of_run(&mut sim, 1010, 1, decided(Verdict::Machine { beep_at: None }, 950));
    let r = sim.progress();
    assert_eq!(r.answered_by, None);
    assert_eq!(sim.sent(is_bye), vec![secs(6)], "max duration ends it, not a stale verdict");
}

#[test]
fn local_send_failure_is_a_local_failure_not_a_sip_answer() {
    let mut sim = Sim::new(FlowConfig::default(), Far::default());
    // The shell could not send the INVITE at all.
    sim.flow.handle_input(Input::InviteFailed { error: "bad SIP URI".into() }, sim.now);
    sim.drain();
    let r = sim.progress();
    assert_eq!((r.disposition, r.final_status), (Disposition::LocalFailure, None));
    assert!(!r.disposition.counts_as_attempt());
    assert_eq!(r.sip_error.as_deref(), Some("bad SIP URI"));

    // A stack failure after the INVITE left is ours too.
    let mut sim = Sim::new(FlowConfig::default(), Far::default());
    sim.sip_at(10, SipEvent::Failed { failure: Failure::Local, detail: "transport closed".into() });
    sim.sip_at(11, SipEvent::Ended);
    assert_eq!(sim.progress().disposition, Disposition::LocalFailure);

    // Mid-call: the BYE cannot be sent (the dialog's task is gone); the record is still written.
    let far = Far { send_fails: true, ..Far::default() };
    let cfg = FlowConfig { amd: false, max_duration: secs(3), ..FlowConfig::default() };
    let mut sim = Sim::new(cfg, far);
    answered_at(&mut sim, 1000);
    let r = sim.progress();
    assert_eq!((r.disposition, r.hangup_reason), (Disposition::Answered, Some(HangupReason::MaxDuration)));
    assert!(r.sip_error.as_deref().is_some_and(|e| e.contains("dialog gone")), "{:?}", r.sip_error);
}

#[test]
fn lost_bye_response_does_not_hold_the_record_past_the_linger() {
    let far = Far { bye_lost: true, ..Far::default() };
    let cfg = FlowConfig { amd: false, max_duration: secs(3), linger: secs(2), ..FlowConfig::default() };
    let mut sim = Sim::new(cfg, far);
    answered_at(&mut sim, 1000);
    let r = sim.progress();
    let finished = sim.sent(|o| matches!(o, Output::Finished(_)));
    assert_eq!(finished, vec![secs(6)]);
    assert_eq!(r.duration_ms, 4000, "the call ended at the BYE, not when the record was written");
}

#[test]
fn timer_b_without_any_response_is_congestion() {
    let mut sim = Sim::new(FlowConfig::default(), Far::default());
    let r = sim.progress();
    assert_eq!((r.disposition, r.final_status, r.duration_ms), (Disposition::Congestion, None, 32_000));
}

#[test]
fn clock_jump_fires_each_overdue_timer_once_and_keeps_durations_sane() {
    let cfg =
        FlowConfig { amd: false, max_duration: secs(60), started_unix_ms: 1_800_000_000_000, ..FlowConfig::default() };
    let mut sim = Sim::new(cfg, Far::default());
    answered_at(&mut sim, 1000);
    sim.sip_at(1001, SipEvent::SessionTimer { secs: 20, we_refresh: true });
    sim.run_until(secs(2));
    // The host sleeps (a suspended VM) and wakes an hour later: one timeout call.
    sim.now += secs(3600);
    sim.flow.handle_timeout(sim.now);
    sim.drain();
    let r = sim.progress();
    let refreshes = sim.count(|o| matches!(o, Output::Sip(SipCommand::Refresh { .. })));
    assert!(refreshes <= 1, "no burst of refreshes for the missed periods: {refreshes}");
    assert_eq!(sim.count(is_bye), 1);
    assert_eq!(r.hangup_reason, Some(HangupReason::MaxDuration));
    assert_eq!(r.talk_ms, Some(3_601_000));
    assert_eq!(r.answered_unix_ms, Some(1_800_000_001_000));
    assert_eq!(r.ended_unix_ms, r.started_unix_ms + r.duration_ms);
}

#[test]
fn shutdown_before_the_answer_is_interrupted_and_after_it_keeps_the_disposition() {
    let mut sim = Sim::new(FlowConfig::default(), Far::default());
    sim.sip_at(100, SipEvent::Provisional { status: 180, sdp: None });
    sim.at(secs(1), Input::Command(Command::Shutdown));
    let r = sim.progress();
    assert_eq!((r.disposition, r.hangup_reason), (Disposition::Interrupted, Some(HangupReason::Shutdown)));
    assert!(!r.disposition.counts_as_attempt());

    let cfg = FlowConfig { amd: false, ..FlowConfig::default() };
    let mut sim = Sim::new(cfg, Far::default());
    answered_at(&mut sim, 1000);
    sim.at(secs(2), Input::Command(Command::Shutdown));
    let r = sim.progress();
    assert_eq!(sim.sent(is_bye), vec![secs(2)]);
    assert_eq!((r.disposition, r.hangup_reason), (Disposition::Answered, Some(HangupReason::Shutdown)));
}

#[test]
fn commands_hold_resume_and_bridge_reach_media_and_sip() {
    let cfg = FlowConfig { amd: false, max_duration: secs(20), ..FlowConfig::default() };
    let mut sim = Sim::new(cfg, Far::default());
    answered_at(&mut sim, 1000);
    sim.at(secs(2), Input::Command(Command::Bridge { peer: 9, shard: None }));
    sim.at(secs(3), Input::Command(Command::Hold));
    sim.at(Duration::from_millis(3005), Input::Command(Command::Resume));
    let r = sim.progress();
    assert_eq!(sim.sent(|o| matches!(o, Output::Media(MediaCommand::Bridge { peer: 9, shard: None }))), vec![secs(2)]);
    let reinvites = sim.sent(|o| matches!(o, Output::Sip(SipCommand::Reinvite { .. })));
    assert_eq!(reinvites, vec![secs(3), Duration::from_millis(3020)], "the resume waits for the hold's answer");
    assert_eq!((r.hold_status, r.resume_status), (Some(200), Some(200)));
}

#[test]
fn the_whole_set_runs_in_simulated_time() {
    // A long call (10 minutes, refreshes every 45 s) settles in a bounded number of steps.
    let cfg = FlowConfig { amd: false, max_duration: secs(600), ..FlowConfig::default() };
    let mut sim = Sim::new(cfg, Far::default());
    answered_at(&mut sim, 0);
    sim.sip_at(1, SipEvent::SessionTimer { secs: 90, we_refresh: true });
    let r = sim.progress();
    assert_eq!(r.session_refreshes, 13);
    assert!(sim.steps < 100, "{} steps", sim.steps);
}

#[test]
fn keepalive_starts_at_the_answer_as_comfort_noise_when_accepted_else_silence() {
    let with_cn = format!("{ANSWER}a=rtpmap:13 CN/8000\r\n").replace("RTP/AVP 0", "RTP/AVP 0 13");
    for (answer, mode, want) in [
        (ANSWER.to_string(), KeepaliveMode::Auto, Some(Keepalive::Silence)),
        (with_cn.clone(), KeepaliveMode::Auto, Some(Keepalive::ComfortNoise { pt: 13 })),
        (with_cn, KeepaliveMode::Silence, Some(Keepalive::Silence)),
        (ANSWER.to_string(), KeepaliveMode::Off, None),
    ] {
        let cfg = FlowConfig { amd: false, max_duration: secs(3), keepalive: mode, ..FlowConfig::default() };
        let mut sim = Sim::new(cfg, Far::default());
        // Early media first: no keepalive before the answer.
        sim.sip_at(100, SipEvent::Provisional { status: 183, sdp: Some(answer.clone()) });
        sim.sip_at(1000, SipEvent::Final { status: 200, sdp: Some(answer) });
        sim.progress();
        let sent: Vec<(Duration, Keepalive)> = sim
            .log
            .iter()
            .filter_map(|(t, o)| match o {
                Output::Media(MediaCommand::Keepalive(k)) => Some((*t, *k)),
                _ => None,
            })
            .collect();
        assert_eq!(sent, want.map(|k| (secs(1), k)).into_iter().collect::<Vec<_>>(), "{mode}");
    }
}
