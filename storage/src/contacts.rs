//! Contacts: the phone numbers, names, alternates and custom fields are sealed (they are
//! personal data); the time zone and priority stay clear because the hopper orders and
//! filters by them. A keyed hash of each number indexes the contact within its campaign.

use crate::codec::{decode, encode, Record};
use crate::{Store, StoreError};
use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;
use std::collections::BTreeMap;

pub type CampaignId = u64;
pub type ContactId = u64;

/// A contact as imported: the number already normalised to E.164.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewContact {
    pub phone: String,
    pub name: Option<String>,
    /// IANA zone name, when the list gave one.
    pub timezone: Option<String>,
    pub priority: i32,
    pub alternates: Vec<String>,
    pub fields: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    pub id: ContactId,
    pub campaign: CampaignId,
    pub contact: NewContact,
}

/// What is sealed.
#[derive(Debug, Serialize, Deserialize)]
struct Personal {
    phone: String,
    name: Option<String>,
    alternates: Vec<String>,
    fields: BTreeMap<String, String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredContact {
    sealed: Vec<u8>,
    timezone: Option<String>,
    priority: i32,
}

impl Record for StoredContact {
    const TREE: &'static str = "contacts";
    const VERSION: u8 = 1;
}

fn key(campaign: CampaignId, id: ContactId) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&campaign.to_be_bytes());
    k[8..].copy_from_slice(&id.to_be_bytes());
    k
}

fn phone_key(campaign: CampaignId, hash: &[u8; 32]) -> [u8; 40] {
    let mut k = [0u8; 40];
    k[..8].copy_from_slice(&campaign.to_be_bytes());
    k[8..].copy_from_slice(hash);
    k
}

impl Store {
    /// Adds contacts to a campaign, all or none; a number already in the campaign is an
    /// error naming its position in `contacts`.
    pub fn add_contacts(&self, campaign: CampaignId, contacts: &[NewContact]) -> Result<Vec<ContactId>, StoreError> {
        let mut rows = Vec::with_capacity(contacts.len());
        for c in contacts {
            let id = self.db.generate_id()?;
            let k = key(campaign, id);
            let personal = Personal {
                phone: c.phone.clone(),
                name: c.name.clone(),
                alternates: c.alternates.clone(),
                fields: c.fields.clone(),
            };
            let plain = postcard::to_stdvec(&personal)
                .map_err(|e| StoreError::Encode { tree: StoredContact::TREE, reason: e.to_string() })?;
            let stored = StoredContact {
                sealed: self.sealer.seal(&plain, &aad(&k))?,
                timezone: c.timezone.clone(),
                priority: c.priority,
            };
            rows.push((id, k, encode(&stored)?, phone_key(campaign, &self.sealer.lookup_hash(&c.phone))));
        }
        let result = (&self.contacts, &self.by_phone).transaction(|(contacts, by_phone)| {
            for (i, (id, k, value, pk)) in rows.iter().enumerate() {
                if by_phone.insert(&pk[..], &id.to_be_bytes()[..])?.is_some() {
                    return Err(ConflictableTransactionError::Abort(i));
                }
                contacts.insert(&k[..], value.as_slice())?;
            }
            Ok(())
        });
        match result {
            Ok(()) => Ok(rows.into_iter().map(|(id, ..)| id).collect()),
            Err(TransactionError::Abort(i)) => Err(StoreError::Duplicate { what: "phone number", row: i }),
            Err(TransactionError::Storage(e)) => Err(e.into()),
        }
    }

    pub fn contact(&self, campaign: CampaignId, id: ContactId) -> Result<Option<Contact>, StoreError> {
        let k = key(campaign, id);
        let Some(v) = self.contacts.get(k)? else { return Ok(None) };
        let stored: StoredContact = decode(&v)?;
        let plain = self.sealer.open(&stored.sealed, &aad(&k))?;
        let p: Personal = postcard::from_bytes(&plain)
            .map_err(|e| StoreError::Corrupt { tree: StoredContact::TREE, reason: e.to_string() })?;
        Ok(Some(Contact {
            id,
            campaign,
            contact: NewContact {
                phone: p.phone,
                name: p.name,
                timezone: stored.timezone,
                priority: stored.priority,
                alternates: p.alternates,
                fields: p.fields,
            },
        }))
    }

    /// The campaign's contact with this number (E.164), by its keyed hash.
    pub fn find_by_phone(&self, campaign: CampaignId, phone: &str) -> Result<Option<Contact>, StoreError> {
        let pk = phone_key(campaign, &self.sealer.lookup_hash(phone));
        let Some(id) = self.by_phone.get(pk)? else { return Ok(None) };
        let id = <[u8; 8]>::try_from(id.as_ref())
            .map_err(|_| StoreError::Corrupt { tree: "contact_by_phone", reason: "bad contact id".into() })?;
        self.contact(campaign, u64::from_be_bytes(id))
    }

    pub fn contact_count(&self, campaign: CampaignId) -> usize {
        self.contacts.scan_prefix(campaign.to_be_bytes()).count()
    }
}

fn aad(k: &[u8]) -> Vec<u8> {
    let mut a = b"contacts/".to_vec();
    a.extend_from_slice(k);
    a
}
