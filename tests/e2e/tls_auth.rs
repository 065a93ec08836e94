//! TLS and AUTH end to end: STARTTLS and implicit TLS towards clients, AUTH PLAIN/LOGIN only
//! after TLS, brute-force throttling, STARTTLS command injection (RELIABILITY.md §2.2, §2.4),
//! relay rights of authenticated users, and implicit TLS with credentials towards the upstream.
//!
//! Certificates are made at run time with rcgen (`make_cert`); no key is ever committed.
//! Raw clients here speak TLS themselves (tokio-rustls, trusting the generated certificate),
//! so a test can choose its source address and see every byte the server sends.

// Helpers below panic on setup failures, exactly as the test functions may (clippy.toml allows
// unwrap/expect in tests, but its test detection does not cover helpers of an integration test).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common::*;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, Tokio1Executor};
use mailbrake::config::{AuthUser, Config};
use mailbrake::server::{Server, StartError};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

// ---------------------------------------------------------------------------------------------
// Expected replies (DESIGN.md §4, ECOSYSTEM.md §1.6, RELIABILITY.md §2.4).

const GREETING: &str = "220 mailbrake.test ESMTP mailbrake\r\n";
const TLS_GO: &str = "220 2.0.0 Ready to start TLS\r\n";
const AUTH_OK: &str = "235 2.7.0 Authentication successful\r\n";
const AUTH_FAILED: &str = "535 5.7.8 Error: authentication failed\r\n";
const AUTH_NEEDS_TLS: &str = "530 5.7.0 Must issue a STARTTLS command first\r\n";
const AUTH_THROTTLED_PREFIX: &str = "421 4.7.0 ";
const NEED_HELO: &str = "503 5.5.1 Error: send HELO/EHLO first\r\n";
const NEED_MAIL: &str = "503 5.5.1 Error: need MAIL command\r\n";
const ALREADY_TLS: &str = "503 5.5.1 Error: TLS already active\r\n";
const SYNC_ERROR: &str = "554 5.5.0 Error: SMTP protocol synchronization\r\n";
const RELAY_DENIED: &str = "554 5.7.1 Error: relay access denied\r\n";
const MAIL_OK: &str = "250 2.1.0 Ok\r\n";
const RCPT_OK: &str = "250 2.1.5 Ok\r\n";
const DATA_GO: &str = "354 End data with <CR><LF>.<CR><LF>\r\n";
const SINK_OK: &str = "250 2.0.0 Ok: queued as SINK1\r\n";
const BYE: &str = "221 2.0.0 Bye\r\n";

const USER: &str = "alice";
const PASSWORD: &str = "correct horse";
const FAILURE_DELAY: Duration = Duration::from_millis(200);

// ---------------------------------------------------------------------------------------------
// Private helpers.

/// A temp directory with a fresh certificate in `tls/` and room for data in `data/`.
struct Fixture {
    dir: TempDir,
    cert: PathBuf,
    key: PathBuf,
    pem: String,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let tls = dir.path().join("tls");
        std::fs::create_dir_all(&tls).unwrap();
        let (cert, key, pem) = make_cert(&tls);
        Fixture {
            dir,
            cert,
            key,
            pem,
        }
    }

    /// A test config with TLS, the user alice, a short failure delay and the given upstream.
    fn config(&self, name: &str, upstream: Option<String>) -> Config {
        let mut c = config(&self.dir.path().join(name), upstream);
        c.tls.cert = Some(self.cert.clone());
        c.tls.key = Some(self.key.clone());
        c.auth.users = users();
        c.auth.failure_delay = FAILURE_DELAY;
        c
    }
}

/// The one test user. Hashing is slow in debug builds, so it is done once per process.
fn users() -> Vec<AuthUser> {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let hash = HASH.get_or_init(|| mailbrake::smtp::auth::hash_password(PASSWORD).unwrap());
    vec![AuthUser {
        name: USER.into(),
        password_hash: hash.clone(),
    }]
}

/// `AUTH PLAIN` initial response for `user` / `password`.
fn plain(user: &str, password: &str) -> String {
    B64.encode(format!("\0{user}\0{password}"))
}

fn b64(s: &str) -> String {
    B64.encode(s)
}

/// The keywords of an EHLO reply (every line after the first, without `250-` / `250 `).
fn ehlo_keywords(reply: &str) -> Vec<String> {
    assert!(reply.starts_with("250"), "EHLO refused: {reply:?}");
    reply
        .lines()
        .skip(1)
        .map(|l| l.get(4..).unwrap_or("").to_string())
        .collect()
}

fn has_auth(keywords: &[String]) -> bool {
    keywords
        .iter()
        .any(|k| k.to_ascii_uppercase().starts_with("AUTH"))
}

fn has_starttls(keywords: &[String]) -> bool {
    keywords.iter().any(|k| k.eq_ignore_ascii_case("STARTTLS"))
}

/// A tokio-rustls connector (ring) that trusts only the test certificate.
fn connector(pem: &str) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// Client side of a TLS handshake for `localhost`, bounded.
async fn handshake(pem: &str, tcp: TcpStream) -> std::io::Result<TlsStream<TcpStream>> {
    let name = ServerName::try_from("localhost").unwrap();
    match tokio::time::timeout(Duration::from_secs(10), connector(pem).connect(name, tcp)).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "TLS handshake timed out",
        )),
    }
}

/// A raw SMTP client over any stream: exact bytes out, whole replies in.
struct Client<S> {
    s: S,
    buf: Vec<u8>,
}

impl Client<TcpStream> {
    async fn connect(addr: SocketAddr) -> Self {
        Client {
            s: TcpStream::connect(addr).await.unwrap(),
            buf: Vec::new(),
        }
    }

    /// Connects from a chosen loopback source address (e.g. 127.0.0.2).
    async fn connect_from(src: &str, addr: SocketAddr) -> Self {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(format!("{src}:0").parse().unwrap()).unwrap();
        Client {
            s: sock.connect(addr).await.unwrap(),
            buf: Vec::new(),
        }
    }

    /// Sends STARTTLS, expects `220 2.0.0 Ready to start TLS`, and completes the handshake.
    async fn starttls(mut self, pem: &str) -> Client<TlsStream<TcpStream>> {
        assert_eq!(self.cmd("STARTTLS").await, TLS_GO);
        assert!(self.buf.is_empty(), "bytes after 220: {:?}", self.buf);
        let s = handshake(pem, self.s).await.unwrap();
        Client { s, buf: Vec::new() }
    }

    /// Greeting, EHLO, STARTTLS, handshake, EHLO again: a client ready for AUTH.
    async fn secure(src: &str, addr: SocketAddr, pem: &str) -> Client<TlsStream<TcpStream>> {
        let mut c = Client::connect_from(src, addr).await;
        assert_eq!(c.reply().await, GREETING);
        let kw = ehlo_keywords(&c.cmd("EHLO client.test").await);
        assert!(has_starttls(&kw), "{kw:?}");
        let mut c = c.starttls(pem).await;
        let kw = ehlo_keywords(&c.cmd("EHLO client.test").await);
        assert!(has_auth(&kw), "{kw:?}");
        c
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    async fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).await.unwrap();
        self.s.flush().await.unwrap();
    }

    async fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes()).await;
        self.reply().await
    }

    /// `AUTH PLAIN` with an initial response.
    async fn auth_plain(&mut self, user: &str, password: &str) -> String {
        self.cmd(&format!("AUTH PLAIN {}", plain(user, password)))
            .await
    }

    /// One complete reply; what was received so far ("" usually) when the server closed.
    async fn reply(&mut self) -> String {
        match self.reply_within(Duration::from_secs(15)).await {
            Some(r) => r,
            None => panic!(
                "no reply within 15 s; got so far: {:?}",
                String::from_utf8_lossy(&self.buf)
            ),
        }
    }

    /// One complete reply, or `None` when nothing complete arrived within `limit`.
    async fn reply_within(&mut self, limit: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(end) = complete_reply(&self.buf) {
                let r: Vec<u8> = self.buf.drain(..end).collect();
                return Some(String::from_utf8_lossy(&r).into_owned());
            }
            let mut chunk = [0u8; 8192];
            match tokio::time::timeout_at(deadline, self.s.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    let r: Vec<u8> = self.buf.drain(..).collect();
                    return Some(String::from_utf8_lossy(&r).into_owned());
                }
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
                Err(_) => return None,
            }
        }
    }

    /// Everything the server sends until it closes; `None` if it is still open after `limit`.
    async fn read_to_close(&mut self, limit: Duration) -> Option<Vec<u8>> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut all: Vec<u8> = self.buf.drain(..).collect();
        loop {
            let mut chunk = [0u8; 8192];
            match tokio::time::timeout_at(deadline, self.s.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return Some(all),
                Ok(Ok(n)) => all.extend_from_slice(&chunk[..n]),
                Err(_) => return None,
            }
        }
    }

    /// A whole transaction after a successful EHLO (and AUTH, if any).
    async fn submit(&mut self, from: &str, to: &str, body: &[u8]) -> String {
        assert_eq!(self.cmd(&format!("MAIL FROM:<{from}>")).await, MAIL_OK);
        assert_eq!(self.cmd(&format!("RCPT TO:<{to}>")).await, RCPT_OK);
        assert_eq!(self.cmd("DATA").await, DATA_GO);
        self.send(body).await;
        self.send(b".\r\n").await;
        self.reply().await
    }
}

fn complete_reply(buf: &[u8]) -> Option<usize> {
    let mut start = 0;
    while let Some(pos) = buf[start..].iter().position(|&b| b == b'\n') {
        let line = &buf[start..start + pos + 1];
        if line.len() >= 4 && line[3] == b' ' {
            return Some(start + pos + 1);
        }
        start += pos + 1;
    }
    None
}

/// A clean message that the shipped policy forwards.
fn clean_message() -> Vec<u8> {
    message(
        &[
            ("From", "Alice <alice@corp.example>"),
            ("To", "bob@partner.example"),
            ("Subject", "lunch"),
        ],
        "Lunch at noon?\r\n",
    )
}

/// The `with ...` protocol word of the Received header mailbrake put first.
fn received_protocol(data: &[u8]) -> String {
    let head = String::from_utf8_lossy(&data[..data.len().min(400)]).into_owned();
    assert!(head.starts_with("Received: from "), "{head}");
    head.split(" with ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_else(|| panic!("no `with` in the trace header: {head}"))
        .to_string()
}

/// A lettre transport to `addr` with the given TLS mode, credentials and mechanisms.
fn lettre_transport(
    addr: SocketAddr,
    pem: &str,
    wrapper: bool,
    creds: Option<(&str, &str)>,
    mechanisms: Vec<Mechanism>,
) -> AsyncSmtpTransport<Tokio1Executor> {
    let params = TlsParameters::builder("localhost".into())
        .add_root_certificate(Certificate::from_pem(pem.as_bytes()).unwrap())
        .build_rustls()
        .unwrap();
    let tls = if wrapper {
        Tls::Wrapper(params)
    } else {
        Tls::Required(params)
    };
    let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(addr.port())
        .tls(tls)
        .timeout(Some(Duration::from_secs(20)))
        .authentication(mechanisms);
    if let Some((u, p)) = creds {
        b = b.credentials(Credentials::new(u.into(), p.into()));
    }
    b.build()
}

/// The value of one sample in the Prometheus text, e.g.
/// `mailbrake_auth_attempts_total{result="failure"}`; 0 when absent.
fn metric(text: &str, sample: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(sample).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

fn auth_metric(text: &str, result: &str) -> f64 {
    metric(
        text,
        &format!("mailbrake_auth_attempts_total{{result=\"{result}\"}} "),
    )
}

/// The start error for a config that must not start.
async fn start_error(c: Config) -> StartError {
    match Server::start(c).await {
        Ok(s) => {
            s.shutdown();
            s.wait().await;
            panic!("the server started with a bad configuration")
        }
        Err(e) => e,
    }
}

// ---------------------------------------------------------------------------------------------
// 1. What is advertised and allowed before and after STARTTLS.

/// Before TLS: STARTTLS offered, AUTH neither offered nor accepted (`530 5.7.0`). After
/// STARTTLS: AUTH PLAIN LOGIN offered, STARTTLS not offered again and refused if sent.
#[tokio::test(flavor = "multi_thread")]
async fn auth_is_offered_and_accepted_only_after_starttls() {
    let fx = Fixture::new();
    let mut ts = TestServer::start(fx.config("data", None)).await;

    let mut c = Client::connect(ts.smtp).await;
    assert_eq!(c.reply().await, GREETING);
    let kw = ehlo_keywords(&c.cmd("EHLO client.test").await);
    assert!(has_starttls(&kw), "STARTTLS not offered before TLS: {kw:?}");
    assert!(!has_auth(&kw), "AUTH offered before TLS: {kw:?}");

    assert_eq!(c.auth_plain(USER, PASSWORD).await, AUTH_NEEDS_TLS);
    assert_eq!(c.cmd("AUTH LOGIN").await, AUTH_NEEDS_TLS);
    assert_eq!(c.cmd("AUTH PLAIN").await, AUTH_NEEDS_TLS);

    let mut c = c.starttls(&fx.pem).await;
    let kw = ehlo_keywords(&c.cmd("EHLO client.test").await);
    assert!(kw.iter().any(|k| k == "AUTH PLAIN LOGIN"), "{kw:?}");
    assert!(
        !has_starttls(&kw),
        "STARTTLS offered again under TLS: {kw:?}"
    );
    assert_eq!(c.cmd("STARTTLS").await, ALREADY_TLS);

    assert_eq!(c.auth_plain(USER, PASSWORD).await, AUTH_OK);
    assert_eq!(
        c.auth_plain(USER, PASSWORD).await,
        "503 5.5.1 Error: already authenticated\r\n"
    );
    assert_eq!(c.cmd("QUIT").await, BYE);

    // The refusals before TLS were not counted as failed logins.
    let m = ts.metrics_text().await;
    assert_eq!(auth_metric(&m, "failure"), 0.0, "{m}");
    assert_eq!(auth_metric(&m, "success"), 1.0, "{m}");
    ts.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 2. Real clients: lettre over STARTTLS with AUTH PLAIN and AUTH LOGIN.

async fn lettre_starttls_delivers_with(mechanism: Mechanism) {
    let sink = Sink::start().await;
    let fx = Fixture::new();
    let mut c = fx.config("data", Some(sink.url()));
    // Only authenticated clients may relay, so a missing AUTH would show as a 554.
    c.relay.allowed_networks = Vec::new();
    let mut ts = TestServer::start(c).await;

    let t = lettre_transport(
        ts.smtp,
        &fx.pem,
        false,
        Some((USER, PASSWORD)),
        vec![mechanism],
    );
    let body = clean_message();
    let reply = send_with(&t, "alice@corp.example", &["bob@partner.example"], &body).await;
    assert_eq!(reply.as_deref(), Ok("250 2.0.0 Ok: queued as SINK1"));

    let got = sink.messages();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].from, "alice@corp.example");
    assert_eq!(got[0].rcpts, vec!["bob@partner.example"]);
    assert_eq!(received_protocol(&got[0].data), "ESMTPSA");
    assert_bytes_eq(&strip_trace(&got[0].data), &body);

    let m = ts.metrics_text().await;
    assert_eq!(auth_metric(&m, "success"), 1.0, "{m}");
    assert_eq!(auth_metric(&m, "failure"), 0.0, "{m}");
    ts.stop().await;
}

/// lettre, STARTTLS required, AUTH PLAIN: delivered, `with ESMTPSA` in the trace header.
#[tokio::test(flavor = "multi_thread")]
async fn lettre_starttls_auth_plain_delivers() {
    lettre_starttls_delivers_with(Mechanism::Plain).await;
}

/// lettre, STARTTLS required, AUTH LOGIN: delivered, `with ESMTPSA` in the trace header.
#[tokio::test(flavor = "multi_thread")]
async fn lettre_starttls_auth_login_delivers() {
    lettre_starttls_delivers_with(Mechanism::Login).await;
}

/// The LOGIN and PLAIN dialogues byte by byte: prompts, initial responses, cancel.
#[tokio::test(flavor = "multi_thread")]
async fn auth_dialogues_follow_rfc_4954() {
    let fx = Fixture::new();
    let mut ts = TestServer::start(fx.config("data", None)).await;

    // LOGIN without initial response: Username: / Password: prompts.
    let mut c = Client::secure("127.0.0.1", ts.smtp, &fx.pem).await;
    assert_eq!(c.cmd("AUTH LOGIN").await, "334 VXNlcm5hbWU6\r\n");
    assert_eq!(c.cmd(&b64(USER)).await, "334 UGFzc3dvcmQ6\r\n");
    assert_eq!(c.cmd(&b64(PASSWORD)).await, AUTH_OK);
    assert_eq!(c.cmd("QUIT").await, BYE);

    // LOGIN with the user name as initial response.
    let mut c = Client::secure("127.0.0.1", ts.smtp, &fx.pem).await;
    assert_eq!(
        c.cmd(&format!("AUTH LOGIN {}", b64(USER))).await,
        "334 UGFzc3dvcmQ6\r\n"
    );
    assert_eq!(c.cmd(&b64(PASSWORD)).await, AUTH_OK);
    assert_eq!(c.cmd("QUIT").await, BYE);

    // PLAIN with an empty challenge, then the response on its own line.
    let mut c = Client::secure("127.0.0.1", ts.smtp, &fx.pem).await;
    assert_eq!(c.cmd("AUTH PLAIN").await, "334 \r\n");
    assert_eq!(c.cmd(&plain(USER, PASSWORD)).await, AUTH_OK);
    assert_eq!(c.cmd("QUIT").await, BYE);

    // The client cancels with `*`; a later AUTH in the same session still works.
    let mut c = Client::secure("127.0.0.1", ts.smtp, &fx.pem).await;
    assert_eq!(c.cmd("AUTH LOGIN").await, "334 VXNlcm5hbWU6\r\n");
    assert_eq!(
        c.cmd("*").await,
        "501 5.7.0 Error: authentication cancelled\r\n"
    );
    assert_eq!(c.auth_plain(USER, PASSWORD).await, AUTH_OK);
    assert_eq!(c.cmd("QUIT").await, BYE);

    let m = ts.metrics_text().await;
    assert_eq!(auth_metric(&m, "success"), 4.0, "{m}");
    assert_eq!(auth_metric(&m, "failure"), 0.0, "{m}");
    ts.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 3. Failed logins: one reply, one timing, then the brake.

/// Wrong password and unknown user get the same `535 5.7.8`, each after at least
/// `auth.failure_delay`, and take about the same time (RELIABILITY.md §2.4, CVE-2000-0990).
#[tokio::test(flavor = "multi_thread")]
async fn wrong_password_and_unknown_user_look_the_same() {
    let fx = Fixture::new();
    let mut c = fx.config("data", None);
    c.auth.max_failures = 100;
    c.limits.max_errors = 100;
    let mut ts = TestServer::start(c).await;

    let mut c = Client::secure("127.0.0.1", ts.smtp, &fx.pem).await;
    const ROUNDS: usize = 5;
    let (mut wrong, mut unknown) = (Vec::new(), Vec::new());
    for i in 0..ROUNDS {
        // Interleaved, so load on the machine affects both sides alike.
        let t = Instant::now();
        let r = c.auth_plain(USER, &format!("guess{i}")).await;
        wrong.push(t.elapsed());
        assert_eq!(r, AUTH_FAILED, "wrong password, round {i}");

        let t = Instant::now();
        let r = c.auth_plain(&format!("mallory{i}"), PASSWORD).await;
        unknown.push(t.elapsed());
        assert_eq!(r, AUTH_FAILED, "unknown user, round {i}");
    }
    // AUTH LOGIN fails the same way for both.
    for user in [USER, "nobody"] {
        assert_eq!(c.cmd("AUTH LOGIN").await, "334 VXNlcm5hbWU6\r\n");
        assert_eq!(c.cmd(&b64(user)).await, "334 UGFzc3dvcmQ6\r\n");
        assert_eq!(c.cmd(&b64("not it")).await, AUTH_FAILED, "LOGIN as {user}");
    }

    for d in wrong.iter().chain(&unknown) {
        assert!(
            *d >= FAILURE_DELAY,
            "a failure answered before the delay: {d:?}"
        );
    }
    let mean = |v: &[Duration]| v.iter().sum::<Duration>().as_secs_f64() / v.len() as f64;
    let (w, u) = (mean(&wrong), mean(&unknown));
    let ratio = w.max(u) / w.min(u);
    assert!(
        ratio < 3.0,
        "timing tells unknown users from wrong passwords: wrong {wrong:?}, unknown {unknown:?}"
    );

    // Still not throttled (max_failures = 100): the right password works.
    assert_eq!(c.auth_plain(USER, PASSWORD).await, AUTH_OK);
    let m = ts.metrics_text().await;
    assert_eq!(auth_metric(&m, "failure"), (2 * ROUNDS + 2) as f64, "{m}");
    assert_eq!(auth_metric(&m, "success"), 1.0, "{m}");
    ts.stop().await;
}

/// After `auth.max_failures` failures from one IP, the next AUTH from that IP (in the same
/// session or a new one, even with the right password) gets `421 4.7.0` and the connection
/// is closed. Another client address is not affected.
#[tokio::test(flavor = "multi_thread")]
async fn auth_failures_from_one_ip_trip_the_brake_for_that_ip_only() {
    let fx = Fixture::new();
    let mut c = fx.config("data", None);
    c.auth.max_failures = 3;
    c.auth.failure_window = Duration::from_secs(600);
    let mut ts = TestServer::start(c).await;

    let mut c = Client::secure("127.0.0.1", ts.smtp, &fx.pem).await;
    for i in 0..3 {
        assert_eq!(
            c.auth_plain(USER, &format!("guess{i}")).await,
            AUTH_FAILED,
            "failure {i}"
        );
    }
    let r = c.auth_plain(USER, PASSWORD).await;
    assert!(r.starts_with(AUTH_THROTTLED_PREFIX), "{r:?}");
    assert!(
        c.read_to_close(Duration::from_secs(5)).await.is_some(),
        "connection left open after 421"
    );

    // A new session from the same address is refused at AUTH too.
    let mut c = Client::secure("127.0.0.1", ts.smtp, &fx.pem).await;
    let r = c.auth_plain(USER, PASSWORD).await;
    assert!(r.starts_with(AUTH_THROTTLED_PREFIX), "{r:?}");
    assert!(c.read_to_close(Duration::from_secs(5)).await.is_some());

    // Another address is not affected.
    let mut c = Client::secure("127.0.0.3", ts.smtp, &fx.pem).await;
    assert_eq!(c.auth_plain(USER, PASSWORD).await, AUTH_OK);
    assert_eq!(c.cmd("QUIT").await, BYE);

    let m = ts.metrics_text().await;
    assert_eq!(auth_metric(&m, "failure"), 3.0, "{m}");
    assert_eq!(auth_metric(&m, "success"), 1.0, "{m}");
    assert!(!m.contains("alice"), "a user name appears in the metrics");
    assert!(!m.contains(PASSWORD), "a password appears in the metrics");
    ts.stop().await;
}

/// RELIABILITY.md §2.4: failures are capped per IP *and per user name*, so credential
/// stuffing against one account from many addresses is braked too.
#[tokio::test(flavor = "multi_thread")]
async fn auth_failures_for_one_user_from_many_ips_trip_the_brake() {
    let fx = Fixture::new();
    let mut c = fx.config("data", None);
    c.auth.max_failures = 3;
    c.auth.max_user_failures = 3;
    c.auth.failure_window = Duration::from_secs(600);
    let mut ts = TestServer::start(c).await;

    for (i, ip) in ["127.0.0.4", "127.0.0.5", "127.0.0.6"].iter().enumerate() {
        let mut c = Client::secure(ip, ts.smtp, &fx.pem).await;
        assert_eq!(c.auth_plain(USER, &format!("guess{i}")).await, AUTH_FAILED);
        assert_eq!(c.cmd("QUIT").await, BYE);
    }
    let mut c = Client::secure("127.0.0.7", ts.smtp, &fx.pem).await;
    let r = c.auth_plain(USER, "guess3").await;
    assert!(
        r.starts_with("454 4.7.0 ") || r.starts_with(AUTH_THROTTLED_PREFIX),
        "4th failure for one user from a 4th address: {r:?}"
    );
    ts.stop().await;
}

/// The brake counts attempts, not only finished failures: guesses sent in parallel on many
/// connections from one IP must not get more than `auth.max_failures` verdicts per window.
#[tokio::test(flavor = "multi_thread")]
async fn parallel_auth_guesses_from_one_ip_are_capped_too() {
    let fx = Fixture::new();
    let mut c = fx.config("data", None);
    c.auth.max_failures = 3;
    c.auth.failure_window = Duration::from_secs(600);
    let mut ts = TestServer::start(c).await;

    const PARALLEL: usize = 8;
    let mut clients = Vec::new();
    for _ in 0..PARALLEL {
        clients.push(Client::secure("127.0.0.5", ts.smtp, &fx.pem).await);
    }
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            tokio::spawn(async move { c.auth_plain(USER, &format!("guess{i}")).await })
        })
        .collect();
    let mut replies = Vec::new();
    for t in tasks {
        replies.push(t.await.unwrap());
    }
    let judged = replies.iter().filter(|r| r.as_str() == AUTH_FAILED).count();
    assert!(
        replies
            .iter()
            .all(|r| r == AUTH_FAILED || r.starts_with(AUTH_THROTTLED_PREFIX)),
        "{replies:?}"
    );
    assert!(
        judged <= 3,
        "{judged} of {PARALLEL} parallel guesses were checked with max_failures = 3: {replies:?}"
    );
    ts.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 4. STARTTLS command injection (CVE-2011-0411 class).

/// Plaintext pipelined after STARTTLS must never be executed inside TLS: the server closes
/// the connection (with `554 5.5.0` or silently) and never answers the injected command.
#[tokio::test(flavor = "multi_thread")]
async fn starttls_with_pipelined_plaintext_is_dropped() {
    let fx = Fixture::new();
    let mut ts = TestServer::start(fx.config("data", None)).await;

    let injections: [&[u8]; 4] = [
        b"STARTTLS\r\nNOOP\r\n",
        b"starttls\r\nnoop\r\n",
        b"STARTTLS\r\nRSET\r\nNOOP\r\n",
        b"STARTTLS\r\nMAIL FROM:<evil@attacker.example>\r\n",
    ];
    for payload in injections {
        let what = String::from_utf8_lossy(payload).into_owned();
        let mut c = Client::connect(ts.smtp).await;
        assert_eq!(c.reply().await, GREETING);
        assert!(c.cmd("EHLO client.test").await.starts_with("250"));
        c.send(payload).await;
        let first = c
            .reply_within(Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("{what:?}: no reply and no close within 10 s"));
        if first.starts_with("220") {
            // The server went ahead with TLS: see whether the injected command is answered
            // inside it. Either way this is a failure; the probe makes the message precise.
            let stream = c.s;
            let answered = match handshake(&fx.pem, stream).await {
                Ok(tls) => {
                    let mut t = Client {
                        s: tls,
                        buf: Vec::new(),
                    };
                    t.reply_within(Duration::from_secs(2)).await
                }
                Err(_) => None,
            };
            panic!(
                "{what:?}: STARTTLS accepted with plaintext pipelined after it; \
                 unprompted reply inside TLS: {answered:?}"
            );
        }
        assert!(
            first.is_empty() || first == SYNC_ERROR,
            "{what:?}: expected 554 5.5.0 or a close, got {first:?}"
        );
        let rest = c
            .read_to_close(Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("{what:?}: connection still open after {first:?}"));
        assert!(
            rest.is_empty(),
            "{what:?}: the injected command was answered: {:?}",
            String::from_utf8_lossy(&rest)
        );
    }
    // A well-behaved client is unaffected.
    let mut c = Client::secure("127.0.0.1", ts.smtp, &fx.pem).await;
    assert_eq!(c.cmd("NOOP").await, "250 2.0.0 Ok\r\n");
    ts.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 5. STARTTLS forgets everything learned before TLS.

/// After STARTTLS the EHLO and any open transaction are gone: MAIL and AUTH need a new
/// EHLO (`503 5.5.1`), RCPT needs a new MAIL.
#[tokio::test(flavor = "multi_thread")]
async fn starttls_resets_the_session_state() {
    let fx = Fixture::new();
    let mut ts = TestServer::start(fx.config("data", None)).await;

    let mut c = Client::connect(ts.smtp).await;
    assert_eq!(c.reply().await, GREETING);
    assert!(c.cmd("EHLO client.test").await.starts_with("250"));
    let mut c = c.starttls(&fx.pem).await;
    assert_eq!(c.cmd("MAIL FROM:<alice@corp.example>").await, NEED_HELO);
    assert_eq!(c.auth_plain(USER, PASSWORD).await, NEED_HELO);
    assert!(c.cmd("EHLO client.test").await.starts_with("250"));
    assert_eq!(c.cmd("MAIL FROM:<alice@corp.example>").await, MAIL_OK);
    assert_eq!(c.cmd("QUIT").await, BYE);

    // A transaction opened before STARTTLS does not survive it.
    let mut c = Client::connect(ts.smtp).await;
    assert_eq!(c.reply().await, GREETING);
    assert!(c.cmd("EHLO client.test").await.starts_with("250"));
    assert_eq!(c.cmd("MAIL FROM:<alice@corp.example>").await, MAIL_OK);
    let mut c = c.starttls(&fx.pem).await;
    assert!(c.cmd("EHLO client.test").await.starts_with("250"));
    assert_eq!(c.cmd("RCPT TO:<bob@partner.example>").await, NEED_MAIL);
    assert_eq!(c.cmd("DATA").await, NEED_MAIL);
    assert_eq!(c.cmd("QUIT").await, BYE);
    ts.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 6. Implicit TLS listener (RFC 8314).

/// On the implicit-TLS port the server says nothing until the handshake is done; lettre with
/// `Tls::Wrapper` delivers through it; plaintext SMTP there gets no SMTP reply.
#[tokio::test(flavor = "multi_thread")]
async fn implicit_tls_listener_delivers_and_greets_only_after_the_handshake() {
    let sink = Sink::start().await;
    let fx = Fixture::new();
    let mut c = fx.config("data", Some(sink.url()));
    c.server.tls_listen = vec!["127.0.0.1:0".parse().unwrap()];
    let mut ts = TestServer::start(c).await;
    let tls_addr = ts.server.as_ref().unwrap().tls_addrs[0];

    // No greeting in plaintext; the greeting comes right after the handshake.
    let tcp = TcpStream::connect(tls_addr).await.unwrap();
    let mut probe = Client {
        s: tcp,
        buf: Vec::new(),
    };
    assert_eq!(
        probe.reply_within(Duration::from_millis(500)).await,
        None,
        "the implicit-TLS port spoke before the handshake"
    );
    let tls = handshake(&fx.pem, probe.s).await.unwrap();
    let mut c = Client {
        s: tls,
        buf: Vec::new(),
    };
    assert_eq!(c.reply().await, GREETING);
    let kw = ehlo_keywords(&c.cmd("EHLO client.test").await);
    assert!(kw.iter().any(|k| k == "AUTH PLAIN LOGIN"), "{kw:?}");
    assert!(
        !has_starttls(&kw),
        "STARTTLS offered under implicit TLS: {kw:?}"
    );
    assert_eq!(c.cmd("STARTTLS").await, ALREADY_TLS);
    assert_eq!(c.cmd("QUIT").await, BYE);

    // Plaintext SMTP on the TLS port: no SMTP reply, and the connection is closed.
    let mut c = Client::connect(tls_addr).await;
    c.send(b"EHLO client.test\r\n").await;
    let got = c
        .read_to_close(Duration::from_secs(10))
        .await
        .expect("a plaintext client on the TLS port is disconnected");
    assert!(
        !got.starts_with(b"220") && !got.starts_with(b"250"),
        "SMTP spoken in plaintext on the TLS port: {:?}",
        String::from_utf8_lossy(&got)
    );

    // lettre: implicit TLS without AUTH (loopback may relay) ...
    let body = clean_message();
    let t = lettre_transport(tls_addr, &fx.pem, true, None, vec![Mechanism::Plain]);
    let reply = send_with(&t, "alice@corp.example", &["bob@partner.example"], &body).await;
    assert_eq!(reply.as_deref(), Ok("250 2.0.0 Ok: queued as SINK1"));
    // ... and with AUTH.
    let t = lettre_transport(
        tls_addr,
        &fx.pem,
        true,
        Some((USER, PASSWORD)),
        vec![Mechanism::Plain],
    );
    let reply = send_with(&t, "alice@corp.example", &["bob@partner.example"], &body).await;
    assert_eq!(reply.as_deref(), Ok("250 2.0.0 Ok: queued as SINK1"));

    let got = sink.messages();
    assert_eq!(got.len(), 2);
    assert_eq!(received_protocol(&got[0].data), "ESMTPS");
    assert_eq!(received_protocol(&got[1].data), "ESMTPSA");
    for d in &got {
        assert_bytes_eq(&strip_trace(&d.data), &body);
    }
    ts.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 7. Relay rights: networks or AUTH.

/// From 127.0.0.2 with only 127.0.0.1/32 allowed: `554 5.7.1` at RCPT without AUTH (in
/// plaintext and under TLS), delivery after AUTH PLAIN.
#[tokio::test(flavor = "multi_thread")]
async fn authenticated_users_relay_from_outside_the_allowed_networks() {
    let sink = Sink::start().await;
    let fx = Fixture::new();
    let mut c = fx.config("data", Some(sink.url()));
    c.relay.allowed_networks = vec!["127.0.0.1/32".parse().unwrap()];
    let mut ts = TestServer::start(c).await;

    // Plaintext, no AUTH.
    let mut c = Client::connect_from("127.0.0.2", ts.smtp).await;
    assert_eq!(c.reply().await, GREETING);
    assert!(c.cmd("EHLO client.test").await.starts_with("250"));
    assert_eq!(c.cmd("MAIL FROM:<alice@corp.example>").await, MAIL_OK);
    assert_eq!(c.cmd("RCPT TO:<bob@partner.example>").await, RELAY_DENIED);
    assert_eq!(c.cmd("QUIT").await, BYE);

    // TLS alone is not enough.
    let mut c = Client::secure("127.0.0.2", ts.smtp, &fx.pem).await;
    assert_eq!(c.cmd("MAIL FROM:<alice@corp.example>").await, MAIL_OK);
    assert_eq!(c.cmd("RCPT TO:<bob@partner.example>").await, RELAY_DENIED);
    assert_eq!(c.cmd("RSET").await, "250 2.0.0 Ok\r\n");

    // AUTH makes the difference.
    assert_eq!(c.auth_plain(USER, PASSWORD).await, AUTH_OK);
    let body = clean_message();
    let r = c
        .submit("alice@corp.example", "bob@partner.example", &body)
        .await;
    assert_eq!(r, SINK_OK);
    assert_eq!(c.cmd("QUIT").await, BYE);

    let got = sink.messages();
    assert_eq!(
        got.len(),
        1,
        "only the authenticated submission reached the upstream"
    );
    assert_eq!(got[0].rcpts, vec!["bob@partner.example"]);
    let head = String::from_utf8_lossy(&got[0].data[..200]).into_owned();
    assert!(head.contains("([127.0.0.2])"), "{head}");
    assert_eq!(received_protocol(&got[0].data), "ESMTPSA");
    assert_bytes_eq(&strip_trace(&got[0].data), &body);
    ts.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 8. AUTH without TLS, when explicitly allowed.

/// `auth.allow_plaintext = true` and no `[tls]`: AUTH offered and working in plaintext,
/// STARTTLS not offered, the trace header says `ESMTPA`.
#[tokio::test(flavor = "multi_thread")]
async fn plaintext_auth_works_when_allowed() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), Some(sink.url()));
    c.auth.users = users();
    c.auth.allow_plaintext = true;
    c.auth.failure_delay = FAILURE_DELAY;
    c.relay.allowed_networks = vec!["127.0.0.1/32".parse().unwrap()];
    let mut ts = TestServer::start(c).await;

    let mut c = Client::connect_from("127.0.0.2", ts.smtp).await;
    assert_eq!(c.reply().await, GREETING);
    let kw = ehlo_keywords(&c.cmd("EHLO client.test").await);
    assert!(kw.iter().any(|k| k == "AUTH PLAIN LOGIN"), "{kw:?}");
    assert!(
        !has_starttls(&kw),
        "STARTTLS offered without a certificate: {kw:?}"
    );
    assert_eq!(
        c.cmd("STARTTLS").await,
        "502 5.5.1 Error: command not implemented\r\n"
    );
    assert_eq!(c.auth_plain(USER, "wrong").await, AUTH_FAILED);
    assert_eq!(c.auth_plain(USER, PASSWORD).await, AUTH_OK);
    let body = clean_message();
    let r = c
        .submit("alice@corp.example", "bob@partner.example", &body)
        .await;
    assert_eq!(r, SINK_OK);
    assert_eq!(c.cmd("QUIT").await, BYE);

    // lettre, plaintext with AUTH LOGIN.
    let t = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(ts.smtp.port())
        .tls(Tls::None)
        .timeout(Some(Duration::from_secs(20)))
        .credentials(Credentials::new(USER.into(), PASSWORD.into()))
        .authentication(vec![Mechanism::Login])
        .build();
    let reply = send_with(&t, "alice@corp.example", &["bob@partner.example"], &body).await;
    assert_eq!(reply.as_deref(), Ok("250 2.0.0 Ok: queued as SINK1"));

    let got = sink.messages();
    assert_eq!(got.len(), 2);
    for d in &got {
        assert_eq!(received_protocol(&d.data), "ESMTPA");
    }
    let m = ts.metrics_text().await;
    assert_eq!(auth_metric(&m, "failure"), 1.0, "{m}");
    assert_eq!(auth_metric(&m, "success"), 2.0, "{m}");
    ts.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 9. Upstream over implicit TLS.

async fn tls_sink(fx: &Fixture) -> Sink {
    let acceptor = mailbrake::smtp::tls::acceptor(&fx.cert, &fx.key).unwrap();
    Sink::start_with(Some(acceptor)).await
}

/// `smtps://` upstream trusting `upstream.ca_file`: clean mail arrives at a TLS-only sink;
/// without configured credentials no AUTH is sent.
#[tokio::test(flavor = "multi_thread")]
async fn clean_mail_goes_to_an_implicit_tls_upstream() {
    let fx = Fixture::new();
    let sink = tls_sink(&fx).await;
    let mut c = fx.config(
        "data",
        Some(format!("smtps://localhost:{}", sink.addr.port())),
    );
    c.upstream.ca_file = Some(fx.cert.clone());
    let mut ts = TestServer::start(c).await;

    let body = clean_message();
    let reply = send(
        ts.smtp,
        "alice@corp.example",
        &["bob@partner.example"],
        &body,
    )
    .await;
    assert_eq!(reply.as_deref(), Ok("250 2.0.0 Ok: queued as SINK1"));
    let got = sink.messages();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].from, "alice@corp.example");
    assert_eq!(got[0].rcpts, vec!["bob@partner.example"]);
    assert_eq!(got[0].auth, None);
    assert_bytes_eq(&strip_trace(&got[0].data), &body);
    ts.stop().await;
}

/// With `upstream.username` / `upstream.password`, mailbrake logs in to the upstream with
/// AUTH PLAIN over the implicit-TLS connection.
#[tokio::test(flavor = "multi_thread")]
async fn upstream_credentials_are_sent_over_implicit_tls() {
    let fx = Fixture::new();
    let sink = tls_sink(&fx).await;
    let mut c = fx.config(
        "data",
        Some(format!("smtps://localhost:{}", sink.addr.port())),
    );
    c.upstream.ca_file = Some(fx.cert.clone());
    c.upstream.username = Some("relayuser".into());
    c.upstream.password = Some("relaypw".into());
    let mut ts = TestServer::start(c).await;

    let body = clean_message();
    let reply = send(
        ts.smtp,
        "alice@corp.example",
        &["bob@partner.example"],
        &body,
    )
    .await;
    assert_eq!(reply.as_deref(), Ok("250 2.0.0 Ok: queued as SINK1"));
    let got = sink.messages();
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].auth.as_deref(),
        Some(B64.encode(b"\0relayuser\0relaypw").as_str())
    );
    assert_bytes_eq(&strip_trace(&got[0].data), &body);
    ts.stop().await;
}

/// An upstream whose certificate is not trusted gets nothing: the client is told to retry.
#[tokio::test(flavor = "multi_thread")]
async fn untrusted_upstream_certificate_is_a_temporary_failure() {
    let fx = Fixture::new();
    let sink = tls_sink(&fx).await;
    // No ca_file: the self-signed sink certificate is not trusted.
    let c = fx.config(
        "data",
        Some(format!("smtps://localhost:{}", sink.addr.port())),
    );
    let mut ts = TestServer::start(c).await;
    let e = send(
        ts.smtp,
        "alice@corp.example",
        &["bob@partner.example"],
        &clean_message(),
    )
    .await
    .unwrap_err();
    assert!(e.contains("451") && e.contains("4.4.1"), "{e}");
    assert_eq!(sink.count(), 0);
    ts.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 10. Bad certificate configuration.

/// Missing or unusable certificate / key files make `Server::start` return an error that
/// names the problem; it never panics and never starts without TLS.
#[tokio::test(flavor = "multi_thread")]
async fn bad_certificate_paths_make_start_fail_with_an_error() {
    let fx = Fixture::new();
    let missing = fx.dir.path().join("tls").join("missing.pem");
    let garbage = fx.dir.path().join("tls").join("garbage.pem");
    std::fs::write(&garbage, "not a PEM file\n").unwrap();

    // Certificate file missing.
    let mut c = fx.config("d1", None);
    c.tls.cert = Some(missing.clone());
    let e = start_error(c).await;
    assert!(matches!(e, StartError::Config(_)), "{e:?}");
    assert!(e.to_string().contains("tls.cert"), "{e}");
    assert!(e.to_string().contains("missing.pem"), "{e}");

    // Key file missing.
    let mut c = fx.config("d2", None);
    c.tls.key = Some(missing.clone());
    let e = start_error(c).await;
    assert!(e.to_string().contains("tls.key"), "{e}");

    // Certificate file is not PEM.
    let mut c = fx.config("d3", None);
    c.tls.cert = Some(garbage.clone());
    let e = start_error(c).await;
    assert!(matches!(e, StartError::Tls(_)), "{e:?}");
    assert!(e.to_string().contains("garbage.pem"), "{e}");

    // Key file is not PEM.
    let mut c = fx.config("d4", None);
    c.tls.key = Some(garbage.clone());
    let e = start_error(c).await;
    assert!(matches!(e, StartError::Tls(_)), "{e:?}");
    assert!(e.to_string().contains("garbage.pem"), "{e}");

    // Certificate and key swapped.
    let mut c = fx.config("d5", None);
    c.tls.cert = Some(fx.key.clone());
    c.tls.key = Some(fx.cert.clone());
    let e = start_error(c).await;
    assert!(matches!(e, StartError::Tls(_)), "{e:?}");

    // An implicit-TLS listener without a certificate.
    let mut c = fx.config("d6", None);
    c.tls.cert = None;
    c.tls.key = None;
    c.auth.users = Vec::new();
    c.server.tls_listen = vec!["127.0.0.1:0".parse().unwrap()];
    let e = start_error(c).await;
    assert!(e.to_string().contains("server.tls_listen"), "{e}");

    // An upstream CA file that does not exist.
    let mut c = fx.config("d7", Some("smtps://localhost:465".into()));
    c.upstream.ca_file = Some(missing.clone());
    let e = start_error(c).await;
    assert!(e.to_string().contains("upstream.ca_file"), "{e}");
}
