//! The only crate that touches sled: typed trees for campaigns, contacts, CDRs, users,
//! DNC and the hash-chained audit log, with personal data encrypted at rest.
//! Filled by a later issue.
