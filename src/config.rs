//! `mailbrake.toml`: the server's configuration, parsed once into validated types.
//!
//! Every key has a safe default, so `mailbrake serve` runs with no file at all: SMTP on
//! 127.0.0.1:2525 for loopback clients, data in `./mailbrake-data`, the shipped policy, and
//! clean mail written to `<data-dir>/outbox/` until an upstream is configured.
//! Unknown keys are errors (typos must not silently fall back to defaults), and
//! [`Config::validate`] collects every problem with its key path instead of stopping at one.

use ipnet::IpNet;
use serde::{Deserialize, Deserializer};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The whole server configuration.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub limits: Limits,
    pub tls: TlsConfig,
    pub auth: AuthConfig,
    pub relay: RelayAccess,
    pub upstream: UpstreamConfig,
    pub admin: AdminConfig,
    pub metrics: MetricsConfig,
    pub quarantine: QuarantineConfig,
    pub notify: NotifyConfig,
    pub log: LogConfig,
}

/// `[server]`: listeners, identity, where state lives, connection caps, shutdown.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Plain SMTP listeners (STARTTLS offered when a certificate is configured).
    pub listen: Vec<SocketAddr>,
    /// Implicit-TLS listeners (RFC 8314, usually port 465). Needs `[tls]`.
    pub tls_listen: Vec<SocketAddr>,
    /// The name in the greeting and the `Received:` header. Default: the host name.
    pub hostname: String,
    /// Spool, index, outbox and admin token live here.
    pub data_dir: PathBuf,
    /// Directory of policy files (`*.toml`, merged in name order). Default: `./policies` if
    /// it exists, else the policy compiled into the binary.
    pub policies: Option<PathBuf>,
    /// Sessions open at once, over all listeners; more get `421 4.7.0` at once.
    pub max_connections: usize,
    /// Sessions open at once from one IP address; more get `421 4.7.0` at once.
    pub max_connections_per_ip: usize,
    /// How long a shutdown waits for sessions in DATA before exiting.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Advertise SMTPUTF8 (RFC 6531). The upstream must support it for such mail to pass.
    pub smtputf8: bool,
    /// Async I/O worker threads (sessions, upstream connections, small plain-text
    /// inspection). 0 = half the CPUs, at least 1: the other cores are left to the
    /// inspection, commit and fdatasync threads (see [`ServerConfig::io_threads`]).
    pub io_threads: usize,
}

impl ServerConfig {
    /// The number of async worker threads to start (`io_threads`, or its automatic value).
    pub fn io_threads(&self) -> usize {
        if self.io_threads > 0 {
            return self.io_threads;
        }
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        (cpus / 2).max(1)
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 2525))],
            tls_listen: Vec::new(),
            hostname: default_hostname(),
            data_dir: PathBuf::from("./mailbrake-data"),
            policies: None,
            max_connections: 500,
            max_connections_per_ip: 50,
            shutdown_grace: Duration::from_secs(30),
            smtputf8: true,
            io_threads: 0,
        }
    }
}

/// What to do with a bare CR or bare LF inside DATA (RELIABILITY.md §2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BareNewlines {
    /// Turn each bare CR or LF into CRLF before inspection and forwarding.
    #[default]
    Normalize,
    /// Refuse the message with `550 5.5.2`.
    Reject,
}

/// `[limits]`: every protocol bound, each with its default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Longest command line in bytes, CRLF included (`500 5.5.2` and close beyond).
    pub max_command_line: usize,
    /// Largest message (bytes of DATA); advertised as `SIZE`. `552 5.3.4` beyond.
    pub max_message_size: ByteSize,
    /// Recipients per transaction (`452 4.5.3` beyond). RFC 5321 asks for at least 100.
    pub max_recipients: usize,
    /// Messages per session before `421 4.7.0`.
    pub max_messages_per_session: usize,
    /// Errors per session before `421 4.7.0` and close.
    pub max_errors: usize,
    /// Wait for each command line.
    #[serde(with = "humantime_serde")]
    pub command_timeout: Duration,
    /// Wait for each read while receiving DATA.
    #[serde(with = "humantime_serde")]
    pub data_timeout: Duration,
    /// Whole-session deadline, however active the client is (stops trickling clients).
    #[serde(with = "humantime_serde")]
    pub session_timeout: Duration,
    /// TLS handshake deadline (STARTTLS and implicit TLS).
    #[serde(with = "humantime_serde")]
    pub tls_handshake_timeout: Duration,
    /// Inspection deadline per message; expiry holds the message as `uninspectable`.
    #[serde(with = "humantime_serde")]
    pub inspect_timeout: Duration,
    /// Bare CR / LF in DATA: `normalize` (default) or `reject`.
    pub bare_newlines: BareNewlines,
    /// Free space the data directory must keep; below it MAIL gets `452 4.3.1`.
    /// The effective floor is the larger of this and 1.5 × `max_message_size`.
    pub min_free_space: ByteSize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_command_line: 4096,
            max_message_size: ByteSize(25 * 1024 * 1024),
            max_recipients: 1000,
            max_messages_per_session: 1000,
            max_errors: 10,
            command_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(300),
            session_timeout: Duration::from_secs(1800),
            tls_handshake_timeout: Duration::from_secs(30),
            inspect_timeout: Duration::from_secs(10),
            bare_newlines: BareNewlines::Normalize,
            min_free_space: ByteSize(100 * 1024 * 1024),
        }
    }
}

impl Limits {
    /// The free-space floor below which new transactions are refused.
    pub fn free_space_floor(&self) -> u64 {
        self.min_free_space
            .0
            .max(self.max_message_size.0.saturating_mul(3) / 2)
    }
}

/// `[tls]`: the certificate for STARTTLS and implicit TLS.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
}

impl TlsConfig {
    pub fn enabled(&self) -> bool {
        self.cert.is_some() && self.key.is_some()
    }
}

/// `[auth]`: SMTP AUTH users and brute-force throttling.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Offer AUTH without TLS. Off by default: passwords must not cross the wire in clear.
    pub allow_plaintext: bool,
    /// Pause after each failed attempt.
    #[serde(with = "humantime_serde")]
    pub failure_delay: Duration,
    /// Failures from one IP within `failure_window` before `421 4.7.0` and close.
    pub max_failures: u32,
    /// Failures for one user name (from any address) within `failure_window` before that
    /// user gets `454 4.7.0` whatever the password (stops guessing spread over addresses).
    pub max_user_failures: u32,
    #[serde(with = "humantime_serde")]
    pub failure_window: Duration,
    /// Users allowed to submit (argon2 PHC hashes; make one with `mailbrake hash-password`).
    pub users: Vec<AuthUser>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            allow_plaintext: false,
            failure_delay: Duration::from_secs(1),
            max_failures: 5,
            max_user_failures: 10,
            failure_window: Duration::from_secs(600),
            users: Vec::new(),
        }
    }
}

/// One SMTP AUTH user.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthUser {
    pub name: String,
    /// `$argon2id$v=19$...` PHC string.
    pub password_hash: String,
}

/// `[relay]`: who may relay through mailbrake.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelayAccess {
    /// Client networks that may relay without AUTH. Default: loopback only. Authenticated
    /// users may always relay. Anyone else gets `554 5.7.1` at RCPT.
    pub allowed_networks: Vec<IpNet>,
}

impl Default for RelayAccess {
    fn default() -> Self {
        let mut nets = Vec::new();
        for n in ["127.0.0.0/8", "::1/128"] {
            if let Ok(net) = n.parse() {
                nets.push(net);
            }
        }
        RelayAccess {
            allowed_networks: nets,
        }
    }
}

/// `[upstream]`: where clean mail goes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    /// `smtps://host:465` (implicit TLS, preferred), `smtp://host:587` (STARTTLS when offered)
    /// or `smtp+plain://host:25` (never TLS, for a relay on the same host). Empty: write clean
    /// mail to `<data-dir>/outbox/` instead.
    pub url: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// File holding the password (first line), instead of `password`.
    pub password_file: Option<PathBuf>,
    /// Extra CA certificate (PEM) to trust for the upstream, e.g. a private CA.
    pub ca_file: Option<PathBuf>,
    /// EHLO name towards the upstream. Default: `server.hostname`.
    pub hello_name: Option<String>,
    /// Timeout of each upstream command.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Pooled connections to the upstream.
    pub pool_size: u32,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            url: None,
            username: None,
            password: None,
            password_file: None,
            ca_file: None,
            hello_name: None,
            timeout: Duration::from_secs(60),
            pool_size: 10,
        }
    }
}

/// `[admin]`: the HTTP admin API the CLI talks to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Loopback by default; the API needs the bearer token in `<data-dir>/admin.token`.
    pub listen: SocketAddr,
    /// Allow `listen` on a non-loopback address (the API releases held mail; the token
    /// travels in clear HTTP). Off: such an address is a configuration error.
    pub allow_non_loopback: bool,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 2580)),
            allow_non_loopback: false,
        }
    }
}

/// `[metrics]`: Prometheus `/metrics`, `/healthz`, `/readyz`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    pub listen: SocketAddr,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9465)),
        }
    }
}

/// `[quarantine]`: how long audit records of released and deleted mail are kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuarantineConfig {
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
}

impl Default for QuarantineConfig {
    fn default() -> Self {
        QuarantineConfig {
            retention: Duration::from_secs(30 * 86400),
        }
    }
}

/// `[notify]`: notices to senders whose mail was held.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// Send a notice (id, reasons, whom to contact — never the content) when mail is held.
    pub enabled: bool,
    /// The notice's From address. Default: `mailbrake@<server.hostname>`.
    pub from: Option<String>,
    /// Who to contact for a release, as written in the notice.
    pub contact: String,
    /// Notices per sender per hour (a brake holding thousands sends only a few). The sender
    /// is the sender identity of the batch checks (the AUTH user, else the envelope sender),
    /// so per-message return addresses (VERP) share one allowance.
    pub max_per_sender_per_hour: u32,
    /// Notices per hour in all, whatever the senders (many senders held at once must not
    /// turn mailbrake into a mail flood of its own).
    pub max_per_hour: u32,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            enabled: false,
            from: None,
            contact: "your mail administrator".to_string(),
            max_per_sender_per_hour: 3,
            max_per_hour: 100,
        }
    }
}

/// `[log]`: format of the log lines on stderr.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: LogFormat,
    /// A tracing filter, e.g. `info` or `mailbrake=debug`. `MAILBRAKE_LOG` overrides it.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".to_string(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// A size in bytes, written as an integer or a string with a unit: `"25MiB"`, `"10MB"`,
/// `"512KiB"`, `"1GiB"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// Parses `"25MiB"`, `"10 MB"`, `"4096"`.
    pub fn parse(s: &str) -> Option<ByteSize> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: u64 = num.parse().ok()?;
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1000,
            "kib" => 1024,
            "m" | "mb" => 1000 * 1000,
            "mib" => 1024 * 1024,
            "g" | "gb" => 1000 * 1000 * 1000,
            "gib" => 1024 * 1024 * 1024,
            _ => return None,
        };
        n.checked_mul(mult).map(ByteSize)
    }

    /// The size as `usize`, saturating on 32-bit targets.
    pub fn as_usize(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Str(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(ByteSize(n)),
            Raw::Str(s) => ByteSize::parse(&s).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "invalid size {s:?}: use bytes or a unit such as \"25MiB\""
                ))
            }),
        }
    }
}

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid configuration:\n  {}", .0.join("\n  "))]
    Invalid(Vec<String>),
}

impl Config {
    /// Reads and parses a config file (not yet validated: apply overrides, then validate).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parses config text.
    pub fn parse(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// The policy directory in effect: the configured one, else `./policies` when it exists.
    pub fn policy_dir(&self) -> Option<PathBuf> {
        match &self.server.policies {
            Some(p) => Some(p.clone()),
            None => {
                let local = PathBuf::from("policies");
                local.is_dir().then_some(local)
            }
        }
    }

    /// Checks every rule and returns all problems at once, each prefixed by its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        let s = &self.server;
        let l = &self.limits;
        if s.listen.is_empty() && s.tls_listen.is_empty() {
            problems.push("server.listen: at least one SMTP listener is needed".to_string());
        }
        if !s.tls_listen.is_empty() && !self.tls.enabled() {
            problems.push("server.tls_listen: needs tls.cert and tls.key".to_string());
        }
        if !self.admin.listen.ip().is_loopback() && !self.admin.allow_non_loopback {
            problems.push(format!(
                "admin.listen: {} is not a loopback address; the admin API releases held mail \
                 over plain HTTP (set admin.allow_non_loopback = true to allow it, behind a \
                 firewall or a TLS proxy)",
                self.admin.listen
            ));
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            problems.push("tls: cert and key must be given together".to_string());
        }
        for (key, path) in [("tls.cert", &self.tls.cert), ("tls.key", &self.tls.key)] {
            if let Some(p) = path
                && !p.is_file()
            {
                problems.push(format!("{key}: {} is not a readable file", p.display()));
            }
        }
        if s.hostname.is_empty()
            || !s
                .hostname
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        {
            problems.push(format!(
                "server.hostname: {:?} is not a valid host name",
                s.hostname
            ));
        }
        if s.max_connections == 0 || s.max_connections_per_ip == 0 {
            problems.push("server.max_connections / max_connections_per_ip: must be > 0".into());
        }
        if !(512..=65536).contains(&l.max_command_line) {
            problems.push("limits.max_command_line: must be between 512 and 65536".into());
        }
        if l.max_message_size.0 < 1024 {
            problems.push("limits.max_message_size: must be at least 1KiB".into());
        }
        if l.max_recipients < 1 {
            problems.push("limits.max_recipients: must be at least 1 (RFC 5321: 100)".into());
        }
        for (key, d) in [
            ("limits.command_timeout", l.command_timeout),
            ("limits.data_timeout", l.data_timeout),
            ("limits.session_timeout", l.session_timeout),
            ("limits.tls_handshake_timeout", l.tls_handshake_timeout),
            ("limits.inspect_timeout", l.inspect_timeout),
            ("upstream.timeout", self.upstream.timeout),
        ] {
            if d.is_zero() {
                problems.push(format!("{key}: must be greater than zero"));
            }
        }
        let mut names = std::collections::HashSet::new();
        for (i, u) in self.auth.users.iter().enumerate() {
            if u.name.is_empty() || u.name.bytes().any(|b| b.is_ascii_control()) {
                problems.push(format!(
                    "auth.users[{i}].name: empty or has control characters"
                ));
            }
            if !names.insert(u.name.as_str()) {
                problems.push(format!("auth.users[{i}].name: {:?} appears twice", u.name));
            }
            if argon2::PasswordHash::new(&u.password_hash).is_err() {
                problems.push(format!(
                    "auth.users[{i}].password_hash: not a PHC hash (make one with `mailbrake hash-password`)"
                ));
            }
        }
        if !self.auth.users.is_empty() && !self.tls.enabled() && !self.auth.allow_plaintext {
            problems.push(
                "auth.users: AUTH is only offered after TLS; configure [tls] or set auth.allow_plaintext = true"
                    .into(),
            );
        }
        if self.auth.max_failures == 0 || self.auth.max_user_failures == 0 {
            problems.push("auth.max_failures / max_user_failures: must be at least 1".into());
        }
        if let Some(url) = &self.upstream.url
            && let Err(e) = crate::relay::UpstreamUrl::parse(url)
        {
            problems.push(format!("upstream.url: {e}"));
        }
        if self.upstream.password.is_some() && self.upstream.password_file.is_some() {
            problems.push("upstream: give password or password_file, not both".into());
        }
        if self.upstream.pool_size == 0 {
            problems.push("upstream.pool_size: must be at least 1".into());
        }
        if let Some(p) = &self.upstream.ca_file
            && !p.is_file()
        {
            problems.push(format!(
                "upstream.ca_file: {} is not a readable file",
                p.display()
            ));
        }
        if let Some(f) = &self.notify.from
            && (f.contains(['<', '>', '\r', '\n', ' ']) || !f.contains('@'))
        {
            problems.push(format!("notify.from: {f:?} is not a plain address"));
        }
        if self.notify.contact.chars().any(char::is_control) {
            problems.push("notify.contact: must not contain control characters".into());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }
}

/// The machine's host name (from the kernel), or `localhost` when it is unusable.
fn default_hostname() -> String {
    // /etc/hostname first: a sandboxed service (systemd ProcSubset=pid) cannot read /proc/sys.
    let name = ["/etc/hostname", "/proc/sys/kernel/hostname"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .find(|s| !s.is_empty())
        .unwrap_or_default();
    if !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
    {
        name
    } else {
        "localhost".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_is_valid_and_safe() {
        let c = Config::parse("").unwrap();
        c.validate().unwrap();
        assert_eq!(
            c.server.listen,
            vec![SocketAddr::from(([127, 0, 0, 1], 2525))]
        );
        assert!(c.upstream.url.is_none());
        assert!(
            c.relay
                .allowed_networks
                .iter()
                .all(|n| n.addr().is_loopback())
        );
    }

    #[test]
    fn sizes_and_durations_parse() {
        let c = Config::parse(
            "[limits]\nmax_message_size = \"10MiB\"\ncommand_timeout = \"2m\"\nmin_free_space = 5000",
        )
        .unwrap();
        assert_eq!(c.limits.max_message_size, ByteSize(10 * 1024 * 1024));
        assert_eq!(c.limits.command_timeout, Duration::from_secs(120));
        assert_eq!(c.limits.min_free_space, ByteSize(5000));
        assert_eq!(c.limits.free_space_floor(), 15 * 1024 * 1024);
        assert!(ByteSize::parse("12XB").is_none());
    }

    /// The field names a `Deserialize` struct accepts, read from serde's own list.
    fn fields_of<'de, T: Deserialize<'de>>() -> Vec<&'static str> {
        use serde::de::{self, Visitor};
        struct Names(std::cell::RefCell<Vec<&'static str>>);
        #[derive(Debug)]
        struct Stop;
        impl std::fmt::Display for Stop {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("stop")
            }
        }
        impl std::error::Error for Stop {}
        impl de::Error for Stop {
            fn custom<M: std::fmt::Display>(_: M) -> Self {
                Stop
            }
        }
        impl<'de> de::Deserializer<'de> for &Names {
            type Error = Stop;
            fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
                Err(Stop)
            }
            fn deserialize_struct<V: Visitor<'de>>(
                self,
                _: &'static str,
                fields: &'static [&'static str],
                _: V,
            ) -> Result<V::Value, Stop> {
                self.0.borrow_mut().extend_from_slice(fields);
                Err(Stop)
            }
            serde::forward_to_deserialize_any! {
                bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
                byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map
                enum identifier ignored_any
            }
        }
        let names = Names(std::cell::RefCell::new(Vec::new()));
        let _ = T::deserialize(&names);
        names.0.into_inner()
    }

    /// The shipped example config documents every key, and its active values are the
    /// defaults: it must parse, validate and equal `Config::default()` field for field, and
    /// every key of every section must appear in it, set or commented out (`# key = …`).
    #[test]
    fn example_config_matches_the_defaults() {
        let text = include_str!("../deploy/mailbrake.toml");
        let c = Config::parse(text).unwrap();
        c.validate().unwrap();
        assert_eq!(
            format!("{c:?}"),
            format!("{:?}", Config::default()),
            "an active value in deploy/mailbrake.toml differs from its default"
        );
        // Every section of Config, with the keys its type accepts.
        let sections: Vec<(&str, Vec<&str>)> = vec![
            ("server", fields_of::<ServerConfig>()),
            ("limits", fields_of::<Limits>()),
            ("tls", fields_of::<TlsConfig>()),
            ("auth", fields_of::<AuthConfig>()),
            ("auth.users", fields_of::<AuthUser>()),
            ("relay", fields_of::<RelayAccess>()),
            ("upstream", fields_of::<UpstreamConfig>()),
            ("admin", fields_of::<AdminConfig>()),
            ("metrics", fields_of::<MetricsConfig>()),
            ("quarantine", fields_of::<QuarantineConfig>()),
            ("notify", fields_of::<NotifyConfig>()),
            ("log", fields_of::<LogConfig>()),
        ];
        for top in fields_of::<Config>() {
            assert!(
                sections.iter().any(|(s, _)| *s == top),
                "section [{top}] is not checked here"
            );
        }
        // The keys written in the example, per section, set or commented out.
        let mut written: Vec<(String, String)> = Vec::new();
        let mut section = String::new();
        for line in text.lines() {
            let l = line.trim_start_matches('#').trim();
            if let Some(name) = l.strip_prefix('[').and_then(|r| r.split(']').next()) {
                if !name.is_empty() && line.trim_start().starts_with(['[', '#']) {
                    section = name.trim_matches(['[', ']']).to_string();
                }
                continue;
            }
            if let Some((key, _)) = l.split_once('=') {
                let key = key.trim();
                if !key.is_empty()
                    && key
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                {
                    written.push((section.clone(), key.to_string()));
                }
            }
        }
        let mut missing = Vec::new();
        for (section, keys) in &sections {
            for key in keys {
                // A key holding a table array is written as its own section: [[auth.users]].
                let as_section = format!("{section}.{key}");
                if !written
                    .iter()
                    .any(|(s, k)| (s == section && k == key) || *s == as_section)
                {
                    missing.push(format!("{section}.{key}"));
                }
            }
        }
        assert!(
            missing.is_empty(),
            "deploy/mailbrake.toml does not mention: {missing:?}"
        );
    }

    #[test]
    fn unknown_keys_are_errors() {
        let err = Config::parse("[server]\nlisten_addr = []").unwrap_err();
        assert!(err.contains("listen_addr"), "{err}");
    }

    #[test]
    fn validate_collects_every_problem() {
        let c = Config::parse(
            "[server]\ntls_listen = [\"127.0.0.1:465\"]\n[upstream]\nurl = \"http://x\"\n\
             [[auth.users]]\nname = \"a\"\npassword_hash = \"nope\"",
        )
        .unwrap();
        let ConfigError::Invalid(p) = c.validate().unwrap_err() else {
            panic!("expected Invalid")
        };
        assert!(
            p.iter().any(|m| m.starts_with("server.tls_listen")),
            "{p:?}"
        );
        assert!(p.iter().any(|m| m.starts_with("upstream.url")), "{p:?}");
        assert!(p.iter().any(|m| m.contains("password_hash")), "{p:?}");
        assert!(p.iter().any(|m| m.starts_with("auth.users:")), "{p:?}");
    }

    #[test]
    fn the_admin_api_stays_on_loopback_unless_allowed() {
        let remote = Config::parse("[admin]\nlisten = \"0.0.0.0:2580\"").unwrap();
        let ConfigError::Invalid(p) = remote.validate().unwrap_err() else {
            panic!("expected Invalid")
        };
        assert!(p.iter().any(|m| m.starts_with("admin.listen:")), "{p:?}");
        let allowed =
            Config::parse("[admin]\nlisten = \"0.0.0.0:2580\"\nallow_non_loopback = true").unwrap();
        assert!(allowed.validate().is_ok());
        let v6 = Config::parse("[admin]\nlisten = \"[::1]:2580\"").unwrap();
        assert!(v6.validate().is_ok());
    }
}
