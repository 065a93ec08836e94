//! Memory of the batch state for 100,000 active senders (issue 4: under 200 MB).
//! `cargo bench --bench senders_memory` prints the figures.
//!
//! Each sender sends 5 messages to 5 different domains within the windows, so every window
//! of every sender holds state (the worst case for "active"); then the state is written to
//! sled once, as the periodic snapshot does.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use mailbrake::batch::Batches;
use mailbrake::envelope::Envelope;
use mailbrake::policy::Policy;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() {
    const SENDERS: u64 = 100_000;
    let policy = Policy::builtin().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new()
        .path(dir.path())
        .cache_capacity(64 * 1024 * 1024)
        .open()
        .unwrap();
    let batches = Batches::open(&db).unwrap();
    let before = rss_kib();
    let t0 = 1_800_000_000u64;
    let start = std::time::Instant::now();
    for s in 0..SENDERS {
        for m in 0..5u64 {
            let env = Envelope {
                mail_from: format!("user{s}@corp{}.example.co.jp", s % 50),
                rcpt_to: vec![format!("x{m}@partner{}.example", (s + m) % 1000)],
                smtputf8: false,
                client_ip: "127.0.0.1".parse().unwrap(),
                helo: "bench".into(),
                auth_user: None,
                tls: false,
            };
            batches.observe(&policy, &env, &[s * 10 + m], &[], t0 + m * 60);
        }
    }
    let observed = start.elapsed();
    let after = rss_kib();
    let start = std::time::Instant::now();
    let written = batches.snapshot(t0 + 300, u64::MAX);
    let snap = start.elapsed();
    let after_snapshot = rss_kib();
    println!(
        "{} senders active, {} messages: {:.2} s ({:.1} µs per message)",
        batches.active_senders(),
        SENDERS * 5,
        observed.as_secs_f64(),
        observed.as_secs_f64() * 1e6 / (SENDERS * 5) as f64
    );
    println!(
        "batch state in memory: {:.1} MiB ({:.0} bytes per sender; target < 200 MB for 100,000)",
        (after - before) as f64 / 1024.0,
        (after - before) as f64 * 1024.0 / SENDERS as f64
    );
    println!(
        "snapshot of {written} senders to sled: {:.2} s; RSS after it {:.1} MiB above the start (sled's page cache included)",
        snap.as_secs_f64(),
        after_snapshot.saturating_sub(before) as f64 / 1024.0
    );
}
