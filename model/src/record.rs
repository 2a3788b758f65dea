//! The call detail record: one per attempt, as printed by `waihu call`, stored by storage/
//! and served by the API. Wall-clock times are Unix milliseconds; durations are
//! milliseconds measured on the monotonic clock from the start of the attempt.

use crate::{AnsweredBy, CallId, Disposition};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Who ended the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum EndedBy {
    /// We did (BYE or CANCEL from us, or the attempt timed out).
    #[default]
    Local,
    /// The far end hung up (BYE) or refused the call.
    Remote,
}

/// Why we hung up, when we did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HangupReason {
    /// AMD decided and the hang-up policy said so.
    Amd,
    /// The machine's message (or its beep) ended: the voicemail drop point.
    MachineMessageEnd,
    /// The call reached its maximum duration.
    MaxDuration,
    /// Our session-timer refresh was refused or went unanswered (RFC 4028).
    SessionRefreshFailed,
    /// The far end accepted our REFER and the transfer went through.
    Transferred,
    /// No RTP from the far end for the media timeout.
    MediaTimeout,
    /// The media shard carrying the leg went away (the leg's channel closed without
    /// `Closed`): no audio, no AMD, so the call is ended rather than left deaf.
    MediaLost,
    /// The campaign's message (a broadcast, a voicemail drop) was played to the end.
    MessagePlayed,
    /// A live person was not connected to an agent in time: the safe-harbour message was
    /// played and the call released (an abandoned call).
    SafeHarbour,
    /// The control plane asked (a supervisor, a campaign stopping, an API call).
    Command,
    /// We were shutting down (SIGINT/SIGTERM).
    Shutdown,
}

impl HangupReason {
    pub const fn label(self) -> &'static str {
        match self {
            HangupReason::Amd => "amd",
            HangupReason::MachineMessageEnd => "machine_message_end",
            HangupReason::MaxDuration => "max_duration",
            HangupReason::SessionRefreshFailed => "session_refresh_failed",
            HangupReason::Transferred => "transferred",
            HangupReason::MediaTimeout => "media_timeout",
            HangupReason::MediaLost => "media_lost",
            HangupReason::MessagePlayed => "message_played",
            HangupReason::SafeHarbour => "safe_harbour",
            HangupReason::Command => "command",
            HangupReason::Shutdown => "shutdown",
        }
    }
}

impl fmt::Display for HangupReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// Everything one attempt left behind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct CallRecord {
    /// The control plane's id for the call.
    pub id: CallId,
    /// The SIP Call-ID of the INVITE (empty when it was never sent).
    pub call_id: String,
    pub target: String,
    pub trunk: String,
    pub disposition: Disposition,
    /// Final status of the INVITE; None when none came (timeout, local failure, BYE first).
    pub final_status: Option<u16>,
    pub answered_by: Option<AnsweredBy>,
    /// Which AMD rule decided (e.g. "long_greeting").
    pub amd_cause: Option<String>,
    /// Wall time from the answer to the AMD decision.
    pub amd_after_answer_ms: Option<u64>,
    pub beep_hz: Option<u32>,
    /// Media time of the beep's end, from the first RTP packet of the call.
    pub beep_end_media_ms: Option<u64>,
    pub early_media: bool,
    /// SIT tones heard in early media.
    pub early_sit: bool,
    pub started_unix_ms: u64,
    pub answered_unix_ms: Option<u64>,
    pub ended_unix_ms: u64,
    /// INVITE to the first 18x.
    pub ring_ms: Option<u64>,
    /// INVITE to the 200.
    pub answer_ms: Option<u64>,
    /// INVITE to the bridge with an agent (a live person connected).
    pub connect_ms: Option<u64>,
    /// Answer to the end.
    pub talk_ms: Option<u64>,
    pub duration_ms: u64,
    pub ended_by: EndedBy,
    pub hangup_reason: Option<HangupReason>,
    /// What went wrong on the signalling side (first error only).
    pub sip_error: Option<String>,
    pub sdp_error: Option<String>,
    /// What went wrong in the media plane (first error only).
    pub media_error: Option<String>,
    pub rtp_packets: u64,
    pub rtp_lost: u64,
    pub rtp_jitter_ms: f64,
    pub rtp_malformed: u64,
    /// RTP datagrams from anyone but the negotiated far end, dropped (strict source).
    pub rtp_strangers: u64,
    /// Final status of our hold re-INVITE, and of the resume (0: no answer).
    pub hold_status: Option<u16>,
    pub resume_status: Option<u16>,
    /// Final status of our REFER (blind transfer; 202 when accepted).
    pub refer_status: Option<u16>,
    /// The transfer's outcome as the far end's NOTIFY reported it (RFC 3515 sipfrag).
    pub transfer_status: Option<u16>,
    /// Where the far end asked us to go with a REFER (declined).
    pub refer_declined: Option<String>,
    /// re-INVITEs/UPDATEs from the far end we answered.
    pub remote_reoffers: u32,
    /// Session-timer refreshes we sent and had accepted (RFC 4028, refresher=uac).
    pub session_refreshes: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_through_json_with_its_labels() {
        let r = CallRecord {
            id: 7,
            call_id: "abc@waihu.invalid".into(),
            disposition: Disposition::Machine,
            answered_by: Some(AnsweredBy::Machine),
            ended_by: EndedBy::Remote,
            hangup_reason: Some(HangupReason::MachineMessageEnd),
            final_status: Some(200),
            rtp_jitter_ms: 1.5,
            ..CallRecord::default()
        };
        let json = serde_json::to_value(&r).expect("serialize");
        assert_eq!(json["disposition"], "machine");
        assert_eq!(json["answered_by"], "machine");
        assert_eq!(json["ended_by"], "remote");
        assert_eq!(json["hangup_reason"], "machine_message_end");
        let back: CallRecord = serde_json::from_value(json).expect("parse");
        assert_eq!(back, r);
    }
}
