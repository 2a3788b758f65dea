//! Agents' phones against waihu: a real softphone (Debian's baresip) registers with digest
//! auth, a wrong password is refused, un-REGISTER removes the binding, and a phone that
//! vanishes (SIGKILL) expires on time. Skips, loudly, when baresip is not installed
//! (`scripts/deps.sh` installs it).

use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;
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
