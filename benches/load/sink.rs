//! Postfix's `smtp-sink`: the upstream of every path, and the counter of deliveries.
//!
//! `smtp-sink -c` prints `sess=N quit=N mesg=N` followed by a carriage return (and flushes)
//! each time a session ends, a QUIT is executed or a final dot is received. A reader thread
//! follows those counters; `mesg` is the number of messages delivered at the upstream, and
//! the moment it reaches a target is the delivery time of the last message of a run.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::net;

pub const SMTP_SINK: &str = "/usr/sbin/smtp-sink";

#[derive(Default)]
struct Counter {
    /// The latest `mesg=` value.
    delivered: u64,
    /// When it last changed: the delivery time of the newest message.
    last_change: Option<Instant>,
    /// smtp-sink's stdout reached EOF.
    closed: bool,
}

/// A running smtp-sink; killed (by its PID) when dropped.
pub struct Sink {
    child: Child,
    pub port: u16,
    counter: Arc<Mutex<Counter>>,
}

impl Sink {
    /// Starts `smtp-sink -c [-u nobody] 127.0.0.1:<free port> 1024`.
    pub fn start(work: &Path) -> Result<Sink, String> {
        let port = net::free_port()?;
        let mut cmd = Command::new(SMTP_SINK);
        cmd.arg("-c");
        if net::is_root() {
            cmd.args(["-u", "nobody"]); // smtp-sink refuses to run as root without -u
        }
        let log = std::fs::File::create(work.join("smtp-sink.stderr"))
            .map_err(|e| format!("smtp-sink log: {e}"))?;
        let mut child = cmd
            .args([format!("127.0.0.1:{port}"), "1024".into()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {SMTP_SINK}: {e}"))?;
        crate::cleanup::add_pid(child.id());
        let counter = Arc::new(Mutex::new(Counter::default()));
        let Some(stdout) = child.stdout.take() else {
            let _ = child.kill();
            let _ = child.wait();
            return Err("smtp-sink: no stdout".into());
        };
        let c = Arc::clone(&counter);
        std::thread::spawn(move || follow(stdout, &c));
        let sink = Sink {
            child,
            port,
            counter,
        };
        if !net::wait_port(port, Duration::from_secs(10)) {
            return Err("smtp-sink did not start listening".into());
        }
        Ok(sink)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self) -> String {
        format!("smtp+plain://127.0.0.1:{}", self.port)
    }

    /// Messages delivered since the sink started.
    pub fn delivered(&self) -> u64 {
        lock(&self.counter).delivered
    }

    /// (messages delivered, when the newest of them was counted).
    fn state(&self) -> (u64, Option<Instant>, bool) {
        let c = lock(&self.counter);
        (c.delivered, c.last_change, c.closed)
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        crate::cleanup::remove_pid(self.child.id());
    }
}

fn lock(m: &Mutex<Counter>) -> std::sync::MutexGuard<'_, Counter> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Reads `sess=.. quit=.. mesg=N\r` records until EOF and keeps the latest `mesg`.
fn follow(mut out: impl Read, counter: &Mutex<Counter>) {
    let mut buf = [0u8; 8192];
    let mut carry: Vec<u8> = Vec::with_capacity(128);
    loop {
        let n = match out.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let now = Instant::now();
        carry.extend_from_slice(&buf[..n]);
        // The last complete record holds the newest counters.
        let Some(end) = carry.iter().rposition(|&b| b == b'\r' || b == b'\n') else {
            continue;
        };
        let record_start = carry[..end]
            .iter()
            .rposition(|&b| b == b'\r' || b == b'\n')
            .map_or(0, |i| i + 1);
        let mesg = mesg_of(&carry[record_start..end]);
        carry.drain(..=end);
        if let Some(m) = mesg {
            let mut c = lock(counter);
            if m != c.delivered {
                c.delivered = m;
                c.last_change = Some(now);
            }
        }
    }
    lock(counter).closed = true;
}

fn mesg_of(record: &[u8]) -> Option<u64> {
    let i = memchr::memmem::find(record, b"mesg=")?;
    let digits = &record[i + 5..];
    let len = digits.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&digits[..len]).ok()?.parse().ok()
}

/// The sinks one run delivers to, with their counters at the start of the run.
pub struct Group<'a> {
    sinks: &'a [Sink],
    bases: Vec<u64>,
}

impl<'a> Group<'a> {
    pub fn start(sinks: &'a [Sink]) -> Group<'a> {
        Group {
            sinks,
            bases: sinks.iter().map(Sink::delivered).collect(),
        }
    }

    /// Messages delivered to these sinks since `start`.
    pub fn delivered(&self) -> u64 {
        self.sinks
            .iter()
            .zip(&self.bases)
            .map(|(s, b)| s.delivered() - b)
            .sum()
    }

    /// Waits until these sinks counted `total` messages since `start`; returns when the last
    /// of them was counted. Gives up (None) after `limit`, or when no sink has counted
    /// anything for `stall`.
    pub fn wait(&self, total: u64, limit: Duration, stall: Duration) -> Option<Instant> {
        let start = Instant::now();
        loop {
            let mut sum = 0;
            let mut newest: Option<Instant> = None;
            let mut closed = false;
            for (s, base) in self.sinks.iter().zip(&self.bases) {
                let (d, changed, c) = s.state();
                sum += d - base;
                closed |= c;
                if d > *base {
                    newest = newest.max(changed);
                }
            }
            if sum >= total {
                return Some(newest.unwrap_or(start));
            }
            let quiet_since = newest.map_or(start, |t| t.max(start));
            if closed || start.elapsed() > limit || quiet_since.elapsed() > stall {
                return None;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// CPU seconds of these sinks so far.
    pub fn cpu(&self) -> f64 {
        self.sinks
            .iter()
            .map(|s| crate::procstat::cpu(s.pid()))
            .sum()
    }
}
