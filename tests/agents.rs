//! Agents' phones against waihu: a real softphone (Debian's baresip) registers with digest
//! auth, a wrong password is refused, un-REGISTER removes the binding, and a phone that
//! vanishes (SIGKILL) expires on time. Skips, loudly, when baresip is not installed
//! (`scripts/deps.sh` installs it).

use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;
use waihu_actors::agent::actor::Connect;
use waihu_sip::agent::{AgentConfig, SipAgent};
use waihu_sip::registrar::{ha1, Event, RegistrarConfig};
use waihu_tests::baresip::{self, Phone, PhoneConfig};

fn skip() -> bool {
    if baresip::available() {
        return false;
    }
    eprintln!("SKIPPED: baresip is not installed (scripts/deps.sh installs baresip-core)");
    true
}

async fn next_event(rx: &mut UnboundedReceiver<Event>, within: Duration) -> Option<Event> {
    tokio::time::timeout(within, rx.recv()).await.ok().flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_registers_with_digest_auth_unregisters_and_expires() {
    if skip() {
        return;
    }
    let reg = RegistrarConfig { realm: "waihu.test".into(), min_expires: 2, ..RegistrarConfig::default() };
    let sip = SipAgent::start(AgentConfig { registrar: Some(reg), ..AgentConfig::default() }).await.expect("SIP agent");
    let registry = sip.registry().expect("the agent serves REGISTER");
    registry.set_user("agent1", &ha1("agent1", "waihu.test", "secret"));
    registry.set_user("agent2", &ha1("agent2", "waihu.test", "right"));
    let mut events = registry.subscribe();
    let dir = tempfile::tempdir().expect("temp dir");
    let phone = |name: &str, pass: &str| PhoneConfig {
        user: name.into(),
        password: pass.into(),
        registrar: sip.local_addr(),
        regint: 3,
        mic: baresip::tone(440.0, 1.0, 1.0),
    };

    let p1 = Phone::start(&dir.path().join("a1"), &phone("agent1", "secret"));
    match next_event(&mut events, Duration::from_secs(10)).await {
        Some(Event::Registered { user, contact }) => {
            assert_eq!(user, "agent1");
            assert!(contact.contains(&format!("127.0.0.1:{}", p1.sip_port)), "{contact}");
        }
        other => panic!("agent1 did not register: {other:?}\n{}", p1.log()),
    }
    assert_eq!(registry.contacts("agent1").len(), 1);

    // A wrong password: 403, no binding.
    let p2 = Phone::start(&dir.path().join("a2"), &phone("agent2", "wrong"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(registry.contacts("agent2").is_empty());
    assert!(p2.log().contains("403"), "baresip should log the 403:\n{}", p2.log());
    p2.kill();

    // Quit: baresip un-REGISTERs (its un-REGISTER carries credentials after a challenge).
    // Refreshes of agent1 may come first; skip them.
    p1.quit();
    let mut gone = None;
    while let Some(e) = next_event(&mut events, Duration::from_secs(8)).await {
        if matches!(e, Event::Unregistered { .. } | Event::Expired { .. }) {
            gone = Some(e);
            break;
        }
    }
    assert_eq!(gone, Some(Event::Unregistered { user: "agent1".into() }));
    assert!(registry.contacts("agent1").is_empty());

    // A phone that vanishes: no un-REGISTER; the binding expires after its 3 s.
    let p3 = Phone::start(&dir.path().join("a3"), &phone("agent1", "secret"));
    assert!(
        matches!(next_event(&mut events, Duration::from_secs(10)).await, Some(Event::Registered { .. })),
        "{}",
        p3.log()
    );
    let killed = std::time::Instant::now();
    p3.kill();
    let mut expired = None;
    while let Some(e) = next_event(&mut events, Duration::from_secs(8)).await {
        if !matches!(e, Event::Registered { .. }) {
            expired = Some(e);
            break;
        }
    }
    assert_eq!(expired, Some(Event::Expired { user: "agent1".into() }));
    assert!(killed.elapsed() <= Duration::from_secs(5), "expired after {:?}", killed.elapsed());
    sip.shutdown();
}

/// SIPp as the customer's signalling only (its SDP names `media_port`): one call.
fn sipp_customer(dir: &std::path::Path, media_port: u16) -> (std::process::Child, u16) {
    let scenario = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sipp/uas_customer.xml");
    let port = waihu_tests::free_udp_port();
    let log = std::fs::File::create(dir.join("sipp.out")).expect("SIPp log");
    let child = std::process::Command::new("sipp")
        .current_dir(dir)
        .args(["-sf", &scenario.display().to_string(), "-i", "127.0.0.1", "-p", &port.to_string()])
        .args(["-mp", &waihu_tests::free_udp_port().to_string(), "-nostdin", "-m", "1"])
        .args(["-key", "customer_rtp", &media_port.to_string()])
        .args(["-timeout", "60s", "-timeout_error"])
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("SIPp starts (scripts/deps.sh installs sip-tester)");
    std::thread::sleep(Duration::from_millis(300));
    (child, port)
}

fn ulaw(pcm: &[i16]) -> Vec<u8> {
    pcm.iter().map(|&s| waihu_engine::codec::g711::ulaw_encode(s)).collect()
}

/// On demand: a live customer (SIPp signalling, the test's own RTP peer streaming a human
/// greeting and then a 1 kHz tone) is detected human, routed to the one available agent,
/// whose registered baresip is called with auto-answer headers on the customer's shard and
/// bridged. Checked by content: baresip heard the customer's 1 kHz, the customer heard
/// baresip's 440 Hz. Then the customer hangs up, the agent's leg is hung up, and the agent
/// goes through wrap-up back to available.
#[test]
fn on_demand_a_live_customer_reaches_the_agents_baresip_with_audio_both_ways() {
    route_one_call(Connect::OnDemand, 1, &["available", "reserved", "ringing", "on-call", "wrap-up", "available"]);
}

/// Persistent session: at login waihu calls baresip once and the leg stays up (on shard 1);
/// the customer's leg is on shard 0, so the bridge crosses shards. Audio is checked both
/// ways as on demand, and the session outlives the customer's call.
#[test]
fn persistent_session_bridges_a_customer_across_shards_with_audio_both_ways() {
    route_one_call(Connect::Persistent, 0, &["available", "reserved", "on-call", "wrap-up", "available"]);
}

fn route_one_call(connect: Connect, customer_shard: usize, expect_states: &[&str]) {
    use actix::Actor;
    use std::cell::RefCell;
    use std::rc::Rc;
    use std::sync::Arc;
    use std::time::Instant;
    use waihu_actors::agent::actor::{AgentActor, AgentEvent, AgentSpec, Login};
    use waihu_actors::agent::{AgentLimits, AgentState};
    use waihu_actors::call::{CallActor, CallCommand, CallEnv, CallSpec, Command, FlowConfig, HangupOn, Progress};
    use waihu_actors::router::actor::{CallOver, Customer, Enqueue, RouterActor, RouterEvent};
    use waihu_actors::router::{LiveCall, Membership};
    use waihu_engine::worker::{MediaPlane, ShardConfig};
    use waihu_model::{AnsweredBy, CallRecord};
    use waihu_sip::trunk::TrunkConfig;

    if skip() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let reg = RegistrarConfig { realm: "waihu.test".into(), min_expires: 2, ..RegistrarConfig::default() };
    let sip =
        rt.block_on(SipAgent::start(AgentConfig { registrar: Some(reg), ..AgentConfig::default() })).expect("SIP");
    let registry = sip.registry().expect("registrar");
    registry.set_user("agent1", &ha1("agent1", "waihu.test", "secret"));
    let mut reg_events = registry.subscribe();
    let plane =
        MediaPlane::spawn(2, ShardConfig { ports: 47_000..47_400, ..ShardConfig::default() }).expect("media plane");
    let env = CallEnv { sip: sip.clone(), plane: Arc::new(plane) };

    let phone = Phone::start(
        &dir.path().join("agent1"),
        &PhoneConfig {
            user: "agent1".into(),
            password: "secret".into(),
            registrar: sip.local_addr(),
            regint: 60,
            mic: baresip::tone(440.0, 20.0, 60.0),
        },
    );
    let registered = rt.block_on(next_event(&mut reg_events, Duration::from_secs(10)));
    assert!(matches!(registered, Some(Event::Registered { .. })), "{registered:?}\n{}", phone.log());

    // The customer: a human greeting, then 6 s of 1 kHz, then silence.
    let mut customer_audio = waihu_tests::sample_g711("call_04.wav", true);
    customer_audio.extend(ulaw(&baresip::tone(1000.0, 6.0, 0.0)));
    let peer = waihu_tests::rtp_peer::RtpPeer::start(customer_audio, Duration::from_secs(45));
    let (mut sipp, sipp_port) = sipp_customer(dir.path(), peer.port);

    let agent_events: Rc<RefCell<Vec<AgentEvent>>> = Rc::default();
    let router_events: Rc<RefCell<Vec<RouterEvent>>> = Rc::default();
    let customer_record: Rc<RefCell<Option<CallRecord>>> = Rc::default();
    let system = actix::System::new();
    let (ae, re, cr) = (agent_events.clone(), router_events.clone(), customer_record.clone());
    system.block_on(async move {
        let r = re.clone();
        let router = RouterActor::new(Box::new(move |e| r.borrow_mut().push(e.clone()))).start();
        let spec = AgentSpec {
            id: 1,
            phone_user: "agent1".into(),
            pools: vec![Membership { pool: 0, level: 0 }],
            limits: AgentLimits { wrap_up: Duration::from_secs(1), ..AgentLimits::default() },
            connect,
        };
        let a = ae.clone();
        let agent = AgentActor::new(
            spec,
            env.clone(),
            registry.clone(),
            router.clone(),
            Box::new(move |e| a.borrow_mut().push(e.clone())),
        )
        .start();
        agent.do_send(Login);
        if connect == Connect::Persistent {
            let up = wait_until(Duration::from_secs(10), || {
                ae.borrow().iter().any(|e| matches!(e, AgentEvent::Changed { to: AgentState::Available, .. }))
            })
            .await;
            assert!(up, "the session did not come up: {:?}", ae.borrow());
        }

        let me: Rc<RefCell<Option<actix::Addr<CallActor>>>> = Rc::default();
        let (m, rtr) = (me.clone(), router.clone());
        let progress = Box::new(move |id, p: &Progress| {
            if let Progress::Amd { answered_by: AnsweredBy::Human, .. } = p {
                let now = Instant::now();
                let Some(addr) = m.borrow().clone() else { return };
                let call = LiveCall {
                    call: id,
                    pool: 0,
                    priority: 0,
                    min_level: 0,
                    for_agent: None,
                    since: now,
                    deadline: now + Duration::from_secs(2),
                };
                rtr.do_send(Enqueue(Customer { call, commands: addr.recipient(), shard: customer_shard }));
            }
        });
        let (c, rtr) = (cr.clone(), router.clone());
        let record = Box::new(move |rec: CallRecord| {
            rtr.do_send(CallOver { call: rec.id });
            *c.borrow_mut() = Some(rec);
        });
        let flow = FlowConfig {
            id: 1,
            target: format!("sip:+8613800000001@127.0.0.1:{sipp_port}"),
            hangup_on: HangupOn::Machine,
            safe_harbour: Some(baresip::tone(600.0, 1.0, 0.0).into()),
            max_duration: Duration::from_secs(40),
            ..FlowConfig::default()
        };
        let spec = CallSpec {
            flow,
            trunk: Arc::new(TrunkConfig::direct("127.0.0.1", sipp_port)),
            shard: Some(1),
            call_id: None,
        };
        let addr = CallActor::start(env.clone(), spec, progress, record).await.expect("customer call starts");
        *me.borrow_mut() = Some(addr.clone());

        let connected = wait_until(Duration::from_secs(20), || {
            ae.borrow().iter().any(|e| matches!(e, AgentEvent::Connected { .. }))
        })
        .await;
        assert!(connected, "no agent connected: router {:?}, agent {:?}", re.borrow(), ae.borrow());
        // The rest of the greeting and the 1 kHz tone reach the agent; then the customer
        // hangs up.
        actix::clock::sleep(Duration::from_secs(10)).await;
        addr.do_send(CallCommand(Command::Hangup));
        let back = wait_until(Duration::from_secs(15), || {
            ae.borrow().iter().any(|e| {
                matches!(e, AgentEvent::Changed { from: AgentState::WrapUp { .. }, to: AgentState::Available, .. })
            }) && (connect == Connect::Persistent
                || ae.borrow().iter().any(|e| matches!(e, AgentEvent::LegRecord { .. })))
                && cr.borrow().is_some()
        })
        .await;
        assert!(back, "the agent did not come back: {:?}; customer record: {:?}", ae.borrow(), cr.borrow());
    });
    let heard_by_customer = peer.finish();
    let sipp_code = waihu_tests::wait_child(&mut sipp, Duration::from_secs(10));
    let heard_by_agent = phone.heard();
    phone.quit();

    let events = agent_events.borrow();
    let states: Vec<&str> = events
        .iter()
        .filter_map(|e| if let AgentEvent::Changed { to, .. } = e { Some(to.label()) } else { None })
        .collect();
    assert_eq!(states, expect_states, "{events:?}");
    if connect == Connect::Persistent {
        assert!(
            !events.iter().any(|e| matches!(e, AgentEvent::LegRecord { .. })),
            "the session must outlive the call: {events:?}"
        );
    }
    let tta = events.iter().find_map(|e| {
        if let AgentEvent::Connected { time_to_agent, .. } = e {
            Some(*time_to_agent)
        } else {
            None
        }
    });
    eprintln!(
        "{connect:?}, customer on shard {customer_shard}: time from the AMD human decision to the bridge {tta:?}"
    );
    let rec = customer_record.borrow().clone().expect("the customer's record");
    assert_eq!(rec.answered_by, Some(AnsweredBy::Human), "{rec:?}");
    assert_eq!(
        sipp_code,
        Some(0),
        "SIPp judged the customer's call bad: {}",
        std::fs::read_to_string(dir.path().join("sipp.out")).unwrap_or_default()
    );

    let agent_pcm = heard_by_agent.concat();
    let to_agent = baresip::tone_share(&agent_pcm, 1000.0);
    let to_customer = baresip::tone_share(&heard_by_customer, 440.0);
    eprintln!("agent heard 1 kHz at {to_agent:.3}; customer heard 440 Hz at {to_customer:.3}");
    assert!(
        to_agent > 0.9,
        "baresip did not hear the customer's 1 kHz tone ({to_agent:.3}; {} samples)",
        agent_pcm.len()
    );
    assert!(
        to_customer > 0.9,
        "the customer did not hear baresip's 440 Hz tone ({to_customer:.3}; {} samples)",
        heard_by_customer.len()
    );
    // And the check discriminates: the other tone is not there.
    assert!(baresip::tone_share(&agent_pcm, 440.0) < 0.1);
    assert!(baresip::tone_share(&heard_by_customer, 1000.0) < 0.1);
    sip.shutdown();
    drop(rt);
}

/// Polls `done` every 20 ms on the actix system for up to `limit`.
async fn wait_until(limit: Duration, done: impl Fn() -> bool) -> bool {
    let end = std::time::Instant::now() + limit;
    while std::time::Instant::now() < end {
        if done() {
            return true;
        }
        actix::clock::sleep(Duration::from_millis(20)).await;
    }
    done()
}
