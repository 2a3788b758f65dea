//! Compliance: calling rules as data ([`profile`]) and the pure decision whether a contact
//! may be dialled now, with the reason when not ([`rules`]).

pub mod profile;
pub mod rules;

pub use profile::{Profile, ProfileError};
pub use rules::{check, next_allowed, Blocked, PastAttempt, Subject};
