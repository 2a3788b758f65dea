//! The router's decisions on a big floor: 10,000 agents (each in one of 10 campaign pools
//! and two of 20 skills pools, with levels) and 1,000 live calls waiting. Two cases:
//! an agent comes free while 1,000 calls wait (it takes the best one of its pools), and a
//! live call arrives while agents are available (the pool's best agent takes it). Each
//! iteration makes the decision and then undoes it (the call is requeued, or the agent made
//! ready again), so it is two decisions; the figure in docs/benchmarks.md is per iteration.
//! Run: `cargo bench -p waihu-benches --bench router`.

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::time::{Duration, Instant};
use waihu_actors::router::{Input, LiveCall, Membership, Output, PoolConfig, ReadyAgent, Router, Strategy};

const AGENTS: u32 = 10_000;
const QUEUED: u64 = 1_000;
const CAMPAIGNS: u32 = 10;
const SKILLS: u32 = 20;

fn member(a: u32) -> Vec<Membership> {
    vec![
        Membership { pool: a % CAMPAIGNS, level: 0 },
        Membership { pool: CAMPAIGNS + a % SKILLS, level: (a % 10) as u8 },
        Membership { pool: CAMPAIGNS + (a / 7) % SKILLS, level: ((a / 3) % 10) as u8 },
    ]
}

fn ready(a: u32, t0: Instant) -> ReadyAgent {
    ReadyAgent {
        agent: a,
        pools: member(a),
        idle_since: t0 + Duration::from_micros(a as u64 * 37 % 100_000),
        talk_ms: (a as u64 * 7919) % 3_600_000,
        calls: a % 97,
    }
}

fn live(call: u64, pool: u32, min_level: u8, t0: Instant) -> LiveCall {
    let since = t0 + Duration::from_micros(call * 13);
    LiveCall {
        call,
        pool,
        priority: (call % 3) as u8,
        min_level,
        for_agent: None,
        since,
        deadline: since + Duration::from_secs(3600),
    }
}

fn pools(r: &mut Router, t0: Instant) {
    for p in 0..CAMPAIGNS {
        r.handle_input(
            Input::Pool { pool: p, config: PoolConfig { strategy: Strategy::LongestIdle, ring_all: 1 } },
            t0,
        );
    }
    for p in CAMPAIGNS..CAMPAIGNS + SKILLS {
        r.handle_input(Input::Pool { pool: p, config: PoolConfig { strategy: Strategy::Skills, ring_all: 1 } }, t0);
    }
}

fn assigned(r: &mut Router) -> (u64, u32) {
    let mut got = None;
    while let Some(o) = r.poll_output() {
        if let Output::Assign { call, agent, .. } = o {
            got = Some((call, agent));
        }
    }
    got.expect("the bench's decision assigns")
}

fn bench(c: &mut Criterion) {
    let t0 = Instant::now();
    let now = t0 + Duration::from_secs(1);

    // 1,000 calls wait (no agent is free); agents come free one at a time.
    let mut r = Router::new(t0);
    pools(&mut r, t0);
    for call in 0..QUEUED {
        let pool = (call % (CAMPAIGNS + SKILLS) as u64) as u32;
        r.handle_input(Input::Enqueue(live(call, pool, (call % 5) as u8, t0)), t0);
    }
    assert_eq!(r.waiting(), QUEUED as usize);
    let mut next = 0u32;
    c.bench_function("router: agent frees, 1,000 calls waiting", |b| {
        b.iter(|| {
            let a = next % AGENTS;
            next += 1;
            r.handle_input(Input::Ready(ready(a, t0)), now);
            let (call, _) = assigned(&mut r);
            let pool = (call % (CAMPAIGNS + SKILLS) as u64) as u32;
            r.handle_input(Input::Enqueue(live(call, pool, (call % 5) as u8, t0)), now);
            black_box(r.poll_output());
        })
    });

    // 10,000 agents available, and 1,000 calls waiting for a level nobody has; live calls
    // arrive one at a time.
    let mut r = Router::new(t0);
    pools(&mut r, t0);
    for a in 0..AGENTS {
        r.handle_input(Input::Ready(ready(a, t0)), t0);
    }
    for call in 0..QUEUED {
        r.handle_input(Input::Enqueue(live(1_000_000 + call, CAMPAIGNS + (call % SKILLS as u64) as u32, 200, t0)), t0);
    }
    assert_eq!((r.waiting(), r.available()), (QUEUED as usize, AGENTS as usize));
    let mut call = 0u64;
    c.bench_function("router: live call arrives, 10,000 agents free", |b| {
        b.iter(|| {
            call += 1;
            let pool = (call % (CAMPAIGNS + SKILLS) as u64) as u32;
            r.handle_input(Input::Enqueue(live(call, pool, (call % 5) as u8, t0)), now);
            let (_, agent) = assigned(&mut r);
            r.handle_input(Input::Ready(ready(agent, t0)), now);
            black_box(r.poll_output());
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
