//! One predictive pacer tick on a big floor: 500 agents (talking, in wrap-up, idle) and
//! 2,500 calls in flight, with warmed-up models and room under the abandon cap, so the
//! whole forecast runs. Run: `cargo bench -p waihu-benches --bench pacer`. Results:
//! docs/benchmarks.md.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use std::hint::black_box;
use std::time::{Duration, Instant};
use waihu_actors::pacing::{AgentPhase, Input, Outcome, Pacer, PacerConfig};

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

criterion_group!(benches, tick);
criterion_main!(benches);
