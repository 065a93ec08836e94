//! The command-line contract (DESIGN.md §3): exit codes 0/1/2/3, NDJSON and escaped human
//! output, the token, `check-config`, `policy test`, metrics and help.

use crate::common::*;
use serde_json::Value;
use std::path::Path;

// ---------------------------------------------------------------------------------------
// Helpers local to this file.

/// Runs the binary with extra environment variables: (exit code, stdout, stderr).
async fn cli_env(args: Vec<String>, envs: Vec<(String, String)>) -> (i32, String, String) {
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_mailbrake"))
            .args(&args)
            .env_remove("MAILBRAKE_ADMIN")
            .env_remove("MAILBRAKE_ADMIN_TOKEN")
            .env_remove("MAILBRAKE_CONFIG")
            .envs(envs)
            .output()
            .unwrap_or_else(|e| panic!("cannot run mailbrake: {e}"))
    })
    .await
    .unwrap_or_else(|e| panic!("the CLI task failed: {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// Starts a server on a fresh data directory with a sink upstream.
async fn server(dir: &Path) -> (Sink, TestServer) {
    let sink = Sink::start().await;
    let ts = TestServer::start(config(dir, Some(sink.url()))).await;
    (sink, ts)
}

async fn hold_message(ts: &TestServer, m: &[u8]) -> String {
    let reply = send(
        ts.smtp,
        "news@publisher.example",
        &["member1@family1.example"],
        m,
    )
    .await
    .unwrap_or_else(|e| panic!("send failed: {e}"));
    assert!(reply.starts_with("250 2.0.0 Ok: held as "), "{reply}");
    held_id(&reply)
}

/// Runs `policy test FILE --json [extra]` and returns the one JSON line.
async fn policy_json(file: &Path, extra: &[&str]) -> Value {
    let mut args = strings(&["policy", "test"]);
    args.push(file.display().to_string());
    args.push("--json".into());
    args.extend(strings(extra));
    let (code, out, err) = cli(args).await;
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "exactly one JSON line expected: {:.300}",
        out
    );
    serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("not JSON ({e}): {:.300}", lines[0]))
}

fn reasons_of(findings: &Value) -> Vec<String> {
    findings
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| f["reason"].as_str().unwrap_or_default().to_string())
        .collect()
}

const UNKNOWN_ID: &str = "01ARZ3NDEKTSV4RRFFQ69G5FAV";

// ---------------------------------------------------------------------------------------
// Exit codes and not-found answers.

/// Exit 1 = nothing matched: an empty quarantine.
#[tokio::test(flavor = "multi_thread")]
async fn list_of_an_empty_quarantine_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let (_sink, mut ts) = server(dir.path()).await;
    let (code, out, err) = cli_at(&ts, &["quarantine", "list"]).await;
    assert_eq!(code, 1, "{err}");
    assert!(out.contains("Quarantine is empty"), "{out}");
    let (code, out, _) = cli_at(&ts, &["quarantine", "list", "--json"]).await;
    assert_eq!(code, 1);
    assert!(out.is_empty(), "no JSON lines when nothing matched: {out}");
    ts.stop().await;
}

/// Unknown ids and path-traversal attempts are "not found", and nothing else is printed.
#[tokio::test(flavor = "multi_thread")]
async fn show_of_unknown_or_malicious_id_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let (_sink, mut ts) = server(dir.path()).await;
    let (code, out, err) = cli_at(&ts, &["quarantine", "show", UNKNOWN_ID]).await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.is_empty(), "{out}");
    for raw in [false, true] {
        let mut args = vec!["quarantine", "show", "../../etc/passwd"];
        if raw {
            args.push("--raw");
        }
        let (code, out, err) = cli_at(&ts, &args).await;
        assert_eq!(code, 1, "{out}{err}");
        assert!(
            !out.contains("root:") && !err.contains("root:"),
            "file content leaked"
        );
        assert!(out.is_empty(), "{out}");
    }
    let (code, out, err) = cli_at(&ts, &["quarantine", "release", UNKNOWN_ID]).await;
    assert_eq!(code, 1, "{out}{err}");
    let (code, out, err) = cli_at(&ts, &["quarantine", "delete", UNKNOWN_ID]).await;
    assert_eq!(code, 1, "{out}{err}");
    ts.stop().await;
}

/// Exit 3: nothing listens on the admin address.
#[tokio::test(flavor = "multi_thread")]
async fn unreachable_server_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("admin.token"),
        "0123456789abcdef0123456789abcdef\n",
    )
    .unwrap();
    let port = free_port();
    let (code, out, err) = cli(vec![
        "quarantine".into(),
        "list".into(),
        "--admin".into(),
        format!("127.0.0.1:{port}"),
        "--data-dir".into(),
        dir.path().display().to_string(),
    ])
    .await;
    assert_eq!(code, 3, "{out}{err}");
    assert!(err.contains("admin API"), "{err}");
}

/// Exit 2 without a token; a wrong token is refused (and the API answers 401 without one).
#[tokio::test(flavor = "multi_thread")]
async fn missing_or_wrong_token_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_sink, mut ts) = server(dir.path()).await;
    let empty = tempfile::tempdir().unwrap();
    let (code, out, err) = cli(vec![
        "quarantine".into(),
        "list".into(),
        "--admin".into(),
        ts.admin.to_string(),
        "--data-dir".into(),
        empty.path().display().to_string(),
    ])
    .await;
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("token"), "{err}");

    let mut args = strings(&["quarantine", "list"]);
    args.extend(ts.conn_args());
    let (code, out, err) =
        cli_env(args, vec![("MAILBRAKE_ADMIN_TOKEN".into(), "wrong".into())]).await;
    assert_ne!(code, 0, "{out}{err}");
    assert!(err.contains("token"), "{err}");
    assert!(!out.contains("Quarantine is empty"), "{out}");

    let (status, _) = http_get(ts.admin, "/api/v1/status", None).await;
    assert_eq!(status, 401);
    let (status, _) = http_get(ts.admin, "/api/v1/quarantine", Some("wrong")).await;
    assert_eq!(status, 401);
    let token = std::fs::read_to_string(ts.data_dir.join("admin.token")).unwrap();
    let (status, body) = http_get(ts.admin, "/api/v1/status", Some(token.trim())).await;
    assert_eq!(status, 200, "{body}");
    ts.stop().await;
}

/// DESIGN.md §2.5: the token is generated into the data directory with mode 0600.
#[tokio::test(flavor = "multi_thread")]
async fn token_file_has_mode_0600() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (_sink, mut ts) = server(dir.path()).await;
    let meta = std::fs::metadata(ts.data_dir.join("admin.token")).unwrap();
    assert!(meta.is_file());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let token = std::fs::read_to_string(ts.data_dir.join("admin.token")).unwrap();
    assert!(token.trim().len() >= 32);
    ts.stop().await;
}

// ---------------------------------------------------------------------------------------
// Offline commands.

/// `check-config`: 0 with defaults; 2 for an unknown key (named) or tls_listen without a
/// certificate.
#[tokio::test(flavor = "multi_thread")]
async fn check_config_exit_codes() {
    let (code, out, err) = cli(strings(&["check-config"])).await;
    assert_eq!(code, 0, "{out}{err}");

    let dir = tempfile::tempdir().unwrap();
    let unknown = dir.path().join("unknown.toml");
    std::fs::write(&unknown, "[server]\nlisten_adress = [\"127.0.0.1:2525\"]\n").unwrap();
    let (code, out, err) = cli(vec![
        "check-config".into(),
        "--config".into(),
        unknown.display().to_string(),
    ])
    .await;
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("listen_adress"), "{err}");

    let tls = dir.path().join("tls.toml");
    std::fs::write(&tls, "[server]\ntls_listen=[\"127.0.0.1:465\"]\n").unwrap();
    let (code, out, err) = cli(vec![
        "check-config".into(),
        "--config".into(),
        tls.display().to_string(),
    ])
    .await;
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("tls_listen"), "{err}");

    let missing = dir.path().join("missing.toml");
    let (code, _, err) = cli(vec![
        "check-config".into(),
        "--config".into(),
        missing.display().to_string(),
    ])
    .await;
    assert_eq!(code, 2, "{err}");
}

/// Audit issue 4 #7: `check-config` refuses `bcc` on any rule but visible_recipients (exit
/// 2, the key named), and accepts it there.
#[tokio::test(flavor = "multi_thread")]
async fn check_config_refuses_bcc_outside_visible_recipients() {
    let dir = tempfile::tempdir().unwrap();
    let pol = dir.path().join("policies");
    std::fs::create_dir_all(&pol).unwrap();
    std::fs::copy(
        policies_dir().join("default.toml"),
        pol.join("default.toml"),
    )
    .unwrap();
    let check = || {
        cli(vec![
            "check-config".into(),
            "--policies".into(),
            pol.display().to_string(),
        ])
    };
    std::fs::write(pol.join("local.toml"), "[credentials]\naction = \"bcc\"\n").unwrap();
    let (code, out, err) = check().await;
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("credentials.action") && err.contains("only valid for visible_recipients"),
        "{err}"
    );
    std::fs::write(
        pol.join("local.toml"),
        "[visible_recipients]\naction = \"bcc\"\n",
    )
    .unwrap();
    let (code, out, err) = check().await;
    assert_eq!(code, 0, "{out}{err}");
}

/// `policy test` explains the verdict offline, in JSON and for people, whatever the line
/// endings of the file.
#[tokio::test(flavor = "multi_thread")]
async fn policy_test_explains_verdicts() {
    let dir = tempfile::tempdir().unwrap();
    let incident = dir.path().join("incident2.eml");
    let m = incident2_message();
    std::fs::write(&incident, &m).unwrap();
    let incident_lf = dir.path().join("incident2-lf.eml");
    std::fs::write(
        &incident_lf,
        String::from_utf8(m.clone()).unwrap().replace("\r\n", "\n"),
    )
    .unwrap();
    let plain_msg = message(
        &[
            ("From", "a1@alpha.example"),
            ("To", "b1@beta.example"),
            ("Subject", "lunch"),
        ],
        "See you at noon.\r\n",
    );
    let plain = dir.path().join("plain.eml");
    std::fs::write(&plain, &plain_msg).unwrap();
    let plain_lf = dir.path().join("plain-lf.eml");
    std::fs::write(
        &plain_lf,
        String::from_utf8(plain_msg).unwrap().replace("\r\n", "\n"),
    )
    .unwrap();

    for file in [&incident, &incident_lf] {
        // The envelope as the server saw it in incident 2: one recipient.
        let v = policy_json(file, &["--to", "member1@family1.example"]).await;
        assert_eq!(v["verdict"], "hold", "{v}");
        assert_eq!(
            v["reasons"],
            serde_json::json!(["visible_recipients"]),
            "{v}"
        );
        let f = v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["reason"] == "visible_recipients")
            .unwrap_or_else(|| panic!("no visible_recipients finding: {v}"));
        assert_eq!(f["count"], 832, "{f}");
        // Default envelope: To/Cc/Bcc headers, so 832 envelope recipients as well.
        let v = policy_json(file, &[]).await;
        assert_eq!(v["verdict"], "hold", "{v}");
        assert!(reasons_of(&v["findings"]).contains(&"visible_recipients".to_string()));
    }
    for file in [&plain, &plain_lf] {
        let v = policy_json(file, &[]).await;
        assert_eq!(v["verdict"], "forward", "{v}");
        assert_eq!(v["reasons"], serde_json::json!([]), "{v}");
    }

    let (code, out, err) = cli(vec![
        "policy".into(),
        "test".into(),
        incident.display().to_string(),
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("verdict: hold"), "{out}");
    let (code, out, _) = cli(vec![
        "policy".into(),
        "test".into(),
        plain.display().to_string(),
    ])
    .await;
    assert_eq!(code, 0);
    assert!(out.contains("verdict: forward"), "{out}");

    // --to overrides the envelope: 61 recipients are too many for one ordinary message.
    let mut extra: Vec<String> = Vec::new();
    for i in 0..61 {
        extra.push("--to".into());
        extra.push(format!("r{i}@dest{}.example", i % 3));
    }
    let extra_refs: Vec<&str> = extra.iter().map(String::as_str).collect();
    let v = policy_json(&plain, &extra_refs).await;
    assert_eq!(v["verdict"], "hold", "{v}");
    assert_eq!(v["envelope"]["rcpt_count"], 61, "{v}");
    let f = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["reason"] == "too_many_recipients")
        .unwrap_or_else(|| panic!("no too_many_recipients finding: {v}"));
    assert_eq!(f["count"], 61);

    let (code, _, err) = cli(strings(&["policy", "test", "/nonexistent/x.eml", "--json"])).await;
    assert_ne!(code, 0, "{err}");
}

// ---------------------------------------------------------------------------------------
// Output safety.

/// RELIABILITY.md T13: sender-controlled control characters never reach the terminal raw,
/// and NDJSON stays one valid object per line.
#[tokio::test(flavor = "multi_thread")]
async fn control_characters_are_escaped_in_cli_output() {
    let dir = tempfile::tempdir().unwrap();
    let (_sink, mut ts) = server(dir.path()).await;
    let to = address_list(832, 600);
    let raw_esc = message(
        &[
            ("From", "\"\x1b]0;pwned\x07\" <news@publisher.example>"),
            ("To", &to),
            ("Subject", "\x1b[31mURGENT\x1b[0m newsletter"),
        ],
        "Dear members,\r\n",
    );
    // Encoded words decode to ESC, CR, LF, a fake JSON line and a bidi override.
    let encoded = message(
        &[
            ("From", "=?utf-8?q?=1B=5B2J?= <news@publisher.example>"),
            ("To", &to),
            (
                "Subject",
                "=?utf-8?q?=1B=5B2J=0D=0A=7B=22id=22=3A=22fake=22=7D=E2=80=AE?=",
            ),
        ],
        "Dear members,\r\n",
    );
    let ids = [
        hold_message(&ts, &raw_esc).await,
        hold_message(&ts, &encoded).await,
    ];

    let (code, out, err) = cli_at(&ts, &["quarantine", "list", "--json"]).await;
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "one line per held message");
    for (line, id) in lines.iter().zip(&ids) {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("line is not JSON ({e}): {:.200}", line));
        assert_eq!(v["id"], id.as_str());
    }
    assert!(!out.bytes().any(|b| b == 0x1b || b == 0x07 || b == b'\r'));

    let (code, out, _) = cli_at(&ts, &["quarantine", "list"]).await;
    assert_eq!(code, 0);
    assert!(
        !out.bytes().any(|b| b == 0x1b || b == 0x07),
        "raw control in list"
    );

    for id in &ids {
        let (code, out, err) = cli_at(&ts, &["quarantine", "show", id]).await;
        assert_eq!(code, 0, "{err}");
        assert!(!out.contains('\x1b'), "raw ESC in show output");
        assert!(!out.contains('\x07'), "raw BEL in show output");
        assert!(!out.contains('\r'), "raw CR in show output");
        assert!(
            !out.contains('\u{202e}'),
            "raw bidi override in show output"
        );
        assert!(
            !out.lines().any(|l| l.starts_with("{\"id\"")),
            "a mail header produced an extra line"
        );
        assert!(out.contains("subject:"), "{out}");

        let (code, out, _) = cli_at(&ts, &["quarantine", "show", id, "--json"]).await;
        assert_eq!(code, 0);
        assert_eq!(out.lines().count(), 1);
        let v: Value = serde_json::from_str(out.trim_end()).unwrap();
        assert_eq!(v["id"], id.as_str());
    }
    let (_, out, _) = cli_at(&ts, &["quarantine", "show", &ids[0], "--json"]).await;
    let v: Value = serde_json::from_str(out.trim_end()).unwrap();
    assert!(
        v["subject"]
            .as_str()
            .is_some_and(|s| s.contains("\x1b[31m")),
        "JSON keeps the subject (escaped on the wire, exact when parsed)"
    );
    // The encoded subject really did decode to controls, and show escaped them visibly.
    let (_, out, _) = cli_at(&ts, &["quarantine", "show", &ids[1], "--json"]).await;
    let v: Value = serde_json::from_str(out.trim_end()).unwrap();
    let subject = v["subject"].as_str().unwrap_or_default();
    assert!(
        subject.contains("\x1b[2J") && subject.contains('\n'),
        "{subject:?}"
    );
    let (_, out, _) = cli_at(&ts, &["quarantine", "show", &ids[1]]).await;
    let line = out
        .lines()
        .find(|l| l.starts_with("subject:"))
        .unwrap_or_default();
    assert!(line.contains("\\u{1b}[2J"), "{line:?}");
    assert!(
        line.contains("\"fake\""),
        "the whole subject stays on one line: {line:?}"
    );
    ts.stop().await;
}

/// `show --raw` prints the stored message itself, trace header first.
#[tokio::test(flavor = "multi_thread")]
async fn show_raw_prints_the_stored_message() {
    let dir = tempfile::tempdir().unwrap();
    let (_sink, mut ts) = server(dir.path()).await;
    let m = incident2_message();
    let id = hold_message(&ts, &m).await;
    let (code, out, err) = cli_at(&ts, &["quarantine", "show", &id, "--raw"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("Received: from "), "{:.200}", out);
    assert_bytes_eq(&strip_trace(out.as_bytes()), &m);
    ts.stop().await;
}

// ---------------------------------------------------------------------------------------
// Metrics, breakers, help.

/// DESIGN.md §6: the metric names and labels, and the health endpoints.
#[tokio::test(flavor = "multi_thread")]
async fn metrics_and_health_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let (_sink, mut ts) = server(dir.path()).await;
    let (status, _) = http_get(ts.metrics, "/metrics", None).await;
    assert_eq!(status, 200);
    hold_message(&ts, &incident2_message()).await;
    let (status, text) = http_get(ts.metrics, "/metrics", None).await;
    assert_eq!(status, 200);
    let has = |line: &str| text.lines().any(|l| l == line);
    assert!(
        text.lines().any(|l| l.starts_with("mailbrake_build_info{")),
        "no build_info"
    );
    assert!(has("mailbrake_quarantine_messages 1"), "quarantine gauge");
    assert!(
        has("mailbrake_messages_total{verdict=\"hold\"} 1"),
        "messages_total"
    );
    assert!(
        has("mailbrake_holds_total{mode=\"enforce\",reason=\"visible_recipients\"} 1"),
        "holds_total"
    );
    assert!(
        !text.contains("publisher.example") && !text.contains("family1.example"),
        "no sender or recipient in metrics"
    );
    // Every metric of DESIGN.md §6, with its labels, from the first scrape after one hold.
    for (name, kind, label) in [
        ("messages_total", "counter", Some("verdict")),
        ("holds_total", "counter", Some("reason")),
        ("quarantine_messages", "gauge", None),
        ("quarantine_oldest_message_age_seconds", "gauge", None),
        ("releases_total", "counter", Some("result")),
        ("upstream_requests_total", "counter", Some("result")),
        ("upstream_duration_seconds", "histogram", None),
        ("inspect_duration_seconds", "histogram", None),
        ("smtp_connections_active", "gauge", None),
        ("smtp_connections_rejected_total", "counter", Some("reason")),
        ("auth_attempts_total", "counter", Some("result")),
        ("breakers_open", "gauge", None),
        ("breaker_trips_total", "counter", None),
        ("store_commit_duration_seconds", "histogram", None),
        ("build_info", "gauge", Some("version")),
    ] {
        let full = format!("mailbrake_{name}");
        assert!(
            has(&format!("# TYPE {full} {kind}")),
            "{full} is not a {kind}"
        );
        if let Some(label) = label {
            assert!(
                text.lines()
                    .any(|l| l.starts_with(&format!("{full}{{"))
                        && l.contains(&format!("{label}=\""))),
                "{full} has no {label} label"
            );
        }
    }
    let (status, _) = http_get(ts.metrics, "/healthz", None).await;
    assert_eq!(status, 200);
    let (status, body) = http_get(ts.metrics, "/readyz", None).await;
    assert_eq!(status, 200, "{body}");
    ts.stop().await;
}

/// No brakes exist yet: list and reset both report "nothing matched".
#[tokio::test(flavor = "multi_thread")]
async fn breaker_commands_with_no_open_brakes() {
    let dir = tempfile::tempdir().unwrap();
    let (_sink, mut ts) = server(dir.path()).await;
    let (code, out, err) = cli_at(&ts, &["breaker", "list"]).await;
    assert_eq!(code, 1, "{err}");
    assert!(out.contains("No open brakes."), "{out}");
    let (code, out, _) = cli_at(&ts, &["breaker", "list", "--json"]).await;
    assert_eq!(code, 1);
    assert!(out.is_empty(), "{out}");
    let (code, out, err) = cli_at(&ts, &["breaker", "reset", "x@y"]).await;
    assert_eq!(code, 1, "{out}{err}");
    ts.stop().await;
}

/// Every subcommand has help (exit 0); `--version` prints the version; a bad flag is 2.
#[tokio::test(flavor = "multi_thread")]
async fn help_and_version() {
    let commands: &[&[&str]] = &[
        &[],
        &["serve"],
        &["check-config"],
        &["quarantine"],
        &["quarantine", "list"],
        &["quarantine", "show"],
        &["quarantine", "release"],
        &["quarantine", "delete"],
        &["breaker"],
        &["breaker", "list"],
        &["breaker", "reset"],
        &["policy"],
        &["policy", "test"],
        &["hash-password"],
    ];
    for c in commands {
        let mut args = strings(c);
        args.push("--help".into());
        let (code, out, err) = cli(args).await;
        assert_eq!(code, 0, "{c:?} --help: {err}");
        assert!(out.contains("Usage:"), "{c:?} --help: {out}");
    }
    let (code, out, _) = cli(strings(&["--version"])).await;
    assert_eq!(code, 0);
    assert_eq!(
        out.trim(),
        format!("mailbrake {}", env!("CARGO_PKG_VERSION"))
    );
    let (code, _, err) = cli(strings(&["quarantine", "list", "--no-such-flag"])).await;
    assert_eq!(code, 2, "{err}");
}
