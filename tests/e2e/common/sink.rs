//! An in-process SMTP sink: the upstream server in tests. Written independently of
//! mailbrake's own receiver, so it can catch mailbrake's output mistakes.
//!
//! It records every accepted message with its envelope and exact (unstuffed) bytes, and
//! can be told to fail in the ways real upstreams fail.

use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How the sink answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Accept,
    /// `451 4.3.0` after the final dot.
    TempFailData,
    /// `550 5.1.1` to every RCPT.
    PermFailRcpt,
    /// `554 5.7.1` after the final dot.
    PermFailData,
    /// Close the connection after the final dot, without a reply.
    DropAfterData,
}

/// One message the sink accepted.
#[derive(Debug, Clone)]
pub struct Delivered {
    pub from: String,
    pub rcpts: Vec<String>,
    /// The message bytes after dot-unstuffing.
    pub data: Vec<u8>,
    /// The wire carried a bare CR or LF inside DATA.
    pub bare_newline: bool,
    pub auth: Option<String>,
}

pub struct Sink {
    pub addr: std::net::SocketAddr,
    pub delivered: Arc<Mutex<Vec<Delivered>>>,
    pub mode: Arc<Mutex<Mode>>,
    pub connections: Arc<Mutex<usize>>,
    stop: CancellationToken,
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Sink {
    /// A plain sink on 127.0.0.1:0.
    pub async fn start() -> Sink {
        Sink::start_with(None).await
    }

    /// A sink behind implicit TLS with the given acceptor.
    pub async fn start_with(tls: Option<tokio_rustls::TlsAcceptor>) -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let delivered = Arc::new(Mutex::new(Vec::new()));
        let mode = Arc::new(Mutex::new(Mode::Accept));
        let connections = Arc::new(Mutex::new(0));
        let stop = CancellationToken::new();
        let (d, m, c, s) = (
            delivered.clone(),
            mode.clone(),
            connections.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            loop {
                let (sock, _) = tokio::select! {
                    _ = s.cancelled() => break,
                    r = listener.accept() => match r { Ok(x) => x, Err(_) => break },
                };
                *c.lock().unwrap() += 1;
                let (d, m, tls) = (d.clone(), m.clone(), tls.clone());
                tokio::spawn(async move {
                    match tls {
                        Some(acc) => {
                            if let Ok(t) = acc.accept(sock).await {
                                serve(t, d, m).await;
                            }
                        }
                        None => serve(sock, d, m).await,
                    }
                });
            }
        });
        Sink {
            addr,
            delivered,
            mode,
            connections,
            stop,
        }
    }

    pub fn set_mode(&self, m: Mode) {
        *self.mode.lock().unwrap() = m;
    }

    pub fn messages(&self) -> Vec<Delivered> {
        self.delivered.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.delivered.lock().unwrap().len()
    }

    /// `smtp+plain://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("smtp+plain://{}", self.addr)
    }
}

async fn w<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut BufReader<S>,
    b: &[u8],
) -> std::io::Result<()> {
    s.get_mut().write_all(b).await
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    sock: S,
    delivered: Arc<Mutex<Vec<Delivered>>>,
    mode: Arc<Mutex<Mode>>,
) {
    let mut s = BufReader::new(sock);
    if w(&mut s, b"220 sink ESMTP\r\n").await.is_err() {
        return;
    }
    let (mut from, mut rcpts, mut auth) = (String::new(), Vec::new(), None);
    loop {
        let mut line = Vec::new();
        match s.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line).trim_end().to_string();
        let upper = text.to_ascii_uppercase();
        let m = *mode.lock().unwrap();
        let reply: &[u8] = if upper.starts_with("EHLO") {
            b"250-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250-AUTH PLAIN LOGIN\r\n250 SIZE 100000000\r\n"
        } else if upper.starts_with("HELO") {
            b"250 sink\r\n"
        } else if upper.starts_with("AUTH PLAIN ") {
            auth = Some(text[11..].to_string());
            b"235 2.7.0 ok\r\n"
        } else if upper.starts_with("MAIL FROM:") {
            from = text[10..]
                .split('>')
                .next()
                .unwrap_or("")
                .trim_start_matches('<')
                .to_string();
            rcpts.clear();
            b"250 2.1.0 ok\r\n"
        } else if upper.starts_with("RCPT TO:") {
            if m == Mode::PermFailRcpt {
                b"550 5.1.1 no such user here\r\n"
            } else {
                rcpts.push(
                    text[8..]
                        .split('>')
                        .next()
                        .unwrap_or("")
                        .trim_start_matches('<')
                        .to_string(),
                );
                b"250 2.1.5 ok\r\n"
            }
        } else if upper == "DATA" {
            if w(&mut s, b"354 go\r\n").await.is_err() {
                return;
            }
            let mut data = Vec::new();
            let mut bare = false;
            loop {
                let mut l = Vec::new();
                match s.read_until(b'\n', &mut l).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                if l == b".\r\n" {
                    break;
                }
                let body = l.strip_suffix(b"\r\n").unwrap_or(&l);
                if body.contains(&b'\r') || body.contains(&b'\n') || !l.ends_with(b"\r\n") {
                    bare = true;
                }
                data.extend_from_slice(if l.starts_with(b".") { &l[1..] } else { &l });
            }
            match m {
                Mode::TempFailData => b"451 4.3.0 sink says try later\r\n",
                Mode::PermFailData => b"554 5.7.1 sink refuses this message\r\n",
                Mode::DropAfterData => return,
                _ => {
                    delivered.lock().unwrap().push(Delivered {
                        from: from.clone(),
                        rcpts: rcpts.clone(),
                        data,
                        bare_newline: bare,
                        auth: auth.clone(),
                    });
                    b"250 2.0.0 Ok: queued as SINK1\r\n"
                }
            }
        } else if upper == "RSET" || upper == "NOOP" {
            b"250 2.0.0 ok\r\n"
        } else if upper == "QUIT" {
            let _ = w(&mut s, b"221 2.0.0 bye\r\n").await;
            return;
        } else {
            b"502 5.5.1 unknown\r\n"
        };
        if w(&mut s, reply).await.is_err() {
            return;
        }
    }
}
