//! Peak memory while inspecting a 25 MB message (issue 3: under 10× its size).
//! `cargo bench --bench memory` — prints the figures; not a test, nothing is asserted
//! beyond the inspection result.
//!
//! Peak = the process high-water mark (VmHWM) after inspection minus the resident size
//! just before it (with the message already built and in memory).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/e2e/common/fixtures.rs"]
mod fixtures;

use mailbrake::envelope::Envelope;
use mailbrake::inspect::inspect;
use mailbrake::policy::Policy;

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() {
    // `cargo bench` passes --bench; any other argument is a filter we do not use.
    let policy = Policy::builtin().expect("policy");
    let env = Envelope {
        mail_from: "staff@example.co.jp".into(),
        rcpt_to: vec!["x@partner.example.jp".into()],
        smtputf8: false,
        client_ip: "127.0.0.1".parse().expect("ip"),
        helo: "bench".into(),
        auth_user: None,
        tls: false,
    };
    // Two large attachments: the incident-3 workbook and a member CSV, padded to 25 MB
    // of message with a large plain-text attachment.
    let xlsx = fixtures::incident3_xlsx(37_099);
    let csv = fixtures::incident4_csv(60_000);
    let mut text = Vec::new();
    let line = "議事録：本日の定例会議では進捗の確認と来期の計画について議論した。\r\n".as_bytes();
    let target = 25 * 1024 * 1024;
    let base = fixtures::with_attachments(
        &[("From", "a@b.example"), ("Subject", "x")],
        "x",
        &[
            ("a.xlsx", "application/octet-stream", &xlsx),
            ("b.csv", "text/csv", &csv),
        ],
    );
    while base.len() + text.len() * 4 / 3 < target {
        text.extend_from_slice(line);
    }
    let msg = fixtures::with_attachments(
        &[
            ("From", "staff@example.co.jp"),
            ("To", "x@partner.example.jp"),
            ("Subject", "big"),
        ],
        "資料一式をお送りします。",
        &[
            (
                "会員データ.xlsx",
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                &xlsx,
            ),
            ("list.csv", "text/csv", &csv),
            ("minutes.txt", "text/plain", &text),
        ],
    );
    drop((xlsx, csv, text, base));
    let before = status_kib("VmRSS:");
    let start = std::time::Instant::now();
    let report = inspect(&env, &msg, &policy);
    let took = start.elapsed();
    let hwm = status_kib("VmHWM:");
    let size_mb = msg.len() as f64 / 1_048_576.0;
    let peak_mb = hwm.saturating_sub(before) as f64 / 1024.0;
    let reasons: Vec<String> = report
        .findings
        .iter()
        .map(|f| format!("{}:{}", f.reason, f.count.unwrap_or(0)))
        .collect();
    println!(
        "message: {size_mb:.1} MiB; inspection: {:.2} s; findings: {reasons:?}",
        took.as_secs_f64()
    );
    println!(
        "peak memory during inspection: {peak_mb:.1} MiB = {:.2}x the message (target < 10x)",
        peak_mb / size_mb
    );
}
