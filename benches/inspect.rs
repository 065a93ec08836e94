//! Inspection speed (issue 3): `cargo bench --bench inspect`.
//!
//! - an ordinary 20 KB business mail without attachments (target: under 200 µs);
//! - the load benchmark's plain-text message at 10 KB, 100 KB and 1 MB (bytes/s);
//! - incident 3's workbook, 37,099 rows × 20 columns (target: under 1.5 s on one core).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::Duration;

#[path = "../tests/e2e/common/fixtures.rs"]
mod fixtures;
#[path = "load/message.rs"]
#[allow(dead_code)]
mod load_message;

use mailbrake::envelope::Envelope;
use mailbrake::inspect::inspect;
use mailbrake::policy::Policy;

fn envelope() -> Envelope {
    Envelope {
        mail_from: "sato@sample.example.co.jp".into(),
        rcpt_to: vec!["yamada@partner.example.jp".into()],
        smtputf8: false,
        client_ip: "127.0.0.1".parse().unwrap(),
        helo: "bench".into(),
        auth_user: None,
        tls: false,
    }
}

fn bench(c: &mut Criterion) {
    let policy = Policy::builtin().unwrap();
    let env = envelope();

    let ordinary = fixtures::ordinary_mail(20_000);
    assert!(inspect(&env, &ordinary, &policy).findings.is_empty());
    c.bench_function("inspect/ordinary_20kb_mail", |b| {
        b.iter(|| inspect(black_box(&env), black_box(&ordinary), &policy))
    });

    // The load benchmark's plain-text message (benches/load): the per-byte cost of a long body.
    let mut g = c.benchmark_group("inspect/load_message");
    for (name, size) in [
        ("10kb", 10 * 1024),
        ("100kb", 100 * 1024),
        ("1mb", 1024 * 1024),
    ] {
        let m = load_message::build(size);
        assert!(inspect(&env, &m, &policy).findings.is_empty());
        g.throughput(criterion::Throughput::Bytes(size as u64));
        g.bench_function(name, |b| {
            b.iter(|| inspect(black_box(&env), black_box(&m), &policy))
        });
    }
    g.finish();

    let xlsx = fixtures::incident3_xlsx(37_099);
    let msg = fixtures::with_attachments(
        &[
            ("From", "staff@recruit.example.co.jp"),
            ("To", "web@contractor.example.jp"),
            ("Subject", "data"),
        ],
        "統計データをお送りします。",
        &[(
            "会員データ.xlsx",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            &xlsx,
        )],
    );
    let r = inspect(&env, &msg, &policy);
    assert!(
        r.findings.iter().any(|f| f.count == Some(37_099)),
        "{:?}",
        r.findings
    );
    let mut g = c.benchmark_group("inspect/incident3");
    g.sample_size(10).measurement_time(Duration::from_secs(30));
    g.bench_function("xlsx_37099x20", |b| {
        b.iter(|| inspect(black_box(&env), black_box(&msg), &policy))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
