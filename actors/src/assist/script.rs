//! A campaign's call script: text with `{field}` placeholders, filled in for each call
//! from the contact (`{name}`, `{phone_last4}`, any custom column of the list), the agent
//! (`{agent}`) and the campaign (`{campaign}`). `{{` and `}}` are literal braces. A
//! placeholder the contact has no value for shows as `[field?]` and is reported, so the
//! agent sees the gap instead of a silently empty sentence.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScriptError {
    #[error("script line {line}: a '{{' is not closed (write '{{{{' for a literal brace)")]
    Unclosed { line: usize },
    #[error("script line {line}: a '}}' has no '{{' (write '}}}}' for a literal brace)")]
    Stray { line: usize },
    #[error("script line {line}: an empty or odd placeholder {text:?} (letters, digits, _ and - only)")]
    BadName { line: usize, text: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Field(String),
}

/// A checked script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    parts: Vec<Part>,
}

/// A script filled in for one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filled {
    pub text: String,
    /// Placeholders the contact had no value for.
    pub missing: Vec<String>,
}

impl Script {
    pub fn parse(text: &str) -> Result<Script, ScriptError> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut chars = text.chars().peekable();
        let mut line = 1;
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    lit.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    lit.push('}');
                }
                '}' => return Err(ScriptError::Stray { line }),
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some('\n') | None => return Err(ScriptError::Unclosed { line }),
                            Some(ch) => name.push(ch),
                        }
                    }
                    let name = name.trim().to_string();
                    let ok = !name.is_empty() && name.chars().all(|ch| ch.is_alphanumeric() || ch == '_' || ch == '-');
                    if !ok {
                        return Err(ScriptError::BadName { line, text: name });
                    }
                    if !lit.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut lit)));
                    }
                    parts.push(Part::Field(name));
                }
                c => {
                    if c == '\n' {
                        line += 1;
                    }
                    lit.push(c);
                }
            }
        }
        if !lit.is_empty() {
            parts.push(Part::Text(lit));
        }
        Ok(Script { parts })
    }

    /// The placeholders the script uses, each once, in order.
    pub fn fields(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for p in &self.parts {
            if let Part::Field(f) = p {
                if !out.contains(&f.as_str()) {
                    out.push(f);
                }
            }
        }
        out
    }

    /// Fills the script from `values` (an empty value counts as missing).
    pub fn fill(&self, values: &BTreeMap<String, String>) -> Filled {
        let mut text = String::new();
        let mut missing = Vec::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => text.push_str(t),
                Part::Field(f) => match values.get(f).filter(|v| !v.trim().is_empty()) {
                    Some(v) => text.push_str(v),
                    None => {
                        text.push_str(&format!("[{f}?]"));
                        if !missing.contains(f) {
                            missing.push(f.clone());
                        }
                    }
                },
            }
        }
        Filled { text, missing }
    }
}

/// The values a script can use for one call: the contact's custom fields, then `name`,
/// `phone_last4`, `agent` and `campaign` (these win over a custom column of that name).
pub fn values(
    name: Option<&str>,
    phone: &str,
    fields: &BTreeMap<String, String>,
    agent: &str,
    campaign: &str,
) -> BTreeMap<String, String> {
    let mut v = fields.clone();
    if let Some(n) = name {
        v.insert("name".into(), n.to_string());
    }
    let digits: Vec<char> = phone.chars().filter(char::is_ascii_digit).collect();
    v.insert("phone_last4".into(), digits[digits.len().saturating_sub(4)..].iter().collect());
    v.insert("agent".into(), agent.to_string());
    v.insert("campaign".into(), campaign.to_string());
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vals() -> BTreeMap<String, String> {
        let fields =
            BTreeMap::from([("plan".to_string(), "宽带 500M".to_string()), ("due".to_string(), String::new())]);
        values(Some("王芳"), "+86 138 0013 8000", &fields, "李明", "renewals")
    }

    #[test]
    fn fields_are_filled_in_chinese_and_english() {
        let s = Script::parse(
            "您好，{name}女士，我是{agent}。您的{plan}套餐即将到期。\nHello {name}, ending {phone_last4}.",
        )
        .expect("valid");
        let f = s.fill(&vals());
        assert_eq!(f.text, "您好，王芳女士，我是李明。您的宽带 500M套餐即将到期。\nHello 王芳, ending 8000.");
        assert!(f.missing.is_empty());
        assert_eq!(s.fields(), ["name", "agent", "plan", "phone_last4"]);
    }

    #[test]
    fn a_missing_or_empty_field_shows_and_is_reported() {
        let f = Script::parse("Due {due}; rep {rep}; again {rep}.").expect("valid").fill(&vals());
        assert_eq!(f.text, "Due [due?]; rep [rep?]; again [rep?].");
        assert_eq!(f.missing, ["due", "rep"]);
    }

    #[test]
    fn doubled_braces_are_literal_and_bad_ones_name_their_line() {
        let f = Script::parse("{{not a field}} {name}").expect("valid").fill(&vals());
        assert_eq!(f.text, "{not a field} 王芳");
        assert_eq!(Script::parse("ok\nHi {name").err(), Some(ScriptError::Unclosed { line: 2 }));
        assert_eq!(Script::parse("a\nb\n}").err(), Some(ScriptError::Stray { line: 3 }));
        assert_eq!(Script::parse("{ }").err(), Some(ScriptError::BadName { line: 1, text: String::new() }));
        assert_eq!(Script::parse("{a b}").err(), Some(ScriptError::BadName { line: 1, text: "a b".into() }));
    }
}
