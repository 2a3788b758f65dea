//! Wrap-up, pure: a campaign's disposition codes, what an agent submits after a call, the
//! checks it must pass, and what it does to the contact (closes it under the code's label,
//! reopens it later, books a callback, optionally with the same agent, or adds the number
//! to the do-not-call list). Time comes in as `now`.

use super::machine::AgentId;
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;

/// One of a campaign's disposition codes (`[[disposition]]` in its config).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WrapCode {
    /// Stable, short, what reports group by: `sale`, `not-interested`, ...
    pub code: String,
    /// What the agent's screen shows.
    #[serde(default)]
    pub label: String,
    /// The contact is done, under this code (the default). Otherwise it is dialled
    /// again after `retry_minutes`, or when its callback is due.
    #[serde(default = "yes", rename = "final")]
    pub closes: bool,
    /// The agent must give a callback time.
    #[serde(default)]
    pub callback: bool,
    /// The person asked not to be called again: the number goes on the `agent` do-not-call
    /// list.
    #[serde(default)]
    pub dnc: bool,
    /// Not final: dialled again this much later.
    #[serde(default)]
    pub retry_minutes: Option<u32>,
}

fn yes() -> bool {
    true
}

impl WrapCode {
    fn new(code: &str, label: &str) -> WrapCode {
        WrapCode {
            code: code.into(),
            label: label.into(),
            closes: true,
            callback: false,
            dnc: false,
            retry_minutes: None,
        }
    }
}

/// The codes a campaign gets when its config names none.
pub fn default_codes() -> Vec<WrapCode> {
    vec![
        WrapCode::new("sale", "Sale / agreed"),
        WrapCode::new("not-interested", "Not interested"),
        WrapCode { closes: false, callback: true, ..WrapCode::new("callback", "Call back") },
        WrapCode { closes: false, retry_minutes: Some(120), ..WrapCode::new("wrong-person", "Not the right person") },
        WrapCode { dnc: true, ..WrapCode::new("do-not-call", "Asked not to be called") },
        WrapCode::new("other", "Other"),
    ]
}

/// Checks a campaign's code list: codes non-empty, unique, of letters, digits, `-`, `_`.
pub fn check_codes(codes: &[WrapCode]) -> Result<(), String> {
    for (i, c) in codes.iter().enumerate() {
        if c.code.is_empty() || !c.code.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_') {
            return Err(format!("code {:?}: use letters, digits, - and _", c.code));
        }
        if codes[..i].iter().any(|o| o.code == c.code) {
            return Err(format!("code {:?} is listed twice", c.code));
        }
        if c.callback && c.closes {
            return Err(format!("code {:?}: a callback code cannot also be final", c.code));
        }
        if !c.closes && !c.callback && c.retry_minutes.is_none() {
            return Err(format!("code {:?}: a code that is not final needs retry_minutes or callback", c.code));
        }
    }
    if codes.is_empty() {
        return Err("at least one code is needed".into());
    }
    Ok(())
}

/// What an agent submits after (or during) a call.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WrapUp {
    pub code: String,
    pub notes: String,
    pub follow_up: Option<String>,
    pub callback: Option<CallbackAsk>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackAsk {
    pub at: DateTime<Utc>,
    /// The same agent takes the callback (if they are available then).
    pub same_agent: bool,
}

/// The longest notes and follow-up kept, in characters.
pub const MAX_NOTES: usize = 4000;
/// How far ahead a callback may be booked.
pub const MAX_CALLBACK_DAYS: i64 = 90;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WrapError {
    #[error("unknown disposition code {code:?} (this campaign has: {known})")]
    UnknownCode { code: String, known: String },
    #[error("disposition {0:?} needs a callback time")]
    CallbackNeeded(String),
    #[error("the callback time is in the past")]
    CallbackInPast,
    #[error("the callback is more than {MAX_CALLBACK_DAYS} days ahead")]
    CallbackTooFar,
    #[error("notes and follow-up are limited to {MAX_NOTES} characters")]
    TooLong,
    #[error("the agent has no call to wrap up")]
    NoCall,
}

/// What a checked wrap-up does to the contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effect {
    pub code: String,
    /// Done with the contact under this label.
    pub close: bool,
    /// Dial it again then (a callback, or a retry).
    pub again_at: Option<DateTime<Utc>>,
    /// A callback for this agent.
    pub for_agent: Option<AgentId>,
    pub is_callback: bool,
    pub dnc: bool,
}

/// Checks `w` against the campaign's `codes`; `agent` is who submits it.
pub fn check(codes: &[WrapCode], w: &WrapUp, agent: AgentId, now: DateTime<Utc>) -> Result<Effect, WrapError> {
    let Some(c) = codes.iter().find(|c| c.code == w.code) else {
        let known = codes.iter().map(|c| c.code.as_str()).collect::<Vec<_>>().join(", ");
        return Err(WrapError::UnknownCode { code: w.code.clone(), known });
    };
    if w.notes.chars().count() > MAX_NOTES || w.follow_up.as_ref().is_some_and(|f| f.chars().count() > MAX_NOTES) {
        return Err(WrapError::TooLong);
    }
    let callback = match (&w.callback, c.callback) {
        (None, true) => return Err(WrapError::CallbackNeeded(c.code.clone())),
        (Some(cb), _) if cb.at <= now => return Err(WrapError::CallbackInPast),
        (Some(cb), _) if cb.at > now + Duration::days(MAX_CALLBACK_DAYS) => return Err(WrapError::CallbackTooFar),
        (cb, _) => cb.as_ref(),
    };
    let retry = c.retry_minutes.filter(|_| !c.closes).map(|m| now + Duration::minutes(m as i64));
    Ok(Effect {
        code: c.code.clone(),
        // Any code may carry a callback the person asked for: it reopens a final contact.
        close: c.closes && callback.is_none(),
        again_at: callback.map(|cb| cb.at).or(retry),
        for_agent: callback.filter(|cb| cb.same_agent).map(|_| agent),
        is_callback: callback.is_some(),
        dnc: c.dnc,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 4, 9, 0, 0).single().expect("valid")
    }

    fn wrap(code: &str) -> WrapUp {
        WrapUp { code: code.into(), ..WrapUp::default() }
    }

    #[test]
    fn the_default_codes_are_valid() {
        assert_eq!(check_codes(&default_codes()), Ok(()));
    }

    #[test]
    fn a_final_code_closes_the_contact() {
        let e = check(&default_codes(), &wrap("sale"), 1, now()).expect("valid");
        assert_eq!((e.close, e.again_at, e.for_agent, e.dnc), (true, None, None, false));
    }

    #[test]
    fn a_callback_code_needs_a_time_ahead_and_may_keep_the_agent() {
        let codes = default_codes();
        assert_eq!(check(&codes, &wrap("callback"), 1, now()), Err(WrapError::CallbackNeeded("callback".into())));
        let at = now() + Duration::hours(20);
        let w = WrapUp { callback: Some(CallbackAsk { at, same_agent: true }), ..wrap("callback") };
        let e = check(&codes, &w, 7, now()).expect("valid");
        assert_eq!((e.close, e.again_at, e.for_agent, e.is_callback), (false, Some(at), Some(7), true));
        let past = WrapUp { callback: Some(CallbackAsk { at: now(), same_agent: false }), ..wrap("callback") };
        assert_eq!(check(&codes, &past, 1, now()), Err(WrapError::CallbackInPast));
        let far = now() + Duration::days(MAX_CALLBACK_DAYS + 1);
        let far = WrapUp { callback: Some(CallbackAsk { at: far, same_agent: false }), ..wrap("callback") };
        assert_eq!(check(&codes, &far, 1, now()), Err(WrapError::CallbackTooFar));
    }

    #[test]
    fn a_callback_on_a_final_code_reopens_the_contact_for_anyone() {
        let at = now() + Duration::hours(2);
        let w = WrapUp { callback: Some(CallbackAsk { at, same_agent: false }), ..wrap("other") };
        let e = check(&default_codes(), &w, 1, now()).expect("valid");
        assert_eq!((e.close, e.again_at, e.for_agent), (false, Some(at), None));
    }

    #[test]
    fn a_retry_code_dials_again_later_and_dnc_is_flagged() {
        let e = check(&default_codes(), &wrap("wrong-person"), 1, now()).expect("valid");
        assert_eq!((e.close, e.again_at), (false, Some(now() + Duration::minutes(120))));
        let e = check(&default_codes(), &wrap("do-not-call"), 1, now()).expect("valid");
        assert!(e.close && e.dnc);
    }

    #[test]
    fn unknown_codes_and_long_notes_are_refused_with_what_is_allowed() {
        let e = check(&default_codes(), &wrap("maybe"), 1, now()).expect_err("unknown");
        assert!(e.to_string().contains("sale, not-interested, callback"), "{e}");
        let w = WrapUp { notes: "长".repeat(MAX_NOTES + 1), ..wrap("sale") };
        assert_eq!(check(&default_codes(), &w, 1, now()), Err(WrapError::TooLong));
        let w = WrapUp { notes: "长".repeat(MAX_NOTES), ..wrap("sale") };
        assert!(check(&default_codes(), &w, 1, now()).is_ok(), "the limit counts characters, not bytes");
    }

    #[test]
    fn bad_code_lists_are_refused() {
        let mut dup = default_codes();
        dup.push(WrapCode::new("sale", "again"));
        assert!(check_codes(&dup).expect_err("refused").contains("twice"));
        assert!(check_codes(&[WrapCode::new("a b", "")]).expect_err("refused").contains("letters"));
        let dangling = WrapCode { closes: false, ..WrapCode::new("later", "") };
        assert!(check_codes(&[dangling]).expect_err("refused").contains("retry_minutes"));
        assert!(check_codes(&[]).is_err());
    }
}
