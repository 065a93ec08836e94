//! `visible_recipients`: addresses every recipient can see in To and Cc (incident 2).
//!
//! Every To and Cc header counts (a message may carry several), groups included. Bcc and
//! envelope-only recipients are invisible and do not count. Internal domains come from the
//! policy; nothing is guessed.

use mail_parser::{HeaderName, HeaderValue};
use std::collections::HashSet;

use super::Context;
use crate::envelope::{domain_of, is_internal};
use crate::verdict::{Finding, HoldReason};

/// `attendees`: the ATTENDEE addresses of calendar parts, visible to every invitee too.
pub fn check(ctx: &Context<'_>, attendees: &[String], findings: &mut Vec<Finding>) {
    let Some(msg) = &ctx.message else { return };
    let rule = &ctx.policy.visible_recipients;
    let internal = &ctx.policy.internal_domains;
    let mut external: HashSet<String> = HashSet::new();
    let mut domains: HashSet<String> = HashSet::new();
    for a in attendees {
        if let Some(domain) = domain_of(a)
            && !is_internal(&domain, internal)
        {
            external.insert(a.to_lowercase());
            domains.insert(domain);
        }
    }
    for name in [HeaderName::To, HeaderName::Cc] {
        for value in msg.header_values(name) {
            let HeaderValue::Address(list) = value else {
                continue;
            };
            for addr in list.iter() {
                let Some(a) = addr.address.as_deref() else {
                    continue;
                };
                let a = a.trim().to_lowercase();
                let Some(domain) = domain_of(&a) else {
                    continue;
                };
                if is_internal(&domain, internal) {
                    continue;
                }
                external.insert(a);
                domains.insert(domain);
            }
        }
    }
    let (n, d) = (external.len(), domains.len());
    if n > rule.max_external_addresses || d > rule.max_external_domains {
        findings.push(Finding {
            reason: HoldReason::VisibleRecipients,
            action: rule.action,
            summary: format!(
                "To/Cc show {n} external addresses in {d} domains (policy allows {} addresses, {} domains)",
                rule.max_external_addresses, rule.max_external_domains
            ),
            location: if attendees.is_empty() { "header To/Cc".into() } else { "header To/Cc and calendar attendees".into() },
            count: Some(n as u64),
            columns: Vec::new(),
        });
    }
}

#[cfg(test)]
mod tests {
    use crate::envelope::Envelope;
    use crate::inspect::inspect;
    use crate::policy::Policy;
    use crate::verdict::HoldReason;

    fn env() -> Envelope {
        Envelope {
            mail_from: "a@corp.example".into(),
            rcpt_to: vec!["b@x.example".into()],
            smtputf8: false,
            client_ip: "127.0.0.1".parse().unwrap(),
            helo: "h".into(),
            auth_user: None,
            tls: false,
        }
    }

    fn to_list(n: usize, domains: usize) -> String {
        (0..n)
            .map(|i| format!("m{i}@d{}.example", i % domains))
            .collect::<Vec<_>>()
            .join(", ")
    }

    #[test]
    fn incident_2_shape_is_held_and_a_thread_is_not() {
        let mut policy = Policy::builtin().unwrap();
        policy.internal_domains = vec!["corp.example".into()];
        let big = format!(
            "From: a@corp.example\r\nTo: {}\r\nSubject: news\r\n\r\nhi\r\n",
            to_list(832, 400)
        );
        let r = inspect(&env(), big.as_bytes(), &policy);
        assert!(
            r.findings
                .iter()
                .any(|f| f.reason == HoldReason::VisibleRecipients && f.count == Some(832))
        );

        let thread = format!(
            "From: a@corp.example\r\nTo: {}\r\nCc: {}, x@corp.example\r\nSubject: re\r\n\r\nhi\r\n",
            to_list(6, 2),
            to_list(6, 3)
        );
        let r = inspect(&env(), thread.as_bytes(), &policy);
        assert!(r.findings.is_empty(), "{:?}", r.findings);
    }

    #[test]
    fn several_to_headers_and_groups_all_count() {
        let policy = Policy::builtin().unwrap();
        let msg = format!(
            "To: {}\r\nTo: {}\r\nCc: list: {};\r\n\r\nx\r\n",
            to_list(8, 8),
            to_list(8, 8).replace("m", "n"),
            to_list(8, 8).replace("m", "o")
        );
        let r = inspect(&env(), msg.as_bytes(), &policy);
        let f = r
            .findings
            .iter()
            .find(|f| f.reason == HoldReason::VisibleRecipients)
            .unwrap();
        assert_eq!(f.count, Some(24));
    }
}
