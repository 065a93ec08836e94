//! End-to-end tests: real sockets on 127.0.0.1, lettre and raw clients, an SMTP sink as the
//! upstream, the real `mailbrake` binary for the CLI. One test binary, themed modules.

mod common;

mod cli;
mod incidents;
mod protocol;
mod quarantine_ops;
mod relay;
mod tls_auth;
