//! Batch bookkeeping (issue 4): `cargo bench --bench batch`.
//!
//! The cost of counting one more message must not grow with the sender's history: the same
//! measurement after 10, 10,000 and 100,000 earlier messages from the sender (all inside the
//! windows, over hundreds of recipient domains) should stay flat — O(1) per message.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use mailbrake::batch::Batches;
use mailbrake::envelope::Envelope;
use mailbrake::policy::{Policy, WindowRule};
use std::hint::black_box;
use std::time::Duration;

fn envelope(i: u64) -> Envelope {
    Envelope {
        mail_from: "noreply@portal.example.jp".into(),
        rcpt_to: vec![format!("learner{i}@company{}.example", i % 306)],
        smtputf8: false,
        client_ip: "127.0.0.1".parse().unwrap(),
        helo: "bench".into(),
        auth_user: None,
        tls: false,
    }
}

fn bench(c: &mut Criterion) {
    let mut policy = Policy::builtin().unwrap();
    // Limits out of reach: only the bookkeeping is measured, nothing trips.
    policy.sender.windows = ["10m", "1h", "1d"]
        .iter()
        .map(|w| WindowRule {
            window: humantime::parse_duration(w).unwrap(),
            max_messages: u64::MAX,
            max_recipients: u64::MAX,
            max_domains: u64::MAX,
        })
        .collect();
    policy.sender.surge.min_history_hours = u32::MAX;
    let mut g = c.benchmark_group("batch/observe_one_message");
    for history in [10u64, 10_000, 100_000] {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let batches = Batches::open(&db).unwrap();
        let t0 = 1_800_000_000u64;
        // The history, spread over the last ten minutes (inside every window).
        for i in 0..history {
            batches.observe(
                &policy,
                &envelope(i),
                &[i, i + 1],
                &[],
                t0 + i * 600 / history,
            );
        }
        let mut i = history;
        g.bench_with_input(BenchmarkId::from_parameter(history), &history, |b, _| {
            b.iter(|| {
                i += 1;
                black_box(batches.observe(&policy, &envelope(i), &[i, i + 1], &[], t0 + 600));
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5));
    targets = bench
}
criterion_main!(benches);
