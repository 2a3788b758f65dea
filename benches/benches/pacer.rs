//! One predictive pacer tick on a big floor: 500 agents (talking, in wrap-up, idle) and
//! 2,500 calls in flight, with warmed-up models and room under the abandon cap, so the
//! whole forecast runs; and the same tick with its launches taken from a campaign of
//! 10,000 queued contacts (hopper, calling rules, attempt state). Run:
//! `cargo bench -p waihu-benches --bench pacer`. Results: docs/benchmarks.md.

use chrono::{DateTime, Utc};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};
use waihu_actors::call::KeepaliveMode;
use waihu_actors::campaign::machine::Input as CampaignInput;
use waihu_actors::campaign::retry::RetryPolicy;
use waihu_actors::campaign::{Campaign, CampaignConfig, ModeName};
use waihu_actors::compliance::Profile;
use waihu_actors::pacing::{AgentPhase, Input, Outcome, Output, Pacer, PacerConfig};
use waihu_sip::trunk::TrunkConfig;
use waihu_storage::{ContactMeta, ContactState, RunState};

fn floor(agents: u32, in_flight: u64) -> (Pacer, Instant) {
    let t0 = Instant::now();
    let mut p = Pacer::new(PacerConfig::default(), 1, t0);
    let mut now = t0;
    for a in 0..agents {
        p.handle_input(Input::Agent { agent: a, phase: AgentPhase::Idle }, now);
    }
    // Ten minutes of history: 6,000 calls, one in six a person, connected.
    for c in 0..6_000u64 {
        let outcome = if c % 6 == 0 { Outcome::Human } else { Outcome::NoConnect };
        p.handle_input(Input::Dialled { call: c }, now);
        p.handle_input(Input::Resolved { call: c, outcome }, now + Duration::from_secs(10 + c % 15));
        p.handle_input(Input::Connected { call: c }, now + Duration::from_secs(10 + c % 15));
        now += Duration::from_millis(100);
    }
    // Agents: most talking for up to 5 min, some in wrap-up, a few idle.
    for a in 0..agents {
        let phase = match a % 25 {
            0 => AgentPhase::Idle,
            1..=4 => AgentPhase::WrapUp,
            _ => AgentPhase::Talking,
        };
        p.handle_input(Input::Agent { agent: a, phase }, now - Duration::from_secs(u64::from(a) % 300));
    }
    for c in 0..in_flight {
        p.handle_input(Input::Dialled { call: 1_000_000 + c }, now - Duration::from_millis(c * 12 % 30_000));
    }
    p.handle_timeout(now);
    (p, now + Duration::from_millis(500))
}

fn tick(c: &mut Criterion) {
    let (p, now) = floor(500, 2_500);
    assert!(!p.status().guarded, "the bench must run the forecast, not the fallback");
    c.bench_function("pacer_tick_500_agents_2500_calls", |b| {
        b.iter_batched(
            || p.clone(),
            |mut p| {
                p.handle_timeout(black_box(now));
                black_box(p.poll_output())
            },
            BatchSize::LargeInput,
        )
    });
}

/// A campaign with `n` contacts due now, inside calling hours, just loaded.
fn campaign(n: u64) -> (Campaign, DateTime<Utc>) {
    let now = DateTime::parse_from_rfc3339("2026-07-15T14:00:00Z").map(|t| t.with_timezone(&Utc)).unwrap_or_default();
    let cfg = CampaignConfig {
        mode: ModeName::Predictive,
        lines: 5_000,
        profile: Profile::builtin("us_tsr").unwrap_or_else(|e| panic!("{e}")),
        default_timezone: Some(chrono_tz::America::New_York),
        message: None,
        safe_harbour: Some(vec![0i16; 800].into()),
        ring_timeout: Duration::from_secs(20),
        max_duration: Duration::from_secs(600),
        amd: true,
        keepalive: KeepaliveMode::Auto,
        amd_false_positive_rate: 0.0,
        amd_review_fraction: 0.0,
        amd_review_seconds: 6,
        wrap_up: Duration::from_secs(10),
        dispositions: waihu_actors::agent::wrapup::default_codes().into(),
        script: None,
        routing: Default::default(),
        skill: None,
        min_skill_level: 0,
        trunks: vec![Arc::new(TrunkConfig::direct("127.0.0.1", 5060))],
        retry: RetryPolicy::default(),
    };
    let contacts = (0..n)
        .map(|id| {
            let meta = ContactMeta {
                id,
                priority: (id % 5) as i32,
                timezone: None,
                zones: Vec::new(),
                region: None,
                dnc: None,
            };
            (meta, ContactState::default())
        })
        .collect();
    (Campaign::new(1, Arc::new(cfg), RunState::Running, contacts, &[], now), now)
}

fn tick_with_hopper(c: &mut Criterion) {
    // Fewer calls in flight than above, so that the tick launches calls.
    let (p, now) = floor(500, 300);
    let mut probe = p.clone();
    probe.handle_timeout(now);
    let launches: u32 = std::iter::from_fn(|| probe.poll_output()).map(|Output::Dial { count }| count).sum();
    assert!(launches > 0, "the bench must take calls from the hopper");
    eprintln!("the tick launches {launches} calls, each taken from the hopper");
    c.bench_function("pacer_tick_500_agents_300_calls_10000_queued_contacts", |b| {
        b.iter_batched(
            || (p.clone(), campaign(10_000)),
            |(mut p, (mut camp, wall))| {
                p.handle_timeout(black_box(now));
                let mut dialled = 0u64;
                while let Some(Output::Dial { count }) = p.poll_output() {
                    for _ in 0..count {
                        dialled += 1;
                        camp.handle_input(CampaignInput::Line { attempt: dialled, trunk: 0 }, wall);
                    }
                }
                black_box(dialled);
                // Returned, so dropping the campaign is not timed.
                camp
            },
            BatchSize::LargeInput,
        )
    });
}

criterion_group!(benches, tick, tick_with_hopper);
criterion_main!(benches);
