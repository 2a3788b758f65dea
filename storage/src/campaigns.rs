//! Campaigns: a name, the configuration as its TOML text (parsed by the control plane, so
//! a record never holds a half-understood config), and the run state the operator set.

use crate::codec::{decode, encode, Record};
use crate::contacts::CampaignId;
use crate::{Store, StoreError};
use serde::{Deserialize, Serialize};

/// What the operator asked of the campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunState {
    /// Created, not started.
    Created,
    Running,
    Paused,
    /// Stopped by the operator: nothing more is dialled.
    Stopped,
    /// Every contact has its final disposition.
    Finished,
}

impl RunState {
    pub const fn label(self) -> &'static str {
        match self {
            RunState::Created => "created",
            RunState::Running => "running",
            RunState::Paused => "paused",
            RunState::Stopped => "stopped",
            RunState::Finished => "finished",
        }
    }
}

impl std::fmt::Display for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignRecord {
    pub id: CampaignId,
    pub name: String,
    /// The campaign's TOML configuration, as given.
    pub config: String,
    /// Where the configuration's relative paths (message WAVs, a profile) start.
    pub base_dir: String,
    pub state: RunState,
    pub created_unix_ms: u64,
}

impl Record for CampaignRecord {
    const TREE: &'static str = "campaigns";
    const VERSION: u8 = 1;
}

impl Store {
    /// Creates a campaign; its name must be new.
    pub fn create_campaign(
        &self,
        name: &str,
        config: &str,
        base_dir: &str,
        now_unix_ms: u64,
    ) -> Result<CampaignRecord, StoreError> {
        if self.campaign_by_name(name)?.is_some() {
            return Err(StoreError::Duplicate { what: "campaign name", row: 0 });
        }
        let id = self.db.generate_id()? + 1;
        let rec = CampaignRecord {
            id,
            name: name.to_string(),
            config: config.to_string(),
            base_dir: base_dir.to_string(),
            state: RunState::Created,
            created_unix_ms: now_unix_ms,
        };
        self.campaigns.insert(id.to_be_bytes(), encode(&rec)?)?;
        self.flush()?;
        Ok(rec)
    }

    pub fn campaign(&self, id: CampaignId) -> Result<Option<CampaignRecord>, StoreError> {
        self.campaigns.get(id.to_be_bytes())?.map(|v| decode(&v)).transpose()
    }

    pub fn campaign_by_name(&self, name: &str) -> Result<Option<CampaignRecord>, StoreError> {
        Ok(self.campaigns()?.into_iter().find(|c| c.name == name))
    }

    pub fn campaigns(&self) -> Result<Vec<CampaignRecord>, StoreError> {
        self.campaigns.iter().map(|kv| decode(&kv?.1)).collect()
    }

    /// Sets the run state, durably.
    pub fn set_run_state(&self, id: CampaignId, state: RunState) -> Result<CampaignRecord, StoreError> {
        let mut rec = self.campaign(id)?.ok_or(StoreError::NotFound { what: "campaign", id })?;
        rec.state = state;
        self.campaigns.insert(id.to_be_bytes(), encode(&rec)?)?;
        self.flush()?;
        Ok(rec)
    }

    /// Replaces the configuration text (validated by the caller), durably.
    pub fn set_campaign_config(&self, id: CampaignId, config: &str) -> Result<(), StoreError> {
        let mut rec = self.campaign(id)?.ok_or(StoreError::NotFound { what: "campaign", id })?;
        rec.config = config.to_string();
        self.campaigns.insert(id.to_be_bytes(), encode(&rec)?)?;
        self.flush()
    }
}
