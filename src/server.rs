//! Wiring: the shared [`App`], the listeners, background tasks and graceful shutdown.
//!
//! [`Server::start`] binds every listener (port 0 is allowed, for tests) and returns their
//! addresses; [`Server::shutdown`] stops accepting, tells idle sessions `421 4.3.2`, lets
//! sessions in DATA finish, and [`Server::wait`] returns once they have, or when the grace
//! period is over.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::policy::Policy;
use crate::quarantine::Quarantine;
use crate::relay::Relay;
use crate::smtp::auth::{Throttle, UserDb};
use crate::smtp::limiter::Limiter;
use crate::smtp::reply;
use crate::smtp::session::{Session, run_implicit_tls};
use crate::smtp::stream::Stream;

/// Everything a session, the admin API and the background tasks share.
pub struct App {
    pub config: Config,
    /// The name in greetings and trace headers.
    pub hostname: String,
    policy: RwLock<Arc<Policy>>,
    policy_dir: Option<PathBuf>,
    pub quarantine: Quarantine,
    /// The senders' batches: windows, surges, brakes, known attachments.
    pub batches: crate::batch::Batches,
    /// Hold notices to senders.
    pub notifier: crate::notify::Notifier,
    pub relay: Relay,
    pub metrics: Arc<Metrics>,
    pub users: UserDb,
    pub auth_throttle: Throttle,
    pub tls: Option<TlsAcceptor>,
    pub limiter: Arc<Limiter>,
    /// Cancelled when the server shuts down.
    pub shutdown: CancellationToken,
    /// Cancelled when the shutdown grace period is over: sessions still in DATA are told
    /// `421 4.3.2` and closed.
    pub hard_stop: CancellationToken,
    /// The admin API's bearer token.
    pub admin_token: String,
    /// Cached free space of the data directory (bytes) and when it was measured (ms).
    free_space: AtomicU64,
    free_space_at: AtomicU64,
    started: Instant,
    /// Set when the quarantine index stays unwritable after storage came back (sled keeps an
    /// I/O error for the life of the process): the server drains and `main` re-executes
    /// itself, which reopens the index and rebuilds it from the spool.
    pub restart_requested: std::sync::atomic::AtomicBool,
}

impl App {
    /// The policy in effect (replaced atomically on reload).
    pub fn policy(&self) -> Arc<Policy> {
        match self.policy.read() {
            Ok(p) => Arc::clone(&p),
            Err(p) => Arc::clone(&p.into_inner()),
        }
    }

    /// Re-reads the policy directory; on error the old policy stays in effect.
    pub fn reload_policy(&self) -> Result<(), String> {
        let p = Policy::load(self.policy_dir.as_deref()).map_err(|e| e.to_string())?;
        match self.policy.write() {
            Ok(mut g) => *g = Arc::new(p),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(p),
        }
        Ok(())
    }

    /// True when `ip` may relay without AUTH.
    pub fn may_relay(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map(IpAddr::V4)
                .unwrap_or(IpAddr::V6(v6)),
            v4 => v4,
        };
        self.config
            .relay
            .allowed_networks
            .iter()
            .any(|n| n.contains(&ip))
    }

    /// Free bytes in the data directory's file system, measured at most once a second.
    pub fn free_space(&self) -> u64 {
        let now_ms = self.started.elapsed().as_millis() as u64 + 1;
        let at = self.free_space_at.load(Ordering::Relaxed);
        if at != 0 && now_ms.saturating_sub(at) < 1000 {
            return self.free_space.load(Ordering::Relaxed);
        }
        let free = fs2::available_space(&self.config.server.data_dir).unwrap_or(u64::MAX);
        self.free_space.store(free, Ordering::Relaxed);
        self.free_space_at.store(now_ms, Ordering::Relaxed);
        free
    }

    /// `452 4.3.1` when the data directory is below its free-space floor.
    /// When the index still refuses writes although free space is back above the floor, asks
    /// for a re-exec (at most once per 10 s of uptime, so a persistent I/O error cannot spin).
    fn restart_if_index_stuck(&self) {
        use std::sync::atomic::Ordering;
        if !self.quarantine.index_failed()
            || self.free_space() < self.config.limits.free_space_floor()
            || self.started.elapsed() < Duration::from_secs(10)
            || self.restart_requested.swap(true, Ordering::SeqCst)
        {
            return;
        }
        tracing::error!(
            "quarantine index still unwritable with free space back; draining and restarting \
             in place to reopen it (holds are refused with 452 4.3.1 meanwhile)"
        );
        self.shutdown.cancel();
    }

    pub fn storage_floor_reply(&self) -> Option<&'static [u8]> {
        let low = self.free_space() < self.config.limits.free_space_floor();
        (low || self.quarantine.index_failed()).then_some(reply::NO_STORAGE)
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Policy(#[from] crate::policy::PolicyError),
    #[error("data directory {0}: {1}")]
    DataDir(PathBuf, std::io::Error),
    #[error("quarantine: {0}")]
    Quarantine(#[from] crate::quarantine::QuarantineError),
    #[error("TLS: {0}")]
    Tls(#[from] crate::smtp::tls::TlsError),
    #[error("upstream: {0}")]
    Relay(String),
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
}

/// A running server.
pub struct Server {
    pub app: Arc<App>,
    pub smtp_addrs: Vec<SocketAddr>,
    pub tls_addrs: Vec<SocketAddr>,
    pub admin_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    sessions: TaskTracker,
    services: TaskTracker,
}

impl Server {
    /// Validates the configuration, opens the store and binds every listener.
    pub async fn start(config: Config) -> Result<Server, StartError> {
        use std::os::unix::fs::DirBuilderExt;
        config.validate()?;
        let policy_dir = config.policy_dir();
        let policy = Policy::load(policy_dir.as_deref())?;
        let data_dir = config.server.data_dir.clone();
        // Spool, index and outbox hold personal data: directories this creates are 0700.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&data_dir)
            .map_err(|e| StartError::DataDir(data_dir.clone(), e))?;
        warn_if_shared(&data_dir);
        let admin_token =
            ensure_token(&data_dir).map_err(|e| StartError::DataDir(data_dir.clone(), e))?;
        crate::metrics::register_process_metrics();
        let metrics = Arc::new(Metrics::new());
        let (quarantine, report) = Quarantine::open(&data_dir, Arc::clone(&metrics))?;
        tracing::info!(
            held = report.held,
            reindexed = report.reindexed,
            dropped = report.dropped,
            corrupt = report.corrupt,
            tmp_removed = report.tmp_removed,
            "quarantine reconciled"
        );
        let batches = crate::batch::Batches::open(quarantine.db()).map_err(|e| {
            StartError::DataDir(data_dir.clone(), std::io::Error::other(e.to_string()))
        })?;
        batches.known.add(&quarantine.held_attachments());
        let hostname = config.server.hostname.clone();
        let notifier = crate::notify::Notifier::new(config.notify.clone(), &hostname);
        let relay =
            Relay::new(&config.upstream, &hostname, &data_dir).map_err(StartError::Relay)?;
        let tls = match (&config.tls.cert, &config.tls.key) {
            (Some(c), Some(k)) => Some(crate::smtp::tls::acceptor(c, k)?),
            _ => None,
        };
        let mut smtp = Vec::new();
        for a in &config.server.listen {
            smtp.push(bind(*a).await?);
        }
        let mut implicit = Vec::new();
        for a in &config.server.tls_listen {
            implicit.push(bind(*a).await?);
        }
        let admin = bind(config.admin.listen).await?;
        let metrics_l = bind(config.metrics.listen).await?;
        let app = Arc::new(App {
            hostname,
            policy: RwLock::new(Arc::new(policy)),
            policy_dir,
            quarantine,
            batches,
            notifier,
            relay,
            users: UserDb::new(&config.auth.users),
            auth_throttle: Throttle::new(
                config.auth.max_failures,
                config.auth.max_user_failures,
                config.auth.failure_window,
            ),
            tls,
            limiter: Limiter::new(
                config.server.max_connections,
                config.server.max_connections_per_ip,
            ),
            shutdown: CancellationToken::new(),
            hard_stop: CancellationToken::new(),
            admin_token,
            free_space: AtomicU64::new(0),
            free_space_at: AtomicU64::new(0),
            started: Instant::now(),
            restart_requested: std::sync::atomic::AtomicBool::new(false),
            metrics,
            config,
        });
        let local = |l: &TcpListener| l.local_addr().ok();
        let server = Server {
            smtp_addrs: smtp.iter().filter_map(local).collect(),
            tls_addrs: implicit.iter().filter_map(local).collect(),
            admin_addr: local(&admin).unwrap_or(app.config.admin.listen),
            metrics_addr: local(&metrics_l).unwrap_or(app.config.metrics.listen),
            app: Arc::clone(&app),
            sessions: TaskTracker::new(),
            services: TaskTracker::new(),
        };
        for l in smtp {
            server.services.spawn(accept_loop(
                Arc::clone(&app),
                l,
                false,
                server.sessions.clone(),
            ));
        }
        for l in implicit {
            server.services.spawn(accept_loop(
                Arc::clone(&app),
                l,
                true,
                server.sessions.clone(),
            ));
        }
        server
            .services
            .spawn(crate::admin::serve_api(Arc::clone(&app), admin));
        server
            .services
            .spawn(crate::admin::serve_metrics(Arc::clone(&app), metrics_l));
        server.services.spawn(housekeeping(Arc::clone(&app)));
        tracing::info!(smtp = ?server.smtp_addrs, smtps = ?server.tls_addrs, admin = %server.admin_addr,
            metrics = %server.metrics_addr, upstream = app.relay.label(), mode = ?app.policy().mode,
            "mailbrake started");
        Ok(server)
    }

    /// Starts the graceful shutdown.
    pub fn shutdown(&self) {
        self.app.shutdown.cancel();
    }

    /// Waits until every listener has stopped and every session has ended, or until the
    /// grace period after shutdown began is over.
    pub async fn wait(self) {
        self.app.shutdown.cancelled().await;
        self.sessions.close();
        self.services.close();
        let grace = self.app.config.server.shutdown_grace;
        let drained = tokio::time::timeout(grace, async {
            self.sessions.wait().await;
            self.services.wait().await;
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                open = self.sessions.len(),
                "grace period over; closing remaining sessions with 421 4.3.2"
            );
            self.app.hard_stop.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(2), self.sessions.wait()).await;
        }
        let written = self.app.batches.snapshot(crate::quarantine::unix_now(), 0);
        let _ = self.app.quarantine.db().flush();
        tracing::info!(sender_states = written, "mailbrake stopped");
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| StartError::Bind(addr, e))
}

/// Reads the admin token, creating it (mode 0600) on first start.
fn ensure_token(data_dir: &Path) -> std::io::Result<String> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let path = data_dir.join("admin.token");
    if let Ok(t) = std::fs::read_to_string(&path) {
        let t = t.trim().to_string();
        if t.len() >= 32 {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
            return Ok(t);
        }
    }
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).map_err(std::io::Error::other)?;
    let token: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let _ = std::fs::remove_file(&path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    f.write_all(token.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    Ok(token)
}

async fn accept_loop(
    app: Arc<App>,
    listener: TcpListener,
    implicit_tls: bool,
    sessions: TaskTracker,
) {
    let mut backoff = Duration::from_millis(10);
    loop {
        let accepted = tokio::select! {
            _ = app.shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((sock, peer)) => {
                backoff = Duration::from_millis(10);
                start_session(&app, sock, peer, implicit_tls, &sessions);
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

fn start_session(
    app: &Arc<App>,
    sock: TcpStream,
    peer: SocketAddr,
    implicit_tls: bool,
    sessions: &TaskTracker,
) {
    let _ = sock.set_nodelay(true);
    let permit = match app.limiter.try_acquire(peer.ip()) {
        Ok(p) => p,
        Err(refusal) => {
            app.metrics
                .smtp_connections_rejected_total
                .with_label_values(&[refusal.as_str()])
                .inc();
            tracing::info!(peer = %peer, reason = refusal.as_str(), "connection refused: limit reached");
            sessions.spawn(refuse(sock, reply::TOO_MANY_CONNECTIONS));
            return;
        }
    };
    let app = Arc::clone(app);
    sessions.spawn(async move {
        app.metrics.smtp_connections_active.inc();
        if implicit_tls {
            run_implicit_tls(Arc::clone(&app), peer, sock, permit).await;
        } else {
            Session::new(Arc::clone(&app), peer, Stream::Plain(sock))
                .with_slot(permit)
                .run()
                .await;
        }
        app.metrics.smtp_connections_active.dec();
    });
}

/// Tells a client why it is refused, then closes, all within a short bound.
async fn refuse(mut sock: TcpStream, why: &'static [u8]) {
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = sock.write_all(why).await;
        let _ = sock.shutdown().await;
    })
    .await;
}

/// Periodic work: timed holds that are due, sender-state snapshots, audit retention.
async fn housekeeping(app: Arc<App>) {
    let retention = app.config.quarantine.retention.as_secs();
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    let mut last_purge = Instant::now();
    loop {
        tokio::select! {
            _ = app.shutdown.cancelled() => break,
            _ = tick.tick() => {
                crate::pipeline::release_due(&app).await;
                let a = Arc::clone(&app);
                let purge = last_purge.elapsed() >= Duration::from_secs(3600);
                if purge {
                    last_purge = Instant::now();
                }
                let _ = tokio::task::spawn_blocking(move || {
                    // Senders idle for two days leave memory; their state stays in sled.
                    a.quarantine.probe_index();
                    a.restart_if_index_stuck();
                    a.batches.snapshot(crate::quarantine::unix_now(), 2 * 86_400);
                    a.metrics.senders_active.set(a.batches.active_senders() as i64);
                    if purge && let Err(e) = a.quarantine.purge(retention) {
                        tracing::error!(error = %e, "quarantine purge failed");
                    }
                }).await;
            }
        }
    }
}

/// Logs a warning when the data directory can be read or entered by other users (it holds
/// the quarantined mail); mailbrake does not change the mode of a directory it did not make.
fn warn_if_shared(data_dir: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = std::fs::metadata(data_dir)
        && m.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            data_dir = %data_dir.display(),
            mode = format!("{:o}", m.permissions().mode() & 0o7777),
            "the data directory is accessible to other users; held mail is personal data: chmod 700 it"
        );
    }
}
