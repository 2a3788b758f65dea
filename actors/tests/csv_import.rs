//! CSV contact import into a real sled store: good files go in whole, a file with bad rows
//! imports nothing and names each bad cell as `row:column: reason`, `skip_bad_rows` takes
//! the good ones, broken CSV and headers get clear errors, and numbers the campaign already
//! has are bad rows, not a failed import.

use phonenumber::country::Id as Country;
use waihu_actors::campaign::{import_csv, ImportError, ImportOptions};
use waihu_storage::{KeySource, Store};

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Store::open(dir.path(), KeySource::Hex("44".repeat(32))).expect("open");
    (dir, s)
}

const GOOD: &str = "Phone,Name,Timezone,Priority,Alternates,Account\n\
(202) 555-0143,Ann Lee,America/New_York,2,202-555-0144;202-555-0145,A-1\n\
+44 20 7946 0958,Bob Smith,,,,A-2\n\
+86 138 0013 8000,王伟,Asia/Shanghai,-1,,\n";

#[test]
fn a_good_file_goes_in_whole_and_normalised() {
    let (_d, s) = store();
    let opts = ImportOptions { default_country: Country::US, batch: 2, ..ImportOptions::default() };
    let mut seen = Vec::new();
    let r = import_csv(&s, 1, GOOD.as_bytes(), &opts, |n| seen.push(n)).expect("import");
    assert_eq!((r.imported, r.bad_rows), (3, 0));
    assert!(r.list.is_some());
    assert_eq!(seen.last(), Some(&3), "progress reaches every row");
    let ann = s.find_by_phone(1, "+12025550143").expect("lookup").expect("Ann");
    assert_eq!(ann.contact.name.as_deref(), Some("Ann Lee"));
    assert_eq!(ann.contact.alternates, vec!["+12025550144", "+12025550145"]);
    assert_eq!(ann.contact.priority, 2);
    assert_eq!(ann.contact.fields.get("Account").map(String::as_str), Some("A-1"));
    let wang = s.find_by_phone(1, "+8613800138000").expect("lookup").expect("Wang");
    assert_eq!((wang.contact.name.as_deref(), wang.contact.timezone.as_deref()), (Some("王伟"), Some("Asia/Shanghai")));
    assert_eq!(s.contact_count(1).expect("count"), 3);
}

const BAD: &str = "phone,name,timezone,priority\n\
2025550143,Ann,America/New_York,1\n\
12345,Bad Number,,\n\
2025550150,Bad Zone,Mars/Olympus,\n\
2025550151,Bad Priority,,high\n\
2025550143,Ann Again,,\n\
2025550152,Short\n\
2025550153,Fine,,3\n";

#[test]
fn bad_rows_import_nothing_and_say_where_and_why() {
    let (_d, s) = store();
    let e = import_csv(&s, 1, BAD.as_bytes(), &ImportOptions::default(), |_| {}).expect_err("bad rows");
    let ImportError::BadRows { bad, rows, errors, .. } = &e else { panic!("{e}") };
    assert_eq!((*bad, *rows), (5, 7));
    let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert!(lines[0].starts_with("3:phone: \"12345\""), "{lines:?}");
    assert!(lines[1].starts_with("4:timezone: \"Mars/Olympus\" is not an IANA time zone"), "{lines:?}");
    assert!(lines[2].starts_with("5:priority: \"high\" is not an integer"), "{lines:?}");
    assert!(lines[3].starts_with("6:phone: +12025550143 repeats row 2"), "{lines:?}");
    assert!(lines[4].starts_with("7:*: 2 fields, the header has 4"), "{lines:?}");
    assert_eq!(s.contact_count(1).expect("count"), 0, "nothing imported");
    assert!(s.find_by_phone(1, "+12025550153").expect("lookup").is_none());

    let skip = ImportOptions { skip_bad_rows: true, ..ImportOptions::default() };
    let r = import_csv(&s, 1, BAD.as_bytes(), &skip, |_| {}).expect("skip bad rows");
    assert_eq!((r.imported, r.bad_rows, r.errors.len()), (2, 5, 5));
    assert_eq!(s.contact_count(1).expect("count"), 2);

    // The same good rows again: already in the campaign, reported, the rest imported.
    let again = "phone\n2025550143\n2025550199\n";
    let r = import_csv(&s, 1, again.as_bytes(), &skip, |_| {}).expect("again");
    assert_eq!((r.imported, r.bad_rows), (1, 1));
    assert_eq!(r.errors[0].to_string(), "2:phone: +12025550143 is already in this campaign");
}

#[test]
fn broken_files_get_clear_errors() {
    let (_d, s) = store();
    let opts = ImportOptions::default();
    let e = import_csv(&s, 1, "name,city\nAnn,Paris\n".as_bytes(), &opts, |_| {}).expect_err("no phone");
    assert!(matches!(e, ImportError::NoPhoneColumn), "{e}");
    let e = import_csv(&s, 1, "phone,Phone\n1,2\n".as_bytes(), &opts, |_| {}).expect_err("twice");
    assert!(e.to_string().contains("appears twice"), "{e}");
    let e = import_csv(&s, 1, "".as_bytes(), &opts, |_| {}).expect_err("empty");
    assert!(matches!(e, ImportError::NoHeader), "{e}");
    let e = import_csv(&s, 1, &b"phone,name\n2025550143,\xff\xfe\n"[..], &opts, |_| {}).expect_err("not UTF-8");
    assert!(matches!(e, ImportError::Csv { line: 2, .. }), "{e}");
    assert_eq!(s.contact_count(1).expect("count"), 0);
    let limit = ImportOptions { max_errors: 3, ..ImportOptions::default() };
    let many: String =
        std::iter::once("phone".to_string()).chain((0..50).map(|i| format!("bad{i}"))).collect::<Vec<_>>().join("\n");
    let e = import_csv(&s, 1, many.as_bytes(), &limit, |_| {}).expect_err("50 bad");
    let ImportError::BadRows { bad, errors, .. } = e else { panic!() };
    assert_eq!((bad, errors.len()), (50, 3), "all counted, three reported");
}

#[test]
fn rows_without_a_timezone_get_their_numbers_zones() {
    let (_dir, store) = store();
    let csv = "phone,timezone\n+12125550123,\n+18505550123,\n+8613800138000,\n+442071234567,Europe/Dublin\n";
    let r = import_csv(&store, 1, csv.as_bytes(), &ImportOptions::default(), |_| {}).expect("import");
    assert_eq!(r.imported, 4);
    let mut idx = store.contact_index(1).expect("index");
    idx.sort_by_key(|m| m.id);
    let zones: Vec<(Option<&str>, Vec<&str>)> =
        idx.iter().map(|m| (m.timezone.as_deref(), m.zones.iter().map(String::as_str).collect())).collect();
    assert_eq!(zones[0], (None, vec!["America/New_York"]));
    assert!(zones[1].1.len() > 1, "850 spans zones: every candidate ({:?})", zones[1]);
    assert_eq!(zones[2], (None, vec!["Asia/Shanghai"]));
    assert_eq!(zones[3], (Some("Europe/Dublin"), vec![]), "the list's own zone wins");
    let regions: Vec<Option<&str>> = idx.iter().map(|m| m.region.as_deref()).collect();
    assert_eq!(regions, vec![None, Some("US-FL"), None, None], "850 is Florida");
    let bad = "phone,region\n+12125550123,Florida\n";
    let e = import_csv(&store, 2, bad.as_bytes(), &ImportOptions::default(), |_| {}).expect_err("bad region");
    assert!(e.to_string().contains("2:region:"), "{e}");
}
