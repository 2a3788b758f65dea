//! Campaigns: the configuration, contact lists (import), the hopper, the disposition →
//! retry step, the pure campaign state machine ([`machine`]) and its actix shell
//! ([`actor`]).

pub mod actor;
pub mod config;
pub mod hopper;
pub mod import;
pub mod machine;
pub mod retry;
pub mod staffed;

pub use config::{CampaignConfig, ConfigError, ModeName};
pub use import::{import_csv, ImportError, ImportOptions, ImportReport, RowError};
pub use machine::{Campaign, Status};
