//! A campaign's configuration: TOML, checked whole before anything is stored, with an
//! error that names the field.
//!
//! ```toml
//! mode = "broadcast"              # the dial mode (only broadcast runs before agents exist)
//! lines = 50                      # calls up at once, at most
//! compliance = "us_tsr"           # a built-in profile, or a path to a profile TOML
//! default_timezone = "America/New_York"  # for contacts whose row gave none
//! message = "notice.wav"          # broadcast: played to a person, or after a machine's beep
//! ring_timeout_seconds = 25
//! max_duration_seconds = 120
//! keepalive = "auto"              # while nothing plays: auto (CN, else silence), silence, off
//! amd_false_positive_rate = 0.02  # people AMD called machines, until 20 review samples are judged
//! amd_review_fraction = 0.05      # a share of the machine calls kept (first seconds) for review
//! amd_review_seconds = 6
//! wrap_up_seconds = 10            # campaigns with agents: wrap-up after a call, at most
//! script = "script.txt"          # the agents' call script: {name}, {agent}, any list column
//! routing = "skills"              # longest-idle (default), least-talk, fewest-calls, skills, ring-all
//! skill = "mandarin"              # skills: agents are ranked by their level in it
//! min_skill_level = 5             # and a live person waits for one at least this good
//! [[disposition]]                 # wrap-up codes (none listed: agent::wrapup::default_codes)
//! code = "sale"
//! label = "Sale / agreed"
//! final = true                    # the contact is done (false: retry_minutes or callback)
//! callback = false                # the agent must give a callback time
//! dnc = false                     # the number goes on the `agent` do-not-call list
//! [[trunk]]                       # tried in this order; a congestion answer moves on
//! name = "carrier-a"
//! host = "127.0.0.1"
//! port = 5060
//! max_cps = 50
//! max_channels = 200
//! [retry]                         # see RetryPolicy
//! lifetime_max = 6
//! ```

use super::retry::RetryPolicy;
use crate::agent::wrapup::{check_codes, default_codes, WrapCode};
use crate::assist::script::Script;
use crate::call::KeepaliveMode;
use crate::compliance::Profile;
use crate::router::Strategy;
use chrono_tz::Tz;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use waihu_sip::trunk::TrunkConfig;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("campaign config: {0}")]
    Toml(String),
    #[error("campaign config: {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("campaign config: {field}: cannot read {path}: {reason}")]
    File { field: &'static str, path: PathBuf, reason: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModeName {
    Preview,
    Progressive,
    Ratio,
    Predictive,
    Broadcast,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    mode: ModeName,
    #[serde(default = "default_lines")]
    lines: u32,
    #[serde(default = "default_compliance")]
    compliance: String,
    default_timezone: Option<String>,
    message: Option<PathBuf>,
    safe_harbour: Option<PathBuf>,
    #[serde(default = "default_ring")]
    ring_timeout_seconds: u64,
    #[serde(default = "default_max_duration")]
    max_duration_seconds: u64,
    #[serde(default = "default_true")]
    amd: bool,
    /// What answered calls send while they play nothing: auto, silence, off.
    #[serde(default = "default_keepalive")]
    keepalive: String,
    /// The share of AMD's machine verdicts that were people, as the operators' review of
    /// the sampled machine calls found it; the abandon rate counts them (where the
    /// profile says so).
    #[serde(default)]
    amd_false_positive_rate: f64,
    #[serde(default)]
    amd_review_fraction: f64,
    #[serde(default = "default_review_seconds")]
    amd_review_seconds: u64,
    /// Campaigns with agents: the longest wrap-up after a call, then the agent is
    /// available again.
    #[serde(default = "default_wrap_up")]
    wrap_up_seconds: u64,
    #[serde(default, rename = "trunk")]
    trunks: Vec<TrunkConfig>,
    #[serde(default, rename = "disposition")]
    dispositions: Vec<WrapCode>,
    script: Option<PathBuf>,
    routing: Option<Strategy>,
    skill: Option<String>,
    #[serde(default)]
    min_skill_level: u8,
    #[serde(default)]
    retry: Option<RetryPolicy>,
}

fn default_lines() -> u32 {
    10
}
fn default_compliance() -> String {
    "us_tsr".into()
}
fn default_ring() -> u64 {
    25
}
fn default_max_duration() -> u64 {
    120
}
fn default_wrap_up() -> u64 {
    10
}
fn default_review_seconds() -> u64 {
    6
}
fn default_true() -> bool {
    true
}
fn default_keepalive() -> String {
    "auto".into()
}

/// A checked campaign configuration.
#[derive(Debug, Clone)]
pub struct CampaignConfig {
    pub mode: ModeName,
    pub lines: u32,
    pub profile: Profile,
    pub default_timezone: Option<Tz>,
    /// The broadcast message, 8 kHz mono.
    pub message: Option<Arc<[i16]>>,
    pub safe_harbour: Option<Arc<[i16]>>,
    pub ring_timeout: std::time::Duration,
    pub max_duration: std::time::Duration,
    pub amd: bool,
    pub keepalive: KeepaliveMode,
    pub amd_false_positive_rate: f64,
    /// The share of attempts whose first `amd_review_seconds` are recorded; kept for an
    /// operator's review when AMD says machine.
    pub amd_review_fraction: f64,
    pub amd_review_seconds: u64,
    pub wrap_up: std::time::Duration,
    pub trunks: Vec<Arc<TrunkConfig>>,
    pub retry: RetryPolicy,
    /// Wrap-up codes, checked.
    pub dispositions: Arc<[WrapCode]>,
    /// The agents' call script, checked.
    pub script: Option<Arc<Script>>,
    /// How the campaign's live people pick among its available agents.
    pub routing: Strategy,
    /// Skills routing: the skill agents are ranked by, and the least level a call takes.
    pub skill: Option<String>,
    pub min_skill_level: u8,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { field, reason: reason.into() }
}

/// Reads a WAV (any rate, mono or stereo) as 8 kHz mono.
fn load_audio(field: &'static str, path: &Path) -> Result<Arc<[i16]>, ConfigError> {
    let err = |reason: String| ConfigError::File { field, path: path.to_path_buf(), reason };
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let pcm = waihu_engine::offline::wav_to_analysis_pcm(&bytes).map_err(|e| err(e.to_string()))?;
    if pcm.is_empty() {
        return Err(err("the WAV holds no audio".into()));
    }
    Ok(pcm.into())
}

impl CampaignConfig {
    /// Parses and checks `text`; relative paths (message, profile) are taken from `base`.
    pub fn from_toml(text: &str, base: &Path) -> Result<CampaignConfig, ConfigError> {
        let raw: Raw = toml::from_str(text).map_err(|e| ConfigError::Toml(e.to_string()))?;
        let path = |p: &Path| if p.is_absolute() { p.to_path_buf() } else { base.join(p) };
        let profile = match Profile::builtin(&raw.compliance) {
            Ok(p) => p,
            Err(_) if raw.compliance.ends_with(".toml") => {
                let p = path(Path::new(&raw.compliance));
                let text = std::fs::read_to_string(&p).map_err(|e| ConfigError::File {
                    field: "compliance",
                    path: p.clone(),
                    reason: e.to_string(),
                })?;
                Profile::from_toml(&text).map_err(|e| invalid("compliance", e.to_string()))?
            }
            Err(e) => return Err(invalid("compliance", format!("{e} (a built-in name, or a path ending .toml)"))),
        };
        let default_timezone = raw
            .default_timezone
            .as_deref()
            .map(|z| z.parse::<Tz>().map_err(|_| invalid("default_timezone", format!("unknown time zone {z:?}"))))
            .transpose()?;
        if raw.lines == 0 {
            return Err(invalid("lines", "must be at least 1"));
        }
        if !(0.0..=1.0).contains(&raw.amd_false_positive_rate) {
            return Err(invalid("amd_false_positive_rate", "must be between 0 and 1"));
        }
        if !(0.0..=1.0).contains(&raw.amd_review_fraction) {
            return Err(invalid("amd_review_fraction", "must be between 0 and 1"));
        }
        if !(1..=30).contains(&raw.amd_review_seconds) {
            return Err(invalid("amd_review_seconds", "must be 1 to 30"));
        }
        if raw.trunks.is_empty() {
            return Err(invalid("trunk", "at least one [[trunk]] is needed"));
        }
        for t in &raw.trunks {
            t.validate().map_err(|e| invalid("trunk", e.to_string()))?;
        }
        let message = raw.message.as_deref().map(|p| load_audio("message", &path(p))).transpose()?;
        let safe_harbour = raw.safe_harbour.as_deref().map(|p| load_audio("safe_harbour", &path(p))).transpose()?;
        match raw.mode {
            ModeName::Broadcast if message.is_none() => {
                return Err(invalid("message", "a broadcast campaign needs a message WAV"))
            }
            ModeName::Broadcast => {}
            _ if safe_harbour.is_none() => {
                return Err(invalid("safe_harbour", "a campaign with agents needs a safe-harbour WAV"))
            }
            _ => {}
        }
        if raw.wrap_up_seconds > 3600 {
            return Err(invalid("wrap_up_seconds", "must be at most 3600"));
        }
        if raw.ring_timeout_seconds < 5 || raw.ring_timeout_seconds > 120 {
            return Err(invalid("ring_timeout_seconds", "must be 5 to 120"));
        }
        if std::time::Duration::from_secs(raw.ring_timeout_seconds) < profile.min_ring {
            return Err(invalid(
                "ring_timeout_seconds",
                format!(
                    "{} s is under the {} profile's minimum ring of {:?}",
                    raw.ring_timeout_seconds, profile.name, profile.min_ring
                ),
            ));
        }
        let script = match raw.script.as_deref() {
            Some(p) => {
                let p = path(p);
                let text = std::fs::read_to_string(&p).map_err(|e| ConfigError::File {
                    field: "script",
                    path: p.clone(),
                    reason: e.to_string(),
                })?;
                Some(Arc::new(Script::parse(&text).map_err(|e| invalid("script", e.to_string()))?))
            }
            None => None,
        };
        let routing = raw.routing.unwrap_or(if raw.skill.is_some() { Strategy::Skills } else { Strategy::LongestIdle });
        if routing == Strategy::Skills && raw.skill.is_none() {
            return Err(invalid("skill", "skills routing needs the skill agents are ranked by"));
        }
        if raw.min_skill_level > 9 {
            return Err(invalid("min_skill_level", "levels are 0 to 9"));
        }
        let dispositions = if raw.dispositions.is_empty() { default_codes() } else { raw.dispositions };
        check_codes(&dispositions).map_err(|e| invalid("disposition", e))?;
        Ok(CampaignConfig {
            dispositions: dispositions.into(),
            script,
            routing,
            skill: raw.skill,
            min_skill_level: raw.min_skill_level,
            mode: raw.mode,
            lines: raw.lines,
            profile,
            default_timezone,
            message,
            safe_harbour,
            ring_timeout: std::time::Duration::from_secs(raw.ring_timeout_seconds),
            max_duration: std::time::Duration::from_secs(raw.max_duration_seconds.max(1)),
            amd: raw.amd,
            keepalive: raw.keepalive.parse().map_err(|e: String| invalid("keepalive", e))?,
            amd_false_positive_rate: raw.amd_false_positive_rate,
            amd_review_fraction: raw.amd_review_fraction,
            amd_review_seconds: raw.amd_review_seconds,
            wrap_up: std::time::Duration::from_secs(raw.wrap_up_seconds),
            trunks: raw.trunks.into_iter().map(Arc::new).collect(),
            retry: raw.retry.unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRUNK: &str = "[[trunk]]\nhost = \"127.0.0.1\"\n";

    fn dir_with_wav() -> tempfile::TempDir {
        let d = tempfile::tempdir().expect("tmp");
        let pcm: Vec<i16> = (0..8000).map(|i| ((i % 40) * 100) as i16).collect();
        std::fs::write(d.path().join("m.wav"), waihu_engine::wav::write_pcm16(8000, &pcm)).expect("wav");
        d
    }

    fn parse(d: &tempfile::TempDir, text: &str) -> Result<CampaignConfig, ConfigError> {
        CampaignConfig::from_toml(text, d.path())
    }

    #[test]
    fn a_good_broadcast_config_loads_its_message_at_8_khz() {
        let d = dir_with_wav();
        let c = parse(&d, &format!("mode = \"broadcast\"\nmessage = \"m.wav\"\n{TRUNK}")).expect("good");
        assert_eq!(c.message.as_ref().map(|m| m.len()), Some(8000));
        assert_eq!((c.lines, c.profile.name.as_str(), c.trunks.len()), (10, "us_tsr", 1));
        assert_eq!(c.dispositions.len(), default_codes().len());
        let own = format!("mode = \"broadcast\"\nmessage = \"m.wav\"\n{TRUNK}[[disposition]]\ncode = \"yes\"\n");
        let c = parse(&d, &own).expect("good");
        assert_eq!(c.routing, Strategy::LongestIdle);
        let sk =
            format!("mode = \"broadcast\"\nmessage = \"m.wav\"\nskill = \"mandarin\"\nmin_skill_level = 4\n{TRUNK}");
        let k = parse(&d, &sk).expect("good");
        assert_eq!((k.routing, k.skill.as_deref(), k.min_skill_level), (Strategy::Skills, Some("mandarin"), 4));
        assert_eq!(c.dispositions.iter().map(|c| (c.code.as_str(), c.closes)).collect::<Vec<_>>(), [("yes", true)]);
    }

    #[test]
    fn bad_configs_name_what_is_wrong() {
        let d = dir_with_wav();
        let err = |text: String| parse(&d, &text).expect_err(&text).to_string();
        let e = err("mode = \"broadcast\"\nmessage = ".into());
        assert!(e.starts_with("campaign config: ") && e.contains("line 2"), "{e}");
        let e = err(format!("mode = \"broadcast\"\nmessage = \"m.wav\"\nlimes = 5\n{TRUNK}"));
        assert!(e.contains("unknown field `limes`"), "{e}");
        let e = err(format!("mode = \"sometimes\"\n{TRUNK}"));
        assert!(e.contains("unknown variant `sometimes`"), "{e}");
        let e = err(format!("mode = \"broadcast\"\n{TRUNK}"));
        assert_eq!(e, "campaign config: message: a broadcast campaign needs a message WAV");
        let e = err(format!("mode = \"broadcast\"\nmessage = \"gone.wav\"\n{TRUNK}"));
        assert!(e.starts_with("campaign config: message: cannot read ") && e.contains("gone.wav"), "{e}");
        let e = err(format!("mode = \"predictive\"\n{TRUNK}"));
        assert_eq!(e, "campaign config: safe_harbour: a campaign with agents needs a safe-harbour WAV");
        let e = err(format!("mode = \"predictive\"\nsafe_harbour = \"missing.wav\"\n{TRUNK}"));
        assert!(e.starts_with("campaign config: safe_harbour: cannot read ") && e.contains("missing.wav"), "{e}");
        std::fs::write(d.path().join("noise.wav"), b"RIFF....not a wave").expect("write");
        let e = err(format!("mode = \"broadcast\"\nmessage = \"noise.wav\"\n{TRUNK}"));
        assert!(e.starts_with("campaign config: message: cannot read ") && e.contains("noise.wav"), "{e}");
        let e = err(format!("mode = \"broadcast\"\nmessage = \"m.wav\"\ndefault_timezone = \"Mars/Olympus\"\n{TRUNK}"));
        assert_eq!(e, "campaign config: default_timezone: unknown time zone \"Mars/Olympus\"");
        let e = err(format!("mode = \"broadcast\"\nmessage = \"m.wav\"\nring_timeout_seconds = 10\n{TRUNK}"));
        assert!(e.contains("under the us_tsr profile's minimum ring"), "{e}");
        let e = err("mode = \"broadcast\"\nmessage = \"m.wav\"\n".into());
        assert!(e.contains("at least one [[trunk]]"), "{e}");
        let e = err(format!("mode = \"broadcast\"\nmessage = \"m.wav\"\ncompliance = \"fcc\"\n{TRUNK}"));
        assert!(e.starts_with("campaign config: compliance: "), "{e}");
        let e = err(format!("mode = \"broadcast\"\nmessage = \"m.wav\"\namd_false_positive_rate = 1.5\n{TRUNK}"));
        assert_eq!(e, "campaign config: amd_false_positive_rate: must be between 0 and 1");
        let e = err(format!("mode = \"broadcast\"\nmessage = \"m.wav\"\nlines = 0\n{TRUNK}"));
        assert_eq!(e, "campaign config: lines: must be at least 1");
        let e = err(format!(
            "mode = \"broadcast\"\nmessage = \"m.wav\"\n{TRUNK}[[disposition]]\ncode = \"x\"\nfinal = false\n"
        ));
        assert_eq!(
            e,
            "campaign config: disposition: code \"x\": a code that is not final needs retry_minutes or callback"
        );
    }
}
