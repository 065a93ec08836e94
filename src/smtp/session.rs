//! One SMTP session: the read loop, reply batching, timeouts, STARTTLS and DATA.
//!
//! The loop reads into one bounded buffer and answers every complete command in it before
//! writing, so a pipelining client gets its replies in one write (RFC 2920) and a
//! non-pipelining one gets each reply as soon as it is due. The verbs themselves are in
//! `verbs.rs` and `auth_verb.rs`; the framing is sans-IO in `line.rs` and `data.rs`.
//!
//! Bounds: a command line is at most `limits.max_command_line` bytes, a message at most
//! `limits.max_message_size`; every read waits at most `command_timeout` (or `data_timeout`)
//! and never past the session deadline. When the server shuts down, an idle session is told
//! `421 4.3.2`; a session in DATA finishes its message first.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use super::data::DataReceiver;
use super::line::{Line, next_line};
use super::reply::{self, Reply};
use super::stream::Stream;
use crate::config::BareNewlines;
use crate::envelope::Envelope;
use crate::server::App;

/// An open transaction (after MAIL FROM).
pub(super) struct Transaction {
    pub from: String,
    pub smtputf8: bool,
    pub rcpts: Vec<String>,
}

/// What the loop does after a command.
pub(super) enum Flow {
    Continue,
    Data,
    StartTls,
    Close,
}

/// The outcome of waiting for input.
enum Fill {
    Data,
    Eof,
    Timeout,
    Deadline,
    Shutdown,
}

/// The session's state. Fields are `pub(super)` for the verb handlers in sibling modules.
pub struct Session {
    pub(super) app: Arc<App>,
    pub(super) peer: SocketAddr,
    stream: Stream,
    rbuf: Vec<u8>,
    rpos: usize,
    wbuf: Vec<u8>,
    deadline: Instant,
    pub(super) helo: Option<String>,
    pub(super) auth_user: Option<String>,
    pub(super) tx: Option<Transaction>,
    pub(super) errors: usize,
    pub(super) messages: usize,
    /// The connection-limit slot: given back at QUIT before the 221 is written, so a client
    /// that reconnects as soon as it reads the 221 never finds its own old slot still taken.
    pub(super) slot: Option<crate::smtp::limiter::Permit>,
}

const READ_CHUNK: usize = 16 * 1024;

impl Session {
    pub fn new(app: Arc<App>, peer: SocketAddr, stream: Stream) -> Session {
        let deadline = Instant::now() + app.config.limits.session_timeout;
        Session {
            app,
            peer,
            stream,
            rbuf: Vec::with_capacity(READ_CHUNK),
            rpos: 0,
            wbuf: Vec::with_capacity(1024),
            deadline,
            helo: None,
            auth_user: None,
            tx: None,
            errors: 0,
            messages: 0,
            slot: None,
        }
    }

    /// Holds `permit` for the session's life (or until QUIT).
    pub fn with_slot(mut self, permit: crate::smtp::limiter::Permit) -> Session {
        self.slot = Some(permit);
        self
    }

    /// Runs the session to its end. I/O errors end it quietly (the client went away).
    pub async fn run(mut self) {
        let greeting = format!("220 {} ESMTP mailbrake\r\n", self.app.hostname);
        self.push(greeting.as_bytes());
        if self.flush().await.is_err() {
            return;
        }
        loop {
            let line = match self.read_line().await {
                Ok(Some(line)) => line,
                Ok(None) | Err(()) => break,
            };
            match self.handle_command(&line).await {
                Flow::Continue => {}
                Flow::Close => break,
                Flow::Data => {
                    if self.receive_data().await.is_err() {
                        break;
                    }
                }
                Flow::StartTls => {
                    if self.start_tls().await.is_err() {
                        break;
                    }
                }
            }
            if self.errors >= self.app.config.limits.max_errors {
                self.push(reply::TOO_MANY_ERRORS);
                break;
            }
        }
        let _ = self.flush().await;
        let _ = tokio::time::timeout(Duration::from_secs(1), self.stream.shutdown()).await;
    }

    /// Queues reply bytes; they are written when the loop next waits for input.
    pub(super) fn push(&mut self, bytes: &[u8]) {
        self.wbuf.extend_from_slice(bytes);
    }

    pub(super) fn push_reply(&mut self, r: &Reply) {
        r.write_to(&mut self.wbuf);
    }

    /// Writes the queued replies in one write.
    pub(super) async fn flush(&mut self) -> Result<(), ()> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let timeout = self.app.config.limits.command_timeout;
        let write = async {
            self.stream.write_all(&self.wbuf).await?;
            self.stream.flush().await
        };
        let ok = matches!(tokio::time::timeout(timeout, write).await, Ok(Ok(())));
        self.wbuf.clear();
        if ok { Ok(()) } else { Err(()) }
    }

    /// Bytes received but not yet consumed.
    pub(super) fn buffered(&self) -> &[u8] {
        &self.rbuf[self.rpos..]
    }

    fn consume(&mut self, n: usize) {
        self.rpos += n;
        if self.rpos == self.rbuf.len() {
            self.rbuf.clear();
            self.rpos = 0;
        }
    }

    /// Waits for more input. Flushes pending replies first, so replies go out exactly when
    /// the client is waiting for them.
    /// `watch_shutdown`: an idle session stops at the start of a shutdown; a session in DATA
    /// (false) finishes its message, and stops only when the grace period is over.
    async fn fill(&mut self, timeout: Duration, watch_shutdown: bool) -> Result<Fill, ()> {
        self.flush().await?;
        if self.rpos > 0 {
            self.rbuf.drain(..self.rpos);
            self.rpos = 0;
        }
        let now = Instant::now();
        if now >= self.deadline {
            return Ok(Fill::Deadline);
        }
        let until = (now + timeout).min(self.deadline);
        let token = if watch_shutdown {
            self.app.shutdown.clone()
        } else {
            self.app.hard_stop.clone()
        };
        self.rbuf.reserve(READ_CHUNK);
        let read = tokio::time::timeout_at(until, self.stream.read_buf(&mut self.rbuf));
        let result = tokio::select! {
            biased;
            _ = token.cancelled() => return Ok(Fill::Shutdown),
            r = read => r,
        };
        match result {
            Ok(Ok(0)) => Ok(Fill::Eof),
            Ok(Ok(_)) => Ok(Fill::Data),
            Ok(Err(_)) => Err(()),
            Err(_) if Instant::now() >= self.deadline => Ok(Fill::Deadline),
            Err(_) => Ok(Fill::Timeout),
        }
    }

    /// The next command line (LF included), reading as needed. `None`: the session is over
    /// (the reason, if any, has been queued as a reply).
    pub(super) async fn read_line(&mut self) -> Result<Option<Vec<u8>>, ()> {
        let max = self.app.config.limits.max_command_line;
        loop {
            match next_line(self.buffered(), max) {
                Line::Complete(n) => {
                    let line = self.buffered()[..n].to_vec();
                    self.consume(n);
                    return Ok(Some(line));
                }
                Line::TooLong => {
                    self.push(reply::LINE_TOO_LONG);
                    return Ok(None);
                }
                Line::Incomplete => {}
            }
            if self.app.shutdown.is_cancelled() {
                self.push(reply::SHUTTING_DOWN);
                return Ok(None);
            }
            match self
                .fill(self.app.config.limits.command_timeout, true)
                .await?
            {
                Fill::Data => {}
                Fill::Eof => return Ok(None),
                Fill::Timeout => {
                    self.push(reply::TIMEOUT);
                    return Ok(None);
                }
                Fill::Deadline => {
                    self.push(reply::SESSION_DEADLINE);
                    return Ok(None);
                }
                Fill::Shutdown => {
                    self.push(reply::SHUTTING_DOWN);
                    return Ok(None);
                }
            }
        }
    }

    /// After `DATA`: enforce pipelining synchronisation, send 354, receive the message,
    /// hand it to the pipeline and reply with its verdict.
    async fn receive_data(&mut self) -> Result<(), ()> {
        // RFC 2920: DATA ends a command group; bytes already here were sent before the client
        // saw 354 (Postfix `smtpd_forbid_unauth_pipelining`).
        if !self.buffered().is_empty() {
            self.push(reply::SYNC_ERROR);
            return Err(());
        }
        let Some(tx) = self.tx.take() else {
            return Ok(());
        };
        if let Some(r) = self.app.storage_floor_reply() {
            self.push(r);
            return Ok(());
        }
        self.push(reply::DATA_GO);
        let app = Arc::clone(&self.app);
        let limits = &app.config.limits;
        let max = limits.max_message_size.as_usize();
        let data_timeout = limits.data_timeout;
        let id = crate::ids::new_id();
        let envelope = Envelope {
            mail_from: tx.from,
            rcpt_to: tx.rcpts,
            smtputf8: tx.smtputf8,
            client_ip: self.peer.ip(),
            helo: self.helo.clone().unwrap_or_default(),
            auth_user: self.auth_user.clone(),
            tls: self.stream.is_tls(),
        };
        let trace = super::received::header(&super::received::Trace {
            helo: &envelope.helo,
            client_ip: envelope.client_ip,
            hostname: &self.app.hostname,
            tls: envelope.tls,
            authenticated: envelope.auth_user.is_some(),
            id: &id,
            now: std::time::SystemTime::now(),
        });
        let mut message = Vec::with_capacity(trace.len() + 16 * 1024);
        message.extend_from_slice(trace.as_bytes());
        // The receiver appends after the trace header: no copy of the body is ever made.
        let mut rx = DataReceiver::new(max);
        loop {
            let r = rx.ingest(self.buffered(), &mut message);
            self.consume(r.consumed);
            if r.done {
                break;
            }
            match self.fill(data_timeout, false).await? {
                Fill::Data => {}
                Fill::Eof => return Err(()),
                Fill::Timeout => {
                    self.push(reply::TIMEOUT);
                    return Err(());
                }
                Fill::Deadline => {
                    self.push(reply::SESSION_DEADLINE);
                    return Err(());
                }
                Fill::Shutdown => {
                    // The grace period is over: the message was not accepted; say so.
                    self.push(reply::SHUTTING_DOWN);
                    return Err(());
                }
            }
        }
        self.messages += 1;
        if rx.overflowed() {
            tracing::info!(peer = %self.peer, limit = max, "message over the size limit refused");
            self.push(reply::TOO_BIG);
            return Ok(());
        }
        if (rx.saw_bare_lf() || rx.saw_bare_cr()) && limits.bare_newlines == BareNewlines::Reject {
            self.push(reply::BARE_LF);
            return Ok(());
        }
        let r = crate::pipeline::process(&self.app, id, envelope, message).await;
        self.push_reply(&r);
        Ok(())
    }

    /// STARTTLS (RFC 3207): refuse if plaintext was pipelined after it, else handshake and
    /// forget everything learned before TLS.
    async fn start_tls(&mut self) -> Result<(), ()> {
        let Some(acceptor) = self.app.tls.clone() else {
            self.push(reply::NOT_IMPLEMENTED);
            return Ok(());
        };
        if !self.buffered().is_empty() {
            // CVE-2011-0411 class: commands injected before the handshake. Drop the client.
            tracing::warn!(peer = %self.peer, "plaintext pipelined after STARTTLS; closing");
            self.push(reply::SYNC_ERROR);
            return Err(());
        }
        self.push(reply::TLS_GO);
        self.flush().await?;
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Closed) else {
            return Err(());
        };
        let handshake = acceptor.accept(tcp);
        match tokio::time::timeout(self.app.config.limits.tls_handshake_timeout, handshake).await {
            Ok(Ok(tls)) => {
                self.stream = Stream::Tls(Box::new(tls));
                self.helo = None;
                self.auth_user = None;
                self.tx = None;
                self.rbuf.clear();
                self.rpos = 0;
                Ok(())
            }
            _ => Err(()),
        }
    }

    /// True under TLS.
    pub(super) fn is_tls(&self) -> bool {
        self.stream.is_tls()
    }
}

/// Runs a session on an implicit-TLS connection: handshake first, then SMTP.
pub async fn run_implicit_tls(
    app: Arc<App>,
    peer: SocketAddr,
    tcp: tokio::net::TcpStream,
    permit: crate::smtp::limiter::Permit,
) {
    let Some(acceptor) = app.tls.clone() else {
        return;
    };
    let timeout = app.config.limits.tls_handshake_timeout;
    if let Ok(Ok(tls)) = tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
        Session::new(app, peer, Stream::Tls(Box::new(tls)))
            .with_slot(permit)
            .run()
            .await;
    }
}
