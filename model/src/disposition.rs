//! What became of a call attempt. A call outcome is not an error: busy, no answer, a
//! machine are dispositions the campaign acts on (retry policy, reporting).

use serde::{Deserialize, Serialize};
use std::fmt;

/// How a call attempt ended. Serialised as its label (`"busy"`, `"failed_415"`).
/// The default is `Interrupted`: what an attempt whose record was written before the
/// INVITE, and never finished, turns out to be (a crash or kill mid-call).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Disposition {
    /// 486 Busy Here, 600 Busy Everywhere.
    Busy,
    /// 480 Temporarily Unavailable, 408 Request Timeout, or our ring timeout (CANCEL).
    NoAnswer,
    /// 404 Not Found, 484 Address Incomplete, 604 Does Not Exist Anywhere.
    InvalidNumber,
    /// 403 Forbidden, 603 Decline.
    Rejected,
    /// 500, 502, 503: the trunk is in trouble; retry at trunk level, not against the contact.
    Congestion,
    /// 487 Request Terminated after our CANCEL (operator or campaign stop).
    Cancelled,
    /// Special information tones (vacant number, intercept, no circuit) in early media: we
    /// cancelled rather than wait for the network to give up.
    Intercept,
    /// Any other final failure response.
    Failed { status: u16 },
    /// Answered (by a person, or AMD was off or not sure); what AMD said and what
    /// happened next is recorded by the call.
    Answered,
    /// Answered by an answering machine (or fax), as AMD decided.
    Machine,
    /// A person answered and no agent took them in time (counts against the abandon cap).
    Abandoned,
    /// Our own shutdown cut the attempt short before it came to a natural end.
    #[default]
    Interrupted,
    /// Our side failed: the INVITE could not be built or sent, the SIP stack or the media
    /// plane failed. Not an answer from the network, and never counted against the contact.
    LocalFailure,
}

impl Disposition {
    /// The disposition a final non-2xx response means. `cancelled_by_ring_timeout` tells
    /// a 487 that follows our ring-timeout CANCEL (no answer) from any other CANCEL.
    pub fn from_final_response(status: u16, cancelled_by_ring_timeout: bool) -> Disposition {
        match status {
            200..=299 => Disposition::Answered,
            486 | 600 => Disposition::Busy,
            480 | 408 => Disposition::NoAnswer,
            404 | 484 | 604 => Disposition::InvalidNumber,
            403 | 603 => Disposition::Rejected,
            500 | 502 | 503 => Disposition::Congestion,
            487 if cancelled_by_ring_timeout => Disposition::NoAnswer,
            487 => Disposition::Cancelled,
            s => Disposition::Failed { status: s },
        }
    }

    /// Whether the contact may be retried later under the campaign's retry policy.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            Disposition::Busy
                | Disposition::NoAnswer
                | Disposition::Congestion
                | Disposition::Cancelled
                | Disposition::Interrupted
                | Disposition::LocalFailure
        )
    }

    /// Whether the attempt counts against the contact's retry limit. Failures on our side
    /// or the trunk's, and attempts our shutdown cut short, do not.
    pub fn counts_as_attempt(&self) -> bool {
        !matches!(self, Disposition::Congestion | Disposition::Interrupted | Disposition::LocalFailure)
    }

    /// Whether the failure is the trunk's rather than the contact's (retry now, elsewhere).
    pub fn trunk_failure(&self) -> bool {
        matches!(self, Disposition::Congestion)
    }

    /// Parses a label written by `Display`.
    pub fn from_label(s: &str) -> Option<Disposition> {
        Some(match s {
            "busy" => Disposition::Busy,
            "no_answer" => Disposition::NoAnswer,
            "invalid_number" => Disposition::InvalidNumber,
            "rejected" => Disposition::Rejected,
            "congestion" => Disposition::Congestion,
            "cancelled" => Disposition::Cancelled,
            "intercept" => Disposition::Intercept,
            "answered" => Disposition::Answered,
            "machine" => Disposition::Machine,
            "abandoned" => Disposition::Abandoned,
            "interrupted" => Disposition::Interrupted,
            "local_failure" => Disposition::LocalFailure,
            other => Disposition::Failed { status: other.strip_prefix("failed_")?.parse().ok()? },
        })
    }
}

impl fmt::Display for Disposition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Disposition::Busy => f.write_str("busy"),
            Disposition::NoAnswer => f.write_str("no_answer"),
            Disposition::InvalidNumber => f.write_str("invalid_number"),
            Disposition::Rejected => f.write_str("rejected"),
            Disposition::Congestion => f.write_str("congestion"),
            Disposition::Cancelled => f.write_str("cancelled"),
            Disposition::Intercept => f.write_str("intercept"),
            Disposition::Failed { status } => write!(f, "failed_{status}"),
            Disposition::Answered => f.write_str("answered"),
            Disposition::Machine => f.write_str("machine"),
            Disposition::Abandoned => f.write_str("abandoned"),
            Disposition::Interrupted => f.write_str("interrupted"),
            Disposition::LocalFailure => f.write_str("local_failure"),
        }
    }
}

impl Serialize for Disposition {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Disposition {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Disposition::from_label(&s).ok_or_else(|| serde::de::Error::custom(format!("unknown disposition {s:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_responses_map_to_dispositions() {
        let cases = [
            (486, Disposition::Busy),
            (600, Disposition::Busy),
            (480, Disposition::NoAnswer),
            (408, Disposition::NoAnswer),
            (404, Disposition::InvalidNumber),
            (484, Disposition::InvalidNumber),
            (604, Disposition::InvalidNumber),
            (403, Disposition::Rejected),
            (603, Disposition::Rejected),
            (503, Disposition::Congestion),
            (500, Disposition::Congestion),
            (502, Disposition::Congestion),
            (487, Disposition::Cancelled),
            (200, Disposition::Answered),
            (415, Disposition::Failed { status: 415 }),
        ];
        for (status, want) in cases {
            assert_eq!(Disposition::from_final_response(status, false), want, "{status}");
        }
        assert_eq!(Disposition::from_final_response(487, true), Disposition::NoAnswer);
    }

    #[test]
    fn retry_policy_inputs() {
        assert!(Disposition::Busy.retryable() && Disposition::NoAnswer.retryable());
        assert!(!Disposition::InvalidNumber.retryable() && !Disposition::Rejected.retryable());
        assert!(Disposition::Congestion.trunk_failure() && !Disposition::Busy.trunk_failure());
        assert_eq!(Disposition::Failed { status: 415 }.to_string(), "failed_415");
        assert!(Disposition::LocalFailure.retryable() && !Disposition::LocalFailure.counts_as_attempt());
        assert!(!Disposition::Interrupted.counts_as_attempt() && Disposition::NoAnswer.counts_as_attempt());
    }

    #[test]
    fn every_label_round_trips_through_serde() {
        let all = [
            Disposition::Busy,
            Disposition::NoAnswer,
            Disposition::InvalidNumber,
            Disposition::Rejected,
            Disposition::Congestion,
            Disposition::Cancelled,
            Disposition::Intercept,
            Disposition::Failed { status: 415 },
            Disposition::Answered,
            Disposition::Machine,
            Disposition::Abandoned,
            Disposition::Interrupted,
            Disposition::LocalFailure,
        ];
        for d in all {
            let json = serde_json::to_string(&d).expect("serialize");
            assert_eq!(json, format!("\"{d}\""));
            assert_eq!(serde_json::from_str::<Disposition>(&json).expect("parse"), d);
        }
        assert!(serde_json::from_str::<Disposition>("\"failed_x\"").is_err());
        assert!(serde_json::from_str::<Disposition>("\"maybe\"").is_err());
    }
}
