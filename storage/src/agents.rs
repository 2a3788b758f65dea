//! Agents: who they are (name, phone account, skills, campaigns), their phone credentials
//! as HA1 (what a digest check needs; never the password), their current state, and an
//! append-only log of every state change (the agent reports read it).

use crate::codec::{decode, encode, Record};
use crate::{Store, StoreError};
use serde::{Deserialize, Serialize};

pub type AgentId = u32;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRecord {
    pub id: AgentId,
    pub name: String,
    /// The phone's SIP user (its registrar account).
    pub phone_user: String,
    pub realm: String,
    /// MD5(user:realm:password), lowercase hex.
    pub ha1: String,
    /// `on-demand` or `persistent`.
    pub connect: String,
    /// Skill name and level (0-9).
    pub skills: Vec<(String, u8)>,
    /// Campaign names the agent takes calls for.
    pub campaigns: Vec<String>,
    pub created_unix_ms: u64,
}

impl Record for AgentRecord {
    const TREE: &'static str = "agents";
    const VERSION: u8 = 1;
}

/// Where an agent is, as the control plane last wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentStatus {
    /// The state's label (`available`, `on-call`, ...).
    pub state: String,
    pub call: Option<u64>,
    /// A pause's reason code.
    pub reason: Option<String>,
    pub calls: u32,
    pub talk_ms: u64,
    pub wrap_ms: u64,
    pub since_unix_ms: u64,
}

impl Record for AgentStatus {
    const TREE: &'static str = "agent_status";
    const VERSION: u8 = 1;
}

/// The log's key: time, agent, then a per-process sequence (two changes in one ms).
fn log_key(agent: AgentId, unix_ms: u64, seq: u64) -> [u8; 20] {
    let mut k = [0u8; 20];
    k[..8].copy_from_slice(&unix_ms.to_be_bytes());
    k[8..12].copy_from_slice(&agent.to_be_bytes());
    k[12..].copy_from_slice(&seq.to_be_bytes());
    k
}

impl Store {
    /// Adds an agent; the name and the phone user must be new. Durable on return.
    pub fn add_agent(&self, mut rec: AgentRecord) -> Result<AgentRecord, StoreError> {
        let all = self.agents()?;
        if all.iter().any(|a| a.name == rec.name) {
            return Err(StoreError::Duplicate { what: "agent name", row: 0 });
        }
        if all.iter().any(|a| a.phone_user == rec.phone_user) {
            return Err(StoreError::Duplicate { what: "agent phone user", row: 0 });
        }
        rec.id = u32::try_from(self.db.generate_id()? + 1).map_err(|_| StoreError::Refused("agent ids exhausted"))?;
        self.agents.insert(rec.id.to_be_bytes(), encode(&rec)?)?;
        self.flush()?;
        Ok(rec)
    }

    pub fn agents(&self) -> Result<Vec<AgentRecord>, StoreError> {
        self.agents.iter().map(|kv| decode(&kv?.1)).collect()
    }

    pub fn agent_by_name(&self, name: &str) -> Result<Option<AgentRecord>, StoreError> {
        Ok(self.agents()?.into_iter().find(|a| a.name == name))
    }

    pub fn agent_status(&self, id: AgentId) -> Result<Option<AgentStatus>, StoreError> {
        self.agent_status.get(id.to_be_bytes())?.map(|v| decode(&v)).transpose()
    }

    /// Writes the agent's state and appends it to the log (through the group commit:
    /// [`crate::Write::AgentStatus`]).
    pub(crate) fn put_agent_status(&self, agent: AgentId, status: &AgentStatus) -> Result<(), StoreError> {
        let v = encode(status)?;
        let seq = self.db.generate_id()?;
        self.agent_status.insert(agent.to_be_bytes(), v.as_slice())?;
        self.agent_log.insert(log_key(agent, status.since_unix_ms, seq), v)?;
        Ok(())
    }

    /// The state changes of one agent, oldest first.
    pub fn agent_log(&self, agent: AgentId) -> Result<Vec<AgentStatus>, StoreError> {
        let mut out = Vec::new();
        for kv in self.agent_log.iter() {
            let (k, v) = kv?;
            if k.len() == 20 && k[8..12] == agent.to_be_bytes() {
                out.push(decode(&v)?);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{KeySource, Write};

    fn rec(name: &str) -> AgentRecord {
        AgentRecord {
            id: 0,
            name: name.into(),
            phone_user: name.into(),
            realm: "waihu".into(),
            ha1: "00".repeat(16),
            connect: "on-demand".into(),
            skills: vec![("mandarin".into(), 7)],
            campaigns: vec!["c1".into()],
            created_unix_ms: 1,
        }
    }

    #[test]
    fn agents_and_their_state_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("dir");
        let key = KeySource::Hex("11".repeat(32));
        let id = {
            let s = Store::open(dir.path(), key.clone()).expect("open");
            let a = s.add_agent(rec("ann")).expect("add");
            assert!(matches!(s.add_agent(rec("ann")), Err(StoreError::Duplicate { .. })));
            for (i, state) in ["available", "on-call"].into_iter().enumerate() {
                let st = AgentStatus {
                    state: state.into(),
                    call: Some(9),
                    reason: None,
                    calls: 0,
                    talk_ms: 0,
                    wrap_ms: 0,
                    since_unix_ms: 10 + i as u64,
                };
                s.submit(Write::AgentStatus { agent: a.id, status: st }).recv().expect("reply").expect("durable");
            }
            a.id
        };
        let s = Store::open(dir.path(), key).expect("reopen");
        assert_eq!(s.agent_by_name("ann").expect("read").map(|a| a.skills), Some(vec![("mandarin".into(), 7)]));
        assert_eq!(s.agent_status(id).expect("read").map(|st| st.state), Some("on-call".into()));
        let log: Vec<String> = s.agent_log(id).expect("log").into_iter().map(|st| st.state).collect();
        assert_eq!(log, ["available", "on-call"]);
    }
}
