//! Compliance profiles as data (TOML): the abandon cap and its window, calling hours, the
//! minimum ring, a redial lockout after an abandoned call, a per-24 h call limit, and
//! per-region overrides. `us_tsr` and `uk_ofcom` are built in; custom ones are files.

use chrono::NaiveTime;
use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("compliance profile: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("compliance profile {profile}: {field}: {reason}")]
    Invalid { profile: String, field: String, reason: String },
    #[error("no built-in compliance profile {0:?} (built in: us_tsr, uk_ofcom)")]
    Unknown(String),
}

/// Local calling hours, `start` inclusive, `end` exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: NaiveTime,
    pub end: NaiveTime,
}

impl Window {
    pub fn contains(&self, t: NaiveTime) -> bool {
        t >= self.start && t < self.end
    }
}

/// A region's stricter (or different) rules: by ISO 3166-2 code, e.g. `US-FL`.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionRules {
    pub region: String,
    pub window: Option<Window>,
    pub max_calls_per_24h: Option<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub name: String,
    pub abandon_cap: f64,
    pub abandon_window: Duration,
    pub window: Window,
    pub min_ring: Duration,
    /// No redial this long after an abandoned call (Ofcom: 72 h).
    pub lockout_after_abandon: Option<Duration>,
    pub max_calls_per_24h: Option<u32>,
    /// Count estimated AMD false positives as abandons.
    pub count_amd_false_positives: bool,
    pub regions: Vec<RegionRules>,
}

const US_TSR: &str = r#"
name = "us_tsr"
abandon_cap = 0.03
abandon_window_hours = 720
window = ["08:00", "21:00"]
min_ring_seconds = 15
count_amd_false_positives = true

[[region]]
region = "US-FL"
window = ["08:00", "20:00"]
max_calls_per_24h = 3
"#;

const UK_OFCOM: &str = r#"
name = "uk_ofcom"
abandon_cap = 0.03
abandon_window_hours = 24
window = ["08:00", "21:00"]
min_ring_seconds = 15
lockout_after_abandon_hours = 72
count_amd_false_positives = true
"#;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    name: String,
    abandon_cap: f64,
    abandon_window_hours: f64,
    window: [String; 2],
    #[serde(default)]
    min_ring_seconds: f64,
    lockout_after_abandon_hours: Option<f64>,
    max_calls_per_24h: Option<u32>,
    #[serde(default)]
    count_amd_false_positives: bool,
    #[serde(default, rename = "region")]
    regions: Vec<RawRegion>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegion {
    region: String,
    window: Option<[String; 2]>,
    max_calls_per_24h: Option<u32>,
}

impl Profile {
    /// A built-in profile by name.
    pub fn builtin(name: &str) -> Result<Profile, ProfileError> {
        match name {
            "us_tsr" => Profile::from_toml(US_TSR),
            "uk_ofcom" => Profile::from_toml(UK_OFCOM),
            other => Err(ProfileError::Unknown(other.to_string())),
        }
    }

    pub fn from_toml(text: &str) -> Result<Profile, ProfileError> {
        let raw: RawProfile = toml::from_str(text)?;
        let bad = |field: &str, reason: String| ProfileError::Invalid {
            profile: raw.name.clone(),
            field: field.to_string(),
            reason,
        };
        if !(raw.abandon_cap > 0.0 && raw.abandon_cap < 1.0) {
            return Err(bad("abandon_cap", format!("{} is not a fraction between 0 and 1", raw.abandon_cap)));
        }
        let hours = |field: &str, h: f64| {
            if h.is_finite() && h > 0.0 {
                Ok(Duration::from_secs_f64(h * 3600.0))
            } else {
                Err(bad(field, format!("{h} is not a positive number of hours")))
            }
        };
        let abandon_window = hours("abandon_window_hours", raw.abandon_window_hours)?;
        let lockout = raw.lockout_after_abandon_hours.map(|h| hours("lockout_after_abandon_hours", h)).transpose()?;
        if !(raw.min_ring_seconds.is_finite() && raw.min_ring_seconds >= 0.0) {
            return Err(bad("min_ring_seconds", format!("{} is not a number of seconds", raw.min_ring_seconds)));
        }
        let window = parse_window(&raw.window).map_err(|e| bad("window", e))?;
        let mut regions = Vec::new();
        for r in &raw.regions {
            let w =
                r.window.as_ref().map(parse_window).transpose().map_err(|e| bad(&format!("region {}", r.region), e))?;
            regions.push(RegionRules {
                region: r.region.to_uppercase(),
                window: w,
                max_calls_per_24h: r.max_calls_per_24h,
            });
        }
        Ok(Profile {
            name: raw.name.clone(),
            abandon_cap: raw.abandon_cap,
            abandon_window,
            window,
            min_ring: Duration::from_secs_f64(raw.min_ring_seconds),
            lockout_after_abandon: lockout,
            max_calls_per_24h: raw.max_calls_per_24h,
            count_amd_false_positives: raw.count_amd_false_positives,
            regions,
        })
    }

    /// The calling window and the 24 h limit that apply in `region` (if any).
    pub fn rules_for(&self, region: Option<&str>) -> (Window, Option<u32>) {
        let r = region.and_then(|code| self.regions.iter().find(|r| r.region.eq_ignore_ascii_case(code)));
        let window = r.and_then(|r| r.window).unwrap_or(self.window);
        let limit = match (self.max_calls_per_24h, r.and_then(|r| r.max_calls_per_24h)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        (window, limit)
    }
}

fn parse_window(w: &[String; 2]) -> Result<Window, String> {
    let t = |s: &str| NaiveTime::parse_from_str(s, "%H:%M").map_err(|_| format!("{s:?} is not a time of day (HH:MM)"));
    let (start, end) = (t(&w[0])?, t(&w[1])?);
    if start >= end {
        return Err(format!("{} to {} is empty (a window cannot wrap midnight)", w[0], w[1]));
    }
    Ok(Window { start, end })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_load_and_florida_is_stricter() {
        let us = Profile::builtin("us_tsr").expect("us_tsr");
        assert_eq!(us.abandon_window, Duration::from_secs(30 * 24 * 3600));
        let (w, limit) = us.rules_for(Some("us-fl"));
        assert_eq!((w.end, limit), (NaiveTime::from_hms_opt(20, 0, 0).expect("time"), Some(3)));
        let (w, limit) = us.rules_for(Some("US-TX"));
        assert_eq!((w.end, limit), (NaiveTime::from_hms_opt(21, 0, 0).expect("time"), None));
        let uk = Profile::builtin("uk_ofcom").expect("uk_ofcom");
        assert_eq!(uk.lockout_after_abandon, Some(Duration::from_secs(72 * 3600)));
        assert!(Profile::builtin("fr_bloctel").is_err());
    }

    #[test]
    fn a_bad_profile_says_which_field_and_why() {
        let e = Profile::from_toml(
            "name = \"x\"\nabandon_cap = 3\nabandon_window_hours = 24\nwindow = [\"08:00\", \"21:00\"]\n",
        )
        .expect_err("cap 3");
        assert!(e.to_string().contains("abandon_cap"), "{e}");
        let e = Profile::from_toml(
            "name = \"x\"\nabandon_cap = 0.03\nabandon_window_hours = 24\nwindow = [\"21:00\", \"08:00\"]\n",
        )
        .expect_err("wraps");
        assert!(e.to_string().contains("window"), "{e}");
        let e = Profile::from_toml(
            "name = \"x\"\nabandon_cap = 0.03\nabandon_window_hours = 24\nwindow = [\"8am\", \"21:00\"]\n",
        )
        .expect_err("8am");
        assert!(e.to_string().contains("HH:MM"), "{e}");
        let e = Profile::from_toml(
            "name = \"x\"\nabandon_cap = 0.03\nabandon_window_hours = 24\nwindow = [\"08:00\", \"21:00\"]\nfoo = 1\n",
        )
        .expect_err("unknown field");
        assert!(e.to_string().contains("foo"), "{e}");
    }
}
