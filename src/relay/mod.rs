//! Delivery of clean (and released) mail: to the upstream, or to the local outbox.
//!
//! mailbrake is a before-queue proxy (DESIGN.md §2.2): the client's final dot is answered with
//! the upstream's own reply. An upstream that is down or answers 4xx becomes `451 4.4.1` (the
//! client retries); a 5xx is passed through. Message bytes reach this module with every bare
//! CR and LF already normalised by the DATA receiver.
//!
//! The upstream client is our own ([`client`], [`pool`], [`wire`]), not lettre: lettre 0.11
//! sets no TCP_NODELAY (40 ms per message on loopback), sends one command per round trip,
//! re-encodes the body byte by byte into a second copy, and its STARTTLS path accepts a reply
//! injected before the handshake (ECOSYSTEM.md §3.2). lettre still validates addresses.

pub mod client;
pub mod pool;
pub mod wire;

use lettre::address::Address;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

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
    /// `smtp://`: STARTTLS when the upstream offers it (required when credentials are set).
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
        pool: pool::Pool,
        label: String,
    },
    /// No upstream configured: `.eml` files in `<data-dir>/outbox/`.
    Outbox {
        dir: PathBuf,
        tmp: PathBuf,
    },
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
            std::os::unix::fs::DirBuilderExt::mode(
                std::fs::DirBuilder::new().recursive(true),
                0o700,
            )
            .create(&dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?;
            return Ok(Relay::Outbox {
                dir,
                tmp: data_dir.join("spool").join("tmp"),
            });
        };
        let u = UpstreamUrl::parse(url)?;
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        if let Some(ca) = &cfg.ca_file {
            use rustls_pki_types::pem::PemObject;
            let certs = rustls_pki_types::CertificateDer::pem_file_iter(ca)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("upstream.ca_file {}: {e}", ca.display()))?;
            for c in certs {
                roots.add(c).map_err(|e| format!("upstream.ca_file: {e}"))?;
            }
        }
        let tls_config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("upstream TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let server_name = rustls_pki_types::ServerName::try_from(u.host.clone())
            .map_err(|e| format!("upstream host {:?}: {e}", u.host))?;
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
        let credentials = cfg
            .username
            .clone()
            .or(u.username.clone())
            .map(|user| (user, password.unwrap_or_default()));
        let settings = client::Settings {
            host: u.host.clone(),
            port: u.port,
            tls: u.tls,
            tls_config: Arc::new(tls_config),
            server_name,
            hello: cfg
                .hello_name
                .clone()
                .unwrap_or_else(|| hostname.to_string()),
            credentials,
            timeout: cfg.timeout,
        };
        let label = format!("{}:{}", u.host, u.port);
        Ok(Relay::Upstream {
            pool: pool::Pool::new(settings, cfg.pool_size as usize),
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
            Relay::Upstream { pool, .. } => match pool.send(env, message).await {
                Ok(r) => Ok(r),
                Err(client::ClientError::Rejected(r)) if r.is_permanent() => {
                    Err(DeliveryError::Permanent(Reply::new(
                        r.code,
                        upstream_text(&r.lines.join(" "), "5.0.0"),
                    )))
                }
                Err(client::ClientError::Unsupported(r)) => Err(DeliveryError::Permanent(r)),
                Err(e) => {
                    tracing::warn!(error = ?e, "upstream delivery failed temporarily");
                    Err(DeliveryError::Temporary(Reply::new(
                        451,
                        "4.4.1 Error: upstream temporarily unavailable, try again later",
                    )))
                }
            },
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

/// True when lettre can represent `addr` in an envelope (checked at MAIL/RCPT time so that
/// nothing is accepted that cannot be forwarded).
pub fn address_is_relayable(addr: &str) -> bool {
    Address::from_str(addr).is_ok()
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
