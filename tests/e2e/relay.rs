//! Forwarding clean mail: the before-queue proxy semantics of DESIGN.md §2.2.

use crate::common::*;
use std::time::Duration;

/// Clean mail arrives upstream byte-identical apart from the one trace header, with the same
/// envelope, and the client gets the upstream's own reply.
#[tokio::test(flavor = "multi_thread")]
async fn clean_mail_is_forwarded_byte_identical_with_the_upstream_reply() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut ts = TestServer::start(config(dir.path(), Some(sink.url()))).await;
    let body = message(
        &[
            ("From", "Alice <alice@corp.example>"),
            ("To", "bob@partner.example"),
            ("Subject", "=?UTF-8?B?5pel5pys6Kqe?= quarterly numbers"),
            ("MIME-Version", "1.0"),
            ("Content-Type", "text/plain; charset=utf-8"),
        ],
        "Hello Bob,\r\n.leading dot line\r\n..two dots\r\n\r\nSee you.\r\n  trailing spaces   \r\n",
    );
    let reply = send(
        ts.smtp,
        "alice@corp.example",
        &["bob@partner.example", "carol@partner.example"],
        &body,
    )
    .await
    .unwrap();
    assert_eq!(reply, "250 2.0.0 Ok: queued as SINK1");
    let got = sink.messages();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].from, "alice@corp.example");
    assert_eq!(
        got[0].rcpts,
        vec!["bob@partner.example", "carol@partner.example"]
    );
    assert!(!got[0].bare_newline);
    assert_bytes_eq(&strip_trace(&got[0].data), &body);
    let trace = String::from_utf8_lossy(&got[0].data[..200]).into_owned();
    assert!(
        trace.contains("by mailbrake.test (mailbrake) with ESMTP id "),
        "{trace}"
    );
    ts.stop().await;
}

/// Upstream 4xx → 451 4.4.1; upstream 5xx → the upstream's own permanent error; upstream
/// down → 451 4.4.1. Nothing is stored locally in any case.
#[tokio::test(flavor = "multi_thread")]
async fn upstream_failures_map_to_the_documented_replies() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut ts = TestServer::start(config(dir.path(), Some(sink.url()))).await;
    let m = message(
        &[
            ("From", "a@corp.example"),
            ("To", "b@partner.example"),
            ("Subject", "x"),
        ],
        "x\r\n",
    );

    sink.set_mode(Mode::TempFailData);
    let e = send(ts.smtp, "a@corp.example", &["b@partner.example"], &m)
        .await
        .unwrap_err();
    assert!(e.contains("451") && e.contains("4.4.1"), "{e}");

    sink.set_mode(Mode::PermFailData);
    let e = send(ts.smtp, "a@corp.example", &["b@partner.example"], &m)
        .await
        .unwrap_err();
    assert!(
        e.contains("554") && e.contains("5.7.1 sink refuses this message"),
        "{e}"
    );

    sink.set_mode(Mode::PermFailRcpt);
    let e = send(ts.smtp, "a@corp.example", &["b@partner.example"], &m)
        .await
        .unwrap_err();
    assert!(
        e.contains("550") && e.contains("5.1.1 no such user here"),
        "{e}"
    );

    sink.set_mode(Mode::DropAfterData);
    let e = send(ts.smtp, "a@corp.example", &["b@partner.example"], &m)
        .await
        .unwrap_err();
    assert!(e.contains("451") && e.contains("4.4.1"), "{e}");
    assert_eq!(sink.count(), 0);
    assert_eq!(ts.app().quarantine.held_count(), 0);
    ts.stop().await;

    // Upstream not listening at all.
    let dead = format!("smtp+plain://127.0.0.1:{}", free_port());
    let dir = tempfile::tempdir().unwrap();
    let mut ts = TestServer::start(config(dir.path(), Some(dead))).await;
    let e = send(ts.smtp, "a@corp.example", &["b@partner.example"], &m)
        .await
        .unwrap_err();
    assert!(e.contains("451") && e.contains("4.4.1"), "{e}");
    let metrics = ts.metrics_text().await;
    assert!(
        metrics.contains("mailbrake_upstream_requests_total{result=\"tempfail\"} 1"),
        "{metrics}"
    );
    ts.stop().await;
}

/// With no upstream configured, clean mail lands in <data-dir>/outbox/ as .eml files.
#[tokio::test(flavor = "multi_thread")]
async fn without_upstream_clean_mail_goes_to_the_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let mut ts = TestServer::start(config(dir.path(), None)).await;
    let m = message(
        &[
            ("From", "a@corp.example"),
            ("To", "b@partner.example"),
            ("Subject", "hi"),
        ],
        "hello\r\n",
    );
    let reply = send(ts.smtp, "a@corp.example", &["b@partner.example"], &m)
        .await
        .unwrap();
    assert!(
        reply.starts_with("250 2.0.0 Ok: queued as ") && reply.ends_with("(outbox)"),
        "{reply}"
    );
    let files: Vec<_> = std::fs::read_dir(dir.path().join("outbox"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].extension().unwrap(), "eml");
    let eml = std::fs::read(&files[0]).unwrap();
    let text = String::from_utf8_lossy(&eml);
    assert!(
        text.starts_with(
            "Return-Path: <a@corp.example>\r\nX-Envelope-To: b@partner.example\r\nReceived: from "
        ),
        "{text}"
    );
    assert!(text.ends_with("\r\n\r\nhello\r\n"), "{text}");
    ts.stop().await;
}

/// Bodies with bare LF / bare CR are normalised before forwarding: the upstream sees CRLF
/// only and exactly one message (outbound smuggling, RELIABILITY.md T5).
#[tokio::test(flavor = "multi_thread")]
async fn bare_newlines_never_reach_the_upstream() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut ts = TestServer::start(config(dir.path(), Some(sink.url()))).await;
    for seq in ["\n.\r\n", "\r.\r\n", "\n.\n", "\r\n.\n", "\r\n.\r"] {
        let mut raw = Raw::connect(ts.smtp).await;
        assert!(raw.reply().await.starts_with("220"));
        assert!(raw.cmd("EHLO t").await.starts_with("250"));
        assert!(
            raw.cmd("MAIL FROM:<a@corp.example>")
                .await
                .starts_with("250")
        );
        assert!(
            raw.cmd("RCPT TO:<b@partner.example>")
                .await
                .starts_with("250")
        );
        assert!(raw.cmd("DATA").await.starts_with("354"));
        let body = format!(
            "Subject: t\r\n\r\nline{seq}MAIL FROM:<evil@x.example>\r\nRCPT TO:<v@partner.example>\r\nDATA\r\nSubject: smuggled\r\n\r\nx\r\n.\r\n"
        );
        raw.send(body.as_bytes()).await;
        let r = raw.reply().await;
        assert!(
            r.starts_with("250 2.0.0 Ok: queued as SINK1"),
            "{seq:?}: {r}"
        );
        assert!(raw.cmd("QUIT").await.starts_with("221"));
    }
    let got = sink.messages();
    assert_eq!(got.len(), 5, "exactly one upstream message per submission");
    for d in &got {
        assert!(!d.bare_newline, "bare CR/LF reached the upstream");
        assert_eq!(d.from, "a@corp.example");
        assert_eq!(d.rcpts, vec!["b@partner.example"]);
    }
    ts.stop().await;
}

/// A fake upstream that answers STARTTLS with `220` and, in the same write (or a moment
/// later), a forged capability list: the STARTTLS response injection of ECOSYSTEM.md §3.2
/// (RELIABILITY.md T6, client side). Returns what it received after its `220 Ready`.
async fn injecting_upstream(
    delay_injection: bool,
) -> (std::net::SocketAddr, tokio::task::JoinHandle<Vec<u8>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        s.write_all(b"220 evil.test ESMTP\r\n").await.unwrap();
        let mut buf = vec![0u8; 4096];
        let mut seen = Vec::new();
        loop {
            let n = match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => n,
                _ => return Vec::new(),
            };
            seen.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&seen).to_ascii_uppercase();
            if text.contains("STARTTLS\r\n") {
                break;
            }
            if text.ends_with("\r\n") && text.starts_with("EHLO") {
                s.write_all(b"250-evil.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n")
                    .await
                    .unwrap();
                seen.clear();
            }
        }
        if delay_injection {
            s.write_all(b"220 2.0.0 Ready\r\n").await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
            let _ = s.write_all(b"250-evil.test\r\n250 AUTH PLAIN\r\n").await;
        } else {
            s.write_all(b"220 2.0.0 Ready\r\n250-evil.test\r\n250 AUTH PLAIN\r\n")
                .await
                .unwrap();
        }
        // Everything the relay sends afterwards, until it closes (bounded).
        let mut after = Vec::new();
        while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf)).await {
            if n == 0 {
                break;
            }
            after.extend_from_slice(&buf[..n]);
        }
        after
    });
    (addr, task)
}

/// T6, client side: mailbrake never acts on a capability list injected after the upstream's
/// `220` to STARTTLS, in the same packet or a later one. The client gets `451 4.4.1` (retry),
/// and no envelope or message byte reaches the injecting upstream, in clear or otherwise.
#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_injecting_after_starttls_gets_nothing() {
    for delayed in [false, true] {
        let (up, task) = injecting_upstream(delayed).await;
        let dir = tempfile::tempdir().unwrap();
        let mut ts = TestServer::start(config(dir.path(), Some(format!("smtp://{up}")))).await;
        let m = message(
            &[
                ("From", "a@corp.example"),
                ("To", "b@partner.example"),
                ("Subject", "x"),
            ],
            "hello\r\n",
        );
        let reply = send(ts.smtp, "a@corp.example", &["b@partner.example"], &m).await;
        let reply = reply.err().unwrap_or_else(|| "250".into());
        assert!(
            reply.contains("451") && reply.contains("4.4.1"),
            "delayed={delayed}: {reply}"
        );
        let after = task.await.unwrap();
        let text = String::from_utf8_lossy(&after).to_ascii_uppercase();
        assert!(
            !text.contains("MAIL FROM") && !text.contains("AUTH"),
            "delayed={delayed}: the relay spoke after the injection: {text:?}"
        );
        if !delayed {
            // Caught before the handshake: not even a ClientHello was sent.
            assert!(
                after.is_empty(),
                "{} bytes after the injection",
                after.len()
            );
        }
        ts.stop().await;
    }
}
