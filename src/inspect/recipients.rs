//! `too_many_recipients`: how many envelope recipients, and over how many external domains.

use std::collections::HashSet;

use super::Context;
use crate::envelope::{domain_of, is_internal, normalize_address};
use crate::verdict::{Finding, HoldReason};

pub fn check(ctx: &Context<'_>, findings: &mut Vec<Finding>) {
    let rule = &ctx.policy.recipients;
    let internal = &ctx.policy.internal_domains;
    let addrs: HashSet<String> = ctx
        .envelope
        .rcpt_to
        .iter()
        .map(|a| normalize_address(a).to_lowercase())
        .collect();
    let external_domains: HashSet<String> = addrs
        .iter()
        .filter_map(|a| domain_of(a))
        .filter(|d| !is_internal(d, internal))
        .collect();
    let n = addrs.len();
    let d = external_domains.len();
    if n > rule.max_envelope || d > rule.max_external_domains {
        findings.push(Finding {
            reason: HoldReason::TooManyRecipients,
            action: rule.action,
            summary: format!(
                "{n} envelope recipients in {d} external domains (policy allows {} recipients, {} external domains)",
                rule.max_envelope, rule.max_external_domains
            ),
            location: "envelope".into(),
            count: Some(n as u64),
            columns: Vec::new(),
        });
    }
}
