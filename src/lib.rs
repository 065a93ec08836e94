//! mailbrake: an SMTP smarthost that pulls the brake on risky outgoing mail.
//!
//! # Layout
//!
//! The modules follow the path of a message (DESIGN.md §1):
//!
//! - [`config`]: `mailbrake.toml` → validated [`config::Config`]; every key has a default.
//! - [`server`]: listeners, connection caps, graceful shutdown, wiring of the parts below.
//! - [`smtp`]: the inbound session loop (tokio + smtp-proto), TLS, AUTH, limits. The framing
//!   pieces ([`smtp::line`], [`smtp::data`]) are sans-IO and unit-tested.
//! - [`inspect`]: parse a message once and run every check over it → [`verdict::Finding`]s.
//! - [`policy`]: `policies/*.toml` → typed thresholds; findings → [`verdict::Verdict`].
//! - [`batch`]: the sender's batch: rate windows, surges, brakes, known attachments,
//!   cross-recipient data.
//! - [`pipeline`]: what happens after the final dot: inspect, decide, forward / hold / reject.
//! - [`relay`]: delivery to the upstream server (lettre pool) or to the local outbox.
//! - [`quarantine`]: durable spool files + sled index; the only code that touches sled.
//! - [`admin`]: the HTTP admin API (bearer token) and `/metrics`.
//! - [`metrics`]: the metric catalogue, one place for every name.
//! - [`cli`]: the `mailbrake` client subcommands (talk to the admin API, never the store).
//!
//! Nothing here logs message content or detected values: logs carry ids, counts and reasons.

pub mod admin;
pub mod batch;
pub mod cli;
pub mod config;
pub mod envelope;
pub mod ids;
pub mod inspect;
pub mod metrics;
pub mod notify;
pub mod pipeline;
pub mod policy;
pub mod quarantine;
pub mod relay;
pub mod rewrite;
pub mod server;
pub mod smtp;
pub mod verdict;

/// The version compiled into the binary, exported as `mailbrake_build_info{version}`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
