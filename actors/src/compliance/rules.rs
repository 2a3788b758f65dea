//! May this contact be dialled now? A pure decision over the profile, the contact (its
//! candidate time zones, region, do-not-call status) and its call history. Each refusal is
//! a [`Blocked`] with its reason, so "why was this number not called" always has an
//! answer, and [`next_allowed`] says when it may be dialled instead.
//!
//! Calling hours are checked in every candidate zone of the number (the strictest reading
//! when a number's area spans zones), on the instant's local time from the tz database,
//! so they hold across DST changes.

use super::profile::Profile;
use chrono::{DateTime, Duration as ChronoDuration, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

/// What the rules need to know of a contact.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// Every zone the number may be in (one when known).
    pub zones: &'a [Tz],
    /// ISO 3166-2 region (`US-FL`), for regional overrides.
    pub region: Option<&'a str>,
    /// On a national or internal do-not-call list.
    pub on_dnc: bool,
}

/// One earlier attempt on the number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PastAttempt {
    pub at: DateTime<Utc>,
    pub abandoned: bool,
}

/// Why a contact may not be dialled now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Blocked {
    #[error("on a do-not-call list")]
    DoNotCall,
    #[error("no time zone is known for the number")]
    NoTimezone,
    #[error("outside calling hours in {zone} (local {local})")]
    OutsideHours { zone: Tz, local: NaiveDateTime },
    #[error("abandoned call on {abandoned_at}: no redial until {until}")]
    AbandonLockout { abandoned_at: DateTime<Utc>, until: DateTime<Utc> },
    #[error("{calls} calls in 24 h reach the limit of {limit}: next at {until}")]
    DailyLimit { calls: u32, limit: u32, until: DateTime<Utc> },
}

impl Blocked {
    /// A stable label for records, metrics and the audit trail.
    pub fn label(&self) -> &'static str {
        match self {
            Blocked::DoNotCall => "dnc",
            Blocked::NoTimezone => "no_timezone",
            Blocked::OutsideHours { .. } => "outside_hours",
            Blocked::AbandonLockout { .. } => "abandon_lockout",
            Blocked::DailyLimit { .. } => "daily_limit",
        }
    }
}

fn chrono_dur(d: std::time::Duration) -> ChronoDuration {
    ChronoDuration::from_std(d).unwrap_or(ChronoDuration::MAX)
}

/// Whether the contact may be dialled at `now`; the first rule that refuses, if any.
pub fn check(p: &Profile, s: &Subject<'_>, history: &[PastAttempt], now: DateTime<Utc>) -> Result<(), Blocked> {
    if s.on_dnc {
        return Err(Blocked::DoNotCall);
    }
    if s.zones.is_empty() {
        return Err(Blocked::NoTimezone);
    }
    if let Some(lock) = p.lockout_after_abandon {
        let lock = chrono_dur(lock);
        if let Some(a) = history.iter().filter(|a| a.abandoned && a.at <= now && now < a.at + lock).max_by_key(|a| a.at)
        {
            return Err(Blocked::AbandonLockout { abandoned_at: a.at, until: a.at + lock });
        }
    }
    let (window, limit) = p.rules_for(s.region);
    if let Some(limit) = limit {
        let day = ChronoDuration::hours(24);
        let mut recent: Vec<DateTime<Utc>> =
            history.iter().map(|a| a.at).filter(|&t| t <= now && now - t < day).collect();
        if recent.len() as u32 >= limit {
            recent.sort();
            // The call that must age out of the 24 h for one more to fit.
            let until = recent[recent.len() - limit as usize] + day;
            return Err(Blocked::DailyLimit { calls: recent.len() as u32, limit, until });
        }
    }
    for &zone in s.zones {
        let local = zone.from_utc_datetime(&now.naive_utc()).naive_local();
        if !window.contains(local.time()) {
            return Err(Blocked::OutsideHours { zone, local });
        }
    }
    Ok(())
}

/// The earliest minute from `now` on (within `within`) at which [`check`] passes; None
/// when the contact may never be dialled (do-not-call, no zone) or not within `within`.
pub fn next_allowed(
    p: &Profile,
    s: &Subject<'_>,
    history: &[PastAttempt],
    now: DateTime<Utc>,
    within: ChronoDuration,
) -> Option<DateTime<Utc>> {
    let end = now + within;
    let mut t = now;
    loop {
        match check(p, s, history, t) {
            Ok(()) => return Some(t),
            Err(Blocked::DoNotCall | Blocked::NoTimezone) => return None,
            Err(Blocked::AbandonLockout { until, .. } | Blocked::DailyLimit { until, .. }) => t = until.max(t),
            Err(Blocked::OutsideHours { .. }) => {
                // Calling hours are whole minutes: the next minute boundary.
                let secs = i64::from(t.second());
                let nanos = i64::from(t.nanosecond());
                t = t + ChronoDuration::seconds(60 - secs) - ChronoDuration::nanoseconds(nanos);
            }
        }
        if t > end {
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::America::{Chicago, New_York};
    use chrono_tz::Europe::London;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("time").with_timezone(&Utc)
    }

    #[test]
    fn calling_hours_follow_dst_in_new_york() {
        let us = Profile::builtin("us_tsr").expect("us");
        let s = Subject { zones: &[New_York], region: None, on_dnc: false };
        // 12:30 UTC is 07:30 EST in winter (closed) but 08:30 EDT in summer (open).
        assert!(matches!(check(&us, &s, &[], utc("2026-01-15T12:30:00Z")), Err(Blocked::OutsideHours { .. })));
        assert_eq!(check(&us, &s, &[], utc("2026-07-15T12:30:00Z")), Ok(()));
        // The spring-forward day: 08:00 EDT is 12:00 UTC.
        let next = next_allowed(&us, &s, &[], utc("2026-03-08T06:00:00Z"), ChronoDuration::days(2));
        assert_eq!(next, Some(utc("2026-03-08T12:00:00Z")));
    }

    #[test]
    fn a_number_spanning_zones_gets_the_intersection() {
        let us = Profile::builtin("us_tsr").expect("us");
        let s = Subject { zones: &[New_York, Chicago], region: None, on_dnc: false };
        // 13:30 UTC in July: 09:30 in New York, 08:30 in Chicago: open in both.
        assert_eq!(check(&us, &s, &[], utc("2026-07-15T13:30:00Z")), Ok(()));
        // 12:30 UTC: 08:30 in New York but 07:30 in Chicago.
        let e = check(&us, &s, &[], utc("2026-07-15T12:30:00Z")).expect_err("Chicago is closed");
        assert!(matches!(e, Blocked::OutsideHours { zone, .. } if zone == Chicago), "{e}");
        // 00:30 UTC: 20:30 New York (open), 19:30 Chicago (open); 01:30 UTC: 21:30 NY closed.
        assert!(check(&us, &s, &[], utc("2026-07-16T01:30:00Z")).is_err());
    }

    #[test]
    fn florida_limit_and_uk_lockout() {
        let us = Profile::builtin("us_tsr").expect("us");
        let s = Subject { zones: &[New_York], region: Some("US-FL"), on_dnc: false };
        let h: Vec<PastAttempt> = ["2026-07-15T13:00:00Z", "2026-07-15T15:00:00Z", "2026-07-15T17:00:00Z"]
            .iter()
            .map(|t| PastAttempt { at: utc(t), abandoned: false })
            .collect();
        let e = check(&us, &s, &h, utc("2026-07-15T19:00:00Z")).expect_err("three today");
        assert_eq!(e, Blocked::DailyLimit { calls: 3, limit: 3, until: utc("2026-07-16T13:00:00Z") });
        // Florida closes at 20:00 local = 00:00 UTC in July.
        assert!(matches!(check(&us, &s, &h[..1], utc("2026-07-16T00:30:00Z")), Err(Blocked::OutsideHours { .. })));
        let uk = Profile::builtin("uk_ofcom").expect("uk");
        let s = Subject { zones: &[London], region: None, on_dnc: false };
        let h = [PastAttempt { at: utc("2026-07-15T10:00:00Z"), abandoned: true }];
        let e = check(&uk, &s, &h, utc("2026-07-17T10:00:00Z")).expect_err("48 h later");
        assert_eq!(e.label(), "abandon_lockout");
        let next = next_allowed(&uk, &s, &h, utc("2026-07-17T10:00:00Z"), ChronoDuration::days(7));
        assert_eq!(next, Some(utc("2026-07-18T10:00:00Z")), "72 h on, inside hours");
        let dnc = Subject { on_dnc: true, ..s };
        assert_eq!(check(&uk, &dnc, &[], utc("2026-07-18T10:00:00Z")), Err(Blocked::DoNotCall));
        assert_eq!(next_allowed(&uk, &dnc, &[], utc("2026-07-18T10:00:00Z"), ChronoDuration::days(7)), None);
    }
}
