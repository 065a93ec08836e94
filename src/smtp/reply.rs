//! SMTP replies: a code plus one or more text lines, written in one buffer.

use std::fmt;

/// A reply to the client. The text lines carry the enhanced status code (`2.0.0 Ok ...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    /// A single-line reply. Control characters in `text` are replaced, so a reply can never
    /// carry a line break that a client would read as a second reply.
    pub fn new(code: u16, text: impl AsRef<str>) -> Reply {
        Reply {
            code,
            lines: vec![sanitize(text.as_ref())],
        }
    }

    /// A reply with several lines (e.g. an upstream's multi-line reply).
    pub fn multi<I, S>(code: u16, lines: I) -> Reply
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut lines: Vec<String> = lines.into_iter().map(|l| sanitize(l.as_ref())).collect();
        if lines.is_empty() {
            lines.push(String::new());
        }
        Reply { code, lines }
    }

    /// 2xx.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// 5xx.
    pub fn is_permanent(&self) -> bool {
        (500..600).contains(&self.code)
    }

    /// Appends the wire form (`250-a\r\n250 b\r\n`) to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let last = self.lines.len().saturating_sub(1);
        for (i, line) in self.lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            out.extend_from_slice(format!("{}{}{}\r\n", self.code, sep, line).as_bytes());
        }
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.lines.join(" / "))
    }
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

// Fixed replies of DESIGN.md §4 and the protocol, as wire bytes.
pub const OK: &[u8] = b"250 2.0.0 Ok\r\n";
pub const MAIL_OK: &[u8] = b"250 2.1.0 Ok\r\n";
pub const RCPT_OK: &[u8] = b"250 2.1.5 Ok\r\n";
pub const DATA_GO: &[u8] = b"354 End data with <CR><LF>.<CR><LF>\r\n";
pub const BYE: &[u8] = b"221 2.0.0 Bye\r\n";
pub const VRFY: &[u8] =
    b"252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery\r\n";
pub const HELP: &[u8] = b"214 2.0.0 See https://www.rfc-editor.org/rfc/rfc5321\r\n";
pub const TLS_GO: &[u8] = b"220 2.0.0 Ready to start TLS\r\n";
pub const LINE_TOO_LONG: &[u8] = b"500 5.5.2 Error: line too long\r\n";
pub const CONTROL_CHARS: &[u8] = b"501 5.5.2 Error: control characters in command\r\n";
pub const UNKNOWN_COMMAND: &[u8] = b"500 5.5.2 Error: command not recognized\r\n";
pub const NOT_IMPLEMENTED: &[u8] = b"502 5.5.1 Error: command not implemented\r\n";
pub const NEED_HELO: &[u8] = b"503 5.5.1 Error: send HELO/EHLO first\r\n";
pub const NESTED_MAIL: &[u8] = b"503 5.5.1 Error: nested MAIL command\r\n";
pub const NEED_MAIL: &[u8] = b"503 5.5.1 Error: need MAIL command\r\n";
pub const NEED_RCPT: &[u8] = b"503 5.5.1 Error: need RCPT command\r\n";
pub const ALREADY_TLS: &[u8] = b"503 5.5.1 Error: TLS already active\r\n";
pub const ALREADY_AUTH: &[u8] = b"503 5.5.1 Error: already authenticated\r\n";
pub const AUTH_IN_TX: &[u8] = b"503 5.5.1 Error: AUTH not allowed during a mail transaction\r\n";
pub const SYNC_ERROR: &[u8] = b"554 5.5.0 Error: SMTP protocol synchronization\r\n";
pub const TOO_MANY_RCPTS: &[u8] = b"452 4.5.3 Error: too many recipients\r\n";
pub const TOO_BIG: &[u8] = b"552 5.3.4 Error: message size exceeds fixed limit\r\n";
pub const BARE_LF: &[u8] = b"550 5.5.2 Error: bare <CR> or <LF> received\r\n";
pub const RELAY_DENIED: &[u8] = b"554 5.7.1 Error: relay access denied\r\n";
pub const BAD_SENDER: &[u8] = b"501 5.1.7 Error: bad sender address syntax\r\n";
pub const BAD_RCPT: &[u8] = b"501 5.1.3 Error: bad recipient address syntax\r\n";
pub const NEED_SMTPUTF8: &[u8] = b"553 5.6.7 Error: non-ASCII address needs SMTPUTF8\r\n";
pub const NO_STORAGE: &[u8] = b"452 4.3.1 Error: insufficient system storage\r\n";
pub const STORE_FAILED: &[u8] = b"451 4.3.5 Error: unable to store message, try again later\r\n";
pub const UPSTREAM_TEMP: &[u8] =
    b"451 4.4.1 Error: upstream temporarily unavailable, try again later\r\n";
pub const LOCAL_ERROR: &[u8] = b"451 4.3.0 Error: local error in processing, try again later\r\n";
pub const TOO_MANY_CONNECTIONS: &[u8] =
    b"421 4.7.0 Error: too many connections, try again later\r\n";
pub const TOO_MANY_ERRORS: &[u8] = b"421 4.7.0 Error: too many errors, closing connection\r\n";
pub const TOO_MANY_MESSAGES: &[u8] = b"421 4.7.0 Error: too many messages in one session\r\n";
pub const SHUTTING_DOWN: &[u8] = b"421 4.3.2 Error: service shutting down, try again later\r\n";
pub const TIMEOUT: &[u8] = b"421 4.4.2 Error: timeout exceeded, closing connection\r\n";
pub const SESSION_DEADLINE: &[u8] = b"421 4.4.2 Error: session time limit exceeded\r\n";
pub const AUTH_OK: &[u8] = b"235 2.7.0 Authentication successful\r\n";
pub const AUTH_FAILED: &[u8] = b"535 5.7.8 Error: authentication failed\r\n";
pub const AUTH_NEEDS_TLS: &[u8] = b"530 5.7.0 Must issue a STARTTLS command first\r\n";
pub const AUTH_NOT_AVAILABLE: &[u8] = b"502 5.5.1 Error: authentication not enabled\r\n";
pub const AUTH_MECH: &[u8] = b"504 5.5.4 Error: unsupported authentication mechanism\r\n";
pub const AUTH_CANCELLED: &[u8] = b"501 5.7.0 Error: authentication cancelled\r\n";
pub const AUTH_BAD_B64: &[u8] = b"501 5.5.2 Error: cannot decode response\r\n";
pub const AUTH_USER_LOCKED: &[u8] =
    b"454 4.7.0 Error: temporary authentication failure, try again later\r\n";
pub const AUTH_THROTTLED: &[u8] =
    b"421 4.7.0 Error: too many authentication failures, try again later\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_form_and_sanitising() {
        let mut out = Vec::new();
        Reply::multi(250, ["a", "b\r\n250 injected"]).write_to(&mut out);
        assert_eq!(out, b"250-a\r\n250 b  250 injected\r\n");
        assert!(Reply::new(550, "x").is_permanent());
    }
}
