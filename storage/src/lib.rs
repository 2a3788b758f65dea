//! The only crate that touches sled: typed trees of versioned records (a version byte, then
//! postcard), with personal data sealed at rest (XChaCha20-Poly1305) and looked up by a
//! keyed hash (HMAC-SHA256), never by plaintext. It knows nothing of actix.

pub mod attempts;
pub mod campaigns;
pub mod codec;
pub mod contacts;
pub mod dnc;
pub mod key;
mod seal;

pub use attempts::{Attempt, AttemptId, AttemptState, CommitStats, ContactState, Decision, PastCall, Write};
pub use campaigns::{CampaignRecord, RunState};
pub use contacts::{
    CampaignId, Contact, ContactId, ContactMeta, ListId, ListImport, ListRecord, ListState, NewContact,
};
pub use dnc::DncEntry;
pub use key::{KeySource, KEY_ENV};

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store: {0}")]
    Sled(#[from] sled::Error),
    #[error("store key: {0}")]
    Key(String),
    #[error("store: {0}")]
    Crypto(String),
    #[error("store: cannot encode a {tree} record: {reason}")]
    Encode { tree: &'static str, reason: String },
    #[error("store: unreadable {tree} record: {reason}")]
    Corrupt { tree: &'static str, reason: String },
    #[error("store: duplicate {what} (row {row} of the batch); nothing was written")]
    Duplicate { what: &'static str, row: usize },
    #[error("store: no {what} {id}")]
    NotFound { what: &'static str, id: u64 },
    #[error("store: refused: {0}")]
    Refused(&'static str),
    #[error("store: {0}")]
    Io(#[from] std::io::Error),
}

/// An open store (one directory).
#[derive(Debug, Clone)]
pub struct Store {
    db: sled::Db,
    contacts: sled::Tree,
    by_phone: sled::Tree,
    lists: sled::Tree,
    campaigns: sled::Tree,
    attempts: sled::Tree,
    contact_state: sled::Tree,
    decisions: sled::Tree,
    dnc: sled::Tree,
    sealer: std::sync::Arc<seal::Sealer>,
    /// The group-commit thread, started on first use (it holds a clone of the store).
    committer: std::sync::Arc<std::sync::OnceLock<attempts::Committer>>,
    commit_counters: std::sync::Arc<(std::sync::atomic::AtomicU64, std::sync::atomic::AtomicU64)>,
}

impl Store {
    /// Opens (or creates) the store in `dir` with the master key from `key`.
    pub fn open(dir: &Path, key: KeySource) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir)?;
        let keys = key::load(&key)?;
        let db = sled::Config::new().path(dir.join("db")).open()?;
        let store = Store {
            contacts: db.open_tree("contacts")?,
            by_phone: db.open_tree("contact_by_phone")?,
            lists: db.open_tree("lists")?,
            campaigns: db.open_tree("campaigns")?,
            attempts: db.open_tree("attempts")?,
            contact_state: db.open_tree("contact_state")?,
            decisions: db.open_tree("decisions")?,
            dnc: db.open_tree("dnc")?,
            committer: Default::default(),
            commit_counters: Default::default(),
            db,
            sealer: std::sync::Arc::new(seal::Sealer::new(&keys)),
        };
        store.purge_unfinished()?;
        let committer = attempts::Committer::start(store.without_committer())?;
        let _ = store.committer.set(committer);
        Ok(store)
    }

    /// A clone for the commit thread itself (it must not keep itself alive).
    fn without_committer(&self) -> Store {
        Store { committer: Default::default(), ..self.clone() }
    }

    /// Makes everything written so far durable.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }
}
