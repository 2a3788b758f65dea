//! The agent floor `serve` runs: the router, one `AgentActor` per agent in the store, the
//! registrar's view of their phones (a phone that registers logs its agent in; one that
//! expires or un-registers logs it out), and where each agent's changes go: the store
//! (state and log, through the group commit) and the pacers of the agent's campaigns.

use crate::agent_cmd::REALM;
use actix::{Actor, Addr};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};
use waihu_actors::agent::actor::{AgentActor, AgentEvent, AgentSpec, Connect, Login, Logout, PhoneGone};
use waihu_actors::agent::{AgentLimits, AgentState, PhoneLoss};
use waihu_actors::call::CallEnv;
use waihu_actors::campaign::actor::{AgentPhaseChanged, CampaignActor};
use waihu_actors::pacing::AgentPhase;
use waihu_actors::router::actor::RouterActor;
use waihu_actors::router::Membership;
use waihu_sip::registrar::Event;
use waihu_storage::{AgentStatus, Store, Write};
use waihu_storage::{LegRecord, LegRole};

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// What the pacer needs to know of an agent's state.
pub fn phase_of(s: &AgentState) -> AgentPhase {
    match s {
        AgentState::LoggedOut | AgentState::Paused { .. } => AgentPhase::Offline,
        AgentState::Available => AgentPhase::Idle,
        AgentState::Reserved { .. } | AgentState::Ringing { .. } | AgentState::OnCall { .. } => AgentPhase::Talking,
        AgentState::WrapUp { .. } => AgentPhase::WrapUp,
    }
}

/// Time from the AMD human decision to the bridge, per connected call (µs).
pub type Connects = Rc<RefCell<Vec<u64>>>;

#[derive(Debug)]
pub struct Floor {
    pub agents: usize,
    pub connects: Connects,
    addrs: Vec<Addr<AgentActor>>,
}

impl Floor {
    /// Logs every agent out: persistent sessions are hung up (BYE), so no phone is left on
    /// a call nobody carries.
    pub fn logout_all(&self) {
        for a in &self.addrs {
            a.do_send(Logout);
        }
    }
}

/// Starts the floor on the current actix system. `campaigns` maps campaign names to their
/// id (the router pool) and actor.
pub fn start(
    store: &Store,
    env: &CallEnv,
    router: Addr<RouterActor>,
    campaigns: &HashMap<String, (u64, Addr<CampaignActor>, Option<String>)>,
) -> anyhow::Result<Floor> {
    let Some(registry) = env.sip.registry() else { anyhow::bail!("the SIP agent serves no registrar") };
    let records = store.agents()?;
    let connects: Connects = Rc::default();
    let mut by_user: HashMap<String, Addr<AgentActor>> = HashMap::new();
    let mut addrs = Vec::new();
    for rec in &records {
        if rec.realm != REALM {
            eprintln!(
                "waihu serve: agent {:?}: realm {:?} is not {REALM:?}; its phone cannot register",
                rec.name, rec.realm
            );
        }
        registry.set_user(&rec.phone_user, &rec.ha1);
        // Calls do not survive a restart: every agent starts logged out, and its phone's
        // next REGISTER logs it in again.
        let was = store.agent_status(rec.id)?;
        if let Some(w) = was.clone().filter(|s| s.state != "logged-out") {
            let status = AgentStatus {
                state: "logged-out".into(),
                call: None,
                reason: Some("restart".into()),
                since_unix_ms: unix_ms(),
                ..w
            };
            let _ = store.submit(Write::AgentStatus { agent: rec.id, status });
        }
        let mine: Vec<(u64, Addr<CampaignActor>, Option<String>)> =
            rec.campaigns.iter().filter_map(|c| campaigns.get(c).cloned()).collect();
        // In a campaign routed by skill, the agent's level is their level in that skill (0
        // without it: they take only the calls that ask for no level).
        let level = |skill: &Option<String>| {
            skill.as_ref().and_then(|k| rec.skills.iter().find(|(s, _)| s == k)).map_or(0, |(_, l)| *l)
        };
        let spec = AgentSpec {
            id: rec.id,
            phone_user: rec.phone_user.clone(),
            pools: mine.iter().map(|(id, _, skill)| Membership { pool: *id as u32, level: level(skill) }).collect(),
            limits: AgentLimits::default(),
            connect: if rec.connect == "persistent" { Connect::Persistent } else { Connect::OnDemand },
        };
        let (st, c, totals) =
            (store.clone(), connects.clone(), was.map(|s| (s.calls, s.talk_ms, s.wrap_ms)).unwrap_or_default());
        let sink = Box::new(move |e: &AgentEvent| match e {
            AgentEvent::Changed { agent, to, totals: now, .. } => {
                let status = AgentStatus {
                    state: to.label().into(),
                    call: to.call(),
                    reason: match to {
                        AgentState::Paused { reason } => Some(reason.clone()),
                        _ => None,
                    },
                    calls: totals.0 + now.calls,
                    talk_ms: totals.1 + now.talk_ms,
                    wrap_ms: totals.2 + now.wrap_ms,
                    since_unix_ms: unix_ms(),
                };
                let _ = st.submit(Write::AgentStatus { agent: *agent, status });
                for (_, campaign, _) in &mine {
                    campaign.do_send(AgentPhaseChanged { agent: *agent, phase: phase_of(to) });
                }
            }
            AgentEvent::Connected { time_to_agent, .. } => c.borrow_mut().push(time_to_agent.as_micros() as u64),
            // Every agent-side leg's record is kept, under the customer's call.
            AgentEvent::LegRecord { agent, call, record }
            | AgentEvent::MonitorRecord { agent, call, record }
            | AgentEvent::ThirdPartyRecord { agent, call, record } => {
                let role = match e {
                    AgentEvent::LegRecord { .. } => LegRole::Agent,
                    AgentEvent::MonitorRecord { .. } => LegRole::Supervisor,
                    _ => LegRole::ThirdParty,
                };
                let leg = LegRecord { customer: *call, agent: *agent, role, record: (**record).clone() };
                let _ = st.submit(Write::Leg(Box::new(leg)));
            }
            // The campaign stores the wrap-up itself.
            AgentEvent::WrappedUp { .. } => {}
        });
        let addr = AgentActor::new(spec, env.clone(), registry.clone(), router.clone(), sink).start();
        addrs.push(addr.clone());
        by_user.insert(rec.phone_user.clone(), addr);
    }
    let mut events = registry.subscribe();
    actix::spawn(async move {
        while let Some(e) = events.recv().await {
            let (user, msg) = match &e {
                Event::Registered { user, .. } => (user, None),
                Event::Unregistered { user } => (user, Some(PhoneLoss::Unregistered)),
                Event::Expired { user } => (user, Some(PhoneLoss::RegistrationExpired)),
            };
            let Some(agent) = by_user.get(user) else { continue };
            match msg {
                None => agent.do_send(Login),
                Some(why) => agent.do_send(PhoneGone(why)),
            }
        }
    });
    Ok(Floor { agents: records.len(), connects, addrs })
}
