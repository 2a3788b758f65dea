//! Who or what answered a call, as answering-machine detection decides it.

use serde::{Deserialize, Serialize};
use std::fmt;

/// AMD's answer to "who picked up?". The media plane's verdict carries extra detail (a
/// machine's beep time); this is the part the control plane, records and reports use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AnsweredBy {
    Human,
    Machine,
    Fax,
    Silence,
    Sit,
    NotSure,
}

impl AnsweredBy {
    /// Lower-case label, as in prediction CSVs and call records.
    pub const fn label(self) -> &'static str {
        match self {
            AnsweredBy::Human => "human",
            AnsweredBy::Machine => "machine",
            AnsweredBy::Fax => "fax",
            AnsweredBy::Silence => "silence",
            AnsweredBy::Sit => "sit",
            AnsweredBy::NotSure => "notsure",
        }
    }
}

impl fmt::Display for AnsweredBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_and_display_use_the_same_label() {
        for a in [
            AnsweredBy::Human,
            AnsweredBy::Machine,
            AnsweredBy::Fax,
            AnsweredBy::Silence,
            AnsweredBy::Sit,
            AnsweredBy::NotSure,
        ] {
            let json = serde_json::to_string(&a).expect("serialize");
            assert_eq!(json, format!("\"{a}\""));
            assert_eq!(serde_json::from_str::<AnsweredBy>(&json).expect("parse"), a);
        }
    }
}
