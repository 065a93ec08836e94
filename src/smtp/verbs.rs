//! The SMTP verbs: parsing with smtp-proto, replies per RFC 5321 and DESIGN.md §4.
//!
//! Rejections are replies, not errors: a handler queues its reply and returns a [`Flow`].
//! Every address is checked strictly before it is accepted: no control characters, non-ASCII
//! only with SMTPUTF8, and a form the upstream client can send (nothing is accepted that could
//! not be forwarded).

use smtp_proto::{Error as ProtoError, MAIL_BODY_BINARYMIME, MAIL_SMTPUTF8, Request};

use super::reply::{self, Reply};
use super::session::{Flow, Session, Transaction};

impl Session {
    /// Parses and answers one command line.
    pub(super) async fn handle_command(&mut self, line: &[u8]) -> Flow {
        // smtp-proto drops a CR inside an address; a command with any control character
        // (other than its CRLF ending) is refused before parsing, so no address is ever
        // silently changed into another one (RELIABILITY.md §2.9).
        let body = line.strip_suffix(b"\n").unwrap_or(line);
        let body = body.strip_suffix(b"\r").unwrap_or(body);
        if body.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            self.errors += 1;
            let verb = body.get(..4).map(|v| v.to_ascii_uppercase());
            self.push(match verb.as_deref() {
                Some(b"MAIL") => reply::BAD_SENDER,
                Some(b"RCPT") => reply::BAD_RCPT,
                _ => reply::CONTROL_CHARS,
            });
            return Flow::Continue;
        }
        let request = match Request::parse(&mut line.iter()) {
            Ok(r) => r.into_owned(),
            Err(e) => {
                self.errors += 1;
                let r = parse_error_reply(&e);
                self.push(r.as_bytes());
                return Flow::Continue;
            }
        };
        match request {
            Request::Ehlo { host } => self.ehlo(host, true),
            Request::Helo { host } => self.ehlo(host, false),
            Request::Mail { from } => self.mail(from.address, from.flags, from.size),
            Request::Rcpt { to } => self.rcpt(to.address),
            Request::Data => self.data(),
            Request::Rset => {
                self.tx = None;
                self.push(reply::OK);
                Flow::Continue
            }
            Request::Noop { .. } => {
                self.push(reply::OK);
                Flow::Continue
            }
            Request::Quit => {
                self.slot = None;
                self.push(reply::BYE);
                Flow::Close
            }
            Request::Vrfy { .. } => {
                self.push(reply::VRFY);
                Flow::Continue
            }
            Request::Help { .. } => {
                self.push(reply::HELP);
                Flow::Continue
            }
            Request::StartTls => self.starttls(),
            Request::Auth {
                mechanism,
                initial_response,
            } => self.auth(mechanism, initial_response).await,
            Request::Lhlo { .. }
            | Request::Bdat { .. }
            | Request::Expn { .. }
            | Request::Etrn { .. }
            | Request::Atrn { .. }
            | Request::Burl { .. } => {
                self.errors += 1;
                self.push(reply::NOT_IMPLEMENTED);
                Flow::Continue
            }
        }
    }

    fn ehlo(&mut self, host: String, esmtp: bool) -> Flow {
        self.tx = None;
        self.helo = Some(host);
        let app = &self.app;
        if !esmtp {
            let r = format!("250 {}\r\n", app.hostname);
            self.push(r.as_bytes());
            return Flow::Continue;
        }
        let mut lines = vec![
            app.hostname.clone(),
            "PIPELINING".to_string(),
            format!("SIZE {}", app.config.limits.max_message_size.0),
            "8BITMIME".to_string(),
            "ENHANCEDSTATUSCODES".to_string(),
        ];
        if app.config.server.smtputf8 {
            lines.push("SMTPUTF8".to_string());
        }
        if app.tls.is_some() && !self.is_tls() {
            lines.push("STARTTLS".to_string());
        }
        if app.users.is_enabled() && (self.is_tls() || app.config.auth.allow_plaintext) {
            lines.push("AUTH PLAIN LOGIN".to_string());
        }
        self.push_reply(&Reply::multi(250, lines));
        Flow::Continue
    }

    fn mail(&mut self, from: String, flags: u64, size: usize) -> Flow {
        if self.helo.is_none() {
            self.errors += 1;
            self.push(reply::NEED_HELO);
            return Flow::Continue;
        }
        if self.tx.is_some() {
            self.errors += 1;
            self.push(reply::NESTED_MAIL);
            return Flow::Continue;
        }
        if self.messages >= self.app.config.limits.max_messages_per_session {
            self.push(reply::TOO_MANY_MESSAGES);
            return Flow::Close;
        }
        let smtputf8 = flags & MAIL_SMTPUTF8 != 0 && self.app.config.server.smtputf8;
        if flags & MAIL_SMTPUTF8 != 0 && !self.app.config.server.smtputf8 {
            self.errors += 1;
            self.push(b"555 5.5.4 Error: SMTPUTF8 not supported\r\n");
            return Flow::Continue;
        }
        if flags & MAIL_BODY_BINARYMIME != 0 {
            self.errors += 1;
            self.push(b"555 5.5.4 Error: BODY=BINARYMIME not supported\r\n");
            return Flow::Continue;
        }
        if !from.is_empty()
            && let Err(r) = check_address(&from, smtputf8, reply::BAD_SENDER)
        {
            self.errors += 1;
            self.push(r);
            return Flow::Continue;
        }
        if size as u64 > self.app.config.limits.max_message_size.0 {
            self.push(reply::TOO_BIG);
            return Flow::Continue;
        }
        if let Some(r) = self.app.storage_floor_reply() {
            self.push(r);
            return Flow::Continue;
        }
        self.tx = Some(Transaction {
            from,
            smtputf8,
            rcpts: Vec::new(),
        });
        self.push(reply::MAIL_OK);
        Flow::Continue
    }

    fn rcpt(&mut self, to: String) -> Flow {
        let max = self.app.config.limits.max_recipients;
        let may_relay = self.auth_user.is_some() || self.app.may_relay(self.peer.ip());
        let Some(tx) = self.tx.as_mut() else {
            self.errors += 1;
            self.push(reply::NEED_MAIL);
            return Flow::Continue;
        };
        if to.is_empty() {
            self.errors += 1;
            self.push(reply::BAD_RCPT);
            return Flow::Continue;
        }
        if let Err(r) = check_address(&to, tx.smtputf8, reply::BAD_RCPT) {
            self.errors += 1;
            self.push(r);
            return Flow::Continue;
        }
        if !may_relay {
            tracing::info!(peer = %self.peer, "relay access denied");
            self.errors += 1;
            self.push(reply::RELAY_DENIED);
            return Flow::Continue;
        }
        if tx.rcpts.len() >= max {
            self.push(reply::TOO_MANY_RCPTS);
            return Flow::Continue;
        }
        if !tx.rcpts.iter().any(|r| r == &to) {
            tx.rcpts.push(to);
        }
        self.push(reply::RCPT_OK);
        Flow::Continue
    }

    fn data(&mut self) -> Flow {
        match &self.tx {
            None => {
                self.errors += 1;
                self.push(reply::NEED_MAIL);
                Flow::Continue
            }
            Some(tx) if tx.rcpts.is_empty() => {
                self.errors += 1;
                self.push(reply::NEED_RCPT);
                Flow::Continue
            }
            Some(_) => Flow::Data,
        }
    }

    fn starttls(&mut self) -> Flow {
        if self.app.tls.is_none() {
            self.errors += 1;
            self.push(reply::NOT_IMPLEMENTED);
            return Flow::Continue;
        }
        if self.is_tls() {
            self.errors += 1;
            self.push(reply::ALREADY_TLS);
            return Flow::Continue;
        }
        Flow::StartTls
    }
}

/// Checks an envelope address; `Err` carries the reply.
fn check_address(addr: &str, smtputf8: bool, syntax: &'static [u8]) -> Result<(), &'static [u8]> {
    if addr.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err(syntax);
    }
    if !addr.is_ascii() && !smtputf8 {
        return Err(reply::NEED_SMTPUTF8);
    }
    if !crate::relay::address_is_relayable(addr) {
        return Err(syntax);
    }
    Ok(())
}

/// The reply for a command smtp-proto could not parse. Parameter names come from the client,
/// so they are reduced to a safe form before they are echoed.
fn parse_error_reply(e: &ProtoError) -> String {
    match e {
        ProtoError::UnknownCommand => String::from_utf8_lossy(reply::UNKNOWN_COMMAND).into_owned(),
        ProtoError::InvalidSenderAddress => String::from_utf8_lossy(reply::BAD_SENDER).into_owned(),
        ProtoError::InvalidRecipientAddress => {
            String::from_utf8_lossy(reply::BAD_RCPT).into_owned()
        }
        ProtoError::SyntaxError { syntax } => format!("501 5.5.4 Syntax: {syntax}\r\n"),
        ProtoError::InvalidParameter { param } => {
            format!("501 5.5.4 Error: invalid parameter {param}\r\n")
        }
        ProtoError::UnsupportedParameter { param } => {
            let safe: String = param
                .chars()
                .take(32)
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            format!("555 5.5.4 Error: unsupported parameter {safe}\r\n")
        }
        ProtoError::ResponseTooLong => String::from_utf8_lossy(reply::LINE_TOO_LONG).into_owned(),
        ProtoError::NeedsMoreData { .. } | ProtoError::InvalidResponse { .. } => {
            "501 5.5.2 Error: syntax error\r\n".to_string()
        }
    }
}
