//! The AUTH dialogue (RFC 4954): PLAIN and LOGIN, only after TLS unless configured otherwise.

use smtp_proto::{AUTH_LOGIN, AUTH_PLAIN};
use std::time::Instant;

use super::auth::{decode_b64_line, decode_plain};
use super::reply;
use super::session::{Flow, Session};

impl Session {
    pub(super) async fn auth(&mut self, mechanism: u64, initial: String) -> Flow {
        let app = self.app.clone();
        if !app.users.is_enabled() {
            self.errors += 1;
            self.push(reply::AUTH_NOT_AVAILABLE);
            return Flow::Continue;
        }
        if !self.is_tls() && !app.config.auth.allow_plaintext {
            self.errors += 1;
            self.push(reply::AUTH_NEEDS_TLS);
            return Flow::Continue;
        }
        if self.helo.is_none() {
            self.errors += 1;
            self.push(reply::NEED_HELO);
            return Flow::Continue;
        }
        if self.auth_user.is_some() {
            self.errors += 1;
            self.push(reply::ALREADY_AUTH);
            return Flow::Continue;
        }
        if self.tx.is_some() {
            self.errors += 1;
            self.push(reply::AUTH_IN_TX);
            return Flow::Continue;
        }
        let ip = self.peer.ip();
        // Reserve the attempt before anything slow happens: parallel sessions from one address
        // cannot all pass this check before a failure is recorded.
        if !app.auth_throttle.begin_ip(ip, Instant::now()) {
            app.metrics
                .auth_attempts_total
                .with_label_values(&["throttled"])
                .inc();
            tracing::info!(peer = %self.peer, "authentication refused: too many failures from this address");
            self.push(reply::AUTH_THROTTLED);
            return Flow::Close;
        }
        let (flow, failed) = self.auth_exchange(mechanism, initial).await;
        app.auth_throttle.end_ip(ip, Instant::now(), failed);
        flow
    }

    /// Reads the credentials and checks them. Returns the flow and whether the attempt
    /// counts as a failure for the address.
    async fn auth_exchange(&mut self, mechanism: u64, initial: String) -> (Flow, bool) {
        let app = self.app.clone();
        let credentials = if mechanism == AUTH_PLAIN {
            let response = if initial.is_empty() {
                self.push(b"334 \r\n");
                match self.sasl_line().await {
                    Some(Ok(line)) => line,
                    Some(Err(flow)) => return (flow, false),
                    None => return (Flow::Close, false),
                }
            } else if initial == "=" {
                String::new()
            } else {
                initial
            };
            match decode_plain(&response) {
                Some(c) => c,
                None => {
                    self.errors += 1;
                    self.push(reply::AUTH_BAD_B64);
                    return (Flow::Continue, true);
                }
            }
        } else if mechanism == AUTH_LOGIN {
            let user = if initial.is_empty() {
                self.push(b"334 VXNlcm5hbWU6\r\n");
                match self.sasl_line().await {
                    Some(Ok(line)) => line,
                    Some(Err(flow)) => return (flow, false),
                    None => return (Flow::Close, false),
                }
            } else {
                initial
            };
            let Some(user) = decode_b64_line(&user).and_then(|u| String::from_utf8(u).ok()) else {
                self.errors += 1;
                self.push(reply::AUTH_BAD_B64);
                return (Flow::Continue, true);
            };
            self.push(b"334 UGFzc3dvcmQ6\r\n");
            let pass = match self.sasl_line().await {
                Some(Ok(line)) => line,
                Some(Err(flow)) => return (flow, false),
                None => return (Flow::Close, false),
            };
            let Some(pass) = decode_b64_line(&pass) else {
                self.errors += 1;
                self.push(reply::AUTH_BAD_B64);
                return (Flow::Continue, true);
            };
            (user, pass)
        } else {
            self.errors += 1;
            self.push(reply::AUTH_MECH);
            return (Flow::Continue, false);
        };
        let (user, password) = credentials;
        if !app.auth_throttle.begin_user(&user, Instant::now()) {
            // Guessing spread over many addresses: this user is locked for the window,
            // whatever the password, and the answer takes the usual failure pause.
            app.metrics
                .auth_attempts_total
                .with_label_values(&["throttled"])
                .inc();
            tracing::info!(peer = %self.peer, user = %user.escape_debug(), "authentication refused: too many failures for this user");
            self.errors += 1;
            tokio::time::sleep(app.config.auth.failure_delay).await;
            self.push(reply::AUTH_USER_LOCKED);
            return (Flow::Continue, true);
        }
        let check_app = app.clone();
        let check_user = user.clone();
        let ok =
            tokio::task::spawn_blocking(move || check_app.users.verify(&check_user, &password))
                .await
                .unwrap_or(false);
        app.auth_throttle.end_user(&user, Instant::now(), !ok);
        if ok {
            app.metrics
                .auth_attempts_total
                .with_label_values(&["success"])
                .inc();
            tracing::info!(peer = %self.peer, user = %user.escape_debug(), "authenticated");
            self.auth_user = Some(user);
            self.push(reply::AUTH_OK);
            return (Flow::Continue, false);
        }
        app.metrics
            .auth_attempts_total
            .with_label_values(&["failure"])
            .inc();
        tracing::info!(peer = %self.peer, user = %user.escape_debug(), "authentication failed");
        self.errors += 1;
        // The pause makes guessing slow; it is the same for unknown users and wrong passwords.
        tokio::time::sleep(app.config.auth.failure_delay).await;
        self.push(reply::AUTH_FAILED);
        (Flow::Continue, true)
    }

    /// One line of the SASL exchange. `Some(Err(flow))` when the client cancelled (`*`).
    async fn sasl_line(&mut self) -> Option<Result<String, Flow>> {
        let line = match self.read_line().await {
            Ok(Some(l)) => l,
            _ => return None,
        };
        let text = String::from_utf8_lossy(&line)
            .trim_end_matches(['\r', '\n'])
            .to_string();
        if text == "*" {
            self.push(reply::AUTH_CANCELLED);
            return Some(Err(Flow::Continue));
        }
        Some(Ok(text))
    }
}
