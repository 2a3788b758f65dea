//! Scoring AMD against a labelled corpus (`labels.csv` from gen_amd_corpus.py, or the
//! project's `samples/labels.csv`). Shared by `waihu demo` and the corpus test so both
//! judge the detector the same way as `score_amd.py`.

use std::collections::HashMap;

/// Ground truth for one file (times in ms from answer).
#[derive(Debug, Clone, PartialEq)]
pub struct Label {
    pub file: String,
    pub label: String,
    pub notes: String,
    pub greeting_end_ms: Option<f64>,
    pub beep_end_ms: Option<f64>,
}

/// One prediction.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    pub file: String,
    pub label: String,
    pub decision_ms: f64,
    pub end_ms: Option<f64>,
}

/// Splits one CSV line (RFC 4180 quoting, no embedded newlines).
pub fn split_csv_line(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LabelsError {
    #[error("labels.csv has no header")]
    Empty,
    #[error("labels.csv lacks column `{0}`")]
    MissingColumn(&'static str),
}

/// Parses a labels.csv (needs `file` and `label`; uses `notes`, `greeting_end_s`,
/// `beep_end_s` when present).
pub fn parse_labels(text: &str) -> Result<Vec<Label>, LabelsError> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header = split_csv_line(lines.next().ok_or(LabelsError::Empty)?);
    let col = |name: &str| header.iter().position(|h| h.trim() == name);
    let file = col("file").ok_or(LabelsError::MissingColumn("file"))?;
    let label = col("label").ok_or(LabelsError::MissingColumn("label"))?;
    let (notes, ge, be) = (col("notes"), col("greeting_end_s"), col("beep_end_s"));
    let secs = |row: &[String], i: Option<usize>| {
        i.and_then(|i| row.get(i)).and_then(|v| v.trim().parse::<f64>().ok()).map(|s| s * 1000.0)
    };
    Ok(lines
        .map(split_csv_line)
        .filter(|r| r.len() > label)
        .map(|r| Label {
            file: r[file].trim().to_string(),
            label: r[label].trim().to_lowercase(),
            notes: notes.and_then(|i| r.get(i)).cloned().unwrap_or_default(),
            greeting_end_ms: secs(&r, ge),
            beep_end_ms: secs(&r, be),
        })
        .collect())
}

/// The figures the AMD issue sets floors on.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Score {
    pub files: usize,
    pub correct: usize,
    pub accuracy: f64,
    pub humans: usize,
    pub human_as_machine: usize,
    pub machines: usize,
    pub machine_as_human: usize,
    /// Median of (decision - end of first utterance) over true humans, ms.
    pub human_median_after_greeting_ms: Option<f64>,
    /// Machines with a beep, and how many got `end_ms` within 150 ms of the beep's end.
    pub beep_machines: usize,
    pub beep_end_within_150ms: usize,
    /// (truth, predicted) -> count.
    pub confusion: Vec<((String, String), usize)>,
}

impl Score {
    pub fn human_as_machine_rate(&self) -> f64 {
        ratio(self.human_as_machine, self.humans)
    }
    pub fn machine_as_human_rate(&self) -> f64 {
        ratio(self.machine_as_human, self.machines)
    }
    pub fn beep_end_rate(&self) -> f64 {
        ratio(self.beep_end_within_150ms, self.beep_machines)
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Median (linear interpolation, like score_amd.py).
pub fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let k = (v.len() - 1) as f64 * 0.5;
    let (lo, hi) = (k.floor() as usize, k.ceil() as usize);
    Some(v[lo] + (v[hi] - v[lo]) * (k - lo as f64))
}

/// Scores predictions against labels. Files without a prediction count as wrong.
pub fn score(labels: &[Label], preds: &[Prediction]) -> Score {
    let by_file: HashMap<&str, &Prediction> = preds.iter().map(|p| (p.file.as_str(), p)).collect();
    let mut s = Score { files: labels.len(), ..Default::default() };
    let mut confusion: HashMap<(String, String), usize> = HashMap::new();
    let mut after = Vec::new();
    for l in labels {
        let p = by_file.get(l.file.as_str());
        let got = p.map_or("<none>", |p| p.label.as_str());
        *confusion.entry((l.label.clone(), got.to_string())).or_default() += 1;
        s.correct += (got == l.label) as usize;
        match l.label.as_str() {
            "human" => {
                s.humans += 1;
                s.human_as_machine += (got == "machine") as usize;
                if let (Some(p), Some(g)) = (p, l.greeting_end_ms) {
                    after.push(p.decision_ms - g);
                }
            }
            "machine" => {
                s.machines += 1;
                s.machine_as_human += (got == "human") as usize;
                if let Some(b) = l.beep_end_ms {
                    s.beep_machines += 1;
                    let hit = p
                        .filter(|p| p.label == "machine")
                        .and_then(|p| p.end_ms)
                        .is_some_and(|e| (e - b).abs() <= 150.0);
                    s.beep_end_within_150ms += hit as usize;
                }
            }
            _ => {}
        }
    }
    s.accuracy = ratio(s.correct, s.files);
    s.human_median_after_greeting_ms = median(&mut after);
    let mut c: Vec<_> = confusion.into_iter().collect();
    c.sort();
    s.confusion = c;
    s
}

impl std::fmt::Display for Score {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "accuracy                 {:.2}%  ({}/{})", 100.0 * self.accuracy, self.correct, self.files)?;
        writeln!(
            f,
            "human -> machine         {:.2}%  ({}/{})  live people hung up on",
            100.0 * self.human_as_machine_rate(),
            self.human_as_machine,
            self.humans
        )?;
        writeln!(
            f,
            "machine -> human         {:.2}%  ({}/{})  voicemails sent to agents",
            100.0 * self.machine_as_human_rate(),
            self.machine_as_human,
            self.machines
        )?;
        match self.human_median_after_greeting_ms {
            Some(m) => writeln!(f, "human decision           median {m:.0} ms after the end of the greeting")?,
            None => writeln!(f, "human decision           -")?,
        }
        writeln!(
            f,
            "beep end within 150 ms   {:.1}%  ({}/{})",
            100.0 * self.beep_end_rate(),
            self.beep_end_within_150ms,
            self.beep_machines
        )?;
        write!(f, "confusion (truth -> predicted):")?;
        for ((t, p), n) in &self.confusion {
            write!(f, "  {t}->{p}:{n}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_lines_keep_quoted_commas() {
        assert_eq!(split_csv_line(r#"a,"b, c",,"d ""e""""#), vec!["a", "b, c", "", r#"d "e""#]);
    }

    #[test]
    fn scores_rates_medians_and_beeps() {
        let labels = parse_labels(
            "file,label,notes,greeting_end_s,beep_end_s\n\
             h1,human,,1.0,\nh2,human,,2.0,\nm1,machine,x,5.0,6.0\nm2,machine,,4.0,\ns1,silence,,,\n",
        )
        .expect("labels");
        let p = |f: &str, l: &str, d: f64, e: Option<f64>| Prediction {
            file: f.into(),
            label: l.into(),
            decision_ms: d,
            end_ms: e,
        };
        let preds = vec![
            p("h1", "human", 1500.0, None),
            p("h2", "machine", 2600.0, None),
            p("m1", "machine", 3000.0, Some(6100.0)),
            p("m2", "human", 4500.0, None),
        ];
        let s = score(&labels, &preds);
        assert_eq!((s.files, s.correct), (5, 2));
        assert_eq!((s.human_as_machine, s.humans, s.machine_as_human, s.machines), (1, 2, 1, 2));
        assert_eq!(s.human_median_after_greeting_ms, Some(550.0));
        assert_eq!((s.beep_end_within_150ms, s.beep_machines), (1, 1));
        assert!(s.confusion.contains(&(("silence".into(), "<none>".into()), 1)));
    }
}
