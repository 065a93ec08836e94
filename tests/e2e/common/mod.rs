//! Shared test harness: a mailbrake server on ephemeral loopback ports, an SMTP sink as the
//! upstream, a raw SMTP client for protocol tests, lettre as the real client, the CLI binary.

#![allow(dead_code)]

pub mod fixtures;
pub mod sink;

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use mailbrake::config::Config;
use mailbrake::server::Server;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub use sink::{Mode, Sink};

/// The repository's shipped policy directory.
pub fn policies_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")
}

/// A configuration for tests: every listener on 127.0.0.1:0, data in `data_dir`, the shipped
/// policy, and the given upstream (None = outbox).
pub fn config(data_dir: &Path, upstream: Option<String>) -> Config {
    let mut c = Config::default();
    c.server.listen = vec!["127.0.0.1:0".parse().unwrap()];
    c.server.hostname = "mailbrake.test".into();
    c.server.data_dir = data_dir.to_path_buf();
    c.server.policies = Some(policies_dir());
    c.server.shutdown_grace = Duration::from_secs(5);
    c.admin.listen = "127.0.0.1:0".parse().unwrap();
    c.metrics.listen = "127.0.0.1:0".parse().unwrap();
    c.upstream.url = upstream;
    c.upstream.timeout = Duration::from_secs(10);
    c.limits.min_free_space = mailbrake::config::ByteSize(1024 * 1024);
    c.limits.max_message_size = mailbrake::config::ByteSize(1024 * 1024);
    c
}

/// A running in-process server and what tests need to talk to it.
pub struct TestServer {
    pub server: Option<Server>,
    pub smtp: SocketAddr,
    pub admin: SocketAddr,
    pub metrics: SocketAddr,
    pub data_dir: PathBuf,
}

impl TestServer {
    pub async fn start(c: Config) -> TestServer {
        // As in the binary: PDFs are read by `mailbrake pdf-text` child processes.
        mailbrake::inspect::extract::read_in_child_processes(PathBuf::from(env!(
            "CARGO_BIN_EXE_mailbrake"
        )));
        let data_dir = c.server.data_dir.clone();
        let server = Server::start(c).await.expect("server starts");
        TestServer {
            smtp: server.smtp_addrs[0],
            admin: server.admin_addr,
            metrics: server.metrics_addr,
            server: Some(server),
            data_dir,
        }
    }

    pub fn app(&self) -> &std::sync::Arc<mailbrake::server::App> {
        &self.server.as_ref().unwrap().app
    }

    /// Graceful shutdown, waiting for it to finish.
    pub async fn stop(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown();
            s.wait().await;
        }
    }

    /// `mailbrake` CLI arguments that point at this server.
    pub fn conn_args(&self) -> Vec<String> {
        vec![
            "--admin".into(),
            self.admin.to_string(),
            "--data-dir".into(),
            self.data_dir.display().to_string(),
        ]
    }

    /// GET /metrics as text.
    pub async fn metrics_text(&self) -> String {
        http_get(self.metrics, "/metrics", None).await.1
    }
}

/// A minimal HTTP/1.1 GET over loopback: (status, body).
pub async fn http_get(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Sends `raw` through lettre (plain SMTP, no TLS) and returns the reply text or the error.
pub async fn send(addr: SocketAddr, from: &str, to: &[&str], raw: &[u8]) -> Result<String, String> {
    let t = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(addr.ip().to_string())
        .port(addr.port())
        .tls(Tls::None)
        .timeout(Some(Duration::from_secs(20)))
        .build();
    send_with(&t, from, to, raw).await
}

pub async fn send_with(
    t: &AsyncSmtpTransport<Tokio1Executor>,
    from: &str,
    to: &[&str],
    raw: &[u8],
) -> Result<String, String> {
    let from = if from.is_empty() {
        None
    } else {
        Some(Address::from_str(from).unwrap())
    };
    let to = to.iter().map(|a| Address::from_str(a).unwrap()).collect();
    let env = Envelope::new(from, to).unwrap();
    // lettre writes `\r\n.\r\n` after the content: drop the content's final CRLF so the
    // server receives exactly `raw`.
    let raw = raw.strip_suffix(b"\r\n").unwrap_or(raw);
    match t.send_raw(&env, raw).await {
        Ok(r) => Ok(format!(
            "{} {}",
            r.code(),
            r.message().collect::<Vec<_>>().join(" ")
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// A lettre transport over STARTTLS (required) trusting `ca_pem`, with optional credentials.
pub fn starttls_transport(
    addr: SocketAddr,
    ca_pem: &str,
    creds: Option<(&str, &str)>,
) -> AsyncSmtpTransport<Tokio1Executor> {
    let params = TlsParameters::builder("localhost".into())
        .add_root_certificate(Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .build_rustls()
        .unwrap();
    let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(addr.port())
        .tls(Tls::Required(params))
        .timeout(Some(Duration::from_secs(20)));
    if let Some((u, p)) = creds {
        b = b.credentials(Credentials::new(u.into(), p.into()));
    }
    b.build()
}

/// A simple message with the given headers and body (CRLF line ends).
pub fn message(headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut m = String::new();
    for (k, v) in headers {
        m.push_str(&format!("{k}: {v}\r\n"));
    }
    m.push_str("\r\n");
    m.push_str(body);
    m.into_bytes()
}

/// `n` external addresses over `domains` domains for To/Cc, folded one per line as real
/// mailers fold long headers (RFC 5322 lines stay under 998 octets).
pub fn address_list(n: usize, domains: usize) -> String {
    (0..n)
        .map(|i| format!("member{i}@family{}.example", i % domains))
        .collect::<Vec<_>>()
        .join(",\r\n ")
}

/// Incident 2: a newsletter with 832 member addresses in To.
pub fn incident2_message() -> Vec<u8> {
    message(
        &[
            ("From", "news@publisher.example"),
            ("To", &address_list(832, 600)),
            ("Subject", "December newsletter"),
            ("Message-ID", "<incident2@publisher.example>"),
        ],
        "Dear members,\r\n\r\nHere is our December newsletter.\r\n",
    )
}

/// A self-signed certificate for `localhost` / 127.0.0.1: (cert PEM path, key PEM path, cert PEM).
pub fn make_cert(dir: &Path) -> (PathBuf, PathBuf, String) {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let cert_pem = ck.cert.pem();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, &cert_pem).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    (cert, key, cert_pem)
}

/// A raw SMTP client for protocol tests: exact bytes out, replies in.
pub struct Raw {
    pub s: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Raw {
        let s = TcpStream::connect(addr).await.unwrap();
        Raw { s, buf: Vec::new() }
    }

    /// Connects from a chosen loopback source address (e.g. 127.0.0.2).
    pub async fn connect_from(src: &str, addr: SocketAddr) -> Raw {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(format!("{src}:0").parse().unwrap()).unwrap();
        let s = sock.connect(addr).await.unwrap();
        Raw { s, buf: Vec::new() }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).await.unwrap();
    }

    /// Reads one complete (possibly multi-line) reply; "" when the server closed.
    pub async fn reply(&mut self) -> String {
        self.reply_within(Duration::from_secs(15)).await
    }

    pub async fn reply_within(&mut self, limit: Duration) -> String {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(end) = complete_reply(&self.buf) {
                let r: Vec<u8> = self.buf.drain(..end).collect();
                return String::from_utf8_lossy(&r).into_owned();
            }
            let mut chunk = [0u8; 8192];
            match tokio::time::timeout_at(deadline, self.s.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    let r: Vec<u8> = self.buf.drain(..).collect();
                    return String::from_utf8_lossy(&r).into_owned();
                }
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
                Err(_) => panic!(
                    "no reply within {limit:?}; got so far: {:?}",
                    String::from_utf8_lossy(&self.buf)
                ),
            }
        }
    }

    /// Sends a command line and returns the reply.
    pub async fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes()).await;
        self.reply().await
    }

    /// True when the server has closed the connection (reads EOF within `limit`).
    pub async fn closed_within(&mut self, limit: Duration) -> bool {
        let mut chunk = [0u8; 1024];
        loop {
            match tokio::time::timeout(limit, self.s.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
                Err(_) => return false,
            }
        }
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

/// Runs the `mailbrake` binary: (exit code, stdout, stderr).
pub async fn cli(args: Vec<String>) -> (i32, String, String) {
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_mailbrake"))
            .args(&args)
            .env_remove("MAILBRAKE_ADMIN")
            .env_remove("MAILBRAKE_ADMIN_TOKEN")
            .env_remove("MAILBRAKE_CONFIG")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `cli` with the server's connection flags appended.
pub async fn cli_at(ts: &TestServer, args: &[&str]) -> (i32, String, String) {
    let mut a: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    a.extend(ts.conn_args());
    cli(a).await
}

/// Waits until `cond` holds, checking every 20 ms, for at most `limit`.
pub async fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond()
}

/// A free loopback TCP port (bind to 0, read it, release it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The id in a `250 2.0.0 Ok: held as <id>` reply.
pub fn held_id(reply: &str) -> String {
    reply
        .split("held as ")
        .nth(1)
        .map(|s| s.split_whitespace().next().unwrap_or("").to_string())
        .unwrap_or_else(|| panic!("not a held reply: {reply}"))
}

/// The message as the upstream sees it minus mailbrake's Received header.
pub fn strip_trace(data: &[u8]) -> Vec<u8> {
    let text = data;
    assert!(
        text.starts_with(b"Received: from "),
        "no trace header first: {:?}",
        String::from_utf8_lossy(&text[..text.len().min(200)])
    );
    // The header is three lines: "Received: ...\r\n\tby ...\r\n\t<date>\r\n".
    let mut pos = 0;
    for _ in 0..3 {
        pos += text[pos..].iter().position(|&b| b == b'\n').unwrap() + 1;
    }
    text[pos..].to_vec()
}

/// Asserts two byte strings are equal; on failure shows lengths and the first difference
/// (never the whole message).
#[track_caller]
pub fn assert_bytes_eq(got: &[u8], want: &[u8]) {
    if got == want {
        return;
    }
    let at = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    let window = |b: &[u8]| {
        String::from_utf8_lossy(&b[at.saturating_sub(40)..(at + 40).min(b.len())]).into_owned()
    };
    panic!(
        "bytes differ: got {} bytes, want {} bytes; first difference at {at}\n got: {:?}\nwant: {:?}",
        got.len(),
        want.len(),
        window(got),
        window(want)
    );
}

/// The real binary as a child process, killed (SIGKILL) and reaped when dropped, so an
/// assertion failure never leaves it running.
pub struct ChildGuard {
    child: Option<Child>,
    log: PathBuf,
}

impl ChildGuard {
    pub fn spawn(config: &Path, log: PathBuf) -> ChildGuard {
        let stderr = std::fs::File::create(&log)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display()));
        let child = Command::new(env!("CARGO_BIN_EXE_mailbrake"))
            .args(["serve", "--config"])
            .arg(config)
            .env_remove("MAILBRAKE_CONFIG")
            .env("MAILBRAKE_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start mailbrake: {e}"));
        ChildGuard {
            child: Some(child),
            log,
        }
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let start = text.len().saturating_sub(1500);
        text.get(start..).unwrap_or("").to_string()
    }

    /// Waits (bounded) until the server greets on `smtp`.
    pub async fn wait_ready(&mut self, smtp: SocketAddr) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let Some(child) = self.child.as_mut() else {
                panic!("mailbrake was already killed");
            };
            match child.try_wait() {
                Ok(None) => {}
                Ok(Some(status)) => {
                    panic!("mailbrake exited early ({status}): {}", self.log_tail())
                }
                Err(e) => panic!("cannot poll mailbrake: {e}"),
            }
            if let Ok(Ok(mut s)) = tokio::time::timeout(
                Duration::from_millis(500),
                tokio::net::TcpStream::connect(smtp),
            )
            .await
            {
                let mut buf = [0u8; 256];
                if let Ok(Ok(n)) =
                    tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await
                    && buf[..n].starts_with(b"220 ")
                {
                    return;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "mailbrake did not greet on {smtp} within 20 s: {}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}
