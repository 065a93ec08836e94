//! Inspection: parse a message once and run every check over it.
//!
//! Each check lives in its own module and reads the same [`Context`]: the envelope, the raw
//! bytes and the one parse of them. A check returns findings only when its policy threshold
//! is exceeded; the policy then turns findings into a verdict. Inspection is synchronous and
//! CPU-bound by design: the server runs it on a blocking thread with a deadline.

pub mod budget;
pub mod content;
pub mod entities;
pub mod extract;
pub mod lexicon;
pub mod names;
pub mod normalize;
pub mod prose;
mod recipients;
pub mod table;
mod visible;

use mail_parser::{Message, MessageParser};

use crate::envelope::Envelope;
use crate::policy::Policy;
use crate::verdict::{Action, Finding, HoldReason};

/// What every check can see. Built once per message.
pub struct Context<'a> {
    pub envelope: &'a Envelope,
    pub raw: &'a [u8],
    /// The single parse of `raw`; `None` if it could not be parsed at all.
    pub message: Option<Message<'a>>,
    pub policy: &'a Policy,
}

/// The result of inspecting one message.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub findings: Vec<Finding>,
    /// Every leaf attachment with its SHA-256 (for "same attachment" checks).
    pub attachments: Vec<extract::Attachment>,
    /// The decoded Subject (at most 200 characters), for the operator's quarantine list.
    pub subject: Option<String>,
}

/// Inspects one message against `policy`.
pub fn inspect(envelope: &Envelope, raw: &[u8], policy: &Policy) -> Report {
    let ctx = Context {
        envelope,
        raw,
        message: MessageParser::default().parse(raw),
        policy,
    };
    let mut findings = Vec::new();
    if ctx.message.is_none() {
        findings.push(Finding {
            reason: HoldReason::Uninspectable,
            action: Action::Hold,
            summary: "the message could not be parsed as MIME".into(),
            location: "message".into(),
            count: None,
            columns: Vec::new(),
        });
    }
    recipients::check(&ctx, &mut findings);
    visible::check(&ctx, &mut findings);
    let mut attachments = Vec::new();
    if let Some(message) = &ctx.message {
        let budget = budget::Budget::new(policy.inspection.limits());
        let extracted = extract::extract(message, &budget);
        let parts = content::analyze(&extracted, entities::current_year());
        findings.extend(content::findings(&parts, &extracted, policy));
        attachments = extracted.attachments;
    }
    let subject = ctx
        .message
        .as_ref()
        .and_then(|m| m.subject())
        .map(|s| s.chars().take(200).collect());
    Report {
        findings,
        attachments,
        subject,
    }
}

/// The finding used when inspection cannot finish (deadline passed, inspector failed).
pub fn uninspectable(why: &str) -> Finding {
    Finding {
        reason: HoldReason::Uninspectable,
        action: Action::Hold,
        summary: format!("inspection did not complete: {why}"),
        location: "message".into(),
        count: None,
        columns: Vec::new(),
    }
}
