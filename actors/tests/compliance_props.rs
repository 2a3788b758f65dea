//! Compliance properties: a simulated dialler asks the rules before every dial, over random
//! contacts (time zones, several per number, DST days), do-not-call entries and call
//! histories; an independent checker then reads the dial log. It works the local time out
//! from the zone's UTC offset itself and applies the profile's numbers directly, and it finds
//! no dial outside calling hours, none to a do-not-call number, none inside the 72 h lockout
//! after an abandoned call, and none over the per-24 h limit.

use chrono::{DateTime, Duration, NaiveTime, Offset, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use proptest::prelude::*;
use waihu_actors::compliance::{check, next_allowed, PastAttempt, Profile, Subject};

const ZONES: [Tz; 10] = [
    chrono_tz::America::New_York,
    chrono_tz::America::Chicago,
    chrono_tz::America::Denver,
    chrono_tz::America::Phoenix,
    chrono_tz::America::Los_Angeles,
    chrono_tz::Europe::London,
    chrono_tz::Australia::Sydney,
    chrono_tz::Australia::Lord_Howe, // a 30-minute DST shift
    chrono_tz::Asia::Shanghai,
    chrono_tz::Asia::Kolkata,
];

/// Days around DST changes in 2026 (US 8 Mar / 1 Nov, EU 29 Mar / 25 Oct, AU 5 Apr / 4 Oct).
const START_DAYS: [&str; 6] = [
    "2026-03-06T00:00:00Z",
    "2026-03-27T00:00:00Z",
    "2026-04-03T00:00:00Z",
    "2026-10-02T00:00:00Z",
    "2026-10-23T00:00:00Z",
    "2026-10-30T00:00:00Z",
];

#[derive(Debug, Clone)]
struct Contact {
    zones: Vec<Tz>,
    region: Option<&'static str>,
    dnc: bool,
    /// Gaps between dial attempts, minutes, and whether each call (if made) is abandoned.
    tries: Vec<(i64, bool)>,
}

fn contact() -> impl Strategy<Value = Contact> {
    (
        proptest::sample::subsequence(ZONES.to_vec(), 1..=3),
        prop_oneof![Just(None), Just(Some("US-FL")), Just(Some("US-TX"))],
        proptest::bool::weighted(0.15),
        proptest::collection::vec((5i64..600, proptest::bool::weighted(0.25)), 5..60),
    )
        .prop_map(|(zones, region, dnc, tries)| Contact { zones, region, dnc, tries })
}

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).expect("time").with_timezone(&Utc)
}

/// The local wall-clock time in `zone`, from its UTC offset at that instant.
fn local_minutes(zone: Tz, t: DateTime<Utc>) -> u32 {
    let offset = zone.offset_from_utc_datetime(&t.naive_utc()).fix().local_minus_utc();
    let local = t.naive_utc() + Duration::seconds(i64::from(offset));
    local.hour() * 60 + local.minute()
}

fn minutes(t: NaiveTime) -> u32 {
    t.hour() * 60 + t.minute()
}

/// Every dial in the log against the profile's numbers; Err names the first violation.
fn audit(p: &Profile, c: &Contact, dials: &[(DateTime<Utc>, bool)]) -> Result<(), String> {
    if c.dnc && !dials.is_empty() {
        return Err(format!("dialled a do-not-call number at {}", dials[0].0));
    }
    let region = c.region.and_then(|r| p.regions.iter().find(|x| x.region == r));
    let window = region.and_then(|r| r.window).unwrap_or(p.window);
    let limit = match (p.max_calls_per_24h, region.and_then(|r| r.max_calls_per_24h)) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    for (i, &(t, _)) in dials.iter().enumerate() {
        for &z in &c.zones {
            let m = local_minutes(z, t);
            if m < minutes(window.start) || m >= minutes(window.end) {
                return Err(format!("dial at {t} is {:02}:{:02} in {z}", m / 60, m % 60));
            }
        }
        if let Some(lock) = p.lockout_after_abandon {
            let lock = Duration::from_std(lock).expect("lockout");
            if let Some(&(a, _)) = dials[..i].iter().find(|&&(a, ab)| ab && t > a && t - a < lock) {
                return Err(format!("dial at {t} within the lockout of the call abandoned at {a}"));
            }
        }
        if let Some(limit) = limit {
            let n = dials[..=i].iter().filter(|&&(a, _)| t - a < Duration::hours(24)).count();
            if n as u32 > limit {
                return Err(format!("dial at {t} is the {n}th in 24 h (limit {limit})"));
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn no_dial_breaks_a_rule(
        contacts in proptest::collection::vec(contact(), 1..12),
        start in proptest::sample::select(START_DAYS.to_vec()),
        offset_min in 0i64..1440,
        uk in any::<bool>(),
    ) {
        let p = Profile::builtin(if uk { "uk_ofcom" } else { "us_tsr" }).expect("profile");
        let t0 = utc(start) + Duration::minutes(offset_min);
        let mut dialled = 0;
        for c in &contacts {
            let subject = Subject { zones: &c.zones, region: c.region, on_dnc: c.dnc };
            let mut history: Vec<PastAttempt> = Vec::new();
            let mut log = Vec::new();
            let mut t = t0;
            for &(gap, abandoned) in &c.tries {
                t += Duration::minutes(gap) + Duration::seconds(gap % 60);
                if check(&p, &subject, &history, t).is_ok() {
                    history.push(PastAttempt { at: t, abandoned });
                    log.push((t, abandoned));
                }
            }
            dialled += log.len();
            prop_assert!(audit(&p, c, &log).is_ok(), "{:?}: {:?}", c, audit(&p, c, &log));
        }
        // Not vacuous: across a case some contact is normally dialled.
        prop_assume!(dialled > 0);
    }

    #[test]
    fn next_allowed_is_allowed_and_nothing_earlier_is(
        c in contact(),
        start in proptest::sample::select(START_DAYS.to_vec()),
        offset_min in 0i64..1440,
        probe in 0.0f64..1.0,
    ) {
        let p = Profile::builtin("uk_ofcom").expect("profile");
        let subject = Subject { zones: &c.zones, region: c.region, on_dnc: c.dnc };
        let now = utc(start) + Duration::minutes(offset_min);
        let history = vec![PastAttempt { at: now - Duration::hours(30), abandoned: c.tries[0].1 }];
        match next_allowed(&p, &subject, &history, now, Duration::days(8)) {
            Some(t) => {
                prop_assert!(t >= now);
                prop_assert!(check(&p, &subject, &history, t).is_ok());
                prop_assert!(audit(&p, &c, &[(t, false)]).is_ok(), "{:?}", audit(&p, &c, &[(t, false)]));
                if history[0].abandoned {
                    prop_assert!(t - history[0].at >= Duration::hours(72), "{t} inside the lockout");
                }
                // A minute before it (if after now) was not allowed.
                let before = now + Duration::seconds((((t - now).num_seconds() as f64) * probe) as i64);
                if t - before >= Duration::minutes(1) {
                    prop_assert!(check(&p, &subject, &history, before).is_err(), "{before} allowed before {t}");
                }
            }
            None => prop_assert!(c.dnc || c.zones.len() > 1, "a single-zone number opens within 8 days"),
        }
    }
}
