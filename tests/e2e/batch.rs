//! The sender's batch (issue 4): windows, surges, the brake, known attachments,
//! cross-recipient data, bcc / delay actions and hold notices — through real sockets, with
//! concurrent lettre sessions, an SMTP sink as the upstream and the real CLI.

use crate::common::fixtures;
use crate::common::*;
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::client::Tls;
use lettre::{AsyncSmtpTransport, Tokio1Executor};
use mailbrake::quarantine::{Entry, Filter, State};
use serde_json::Value;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------
// Helpers local to this file.

/// A policy directory: the shipped default.toml plus `local.toml` with `local`.
fn policy_dir(local: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::copy(
        policies_dir().join("default.toml"),
        d.path().join("default.toml"),
    )
    .unwrap();
    std::fs::write(d.path().join("local.toml"), local).unwrap();
    d
}

/// The test configuration with the policy directory `policies` (None = shipped policy).
fn cfg(data: &Path, sink: &Sink, policies: Option<&Path>) -> mailbrake::config::Config {
    let mut c = config(data, Some(sink.url()));
    if let Some(p) = policies {
        c.server.policies = Some(p.to_path_buf());
    }
    c
}

/// One window of `n` messages (recipients and domains out of the way).
fn one_window(n: u64) -> String {
    format!(
        "[[sender.windows]]\nwindow = \"10m\"\nmax_messages = {n}\nmax_recipients = 100000\nmax_domains = 100000\n"
    )
}

/// A plain UTF-8 text message.
fn text_mail(from: &str, to: &str, subject: &str, body: &str) -> Vec<u8> {
    message(
        &[
            ("From", from),
            ("To", to),
            ("Subject", subject),
            ("MIME-Version", "1.0"),
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Transfer-Encoding", "8bit"),
        ],
        body,
    )
}

/// A lettre transport holding at most one connection.
fn transport(addr: SocketAddr) -> AsyncSmtpTransport<Tokio1Executor> {
    AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(addr.ip().to_string())
        .port(addr.port())
        .tls(Tls::None)
        .timeout(Some(Duration::from_secs(20)))
        .pool_config(PoolConfig::new().max_size(1))
        .build()
}

/// One message to send: envelope sender, one envelope recipient, bytes.
struct Out {
    from: String,
    to: String,
    data: Vec<u8>,
}

/// What the relay said to one message.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Forwarded,
    Held(String),
}

fn outcome(r: &Result<String, String>) -> Outcome {
    match r {
        Ok(s) if s == "250 2.0.0 Ok: queued as SINK1" => Outcome::Forwarded,
        Ok(s) if s.starts_with("250 2.0.0 Ok: held as ") => Outcome::Held(held_id(s)),
        other => panic!("neither forwarded nor held: {other:?}"),
    }
}

/// Sends every message over `conns` concurrent lettre connections (connection `t` sends
/// messages t, t + conns, …, in order); returns the outcomes in message order.
async fn send_all(addr: SocketAddr, conns: usize, msgs: Vec<Out>) -> Vec<Outcome> {
    let msgs = Arc::new(msgs);
    let mut tasks = Vec::new();
    for t in 0..conns {
        let msgs = Arc::clone(&msgs);
        tasks.push(tokio::spawn(async move {
            let tr = transport(addr);
            let mut replies = Vec::new();
            for i in (t..msgs.len()).step_by(conns) {
                let m = &msgs[i];
                replies.push((i, send_with(&tr, &m.from, &[m.to.as_str()], &m.data).await));
            }
            replies
        }));
    }
    let mut all: Vec<Option<Outcome>> = vec![None; msgs.len()];
    for t in tasks {
        for (i, r) in t.await.unwrap() {
            all[i] = Some(outcome(&r));
        }
    }
    all.into_iter().map(|o| o.unwrap()).collect()
}

/// Sends one message on a fresh connection.
async fn send_one(addr: SocketAddr, from: &str, to: &str, data: &[u8]) -> Outcome {
    outcome(&send(addr, from, &[to], data).await)
}

fn forwarded(outs: &[Outcome]) -> usize {
    outs.iter().filter(|o| **o == Outcome::Forwarded).count()
}

fn held_ids(outs: &[Outcome]) -> Vec<String> {
    outs.iter()
        .filter_map(|o| match o {
            Outcome::Held(id) => Some(id.clone()),
            Outcome::Forwarded => None,
        })
        .collect()
}

/// Every quarantine entry (any state), oldest first.
fn entries(ts: &TestServer) -> Vec<Entry> {
    ts.app().quarantine.list(&Filter::default())
}

fn entry(ts: &TestServer, id: &str) -> Entry {
    ts.app().quarantine.get(id).unwrap()
}

fn reasons(e: &Entry) -> Vec<&'static str> {
    e.reasons.iter().map(|r| r.as_str()).collect()
}

/// `mailbrake breaker list --json`, parsed (empty when no brake is open).
async fn brakes(ts: &TestServer) -> Vec<Value> {
    let (code, out, err) = cli_at(ts, &["breaker", "list", "--json"]).await;
    assert!(code == 0 || code == 1, "breaker list exit {code}: {err}");
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:.200}")))
        .collect()
}

/// The value of one series in the Prometheus text (`name` or `name{labels}`).
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Waits so that the next `secs` seconds stay within one clock hour (surge counts are
/// per clock hour).
async fn clear_of_hour_boundary(secs: u64) {
    let into = mailbrake::quarantine::unix_now() % 3600;
    if into + secs >= 3600 {
        tokio::time::sleep(Duration::from_secs(3600 - into + 1)).await;
    }
}

/// Header fields of `raw` (each with its folded lines) and the body.
fn fields(raw: &[u8]) -> (Vec<Vec<u8>>, Vec<u8>) {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 2)
        .unwrap();
    let mut out: Vec<Vec<u8>> = Vec::new();
    for line in raw[..end].split_inclusive(|&b| b == b'\n') {
        if matches!(line.first(), Some(b' ' | b'\t')) {
            out.last_mut().unwrap().extend_from_slice(line);
        } else {
            out.push(line.to_vec());
        }
    }
    (out, raw[end..].to_vec())
}

fn field_name(f: &[u8]) -> String {
    let n = f.split(|&b| b == b':').next().unwrap_or(&[]);
    String::from_utf8_lossy(n).trim().to_ascii_lowercase()
}

// ---------------------------------------------------------------------------------------
// 1. Incident 1 with the shipped policy.

/// See: INCIDENTS.md §1 — one application sends 2,000 one-recipient mails (each with that
/// learner's login ID and one password: warn only) to learners across 306 companies, over 8
/// concurrent connections. The shipped policy stops the line within the 10-minute window,
/// the brake stays open (listed, counted), and a reset lets the sender's new mail flow.
#[tokio::test(flavor = "multi_thread")]
async fn incident_1_the_line_stops_by_itself_and_reset_reopens_it() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut ts = TestServer::start(cfg(dir.path(), &sink, None)).await;
    let from = "noreply@portal.example.jp";
    let msgs: Vec<Out> = (0..2000)
        .map(|i| {
            let to = format!("learner{i}@company{}.example.jp", i % 306);
            let body = format!(
                "受講者 様\r\n\r\neラーニングのアカウントをお知らせします。\r\nログインID: L{:08}\r\nパスワード: Xk{i}pQ2mZ\r\n\r\nよろしくお願いいたします。\r\n",
                10_000_000 + i
            );
            Out {
                from: from.into(),
                data: text_mail(from, &to, "アカウントのお知らせ", &body),
                to,
            }
        })
        .collect();
    let outs = send_all(ts.smtp, 8, msgs).await;
    let fwd = forwarded(&outs);
    let held = held_ids(&outs);
    assert_eq!(fwd + held.len(), 2000);
    assert_eq!(
        sink.count(),
        fwd,
        "every forwarded message, and only those, upstream"
    );
    // The 10-minute window allows 100 messages and 30 recipient domains: each message
    // brings a new domain, so the line stops after at least 30 and at most 100.
    assert!((30..=100).contains(&fwd), "{fwd} forwarded");

    let all = entries(&ts);
    assert_eq!(all.len(), held.len());
    let on_brake = all
        .iter()
        .filter(|e| e.reasons.iter().any(|r| r.as_str() == "breaker_open"))
        .count();
    for e in &all {
        let r = reasons(e);
        assert!(
            r.contains(&"sender_rate") || r.contains(&"breaker_open"),
            "{}: {r:?}",
            e.id
        );
        assert_eq!(e.state, State::Held);
    }
    assert!(on_brake > 1800, "{on_brake} held by the brake");

    let b = brakes(&ts).await;
    assert_eq!(b.len(), 1, "{b:?}");
    assert_eq!(b[0]["sender"], from);
    assert_eq!(b[0]["reason"], "sender_rate");
    assert_eq!(
        b[0]["held_since"].as_u64().unwrap(),
        on_brake as u64,
        "{}",
        b[0]
    );

    let m = ts.metrics_text().await;
    assert_eq!(metric(&m, "mailbrake_breaker_trips_total"), Some(1.0));
    assert_eq!(metric(&m, "mailbrake_breakers_open"), Some(1.0));

    let (code, out, err) = cli_at(&ts, &["breaker", "reset", from]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(brakes(&ts).await.is_empty());
    let next = text_mail(
        from,
        "learner1@company1.example.jp",
        "after the reset",
        "ok\r\n",
    );
    assert_eq!(
        send_one(ts.smtp, from, "learner1@company1.example.jp", &next).await,
        Outcome::Forwarded
    );
    assert_eq!(sink.count(), fwd + 1);
    let m = ts.metrics_text().await;
    assert_eq!(metric(&m, "mailbrake_breakers_open"), Some(0.0));
    ts.stop().await;
}

/// Issue 4 item 8: `mailbrake_breakers_open` is the number of brakes open now: 1 after a
/// trip, still 1 after a restart, 0 after the reset.
#[tokio::test(flavor = "multi_thread")]
async fn breakers_open_gauge_follows_open_brakes() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let pol = policy_dir(&one_window(1));
    let mut ts = TestServer::start(cfg(dir.path(), &sink, Some(pol.path()))).await;
    let m = ts.metrics_text().await;
    assert_eq!(metric(&m, "mailbrake_breakers_open"), Some(0.0));
    let from = "app@sys.example";
    let mail = text_mail(from, "u@d.example", "s", "b\r\n");
    assert_eq!(
        send_one(ts.smtp, from, "u@d.example", &mail).await,
        Outcome::Forwarded
    );
    assert!(matches!(
        send_one(ts.smtp, from, "u@d.example", &mail).await,
        Outcome::Held(_)
    ));
    let m = ts.metrics_text().await;
    assert_eq!(metric(&m, "mailbrake_breaker_trips_total"), Some(1.0));
    assert_eq!(metric(&m, "mailbrake_breakers_open"), Some(1.0));
    ts.stop().await;

    let mut ts = TestServer::start(cfg(dir.path(), &sink, Some(pol.path()))).await;
    let m = ts.metrics_text().await;
    assert_eq!(
        metric(&m, "mailbrake_breakers_open"),
        Some(1.0),
        "after a restart"
    );
    let (code, out, err) = cli_at(&ts, &["breaker", "reset", from]).await;
    assert_eq!(code, 0, "{out}{err}");
    let m = ts.metrics_text().await;
    assert_eq!(
        metric(&m, "mailbrake_breakers_open"),
        Some(0.0),
        "after the reset"
    );
    ts.stop().await;
}

/// Trips a brake with a cool-down of 3 s (window 2 s, 1 message) and waits until the
/// cool-down and the window have passed. Returns the sender.
async fn trip_and_wait_out_cooldown(ts: &TestServer) -> &'static str {
    let from = "app@sys.example";
    let mail = text_mail(from, "u@d.example", "s", "b\r\n");
    assert_eq!(
        send_one(ts.smtp, from, "u@d.example", &mail).await,
        Outcome::Forwarded
    );
    assert!(matches!(
        send_one(ts.smtp, from, "u@d.example", &mail).await,
        Outcome::Held(_)
    ));
    // The brake as the API has it (not through `breaker list`, which closes expired ones).
    let (status, body) = {
        let token = std::fs::read_to_string(ts.data_dir.join("admin.token")).unwrap();
        http_get(ts.admin, "/api/v1/breakers", Some(token.trim())).await
    };
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let until = v["breakers"][0]["cooldown_until"].as_u64().unwrap();
    while mailbrake::quarantine::unix_now() < until + 1 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    from
}

const COOLDOWN_POLICY: &str = "[[sender.windows]]\nwindow = \"2s\"\nmax_messages = 1\nmax_recipients = 1000\nmax_domains = 1000\n[brake]\ncooldown = \"3s\"\n";

/// `[brake] cooldown`: the brake closes by itself once the cool-down has passed; the
/// sender's next message flows (its 2 s window has slid on too).
#[tokio::test(flavor = "multi_thread")]
async fn the_cooldown_closes_the_brake_by_itself() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let pol = policy_dir(COOLDOWN_POLICY);
    let mut ts = TestServer::start(cfg(dir.path(), &sink, Some(pol.path()))).await;
    let from = trip_and_wait_out_cooldown(&ts).await;
    assert!(brakes(&ts).await.is_empty());
    let mail = text_mail(from, "u@d.example", "s", "b\r\n");
    assert_eq!(
        send_one(ts.smtp, from, "u@d.example", &mail).await,
        Outcome::Forwarded
    );
    assert_eq!(sink.count(), 2);
    ts.stop().await;
}

/// After a cool-down closed the brake, `mailbrake_breakers_open` is 0 at the next scrape
/// (the MailbrakeSenderBrakeOpen alert must stop), even before anyone lists the brakes or
/// the sender sends again.
#[tokio::test(flavor = "multi_thread")]
async fn the_gauge_drops_when_the_cooldown_closes_the_brake() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let pol = policy_dir(COOLDOWN_POLICY);
    let mut ts = TestServer::start(cfg(dir.path(), &sink, Some(pol.path()))).await;
    trip_and_wait_out_cooldown(&ts).await;
    let m = ts.metrics_text().await;
    assert_eq!(metric(&m, "mailbrake_breakers_open"), Some(0.0));
    ts.stop().await;
}

/// Audit issue 4 #3: a cool-down shorter than the window. Before, the brake closed but the
/// messages of the flood were still in the 10-minute window, so the next message was held
/// as sender_rate at once; now a closed brake means the sender starts afresh.
#[tokio::test(flavor = "multi_thread")]
async fn after_the_cooldown_the_sender_starts_afresh() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let pol = policy_dir(&format!("{}[brake]\ncooldown = \"3s\"\n", one_window(1)));
    let mut ts = TestServer::start(cfg(dir.path(), &sink, Some(pol.path()))).await;
    let from = trip_and_wait_out_cooldown(&ts).await;
    let mail = text_mail(from, "u@d.example", "s", "b\r\n");
    assert_eq!(
        send_one(ts.smtp, from, "u@d.example", &mail).await,
        Outcome::Forwarded,
        "held after the cool-down: the flood was still counted"
    );
    // Counting goes on as usual: the window allows one.
    let Outcome::Held(id) = send_one(ts.smtp, from, "u@d.example", &mail).await else {
        panic!("two messages in a window of one");
    };
    assert_eq!(reasons(&entry(&ts, &id)), ["sender_rate"]);
    assert_eq!(sink.count(), 2);
    ts.stop().await;
}

/// Audit issue 4 #3: the windows count mail that left. Held messages (visible_recipients)
/// leave the window's room to clean ones; a held message counts once it is released.
#[tokio::test(flavor = "multi_thread")]
async fn held_mail_counts_only_when_released() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let pol = policy_dir(&format!("{}[brake]\non_rate = false\n", one_window(3)));
    let mut ts = TestServer::start(cfg(dir.path(), &sink, Some(pol.path()))).await;
    let clean = |from: &str, i: usize| {
        let to = format!("u{i}@d{i}.example");
        (text_mail(from, &to, "s", "b\r\n"), to)
    };
    let from = "news@publisher.example";
    let mut outs = Vec::new();
    let (m, to) = clean(from, 0);
    outs.push(send_one(ts.smtp, from, &to, &m).await);
    let mut held = Vec::new();
    for _ in 0..3 {
        let Outcome::Held(id) = send_one(
            ts.smtp,
            from,
            "member1@family1.example",
            &incident2_message(),
        )
        .await
        else {
            panic!("incident 2 was forwarded");
        };
        held.push(id);
    }
    for i in 1..4 {
        let (m, to) = clean(from, i);
        outs.push(send_one(ts.smtp, from, &to, &m).await);
    }
    assert_eq!(
        forwarded(&outs[..3]),
        3,
        "held mail filled the window: {outs:?}"
    );
    let Outcome::Held(id) = &outs[3] else {
        panic!("a 4th message in a window of 3");
    };
    assert_eq!(reasons(&entry(&ts, id)), ["sender_rate"]);

    // Another sender: two held messages released by hand count, so the window of 3 has
    // room for one more clean message only.
    let from = "editor@publisher.example";
    let mut ids = Vec::new();
    for _ in 0..2 {
        let Outcome::Held(id) = send_one(
            ts.smtp,
            from,
            "member1@family1.example",
            &incident2_message(),
        )
        .await
        else {
            panic!("incident 2 was forwarded");
        };
        ids.push(id);
    }
    for id in &ids {
        let (code, out, err) = cli_at(&ts, &["quarantine", "release", id]).await;
        assert_eq!(code, 0, "{out}{err}");
    }
    let (m, to) = clean(from, 10);
    assert_eq!(send_one(ts.smtp, from, &to, &m).await, Outcome::Forwarded);
    let (m, to) = clean(from, 11);
    let Outcome::Held(id) = send_one(ts.smtp, from, &to, &m).await else {
        panic!("released mail was not counted");
    };
    assert_eq!(reasons(&entry(&ts, &id)), ["sender_rate"]);
    ts.stop().await;
}

// ---------------------------------------------------------------------------------------
// 2. Exact counting under concurrency.

/// 16 sessions × 25 messages from one sender at once, a window of 50 and no brake: exactly
/// 50 pass, 350 are held as sender_rate.
#[tokio::test(flavor = "multi_thread")]
async fn counts_are_exact_under_concurrent_sessions() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let pol = policy_dir(&format!("{}\n[brake]\non_rate = false\n", one_window(50)));
    let mut ts = TestServer::start(cfg(dir.path(), &sink, Some(pol.path()))).await;
    let from = "app@sys.example";
    let msgs: Vec<Out> = (0..400)
        .map(|i| {
            let to = format!("user{i}@dest{}.example", i % 40);
            Out {
                from: from.into(),
                data: text_mail(from, &to, "report", "Your weekly report is ready.\r\n"),
                to,
            }
        })
        .collect();
    let outs = send_all(ts.smtp, 16, msgs).await;
    assert_eq!(forwarded(&outs), 50);
    assert_eq!(sink.count(), 50);
    let held = held_ids(&outs);
    assert_eq!(held.len(), 350);
    for e in entries(&ts) {
        assert_eq!(reasons(&e), ["sender_rate"], "{}", e.id);
    }
    assert!(
        brakes(&ts).await.is_empty(),
        "on_rate = false opens no brake"
    );
    ts.stop().await;
}

/// A message the upstream refused for now (451) was not sent: it leaves the window, so the
/// client's retry is counted once.
#[tokio::test(flavor = "multi_thread")]
async fn a_tempfailed_message_is_counted_once() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let pol = policy_dir(&one_window(3));
    let mut ts = TestServer::start(cfg(dir.path(), &sink, Some(pol.path()))).await;
    let from = "app@sys.example";
    let mail = |i: usize| {
        let to = format!("u{i}@d{i}.example");
        (text_mail(from, &to, "s", "b\r\n"), to)
    };
    sink.set_mode(Mode::TempFailData);
    for i in 0..3 {
        let (m, to) = mail(i);
        let r = send(ts.smtp, from, &[to.as_str()], &m).await;
        assert!(
            matches!(&r, Err(e) if e.contains("451")),
            "upstream 451 passed on: {r:?}"
        );
    }
    sink.set_mode(Mode::Accept);
    let mut outs = Vec::new();
    for i in 0..4 {
        let (m, to) = mail(i);
        outs.push(send_one(ts.smtp, from, &to, &m).await);
    }
    assert_eq!(
        &outs[..3],
        [Outcome::Forwarded, Outcome::Forwarded, Outcome::Forwarded]
    );
    let Outcome::Held(id) = &outs[3] else {
        panic!("4th message forwarded over a window of 3");
    };
    assert_eq!(reasons(&entry(&ts, id)), ["sender_rate"]);
    assert_eq!(sink.count(), 3);
    ts.stop().await;
}

/// Audit issue 4 #8: an upstream that is not there answers the client `451 4.4.1`, and
/// `messages_total` says tempfail, not forward; a 5xx from the upstream is a reject. The
/// sender's window keeps room for the retry.
#[tokio::test(flavor = "multi_thread")]
async fn upstream_failures_are_counted_as_what_the_client_was_told() {
    let dir = tempfile::tempdir().unwrap();
    let pol = policy_dir(&one_window(1));
    let mut c = config(
        dir.path(),
        Some(format!("smtp+plain://127.0.0.1:{}", free_port())),
    );
    c.server.policies = Some(pol.path().to_path_buf());
    let mut ts = TestServer::start(c).await;
    let from = "app@sys.example";
    let m = text_mail(from, "u@d.example", "s", "b\r\n");
    for _ in 0..2 {
        let e = send(ts.smtp, from, &["u@d.example"], &m).await.unwrap_err();
        assert!(e.contains("451") && e.contains("4.4.1"), "{e}");
    }
    let text = ts.metrics_text().await;
    assert_eq!(
        metric(&text, "mailbrake_messages_total{verdict=\"tempfail\"}"),
        Some(2.0)
    );
    assert_eq!(
        metric(&text, "mailbrake_messages_total{verdict=\"forward\"}"),
        Some(0.0)
    );
    assert!(
        brakes(&ts).await.is_empty(),
        "a window of 1 filled by mail never sent"
    );
    ts.stop().await;

    let sink = Sink::start().await;
    sink.set_mode(Mode::PermFailData);
    let dir = tempfile::tempdir().unwrap();
    let mut ts = TestServer::start(cfg(dir.path(), &sink, None)).await;
    let e = send(ts.smtp, from, &["u@d.example"], &m).await.unwrap_err();
    assert!(e.contains("554"), "{e}");
    let text = ts.metrics_text().await;
    assert_eq!(
        metric(&text, "mailbrake_messages_total{verdict=\"reject\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(&text, "mailbrake_messages_total{verdict=\"forward\"}"),
        Some(0.0)
    );
    ts.stop().await;
}

/// The sender is the envelope sender with its domain lower-cased: three spellings of one
/// address share one window; another local part is another sender.
#[tokio::test(flavor = "multi_thread")]
async fn the_sender_is_normalised_before_counting() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let pol = policy_dir(&one_window(3));
    let mut ts = TestServer::start(cfg(dir.path(), &sink, Some(pol.path()))).await;
    let mut outs = Vec::new();
    for from in [
        "App@Corp.Example",
        "App@corp.example",
        "App@CORP.EXAMPLE",
        "App@cOrP.eXample",
    ] {
        let m = text_mail(from, "u@d.example", "s", "b\r\n");
        outs.push(send_one(ts.smtp, from, "u@d.example", &m).await);
    }
    assert_eq!(forwarded(&outs), 3, "{outs:?}");
    let held = held_ids(&outs);
    assert_eq!(held.len(), 1);
    let b = brakes(&ts).await;
    assert_eq!(b.len(), 1, "{b:?}");
    assert_eq!(b[0]["sender"], "App@corp.example");
    let m = text_mail("other@corp.example", "u@d.example", "s", "b\r\n");
    assert_eq!(
        send_one(ts.smtp, "other@corp.example", "u@d.example", &m).await,
        Outcome::Forwarded
    );
    ts.stop().await;
}

/// Audit issue 4 #6: per-message return addresses (VERP `bounce+N@…`) are one sender: 3 of
/// 8 pass a window of 3, the brake is listed and reset under `bounce@…` (typed either way).
/// With `subaddress_delimiters = ""` each address is a sender of its own again.
#[tokio::test(flavor = "multi_thread")]
async fn verp_return_addresses_are_one_sender() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let pol = policy_dir(&one_window(3));
    let mut ts = TestServer::start(cfg(dir.path(), &sink, Some(pol.path()))).await;
    let msgs: Vec<Out> = (0..8)
        .map(|i| {
            let from = format!("bounce+{i}@Lists.Example");
            let to = format!("reader{i}@r{i}.example");
            Out {
                data: text_mail(&from, &to, "news", "This month's news.\r\n"),
                from,
                to,
            }
        })
        .collect();
    let outs = send_all(ts.smtp, 4, msgs).await;
    assert_eq!(forwarded(&outs), 3, "{outs:?}");
    let b = brakes(&ts).await;
    assert_eq!(b.len(), 1, "{b:?}");
    assert_eq!(b[0]["sender"], "bounce@lists.example");
    let (code, out, err) = cli_at(&ts, &["breaker", "reset", "bounce+99@lists.example"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(brakes(&ts).await.is_empty());
    ts.stop().await;

    let dir = tempfile::tempdir().unwrap();
    let pol = policy_dir(&format!(
        "{}[sender]\nsubaddress_delimiters = \"\"\n",
        one_window(3)
    ));
    let mut ts = TestServer::start(cfg(dir.path(), &sink, Some(pol.path()))).await;
    for i in 0..4 {
        let from = format!("bounce+{i}@lists.example");
        let m = text_mail(&from, "u@d.example", "news", "b\r\n");
        assert_eq!(
            send_one(ts.smtp, &from, "u@d.example", &m).await,
            Outcome::Forwarded
        );
    }
    ts.stop().await;
}

/// Monitor mode: over the window, everything is still forwarded, the would-be holds are
/// counted as monitor, and no brake opens.
#[tokio::test(flavor = "multi_thread")]
async fn monitor_mode_counts_but_never_brakes() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let pol = policy_dir(&format!("mode = \"monitor\"\n{}", one_window(2)));
    let mut ts = TestServer::start(cfg(dir.path(), &sink, Some(pol.path()))).await;
    let from = "app@sys.example";
    for i in 0..5 {
        let to = format!("u{i}@d.example");
        let m = text_mail(from, &to, "s", "b\r\n");
        assert_eq!(send_one(ts.smtp, from, &to, &m).await, Outcome::Forwarded);
    }
    assert_eq!(sink.count(), 5);
    assert!(brakes(&ts).await.is_empty());
    let m = ts.metrics_text().await;
    assert_eq!(
        metric(
            &m,
            "mailbrake_holds_total{mode=\"monitor\",reason=\"sender_rate\"}"
        ),
        Some(3.0)
    );
    assert_eq!(metric(&m, "mailbrake_breaker_trips_total"), Some(0.0));
    ts.stop().await;
}

/// `[sender] action = "reject"`: every message over the window gets `550 5.7.1` (reject is
/// stronger than the brake's hold), is not stored and is not counted; the brake opens.
#[tokio::test(flavor = "multi_thread")]
async fn a_rate_trip_can_reject() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let pol = policy_dir(&format!(
        "{}\n[sender]\naction = \"reject\"\n",
        one_window(2)
    ));
    let mut ts = TestServer::start(cfg(dir.path(), &sink, Some(pol.path()))).await;
    let from = "app@sys.example";
    let m = text_mail(from, "u@d.example", "s", "b\r\n");
    for _ in 0..2 {
        assert_eq!(
            send_one(ts.smtp, from, "u@d.example", &m).await,
            Outcome::Forwarded
        );
    }
    for _ in 0..3 {
        let r = send(ts.smtp, from, &["u@d.example"], &m).await;
        assert!(
            matches!(&r, Err(e) if e.contains("550") && e.contains("5.7.1") && e.contains("sender_rate")),
            "{r:?}"
        );
    }
    assert!(entries(&ts).is_empty(), "a rejected message is not stored");
    let b = brakes(&ts).await;
    assert_eq!(b.len(), 1, "{b:?}");
    assert_eq!(b[0]["reason"], "sender_rate");
    assert_eq!(sink.count(), 2);
    ts.stop().await;
}

/// Issue 4 item 1: an authenticated session's sender is its user, whatever the envelope
/// sender; `user:NAME` overrides apply, and the brake is listed and reset under that name.
#[tokio::test(flavor = "multi_thread")]
async fn an_authenticated_sender_is_its_user() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    std::fs::create_dir_all(&tls).unwrap();
    let (cert, key, pem) = make_cert(&tls);
    let pol = policy_dir(
        "[[sender.overrides]]\nmatch = \"user:webapp\"\n\
         windows = [{ window = \"10m\", max_messages = 3, max_recipients = 1000, max_domains = 1000 }]\n",
    );
    let mut c = cfg(&dir.path().join("data"), &sink, Some(pol.path()));
    c.tls.cert = Some(cert);
    c.tls.key = Some(key);
    c.auth.users = vec![mailbrake::config::AuthUser {
        name: "webapp".into(),
        password_hash: mailbrake::smtp::auth::hash_password("s3cret-pass").unwrap(),
    }];
    let mut ts = TestServer::start(c).await;
    let t = starttls_transport(ts.smtp, &pem, Some(("webapp", "s3cret-pass")));
    let mut outs = Vec::new();
    for from in [
        "a@one.example",
        "b@two.example",
        "c@three.example",
        "d@four.example",
    ] {
        let m = text_mail(from, "u@d.example", "s", "b\r\n");
        outs.push(outcome(&send_with(&t, from, &["u@d.example"], &m).await));
    }
    assert_eq!(forwarded(&outs), 3, "{outs:?}");
    let held = held_ids(&outs);
    assert_eq!(reasons(&entry(&ts, &held[0])), ["sender_rate"]);
    let b = brakes(&ts).await;
    assert_eq!(b.len(), 1, "{b:?}");
    assert_eq!(b[0]["sender"], "user:webapp");
    // The same envelope sender without AUTH is another sender (shipped windows).
    let m = text_mail("a@one.example", "u@d.example", "s", "b\r\n");
    assert_eq!(
        send_one(ts.smtp, "a@one.example", "u@d.example", &m).await,
        Outcome::Forwarded
    );
    let (code, out, err) = cli_at(&ts, &["breaker", "reset", "user:webapp"]).await;
    assert_eq!(code, 0, "{out}{err}");
    let m = text_mail("e@five.example", "u@d.example", "s", "b\r\n");
    assert_eq!(
        outcome(&send_with(&t, "e@five.example", &["u@d.example"], &m).await),
        Outcome::Forwarded
    );
    drop(t);
    ts.stop().await;
}

// ---------------------------------------------------------------------------------------
// 3. Incident 4.

/// Incident 4's bulk notice: the first message alone, then `n - 1` over 4 connections.
/// Returns the outcomes (first one first).
async fn replay_incident_4(ts: &TestServer, n: usize) -> Vec<Outcome> {
    let from = "notice@mutual-aid.example.or.jp";
    let csv = fixtures::incident4_csv(5_212);
    let tail = fixtures::with_attachments(
        &[("Subject", "総会のお知らせ")],
        "組合員の皆様\r\n\r\n総会のご案内をお送りします。",
        &[("送付リスト.csv", "text/csv", &csv)],
    );
    let make = |i: usize| {
        let to = format!("member{i}@mail{}.example.jp", i % 50);
        let mut data = format!("From: {from}\r\nTo: {to}\r\n").into_bytes();
        data.extend_from_slice(&tail);
        Out {
            from: from.into(),
            to,
            data,
        }
    };
    let first = make(0);
    let mut outs = vec![send_one(ts.smtp, &first.from, &first.to, &first.data).await];
    outs.extend(send_all(ts.smtp, 4, (1..n).map(make).collect()).await);
    outs
}

/// See: INCIDENTS.md §4 — 300 messages of the bulk notice, each carrying the member list,
/// over 4 concurrent connections: zero reach the upstream. The first is held for its
/// content, every later one as known_attachment (not scanned again), and the brake opens
/// once the sender is in a batch. With on_content_in_batch = false, the same attachment
/// still stops every message; no brake opens then (the windows count only mail that left,
/// and none did).
#[tokio::test(flavor = "multi_thread")]
async fn incident_4_the_bulk_notice_stops_at_zero() {
    for brake_on_content in [true, false] {
        let sink = Sink::start().await;
        let dir = tempfile::tempdir().unwrap();
        let pol = policy_dir(&format!(
            "[brake]\non_content_in_batch = {brake_on_content}\n"
        ));
        let mut ts = TestServer::start(cfg(dir.path(), &sink, Some(pol.path()))).await;
        let outs = replay_incident_4(&ts, 300).await;
        assert_eq!(forwarded(&outs), 0, "brake on content: {brake_on_content}");
        assert_eq!(sink.count(), 0);
        let held = held_ids(&outs);
        assert_eq!(held.len(), 300);

        let first = reasons(&entry(&ts, &held[0]));
        assert!(
            first.contains(&"personal_data") && first.contains(&"address_list"),
            "{first:?}"
        );
        assert!(!first.contains(&"known_attachment"), "{first:?}");
        for id in &held[1..] {
            let r = reasons(&entry(&ts, id));
            assert!(
                ["personal_data", "known_attachment", "breaker_open"]
                    .iter()
                    .any(|x| r.contains(x)),
                "{id}: {r:?}"
            );
            // Every later message carries the attachment of a held one.
            assert!(r.contains(&"known_attachment"), "{id}: {r:?}");
        }
        let b = brakes(&ts).await;
        if brake_on_content {
            assert_eq!(b.len(), 1, "{b:?}");
            assert_eq!(b[0]["reason"], "known_attachment");
        } else {
            assert!(b.is_empty(), "held mail opened a rate brake: {b:?}");
        }
        ts.stop().await;
    }
}

/// The known attachments are rebuilt from the quarantine at start-up: after a restart, a
/// message carrying the held member list is held as known_attachment without a scan.
#[tokio::test(flavor = "multi_thread")]
async fn known_attachments_survive_a_restart() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut ts = TestServer::start(cfg(dir.path(), &sink, None)).await;
    let outs = replay_incident_4(&ts, 1).await;
    let first = held_ids(&outs);
    assert_eq!(first.len(), 1);
    assert!(reasons(&entry(&ts, &first[0])).contains(&"personal_data"));
    ts.stop().await;

    let mut ts = TestServer::start(cfg(dir.path(), &sink, None)).await;
    let csv = fixtures::incident4_csv(5_212);
    let from = "other-contractor@mail-vendor.example";
    let m = fixtures::with_attachments(
        &[
            ("From", from),
            ("To", "member9@mail9.example.jp"),
            ("Subject", "別件"),
        ],
        "添付をご確認ください。",
        &[("list.csv", "text/csv", &csv)],
    );
    let Outcome::Held(id) = send_one(ts.smtp, from, "member9@mail9.example.jp", &m).await else {
        panic!("the member list went out after a restart");
    };
    assert_eq!(reasons(&entry(&ts, &id)), ["known_attachment"]);
    assert_eq!(sink.count(), 0);
    ts.stop().await;
}

// ---------------------------------------------------------------------------------------
// 4. Incident 5's mail twin: cross-recipient data.

/// Message `i` of a mail merge: member i's own number and name.
fn merge_body(i: usize, extra: &str) -> String {
    format!(
        "会員番号: M{}\r\n氏名: {} 様\r\n{extra}\r\nいつもご利用いただきありがとうございます。\r\n次回のご案内をお送りします。\r\n",
        1000 + i,
        fixtures::person(i)
    )
}

fn member(i: usize) -> String {
    format!("member{i}@family{i}.example")
}

/// Sends the 10-message merge (members 1..=10) from `from`; all must be forwarded.
async fn merge_batch(ts: &TestServer, from: &str) {
    for i in 1..=10 {
        let to = member(i);
        let m = text_mail(from, &to, "ご案内", &merge_body(i, ""));
        assert_eq!(
            send_one(ts.smtp, from, &to, &m).await,
            Outcome::Forwarded,
            "merge message {i}"
        );
    }
}

/// See: INCIDENTS.md §5 — a merge that fills member 3's message with member 7's member
/// number and name (or with member 7's address) is held as cross_recipient; identifiers
/// shared by every message of a batch (an event code, the sender's phone) never count.
#[tokio::test(flavor = "multi_thread")]
async fn incident_5_another_members_data_is_held_as_cross_recipient() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut ts = TestServer::start(cfg(dir.path(), &sink, None)).await;

    // Member 3's message carrying member 7's number and name.
    let from = "merge@family-club.example";
    merge_batch(&ts, from).await;
    assert_eq!(sink.count(), 10);
    let to = member(3);
    let wrong = text_mail(from, &to, "ご案内", &merge_body(7, ""));
    let Outcome::Held(id) = send_one(ts.smtp, from, &to, &wrong).await else {
        panic!("member 3's message with member 7's data was forwarded");
    };
    assert_eq!(reasons(&entry(&ts, &id)), ["cross_recipient"]);
    assert_eq!(sink.count(), 10, "nothing of it upstream");

    // Member 3's own data, but member 7's address.
    let from = "merge2@family-club.example";
    merge_batch(&ts, from).await;
    assert_eq!(sink.count(), 20);
    let body = merge_body(3, &format!("ご登録のメールアドレス: {}\r\n", member(7)));
    let wrong = text_mail(from, &to, "ご案内", &body);
    let Outcome::Held(id) = send_one(ts.smtp, from, &to, &wrong).await else {
        panic!("member 3's message with member 7's address was forwarded");
    };
    assert_eq!(reasons(&entry(&ts, &id)), ["cross_recipient"]);
    assert_eq!(sink.count(), 20);
    assert!(
        sink.messages()
            .iter()
            .filter(|d| d.rcpts == [to.clone()])
            .all(|d| !String::from_utf8_lossy(&d.data).contains(&member(7))),
        "member 7's address reached member 3"
    );

    // Every message carries the same event code and the sender's phone number: shared,
    // never another recipient's data.
    let from = "events@family-club.example";
    let shared = "イベントコード: EV-2024-0715\r\nお問い合わせ電話: 03-5555-0100\r\n";
    for i in 1..=14 {
        let to = member(i);
        let m = text_mail(from, &to, "イベントのご案内", &merge_body(i, shared));
        assert_eq!(
            send_one(ts.smtp, from, &to, &m).await,
            Outcome::Forwarded,
            "event message {i}"
        );
    }
    assert_eq!(sink.count(), 34);
    assert_eq!(entries(&ts).len(), 2);
    ts.stop().await;
}

/// Issue 4 item 6: B is any other recipient of the batch, the batch's first recipient
/// included. Member 3's message carrying member 1's address (member 1 got the first message
/// of the merge) is held as cross_recipient.
#[tokio::test(flavor = "multi_thread")]
async fn cross_recipient_covers_the_first_recipient_of_the_batch() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut ts = TestServer::start(cfg(dir.path(), &sink, None)).await;
    let from = "merge@family-club.example";
    merge_batch(&ts, from).await;
    let to = member(3);
    let body = merge_body(3, &format!("ご登録のメールアドレス: {}\r\n", member(1)));
    let wrong = text_mail(from, &to, "ご案内", &body);
    let Outcome::Held(id) = send_one(ts.smtp, from, &to, &wrong).await else {
        panic!("member 3's message with member 1's address was forwarded");
    };
    assert_eq!(reasons(&entry(&ts, &id)), ["cross_recipient"]);
    assert_eq!(sink.count(), 10);
    ts.stop().await;
}

// ---------------------------------------------------------------------------------------
// 5. Restarts.

/// Restart in the middle: the window's count and the brake survive two restarts.
#[tokio::test(flavor = "multi_thread")]
async fn restart_keeps_the_counts_and_the_brake() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let pol = policy_dir(&one_window(30));
    let from = "app@school.example";
    let mail = |i: usize| {
        let to = format!("s{i}@home{i}.example");
        let m = text_mail(from, &to, "連絡", "明日は休校です。\r\n");
        (to, m)
    };
    let mut ts = TestServer::start(cfg(dir.path(), &sink, Some(pol.path()))).await;
    for i in 0..20 {
        let (to, m) = mail(i);
        assert_eq!(send_one(ts.smtp, from, &to, &m).await, Outcome::Forwarded);
    }
    ts.stop().await;

    let mut ts = TestServer::start(cfg(dir.path(), &sink, Some(pol.path()))).await;
    let mut outs = Vec::new();
    for i in 20..35 {
        let (to, m) = mail(i);
        outs.push(send_one(ts.smtp, from, &to, &m).await);
    }
    assert_eq!(forwarded(&outs), 10, "{outs:?}");
    assert!(outs[..10].iter().all(|o| *o == Outcome::Forwarded));
    assert_eq!(sink.count(), 30);
    let held = held_ids(&outs);
    assert_eq!(reasons(&entry(&ts, &held[0])), ["sender_rate"]);
    for id in &held[1..] {
        assert!(reasons(&entry(&ts, id)).contains(&"breaker_open"), "{id}");
    }
    let b = brakes(&ts).await;
    assert_eq!(b.len(), 1, "{b:?}");
    assert_eq!(
        (b[0]["sender"].as_str(), b[0]["reason"].as_str()),
        (Some(from), Some("sender_rate"))
    );
    assert_eq!(b[0]["held_since"], 4);
    ts.stop().await;

    let mut ts = TestServer::start(cfg(dir.path(), &sink, Some(pol.path()))).await;
    let b = brakes(&ts).await;
    assert_eq!(b.len(), 1, "{b:?}");
    assert_eq!(
        (b[0]["sender"].as_str(), b[0]["reason"].as_str()),
        (Some(from), Some("sender_rate"))
    );
    assert_eq!(b[0]["held_since"], 4);
    let (to, m) = mail(99);
    let Outcome::Held(id) = send_one(ts.smtp, from, &to, &m).await else {
        panic!("forwarded after the restart although the brake is open");
    };
    assert!(reasons(&entry(&ts, &id)).contains(&"breaker_open"));
    assert_eq!(sink.count(), 30);
    ts.stop().await;
}

/// Audit issue 4 #9: `kill -9` of the real binary, twice. Counts written by the periodic
/// snapshot (every 2 s) survive the first kill; the brake, flushed when it opens, survives
/// the second one right after the trip.
#[tokio::test(flavor = "multi_thread")]
async fn counts_and_the_brake_survive_kill_9() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let pol = policy_dir(&one_window(5));
    let smtp: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let toml = format!(
        "[server]\nlisten = [\"{smtp}\"]\nhostname = \"mailbrake.test\"\ndata_dir = {data:?}\n\
         policies = {pol:?}\n\n[limits]\nmin_free_space = \"1MiB\"\n\n\
         [admin]\nlisten = \"{admin}\"\n\n[metrics]\nlisten = \"{metrics}\"\n\n\
         [upstream]\nurl = \"{url}\"\n",
        data = data.display().to_string(),
        pol = pol.path().display().to_string(),
        url = sink.url(),
    );
    let cfg = dir.path().join("mailbrake.toml");
    std::fs::write(&cfg, toml).unwrap();
    let from = "app@school.example";
    let mail = |i: usize| {
        let to = format!("s{i}@home{i}.example");
        (text_mail(from, &to, "連絡", "明日は休校です。\r\n"), to)
    };
    let breakers = || {
        cli(vec![
            "breaker".into(),
            "list".into(),
            "--json".into(),
            "--admin".into(),
            admin.to_string(),
            "--data-dir".into(),
            data.display().to_string(),
        ])
    };

    let mut child = ChildGuard::spawn(&cfg, dir.path().join("serve1.log"));
    child.wait_ready(smtp).await;
    for i in 0..3 {
        let (m, to) = mail(i);
        assert_eq!(send_one(smtp, from, &to, &m).await, Outcome::Forwarded);
    }
    // The next snapshot (every 2 s) and sled's own flush.
    tokio::time::sleep(Duration::from_secs(4)).await;
    child.kill();

    let mut child = ChildGuard::spawn(&cfg, dir.path().join("serve2.log"));
    child.wait_ready(smtp).await;
    let mut outs = Vec::new();
    for i in 3..6 {
        let (m, to) = mail(i);
        outs.push(send_one(smtp, from, &to, &m).await);
    }
    assert_eq!(
        forwarded(&outs),
        2,
        "the 3 counted before the kill were lost: {outs:?} / {}",
        child.log_tail()
    );
    assert!(matches!(outs[2], Outcome::Held(_)), "{outs:?}");
    child.kill();

    let mut child = ChildGuard::spawn(&cfg, dir.path().join("serve3.log"));
    child.wait_ready(smtp).await;
    let (code, out, err) = breakers().await;
    assert_eq!(code, 0, "{err} / {}", child.log_tail());
    let b: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(b.len(), 1, "{out}");
    assert_eq!(
        (b[0]["sender"].as_str(), b[0]["reason"].as_str()),
        (Some(from), Some("sender_rate"))
    );
    let (m, to) = mail(9);
    assert!(
        matches!(send_one(smtp, from, &to, &m).await, Outcome::Held(_)),
        "forwarded after kill -9 although the brake is open"
    );
    assert_eq!(sink.count(), 5);
    child.kill();
}

// ---------------------------------------------------------------------------------------
// 6. Delay.

/// A delayed message waits its delay, then is sent exactly once and marked released; a
/// delayed message deleted meanwhile is never sent.
#[tokio::test(flavor = "multi_thread")]
async fn delay_releases_on_time_unless_deleted() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let pol = policy_dir("[visible_recipients]\naction = \"delay\"\n[delay]\nduration = \"2s\"\n");
    let mut ts = TestServer::start(cfg(dir.path(), &sink, Some(pol.path()))).await;
    let m = incident2_message();
    let sent_at = Instant::now();
    let Outcome::Held(keep) =
        send_one(ts.smtp, "news@publisher.example", "a@family1.example", &m).await
    else {
        panic!("a delayed message was forwarded at once");
    };
    let Outcome::Held(drop_id) =
        send_one(ts.smtp, "news@publisher.example", "b@family2.example", &m).await
    else {
        panic!("a delayed message was forwarded at once");
    };
    assert_eq!(sink.count(), 0, "nothing before the delay");
    let (code, out, err) = cli_at(&ts, &["quarantine", "delete", &drop_id]).await;
    assert_eq!(code, 0, "{out}{err}");
    let e = entry(&ts, &keep);
    assert_eq!(e.state, State::Held);
    assert_eq!(reasons(&e), ["visible_recipients"]);
    assert!(e.release_after.is_some());

    assert!(
        wait_until(Duration::from_secs(15), || sink.count() >= 1).await,
        "the delayed message was not sent within 15 s"
    );
    let waited = sent_at.elapsed();
    assert!(
        waited >= Duration::from_secs(1),
        "sent after only {waited:?}"
    );
    let d = sink.messages();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].rcpts, ["a@family1.example"]);
    assert_bytes_eq(&strip_trace(&d[0].data), &m);
    assert!(
        wait_until(Duration::from_secs(5), || entry(&ts, &keep).state
            == State::Released)
        .await,
        "entry not marked released"
    );

    // The deleted one: wait past its due time by 6 s (bounded), it never arrives.
    let deadline = sent_at + Duration::from_secs(2 + 6);
    tokio::time::sleep_until(deadline.into()).await;
    assert_eq!(sink.count(), 1, "a deleted delayed message was sent");
    assert_eq!(entry(&ts, &drop_id).state, State::Deleted);
    ts.stop().await;
}

/// Audit issue 4 #5: two delayed messages, then the sender trips its brake. When their
/// delay is due they are not sent: they become breaker_open holds (no release time), are
/// counted on the brake, and stay held after a restart.
#[tokio::test(flavor = "multi_thread")]
async fn delayed_mail_of_a_braked_sender_is_held_not_sent() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let pol = policy_dir(&format!(
        "{}[delay]\nduration = \"3s\"\nexternal_mail = true\n",
        one_window(2)
    ));
    let mut ts = TestServer::start(cfg(dir.path(), &sink, Some(pol.path()))).await;
    let from = "app@sys.example";
    let mut ids = Vec::new();
    for i in 0..3 {
        let to = format!("u{i}@d{i}.example");
        let Outcome::Held(id) =
            send_one(ts.smtp, from, &to, &text_mail(from, &to, "s", "b\r\n")).await
        else {
            panic!("external mail was forwarded at once");
        };
        ids.push(id);
    }
    assert!(entry(&ts, &ids[0]).release_after.is_some());
    assert!(entry(&ts, &ids[1]).release_after.is_some());
    assert_eq!(reasons(&entry(&ts, &ids[2])), ["sender_rate"]);
    assert_eq!(brakes(&ts).await.len(), 1);
    // Due after 3 s; the housekeeping runs every 2 s.
    assert!(
        wait_until(Duration::from_secs(15), || ids[..2].iter().all(|id| entry(
            &ts, id
        )
        .release_after
        .is_none()))
        .await,
        "the delayed messages were not turned into holds"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(sink.count(), 0, "delayed mail of a braked sender was sent");
    for id in &ids[..2] {
        let e = entry(&ts, id);
        assert_eq!(e.state, State::Held);
        assert!(
            reasons(&e).contains(&"breaker_open"),
            "{id}: {:?}",
            e.reasons
        );
    }
    let b = brakes(&ts).await;
    assert_eq!(b[0]["held_since"], 2, "{b:?}");
    ts.stop().await;

    let mut ts = TestServer::start(cfg(dir.path(), &sink, Some(pol.path()))).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(sink.count(), 0, "sent after a restart");
    assert!(entry(&ts, &ids[0]).release_after.is_none());
    ts.stop().await;
}

/// Audit issue 4 #9: a delayed message counts when accepted; one that could not be stored
/// (`451 4.3.5`) was not accepted and is taken back, so the retry fits a window of 1.
#[tokio::test(flavor = "multi_thread")]
async fn a_delay_that_cannot_be_stored_is_not_counted() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let pol = policy_dir(&format!(
        "{}[delay]\nduration = \"1h\"\nexternal_mail = true\n",
        one_window(1)
    ));
    let mut ts = TestServer::start(cfg(dir.path(), &sink, Some(pol.path()))).await;
    let held_dir = ts.data_dir.join("spool").join("held");
    std::fs::remove_dir_all(&held_dir).unwrap();
    std::fs::write(&held_dir, b"not a directory\n").unwrap();
    let from = "app@sys.example";
    let m = text_mail(from, "u@d.example", "s", "b\r\n");
    for _ in 0..2 {
        let e = send(ts.smtp, from, &["u@d.example"], &m).await.unwrap_err();
        assert!(e.contains("451") && e.contains("4.3.5"), "{e}");
    }
    std::fs::remove_file(&held_dir).unwrap();
    std::fs::create_dir(&held_dir).unwrap();
    let Outcome::Held(id) = send_one(ts.smtp, from, "u@d.example", &m).await else {
        panic!("external mail was not delayed");
    };
    let e = entry(&ts, &id);
    assert!(e.release_after.is_some(), "{:?}", e.reasons);
    assert!(!reasons(&e).contains(&"sender_rate"), "{:?}", e.reasons);
    assert!(brakes(&ts).await.is_empty());
    ts.stop().await;
}

/// `[delay] external_mail = true`: mail to an internal domain flows at once, mail with an
/// external recipient waits the delay, then goes.
#[tokio::test(flavor = "multi_thread")]
async fn external_mail_delay_keeps_internal_mail_flowing() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let pol = policy_dir(
        "internal_domains = [\"corp.example\"]\n[delay]\nduration = \"2s\"\nexternal_mail = true\n",
    );
    let mut ts = TestServer::start(cfg(dir.path(), &sink, Some(pol.path()))).await;
    let from = "sato@corp.example";
    let inside = text_mail(
        from,
        "suzuki@corp.example",
        "memo",
        "会議は15時からです。\r\n",
    );
    assert_eq!(
        send_one(ts.smtp, from, "suzuki@corp.example", &inside).await,
        Outcome::Forwarded
    );
    assert_eq!(sink.count(), 1);
    let outside = text_mail(
        from,
        "yamada@partner.example",
        "見積",
        "お見積りを送ります。\r\n",
    );
    let Outcome::Held(id) = send_one(ts.smtp, from, "yamada@partner.example", &outside).await
    else {
        panic!("external mail was not delayed");
    };
    assert!(entry(&ts, &id).release_after.is_some());
    assert_eq!(sink.count(), 1);
    assert!(
        wait_until(Duration::from_secs(15), || sink.count() == 2).await,
        "the delayed external message was not sent within 15 s"
    );
    let d = &sink.messages()[1];
    assert_eq!(d.rcpts, ["yamada@partner.example"]);
    assert_bytes_eq(&strip_trace(&d.data), &outside);
    ts.stop().await;
}

/// `visible_recipients` → bcc, and external mail is delayed: the message that goes out after
/// the delay is the rewritten one (To undisclosed, no Cc), never the original with 832
/// visible addresses.
#[tokio::test(flavor = "multi_thread")]
async fn a_delayed_bcc_message_goes_out_rewritten() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let pol = policy_dir(
        "[visible_recipients]\naction = \"bcc\"\n[delay]\nduration = \"2s\"\nexternal_mail = true\n",
    );
    let mut ts = TestServer::start(cfg(dir.path(), &sink, Some(pol.path()))).await;
    let m = incident2_message();
    let Outcome::Held(_) = send_one(
        ts.smtp,
        "news@publisher.example",
        "member1@family1.example",
        &m,
    )
    .await
    else {
        panic!("external mail was not delayed");
    };
    assert!(
        wait_until(Duration::from_secs(15), || sink.count() == 1).await,
        "the delayed message was not sent within 15 s"
    );
    let got = strip_trace(&sink.messages()[0].data);
    let (f, _) = fields(&got);
    let to: Vec<&Vec<u8>> = f.iter().filter(|x| field_name(x) == "to").collect();
    assert_eq!(to.len(), 1);
    assert_eq!(
        String::from_utf8_lossy(to[0])
            .chars()
            .take(80)
            .collect::<String>(),
        "To: undisclosed-recipients:;\r\n",
        "the 832 addresses went out visible"
    );
    ts.stop().await;
}

// ---------------------------------------------------------------------------------------
// 7. Bcc.

/// `visible_recipients` with action bcc: incident 2 plus a folded Cc is forwarded with
/// exactly one `To: undisclosed-recipients:;`, no Cc, the same envelope and every other
/// byte unchanged — also when the fields are written `To :` / `CC\t:` (RFC 5322 obs-syntax:
/// white space before the colon), folded, with encoded-word display names.
#[tokio::test(flavor = "multi_thread")]
async fn bcc_rewrites_to_and_cc_only() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let pol = policy_dir("[visible_recipients]\naction = \"bcc\"\n");
    let mut ts = TestServer::start(cfg(dir.path(), &sink, Some(pol.path()))).await;
    let orig = incident2_message();
    let at = orig.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 2;
    let named = |i: usize| {
        format!(
            "=?UTF-8?B?5bGx55Sw6Iqx5a2QIA==?= {i} <named{i}@family{}.example>",
            i % 50
        )
    };
    let variants: Vec<(&str, Vec<u8>)> = vec![
        ("To: / Cc:", {
            let mut m = orig[..at].to_vec();
            m.extend_from_slice(
                b"Cc: editor@publisher.example,\r\n\tpartner@agency.example\r\nX-Mailer: news 2.1\r\n",
            );
            m.extend_from_slice(&orig[at..]);
            m
        }),
        ("To : / CC\\t:", {
            let list = (0..40).map(named).collect::<Vec<_>>().join(",\r\n\t");
            let mut m = b"From: news@publisher.example\r\nTo : ".to_vec();
            m.extend_from_slice(address_list(832, 600).as_bytes());
            m.extend_from_slice(b"\r\nSubject: December newsletter\r\nCC\t: ");
            m.extend_from_slice(list.as_bytes());
            m.extend_from_slice(
                b"\r\nX-Mailer: news 2.1\r\nMessage-ID: <obs@publisher.example>\r\n\r\nDear members,\r\n",
            );
            m
        }),
        ("CC\\t: alone, encoded words", {
            let list = (0..40).map(named).collect::<Vec<_>>().join(",\r\n ");
            let mut m = b"From: news@publisher.example\r\nSubject: s\r\nCC\t: ".to_vec();
            m.extend_from_slice(list.as_bytes());
            m.extend_from_slice(b"\r\nTo\t :  =?ISO-2022-JP?B?GyRCOzNFRBsoQg==?= <one@family1.example>\r\n\r\nHello.\r\n");
            m
        }),
    ];
    let rcpts = [
        "member1@family1.example",
        "member2@family2.example",
        "member3@family3.example",
    ];
    for (n, (what, m)) in variants.iter().enumerate() {
        let reply = send(ts.smtp, "news@publisher.example", &rcpts, m)
            .await
            .unwrap();
        assert_eq!(reply, "250 2.0.0 Ok: queued as SINK1", "{what}");
        assert_eq!(sink.count(), n + 1, "{what}");
        let d = &sink.messages()[n];
        assert_eq!(d.from, "news@publisher.example");
        assert_eq!(d.rcpts, rcpts);
        let got = strip_trace(&d.data);

        let (got_fields, got_body) = fields(&got);
        let (want_fields, want_body) = fields(m);
        let to: Vec<&Vec<u8>> = got_fields
            .iter()
            .filter(|f| field_name(f) == "to")
            .collect();
        assert_eq!(to.len(), 1, "{what}: To fields: {}", to.len());
        assert_eq!(
            to[0].as_slice(),
            b"To: undisclosed-recipients:;\r\n",
            "{what}"
        );
        assert!(
            got_fields.iter().all(|f| field_name(f) != "cc"),
            "{what}: a Cc is left"
        );
        let text = String::from_utf8_lossy(&got);
        assert!(
            !text.contains("@family") && !text.contains("agency.example"),
            "{what}: a visible recipient address went out"
        );
        let rest = |fs: &[Vec<u8>]| -> Vec<u8> {
            fs.iter()
                .filter(|f| !matches!(field_name(f).as_str(), "to" | "cc"))
                .flatten()
                .copied()
                .collect()
        };
        assert_bytes_eq(&rest(&got_fields), &rest(&want_fields));
        assert_bytes_eq(&got_body, &want_body);
    }
    assert!(entries(&ts).is_empty(), "nothing held");
    ts.stop().await;
}

/// Incident 2's newsletter (832 addresses in To) whose body also carries two login id /
/// password pairs (`credentials`, held by the shipped policy).
fn visible_and_credentials() -> Vec<u8> {
    message(
        &[
            ("From", "news@publisher.example"),
            ("To", &address_list(832, 600)),
            ("Subject", "Your accounts"),
            ("MIME-Version", "1.0"),
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Transfer-Encoding", "8bit"),
        ],
        "受講者各位\r\nログインID: learner01\r\nパスワード: Xy7!kk2q\r\n\r\nID: learner02 PW: Zz9#mm3r\r\n",
    )
}

/// The one To field of what the upstream got, and whether any member address is visible.
fn sent_to_field(d: &sink::Delivered) -> (String, bool) {
    let got = strip_trace(&d.data);
    let (f, _) = fields(&got);
    let to: Vec<String> = f
        .iter()
        .filter(|x| matches!(field_name(x).as_str(), "to" | "cc"))
        .map(|x| String::from_utf8_lossy(x).chars().take(80).collect())
        .collect();
    assert_eq!(to.len(), 1, "{to:?}");
    let visible = String::from_utf8_lossy(&got).contains("@family");
    (to[0].clone(), visible)
}

/// Audit issue 4 #2: `visible_recipients` asks for bcc, but the message is held for another
/// reason (credentials): the spool keeps the original for review, and `quarantine release`
/// sends it with To undisclosed — never the 832 addresses.
#[tokio::test(flavor = "multi_thread")]
async fn a_held_bcc_message_is_released_rewritten() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let pol = policy_dir("[visible_recipients]\naction = \"bcc\"\n");
    let mut ts = TestServer::start(cfg(dir.path(), &sink, Some(pol.path()))).await;
    let m = visible_and_credentials();
    let Outcome::Held(id) = send_one(
        ts.smtp,
        "news@publisher.example",
        "member1@family1.example",
        &m,
    )
    .await
    else {
        panic!("credentials were forwarded");
    };
    assert_eq!(reasons(&entry(&ts, &id)), ["credentials"]);
    let raw = ts.app().quarantine.raw(&id).unwrap();
    assert_bytes_eq(&strip_trace(&raw), &m);
    let (code, out, err) = cli_at(&ts, &["quarantine", "release", &id]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(sink.count(), 1);
    let d = &sink.messages()[0];
    assert_eq!(d.rcpts, ["member1@family1.example"]);
    let (to, visible) = sent_to_field(d);
    assert_eq!(to, "To: undisclosed-recipients:;\r\n");
    assert!(!visible, "the 832 addresses went out visible on release");
    ts.stop().await;
}

/// The same when the other reason delays the message (credentials → delay): what goes out
/// when the delay is due is the rewritten message.
#[tokio::test(flavor = "multi_thread")]
async fn a_bcc_message_delayed_for_another_reason_goes_out_rewritten() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let pol = policy_dir(
        "[visible_recipients]\naction = \"bcc\"\n[credentials]\naction = \"delay\"\n[delay]\nduration = \"2s\"\n",
    );
    let mut ts = TestServer::start(cfg(dir.path(), &sink, Some(pol.path()))).await;
    let Outcome::Held(id) = send_one(
        ts.smtp,
        "news@publisher.example",
        "member1@family1.example",
        &visible_and_credentials(),
    )
    .await
    else {
        panic!("a delayed message was forwarded at once");
    };
    assert!(entry(&ts, &id).release_after.is_some());
    assert!(
        wait_until(Duration::from_secs(15), || sink.count() == 1).await,
        "the delayed message was not sent within 15 s"
    );
    let (to, visible) = sent_to_field(&sink.messages()[0]);
    assert_eq!(to, "To: undisclosed-recipients:;\r\n");
    assert!(
        !visible,
        "the 832 addresses went out visible after the delay"
    );
    ts.stop().await;
}

// ---------------------------------------------------------------------------------------
// 8. Notices.

/// Four held messages from one sender: exactly two notices (the limit), from the null
/// sender to the sender, with the id and the contact and never the content.
#[tokio::test(flavor = "multi_thread")]
async fn hold_notices_are_sent_and_rate_limited() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path(), &sink, None);
    c.notify.enabled = true;
    c.notify.contact = "it@corp.example".into();
    c.notify.max_per_sender_per_hour = 2;
    let mut ts = TestServer::start(c).await;
    let sender = "alice@corp.example";
    let m = incident2_message();
    let mut ids = Vec::new();
    for _ in 0..4 {
        let Outcome::Held(id) = send_one(ts.smtp, sender, "member1@family1.example", &m).await
        else {
            panic!("incident 2 was forwarded");
        };
        ids.push(id);
    }
    assert!(
        wait_until(Duration::from_secs(10), || sink.count() >= 2).await,
        "{} notices",
        sink.count()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let d = sink.messages();
    assert_eq!(d.len(), 2, "exactly two notices");
    let mut noticed = BTreeSet::new();
    for n in &d {
        assert_eq!(n.from, "", "null sender");
        assert_eq!(n.rcpts, [sender]);
        let text = String::from_utf8_lossy(&n.data);
        assert!(text.contains("it@corp.example"), "no contact in the notice");
        assert!(
            text.contains("visible_recipients"),
            "no reason in the notice"
        );
        assert!(
            !text.contains("December newsletter") && !text.contains("Dear members"),
            "the notice carries the held content"
        );
        assert!(!text.contains("member1@family1.example"));
        let which: Vec<&String> = ids.iter().filter(|id| text.contains(id.as_str())).collect();
        assert_eq!(which.len(), 1, "a notice names exactly one held id");
        noticed.insert(which[0].clone());
    }
    assert_eq!(noticed, ids[..2].iter().cloned().collect::<BTreeSet<_>>());
    let text = ts.metrics_text().await;
    assert_eq!(
        metric(&text, "mailbrake_notices_total{result=\"suppressed\"}"),
        Some(2.0)
    );
    assert_eq!(
        metric(&text, "mailbrake_notices_total{result=\"sent\"}"),
        Some(2.0)
    );
    ts.stop().await;
}

/// Audit issue 4 #4: the notice limit is per sender identity. An AUTH user whose mailer
/// gives every message its own return address (VERP, `bounce+N@…`) gets two notices for
/// four held messages (limit 2), not one per address.
#[tokio::test(flavor = "multi_thread")]
async fn notices_are_limited_per_sender_identity_not_per_return_address() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    std::fs::create_dir_all(&tls).unwrap();
    let (cert, key, pem) = make_cert(&tls);
    let mut c = config(&dir.path().join("data"), Some(sink.url()));
    c.tls.cert = Some(cert);
    c.tls.key = Some(key);
    c.auth.users = vec![mailbrake::config::AuthUser {
        name: "mailer".into(),
        password_hash: mailbrake::smtp::auth::hash_password("s3cret-pass").unwrap(),
    }];
    c.notify.enabled = true;
    c.notify.max_per_sender_per_hour = 2;
    let mut ts = TestServer::start(c).await;
    let t = starttls_transport(ts.smtp, &pem, Some(("mailer", "s3cret-pass")));
    for i in 0..4 {
        let from = format!("bounce+{i}@lists.example");
        let r = send_with(
            &t,
            &from,
            &["member1@family1.example"],
            &incident2_message(),
        )
        .await;
        assert!(matches!(outcome(&r), Outcome::Held(_)), "{r:?}");
    }
    assert!(
        wait_until(Duration::from_secs(10), || sink.count() >= 2).await,
        "{} notices",
        sink.count()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let d = sink.messages();
    assert_eq!(
        d.len(),
        2,
        "one allowance per AUTH user, whatever the return address"
    );
    assert_eq!(d[0].rcpts, ["bounce+0@lists.example"]);
    let text = ts.metrics_text().await;
    assert_eq!(
        metric(&text, "mailbrake_notices_total{result=\"suppressed\"}"),
        Some(2.0)
    );
    drop(t);
    ts.stop().await;
}

// ---------------------------------------------------------------------------------------
// 9. Surge.

/// A sender with no history, surge floor 5, no history required: the 6th message of the
/// hour is held as sender_surge (usual 0) and opens the brake.
#[tokio::test(flavor = "multi_thread")]
async fn surge_over_the_floor_from_a_new_sender_is_held() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let pol = policy_dir(&format!(
        "{}\n[sender.surge]\nmin_history_hours = 0\nfloor = 5\nmultiple = 10.0\n",
        one_window(10_000)
    ));
    let mut ts = TestServer::start(cfg(dir.path(), &sink, Some(pol.path()))).await;
    clear_of_hour_boundary(10).await;
    let from = "new-app@apps.example";
    let mut outs = Vec::new();
    for i in 0..7 {
        let to = format!("u{i}@d{i}.example");
        let m = text_mail(from, &to, "hello", "Hello.\r\n");
        outs.push(send_one(ts.smtp, from, &to, &m).await);
    }
    assert_eq!(forwarded(&outs[..5]), 5, "{outs:?}");
    let held = held_ids(&outs);
    assert_eq!(held.len(), 2, "{outs:?}");
    let e = entry(&ts, &held[0]);
    assert_eq!(reasons(&e), ["sender_surge"]);
    let f = e
        .findings
        .iter()
        .find(|f| f.reason.as_str() == "sender_surge")
        .unwrap();
    assert!(
        f.summary.contains("6 messages this hour") && f.summary.contains("usual 0.0"),
        "{}",
        f.summary
    );
    assert!(reasons(&entry(&ts, &held[1])).contains(&"breaker_open"));
    let b = brakes(&ts).await;
    assert_eq!(b.len(), 1);
    assert_eq!(b[0]["reason"], "sender_surge");
    assert_eq!(sink.count(), 5);
    ts.stop().await;
}

// ---------------------------------------------------------------------------------------
// 10. Overrides.

/// An exempt address sends 150 under the shipped windows; a domain override with a window
/// of 5 holds the 6th of each of its senders; other senders keep the shipped limits.
#[tokio::test(flavor = "multi_thread")]
async fn overrides_exempt_an_address_and_limit_a_domain() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let pol = policy_dir(
        "[[sender.overrides]]\nmatch = \"newsletter@corp.example\"\nexempt = true\n\n\
         [[sender.overrides]]\nmatch = \"@corp.example\"\n\
         windows = [{ window = \"10m\", max_messages = 5, max_recipients = 1000, max_domains = 1000 }]\n",
    );
    let mut ts = TestServer::start(cfg(dir.path(), &sink, Some(pol.path()))).await;
    let news = "newsletter@corp.example";
    let msgs: Vec<Out> = (0..150)
        .map(|i| {
            let to = format!("reader{i}@r{i}.example");
            Out {
                from: news.into(),
                data: text_mail(news, &to, "Newsletter", "This month's news.\r\n"),
                to,
            }
        })
        .collect();
    let outs = send_all(ts.smtp, 4, msgs).await;
    assert_eq!(forwarded(&outs), 150);
    assert_eq!(sink.count(), 150);

    for (sender, limited) in [
        ("alice@corp.example", true),
        ("bob@corp.example", true),
        ("carol@other.example", false),
    ] {
        let mut outs = Vec::new();
        for i in 0..6 {
            let to = format!("p{i}@partner{i}.example");
            let m = text_mail(sender, &to, "meeting", "See you tomorrow.\r\n");
            outs.push(send_one(ts.smtp, sender, &to, &m).await);
        }
        assert_eq!(forwarded(&outs[..5]), 5, "{sender}: {outs:?}");
        match (&outs[5], limited) {
            (Outcome::Held(id), true) => assert_eq!(reasons(&entry(&ts, id)), ["sender_rate"]),
            (Outcome::Forwarded, false) => {}
            (o, _) => panic!("{sender}: 6th message {o:?}"),
        }
    }
    assert_eq!(sink.count(), 150 + 5 + 5 + 6);
    let b = brakes(&ts).await;
    let senders: BTreeSet<&str> = b.iter().filter_map(|x| x["sender"].as_str()).collect();
    assert_eq!(
        senders,
        BTreeSet::from(["alice@corp.example", "bob@corp.example"])
    );
    ts.stop().await;
}

// ---------------------------------------------------------------------------------------
// 11. The breaker CLI.

/// `breaker list` shows SENDER / WHY / SINCE / HELD SINCE; `breaker reset` normalises the
/// sender's domain and exits 1 for a sender without a brake.
#[tokio::test(flavor = "multi_thread")]
async fn breaker_cli_lists_and_resets() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let pol = policy_dir(&one_window(2));
    let mut ts = TestServer::start(cfg(dir.path(), &sink, Some(pol.path()))).await;
    let (_, out, _) = cli_at(&ts, &["breaker", "list"]).await;
    assert!(out.contains("No open brakes."), "{out}");

    let from = "tripper@corp.example";
    let mut outs = Vec::new();
    for i in 0..5 {
        let to = format!("x{i}@y.example");
        let m = text_mail(from, &to, "s", "b\r\n");
        outs.push(send_one(ts.smtp, from, &to, &m).await);
    }
    assert_eq!(forwarded(&outs), 2);
    let (code, out, err) = cli_at(&ts, &["breaker", "list"]).await;
    assert_eq!(code, 0, "{err}");
    let mut lines = out.lines();
    let head = lines.next().unwrap();
    let cols: Vec<&str> = head
        .split("  ")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(cols, ["SENDER", "WHY", "SINCE", "HELD SINCE"], "{head}");
    let row = lines.next().unwrap();
    let cells: Vec<&str> = row
        .split("  ")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(cells.len(), 4, "{row}");
    assert_eq!(
        (cells[0], cells[1], cells[3]),
        (from, "sender_rate", "2"),
        "{row}"
    );
    assert!(lines.next().is_none(), "{out}");

    let (code, _, err) = cli_at(&ts, &["breaker", "reset", "unknown@x.example"]).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("unknown@x.example"), "{err}");
    let (code, out, err) = cli_at(&ts, &["breaker", "reset", "tripper@Corp.EXAMPLE"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(brakes(&ts).await.is_empty());
    let m = text_mail(from, "x9@y.example", "s", "b\r\n");
    assert_eq!(
        send_one(ts.smtp, from, "x9@y.example", &m).await,
        Outcome::Forwarded
    );
    ts.stop().await;
}
