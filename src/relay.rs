//! Delivery of clean (and released) mail: to the upstream with lettre, or to the local outbox.
//!
//! mailbrake is a before-queue proxy (DESIGN.md §2.2): the client's final dot is answered with
//! the upstream's own reply. An upstream that is down or answers 4xx becomes `451 4.4.1` (the
//! client retries); a 5xx is passed through. lettre dot-stuffs only after CRLF, so message
//! bytes reach this module with every bare CR and LF already normalised by the DATA receiver.

use lettre::address::{Address, Envelope as LettreEnvelope};
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use std::path::PathBuf;
use std::str::FromStr;

use crate::config::UpstreamConfig;
use crate::envelope::Envelope;
use crate::quarantine::spool;
use crate::smtp::reply::Reply;

/// How the upstream connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamTls {
    /// `smtps://`: TLS from the first byte (RFC 8314), immune to STARTTLS stripping and to the
    /// response injection lettre's STARTTLS path accepts (ECOSYSTEM.md §3.2). Preferred.
    Implicit,
    /// `smtp://`: STARTTLS when the upstream offers it.
    Opportunistic,
    /// `smtp+plain://`: never TLS (a relay on the same host or a trusted segment).
    Plain,
}

/// A parsed upstream URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamUrl {
    pub tls: UpstreamTls,
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl UpstreamUrl {
    /// Parses `smtps://[user:pass@]host[:port]`, `smtp://...`, `smtp+plain://...`.
    pub fn parse(url: &str) -> Result<UpstreamUrl, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("{url:?} is not a URL (smtps://host:465)"))?;
        let (tls, default_port) = match scheme.to_ascii_lowercase().as_str() {
            "smtps" => (UpstreamTls::Implicit, 465),
            "smtp" => (UpstreamTls::Opportunistic, 25),
            "smtp+plain" => (UpstreamTls::Plain, 25),
            other => {
                return Err(format!(
                    "unknown scheme {other:?}: use smtps, smtp or smtp+plain"
                ));
            }
        };
        let rest = rest.trim_end_matches('/');
        let (userinfo, hostport) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest),
        };
        let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
            let (h, tail) = h.split_once(']').ok_or("unclosed [ in host")?;
            let port = match tail.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| format!("bad port {p:?}"))?,
                None => default_port,
            };
            (h.to_string(), port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (
                    h.to_string(),
                    p.parse().map_err(|_| format!("bad port {p:?}"))?,
                ),
                None => (hostport.to_string(), default_port),
            }
        };
        if host.is_empty() || host.contains(['/', '?', '#', ' ']) {
            return Err(format!("bad host {host:?}"));
        }
        let (username, password) = match userinfo {
            Some(u) => match u.split_once(':') {
                Some((n, p)) => (Some(percent_decode(n)), Some(percent_decode(p))),
                None => (Some(percent_decode(u)), None),
            },
            None => (None, None),
        };
        Ok(UpstreamUrl {
            tls,
            host,
            port,
            username,
            password,
        })
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) =
                u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
        {
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Why a delivery did not succeed, with the reply the client should get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryError {
    /// Try again later (`451 4.4.1`, or another 4xx).
    Temporary(Reply),
    /// The upstream refused the message for good (its own 5xx).
    Permanent(Reply),
}

impl DeliveryError {
    pub fn reply(&self) -> &Reply {
        match self {
            DeliveryError::Temporary(r) | DeliveryError::Permanent(r) => r,
        }
    }
}

/// Where clean mail goes.
pub enum Relay {
    Upstream {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        label: String,
    },
    /// No upstream configured: `.eml` files in `<data-dir>/outbox/`.
    Outbox { dir: PathBuf, tmp: PathBuf },
}

impl Relay {
    /// Builds the relay from the configuration.
    pub fn new(
        cfg: &UpstreamConfig,
        hostname: &str,
        data_dir: &std::path::Path,
    ) -> Result<Relay, String> {
        let Some(url) = &cfg.url else {
            let dir = data_dir.join("outbox");
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            return Ok(Relay::Outbox {
                dir,
                tmp: data_dir.join("spool").join("tmp"),
            });
        };
        let u = UpstreamUrl::parse(url)?;
        let mut params = TlsParameters::builder(u.host.clone());
        if let Some(ca) = &cfg.ca_file {
            let pem =
                std::fs::read(ca).map_err(|e| format!("upstream.ca_file {}: {e}", ca.display()))?;
            let cert = Certificate::from_pem(&pem).map_err(|e| format!("upstream.ca_file: {e}"))?;
            params = params.add_root_certificate(cert);
        }
        let params = params
            .build_rustls()
            .map_err(|e| format!("upstream TLS: {e}"))?;
        let has_credentials = cfg.username.is_some() || u.username.is_some();
        let tls = match u.tls {
            UpstreamTls::Implicit => Tls::Wrapper(params),
            // With credentials, STARTTLS is required: lettre would otherwise log in over
            // plaintext when the upstream does not offer STARTTLS (or it is stripped).
            UpstreamTls::Opportunistic if has_credentials => Tls::Required(params),
            UpstreamTls::Opportunistic => Tls::Opportunistic(params),
            UpstreamTls::Plain => Tls::None,
        };
        let hello = cfg
            .hello_name
            .clone()
            .unwrap_or_else(|| hostname.to_string());
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(u.host.clone())
            .port(u.port)
            .tls(tls)
            .timeout(Some(cfg.timeout))
            .hello_name(ClientId::Domain(hello))
            .pool_config(PoolConfig::new().max_size(cfg.pool_size));
        let password = match (&cfg.password, &cfg.password_file, &u.password) {
            (Some(p), _, _) => Some(p.clone()),
            (None, Some(f), _) => Some(
                std::fs::read_to_string(f)
                    .map_err(|e| format!("upstream.password_file {}: {e}", f.display()))?
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_string(),
            ),
            (None, None, p) => p.clone(),
        };
        if let Some(user) = cfg.username.clone().or(u.username.clone()) {
            b = b
                .credentials(Credentials::new(user, password.unwrap_or_default()))
                .authentication(vec![Mechanism::Plain, Mechanism::Login]);
        }
        let label = format!("{}:{}", u.host, u.port);
        Ok(Relay::Upstream {
            transport: b.build(),
            label,
        })
    }

    /// A short description for logs (`host:port` or `outbox`), never with credentials.
    pub fn label(&self) -> &str {
        match self {
            Relay::Upstream { label, .. } => label,
            Relay::Outbox { .. } => "outbox",
        }
    }

    /// Delivers one message; `id` names it in the outbox and in logs.
    pub async fn deliver(
        &self,
        id: &str,
        env: &Envelope,
        message: &[u8],
    ) -> Result<Reply, DeliveryError> {
        match self {
            Relay::Upstream { transport, .. } => {
                let envelope = lettre_envelope(env)?;
                // lettre always writes `\r\n.\r\n` after the content, so the content's own
                // final CRLF is left out here; otherwise every hop would add an empty line.
                let content = message.strip_suffix(b"\r\n").unwrap_or(message);
                match transport.send_raw(&envelope, content).await {
                    Ok(resp) => {
                        let code = resp.code().to_string().parse().unwrap_or(250);
                        Ok(Reply::multi(code, resp.message()))
                    }
                    Err(e) => Err(map_error(&e)),
                }
            }
            Relay::Outbox { dir, tmp } => {
                let dir = dir.clone();
                let tmp = tmp.clone();
                let id = id.to_string();
                let head = outbox_header(env);
                let body = message.to_vec();
                let result = tokio::task::spawn_blocking(move || {
                    let path = dir.join(format!("{id}.eml"));
                    spool::write_file_durable(&tmp, &path, &[head.as_bytes(), &body]).map(|()| id)
                })
                .await;
                match result {
                    Ok(Ok(id)) => Ok(Reply::new(
                        250,
                        format!("2.0.0 Ok: queued as {id} (outbox)"),
                    )),
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "cannot write to the outbox");
                        Err(DeliveryError::Temporary(Reply::new(
                            451,
                            "4.3.0 Error: cannot write to the outbox",
                        )))
                    }
                    Err(_) => Err(DeliveryError::Temporary(Reply::new(
                        451,
                        "4.3.0 Error: local error",
                    ))),
                }
            }
        }
    }
}

/// `Return-Path` and `X-Envelope-To`, as a local delivery agent records them. Addresses were
/// validated by the session (no CR, LF or NUL).
fn outbox_header(env: &Envelope) -> String {
    format!(
        "Return-Path: <{}>\r\nX-Envelope-To: {}\r\n",
        env.mail_from,
        env.rcpt_to.join(", ")
    )
}

fn lettre_envelope(env: &Envelope) -> Result<LettreEnvelope, DeliveryError> {
    let bad = |what: &str| {
        DeliveryError::Permanent(Reply::new(
            553,
            format!("5.1.3 Error: {what} address cannot be relayed"),
        ))
    };
    let from = if env.mail_from.is_empty() {
        None
    } else {
        Some(Address::from_str(&env.mail_from).map_err(|_| bad("sender"))?)
    };
    let to = env
        .rcpt_to
        .iter()
        .map(|r| Address::from_str(r).map_err(|_| bad("recipient")))
        .collect::<Result<Vec<_>, _>>()?;
    LettreEnvelope::new(from, to).map_err(|_| bad("recipient"))
}

/// True when lettre can represent `addr` in an envelope (checked at MAIL/RCPT time so that
/// nothing is accepted that cannot be forwarded).
pub fn address_is_relayable(addr: &str) -> bool {
    Address::from_str(addr).is_ok()
}

fn map_error(e: &lettre::transport::smtp::Error) -> DeliveryError {
    use std::error::Error as _;
    let text = e.source().map(|s| s.to_string()).unwrap_or_default();
    if e.is_permanent() {
        let code = e
            .status()
            .and_then(|c| c.to_string().parse::<u16>().ok())
            .unwrap_or(554);
        return DeliveryError::Permanent(Reply::new(code, upstream_text(&text, "5.0.0")));
    }
    if e.is_client() && text.contains("SMTPUTF8") {
        return DeliveryError::Permanent(Reply::new(
            553,
            "5.6.7 Error: the upstream does not accept non-ASCII addresses (SMTPUTF8)",
        ));
    }
    if e.is_client() && text.contains("8BITMIME") {
        return DeliveryError::Permanent(Reply::new(
            554,
            "5.6.3 Error: the upstream does not accept 8-bit content (8BITMIME)",
        ));
    }
    tracing::warn!(error = %e, "upstream delivery failed temporarily");
    DeliveryError::Temporary(Reply::new(
        451,
        "4.4.1 Error: upstream temporarily unavailable, try again later",
    ))
}

/// The upstream's text, with an enhanced code in front if it gave none.
fn upstream_text(text: &str, default_esc: &str) -> String {
    let starts_with_esc = text.split(' ').next().is_some_and(|w| {
        w.split('.').count() == 3
            && w.split('.')
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    });
    if starts_with_esc || text.is_empty() {
        if text.is_empty() {
            format!("{default_esc} Error: refused by the upstream")
        } else {
            text.to_string()
        }
    } else {
        format!("{default_esc} {text}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = UpstreamUrl::parse("smtps://user:p%40ss@mail.example.com").unwrap();
        assert_eq!(u.tls, UpstreamTls::Implicit);
        assert_eq!(u.port, 465);
        assert_eq!(u.username.as_deref(), Some("user"));
        assert_eq!(u.password.as_deref(), Some("p@ss"));
        let u = UpstreamUrl::parse("smtp://127.0.0.1:2526").unwrap();
        assert_eq!(
            (u.tls, u.host.as_str(), u.port),
            (UpstreamTls::Opportunistic, "127.0.0.1", 2526)
        );
        let u = UpstreamUrl::parse("smtp+plain://[::1]:25").unwrap();
        assert_eq!(
            (u.tls, u.host.as_str(), u.port),
            (UpstreamTls::Plain, "::1", 25)
        );
        assert!(UpstreamUrl::parse("http://x").is_err());
        assert!(UpstreamUrl::parse("smtp://:25").is_err());
        assert!(UpstreamUrl::parse("smtp://h:port").is_err());
        assert!(UpstreamUrl::parse("nourl").is_err());
    }

    #[test]
    fn upstream_text_keeps_or_adds_the_enhanced_code() {
        assert_eq!(
            upstream_text("5.1.1 no such user", "5.0.0"),
            "5.1.1 no such user"
        );
        assert_eq!(upstream_text("no such user", "5.0.0"), "5.0.0 no such user");
    }
}
