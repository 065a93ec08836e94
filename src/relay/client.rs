//! One SMTP client connection to the upstream.
//!
//! Built for a relay on the hot path: TCP_NODELAY (on loopback, Nagle and delayed ACKs cost
//! 40 ms a message), PIPELINING when offered (MAIL, every RCPT and DATA in one write), the
//! message dot-stuffed in bulk and written in large chunks without a copy of the whole
//! message, every read bounded by the timeout. STARTTLS refuses a server that sent anything
//! before the handshake (the response-injection class of CVE-2021-38371), and credentials
//! never cross an unencrypted connection unless the URL says `smtp+plain://`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::UpstreamTls;
use super::wire::{ReplyError, parse_reply, stuffed_pieces};
use crate::envelope::Envelope;
use crate::smtp::reply::Reply;

/// Large writes: pieces are gathered up to this size before each write.
const CHUNK: usize = 64 * 1024;

/// How to reach the upstream; built once from the configuration.
#[derive(Clone)]
pub struct Settings {
    pub host: String,
    pub port: u16,
    pub tls: UpstreamTls,
    pub tls_config: Arc<rustls::ClientConfig>,
    pub server_name: rustls_pki_types::ServerName<'static>,
    pub hello: String,
    pub credentials: Option<(String, String)>,
    pub timeout: Duration,
}

/// Why a transaction did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientError {
    /// The upstream answered with a negative reply.
    Rejected(Reply),
    /// The message cannot be sent to this upstream (SMTPUTF8, 8BITMIME, SIZE).
    Unsupported(Reply),
    /// A reused connection failed before anything was committed: safe to retry once.
    Stale(String),
    /// Network, TLS or protocol trouble.
    Io(String),
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    Closed,
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Closed => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::Closed => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Closed => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Closed => Poll::Ready(Ok(())),
        }
    }
}

/// What the upstream's EHLO offered.
#[derive(Debug, Default, Clone)]
struct Caps {
    pipelining: bool,
    starttls: bool,
    smtputf8: bool,
    eightbit: bool,
    size: Option<u64>,
    auth_plain: bool,
    auth_login: bool,
}

impl Caps {
    fn from_ehlo(r: &Reply) -> Caps {
        let mut c = Caps::default();
        for line in r.lines.iter().skip(1) {
            let up = line.to_ascii_uppercase();
            let mut words = up.split_whitespace();
            match words.next() {
                Some("PIPELINING") => c.pipelining = true,
                Some("STARTTLS") => c.starttls = true,
                Some("SMTPUTF8") => c.smtputf8 = true,
                Some("8BITMIME") => c.eightbit = true,
                Some("SIZE") => {
                    c.size = words.next().and_then(|n| n.parse().ok()).filter(|n| *n > 0)
                }
                Some("AUTH") => {
                    for m in words {
                        c.auth_plain |= m == "PLAIN";
                        c.auth_login |= m == "LOGIN";
                    }
                }
                _ => {}
            }
        }
        c
    }
}

/// A connection ready for transactions.
pub struct Conn {
    stream: Stream,
    rbuf: Vec<u8>,
    caps: Caps,
    timeout: Duration,
    /// When it was last used (the pool closes long-idle connections).
    pub last_used: Instant,
    /// Still fit for another transaction.
    pub healthy: bool,
    /// The message's DATA was accepted (354) and writing began: a failure from here on may
    /// have delivered it, so the transaction must not be retried.
    committed: bool,
}

fn io_err(e: impl std::fmt::Display) -> ClientError {
    ClientError::Io(e.to_string())
}

impl Conn {
    /// Connects, reads the greeting, says EHLO, upgrades to TLS and authenticates as the
    /// settings require.
    pub async fn connect(s: &Settings) -> Result<Conn, ClientError> {
        let tcp = tokio::time::timeout(s.timeout, TcpStream::connect((s.host.as_str(), s.port)))
            .await
            .map_err(|_| ClientError::Io(format!("connecting to {}:{} timed out", s.host, s.port)))?
            .map_err(io_err)?;
        let _ = tcp.set_nodelay(true);
        let stream = if s.tls == UpstreamTls::Implicit {
            Stream::Tls(Box::new(handshake(s, tcp).await?))
        } else {
            Stream::Plain(tcp)
        };
        let mut c = Conn {
            stream,
            rbuf: Vec::with_capacity(4096),
            caps: Caps::default(),
            timeout: s.timeout,
            last_used: Instant::now(),
            healthy: true,
            committed: false,
        };
        let greeting = c.read_reply().await?;
        if greeting.code != 220 {
            return Err(ClientError::Rejected(greeting));
        }
        c.ehlo(&s.hello).await?;
        let encrypted = matches!(c.stream, Stream::Tls(_));
        let must_encrypt = s.credentials.is_some() && s.tls != UpstreamTls::Plain;
        if !encrypted && s.tls != UpstreamTls::Plain && (c.caps.starttls || must_encrypt) {
            if !c.caps.starttls {
                return Err(ClientError::Io(
                    "the upstream does not offer STARTTLS; refusing to send credentials in clear"
                        .into(),
                ));
            }
            c.starttls(s).await?;
            c.ehlo(&s.hello).await?;
        }
        if let Some((user, pass)) = &s.credentials {
            c.auth(user, pass).await?;
        }
        Ok(c)
    }

    async fn ehlo(&mut self, hello: &str) -> Result<(), ClientError> {
        let r = self.command(&format!("EHLO {hello}\r\n")).await?;
        if r.code != 250 {
            return Err(ClientError::Rejected(r));
        }
        self.caps = Caps::from_ehlo(&r);
        Ok(())
    }

    async fn starttls(&mut self, s: &Settings) -> Result<(), ClientError> {
        let r = self.command("STARTTLS\r\n").await?;
        if r.code != 220 {
            return Err(ClientError::Rejected(r));
        }
        if !self.rbuf.is_empty() {
            // Bytes the server sent before the handshake would be read as if they came
            // through TLS: a response-injection attempt.
            return Err(ClientError::Io(
                "the upstream sent data before the TLS handshake; closing".into(),
            ));
        }
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Closed) else {
            return Err(ClientError::Io(
                "STARTTLS on an encrypted connection".into(),
            ));
        };
        self.stream = Stream::Tls(Box::new(handshake(s, tcp).await?));
        Ok(())
    }

    async fn auth(&mut self, user: &str, pass: &str) -> Result<(), ClientError> {
        let r = if self.caps.auth_plain || !self.caps.auth_login {
            let token = B64.encode(format!("\0{user}\0{pass}"));
            self.command(&format!("AUTH PLAIN {token}\r\n")).await?
        } else {
            let r = self.command("AUTH LOGIN\r\n").await?;
            if r.code != 334 {
                return Err(ClientError::Rejected(r));
            }
            let r = self.command(&format!("{}\r\n", B64.encode(user))).await?;
            if r.code != 334 {
                return Err(ClientError::Rejected(r));
            }
            self.command(&format!("{}\r\n", B64.encode(pass))).await?
        };
        if r.code != 235 {
            return Err(ClientError::Rejected(r));
        }
        Ok(())
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        let t = self.timeout;
        let w = async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        };
        match tokio::time::timeout(t, w).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(io_err(e)),
            Err(_) => Err(ClientError::Io("writing to the upstream timed out".into())),
        }
    }

    async fn read_reply(&mut self) -> Result<Reply, ClientError> {
        loop {
            match parse_reply(&self.rbuf) {
                Ok(Some((r, n))) => {
                    self.rbuf.drain(..n);
                    return Ok(r);
                }
                Ok(None) => {}
                Err(ReplyError::Malformed) => {
                    return Err(ClientError::Io("malformed reply from the upstream".into()));
                }
                Err(ReplyError::TooLong) => {
                    return Err(ClientError::Io("reply from the upstream too long".into()));
                }
            }
            self.rbuf.reserve(4096);
            match tokio::time::timeout(self.timeout, self.stream.read_buf(&mut self.rbuf)).await {
                Ok(Ok(0)) => {
                    return Err(ClientError::Io("the upstream closed the connection".into()));
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(io_err(e)),
                Err(_) => {
                    return Err(ClientError::Io(
                        "the upstream did not answer in time".into(),
                    ));
                }
            }
        }
    }

    async fn command(&mut self, line: &str) -> Result<Reply, ClientError> {
        self.write(line.as_bytes()).await?;
        self.read_reply().await
    }

    /// One mail transaction. On a negative reply the connection is reset (RSET) for reuse,
    /// or marked unhealthy when that is not possible.
    pub async fn send(
        &mut self,
        env: &Envelope,
        message: &[u8],
        reused: bool,
    ) -> Result<Reply, ClientError> {
        let result = self.transaction(env, message).await;
        self.last_used = Instant::now();
        match &result {
            Ok(_) => {}
            Err(ClientError::Rejected(_) | ClientError::Unsupported(_)) if self.healthy => {
                if !matches!(self.command("RSET\r\n").await, Ok(r) if r.code == 250) {
                    self.healthy = false;
                }
            }
            Err(_) => self.healthy = false,
        }
        match result {
            Err(ClientError::Io(e)) if reused && !self.committed => Err(ClientError::Stale(e)),
            other => other,
        }
    }

    async fn transaction(&mut self, env: &Envelope, message: &[u8]) -> Result<Reply, ClientError> {
        self.committed = false;
        let utf8 = !env.mail_from.is_ascii() || env.rcpt_to.iter().any(|r| !r.is_ascii());
        if utf8 && !self.caps.smtputf8 {
            return Err(ClientError::Unsupported(Reply::new(
                553,
                "5.6.7 Error: the upstream does not accept non-ASCII addresses (SMTPUTF8)",
            )));
        }
        let eight = !message.is_ascii();
        if eight && !self.caps.eightbit {
            return Err(ClientError::Unsupported(Reply::new(
                554,
                "5.6.3 Error: the upstream does not accept 8-bit content (8BITMIME)",
            )));
        }
        if self.caps.size.is_some_and(|max| message.len() as u64 > max) {
            return Err(ClientError::Unsupported(Reply::new(
                552,
                "5.3.4 Error: message too big for the upstream",
            )));
        }
        let mut mail = format!("MAIL FROM:<{}>", env.mail_from);
        if eight {
            mail.push_str(" BODY=8BITMIME");
        }
        if utf8 {
            mail.push_str(" SMTPUTF8");
        }
        if self.caps.size.is_some() {
            mail.push_str(&format!(" SIZE={}", message.len()));
        }
        mail.push_str("\r\n");
        let rcpts: Vec<String> = env
            .rcpt_to
            .iter()
            .map(|r| format!("RCPT TO:<{r}>\r\n"))
            .collect();
        let data_reply = if self.caps.pipelining {
            let mut batch = mail;
            for r in &rcpts {
                batch.push_str(r);
            }
            batch.push_str("DATA\r\n");
            self.write(batch.as_bytes()).await?;
            let m = self.read_reply().await?;
            let mut first_bad = None;
            for _ in &rcpts {
                let r = self.read_reply().await?;
                if first_bad.is_none() && !r.is_positive() {
                    first_bad = Some(r);
                }
            }
            let d = self.read_reply().await?;
            if !m.is_positive() {
                return Err(self.abandon(d, m));
            }
            if let Some(bad) = first_bad {
                return Err(self.abandon(d, bad));
            }
            d
        } else {
            let m = self.command(&mail).await?;
            if !m.is_positive() {
                return Err(ClientError::Rejected(m));
            }
            for r in &rcpts {
                let rr = self.command(r).await?;
                if !rr.is_positive() {
                    return Err(ClientError::Rejected(rr));
                }
            }
            self.command("DATA\r\n").await?
        };
        if data_reply.code != 354 {
            return Err(ClientError::Rejected(data_reply));
        }
        self.committed = true;
        self.write_message(message).await?;
        let r = self.read_reply().await?;
        if r.is_positive() {
            Ok(r)
        } else {
            Err(ClientError::Rejected(r))
        }
    }

    /// A pipelined transaction failed at MAIL or RCPT. If the server still said 354 to DATA,
    /// the only safe way out is to drop the connection (sending "." would deliver an empty
    /// message to the accepted recipients).
    fn abandon(&mut self, data_reply: Reply, reason: Reply) -> ClientError {
        if data_reply.code == 354 {
            self.healthy = false;
            self.stream = Stream::Closed;
        }
        ClientError::Rejected(reason)
    }

    /// Writes the dot-stuffed message and the terminator: pieces gathered into writes of
    /// about [`CHUNK`] bytes; long runs go straight from the message buffer.
    async fn write_message(&mut self, message: &[u8]) -> Result<(), ClientError> {
        let mut out: Vec<u8> = Vec::with_capacity(CHUNK.min(message.len() + 16));
        let t = self.timeout;
        for piece in stuffed_pieces(message) {
            if piece.len() >= CHUNK {
                if !out.is_empty() {
                    tokio::time::timeout(t, self.stream.write_all(&out))
                        .await
                        .map_err(|_| io_err("write timed out"))?
                        .map_err(io_err)?;
                    out.clear();
                }
                tokio::time::timeout(t, self.stream.write_all(piece))
                    .await
                    .map_err(|_| io_err("write timed out"))?
                    .map_err(io_err)?;
                continue;
            }
            out.extend_from_slice(piece);
            if out.len() >= CHUNK {
                tokio::time::timeout(t, self.stream.write_all(&out))
                    .await
                    .map_err(|_| io_err("write timed out"))?
                    .map_err(io_err)?;
                out.clear();
            }
        }
        self.write(&out).await
    }

    /// Says QUIT (best effort, short timeout).
    pub async fn quit(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            let _ = self.stream.write_all(b"QUIT\r\n").await;
            let _ = self.stream.shutdown().await;
        })
        .await;
    }
}

async fn handshake(s: &Settings, tcp: TcpStream) -> Result<TlsStream<TcpStream>, ClientError> {
    let connector = tokio_rustls::TlsConnector::from(Arc::clone(&s.tls_config));
    tokio::time::timeout(s.timeout, connector.connect(s.server_name.clone(), tcp))
        .await
        .map_err(|_| ClientError::Io("TLS handshake with the upstream timed out".into()))?
        .map_err(|e| ClientError::Io(format!("TLS with the upstream failed: {e}")))
}
