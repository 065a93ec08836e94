//! The SMTP envelope of one transaction and the facts about the client that sent it.

use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// Everything the session learned about a message apart from its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// `MAIL FROM` address; empty for the null sender `<>`.
    pub mail_from: String,
    /// `RCPT TO` addresses, in the order accepted.
    pub rcpt_to: Vec<String>,
    /// The client declared `SMTPUTF8`.
    #[serde(default)]
    pub smtputf8: bool,
    /// The client's IP address.
    pub client_ip: IpAddr,
    /// The EHLO/HELO name the client gave.
    #[serde(default)]
    pub helo: String,
    /// The authenticated user, if the client used AUTH.
    #[serde(default)]
    pub auth_user: Option<String>,
    /// The session was under TLS.
    #[serde(default)]
    pub tls: bool,
}

impl Envelope {
    /// The sender as the quarantine records it: the authenticated user if any, else the
    /// envelope sender with its domain lower-cased (`<>` for the null sender). The batch
    /// checks use [`sender_key`] with the policy's subaddress delimiters.
    pub fn sender_key(&self) -> String {
        sender_key(self.auth_user.as_deref(), &self.mail_from, "")
    }
}

/// The sender identity of the batch checks (windows, surges, brakes, overrides, notices):
/// `user:NAME` for an authenticated session, else the envelope sender with its domain
/// lower-cased (IDNA) and its local part cut at the first of `delimiters` (a subaddress or
/// VERP tag: with `+`, `bounce+123@x.example` is `bounce@x.example`); `<>` for the null
/// sender. The local part keeps its case (RFC 5321 §2.4: it may be case-sensitive).
pub fn sender_key(auth_user: Option<&str>, mail_from: &str, delimiters: &str) -> String {
    match auth_user {
        Some(user) => format!("user:{user}"),
        None if mail_from.is_empty() => "<>".to_string(),
        None => strip_subaddress(&normalize_address(mail_from), delimiters),
    }
}

/// `local+tag@domain` → `local@domain` for each delimiter in `delimiters` (the first one
/// found cuts). A quoted local part, one that would become empty, or an address without `@`
/// is returned unchanged.
pub fn strip_subaddress(addr: &str, delimiters: &str) -> String {
    let Some((local, domain)) = addr.rsplit_once('@') else {
        return addr.to_string();
    };
    if delimiters.is_empty() || local.starts_with('"') {
        return addr.to_string();
    }
    match local.find(|c| delimiters.contains(c)) {
        Some(cut) if cut > 0 => format!("{}@{domain}", &local[..cut]),
        _ => addr.to_string(),
    }
}

/// Lower-cases the domain of an address and keeps the local part byte-exact
/// (RELIABILITY.md §2.12). Non-ASCII domains are converted to their IDNA ASCII form.
pub fn normalize_address(addr: &str) -> String {
    match addr.rsplit_once('@') {
        Some((local, domain)) => format!("{local}@{}", normalize_domain(domain)),
        None => addr.to_string(),
    }
}

/// The domain of an address, normalised (lower case, IDNA ASCII, no trailing dot).
pub fn domain_of(addr: &str) -> Option<String> {
    addr.rsplit_once('@').map(|(_, d)| normalize_domain(d))
}

/// Lower case, IDNA ASCII (punycode) and without a trailing dot; falls back to the lower-cased
/// input when the domain is not valid IDNA, so odd input still groups consistently.
pub fn normalize_domain(domain: &str) -> String {
    let trimmed = domain.trim().trim_end_matches('.');
    if trimmed.is_ascii() {
        return trimmed.to_ascii_lowercase();
    }
    match idna::domain_to_ascii(trimmed) {
        Ok(ascii) => ascii,
        Err(_) => trimmed.to_lowercase(),
    }
}

/// True when `domain` (normalised) equals one of `internal` or is a subdomain of one.
pub fn is_internal(domain: &str, internal: &[String]) -> bool {
    internal.iter().any(|d| {
        domain == d
            || (domain.len() > d.len()
                && domain.ends_with(d.as_str())
                && domain.as_bytes()[domain.len() - d.len() - 1] == b'.')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_are_normalised() {
        assert_eq!(normalize_address("Foo@Example.COM."), "Foo@example.com");
        assert_eq!(normalize_domain("例え.テスト"), "xn--r8jz45g.xn--zckzah");
        assert_eq!(domain_of("a@B.jp"), Some("b.jp".to_string()));
        assert_eq!(domain_of("postmaster"), None);
    }

    #[test]
    fn sender_keys_drop_the_subaddress() {
        assert_eq!(
            sender_key(None, "bounce+123@Lists.Example", "+"),
            "bounce@lists.example"
        );
        assert_eq!(
            sender_key(None, "bounce+1-2@x.example", "-+"),
            "bounce@x.example"
        );
        assert_eq!(
            sender_key(None, "bounce+1@x.example", ""),
            "bounce+1@x.example"
        );
        assert_eq!(sender_key(None, "+only@x.example", "+"), "+only@x.example");
        assert_eq!(
            sender_key(None, "\"a+b\"@x.example", "+"),
            "\"a+b\"@x.example"
        );
        assert_eq!(sender_key(None, "App+x@x.example", "+"), "App@x.example");
        assert_eq!(sender_key(Some("web+app"), "a+b@x", "+"), "user:web+app");
        assert_eq!(sender_key(None, "", "+"), "<>");
    }

    #[test]
    fn internal_matches_subdomains_only_on_label_boundaries() {
        let internal = vec!["example.co.jp".to_string()];
        assert!(is_internal("example.co.jp", &internal));
        assert!(is_internal("mail.example.co.jp", &internal));
        assert!(!is_internal("badexample.co.jp", &internal));
        assert!(!is_internal("co.jp", &internal));
    }
}
