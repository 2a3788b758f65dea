//! The disposition → retry step: after each attempt, whether and when the contact is
//! tried again. Per disposition, a delay and a maximum number of attempts that ended that
//! way; over all, a lifetime cap of counted attempts. Attempts that were not the contact's
//! doing (our failure, the trunk's congestion, our shutdown) do not count and come back soon.

use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use std::collections::BTreeMap;
use waihu_model::Disposition;

/// How one kind of outcome is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryRule {
    /// Wait this long before the next attempt (minutes and seconds add up).
    #[serde(default)]
    pub delay_minutes: u32,
    #[serde(default)]
    pub delay_seconds: u32,
    /// At most this many attempts may end this way (the last one is final).
    pub max: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// By disposition label: busy, no_answer, machine, abandoned, failed, cancelled.
    #[serde(default = "default_rules")]
    pub rules: BTreeMap<String, RetryRule>,
    /// Counted attempts per contact over its life.
    #[serde(default = "default_lifetime")]
    pub lifetime_max: u32,
    /// Attempts that do not count (interrupted, local failure, congestion) come back after
    /// this many seconds.
    #[serde(default = "default_requeue")]
    pub requeue_seconds: u32,
}

fn default_rules() -> BTreeMap<String, RetryRule> {
    [
        ("busy", RetryRule { delay_minutes: 10, delay_seconds: 0, max: 3 }),
        ("no_answer", RetryRule { delay_minutes: 60, delay_seconds: 0, max: 3 }),
        ("machine", RetryRule { delay_minutes: 240, delay_seconds: 0, max: 2 }),
        ("abandoned", RetryRule { delay_minutes: 60, delay_seconds: 0, max: 2 }),
        ("cancelled", RetryRule { delay_minutes: 10, delay_seconds: 0, max: 2 }),
        ("failed", RetryRule { delay_minutes: 60, delay_seconds: 0, max: 1 }),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn default_lifetime() -> u32 {
    6
}

fn default_requeue() -> u32 {
    60
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { rules: default_rules(), lifetime_max: default_lifetime(), requeue_seconds: default_requeue() }
    }
}

/// What the contact's attempts so far came to (this one included).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttemptTally {
    /// Counted attempts.
    pub counted: u32,
    /// Attempts by disposition label.
    pub by_label: BTreeMap<String, u32>,
}

impl AttemptTally {
    pub fn record(&mut self, d: Disposition) {
        if d.counts_as_attempt() {
            self.counted += 1;
        }
        *self.by_label.entry(rule_label(d).to_string()).or_default() += 1;
    }
}

/// The rule a disposition falls under.
fn rule_label(d: Disposition) -> &'static str {
    match d {
        Disposition::Busy => "busy",
        Disposition::NoAnswer => "no_answer",
        Disposition::Machine => "machine",
        Disposition::Abandoned => "abandoned",
        Disposition::Cancelled => "cancelled",
        Disposition::Failed { .. } => "failed",
        Disposition::Congestion => "congestion",
        Disposition::Interrupted => "interrupted",
        Disposition::LocalFailure => "local_failure",
        Disposition::Answered => "answered",
        Disposition::InvalidNumber => "invalid_number",
        Disposition::Rejected => "rejected",
        Disposition::Intercept => "intercept",
    }
}

/// After an attempt: try again at a time, or stop, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    RetryAt(DateTime<Utc>),
    /// Done with this contact; the label says why (the final disposition, or a cap).
    Final(&'static str),
}

impl RetryPolicy {
    /// What follows an attempt that ended `d` at `now`, given the tally with it included.
    pub fn next(&self, d: Disposition, tally: &AttemptTally, now: DateTime<Utc>) -> Next {
        match d {
            Disposition::Answered => return Next::Final("answered"),
            Disposition::InvalidNumber | Disposition::Rejected | Disposition::Intercept => {
                return Next::Final(rule_label(d))
            }
            Disposition::Congestion | Disposition::Interrupted | Disposition::LocalFailure => {
                return Next::RetryAt(now + Duration::seconds(i64::from(self.requeue_seconds)))
            }
            _ => {}
        }
        if tally.counted >= self.lifetime_max {
            return Next::Final("lifetime_cap");
        }
        let label = rule_label(d);
        let Some(rule) = self.rules.get(label) else { return Next::Final(label) };
        if tally.by_label.get(label).copied().unwrap_or(0) >= rule.max {
            return Next::Final(label);
        }
        Next::RetryAt(
            now + Duration::minutes(i64::from(rule.delay_minutes)) + Duration::seconds(i64::from(rule.delay_seconds)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-07-15T14:00:00Z").expect("t").with_timezone(&Utc)
    }

    #[test]
    fn busy_is_retried_until_its_cap_then_final() {
        let p = RetryPolicy::default();
        let mut tally = AttemptTally::default();
        for i in 1..=3 {
            tally.record(Disposition::Busy);
            let n = p.next(Disposition::Busy, &tally, t0());
            if i < 3 {
                assert_eq!(n, Next::RetryAt(t0() + Duration::minutes(10)), "attempt {i}");
            } else {
                assert_eq!(n, Next::Final("busy"));
            }
        }
    }

    #[test]
    fn our_failures_do_not_count_and_come_back_soon() {
        let p = RetryPolicy { lifetime_max: 1, ..RetryPolicy::default() };
        let mut tally = AttemptTally::default();
        for d in [Disposition::Interrupted, Disposition::LocalFailure, Disposition::Congestion] {
            tally.record(d);
            assert_eq!(p.next(d, &tally, t0()), Next::RetryAt(t0() + Duration::seconds(60)));
        }
        assert_eq!(tally.counted, 0);
        tally.record(Disposition::NoAnswer);
        assert_eq!(p.next(Disposition::NoAnswer, &tally, t0()), Next::Final("lifetime_cap"));
    }

    #[test]
    fn final_answers_and_policy_from_toml() {
        let p: RetryPolicy = toml::from_str(
            "lifetime_max = 4\n[rules]\nbusy = { delay_seconds = 30, max = 9 }\nmachine = { delay_minutes = 1440, max = 1 }\n",
        )
        .expect("toml");
        let mut tally = AttemptTally::default();
        tally.record(Disposition::Machine);
        assert_eq!(p.next(Disposition::Machine, &tally, t0()), Next::Final("machine"));
        let mut busy = AttemptTally::default();
        busy.record(Disposition::Busy);
        assert_eq!(p.next(Disposition::Busy, &busy, t0()), Next::RetryAt(t0() + Duration::seconds(30)));
        assert_eq!(p.next(Disposition::Answered, &tally, t0()), Next::Final("answered"));
        assert_eq!(p.next(Disposition::InvalidNumber, &tally, t0()), Next::Final("invalid_number"));
        assert_eq!(p.next(Disposition::NoAnswer, &tally, t0()), Next::Final("no_answer"), "no rule: final");
        assert!(toml::from_str::<RetryPolicy>("lifetime = 3").is_err(), "unknown field");
    }
}
