//! Compliance: calling rules as data ([`profile`]) and the pure decision whether a contact
//! may be dialled now, with the reason when not ([`rules`]), and the zones a number may be
//! in when its list gave none ([`zones`]).

pub mod profile;
pub mod rules;
pub mod zones;

pub use profile::{Profile, ProfileError};
pub use rules::{check, next_allowed, Blocked, PastAttempt, Subject};
pub use zones::{region_for_number, zones_for_number};
