//! Contact list import from CSV, streaming (millions of rows). Columns, by header, case
//! and spacing ignored: `phone` (required; also `number`, `phone_number`), `name`,
//! `timezone` (IANA; also `tz`), `priority` (an integer), `alternates` (more numbers,
//! separated by `;` or `|`); any other column is a custom field. Numbers are validated
//! and normalised to E.164 with the default country for national forms.
//!
//! Every bad row is reported as `row:column: reason` (row = the line in the file, the
//! header being line 1), up to a limit. Without `skip_bad_rows` one bad row imports
//! nothing; with it the good rows go in and the bad ones are still reported. The rows go
//! to the store in batches through an unfinished import that is committed only at the
//! end, so a crash half-way leaves no partial list.

use chrono_tz::Tz;
use phonenumber::country::Id as Country;
use phonenumber::Mode;
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use waihu_storage::{CampaignId, ListId, NewContact, Store, StoreError};

#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// For numbers written without a country code.
    pub default_country: Country,
    pub skip_bad_rows: bool,
    /// Bad rows reported (all are counted).
    pub max_errors: usize,
    /// Rows per store batch.
    pub batch: usize,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions { default_country: Country::US, skip_bad_rows: false, max_errors: 100, batch: 10_000 }
    }
}

/// One bad cell (or row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    pub row: u64,
    pub column: String,
    pub reason: String,
}

impl std::fmt::Display for RowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.row, self.column, self.reason)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportReport {
    /// The committed list (None when nothing was imported).
    pub list: Option<ListId>,
    pub imported: u64,
    pub bad_rows: u64,
    /// The first `max_errors` problems.
    pub errors: Vec<RowError>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("import: the file has no header row")]
    NoHeader,
    #[error("import: no phone column (the header needs one of: phone, number, phone_number)")]
    NoPhoneColumn,
    #[error("import: column {0:?} appears twice in the header")]
    DuplicateColumn(String),
    #[error("import: {bad} of {rows} rows are bad; nothing was imported (first: {first})")]
    BadRows { bad: u64, rows: u64, first: RowError, errors: Vec<RowError> },
    #[error("import: line {line}: {reason}")]
    Csv { line: u64, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    Phone,
    Name,
    Timezone,
    Priority,
    Region,
    Alternates,
    Custom,
}

fn column_of(name: &str) -> Column {
    match name.trim().to_ascii_lowercase().replace([' ', '-'], "_").as_str() {
        "phone" | "number" | "phone_number" => Column::Phone,
        "name" => Column::Name,
        "timezone" | "tz" | "time_zone" => Column::Timezone,
        "priority" => Column::Priority,
        "region" | "state_code" => Column::Region,
        "alternates" | "alternate_numbers" | "alt" => Column::Alternates,
        _ => Column::Custom,
    }
}

/// Validates one number and returns it in E.164.
pub fn normalise(raw: &str, country: Country) -> Result<String, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err("empty".into());
    }
    // An international form names its own country (the crate misjudges +86 numbers
    // parsed with a US hint as invalid).
    let hint = (!raw.starts_with('+')).then_some(country);
    let n = phonenumber::parse(hint, raw).map_err(|e| format!("{raw:?} is not a phone number ({e})"))?;
    if !phonenumber::is_valid(&n) {
        return Err(format!("{raw:?} is not a valid number"));
    }
    Ok(n.format().mode(Mode::E164).to_string())
}

/// Reads one CSV row into a contact, or the cells that are wrong.
fn parse_row(
    row: &csv::StringRecord,
    header: &[(Column, String)],
    line: u64,
    opts: &ImportOptions,
) -> Result<NewContact, Vec<RowError>> {
    let mut c = NewContact::default();
    let mut errs = Vec::new();
    let mut bad = |column: &str, reason: String| errs.push(RowError { row: line, column: column.into(), reason });
    if row.len() != header.len() {
        bad("*", format!("{} fields, the header has {}", row.len(), header.len()));
        return Err(errs);
    }
    for ((kind, name), cell) in header.iter().zip(row.iter()) {
        let cell = cell.trim();
        match kind {
            Column::Phone => match normalise(cell, opts.default_country) {
                Ok(p) => c.phone = p,
                Err(e) => bad(name, e),
            },
            Column::Name => c.name = (!cell.is_empty()).then(|| cell.to_string()),
            Column::Timezone if cell.is_empty() => {}
            Column::Timezone => match cell.parse::<Tz>() {
                Ok(tz) => c.timezone = Some(tz.name().to_string()),
                Err(_) => bad(name, format!("{cell:?} is not an IANA time zone")),
            },
            Column::Priority if cell.is_empty() => {}
            Column::Region if cell.is_empty() => {}
            Column::Region => {
                let ok = cell.len() <= 6
                    && cell.get(2..3) == Some("-")
                    && cell[..2].bytes().all(|b| b.is_ascii_uppercase())
                    && cell[3..].bytes().all(|b| b.is_ascii_alphanumeric());
                if ok {
                    c.region = Some(cell.to_string());
                } else {
                    bad(name, format!("{cell:?} is not an ISO 3166-2 region (like US-FL)"));
                }
            }
            Column::Priority => match cell.parse::<i32>() {
                Ok(p) => c.priority = p,
                Err(_) => bad(name, format!("{cell:?} is not an integer")),
            },
            Column::Alternates => {
                for alt in cell.split([';', '|']).map(str::trim).filter(|a| !a.is_empty()) {
                    match normalise(alt, opts.default_country) {
                        Ok(p) => c.alternates.push(p),
                        Err(e) => bad(name, e),
                    }
                }
            }
            Column::Custom => {
                if !cell.is_empty() {
                    c.fields.insert(name.clone(), cell.to_string());
                }
            }
        }
    }
    if c.region.is_none() && !c.phone.is_empty() {
        c.region = crate::compliance::region_for_number(&c.phone).map(str::to_string);
    }
    if c.timezone.is_none() && !c.phone.is_empty() {
        c.zones = crate::compliance::zones_for_number(&c.phone).iter().map(|z| z.name().to_string()).collect();
    }
    if errs.is_empty() {
        Ok(c)
    } else {
        Err(errs)
    }
}

/// Imports a CSV contact list into `campaign`: all of it, or (with `skip_bad_rows`) its
/// good rows, or nothing.
pub fn import_csv<R: Read>(
    store: &Store,
    campaign: CampaignId,
    input: R,
    opts: &ImportOptions,
    mut progress: impl FnMut(u64),
) -> Result<ImportReport, ImportError> {
    let mut rdr = csv::ReaderBuilder::new().flexible(true).trim(csv::Trim::None).from_reader(input);
    let names = rdr.headers().map_err(|e| csv_error(&e))?.clone();
    if names.is_empty() || names.iter().all(|h| h.trim().is_empty()) {
        return Err(ImportError::NoHeader);
    }
    let mut header = Vec::new();
    let mut seen = BTreeMap::new();
    for h in names.iter() {
        let key = h.trim().to_ascii_lowercase();
        if seen.insert(key.clone(), ()).is_some() {
            return Err(ImportError::DuplicateColumn(h.trim().to_string()));
        }
        header.push((column_of(h), h.trim().to_string()));
    }
    if !header.iter().any(|(k, _)| *k == Column::Phone) {
        return Err(ImportError::NoPhoneColumn);
    }
    let mut import = store.begin_import(campaign)?;
    let mut report = ImportReport { list: None, imported: 0, bad_rows: 0, errors: Vec::new() };
    let mut first_line: HashMap<String, u64> = HashMap::new();
    let mut batch = Vec::with_capacity(opts.batch);
    let mut rows = 0u64;
    let mut record = csv::StringRecord::new();
    loop {
        match rdr.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(csv_error(&e)),
        }
        rows += 1;
        let line = record.position().map_or(rows + 1, |p| p.line());
        let parsed = parse_row(&record, &header, line, opts).and_then(|c| match first_line.get(&c.phone) {
            Some(&earlier) => Err(vec![RowError {
                row: line,
                column: header.iter().find(|(k, _)| *k == Column::Phone).map_or("phone".into(), |h| h.1.clone()),
                reason: format!("{} repeats row {earlier}", c.phone),
            }]),
            None => {
                first_line.insert(c.phone.clone(), line);
                Ok(c)
            }
        });
        match parsed {
            Ok(c) => batch.push((line, c)),
            Err(errs) => {
                report.bad_rows += 1;
                let room = opts.max_errors.saturating_sub(report.errors.len());
                report.errors.extend(errs.into_iter().take(room));
            }
        }
        if batch.len() >= opts.batch.max(1) {
            write(&mut import, &mut batch, &mut report, opts)?;
            progress(rows);
        }
    }
    write(&mut import, &mut batch, &mut report, opts)?;
    progress(rows);
    if report.bad_rows > 0 && !opts.skip_bad_rows {
        import.abort()?;
        let first = report.errors[0].clone();
        return Err(ImportError::BadRows { bad: report.bad_rows, rows, first, errors: report.errors });
    }
    if report.imported == 0 {
        import.abort()?;
        return Ok(report);
    }
    report.list = Some(import.commit()?);
    Ok(report)
}

/// Writes a batch; a number the campaign already has is a bad row, and the rest go in.
fn write(
    import: &mut waihu_storage::ListImport<'_>,
    batch: &mut Vec<(u64, NewContact)>,
    report: &mut ImportReport,
    opts: &ImportOptions,
) -> Result<(), ImportError> {
    while !batch.is_empty() {
        let contacts: Vec<NewContact> = batch.iter().map(|(_, c)| c.clone()).collect();
        match import.add(&contacts) {
            Ok(ids) => {
                report.imported += ids.len() as u64;
                batch.clear();
            }
            Err(StoreError::Duplicate { row, .. }) if row < batch.len() => {
                let (line, c) = batch.remove(row);
                report.bad_rows += 1;
                if report.errors.len() < opts.max_errors {
                    let reason = format!("{} is already in this campaign", c.phone);
                    report.errors.push(RowError { row: line, column: "phone".into(), reason });
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn csv_error(e: &csv::Error) -> ImportError {
    let line = e.position().map_or(0, |p| p.line());
    ImportError::Csv { line, reason: e.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_normalised_with_the_default_country() {
        assert_eq!(normalise("(202) 555-0143", Country::US).as_deref(), Ok("+12025550143"));
        assert_eq!(normalise("138 0013 8000", Country::CN).as_deref(), Ok("+8613800138000"));
        assert_eq!(normalise("+44 20 7946 0958", Country::US).as_deref(), Ok("+442079460958"));
        assert_eq!(normalise("+86 138 0013 8000", Country::US).as_deref(), Ok("+8613800138000"));
        assert!(normalise("12345", Country::US).is_err());
        assert!(normalise("call me", Country::US).is_err());
        assert!(normalise("", Country::US).is_err());
    }
}
