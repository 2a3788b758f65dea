//! Do-not-call lists: a number is kept only as its keyed hash (the same HMAC the contacts
//! are indexed by), with the list that named it. A number on any list is never dialled.

use crate::codec::{decode, encode, Record};
use crate::{Store, StoreError};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DncEntry {
    /// `national`, `internal`, or any list name.
    pub list: String,
    pub added_unix_ms: u64,
}

impl Record for DncEntry {
    const TREE: &'static str = "dnc";
    const VERSION: u8 = 1;
}

impl Store {
    /// Adds numbers (E.164) to a do-not-call list, all in one batch, durably. Returns how
    /// many were new.
    pub fn add_dnc(&self, list: &str, numbers: &[String], now_unix_ms: u64) -> Result<usize, StoreError> {
        let entry = encode(&DncEntry { list: list.to_string(), added_unix_ms: now_unix_ms })?;
        let mut batch = sled::Batch::default();
        let mut new = 0;
        for n in numbers {
            let h = self.sealer.lookup_hash(n);
            if !self.dnc.contains_key(h)? {
                new += 1;
            }
            batch.insert(&h[..], entry.as_slice());
        }
        self.dnc.apply_batch(batch)?;
        self.flush()?;
        Ok(new)
    }

    /// The list a number (E.164) is on, if any.
    pub fn dnc_list(&self, number: &str) -> Result<Option<DncEntry>, StoreError> {
        self.dnc_by_hash(&self.sealer.lookup_hash(number))
    }

    pub(crate) fn dnc_by_hash(&self, hash: &[u8; 32]) -> Result<Option<DncEntry>, StoreError> {
        self.dnc.get(hash)?.map(|v| decode(&v)).transpose()
    }

    pub fn dnc_count(&self) -> usize {
        self.dnc.len()
    }
}
