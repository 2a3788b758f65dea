//! `waihu agent add|list`: the agents a `serve` routes live people to, and their phones'
//! credentials (kept as HA1, never the password).

use crate::campaign_cmd::{open_store, StoreArg};
use anyhow::{bail, Result};
use clap::Subcommand;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};
use waihu_sip::registrar::ha1;
use waihu_storage::AgentRecord;

/// The realm `serve`'s registrar challenges agents' phones with.
pub const REALM: &str = "waihu";

#[derive(Subcommand, Debug)]
pub enum AgentCmd {
    /// Add an agent and their phone's SIP account.
    Add {
        #[command(flatten)]
        store: StoreArg,
        /// The agent's name (unique).
        name: String,
        /// The phone's SIP password (only its digest hash is kept).
        #[arg(long)]
        password: String,
        /// The phone's SIP user; the name when not given.
        #[arg(long)]
        phone_user: Option<String>,
        /// on-demand (a call to the phone per customer) or persistent (one call at login,
        /// customers bridged into it).
        #[arg(long, default_value = "on-demand")]
        connect: String,
        /// A campaign the agent takes calls for (repeatable).
        #[arg(long = "campaign")]
        campaigns: Vec<String>,
        /// A skill with its level, NAME:LEVEL (0-9; repeatable).
        #[arg(long = "skill")]
        skills: Vec<String>,
    },
    /// The agents, with their last state.
    List {
        #[command(flatten)]
        store: StoreArg,
    },
}

fn skill(s: &str) -> Result<(String, u8)> {
    let (name, level) = s.split_once(':').unwrap_or((s, "5"));
    match level.parse::<u8>() {
        Ok(l) if l <= 9 && !name.is_empty() => Ok((name.to_string(), l)),
        _ => bail!("--skill {s:?}: expected NAME:LEVEL with a level 0-9"),
    }
}

pub fn run(cmd: AgentCmd) -> Result<ExitCode> {
    match cmd {
        AgentCmd::Add { store, name, password, phone_user, connect, campaigns, skills } => {
            if !matches!(connect.as_str(), "on-demand" | "persistent") {
                bail!("--connect {connect:?}: expected on-demand or persistent");
            }
            if password.len() < 8 {
                bail!("--password: at least 8 characters");
            }
            let skills = skills.iter().map(|s| skill(s)).collect::<Result<Vec<_>>>()?;
            let s = open_store(&store.store)?;
            for c in &campaigns {
                if s.campaign_by_name(c)?.is_none() {
                    bail!("no campaign {c:?} in {}", store.store.display());
                }
            }
            let user = phone_user.unwrap_or_else(|| name.clone());
            let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
            let rec = AgentRecord {
                id: 0,
                ha1: ha1(&user, REALM, &password),
                name,
                phone_user: user,
                realm: REALM.into(),
                connect,
                skills,
                campaigns,
                created_unix_ms: now,
            };
            let rec = s.add_agent(rec)?;
            println!(
                "agent {} (id {}) added; phone user {:?} registers to realm {REALM:?}",
                rec.name, rec.id, rec.phone_user
            );
            Ok(ExitCode::SUCCESS)
        }
        AgentCmd::List { store } => {
            let s = open_store(&store.store)?;
            for a in s.agents()? {
                let st = s.agent_status(a.id)?;
                let state = st.as_ref().map_or("logged-out".to_string(), |st| st.state.clone());
                let calls = st.as_ref().map_or(0, |st| st.calls);
                println!(
                    "{}\t{}\t{}\t{}\tcampaigns={}\tcalls={calls}",
                    a.id,
                    a.name,
                    a.connect,
                    state,
                    a.campaigns.join(",")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
