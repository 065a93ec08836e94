//! The relays under test: the release `mailbrake` binary and a private Postfix instance,
//! each started fresh for one path of one cell, in its own directory, and stopped by PID.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{net, procstat};

/// The release binary `cargo bench` built.
pub const MAILBRAKE: &str = env!("CARGO_BIN_EXE_mailbrake");
pub const POSTFIX: &str = "/usr/sbin/postfix";

/// `mailbrake serve` on free loopback ports; SIGTERM then SIGKILL when stopped or dropped.
pub struct Mailbrake {
    child: Option<Child>,
    pub port: u16,
    log: PathBuf,
}

impl Mailbrake {
    /// Writes `dir/mailbrake.toml` (listeners on free ports, data in `dir/data`, the sink as
    /// upstream, `policies` as the policy directory; every other key as shipped) and starts.
    pub fn start(dir: &Path, upstream: &str, policies: &Path) -> Result<Mailbrake, String> {
        // A port found free can be taken (by an outgoing connection's ephemeral port) before
        // mailbrake binds it: try again with new ports, a bounded number of times.
        let mut last = String::new();
        for _ in 0..5 {
            match Self::start_once(dir, upstream, policies) {
                Ok(mb) => return Ok(mb),
                Err(e) if e.contains("Address already in use") => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    fn start_once(dir: &Path, upstream: &str, policies: &Path) -> Result<Mailbrake, String> {
        let port = net::free_port()?;
        let (admin, metrics) = (net::free_port()?, net::free_port()?);
        let config = dir.join("mailbrake.toml");
        let text = format!(
            "[server]\n\
             listen = [\"127.0.0.1:{port}\"]\n\
             hostname = \"mailbrake.bench.test\"\n\
             data_dir = \"{data}\"\n\
             policies = \"{policies}\"\n\
             shutdown_grace = \"5s\"\n\
             [upstream]\n\
             url = \"{upstream}\"\n\
             [admin]\n\
             listen = \"127.0.0.1:{admin}\"\n\
             [metrics]\n\
             listen = \"127.0.0.1:{metrics}\"\n",
            data = dir.join("data").display(),
            policies = policies.display(),
        );
        std::fs::write(&config, text).map_err(|e| format!("write {}: {e}", config.display()))?;
        let log = dir.join("mailbrake.log");
        let out = std::fs::File::create(&log).map_err(|e| format!("mailbrake log: {e}"))?;
        let child = Command::new(MAILBRAKE)
            .args(["serve", "--config"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(out.try_clone().map_err(|e| e.to_string())?)
            .stderr(out)
            .spawn()
            .map_err(|e| format!("cannot start {MAILBRAKE}: {e}"))?;
        crate::cleanup::add_pid(child.id());
        let mut mb = Mailbrake {
            child: Some(child),
            port,
            log,
        };
        let end = std::time::Instant::now() + Duration::from_secs(60);
        while std::time::Instant::now() < end {
            if net::wait_port(port, Duration::from_millis(100)) {
                // The probe connection holds one of the per-IP slots until mailbrake sees it
                // go: end it with QUIT (the slot is free before the 221), or a 50-session
                // cell can meet "421 too many connections" on its first connections.
                quit_probe(port);
                return Ok(mb);
            }
            let exited = mb
                .child
                .as_mut()
                .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
            if exited {
                if let Some(c) = mb.child.take() {
                    crate::cleanup::remove_pid(c.id());
                }
                return Err(format!("mailbrake exited at start; log: {}", mb.log_tail()));
            }
        }
        Err(format!("mailbrake did not listen; log: {}", mb.log_tail()))
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// SIGTERM, then SIGKILL after 15 s. Returns a note when the exit was not clean.
    pub fn stop(&mut self) -> Option<String> {
        let mut child = self.child.take()?;
        crate::cleanup::remove_pid(child.id());
        procstat::signal(child.id(), "TERM");
        let end = Instant::now() + Duration::from_secs(15);
        while Instant::now() < end {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => return None,
                Ok(Some(status)) => return Some(format!("mailbrake exited with {status}")),
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => return Some(format!("waiting for mailbrake: {e}")),
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        Some("mailbrake did not stop within 15 s of SIGTERM; killed".into())
    }

    /// Log lines at WARN or ERROR level, and panics (at most `max`).
    pub fn log_problems(&self, max: usize) -> Vec<String> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .filter(|l| {
                // "<timestamp> <LEVEL> <target>: ..." (ids may contain "WARN" as letters).
                matches!(l.split_whitespace().nth(1), Some("WARN" | "ERROR"))
                    || l.contains("panicked")
            })
            .take(max)
            .map(|l| l.chars().take(300).collect())
            .collect()
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }
}

impl Drop for Mailbrake {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            crate::cleanup::remove_pid(child.id());
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Why path (c) cannot run here, if it cannot.
pub fn postfix_unavailable() -> Option<String> {
    if !Path::new(POSTFIX).exists() {
        return Some(format!("{POSTFIX} is missing (apt-get install postfix)"));
    }
    if !net::is_root() {
        return Some("not running as root: a private Postfix instance needs root".into());
    }
    None
}

/// A private Postfix instance relaying everything to the sink.
///
/// Configuration (see README.md): one smtpd on 127.0.0.1:<port>, `relayhost` = the sink,
/// no DNS, no peer-name lookups, no TLS, no local delivery, chroot off everywhere; queue and
/// data directories under `dir`; logging to `dir/postfix.log` through postlogd. Concurrency:
/// up to 200 processes per service, and up to `smtp_concurrency` parallel deliveries to the
/// sink from the start (no slow-start), with the connection cache always on for the sink.
pub struct Postfix {
    config: PathBuf,
    /// `postfix start` was run and `postfix stop` not yet.
    running: bool,
    master: Option<u32>,
    pub port: u16,
    pub version: String,
}

impl Postfix {
    pub fn start(dir: &Path, sink_port: u16, smtp_concurrency: usize) -> Result<Postfix, String> {
        let port = net::free_port()?;
        let config = dir.join("etc");
        let queue = dir.join("queue");
        let data = dir.join("data");
        for d in [&config, &queue, &data] {
            std::fs::create_dir_all(d).map_err(|e| format!("mkdir {}: {e}", d.display()))?;
        }
        run(Command::new("chown").args(["postfix:postfix"]).arg(&data))?;
        let relayhost = format!("[127.0.0.1]:{sink_port}");
        let main_cf = format!(
            "# Private benchmark instance (benches/load): relay everything to smtp-sink.\n\
             compatibility_level = 3.6\n\
             meta_directory = /etc/postfix\n\
             shlib_directory = /usr/lib/postfix\n\
             command_directory = /usr/sbin\n\
             daemon_directory = /usr/lib/postfix/sbin\n\
             queue_directory = {queue}\n\
             data_directory = {data}\n\
             mail_owner = postfix\n\
             setgid_group = postdrop\n\
             myhostname = postfix.bench.test\n\
             mydomain = bench.test\n\
             myorigin = $myhostname\n\
             mydestination =\n\
             local_recipient_maps =\n\
             local_transport = error:5.1.1 local delivery disabled\n\
             alias_maps =\n\
             alias_database =\n\
             inet_interfaces = 127.0.0.1\n\
             inet_protocols = ipv4\n\
             mynetworks = 127.0.0.0/8\n\
             smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination\n\
             relayhost = {relayhost}\n\
             smtp_dns_support_level = disabled\n\
             smtpd_peername_lookup = no\n\
             smtp_tls_security_level = none\n\
             smtpd_tls_security_level = none\n\
             biff = no\n\
             maillog_file = {log}\n\
             maillog_file_prefixes = {dir}\n\
             default_process_limit = 200\n\
             initial_destination_concurrency = {smtp_concurrency}\n\
             smtp_destination_concurrency_limit = {smtp_concurrency}\n\
             smtp_connection_cache_destinations = {relayhost}\n",
            queue = queue.display(),
            data = data.display(),
            log = dir.join("postfix.log").display(),
            dir = dir.display(),
        );
        let master_cf = format!(
            "# service type  private unpriv  chroot  wakeup  maxproc command\n\
             {port}    inet  n       -       n       -       -       smtpd\n\
             pickup    unix  n       -       n       60      1       pickup\n\
             cleanup   unix  n       -       n       -       0       cleanup\n\
             qmgr      unix  n       -       n       300     1       qmgr\n\
             tlsmgr    unix  -       -       n       1000?   1       tlsmgr\n\
             rewrite   unix  -       -       n       -       -       trivial-rewrite\n\
             bounce    unix  -       -       n       -       0       bounce\n\
             defer     unix  -       -       n       -       0       bounce\n\
             trace     unix  -       -       n       -       0       bounce\n\
             verify    unix  -       -       n       -       1       verify\n\
             flush     unix  n       -       n       1000?   0       flush\n\
             proxymap  unix  -       -       n       -       -       proxymap\n\
             proxywrite unix -       -       n       -       1       proxymap\n\
             smtp      unix  -       -       n       -       -       smtp\n\
             relay     unix  -       -       n       -       -       smtp\n\
             showq     unix  n       -       n       -       -       showq\n\
             error     unix  -       -       n       -       -       error\n\
             retry     unix  -       -       n       -       -       error\n\
             discard   unix  -       -       n       -       -       discard\n\
             local     unix  -       n       n       -       -       local\n\
             anvil     unix  -       -       n       -       1       anvil\n\
             scache    unix  -       -       n       -       1       scache\n\
             postlog   unix-dgram n  -       n       -       1       postlogd\n"
        );
        write(&config.join("main.cf"), &main_cf)?;
        write(&config.join("master.cf"), &master_cf)?;
        let version = Command::new("/usr/sbin/postconf")
            .args(["-d", "-h", "mail_version"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        crate::cleanup::add_postfix(config.clone());
        let mut pf = Postfix {
            config,
            running: false,
            master: None,
            port,
            version,
        };
        // `check` creates the queue directories with their owners; then start the master.
        run(Command::new(POSTFIX).arg("-c").arg(&pf.config).arg("check"))?;
        pf.running = true;
        run(Command::new(POSTFIX).arg("-c").arg(&pf.config).arg("start"))?;
        let pid_file = queue.join("pid").join("master.pid");
        let end = Instant::now() + Duration::from_secs(30);
        while pf.master.is_none() && Instant::now() < end {
            pf.master = std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|s| s.trim().parse().ok());
            std::thread::sleep(Duration::from_millis(20));
        }
        if pf.master.is_none() || !net::wait_port(port, Duration::from_secs(30)) {
            let log = std::fs::read_to_string(dir.join("postfix.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(10).collect();
            return Err(format!("postfix did not start; its log ends: {tail:?}"));
        }
        Ok(pf)
    }

    /// From the instance's log: warnings (but see [`is_clock_skew_warning`]), errors and non-`sent` delivery statuses (at most
    /// `max`; qmgr's congestion warnings — the active queue full because mail arrives faster
    /// than it is delivered — are load, not faults, and only counted), how many deliveries it
    /// logged as sent and how many of them went over a cached (reused) connection.
    pub fn log_summary(&self, max: usize) -> LogSummary {
        let log = self
            .config
            .parent()
            .map(|d| d.join("postfix.log"))
            .unwrap_or_default();
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let sent = text.matches(" status=sent ").count();
        let reused = text
            .lines()
            .filter(|l| l.contains(" status=sent ") && l.contains("conn_use="))
            .count();
        let problems = text
            .lines()
            .filter(|l| {
                (l.contains("warning:")
                    && !l.contains("postfix/qmgr[")
                    && !is_clock_skew_warning(l))
                    || l.contains("fatal:")
                    || l.contains("panic:")
                    || l.contains("status=deferred")
                    || l.contains("status=bounced")
            })
            .take(max)
            .map(|l| l.chars().take(300).collect())
            .collect();
        let congestion = text
            .lines()
            .filter(|l| l.contains("postfix/qmgr[") && l.contains("active queue entries"))
            .count();
        LogSummary {
            problems,
            sent,
            reused,
            congestion,
        }
    }

    pub fn master_pid(&self) -> u32 {
        self.master.unwrap_or(0)
    }

    /// `postfix -c DIR stop`; then SIGKILL to the master and its children if it lingers.
    pub fn stop(&mut self) -> Option<String> {
        if !std::mem::take(&mut self.running) {
            return None;
        }
        crate::cleanup::remove_postfix(&self.config);
        let master = self.master.take().unwrap_or(0);
        let kids = if master > 0 {
            procstat::children(master)
        } else {
            Vec::new()
        };
        let _ = Command::new(POSTFIX)
            .arg("-c")
            .arg(&self.config)
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let end = Instant::now() + Duration::from_secs(15);
        while master > 0 && Instant::now() < end && procstat::alive(master) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut note = None;
        if master > 0 && procstat::alive(master) {
            procstat::signal(master, "KILL");
            note = Some("postfix master did not stop within 15 s; killed".to_string());
        }
        for k in kids {
            if procstat::alive(k) {
                procstat::signal(k, "KILL");
            }
        }
        note
    }
}

/// What a Postfix instance's log says about a run.
pub struct LogSummary {
    pub problems: Vec<String>,
    pub sent: usize,
    pub reused: usize,
    /// qmgr warnings that one destination used up the whole active queue.
    pub congestion: usize,
}

impl Drop for Postfix {
    fn drop(&mut self) {
        self.stop();
    }
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::File::create(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| format!("write {}: {e}", path.display()))
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// cleanup's "file system clock is N seconds ahead of local clock" and the "resetting file
/// time stamps" that follows it: the VM's clocks disagree by a second (Postfix adjusts the
/// queue file's times itself); neither touches the measured mail.
fn is_clock_skew_warning(line: &str) -> bool {
    line.contains("postfix/cleanup[")
        && (line.contains("file system clock is") || line.contains("resetting file time stamps"))
}

/// One polite SMTP session (greeting, QUIT, 221) after `net::wait_port`'s bare connect; the
/// bare connection is closed first and its slot waited for by the QUIT exchange's ordering.
fn quit_probe(port: u16) {
    use std::io::{BufRead, BufReader, Write};
    let Ok(stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    let _ = reader.read_line(&mut line);
    let _ = writer.write_all(b"QUIT\r\n");
    line.clear();
    let _ = reader.read_line(&mut line);
}
