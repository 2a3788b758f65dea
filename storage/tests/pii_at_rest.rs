//! Personal data at rest: known numbers and names are written to a real sled store, the
//! store is closed, and every byte of every file under it is scanned for them (as UTF-8,
//! and the digits alone). Nothing is found; reopened, the keyed-hash lookup still finds
//! each contact and opens its data.

use std::collections::BTreeMap;
use std::path::Path;
use waihu_storage::{KeySource, NewContact, Store};

fn people() -> Vec<NewContact> {
    (0..200)
        .map(|i| NewContact {
            phone: format!("+86138{:08}", 40_000_000 + i * 7919),
            name: Some(format!("Zhang Wei-{i:03} Testperson")),
            timezone: Some("Asia/Shanghai".into()),
            zones: Vec::new(),
            region: None,
            priority: i % 5,
            alternates: vec![format!("+8613912{:06}", 100_000 + i)],
            fields: BTreeMap::from([("account".to_string(), format!("ACCT-SECRET-{i:05}"))]),
        })
        .collect()
}

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[test]
fn no_plaintext_personal_data_on_disk_and_lookup_still_works() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = KeySource::File(dir.path().join("store.key"));
    let people = people();
    {
        let store = Store::open(dir.path(), key.clone()).expect("open");
        store.add_contacts(1, &people).expect("add");
        store.flush().expect("flush");
    }
    let mut paths = Vec::new();
    files(dir.path(), &mut paths);
    let mut bytes = 0;
    for path in paths.iter().filter(|p| !p.ends_with("store.key")) {
        let data = std::fs::read(path).expect("read");
        bytes += data.len();
        for c in &people {
            let mut needles = vec![c.phone.clone(), c.phone.trim_start_matches('+').to_string()];
            needles.extend(c.name.clone());
            needles.extend(c.alternates.iter().map(|a| a.trim_start_matches('+').to_string()));
            needles.extend(c.fields.values().cloned());
            for n in &needles {
                let found = data.windows(n.len()).any(|w| w == n.as_bytes());
                assert!(!found, "{n:?} in plaintext in {}", path.display());
            }
        }
    }
    assert!(bytes > 200 * 64, "the store holds the sealed records ({bytes} bytes scanned)");
    let store = Store::open(dir.path(), key).expect("reopen");
    for c in &people {
        let found = store.find_by_phone(1, &c.phone).expect("lookup").expect("found by its number");
        assert_eq!(&found.contact, c);
    }
    assert!(store.find_by_phone(1, "+8613800000000").expect("lookup").is_none());
    assert!(store.find_by_phone(2, &people[0].phone).expect("lookup").is_none(), "per campaign");
}

#[test]
fn a_duplicate_number_writes_nothing_and_a_wrong_key_does_not_open_the_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), KeySource::Hex("11".repeat(32))).expect("open");
    let mut batch = people()[..3].to_vec();
    batch.push(batch[1].clone());
    let e = store.add_contacts(1, &batch).expect_err("duplicate");
    assert!(e.to_string().contains("row 3"), "{e}");
    assert_eq!(store.contact_count(1).expect("count"), 0, "all or nothing");
    let ids = store.add_contacts(1, &batch[..3]).expect("add");
    store.flush().expect("flush");
    drop(store);
    let other = Store::open(dir.path(), KeySource::Hex("22".repeat(32))).expect("open with another key");
    assert!(other.find_by_phone(1, &batch[0].phone).expect("lookup").is_none(), "the hash is keyed");
    let e = other.contact(1, ids[0]).expect_err("sealed under the other key");
    assert!(e.to_string().contains("key"), "{e}");
}

#[test]
fn an_unfinished_import_leaves_nothing_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = KeySource::Hex("33".repeat(32));
    let all = people();
    {
        let store = Store::open(dir.path(), key.clone()).expect("open");
        store.add_contacts(1, &all[..10]).expect("a committed list");
        let mut import = store.begin_import(1).expect("begin");
        import.add(&all[10..100]).expect("first batch");
        import.add(&all[100..150]).expect("second batch");
        store.flush().expect("flush");
        // What a crash leaves: the import is never committed nor aborted.
        std::mem::forget(import);
        assert_eq!(store.contact_count(1).expect("count"), 10, "not visible before commit");
    }
    let store = Store::open(dir.path(), key).expect("reopen");
    assert_eq!(store.contact_count(1).expect("count"), 10);
    assert!(store.find_by_phone(1, &all[50].phone).expect("lookup").is_none());
    // The numbers are free again: a new import of them goes in.
    let mut import = store.begin_import(1).expect("begin");
    import.add(&all[10..150]).expect("again");
    import.commit().expect("commit");
    assert_eq!(store.contact_count(1).expect("count"), 150);
    let mut dup = store.begin_import(1).expect("begin");
    assert!(dup.add(&all[..1]).is_err(), "already in the campaign");
    dup.abort().expect("abort");
    assert_eq!(store.contact_count(1).expect("count"), 150);
}
