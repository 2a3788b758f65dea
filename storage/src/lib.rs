//! The only crate that touches sled: typed trees of versioned records (a version byte, then
//! postcard), with personal data sealed at rest (XChaCha20-Poly1305) and looked up by a
//! keyed hash (HMAC-SHA256), never by plaintext. It knows nothing of actix.

pub mod agents;
pub mod articles;
pub mod attempts;
pub mod campaigns;
pub mod codec;
pub mod contacts;
pub mod dnc;
pub mod key;
pub mod reviews;
mod seal;
pub mod wrapups;

pub use agents::{AgentRecord, AgentStatus};
pub use articles::{Article, ArticleId};
pub use attempts::{Attempt, AttemptId, AttemptState, Callback, CommitStats, ContactState, Decision, PastCall, Write};
pub use campaigns::{CampaignRecord, RunState};
pub use contacts::{
    CampaignId, Contact, ContactId, ContactMeta, ListId, ListImport, ListRecord, ListState, NewContact,
};
pub use dnc::DncEntry;
pub use key::{KeySource, KEY_ENV};
pub use reviews::{Review, ReviewCounts};
pub use wrapups::{LegRecord, LegRole, WrapUpRecord};

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
    #[error(
        "store: the disk is almost full ({free} bytes free, {need} needed to go on safely); nothing more was written"
    )]
    DiskFull { free: u64, need: u64 },
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
    agents: sled::Tree,
    agent_status: sled::Tree,
    agent_log: sled::Tree,
    wrapups: sled::Tree,
    articles: sled::Tree,
    reviews: sled::Tree,
    legs: sled::Tree,
    sealer: std::sync::Arc<seal::Sealer>,
    /// The group-commit thread, started on first use (it holds a clone of the store).
    committer: std::sync::Arc<std::sync::OnceLock<attempts::Committer>>,
    commit_counters: std::sync::Arc<(std::sync::atomic::AtomicU64, std::sync::atomic::AtomicU64)>,
    /// Why removing an unfinished import failed at open, if it did.
    purge_error: Option<String>,
    dir: std::path::PathBuf,
    /// The disk was full at open and the reserve was given up to open the store.
    reserve_released: bool,
}

/// A file of this size sits in the store's directory from its first open. When the disk is
/// so full that sled cannot even open (it writes as it opens), the reserve is removed to
/// make room, so a full disk never leaves the store unreadable.
pub const RESERVE_BYTES: usize = 2 << 20;
/// Writes in bulk (an import) stop while this much is still free.
pub const MIN_FREE_BYTES: u64 = 4 << 20;
/// What one contact costs on disk, about (sealed record, index, sled's log): measured at
/// 435 bytes in a 1M import; counted double.
pub const BYTES_PER_CONTACT: u64 = 900;
const RESERVE_FILE: &str = "reserve";

fn is_no_space(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.raw_os_error() == Some(28))
}

impl Store {
    /// Opens (or creates) the store in `dir` with the master key from `key`.
    pub fn open(dir: &Path, key: KeySource) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir)?;
        let keys = key::load(&key)?;
        let reserve = dir.join(RESERVE_FILE);
        if !reserve.exists() {
            // Best effort: a store created on an almost full disk has no reserve.
            let _ = std::fs::write(&reserve, vec![0u8; RESERVE_BYTES]);
        }
        let config = sled::Config::new().path(dir.join("db"));
        let mut reserve_released = false;
        let db = match config.open() {
            Ok(db) => db,
            // sled writes as it opens; on a full disk the reserve makes room for it.
            Err(e) if is_no_space(&e) && reserve.exists() => {
                std::fs::remove_file(&reserve)?;
                reserve_released = true;
                config.open()?
            }
            Err(e) => return Err(e.into()),
        };
        let mut store = Store {
            contacts: db.open_tree("contacts")?,
            by_phone: db.open_tree("contact_by_phone")?,
            lists: db.open_tree("lists")?,
            campaigns: db.open_tree("campaigns")?,
            attempts: db.open_tree("attempts")?,
            contact_state: db.open_tree("contact_state")?,
            decisions: db.open_tree("decisions")?,
            dnc: db.open_tree("dnc")?,
            agents: db.open_tree("agents")?,
            agent_status: db.open_tree("agent_status")?,
            agent_log: db.open_tree("agent_log")?,
            wrapups: db.open_tree("wrapups")?,
            articles: db.open_tree("articles")?,
            reviews: db.open_tree("reviews")?,
            legs: db.open_tree("legs")?,
            committer: Default::default(),
            commit_counters: Default::default(),
            purge_error: None,
            dir: dir.to_path_buf(),
            reserve_released,
            db,
            sealer: std::sync::Arc::new(seal::Sealer::new(&keys)),
        };
        // What an unfinished import left is invisible (its list is not `Ready`); removing it
        // needs room to write, and a full disk must not keep the store from opening. It is
        // tried again at the next open.
        if let Err(e) = store.purge_unfinished() {
            store.purge_error = Some(e.to_string());
        }
        let committer = attempts::Committer::start(store.without_committer())?;
        let _ = store.committer.set(committer);
        Ok(store)
    }

    /// A clone for the commit thread itself (it must not keep itself alive).
    fn without_committer(&self) -> Store {
        Store { committer: Default::default(), ..self.clone() }
    }

    /// Why what an unfinished import left could not be removed at open (a full disk): it
    /// stays invisible, and the next open tries again.
    pub fn purge_error(&self) -> Option<&str> {
        self.purge_error.as_deref()
    }

    /// Free bytes on the store's file system (None if it cannot tell).
    pub fn free_bytes(&self) -> Option<u64> {
        use std::os::unix::ffi::OsStrExt;
        let path = std::ffi::CString::new(self.dir.as_os_str().as_bytes()).ok()?;
        // SAFETY: statvfs is plain data; all-zero is a valid value of it.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: `path` is a NUL-terminated string and `st` a writable statvfs.
        let rc = unsafe { libc::statvfs(path.as_ptr(), &mut st) };
        (rc == 0).then(|| st.f_bavail as u64 * st.f_frsize as u64)
    }

    /// Whether this open had to give up the disk-space reserve (the disk is full: free
    /// space before writing more).
    pub fn reserve_released(&self) -> bool {
        self.reserve_released
    }

    /// Makes everything written so far durable.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }
}
