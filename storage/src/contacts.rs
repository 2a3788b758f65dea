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
    /// Without one: the zones the number may be in (from its country and area code).
    pub zones: Vec<String>,
    /// ISO 3166-2 region (`US-FL`) for regional calling rules: the list's, or the number's.
    pub region: Option<String>,
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
    /// The import that brought it: visible once that import is committed.
    list: ListId,
    sealed: Vec<u8>,
    /// The keyed hash of the number (to undo an import without opening the data).
    phone_hash: [u8; 32],
    timezone: Option<String>,
    zones: Vec<String>,
    region: Option<String>,
    priority: i32,
}

pub type ListId = u64;

/// A contact without its personal data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactMeta {
    pub id: ContactId,
    pub priority: i32,
    pub timezone: Option<String>,
    /// The zones the number may be in, when no timezone was given.
    pub zones: Vec<String>,
    pub region: Option<String>,
    /// The do-not-call list the number is on.
    pub dnc: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ListState {
    Importing,
    Ready,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListRecord {
    pub campaign: CampaignId,
    pub state: ListState,
    pub rows: u64,
}

impl Record for ListRecord {
    const TREE: &'static str = "lists";
    const VERSION: u8 = 1;
}

/// An import under way: its contacts are written as they come but stay invisible until
/// [`ListImport::commit`]. Dropped, aborted or cut short by a crash, it leaves nothing
/// (the store removes unfinished imports when it opens).
#[derive(Debug)]
pub struct ListImport<'a> {
    store: &'a Store,
    campaign: CampaignId,
    list: ListId,
    rows: u64,
    done: bool,
}

impl ListImport<'_> {
    pub fn list(&self) -> ListId {
        self.list
    }

    /// Adds a batch, all or none; a number already in the campaign (or earlier in this
    /// import) fails the batch, naming its position in `contacts`.
    pub fn add(&mut self, contacts: &[NewContact]) -> Result<Vec<ContactId>, StoreError> {
        // Stop well before the disk is full: sled does not come back cleanly from a write
        // that runs out of space, and the rest of the store must stay readable.
        let need = crate::MIN_FREE_BYTES + contacts.len() as u64 * crate::BYTES_PER_CONTACT;
        if let Some(free) = self.store.free_bytes() {
            if free < need {
                return Err(StoreError::DiskFull { free, need });
            }
        }
        let ids = self.store.write_contacts(self.campaign, self.list, contacts)?;
        self.rows += ids.len() as u64;
        Ok(ids)
    }

    /// Makes the import's contacts visible, durably.
    pub fn commit(mut self) -> Result<ListId, StoreError> {
        let rec = ListRecord { campaign: self.campaign, state: ListState::Ready, rows: self.rows };
        self.store.lists.insert(self.list.to_be_bytes(), encode(&rec)?)?;
        self.store.flush()?;
        self.done = true;
        Ok(self.list)
    }

    /// Removes everything the import wrote.
    pub fn abort(mut self) -> Result<(), StoreError> {
        self.done = true;
        self.store.purge_list(self.campaign, self.list)
    }
}

impl Drop for ListImport<'_> {
    fn drop(&mut self) {
        if !self.done {
            // Best effort; what is left is removed when the store next opens.
            let _ = self.store.purge_list(self.campaign, self.list);
        }
    }
}

impl Record for StoredContact {
    const TREE: &'static str = "contacts";
    const VERSION: u8 = 1;
}

/// A record key under a campaign: the campaign id, then the record's (both big-endian, so
/// a campaign's records scan in id order).
pub(crate) fn key(campaign: CampaignId, id: u64) -> [u8; 16] {
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
    /// Adds contacts to a campaign as one list, all or none; a number already in the
    /// campaign is an error naming its position in `contacts`.
    pub fn add_contacts(&self, campaign: CampaignId, contacts: &[NewContact]) -> Result<Vec<ContactId>, StoreError> {
        let mut import = self.begin_import(campaign)?;
        let ids = import.add(contacts)?;
        import.commit()?;
        Ok(ids)
    }

    /// Starts an import into `campaign` (durably marked unfinished until committed).
    pub fn begin_import(&self, campaign: CampaignId) -> Result<ListImport<'_>, StoreError> {
        let list = self.db.generate_id()?;
        let rec = ListRecord { campaign, state: ListState::Importing, rows: 0 };
        self.lists.insert(list.to_be_bytes(), encode(&rec)?)?;
        self.flush()?;
        Ok(ListImport { store: self, campaign, list, rows: 0, done: false })
    }

    pub fn list(&self, list: ListId) -> Result<Option<ListRecord>, StoreError> {
        self.lists.get(list.to_be_bytes())?.map(|v| decode(&v)).transpose()
    }

    /// Removes what unfinished imports left (a crash mid-import); returns how many.
    pub(crate) fn purge_unfinished(&self) -> Result<usize, StoreError> {
        let mut unfinished = Vec::new();
        for kv in self.lists.iter() {
            let (k, v) = kv?;
            let rec: ListRecord = decode(&v)?;
            if rec.state == ListState::Importing {
                let id = <[u8; 8]>::try_from(k.as_ref())
                    .map_err(|_| StoreError::Corrupt { tree: ListRecord::TREE, reason: "bad list id".into() })?;
                unfinished.push((rec.campaign, u64::from_be_bytes(id)));
            }
        }
        for &(campaign, list) in &unfinished {
            self.purge_list(campaign, list)?;
        }
        Ok(unfinished.len())
    }

    fn purge_list(&self, campaign: CampaignId, list: ListId) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        let mut index = sled::Batch::default();
        for kv in self.contacts.scan_prefix(campaign.to_be_bytes()) {
            let (k, v) = kv?;
            let stored: StoredContact = decode(&v)?;
            if stored.list == list {
                batch.remove(k);
                index.remove(&phone_key(campaign, &stored.phone_hash)[..]);
            }
        }
        // The index first: a number freed but still stored is invisible anyway.
        self.by_phone.apply_batch(index)?;
        self.contacts.apply_batch(batch)?;
        self.lists.remove(list.to_be_bytes())?;
        self.flush()
    }

    fn visible(&self, list: ListId) -> Result<bool, StoreError> {
        Ok(self.list(list)?.is_some_and(|l| l.state == ListState::Ready))
    }

    fn write_contacts(
        &self,
        campaign: CampaignId,
        list: ListId,
        contacts: &[NewContact],
    ) -> Result<Vec<ContactId>, StoreError> {
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
            let phone_hash = self.sealer.lookup_hash(&c.phone);
            let stored = StoredContact {
                list,
                sealed: self.sealer.seal(&plain, &aad(&k))?,
                phone_hash,
                timezone: c.timezone.clone(),
                zones: c.zones.clone(),
                region: c.region.clone(),
                priority: c.priority,
            };
            rows.push((id, k, encode(&stored)?, phone_key(campaign, &phone_hash)));
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
        if !self.visible(stored.list)? {
            return Ok(None);
        }
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
                zones: stored.zones,
                region: stored.region,
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

    /// The campaign's contacts in committed lists, without their personal data: what the
    /// hopper orders and the rules filter by (and whether the number is on a do-not-call
    /// list, found by its keyed hash).
    pub fn contact_index(&self, campaign: CampaignId) -> Result<Vec<ContactMeta>, StoreError> {
        let mut out = Vec::new();
        let mut ready = std::collections::HashMap::new();
        for kv in self.contacts.scan_prefix(campaign.to_be_bytes()) {
            let (k, v) = kv?;
            let stored: StoredContact = decode(&v)?;
            let visible = match ready.get(&stored.list) {
                Some(&v) => v,
                None => {
                    let v = self.visible(stored.list)?;
                    ready.insert(stored.list, v);
                    v
                }
            };
            if !visible {
                continue;
            }
            let id = <[u8; 8]>::try_from(&k[8..16])
                .map_err(|_| StoreError::Corrupt { tree: StoredContact::TREE, reason: "bad contact key".into() })?;
            let dnc = self.dnc_by_hash(&stored.phone_hash)?.map(|e| e.list);
            out.push(ContactMeta {
                id: u64::from_be_bytes(id),
                priority: stored.priority,
                timezone: stored.timezone,
                zones: stored.zones,
                region: stored.region,
                dnc,
            });
        }
        Ok(out)
    }

    /// The do-not-call list the contact's number is on, if any.
    pub fn contact_dnc(&self, campaign: CampaignId, id: ContactId) -> Result<Option<String>, StoreError> {
        let Some(v) = self.contacts.get(key(campaign, id))? else { return Ok(None) };
        let stored: StoredContact = decode(&v)?;
        Ok(self.dnc_by_hash(&stored.phone_hash)?.map(|e| e.list))
    }

    /// The campaign's contacts in committed lists.
    pub fn contact_count(&self, campaign: CampaignId) -> Result<usize, StoreError> {
        let mut n = 0;
        for kv in self.contacts.scan_prefix(campaign.to_be_bytes()) {
            let (_, v) = kv?;
            let stored: StoredContact = decode(&v)?;
            n += usize::from(self.visible(stored.list)?);
        }
        Ok(n)
    }
}

fn aad(k: &[u8]) -> Vec<u8> {
    let mut a = b"contacts/".to_vec();
    a.extend_from_slice(k);
    a
}
