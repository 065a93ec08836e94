//! The load generator: C concurrent SMTP sessions pushing N pre-built messages.
//!
//! Lean on purpose, so that the client is not what is measured: every session shares the
//! same command and payload bytes, each connection has one fixed read buffer, replies are
//! parsed in place, and a message costs no allocation beyond its latency sample (in a vector
//! sized up front). With PIPELINING (when offered) a message is two writes — `MAIL`, `RCPT`
//! and `DATA` in one, the dot-stuffed body with its final dot in the other — and three plus
//! one replies. TCP_NODELAY is set on every connection.
//!
//! time-to-250 is measured from the moment the write of the body and final dot returned (the
//! last byte is in the kernel) to the moment the final reply was read.

use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::message;

/// How sessions use connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Each session sends its share over one connection (a new one after
    /// `per_connection` messages: mailbrake's `max_messages_per_session` is 1000).
    Reuse,
    /// Connect, EHLO, one transaction, QUIT, for every message.
    NewConnection,
}

impl Mode {
    pub fn label(self) -> &'static str {
        match self {
            Mode::Reuse => "reuse",
            Mode::NewConnection => "new conn/msg",
        }
    }
}

/// What the final reply must say for the message to count as a success.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Any 250 (the sink, Postfix).
    Accepted,
    /// A 250 that is not a hold (mailbrake forwarding: the upstream's own reply).
    Forwarded,
    /// `250 … held as <id>`.
    Held,
}

/// One run of the generator.
pub struct Load {
    /// Session i connects to `addrs[i % addrs.len()]`.
    pub addrs: Vec<SocketAddr>,
    pub sessions: usize,
    pub messages: usize,
    pub mode: Mode,
    pub per_connection: usize,
    pub expect: Expect,
}

/// The bytes every session sends, built once.
pub struct Wire {
    ehlo: Vec<u8>,
    mail: Vec<u8>,
    rcpt: Vec<u8>,
    envelope: Vec<u8>,
    payload: Vec<u8>,
    pub message_len: usize,
}

impl Wire {
    pub fn new(size: usize) -> Wire {
        let msg = message::build(size);
        let mail = format!("MAIL FROM:<{}> SIZE={}\r\n", message::SENDER, msg.len()).into_bytes();
        let rcpt = format!("RCPT TO:<{}>\r\n", message::RECIPIENT).into_bytes();
        let mut envelope = mail.clone();
        envelope.extend_from_slice(&rcpt);
        envelope.extend_from_slice(b"DATA\r\n");
        Wire {
            ehlo: b"EHLO loadgen.bench.example\r\n".to_vec(),
            mail,
            rcpt,
            envelope,
            payload: message::data_payload(&msg),
            message_len: msg.len(),
        }
    }
}

/// What a run produced.
#[derive(Default)]
pub struct Outcome {
    /// time-to-250 of every successful message, in microseconds.
    pub latencies_us: Vec<u32>,
    /// Messages whose final reply matched the expectation.
    pub ok: usize,
    /// Messages that failed (any other reply, a protocol or connection error).
    pub failed: usize,
    /// Successful final replies that were holds (for Expect::Accepted runs, informative).
    pub held: usize,
    /// When the last successful final reply was read.
    pub last_reply: Option<Instant>,
    /// Up to a few distinct error descriptions with their counts.
    pub errors: Vec<(String, usize)>,
    /// Whether the server offered PIPELINING.
    pub pipelining: bool,
    /// Sessions cut off by the deadline.
    pub timed_out: bool,
}

impl Outcome {
    fn note_error(&mut self, e: String) {
        self.failed += 1;
        if let Some(slot) = self.errors.iter_mut().find(|(s, _)| *s == e) {
            slot.1 += 1;
        } else if self.errors.len() < 8 {
            self.errors.push((e, 1));
        }
    }

    fn merge(&mut self, other: Outcome) {
        self.latencies_us.extend_from_slice(&other.latencies_us);
        self.ok += other.ok;
        self.held += other.held;
        self.failed += other.failed;
        self.pipelining |= other.pipelining;
        self.last_reply = match (self.last_reply, other.last_reply) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        for (e, n) in other.errors {
            if let Some(slot) = self.errors.iter_mut().find(|(s, _)| *s == e) {
                slot.1 += n;
            } else if self.errors.len() < 8 {
                self.errors.push((e, n));
            }
        }
    }
}

/// A session stops after this many failures (bounded, and a broken path fails fast).
const MAX_SESSION_ERRORS: usize = 20;

/// Runs the load; returns when every session is done or `deadline` has passed (sessions still
/// running then are aborted and counted as timed out).
pub async fn run(load: &Load, wire: &Arc<Wire>, deadline: Duration) -> Outcome {
    let sessions = load.sessions.max(1);
    let mut handles = Vec::with_capacity(sessions);
    for i in 0..sessions {
        let share = load.messages / sessions + usize::from(i < load.messages % sessions);
        if share == 0 {
            continue;
        }
        let wire = Arc::clone(wire);
        let addr = load.addrs[i % load.addrs.len()];
        let (mode, per_connection, expect) = (load.mode, load.per_connection, load.expect);
        handles.push(tokio::spawn(async move {
            session(addr, &wire, share, mode, per_connection, expect).await
        }));
    }
    let mut total = Outcome {
        latencies_us: Vec::with_capacity(load.messages),
        ..Outcome::default()
    };
    let end = tokio::time::Instant::now() + deadline;
    for h in handles {
        let abort = h.abort_handle();
        match tokio::time::timeout_at(end, h).await {
            Ok(Ok(o)) => total.merge(o),
            Ok(Err(e)) => total.note_error(format!("session task failed: {e}")),
            Err(_) => {
                abort.abort();
                total.timed_out = true;
            }
        }
    }
    if total.timed_out {
        total.note_error(format!(
            "deadline of {deadline:?} reached, sessions aborted"
        ));
    }
    total
}

/// One session: `count` messages, over one or several connections.
async fn session(
    addr: SocketAddr,
    wire: &Wire,
    count: usize,
    mode: Mode,
    per_connection: usize,
    expect: Expect,
) -> Outcome {
    let mut out = Outcome {
        latencies_us: Vec::with_capacity(count),
        ..Outcome::default()
    };
    let mut conn: Option<Conn> = None;
    // The read buffer outlives connections: a new connection per message reuses it.
    let mut spare: Option<Vec<u8>> = None;
    let mut on_conn = 0usize;
    let mut sent = 0usize;
    while sent < count && out.failed < MAX_SESSION_ERRORS {
        if conn.is_none() {
            let buf = spare.take().unwrap_or_else(|| vec![0; 16 * 1024]);
            match Conn::open(addr, wire, buf).await {
                Ok(c) => {
                    out.pipelining |= c.pipelining;
                    conn = Some(c);
                    on_conn = 0;
                }
                Err(e) => {
                    out.note_error(e);
                    sent += 1;
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        sent += 1;
        on_conn += 1;
        match c.transaction(wire).await {
            Ok((code, latency, replied, held)) => {
                let good = code == 250
                    && match expect {
                        Expect::Accepted => true,
                        Expect::Forwarded => !held,
                        Expect::Held => held,
                    };
                if good {
                    out.ok += 1;
                    out.held += usize::from(held);
                    out.latencies_us
                        .push(latency.as_micros().min(u32::MAX as u128) as u32);
                    out.last_reply = Some(replied);
                } else {
                    out.note_error(format!("final reply: {}", c.last_reply_text()));
                }
            }
            Err(e) => {
                out.note_error(e);
                conn = None; // the connection is in an unknown state: drop it
                continue;
            }
        }
        let done_with_conn =
            mode == Mode::NewConnection || on_conn >= per_connection || sent >= count;
        if done_with_conn && let Some(mut c) = conn.take() {
            if let Err(e) = c.quit().await {
                out.note_error(e);
            }
            spare = Some(c.buf);
        }
    }
    if sent < count {
        // Stopped on errors: the unsent messages count as failed.
        out.failed += count - sent;
    }
    out
}

/// One client connection with a fixed read buffer.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    last: Range<usize>,
    pipelining: bool,
}

impl Conn {
    async fn open(addr: SocketAddr, wire: &Wire, buf: Vec<u8>) -> Result<Conn, String> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        stream
            .set_nodelay(true)
            .map_err(|e| format!("TCP_NODELAY: {e}"))?;
        let mut c = Conn {
            stream,
            buf,
            start: 0,
            end: 0,
            last: 0..0,
            pipelining: false,
        };
        let greeting = c.reply().await?;
        if greeting != 220 {
            return Err(format!("greeting: {}", c.last_reply_text()));
        }
        c.send(&wire.ehlo).await?;
        if c.reply().await? != 250 {
            return Err(format!("EHLO: {}", c.last_reply_text()));
        }
        c.pipelining = memchr::memmem::find(&c.buf[c.last.clone()], b"PIPELINING").is_some();
        Ok(c)
    }

    /// MAIL, RCPT, DATA, body: the final reply's code, the time from the end of the body's
    /// write to the reply, when the reply was read, and whether it is a hold.
    async fn transaction(&mut self, wire: &Wire) -> Result<(u16, Duration, Instant, bool), String> {
        let (mail, rcpt, data) = if self.pipelining {
            self.send(&wire.envelope).await?;
            (
                self.reply().await?,
                self.reply().await?,
                self.reply().await?,
            )
        } else {
            self.send(&wire.mail).await?;
            let mail = self.reply().await?;
            self.send(&wire.rcpt).await?;
            let rcpt = self.reply().await?;
            self.send(b"DATA\r\n").await?;
            (mail, rcpt, self.reply().await?)
        };
        if (mail, rcpt, data) != (250, 250, 354) {
            return Err(format!(
                "envelope replies {mail}/{rcpt}/{data}, last: {}",
                self.last_reply_text()
            ));
        }
        self.send(&wire.payload).await?;
        let t0 = Instant::now();
        let code = self.reply().await?;
        let replied = Instant::now();
        let held = memchr::memmem::find(&self.buf[self.last.clone()], b"held as").is_some();
        Ok((code, replied - t0, replied, held))
    }

    async fn quit(&mut self) -> Result<(), String> {
        self.send(b"QUIT\r\n").await?;
        match self.reply().await? {
            221 => Ok(()),
            _ => Err(format!("QUIT: {}", self.last_reply_text())),
        }
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.stream
            .write_all(bytes)
            .await
            .map_err(|e| format!("write: {e}"))
    }

    /// Reads one (possibly multi-line) reply; returns its code and leaves its bytes in
    /// `self.buf[self.last]` until the next call. `self.start` stays at the reply's first
    /// byte until the reply is complete.
    async fn reply(&mut self) -> Result<u16, String> {
        let mut scan = self.start;
        loop {
            while let Some(i) = memchr::memchr(b'\n', &self.buf[scan..self.end]) {
                let line = &self.buf[scan..scan + i + 1];
                scan += i + 1;
                if line.len() >= 4 && line[3] == b'-' {
                    continue; // a continuation line: the reply goes on
                }
                let code = parse_code(line)
                    .ok_or_else(|| format!("bad reply line {:?}", String::from_utf8_lossy(line)))?;
                self.last = self.start..scan;
                self.start = scan;
                return Ok(code);
            }
            // More bytes needed: make room at the end of the buffer, then read.
            if self.start == self.end {
                (self.start, self.end, scan) = (0, 0, 0);
            } else if self.end == self.buf.len() {
                if self.start == 0 {
                    return Err("reply longer than the 16 KiB buffer".into());
                }
                let len = self.end - self.start;
                self.buf.copy_within(self.start..self.end, 0);
                scan -= self.start;
                (self.start, self.end) = (0, len);
            }
            let n = self
                .stream
                .read(&mut self.buf[self.end..])
                .await
                .map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("connection closed by the server".into());
            }
            self.end += n;
        }
    }

    fn last_reply_text(&self) -> String {
        String::from_utf8_lossy(&self.buf[self.last.clone()])
            .trim_end()
            .replace("\r\n", " | ")
    }
}

fn parse_code(line: &[u8]) -> Option<u16> {
    if line.len() < 3 || !line[..3].iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        line[..3]
            .iter()
            .fold(0u16, |n, d| n * 10 + u16::from(d - b'0')),
    )
}
