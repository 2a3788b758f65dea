//! Campaigns: contact lists (import), and next the hopper, the campaign state machine and
//! its actor.

pub mod import;

pub use import::{import_csv, ImportError, ImportOptions, ImportReport, RowError};
