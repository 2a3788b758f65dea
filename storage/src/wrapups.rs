//! What agents wrote after their calls (disposition code, notes, a follow-up, a callback),
//! and the records of the agent-side legs of customers' calls (the agent's phone leg, a
//! supervisor's monitoring leg), keyed by the customer's call so a call's report finds
//! every leg it had.

use crate::agents::AgentId;
use crate::codec::{decode, encode, Record};
use crate::contacts::key;
use crate::{CampaignId, ContactId, Store, StoreError};
use serde::{Deserialize, Serialize};
use waihu_model::CallRecord;

/// One call's wrap-up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrapUpRecord {
    pub campaign: CampaignId,
    /// The customer's call (its attempt id).
    pub call: u64,
    pub contact: Option<ContactId>,
    pub agent: AgentId,
    /// One of the campaign's disposition codes.
    pub code: String,
    pub notes: String,
    /// A follow-up for someone to act on (a letter to send, a complaint to pass on).
    pub follow_up: Option<String>,
    /// A callback asked for: when, and whether by this same agent.
    pub callback_unix_ms: Option<u64>,
    pub callback_same_agent: bool,
    pub at_unix_ms: u64,
}

impl Record for WrapUpRecord {
    const TREE: &'static str = "wrapups";
    const VERSION: u8 = 1;
}

/// Which side of a customer's call a leg was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LegRole {
    /// The agent's phone (an on-demand leg, or the persistent session's part in the call).
    Agent,
    /// A supervisor listening, whispering or barging.
    Supervisor,
    /// Someone the agent consulted or handed the customer to (a number, a colleague's phone).
    ThirdParty,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LegRecord {
    /// The customer's call the leg served.
    pub customer: u64,
    pub agent: AgentId,
    pub role: LegRole,
    pub record: CallRecord,
}

impl Record for LegRecord {
    const TREE: &'static str = "legs";
    const VERSION: u8 = 1;
}

impl Store {
    /// Writes a wrap-up (through the group commit: [`crate::Write::WrapUp`]). A second
    /// wrap-up of the same call replaces the first (the agent corrected it).
    pub(crate) fn put_wrap_up(&self, w: &WrapUpRecord) -> Result<(), StoreError> {
        self.wrapups.insert(key(w.campaign, w.call), encode(w)?)?;
        Ok(())
    }

    pub fn wrap_up(&self, campaign: CampaignId, call: u64) -> Result<Option<WrapUpRecord>, StoreError> {
        self.wrapups.get(key(campaign, call))?.map(|v| decode(&v)).transpose()
    }

    /// A campaign's wrap-ups, in call order.
    pub fn wrap_ups(&self, campaign: CampaignId) -> Result<Vec<WrapUpRecord>, StoreError> {
        self.wrapups.scan_prefix(campaign.to_be_bytes()).map(|kv| decode(&kv?.1)).collect()
    }

    /// Writes a leg's record (through the group commit: [`crate::Write::Leg`]).
    pub(crate) fn put_leg(&self, l: &LegRecord) -> Result<(), StoreError> {
        self.legs.insert(key(l.customer, l.record.id), encode(l)?)?;
        Ok(())
    }

    /// Every agent-side leg of customer call `customer`.
    pub fn legs_of(&self, customer: u64) -> Result<Vec<LegRecord>, StoreError> {
        self.legs.scan_prefix(customer.to_be_bytes()).map(|kv| decode(&kv?.1)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{KeySource, Write};

    #[test]
    fn wrap_ups_and_legs_are_durable_through_the_group_commit_and_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("dir");
        let w = WrapUpRecord {
            campaign: 7,
            call: 42,
            contact: Some(3),
            agent: 1,
            code: "callback".into(),
            notes: "客户要求明天上午回电".into(),
            follow_up: Some("send the brochure".into()),
            callback_unix_ms: Some(1_800_000_000_000),
            callback_same_agent: true,
            at_unix_ms: 5,
        };
        let leg = LegRecord {
            customer: 42,
            agent: 1,
            role: LegRole::Supervisor,
            record: CallRecord { id: 99, ..CallRecord::default() },
        };
        {
            let store = Store::open(dir.path(), KeySource::Hex("11".repeat(32))).expect("open");
            store.submit(Write::WrapUp(w.clone()));
            store.submit(Write::Leg(Box::new(leg.clone())));
            store.durable().recv().expect("commit thread").expect("durable");
        }
        let store = Store::open(dir.path(), KeySource::Hex("11".repeat(32))).expect("reopen");
        assert_eq!(store.wrap_up(7, 42).expect("read"), Some(w.clone()));
        assert_eq!(store.wrap_ups(7).expect("read"), vec![w]);
        assert!(store.wrap_ups(8).expect("read").is_empty());
        assert_eq!(store.legs_of(42).expect("read"), vec![leg]);
        assert!(store.legs_of(43).expect("read").is_empty());
    }
}
