//! A small pool of upstream connections. A connection goes back to the pool after each
//! transaction that left it healthy; idle ones are closed after [`IDLE`]. A reused
//! connection that turns out dead before the transaction committed is replaced once.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::client::{ClientError, Conn, Settings};
use crate::envelope::Envelope;
use crate::smtp::reply::Reply;

/// Idle connections older than this are closed rather than reused (upstreams time out idle
/// sessions; a fresh connection is cheaper than a failed first command).
pub const IDLE: Duration = Duration::from_secs(30);

pub struct Pool {
    settings: Settings,
    max_idle: usize,
    idle: Mutex<Vec<Conn>>,
}

impl Pool {
    pub fn new(settings: Settings, max_idle: usize) -> Pool {
        Pool {
            settings,
            max_idle: max_idle.max(1),
            idle: Mutex::new(Vec::new()),
        }
    }

    fn take(&self) -> Option<Conn> {
        let mut idle = match self.idle.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        while let Some(c) = idle.pop() {
            if c.last_used.elapsed() < IDLE {
                return Some(c);
            }
        }
        None
    }

    fn put(&self, c: Conn) {
        if !c.healthy {
            return;
        }
        let mut idle = match self.idle.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if idle.len() < self.max_idle {
            idle.push(c);
        }
    }

    /// Delivers one message.
    pub async fn send(&self, env: &Envelope, message: &[u8]) -> Result<Reply, ClientError> {
        for attempt in 0..2 {
            // After a stale connection, the other idle ones are suspect too (the upstream
            // restarted): the retry always uses a fresh connection.
            let pooled = if attempt == 0 { self.take() } else { None };
            let (mut conn, reused) = match pooled {
                Some(c) => (c, true),
                None => (Conn::connect(&self.settings).await?, false),
            };
            let result = conn.send(env, message, reused).await;
            match result {
                Err(ClientError::Stale(_)) if attempt == 0 => {
                    self.drop_idle();
                    continue;
                }
                Err(ClientError::Stale(e)) => return Err(ClientError::Io(e)),
                other => {
                    self.put(conn);
                    return other;
                }
            }
        }
        Err(ClientError::Io(
            "no usable connection to the upstream".into(),
        ))
    }

    /// Forgets every idle connection (they are dropped, not closed politely).
    fn drop_idle(&self) {
        match self.idle.lock() {
            Ok(mut g) => g.clear(),
            Err(p) => p.into_inner().clear(),
        }
    }

    /// Closes every idle connection (shutdown).
    pub async fn close(&self) {
        let conns: Vec<Conn> = match self.idle.lock() {
            Ok(mut g) => g.drain(..).collect(),
            Err(p) => p.into_inner().drain(..).collect(),
        };
        for c in conns {
            c.quit().await;
        }
    }

    /// Idle connections now (for tests and the status endpoint).
    pub fn idle_count(&self) -> usize {
        match self.idle.lock() {
            Ok(g) => g
                .iter()
                .filter(|c| c.last_used + IDLE > Instant::now())
                .count(),
            Err(p) => p.into_inner().len(),
        }
    }
}
