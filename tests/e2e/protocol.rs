//! The SMTP protocol as a client sees it: extensions, pipelining, parameters, sequence
//! errors, every bound of DESIGN.md §2.1 / §4 and the attacks of RELIABILITY.md §2.1,
//! §2.3, §2.5–§2.9. Raw bytes over real loopback sockets; exact replies asserted.

use std::path::Path;
use std::time::{Duration, Instant};

use mailbrake::config::{BareNewlines, ByteSize, Config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;

const FROM: &str = "alice@corp.example";
const TO: &str = "bob@partner.example";

const MAIL_OK: &str = "250 2.1.0 Ok\r\n";
const RCPT_OK: &str = "250 2.1.5 Ok\r\n";
const OK: &str = "250 2.0.0 Ok\r\n";
const DATA_GO: &str = "354 End data with <CR><LF>.<CR><LF>\r\n";
const BYE: &str = "221 2.0.0 Bye\r\n";
const SINK_OK: &str = "250 2.0.0 Ok: queued as SINK1\r\n";
const NEED_MAIL: &str = "503 5.5.1 Error: need MAIL command\r\n";
const UNKNOWN: &str = "500 5.5.2 Error: command not recognized\r\n";
const TOO_BIG: &str = "552 5.3.4 Error: message size exceeds fixed limit\r\n";
const LINE_TOO_LONG: &str = "500 5.5.2 Error: line too long\r\n";
const TOO_MANY_CONNECTIONS: &str = "421 4.7.0 Error: too many connections, try again later\r\n";

/// A server whose upstream is `sink`, with the harness defaults changed by `tweak`.
async fn start(dir: &Path, sink: &Sink, tweak: impl FnOnce(&mut Config)) -> TestServer {
    let mut c = config(dir, Some(sink.url()));
    tweak(&mut c);
    TestServer::start(c).await
}

/// Reads the greeting and asserts it.
async fn greeted(raw: &mut Raw) {
    let g = raw.reply().await;
    assert_eq!(g, "220 mailbrake.test ESMTP mailbrake\r\n");
}

/// A connected client past the greeting and EHLO.
async fn client(addr: std::net::SocketAddr) -> Raw {
    let mut raw = Raw::connect(addr).await;
    greeted(&mut raw).await;
    let r = raw.cmd("EHLO client.test").await;
    assert!(r.starts_with("250-mailbrake.test\r\n"), "{r:?}");
    raw
}

/// MAIL + RCPT (each asserted) + DATA up to the 354.
async fn open_data(raw: &mut Raw, from: &str, rcpts: &[&str]) {
    assert_eq!(raw.cmd(&format!("MAIL FROM:<{from}>")).await, MAIL_OK);
    for r in rcpts {
        assert_eq!(raw.cmd(&format!("RCPT TO:<{r}>")).await, RCPT_OK, "{r}");
    }
    assert_eq!(raw.cmd("DATA").await, DATA_GO);
}

/// QUIT → 221 and the server closes.
async fn quit(raw: &mut Raw) {
    assert_eq!(raw.cmd("QUIT").await, BYE);
    assert!(raw.closed_within(Duration::from_secs(2)).await);
}

/// A small clean message (CRLF line ends, no final dot).
fn small_message(subject: &str) -> Vec<u8> {
    message(
        &[("From", FROM), ("To", TO), ("Subject", subject)],
        "Hello,\r\nthis is a test.\r\n",
    )
}

/// Waits up to `limit` for bytes from the server without going through `Raw`'s buffer (use
/// only when that buffer is empty, i.e. after single, unpipelined replies). `None`: silence.
async fn read_some(raw: &mut Raw, limit: Duration) -> Option<Vec<u8>> {
    let mut chunk = [0u8; 4096];
    match tokio::time::timeout(limit, raw.s.read(&mut chunk)).await {
        Ok(Ok(n)) => Some(chunk[..n].to_vec()),
        Ok(Err(_)) => Some(Vec::new()),
        Err(_) => None,
    }
}

/// Writes ignoring errors (the server may already have closed the connection).
async fn send_lossy(raw: &mut Raw, bytes: &[u8]) {
    let _ = tokio::time::timeout(Duration::from_secs(5), raw.s.write_all(bytes)).await;
}

fn metric_line(text: &str, name_and_labels: &str) -> Option<String> {
    text.lines()
        .find(|l| l.starts_with(name_and_labels) && l[name_and_labels.len()..].starts_with(' '))
        .map(str::to_string)
}

// ---------------------------------------------------------------------------------------
// 1. Extensions

/// EHLO lists exactly the extensions mailbrake implements, with the configured SIZE; with
/// no certificate and no users there is neither STARTTLS nor AUTH. HELO gets a plain 250.
#[tokio::test(flavor = "multi_thread")]
async fn ehlo_advertises_exactly_the_implemented_extensions_and_helo_answers_250() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut ts = start(dir.path(), &sink, |c| {
        c.limits.max_message_size = ByteSize(65536);
    })
    .await;
    let mut raw = Raw::connect(ts.smtp).await;
    greeted(&mut raw).await;
    let r = raw.cmd("EHLO client.test").await;
    assert_eq!(
        r,
        "250-mailbrake.test\r\n250-PIPELINING\r\n250-SIZE 65536\r\n250-8BITMIME\r\n\
         250-ENHANCEDSTATUSCODES\r\n250 SMTPUTF8\r\n"
    );
    assert!(!r.contains("STARTTLS") && !r.contains("AUTH"), "{r:?}");
    // STARTTLS without a certificate is not implemented.
    assert_eq!(
        raw.cmd("STARTTLS").await,
        "502 5.5.1 Error: command not implemented\r\n"
    );
    assert_eq!(raw.cmd("HELO client.test").await, "250 mailbrake.test\r\n");
    // HELO is enough to start a transaction.
    assert_eq!(raw.cmd(&format!("MAIL FROM:<{FROM}>")).await, MAIL_OK);
    quit(&mut raw).await;
    ts.stop().await;
}

// ---------------------------------------------------------------------------------------
// 2. Pipelining

/// RFC 2920: EHLO, MAIL, RCPT, RCPT, DATA in one write get all five replies; the message
/// then reaches the upstream once, with both recipients, byte-identical.
#[tokio::test(flavor = "multi_thread")]
async fn pipelined_command_group_gets_every_reply_and_delivers_once() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut ts = start(dir.path(), &sink, |_| {}).await;
    let mut raw = Raw::connect(ts.smtp).await;
    greeted(&mut raw).await;
    raw.send(
        format!(
            "EHLO client.test\r\nMAIL FROM:<{FROM}>\r\nRCPT TO:<{TO}>\r\n\
             RCPT TO:<carol@partner.example>\r\nDATA\r\n"
        )
        .as_bytes(),
    )
    .await;
    let ehlo = raw.reply().await;
    assert!(
        ehlo.starts_with("250-mailbrake.test\r\n250-PIPELINING\r\n"),
        "{ehlo:?}"
    );
    assert_eq!(raw.reply().await, MAIL_OK);
    assert_eq!(raw.reply().await, RCPT_OK);
    assert_eq!(raw.reply().await, RCPT_OK);
    assert_eq!(raw.reply().await, DATA_GO);
    let body = small_message("pipelined");
    raw.send(&body).await;
    raw.send(b".\r\n").await;
    assert_eq!(raw.reply().await, SINK_OK);
    quit(&mut raw).await;
    let got = sink.messages();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].from, FROM);
    assert_eq!(got[0].rcpts, vec![TO, "carol@partner.example"]);
    assert_bytes_eq(&strip_trace(&got[0].data), &body);
    ts.stop().await;
}

// ---------------------------------------------------------------------------------------
// 3. MAIL parameters

/// The null sender is accepted and forwarded as `<>`; SIZE= and BODY=8BITMIME are accepted;
/// SIZE= over the limit is refused at MAIL with 552 5.3.4; BODY=BINARYMIME with 555.
#[tokio::test(flavor = "multi_thread")]
async fn null_sender_and_mail_parameters() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut ts = start(dir.path(), &sink, |c| {
        c.limits.max_message_size = ByteSize(65536);
    })
    .await;
    let mut raw = client(ts.smtp).await;
    open_data(&mut raw, "", &[TO]).await;
    let body = small_message("bounce");
    raw.send(&body).await;
    raw.send(b".\r\n").await;
    assert_eq!(raw.reply().await, SINK_OK);
    let got = sink.messages();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].from, "", "the null sender must stay null upstream");
    assert_eq!(got[0].rcpts, vec![TO]);

    assert_eq!(
        raw.cmd("MAIL FROM:<a@b.example> SIZE=1000 BODY=8BITMIME")
            .await,
        MAIL_OK
    );
    assert_eq!(raw.cmd("RSET").await, OK);
    // Exactly the limit is allowed; one byte more is not.
    assert_eq!(raw.cmd("MAIL FROM:<a@b.example> SIZE=65536").await, MAIL_OK);
    assert_eq!(raw.cmd("RSET").await, OK);
    assert_eq!(raw.cmd("MAIL FROM:<a@b.example> SIZE=65537").await, TOO_BIG);
    assert_eq!(
        raw.cmd("MAIL FROM:<a@b.example> SIZE=999999999").await,
        TOO_BIG
    );
    // No transaction was opened by the refused MAIL.
    assert_eq!(raw.cmd(&format!("RCPT TO:<{TO}>")).await, NEED_MAIL);
    let r = raw.cmd("MAIL FROM:<a@b.example> BODY=BINARYMIME").await;
    assert!(r.starts_with("555 5.5.4 "), "{r:?}");
    assert_eq!(raw.cmd(&format!("RCPT TO:<{TO}>")).await, NEED_MAIL);
    quit(&mut raw).await;
    assert_eq!(sink.count(), 1);
    ts.stop().await;
}

// ---------------------------------------------------------------------------------------
// 4. SMTPUTF8

/// RFC 6531 / RELIABILITY.md §2.12: non-ASCII envelope addresses need the SMTPUTF8
/// parameter (553 5.6.7 without it); with it, the message is forwarded unchanged.
#[tokio::test(flavor = "multi_thread")]
async fn non_ascii_addresses_need_smtputf8() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut ts = start(dir.path(), &sink, |_| {}).await;
    let mut raw = client(ts.smtp).await;
    let need = "553 5.6.7 Error: non-ASCII address needs SMTPUTF8\r\n";
    assert_eq!(raw.cmd("MAIL FROM:<jörg@corp.example>").await, need);
    assert_eq!(raw.cmd(&format!("MAIL FROM:<{FROM}>")).await, MAIL_OK);
    assert_eq!(raw.cmd("RCPT TO:<müller@partner.example>").await, need);
    assert_eq!(raw.cmd("RSET").await, OK);

    assert_eq!(
        raw.cmd("MAIL FROM:<jörg@corp.example> SMTPUTF8").await,
        MAIL_OK
    );
    assert_eq!(raw.cmd("RCPT TO:<müller@partner.example>").await, RCPT_OK);
    assert_eq!(raw.cmd("DATA").await, DATA_GO);
    raw.send(&small_message("utf8")).await;
    raw.send(b".\r\n").await;
    assert_eq!(raw.reply().await, SINK_OK);
    quit(&mut raw).await;
    let got = sink.messages();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].from, "jörg@corp.example");
    assert_eq!(got[0].rcpts, vec!["müller@partner.example"]);
    ts.stop().await;
}

// ---------------------------------------------------------------------------------------
// 5. Verbs and sequence errors

/// Every verb outside the happy path gets its exact reply, and none of them ends the
/// session.
#[tokio::test(flavor = "multi_thread")]
async fn verbs_and_sequence_errors_get_exact_replies() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut ts = start(dir.path(), &sink, |_| {}).await;
    let mut raw = Raw::connect(ts.smtp).await;
    greeted(&mut raw).await;
    assert_eq!(
        raw.cmd(&format!("MAIL FROM:<{FROM}>")).await,
        "503 5.5.1 Error: send HELO/EHLO first\r\n"
    );
    assert!(raw.cmd("EHLO client.test").await.starts_with("250-"));
    assert_eq!(raw.cmd(&format!("RCPT TO:<{TO}>")).await, NEED_MAIL);
    assert_eq!(raw.cmd("DATA").await, NEED_MAIL);
    assert_eq!(raw.cmd(&format!("MAIL FROM:<{FROM}>")).await, MAIL_OK);
    assert_eq!(
        raw.cmd(&format!("MAIL FROM:<{FROM}>")).await,
        "503 5.5.1 Error: nested MAIL command\r\n"
    );
    assert_eq!(
        raw.cmd("DATA").await,
        "503 5.5.1 Error: need RCPT command\r\n"
    );
    assert_eq!(raw.cmd("RSET").await, OK);
    // RSET ended the transaction.
    assert_eq!(raw.cmd(&format!("RCPT TO:<{TO}>")).await, NEED_MAIL);
    assert_eq!(raw.cmd("NOOP").await, OK);
    assert_eq!(
        raw.cmd(&format!("VRFY {TO}")).await,
        "252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery\r\n"
    );
    assert_eq!(raw.cmd("FROBNICATE now").await, UNKNOWN);
    // CHUNKING is not advertised.
    assert_eq!(
        raw.cmd("BDAT 10 LAST").await,
        "502 5.5.1 Error: command not implemented\r\n"
    );
    // Still a working session: a full transaction goes through.
    open_data(&mut raw, FROM, &[TO]).await;
    raw.send(&small_message("after errors")).await;
    raw.send(b".\r\n").await;
    assert_eq!(raw.reply().await, SINK_OK);
    quit(&mut raw).await;
    assert_eq!(sink.count(), 1);
    ts.stop().await;
}

// ---------------------------------------------------------------------------------------
// 6. Long lines

/// RELIABILITY.md §2.6: a command line of exactly 4096 bytes is read; one over 4 KiB gets
/// `500 5.5.2` and the connection is closed.
#[tokio::test(flavor = "multi_thread")]
async fn command_line_over_4_kib_is_refused_and_closed() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut ts = start(dir.path(), &sink, |_| {}).await;

    let mut raw = client(ts.smtp).await;
    let at_limit = format!("NOOP {}\r\n", "x".repeat(4096 - 7));
    assert_eq!(at_limit.len(), 4096);
    raw.send(at_limit.as_bytes()).await;
    assert_eq!(raw.reply().await, OK, "a 4096-byte line is within the cap");

    let over = format!("NOOP {}\r\n", "x".repeat(5000));
    raw.send(over.as_bytes()).await;
    assert_eq!(
        raw.reply_within(Duration::from_secs(5)).await,
        LINE_TOO_LONG
    );
    assert!(raw.closed_within(Duration::from_secs(2)).await);
    assert_eq!(sink.count(), 0);
    ts.stop().await;
}

/// RELIABILITY.md §2.6 / T10: 1 MiB without LF is refused as soon as the cap is passed; the
/// reply arrives promptly and the connection is closed.
#[tokio::test(flavor = "multi_thread")]
async fn megabyte_line_without_lf_is_refused_promptly_and_closed() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut ts = start(dir.path(), &sink, |_| {}).await;
    let mut raw = client(ts.smtp).await;
    let big = vec![b'A'; 1024 * 1024];
    let started = Instant::now();
    let (mut rd, mut wr) = raw.s.split();
    let writer = async {
        // The server stops reading after 4 KiB, so this may fail or stall: both are fine.
        let _ = tokio::time::timeout(Duration::from_secs(5), wr.write_all(&big)).await;
    };
    let reader = async {
        let mut got = Vec::new();
        let mut chunk = [0u8; 1024];
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !got.contains(&b'\n') {
            match tokio::time::timeout_at(deadline, rd.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                Ok(Ok(n)) => got.extend_from_slice(&chunk[..n]),
            }
        }
        let elapsed = started.elapsed();
        // Then the server closes.
        let mut closed = false;
        for _ in 0..100 {
            match tokio::time::timeout(Duration::from_secs(2), rd.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    closed = true;
                    break;
                }
                Ok(Ok(_)) => continue,
                Err(_) => break,
            }
        }
        (got, elapsed, closed)
    };
    let ((), (got, elapsed, closed)) = tokio::join!(writer, reader);
    assert_eq!(String::from_utf8_lossy(&got), LINE_TOO_LONG);
    assert!(elapsed < Duration::from_secs(2), "reply took {elapsed:?}");
    assert!(closed, "the connection must be closed after the long line");
    assert_eq!(sink.count(), 0);
    ts.stop().await;
}

// ---------------------------------------------------------------------------------------
// 7. Message size

/// RELIABILITY.md §2.7 / T11: undeclared DATA over `max_message_size` is read to the final
/// dot without any reply, then refused with `552 5.3.4`; nothing is forwarded or held, and
/// the session goes on.
#[tokio::test(flavor = "multi_thread")]
async fn oversize_data_is_refused_only_after_the_final_dot() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut ts = start(dir.path(), &sink, |c| {
        c.limits.max_message_size = ByteSize(64 * 1024);
    })
    .await;
    let mut raw = client(ts.smtp).await;
    open_data(&mut raw, FROM, &[TO]).await;
    let mut body = small_message("big");
    let line = format!("{}\r\n", "y".repeat(78));
    while body.len() < 2 * 64 * 1024 {
        body.extend_from_slice(line.as_bytes());
    }
    raw.send(&body).await;
    // No early answer: a pipelining client would lose sync.
    let early = read_some(&mut raw, Duration::from_millis(700)).await;
    assert!(
        early.is_none(),
        "reply before the final dot: {:?}",
        early.map(|b| String::from_utf8_lossy(&b[..b.len().min(200)]).into_owned())
    );
    raw.send(b".\r\n").await;
    assert_eq!(raw.reply().await, TOO_BIG);
    assert_eq!(raw.cmd("NOOP").await, OK);
    // The refused transaction is over: a new one can start.
    assert_eq!(raw.cmd(&format!("MAIL FROM:<{FROM}>")).await, MAIL_OK);
    quit(&mut raw).await;
    assert_eq!(sink.count(), 0);
    assert_eq!(ts.app().quarantine.held_count(), 0);
    ts.stop().await;
}

// ---------------------------------------------------------------------------------------
// 8. Recipients

/// A policy directory with the shipped policy plus a local override that lifts the
/// envelope-recipient thresholds.
fn lenient_policy_dir(dir: &Path) {
    std::fs::copy(
        policies_dir().join("default.toml"),
        dir.join("default.toml"),
    )
    .unwrap();
    std::fs::write(
        dir.join("local.toml"),
        "[recipients]\nmax_envelope = 1000\nmax_external_domains = 1000\n",
    )
    .unwrap();
}

/// RELIABILITY.md §2.8 / T12: 150 pipelined RCPTs with a cap of 100: the first 100 get
/// `250 2.1.5`, the rest `452 4.5.3`, and the message goes to exactly those 100.
#[tokio::test(flavor = "multi_thread")]
async fn recipient_cap_keeps_the_first_hundred_and_delivers_to_exactly_those() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let pol = tempfile::tempdir().unwrap();
    lenient_policy_dir(pol.path());
    let mut ts = start(dir.path(), &sink, |c| {
        c.limits.max_recipients = 100;
        c.server.policies = Some(pol.path().to_path_buf());
    })
    .await;
    let mut raw = client(ts.smtp).await;
    let rcpts: Vec<String> = (0..150).map(|i| format!("r{i}@partner.example")).collect();
    let mut group = format!("MAIL FROM:<{FROM}>\r\n");
    for r in &rcpts {
        group.push_str(&format!("RCPT TO:<{r}>\r\n"));
    }
    raw.send(group.as_bytes()).await;
    assert_eq!(raw.reply().await, MAIL_OK);
    for i in 0..150 {
        let r = raw.reply().await;
        let want = if i < 100 {
            RCPT_OK
        } else {
            "452 4.5.3 Error: too many recipients\r\n"
        };
        assert_eq!(r, want, "reply to RCPT number {}", i + 1);
    }
    assert_eq!(raw.cmd("DATA").await, DATA_GO);
    raw.send(&message(
        &[
            ("From", FROM),
            ("To", "r0@partner.example"),
            ("Subject", "x"),
        ],
        "hi\r\n",
    ))
    .await;
    raw.send(b".\r\n").await;
    assert_eq!(raw.reply().await, SINK_OK);
    quit(&mut raw).await;
    let got = sink.messages();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].rcpts.len(), 100);
    assert_eq!(got[0].rcpts, rcpts[..100].to_vec());
    ts.stop().await;
}

/// The protocol cap is not the policy threshold: with the shipped policy (50 envelope
/// recipients) a 60-recipient message is accepted and held, and nothing goes upstream.
#[tokio::test(flavor = "multi_thread")]
async fn shipped_policy_holds_a_sixty_recipient_message() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut ts = start(dir.path(), &sink, |_| {}).await;
    let rcpts: Vec<String> = (0..60).map(|i| format!("r{i}@partner.example")).collect();
    let mut raw = client(ts.smtp).await;
    let refs: Vec<&str> = rcpts.iter().map(String::as_str).collect();
    open_data(&mut raw, FROM, &refs).await;
    raw.send(&message(
        &[
            ("From", FROM),
            ("To", "r0@partner.example"),
            ("Subject", "x"),
        ],
        "hi\r\n",
    ))
    .await;
    raw.send(b".\r\n").await;
    let r = raw.reply().await;
    assert!(r.starts_with("250 2.0.0 Ok: held as "), "{r:?}");
    let id = held_id(r.trim_end());
    quit(&mut raw).await;
    assert_eq!(sink.count(), 0);
    assert_eq!(ts.app().quarantine.held_ids(), vec![id]);
    ts.stop().await;
}

// ---------------------------------------------------------------------------------------
// 9. SMTP smuggling

const SMUGGLING_VARIANTS: [(&str, &[u8]); 6] = [
    ("LF.LF", b"\n.\n"),
    ("LF.CRLF", b"\n.\r\n"),
    ("CR.CRLF", b"\r.\r\n"),
    ("CRLF.LF", b"\r\n.\n"),
    ("CRLF.CR", b"\r\n.\r"),
    ("CR.CR", b"\r.\r"),
];

/// One DATA body carrying `variant` and then a whole second transaction.
fn smuggling_body(variant: &[u8]) -> Vec<u8> {
    let mut b = b"From: alice@corp.example\r\nSubject: first\r\n\r\nbody".to_vec();
    b.extend_from_slice(variant);
    b.extend_from_slice(
        b"MAIL FROM:<smuggled@x.test>\r\nRCPT TO:<b@x.test>\r\nDATA\r\n\
          Subject: smuggled\r\n\r\nx\r\n.\r\n",
    );
    b
}

/// Runs one smuggling attempt and returns every reply of the conversation (greeting to
/// QUIT); asserts that the server closes after QUIT.
async fn smuggle(addr: std::net::SocketAddr, variant: &[u8]) -> Vec<String> {
    let mut raw = Raw::connect(addr).await;
    let mut replies = vec![raw.reply().await];
    for c in [
        "EHLO client.test".to_string(),
        format!("MAIL FROM:<{FROM}>"),
        format!("RCPT TO:<{TO}>"),
        "DATA".to_string(),
    ] {
        replies.push(raw.cmd(&c).await);
    }
    raw.send(&smuggling_body(variant)).await;
    replies.push(raw.reply().await);
    replies.push(raw.cmd("QUIT").await);
    assert!(raw.closed_within(Duration::from_secs(2)).await);
    replies
}

fn count_354(replies: &[String]) -> usize {
    replies
        .iter()
        .flat_map(|r| r.lines())
        .filter(|l| l.starts_with("354"))
        .count()
}

/// RELIABILITY.md §2.1 / T4: DATA ends only at CRLF.CRLF. Each of the six variants yields
/// one 354, one final reply from the upstream and then QUIT's 221 (a smuggled transaction
/// would show up as extra replies), and exactly one upstream message from the real sender.
#[tokio::test(flavor = "multi_thread")]
async fn smuggling_variants_never_start_a_second_transaction() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut ts = start(dir.path(), &sink, |_| {}).await;
    for (i, (name, v)) in SMUGGLING_VARIANTS.iter().enumerate() {
        let replies = smuggle(ts.smtp, v).await;
        assert_eq!(count_354(&replies), 1, "{name}: {replies:?}");
        assert_eq!(replies.len(), 7, "{name}: {replies:?}");
        assert_eq!(replies[5], SINK_OK, "{name}");
        assert_eq!(replies[6], BYE, "{name}");
        let got = sink.messages();
        assert_eq!(
            got.len(),
            i + 1,
            "{name}: exactly one message per submission"
        );
        let m = &got[i];
        assert_eq!(m.from, FROM, "{name}");
        assert_eq!(m.rcpts, vec![TO], "{name}");
        assert!(!m.bare_newline, "{name}: bare CR/LF reached the upstream");
    }
    assert!(sink.messages().iter().all(|m| m.from != "smuggled@x.test"));
    ts.stop().await;
}

/// With `bare_newlines = reject`, every variant (each carries a bare CR or LF) is refused
/// with `550 5.5.2` after the final dot, and nothing reaches the upstream.
#[tokio::test(flavor = "multi_thread")]
async fn smuggling_variants_are_refused_when_bare_newlines_are_rejected() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut ts = start(dir.path(), &sink, |c| {
        c.limits.bare_newlines = BareNewlines::Reject;
    })
    .await;
    for (name, v) in SMUGGLING_VARIANTS {
        let replies = smuggle(ts.smtp, v).await;
        assert_eq!(count_354(&replies), 1, "{name}: {replies:?}");
        assert_eq!(replies.len(), 7, "{name}: {replies:?}");
        assert_eq!(
            replies[5], "550 5.5.2 Error: bare <CR> or <LF> received\r\n",
            "{name}"
        );
        assert_eq!(replies[6], BYE, "{name}");
    }
    assert_eq!(sink.count(), 0);
    assert_eq!(ts.app().quarantine.held_count(), 0);
    // A clean message still passes under `reject`.
    let mut raw = client(ts.smtp).await;
    open_data(&mut raw, FROM, &[TO]).await;
    raw.send(&small_message("clean")).await;
    raw.send(b".\r\n").await;
    assert_eq!(raw.reply().await, SINK_OK);
    quit(&mut raw).await;
    assert_eq!(sink.count(), 1);
    ts.stop().await;
}

// ---------------------------------------------------------------------------------------
// 10. Pipelining synchronisation

/// RFC 2920 / RELIABILITY.md §2.1 rule 3: body bytes sent with DATA, before the 354, are a
/// synchronisation error: `554 5.5.0`, no 354, the connection closed, nothing forwarded.
#[tokio::test(flavor = "multi_thread")]
async fn body_pipelined_after_data_is_a_synchronisation_error() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut ts = start(dir.path(), &sink, |_| {}).await;
    let mut raw = client(ts.smtp).await;
    assert_eq!(raw.cmd(&format!("MAIL FROM:<{FROM}>")).await, MAIL_OK);
    assert_eq!(raw.cmd(&format!("RCPT TO:<{TO}>")).await, RCPT_OK);
    let mut group = b"DATA\r\n".to_vec();
    group.extend_from_slice(&small_message("early"));
    group.extend_from_slice(b".\r\n");
    raw.send(&group).await;
    assert_eq!(
        raw.reply().await,
        "554 5.5.0 Error: SMTP protocol synchronization\r\n"
    );
    assert!(raw.closed_within(Duration::from_secs(2)).await);
    assert_eq!(sink.count(), 0);
    ts.stop().await;
}

// ---------------------------------------------------------------------------------------
// 11. Relay access

/// RELIABILITY.md §2.3 / T7: with only 127.0.0.1/32 allowed, a client from 127.0.0.2 gets
/// `554 5.7.1` at RCPT and nothing is forwarded; 127.0.0.1 still relays.
#[tokio::test(flavor = "multi_thread")]
async fn relay_is_denied_outside_the_allowed_networks() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut ts = start(dir.path(), &sink, |c| {
        c.relay.allowed_networks = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let mut raw = Raw::connect_from("127.0.0.2", ts.smtp).await;
    greeted(&mut raw).await;
    assert!(raw.cmd("EHLO outsider.test").await.starts_with("250-"));
    assert_eq!(raw.cmd(&format!("MAIL FROM:<{FROM}>")).await, MAIL_OK);
    assert_eq!(
        raw.cmd(&format!("RCPT TO:<{TO}>")).await,
        "554 5.7.1 Error: relay access denied\r\n"
    );
    assert_eq!(
        raw.cmd("DATA").await,
        "503 5.5.1 Error: need RCPT command\r\n"
    );
    quit(&mut raw).await;
    assert_eq!(sink.count(), 0);

    let mut raw = Raw::connect_from("127.0.0.1", ts.smtp).await;
    greeted(&mut raw).await;
    assert!(raw.cmd("EHLO insider.test").await.starts_with("250-"));
    open_data(&mut raw, FROM, &[TO]).await;
    raw.send(&small_message("allowed")).await;
    raw.send(b".\r\n").await;
    assert_eq!(raw.reply().await, SINK_OK);
    quit(&mut raw).await;
    assert_eq!(sink.count(), 1);
    ts.stop().await;
}

// ---------------------------------------------------------------------------------------
// 12. Connection caps

/// A connection refused by a cap: `421 4.7.0` promptly, then closed.
async fn assert_refused(src: &str, addr: std::net::SocketAddr) {
    let started = Instant::now();
    let mut raw = Raw::connect_from(src, addr).await;
    let r = raw.reply_within(Duration::from_secs(2)).await;
    assert_eq!(r, TOO_MANY_CONNECTIONS, "from {src}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "from {src}: {:?}",
        started.elapsed()
    );
    assert!(
        raw.closed_within(Duration::from_secs(2)).await,
        "from {src}"
    );
}

/// RELIABILITY.md §2.5 / T9: three idle sessions from one address fill its cap; the fourth
/// is told `421 4.7.0` at once and closed; another address is unaffected; once an idle one
/// leaves, the address may connect again. The refusal is counted.
#[tokio::test(flavor = "multi_thread")]
async fn per_ip_connection_cap_refuses_with_421_at_once() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut ts = start(dir.path(), &sink, |c| {
        c.server.max_connections_per_ip = 3;
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..3 {
        let mut raw = Raw::connect_from("127.0.0.3", ts.smtp).await;
        greeted(&mut raw).await;
        idle.push(raw);
    }
    assert_refused("127.0.0.3", ts.smtp).await;
    let mut other = Raw::connect_from("127.0.0.4", ts.smtp).await;
    greeted(&mut other).await;
    // The idle ones are still served.
    for raw in &mut idle {
        assert_eq!(raw.cmd("NOOP").await, OK);
    }
    let metrics = ts.metrics_text().await;
    assert_eq!(
        metric_line(
            &metrics,
            "mailbrake_smtp_connections_rejected_total{reason=\"limit_per_ip\"}"
        )
        .as_deref(),
        Some("mailbrake_smtp_connections_rejected_total{reason=\"limit_per_ip\"} 1")
    );

    let mut gone = idle.pop().unwrap();
    quit(&mut gone).await;
    drop(gone);
    let app = ts.app().clone();
    assert!(wait_until(Duration::from_secs(3), || app.limiter.active() == 3).await);
    let mut again = Raw::connect_from("127.0.0.3", ts.smtp).await;
    greeted(&mut again).await;
    assert_eq!(again.cmd("NOOP").await, OK);
    ts.stop().await;
}

/// A client that reconnects the moment it reads the 221 is never refused by its own old
/// connection: the slot is given back before the 221 is written (load benchmark, 1 KB with a
/// new connection per message: 103 of 20,000 greetings were 421 before).
#[tokio::test(flavor = "multi_thread")]
async fn quit_gives_the_connection_slot_back_before_the_221() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut ts = start(dir.path(), &sink, |c| {
        c.server.max_connections_per_ip = 1;
    })
    .await;
    // The slot must already be free when the 221 arrives (released before the write, not
    // after the session ends); reconnecting at once must never be refused.
    let app = ts.app().clone();
    let mut taken_at_221 = 0;
    for i in 0..300 {
        let mut raw = Raw::connect_from("127.0.0.8", ts.smtp).await;
        assert_eq!(
            raw.reply().await,
            "220 mailbrake.test ESMTP mailbrake\r\n",
            "connection {i}"
        );
        assert_eq!(raw.cmd("QUIT").await, BYE, "connection {i}");
        if app.limiter.active() != 0 {
            taken_at_221 += 1;
        }
    }
    assert_eq!(taken_at_221, 0, "slots still taken when the 221 was read");
    ts.stop().await;
}

/// The global cap: with `max_connections = 2`, a third client from a third address gets
/// `421 4.7.0` at once; after one leaves, a new client is accepted.
#[tokio::test(flavor = "multi_thread")]
async fn global_connection_cap_refuses_with_421_at_once() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut ts = start(dir.path(), &sink, |c| {
        c.server.max_connections = 2;
    })
    .await;
    let mut a = Raw::connect_from("127.0.0.5", ts.smtp).await;
    greeted(&mut a).await;
    let mut b = Raw::connect_from("127.0.0.6", ts.smtp).await;
    greeted(&mut b).await;
    assert_refused("127.0.0.7", ts.smtp).await;
    let metrics = ts.metrics_text().await;
    assert_eq!(
        metric_line(
            &metrics,
            "mailbrake_smtp_connections_rejected_total{reason=\"limit_global\"}"
        )
        .as_deref(),
        Some("mailbrake_smtp_connections_rejected_total{reason=\"limit_global\"} 1")
    );
    quit(&mut a).await;
    drop(a);
    let app = ts.app().clone();
    assert!(wait_until(Duration::from_secs(3), || app.limiter.active() == 1).await);
    let mut c = Raw::connect_from("127.0.0.7", ts.smtp).await;
    greeted(&mut c).await;
    assert_eq!(b.cmd("NOOP").await, OK);
    ts.stop().await;
}

// ---------------------------------------------------------------------------------------
// 13. Timeouts

/// RELIABILITY.md §2.5: an idle client is told `421 4.4.2` at `command_timeout` and closed.
#[tokio::test(flavor = "multi_thread")]
async fn idle_client_is_closed_at_the_command_timeout() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut ts = start(dir.path(), &sink, |c| {
        c.limits.command_timeout = Duration::from_secs(1);
    })
    .await;
    let mut raw = client(ts.smtp).await;
    let started = Instant::now();
    let r = raw.reply_within(Duration::from_secs(3)).await;
    let elapsed = started.elapsed();
    assert_eq!(
        r,
        "421 4.4.2 Error: timeout exceeded, closing connection\r\n"
    );
    assert!(elapsed >= Duration::from_millis(800), "{elapsed:?}");
    assert!(raw.closed_within(Duration::from_secs(2)).await);
    ts.stop().await;
}

/// RELIABILITY.md §2.5: the session deadline holds however active the client is: NOOP
/// every 500 ms is answered until `session_timeout`, then `421 4.4.2` and close.
#[tokio::test(flavor = "multi_thread")]
async fn busy_client_is_closed_at_the_session_deadline() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut ts = start(dir.path(), &sink, |c| {
        c.limits.session_timeout = Duration::from_secs(2);
    })
    .await;
    let started = Instant::now();
    let mut raw = client(ts.smtp).await;
    let mut answered = 0;
    let mut last = None;
    for _ in 0..12 {
        // Pause 500 ms, but notice a reply the server sends on its own.
        if let Some(unprompted) = read_some(&mut raw, Duration::from_millis(500)).await {
            last = Some(String::from_utf8_lossy(&unprompted).into_owned());
            break;
        }
        send_lossy(&mut raw, b"NOOP\r\n").await;
        let r = raw.reply_within(Duration::from_secs(3)).await;
        if r == OK {
            answered += 1;
            continue;
        }
        last = Some(r);
        break;
    }
    let elapsed = started.elapsed();
    assert_eq!(
        last.as_deref(),
        Some("421 4.4.2 Error: session time limit exceeded\r\n"),
        "after {answered} NOOPs"
    );
    assert!(answered >= 2, "only {answered} NOOPs answered");
    assert!(
        elapsed >= Duration::from_millis(1800) && elapsed < Duration::from_secs(4),
        "{elapsed:?}"
    );
    assert!(raw.closed_within(Duration::from_secs(2)).await);
    ts.stop().await;
}

// ---------------------------------------------------------------------------------------
// 14. Error limit

/// With `max_errors = 3`, the third error's reply is followed by `421 4.7.0` and close.
#[tokio::test(flavor = "multi_thread")]
async fn too_many_errors_end_the_session() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut ts = start(dir.path(), &sink, |c| {
        c.limits.max_errors = 3;
    })
    .await;
    let mut raw = client(ts.smtp).await;
    assert_eq!(raw.cmd("XYZZY").await, UNKNOWN);
    assert_eq!(raw.cmd("NOOP").await, OK, "NOOP is not an error");
    assert_eq!(raw.cmd("XYZZY").await, UNKNOWN);
    assert_eq!(raw.cmd("XYZZY").await, UNKNOWN);
    assert_eq!(
        raw.reply_within(Duration::from_secs(2)).await,
        "421 4.7.0 Error: too many errors, closing connection\r\n"
    );
    assert!(raw.closed_within(Duration::from_secs(2)).await);
    ts.stop().await;
}

// ---------------------------------------------------------------------------------------
// 15. Storage floor

/// RELIABILITY.md §3.2 rule 7: below the free-space floor, MAIL gets `452 4.3.1` and no
/// transaction starts.
#[tokio::test(flavor = "multi_thread")]
async fn mail_is_refused_below_the_storage_floor() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut ts = start(dir.path(), &sink, |c| {
        c.limits.min_free_space = ByteSize(u64::MAX / 4);
    })
    .await;
    let mut raw = client(ts.smtp).await;
    assert_eq!(
        raw.cmd(&format!("MAIL FROM:<{FROM}>")).await,
        "452 4.3.1 Error: insufficient system storage\r\n"
    );
    assert_eq!(raw.cmd(&format!("RCPT TO:<{TO}>")).await, NEED_MAIL);
    quit(&mut raw).await;
    assert_eq!(sink.count(), 0);
    ts.stop().await;
}

// ---------------------------------------------------------------------------------------
// 16. Control characters in the envelope

/// RELIABILITY.md §2.9 / T13: NUL in an address is a syntax error (`501 5.1.7` / `501
/// 5.1.3`); CR/LF inside `MAIL FROM:<...>` never yields an accepted sender followed by an
/// injected command, and nothing is delivered.
#[tokio::test(flavor = "multi_thread")]
async fn nul_and_crlf_injection_in_addresses_are_refused() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut ts = start(dir.path(), &sink, |_| {}).await;
    let mut raw = client(ts.smtp).await;
    raw.send(b"MAIL FROM:<a\x00b@x.example>\r\n").await;
    assert_eq!(
        raw.reply().await,
        "501 5.1.7 Error: bad sender address syntax\r\n"
    );
    assert_eq!(raw.cmd(&format!("MAIL FROM:<{FROM}>")).await, MAIL_OK);
    raw.send(b"RCPT TO:<b\x00c@partner.example>\r\n").await;
    assert_eq!(
        raw.reply().await,
        "501 5.1.3 Error: bad recipient address syntax\r\n"
    );
    assert_eq!(raw.cmd("RSET").await, OK);

    // A bare CR inside the address line: one line, and not a valid sender.
    raw.send(b"MAIL FROM:<a\rRCPT TO:<x@evil.example>>\r\n")
        .await;
    let r = raw.reply().await;
    assert!(r.starts_with('5'), "{r:?}");
    assert_eq!(raw.cmd("RCPT TO:<x@evil.example>").await, NEED_MAIL);

    // CRLF inside the address: the first line is a bad MAIL, the rest a RCPT without MAIL.
    raw.send(b"MAIL FROM:<a\r\nRCPT TO:<x@evil.example>>\r\n")
        .await;
    let r = raw.reply().await;
    assert!(r.starts_with("501 "), "{r:?}");
    // The second line is refused too (its stray `>` is a syntax error; without it, it
    // would be a RCPT without MAIL); either way no transaction exists.
    let r = raw.reply().await;
    assert!(r.starts_with("501 ") || r == NEED_MAIL, "{r:?}");
    assert_eq!(raw.cmd("DATA").await, NEED_MAIL);
    quit(&mut raw).await;
    assert_eq!(sink.count(), 0);
    ts.stop().await;
}

/// RELIABILITY.md §2.9: "reject CR, LF and NUL anywhere in the envelope". A CR inside an
/// otherwise valid address must be refused, not silently dropped (which would accept a
/// different address than the one the client sent).
#[tokio::test(flavor = "multi_thread")]
async fn bare_cr_inside_an_address_is_refused_not_dropped() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut ts = start(dir.path(), &sink, |_| {}).await;
    let mut raw = client(ts.smtp).await;
    raw.send(b"MAIL FROM:<al\rice@corp.example>\r\n").await;
    assert_eq!(
        raw.reply().await,
        "501 5.1.7 Error: bad sender address syntax\r\n"
    );
    assert_eq!(raw.cmd(&format!("MAIL FROM:<{FROM}>")).await, MAIL_OK);
    raw.send(b"RCPT TO:<bo\rb@partner.example>\r\n").await;
    assert_eq!(
        raw.reply().await,
        "501 5.1.3 Error: bad recipient address syntax\r\n"
    );
    quit(&mut raw).await;
    assert_eq!(sink.count(), 0);
    ts.stop().await;
}
