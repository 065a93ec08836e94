//! End-to-end tests: real sockets on 127.0.0.1, lettre and raw clients, an SMTP sink as the
//! upstream, the real `mailbrake` binary for the CLI. One test binary, themed modules.

// Test code: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

mod batch;
mod cli;
mod detection;
mod incidents;
mod protocol;
mod quarantine_ops;
mod relay;
mod tls_auth;
