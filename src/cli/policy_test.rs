//! `mailbrake policy test FILE.eml`: the server's inspection and policy, offline.

use mail_parser::{HeaderName, HeaderValue, MessageParser};
use serde_json::json;
use std::path::{Path, PathBuf};

use super::Exit;
use super::output::escape;
use crate::envelope::Envelope;
use crate::inspect;
use crate::policy::Policy;

pub fn run(
    file: &Path,
    from: Option<String>,
    to: Vec<String>,
    json: bool,
    policies: Option<PathBuf>,
    config: Option<PathBuf>,
) -> Exit {
    let cfg = match super::load_config(config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mailbrake: {e}");
            return Exit::Usage;
        }
    };
    let dir = policies.or_else(|| cfg.policy_dir());
    let policy = match Policy::load(dir.as_deref()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("mailbrake: {e}");
            return Exit::Usage;
        }
    };
    let raw = match std::fs::read(file) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mailbrake: cannot read {}: {e}", file.display());
            return Exit::NotFound;
        }
    };
    let message = normalize(&raw);
    let (hdr_from, hdr_rcpts) = header_envelope(&message);
    let envelope = Envelope {
        mail_from: from.or(hdr_from).unwrap_or_default(),
        rcpt_to: if to.is_empty() { hdr_rcpts } else { to },
        smtputf8: false,
        client_ip: std::net::IpAddr::from([127, 0, 0, 1]),
        helo: "policy-test".into(),
        auth_user: None,
        tls: false,
    };
    let report = inspect::inspect(&envelope, &message, &policy);
    let verdict = policy.decide(report.findings);
    if json {
        let v = json!({
            "verdict": verdict.decision.as_str(),
            "policy_verdict": verdict.policy_decision.as_str(),
            "mode": if verdict.monitor { "monitor" } else { "enforce" },
            "reasons": verdict.reasons,
            "findings": verdict.findings,
            "envelope": { "from": envelope.mail_from, "rcpt_count": envelope.rcpt_to.len() },
            "size": message.len(),
        });
        println!("{v}");
        return Exit::Ok;
    }
    let reasons: Vec<&str> = verdict.reasons.iter().map(|r| r.as_str()).collect();
    print!("verdict: {}", verdict.decision.as_str());
    if !reasons.is_empty() {
        print!(" ({})", reasons.join(", "));
    }
    if verdict.monitor && verdict.policy_decision != verdict.decision {
        print!(
            " — monitor mode; enforce mode would {}",
            verdict.policy_decision.as_str()
        );
    }
    println!();
    println!(
        "envelope: from {} to {} recipient(s); {} bytes",
        if envelope.mail_from.is_empty() {
            "<>".into()
        } else {
            escape(&envelope.mail_from)
        },
        envelope.rcpt_to.len(),
        message.len()
    );
    if verdict.findings.is_empty() {
        println!("findings: none");
    } else {
        println!("findings:");
        for f in &verdict.findings {
            println!(
                "  - {} ({}) in {}: {}",
                f.reason,
                f.action.as_str(),
                escape(&f.location),
                escape(&f.summary)
            );
        }
    }
    Exit::Ok
}

/// The bytes as the relay would see them after DATA: every bare CR or LF turned into CRLF
/// (files on disk often use LF line ends), as the DATA receiver normalises them.
fn normalize(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 40);
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'\r' if raw.get(i + 1) == Some(&b'\n') => {
                out.extend_from_slice(b"\r\n");
                i += 2;
            }
            b'\r' | b'\n' => {
                out.extend_from_slice(b"\r\n");
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// Envelope defaults from the headers: From, and To + Cc + Bcc.
fn header_envelope(message: &[u8]) -> (Option<String>, Vec<String>) {
    let Some(m) = MessageParser::default().parse(message) else {
        return (None, Vec::new());
    };
    let first = |name: HeaderName<'static>| -> Vec<String> {
        m.header_values(name)
            .filter_map(|v| match v {
                HeaderValue::Address(a) => Some(
                    a.iter()
                        .filter_map(|x| x.address.as_deref().map(str::to_string))
                        .collect::<Vec<_>>(),
                ),
                _ => None,
            })
            .flatten()
            .collect()
    };
    let from = first(HeaderName::From).into_iter().next();
    let mut rcpts = first(HeaderName::To);
    rcpts.extend(first(HeaderName::Cc));
    rcpts.extend(first(HeaderName::Bcc));
    (from, rcpts)
}
