//! Durability and operations of the quarantine (DESIGN.md §2.3–2.5, RELIABILITY.md §3.2):
//! restarts, `kill -9`, failed releases, deletes, bulk actions, storage failures,
//! reconciliation, id uniqueness, monitor mode and graceful shutdown.

use crate::common::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncReadExt;

// ---------------------------------------------------------------------------------------
// Helpers local to this file.

/// Sends incident 2 from `from` and returns the id it was held as.
async fn hold_from(smtp: SocketAddr, from: &str) -> String {
    let reply = send(
        smtp,
        from,
        &["member1@family1.example"],
        &incident2_message(),
    )
    .await
    .unwrap_or_else(|e| panic!("send failed: {e}"));
    assert!(reply.starts_with("250 2.0.0 Ok: held as "), "{reply}");
    held_id(&reply)
}

async fn hold(smtp: SocketAddr) -> String {
    hold_from(smtp, "news@publisher.example").await
}

/// Every line of NDJSON output, parsed (panics on a line that is not JSON).
fn json_lines(out: &str) -> Vec<Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {:.200}", l)))
        .collect()
}

/// Ids in a `quarantine list --json` output.
fn ids_of(out: &str) -> BTreeSet<String> {
    json_lines(out)
        .iter()
        .map(|v| v["id"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Ids listed in `state` (empty when nothing matched).
async fn listed(ts: &TestServer, state: &str) -> BTreeSet<String> {
    let (code, out, err) = cli_at(ts, &["quarantine", "list", "--state", state, "--json"]).await;
    assert!(code == 0 || code == 1, "list exit {code}: {err}");
    ids_of(&out)
}

fn held_path(data: &Path, id: &str) -> PathBuf {
    data.join("spool").join("held").join(id)
}

// ---------------------------------------------------------------------------------------
// 1. Restart in process.

/// RELIABILITY.md T19: held mail survives a restart; a release after it delivers once.
#[tokio::test(flavor = "multi_thread")]
async fn held_mail_survives_a_restart_and_releases_once() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut ts = TestServer::start(config(dir.path(), Some(sink.url()))).await;
    let mut ids = BTreeSet::new();
    for _ in 0..3 {
        ids.insert(hold(ts.smtp).await);
    }
    assert_eq!(ids.len(), 3);
    ts.stop().await;

    let mut ts = TestServer::start(config(dir.path(), Some(sink.url()))).await;
    let (code, out, err) = cli_at(&ts, &["quarantine", "list", "--json"]).await;
    assert_eq!(code, 0, "{err}");
    let entries = json_lines(&out);
    assert_eq!(entries.len(), 3, "{out}");
    for e in &entries {
        assert!(ids.contains(e["id"].as_str().unwrap()), "{e}");
        assert_eq!(e["state"], "held");
        assert_eq!(e["reasons"], serde_json::json!(["visible_recipients"]));
    }
    let (code, out, _) = cli_at(&ts, &["quarantine", "list"]).await;
    assert_eq!(code, 0);
    assert!(ids.iter().all(|id| out.contains(id.as_str())), "{out}");
    assert_eq!(out.matches("visible_recipients").count(), 3, "{out}");

    let first = ids.iter().next().unwrap().clone();
    let (code, out, err) = cli_at(&ts, &["quarantine", "release", &first]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(sink.count(), 1);
    let (code, out, _) = cli_at(&ts, &["quarantine", "release", &first]).await;
    assert_eq!(code, 0);
    assert!(out.contains("already released"), "{out}");
    assert_eq!(sink.count(), 1, "a message is delivered once");
    let held = listed(&ts, "held").await;
    assert_eq!(held.len(), 2);
    assert!(!held.contains(&first));
    ts.stop().await;
}

// ---------------------------------------------------------------------------------------
// 2. kill -9 of the real binary.

/// RELIABILITY.md T1 (process crash): every message answered `250 ... held as` is in the
/// quarantine after `kill -9` and a restart on the same data directory.
#[tokio::test(flavor = "multi_thread")]
async fn held_mail_survives_kill_9_of_the_binary() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let smtp: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let toml = format!(
        "[server]\nlisten = [\"{smtp}\"]\nhostname = \"mailbrake.test\"\ndata_dir = {data:?}\n\
         policies = {pol:?}\nshutdown_grace = \"2s\"\n\n\
         [limits]\nmin_free_space = \"1MiB\"\nmax_message_size = \"1MiB\"\n\n\
         [admin]\nlisten = \"{admin}\"\n\n[metrics]\nlisten = \"{metrics}\"\n\n\
         [upstream]\nurl = \"{url}\"\ntimeout = \"10s\"\n",
        data = data.display().to_string(),
        pol = policies_dir().display().to_string(),
        url = sink.url(),
    );
    let cfg = dir.path().join("mailbrake.toml");
    std::fs::write(&cfg, toml).unwrap();

    let mut child = ChildGuard::spawn(&cfg, dir.path().join("serve1.log"));
    child.wait_ready(smtp).await;
    let mut ids = BTreeSet::new();
    for _ in 0..5 {
        ids.insert(hold(smtp).await);
    }
    assert_eq!(ids.len(), 5);
    child.kill();

    let mut child = ChildGuard::spawn(&cfg, dir.path().join("serve2.log"));
    child.wait_ready(smtp).await;
    let (code, out, err) = cli(vec![
        "quarantine".into(),
        "list".into(),
        "--json".into(),
        "--admin".into(),
        admin.to_string(),
        "--data-dir".into(),
        data.display().to_string(),
    ])
    .await;
    assert_eq!(code, 0, "{err} / server log: {}", child.log_tail());
    assert_eq!(ids_of(&out), ids);
    assert!(json_lines(&out).iter().all(|e| e["state"] == "held"));
    assert_eq!(sink.count(), 0);
    child.kill();
}

// ---------------------------------------------------------------------------------------
// 3. Failed release.

/// DESIGN.md §2.4: a failed release leaves the message held with the error shown; a later
/// release succeeds and records the upstream's reply.
#[tokio::test(flavor = "multi_thread")]
async fn failed_release_stays_held_with_the_error_shown() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut ts = TestServer::start(config(dir.path(), Some(sink.url()))).await;
    let id = hold(ts.smtp).await;

    sink.set_mode(Mode::TempFailData);
    let (code, out, err) = cli_at(&ts, &["quarantine", "release", &id]).await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("NOT released"), "{out}");
    assert_eq!(sink.count(), 0);

    let (code, out, _) = cli_at(&ts, &["quarantine", "show", &id]).await;
    assert_eq!(code, 0);
    assert!(
        out.lines()
            .any(|l| l.starts_with("state:") && l.trim_end().ends_with("held")),
        "{out}"
    );
    let last_error = out
        .lines()
        .find(|l| l.starts_with("last error"))
        .unwrap_or_else(|| panic!("no last error line: {out}"));
    assert!(last_error.contains("451"), "{last_error}");

    let (code, out, _) = cli_at(&ts, &["quarantine", "show", &id, "--json"]).await;
    assert_eq!(code, 0);
    let e: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(e["state"], "held");
    assert_eq!(e["attempts"], 1);
    assert!(
        e["last_error"].as_str().is_some_and(|s| s.contains("451")),
        "{e}"
    );
    assert!(held_path(&ts.data_dir, &id).is_file());

    sink.set_mode(Mode::Accept);
    let (code, out, err) = cli_at(&ts, &["quarantine", "release", &id]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(sink.count(), 1);
    let (code, out, _) = cli_at(
        &ts,
        &["quarantine", "list", "--state", "released", "--json"],
    )
    .await;
    assert_eq!(code, 0);
    let entries = json_lines(&out);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["id"], id.as_str());
    assert!(
        entries[0]["upstream_reply"]
            .as_str()
            .is_some_and(|r| r.starts_with("250")),
        "{}",
        entries[0]
    );
    assert!(entries[0]["last_error"].is_null());
    ts.stop().await;
}

// ---------------------------------------------------------------------------------------
// 4. Delete.

/// Delete removes the spool file durably, keeps an audit record, is idempotent, and a
/// deleted message can never be released.
#[tokio::test(flavor = "multi_thread")]
async fn delete_removes_the_spool_file_and_is_idempotent() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut ts = TestServer::start(config(dir.path(), Some(sink.url()))).await;
    let id = hold(ts.smtp).await;
    assert!(held_path(&ts.data_dir, &id).is_file());

    let (code, out, err) = cli_at(&ts, &["quarantine", "delete", &id]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(!held_path(&ts.data_dir, &id).exists(), "spool file remains");

    let (code, out, _) = cli_at(&ts, &["quarantine", "list"]).await;
    assert_eq!(code, 1, "nothing held any more: {out}");
    assert!(!out.contains(&id));

    let (code, out, _) = cli_at(&ts, &["quarantine", "list", "--state", "deleted", "--json"]).await;
    assert_eq!(code, 0);
    let entries = json_lines(&out);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["id"], id.as_str());
    assert_eq!(entries[0]["state"], "deleted");
    assert!(
        entries[0]["deleted_at"].as_u64().is_some(),
        "{}",
        entries[0]
    );

    let (code, out, err) = cli_at(&ts, &["quarantine", "delete", &id]).await;
    assert_eq!(code, 0, "deleting twice is a no-op: {out}{err}");

    let (code, out, err) = cli_at(&ts, &["quarantine", "release", &id]).await;
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(sink.count(), 0);
    assert_eq!(*sink.connections.lock().unwrap(), 0);
    ts.stop().await;
}

// ---------------------------------------------------------------------------------------
// 5. Bulk actions.

/// `--all` with filters acts on every match and nothing else; without `--yes` it is a
/// usage error that changes nothing.
#[tokio::test(flavor = "multi_thread")]
async fn bulk_release_and_delete_follow_their_filters() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut ts = TestServer::start(config(dir.path(), Some(sink.url()))).await;
    let a1 = hold(ts.smtp).await;
    let a2 = hold(ts.smtp).await;
    // Held for another reason: 51 envelope recipients of an ordinary message.
    let rcpts: Vec<String> = (0..51).map(|i| format!("r{i}@dest.example")).collect();
    let rcpt_refs: Vec<&str> = rcpts.iter().map(String::as_str).collect();
    let plain = message(
        &[
            ("From", "bulk@other.example"),
            ("To", "r0@dest.example"),
            ("Subject", "hello"),
        ],
        "Hi.\r\n",
    );
    let reply = send(ts.smtp, "bulk@other.example", &rcpt_refs, &plain)
        .await
        .unwrap();
    assert!(reply.starts_with("250 2.0.0 Ok: held as "), "{reply}");
    let b = held_id(&reply);

    let (code, out, err) = cli_at(
        &ts,
        &[
            "quarantine",
            "release",
            "--all",
            "--reason",
            "visible_recipients",
        ],
    )
    .await;
    assert_eq!(code, 2, "--all needs --yes: {out}{err}");
    assert_eq!(sink.count(), 0);
    assert_eq!(listed(&ts, "held").await.len(), 3);

    let (code, out, err) = cli_at(
        &ts,
        &[
            "quarantine",
            "release",
            "--all",
            "--reason",
            "visible_recipients",
            "--yes",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(sink.count(), 2);
    assert_eq!(
        listed(&ts, "released").await,
        BTreeSet::from([a1.clone(), a2.clone()])
    );
    assert_eq!(listed(&ts, "held").await, BTreeSet::from([b.clone()]));

    let c = hold_from(ts.smtp, "carol@third.example").await;
    let d = hold_from(ts.smtp, "dave@fourth.example").await;
    let (code, out, err) =
        cli_at(&ts, &["quarantine", "delete", "--all", "--sender", "carol"]).await;
    assert_eq!(code, 2, "--all needs --yes: {out}{err}");
    assert_eq!(listed(&ts, "held").await.len(), 3);

    let (code, out, err) = cli_at(
        &ts,
        &[
            "quarantine",
            "delete",
            "--all",
            "--sender",
            "carol",
            "--yes",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(listed(&ts, "deleted").await, BTreeSet::from([c.clone()]));
    assert_eq!(listed(&ts, "held").await, BTreeSet::from([b, d]));
    assert!(!held_path(&ts.data_dir, &c).exists());
    assert_eq!(sink.count(), 2);
    ts.stop().await;
}

// ---------------------------------------------------------------------------------------
// 6. Storage failure.

/// RELIABILITY.md §3.2 rule 7: a write failure during the commit answers `451 4.3.5`,
/// never 250; nothing is half-stored; once storage is back, holding works again.
#[tokio::test(flavor = "multi_thread")]
async fn storage_failure_answers_451_4_3_5_and_recovers() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut ts = TestServer::start(config(dir.path(), Some(sink.url()))).await;
    let held_dir = ts.data_dir.join("spool").join("held");
    std::fs::remove_dir_all(&held_dir).unwrap();
    std::fs::write(&held_dir, b"not a directory\n").unwrap();

    let err = send(
        ts.smtp,
        "news@publisher.example",
        &["member1@family1.example"],
        &incident2_message(),
    )
    .await
    .expect_err("a message that cannot be stored must not get 250");
    assert!(err.contains("451") && err.contains("4.3.5"), "{err}");
    assert_eq!(sink.count(), 0);
    let tmp_left = std::fs::read_dir(ts.data_dir.join("spool").join("tmp"))
        .unwrap()
        .count();
    assert_eq!(tmp_left, 0, "no half-written file is left in spool/tmp");
    let (code, out, _) = cli_at(&ts, &["quarantine", "list", "--state", "all"]).await;
    assert_eq!(code, 1, "nothing half-indexed: {out}");
    assert!(
        ts.metrics_text()
            .await
            .contains("mailbrake_messages_total{verdict=\"tempfail\"} 1")
    );

    std::fs::remove_file(&held_dir).unwrap();
    std::fs::create_dir(&held_dir).unwrap();
    let id = hold(ts.smtp).await;
    assert!(held_path(&ts.data_dir, &id).is_file());
    assert_eq!(listed(&ts, "held").await, BTreeSet::from([id]));
    assert_eq!(sink.count(), 0);
    ts.stop().await;
}

// ---------------------------------------------------------------------------------------
// 7. Reconciliation at start-up.

/// RELIABILITY.md §3.2 rule 3: sled is only an index; without it, start-up rebuilds it
/// from the spool.
#[tokio::test(flavor = "multi_thread")]
async fn deleted_index_is_rebuilt_from_the_spool() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut ts = TestServer::start(config(dir.path(), Some(sink.url()))).await;
    let ids = BTreeSet::from([hold(ts.smtp).await, hold(ts.smtp).await]);
    ts.stop().await;
    std::fs::remove_dir_all(dir.path().join("index")).unwrap();

    let mut ts = TestServer::start(config(dir.path(), Some(sink.url()))).await;
    let (code, out, err) = cli_at(&ts, &["quarantine", "list", "--json"]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(ids_of(&out), ids);
    for e in json_lines(&out) {
        assert_eq!(e["state"], "held");
        assert_eq!(e["reasons"], serde_json::json!(["visible_recipients"]));
        assert_eq!(e["from"], "news@publisher.example");
    }
    // The rebuilt entry is releasable.
    let first = ids.iter().next().unwrap();
    let (code, out, err) = cli_at(&ts, &["quarantine", "release", first]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(sink.count(), 1);
    ts.stop().await;
}

/// A spool file that fails verification (torn: garbage after the trailer) is moved to
/// `spool/corrupt/` at start-up and not listed as held; the others stay held.
#[tokio::test(flavor = "multi_thread")]
async fn corrupt_spool_file_is_moved_aside_at_start() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut ts = TestServer::start(config(dir.path(), Some(sink.url()))).await;
    let bad = hold(ts.smtp).await;
    let good = hold(ts.smtp).await;
    ts.stop().await;
    let path = held_path(dir.path(), &bad);
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(b"garbage after the trailer")
        .unwrap();

    let mut ts = TestServer::start(config(dir.path(), Some(sink.url()))).await;
    assert_eq!(listed(&ts, "held").await, BTreeSet::from([good]));
    assert!(!path.exists());
    assert!(
        dir.path()
            .join("spool")
            .join("corrupt")
            .join(&bad)
            .is_file()
    );
    ts.stop().await;
}

/// The same with the index gone as well: the file is verified while re-indexing, moved
/// to `spool/corrupt/`, and the intact one is re-indexed as held.
#[tokio::test(flavor = "multi_thread")]
async fn corrupt_spool_file_without_index_is_moved_aside_at_start() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut ts = TestServer::start(config(dir.path(), Some(sink.url()))).await;
    let bad = hold(ts.smtp).await;
    let good = hold(ts.smtp).await;
    ts.stop().await;
    let path = held_path(dir.path(), &bad);
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    std::fs::remove_dir_all(dir.path().join("index")).unwrap();

    let mut ts = TestServer::start(config(dir.path(), Some(sink.url()))).await;
    assert_eq!(listed(&ts, "held").await, BTreeSet::from([good]));
    assert!(!path.exists());
    assert!(
        dir.path()
            .join("spool")
            .join("corrupt")
            .join(&bad)
            .is_file()
    );
    ts.stop().await;
}

/// A file left in `spool/tmp/` was never acknowledged: it is removed at start-up.
#[tokio::test(flavor = "multi_thread")]
async fn leftover_tmp_file_is_removed_at_start() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut ts = TestServer::start(config(dir.path(), Some(sink.url()))).await;
    let id = hold(ts.smtp).await;
    ts.stop().await;
    let tmp = dir
        .path()
        .join("spool")
        .join("tmp")
        .join("01ARZ3NDEKTSV4RRFFQ69G5FAV");
    std::fs::write(&tmp, b"MBSPOOL1 torn").unwrap();

    let mut ts = TestServer::start(config(dir.path(), Some(sink.url()))).await;
    assert!(!tmp.exists(), "leftover tmp file still there");
    assert_eq!(listed(&ts, "held").await, BTreeSet::from([id]));
    assert_eq!(listed(&ts, "all").await.len(), 1);
    ts.stop().await;
}

// ---------------------------------------------------------------------------------------
// 8. Ids.

/// RELIABILITY.md §3.2 rule 8: ids are unique and never reused, across restarts.
#[tokio::test(flavor = "multi_thread")]
async fn ids_are_never_reused_across_restarts() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut all = Vec::new();
    for round in 0..3 {
        let ts_cfg = config(dir.path(), Some(sink.url()));
        let mut ts = TestServer::start(ts_cfg).await;
        let n = if round == 2 { 6 } else { 7 };
        for _ in 0..n {
            all.push(hold(ts.smtp).await);
        }
        if round == 2 {
            let held = listed(&ts, "held").await;
            assert_eq!(held.len(), 20);
            assert!(all.iter().all(|id| held.contains(id)));
        }
        ts.stop().await;
    }
    let distinct: BTreeSet<&String> = all.iter().collect();
    assert_eq!(all.len(), 20);
    assert_eq!(distinct.len(), 20, "an id was reused");
}

// ---------------------------------------------------------------------------------------
// 9. Monitor mode.

/// DESIGN.md §5: `mode = "monitor"` decides and counts but forwards.
#[tokio::test(flavor = "multi_thread")]
async fn monitor_mode_forwards_and_counts() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let pol = dir.path().join("policies");
    std::fs::create_dir(&pol).unwrap();
    std::fs::copy(
        policies_dir().join("default.toml"),
        pol.join("default.toml"),
    )
    .unwrap();
    std::fs::write(pol.join("local.toml"), "mode = \"monitor\"\n").unwrap();
    let data = dir.path().join("data");
    let mut c = config(&data, Some(sink.url()));
    c.server.policies = Some(pol);
    let mut ts = TestServer::start(c).await;

    let reply = send(
        ts.smtp,
        "news@publisher.example",
        &["member1@family1.example"],
        &incident2_message(),
    )
    .await
    .unwrap();
    assert_eq!(reply, "250 2.0.0 Ok: queued as SINK1");
    assert_eq!(sink.count(), 1);
    let (code, out, _) = cli_at(&ts, &["quarantine", "list", "--state", "all"]).await;
    assert_eq!(code, 1, "nothing held: {out}");
    let metrics = ts.metrics_text().await;
    assert!(
        metrics
            .lines()
            .any(|l| l == "mailbrake_holds_total{mode=\"monitor\",reason=\"visible_recipients\"} 1"),
        "monitor hold not counted"
    );
    assert!(
        !metrics
            .lines()
            .any(|l| l.starts_with("mailbrake_holds_total{mode=\"enforce\"") && !l.ends_with(" 0")),
        "an enforce hold was counted"
    );
    ts.stop().await;
}

// ---------------------------------------------------------------------------------------
// 10. Graceful shutdown.

/// RELIABILITY.md T18: idle sessions get `421 4.3.2`, a session in DATA finishes with
/// 250, new connections are refused, and `wait()` returns.
#[tokio::test(flavor = "multi_thread")]
async fn graceful_shutdown_drains_sessions() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut ts = TestServer::start(config(dir.path(), Some(sink.url()))).await;

    let mut idle = Raw::connect(ts.smtp).await;
    assert!(idle.reply().await.starts_with("220 "));
    assert!(idle.cmd("EHLO idle.example").await.starts_with("250"));

    let mut busy = Raw::connect(ts.smtp).await;
    assert!(busy.reply().await.starts_with("220 "));
    assert!(busy.cmd("EHLO busy.example").await.starts_with("250"));
    assert!(
        busy.cmd("MAIL FROM:<a1@alpha.example>")
            .await
            .starts_with("250")
    );
    assert!(
        busy.cmd("RCPT TO:<b1@beta.example>")
            .await
            .starts_with("250")
    );
    assert!(busy.cmd("DATA").await.starts_with("354"));
    busy.send(b"From: a1@alpha.example\r\nTo: b1@beta.example\r\nSubject: half\r\n\r\nfirst")
        .await;

    ts.server.as_ref().unwrap().shutdown();

    let r = idle.reply_within(Duration::from_secs(5)).await;
    assert!(r.starts_with("421 4.3.2"), "idle session got {r:?}");
    assert!(idle.closed_within(Duration::from_secs(5)).await);

    busy.send(b" half, second half.\r\n.\r\n").await;
    let r = busy.reply_within(Duration::from_secs(10)).await;
    assert!(r.starts_with("250 "), "in-DATA session got {r:?}");
    assert_eq!(sink.count(), 1);

    match tokio::time::timeout(
        Duration::from_secs(3),
        tokio::net::TcpStream::connect(ts.smtp),
    )
    .await
    {
        Err(_) | Ok(Err(_)) => {}
        Ok(Ok(mut s)) => {
            let mut buf = [0u8; 512];
            // EOF, a reset or silence are all fine; a greeting is not.
            if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf)).await
            {
                assert!(
                    !buf[..n].starts_with(b"220"),
                    "a new connection was greeted after shutdown: {:?}",
                    String::from_utf8_lossy(&buf[..n])
                );
            }
        }
    }

    let server = ts.server.take().unwrap();
    tokio::time::timeout(Duration::from_secs(10), server.wait())
        .await
        .expect("wait() returns after the sessions drained");
    let r = busy.reply_within(Duration::from_secs(5)).await;
    assert!(r.is_empty() || r.starts_with("421 4.3.2"), "{r:?}");
}

/// Held mail and outbox mail are personal data: the data directory mailbrake creates is
/// 0700 and every spool and outbox file is 0600, whatever the umask (the quick start runs
/// outside systemd's UMask=0077).
#[tokio::test(flavor = "multi_thread")]
async fn held_and_outbox_files_are_private_to_the_service_user() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut ts = TestServer::start(config(&data, None)).await;
    let held = send(
        ts.smtp,
        "staff@example.co.jp",
        &["partner@partner.example.jp"],
        &incident2_message(),
    )
    .await
    .unwrap();
    assert!(held.starts_with("250 2.0.0 Ok: held as "), "{held}");
    let clean = send(
        ts.smtp,
        "staff@example.co.jp",
        &["partner@partner.example.jp"],
        &message(&[("Subject", "hello")], "hello"),
    )
    .await
    .unwrap();
    assert!(clean.starts_with("250 "), "{clean}");
    ts.stop().await;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700, "data directory");
    let mut files = 0;
    for sub in ["spool/held", "outbox"] {
        assert_eq!(mode(&data.join(sub)), 0o700, "{sub}");
        for e in std::fs::read_dir(data.join(sub)).unwrap() {
            let p = e.unwrap().path();
            assert_eq!(mode(&p), 0o600, "{}", p.display());
            files += 1;
        }
    }
    assert_eq!(files, 2, "one held file and one outbox file");
}
