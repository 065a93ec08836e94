//! The `mailbrake` command line (DESIGN.md §3, a contract).
//!
//! `serve` runs the server; `check-config` and `policy test` work offline; every other
//! subcommand talks to a running server's admin API, never to the store.
//! Exit codes: 0 done; 1 nothing matched, not found, or the action failed; 2 usage or
//! configuration error; 3 server unreachable.

mod client;
mod output;
mod policy_test;
mod quarantine;

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

pub use client::AdminClient;

/// Exit statuses of the client subcommands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Ok = 0,
    NotFound = 1,
    Usage = 2,
    Unreachable = 3,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e as u8)
    }
}

/// mailbrake: an SMTP smarthost that holds risky outgoing mail for review.
#[derive(Debug, Parser)]
#[command(name = "mailbrake", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the relay (SMTP listeners, admin API, metrics).
    Serve(ServeArgs),
    /// Validate the configuration and the policies; exit 0 if usable, 2 if not.
    CheckConfig {
        /// Configuration file (default: built-in defaults).
        #[arg(long, env = "MAILBRAKE_CONFIG")]
        config: Option<PathBuf>,
        /// Policy directory (overrides the configuration).
        #[arg(long)]
        policies: Option<PathBuf>,
    },
    /// List, inspect, release and delete held mail.
    #[command(subcommand)]
    Quarantine(QuarantineCmd),
    /// Show and reset tripped sender brakes.
    #[command(subcommand)]
    Breaker(BreakerCmd),
    /// Explain the policy's verdict on a message, offline.
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// Read a password from standard input and print its argon2 hash for `[[auth.users]]`.
    HashPassword,
    /// Internal: read a PDF from standard input and print its text (the server and
    /// `policy test` run this as a child process with a capped heap).
    #[command(hide = true)]
    PdfText {
        /// Heap cap in bytes.
        #[arg(long)]
        max_memory: u64,
    },
}

/// `mailbrake serve` flags; each overrides the configuration file.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Configuration file (TOML). Without one, safe defaults apply.
    #[arg(long, env = "MAILBRAKE_CONFIG")]
    pub config: Option<PathBuf>,
    /// SMTP listener address (repeatable), e.g. 127.0.0.1:2525.
    #[arg(long = "listen")]
    pub listen: Vec<std::net::SocketAddr>,
    /// Upstream URL: smtps://host:465, smtp://host:587 or smtp+plain://host:25.
    #[arg(long)]
    pub upstream: Option<String>,
    /// Data directory (spool, index, outbox, admin token).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Policy directory (*.toml merged in name order).
    #[arg(long)]
    pub policies: Option<PathBuf>,
    /// Admin API address (keep it on loopback).
    #[arg(long)]
    pub admin_listen: Option<std::net::SocketAddr>,
    /// Metrics address (/metrics, /healthz, /readyz).
    #[arg(long)]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// TLS certificate chain (PEM) for STARTTLS and implicit TLS.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

/// How client subcommands find the server and its token.
#[derive(Debug, Args, Clone)]
pub struct Conn {
    /// Admin API URL (default: from the configuration, else http://127.0.0.1:2580).
    #[arg(long, env = "MAILBRAKE_ADMIN")]
    pub admin: Option<String>,
    /// Data directory holding admin.token (default: from the configuration).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Configuration file, to find the admin address and data directory.
    #[arg(long, env = "MAILBRAKE_CONFIG")]
    pub config: Option<PathBuf>,
}

/// Filters shared by list, release --all and delete --all.
#[derive(Debug, Args, Clone, Default)]
pub struct Filters {
    /// Only messages held for this reason (e.g. visible_recipients).
    #[arg(long)]
    pub reason: Option<String>,
    /// Only messages whose sender contains this text.
    #[arg(long)]
    pub sender: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum QuarantineCmd {
    /// List quarantined messages (held ones unless --state says otherwise).
    List {
        #[command(flatten)]
        filters: Filters,
        /// held, released, deleted or all.
        #[arg(long, default_value = "held")]
        state: String,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Show one message: envelope, reasons, findings and where they were found.
    Show {
        id: String,
        /// The entry as one JSON object.
        #[arg(long, conflicts_with = "raw")]
        json: bool,
        /// The message itself (.eml) on standard output.
        #[arg(long)]
        raw: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Forward held messages upstream.
    Release {
        /// Message ids.
        ids: Vec<String>,
        /// Every held message matching the filters.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
        #[command(flatten)]
        filters: Filters,
        /// Confirm an --all action.
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Delete held messages (an audit record is kept for the retention period).
    Delete {
        /// Message ids.
        ids: Vec<String>,
        /// Every held message matching the filters.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
        #[command(flatten)]
        filters: Filters,
        /// Confirm an --all action.
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(Debug, Subcommand)]
pub enum BreakerCmd {
    /// List open sender brakes.
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Close a sender's brake so its new mail flows again.
    Reset {
        sender: String,
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCmd {
    /// Inspect FILE.eml and explain the verdict (no server needed).
    Test {
        file: PathBuf,
        /// Envelope sender (default: the From header).
        #[arg(long)]
        from: Option<String>,
        /// Envelope recipient (repeatable; default: To, Cc and Bcc headers).
        #[arg(long = "to")]
        to: Vec<String>,
        /// One JSON object with a top-level "verdict".
        #[arg(long)]
        json: bool,
        /// Policy directory (default: from the configuration, else ./policies or built-in).
        #[arg(long)]
        policies: Option<PathBuf>,
        #[arg(long, env = "MAILBRAKE_CONFIG")]
        config: Option<PathBuf>,
    },
}

/// Runs a client or offline subcommand (everything but `serve`).
pub fn run_client(cmd: Command) -> Exit {
    match cmd {
        Command::Serve(_) | Command::PdfText { .. } => Exit::Usage,
        Command::CheckConfig { config, policies } => check_config(config, policies),
        Command::Quarantine(q) => quarantine::run(q),
        Command::Breaker(b) => quarantine::run_breaker(b),
        Command::Policy(PolicyCmd::Test {
            file,
            from,
            to,
            json,
            policies,
            config,
        }) => policy_test::run(&file, from, to, json, policies, config),
        Command::HashPassword => hash_password(),
    }
}

/// Loads the configuration (or the defaults) for offline commands.
pub fn load_config(path: Option<&std::path::Path>) -> Result<crate::config::Config, String> {
    match path {
        Some(p) => crate::config::Config::load(p).map_err(|e| e.to_string()),
        None => Ok(crate::config::Config::default()),
    }
}

fn check_config(config: Option<PathBuf>, policies: Option<PathBuf>) -> Exit {
    let mut cfg = match load_config(config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mailbrake: {e}");
            return Exit::Usage;
        }
    };
    if policies.is_some() {
        cfg.server.policies = policies;
    }
    let mut failed = false;
    if let Err(e) = cfg.validate() {
        eprintln!("mailbrake: {e}");
        failed = true;
    }
    let dir = cfg.policy_dir();
    match crate::policy::Policy::load(dir.as_deref()) {
        Ok(p) => println!(
            "policy: {} (mode {:?}, {} internal domains)",
            dir.map(|d| d.display().to_string())
                .unwrap_or_else(|| "built-in default".into()),
            p.mode,
            p.internal_domains.len()
        ),
        Err(e) => {
            eprintln!("mailbrake: {e}");
            failed = true;
        }
    }
    if let (Some(c), Some(k)) = (&cfg.tls.cert, &cfg.tls.key)
        && let Err(e) = crate::smtp::tls::acceptor(c, k)
    {
        eprintln!("mailbrake: tls: {e}");
        failed = true;
    }
    if failed {
        return Exit::Usage;
    }
    println!(
        "config: {} is valid",
        config
            .map(|c| c.display().to_string())
            .unwrap_or_else(|| "built-in defaults".into())
    );
    Exit::Ok
}

fn hash_password() -> Exit {
    let mut line = String::new();
    if std::io::stdin().read_line(&mut line).is_err() {
        eprintln!("mailbrake: cannot read a password from standard input");
        return Exit::Usage;
    }
    let pw = line.trim_end_matches(['\r', '\n']);
    if pw.is_empty() {
        eprintln!("mailbrake: empty password");
        return Exit::Usage;
    }
    match crate::smtp::auth::hash_password(pw) {
        Ok(h) => {
            println!("{h}");
            Exit::Ok
        }
        Err(e) => {
            eprintln!("mailbrake: {e}");
            Exit::Usage
        }
    }
}
