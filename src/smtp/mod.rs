//! Inbound SMTP: our own tokio session loop around smtp-proto (DESIGN.md §2.1).
//!
//! - [`line`] and [`data`]: sans-IO framing (command lines, DATA with dot-unstuffing and
//!   bare CR/LF handling). Unit-tested and fuzzable.
//! - [`session`]: the per-connection loop, timeouts, STARTTLS, DATA.
//! - `verbs` and `auth_verb`: one handler per verb.
//! - [`auth`], [`limiter`], [`tls`], [`received`], [`reply`], [`stream`]: the parts.

pub mod auth;
mod auth_verb;
pub mod data;
pub mod limiter;
pub mod line;
pub mod received;
pub mod reply;
pub mod session;
pub mod stream;
pub mod tls;
mod verbs;
