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
pub mod mime_prescan;
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
    /// Attachments a content finding points at (SHA-256 hex): what a hold makes "known".
    pub implicated: Vec<String>,
    /// Hashed personal identifiers of the content (cross-recipient check).
    pub tokens: Vec<u64>,
    /// The decoded Subject (at most 200 characters), for the operator's quarantine list.
    pub subject: Option<String>,
}

/// Inspects one message against `policy`.
pub fn inspect(envelope: &Envelope, raw: &[u8], policy: &Policy) -> Report {
    inspect_with(envelope, raw, policy, &|_| false)
}

/// [`inspect`], where `known` recognises the attachments of held messages: a message carrying
/// one is held as `known_attachment` without its content being scanned again.
///
/// A panic anywhere in the inspectors (a parser bug) holds the message as `uninspectable`
/// rather than unwinding into the caller (the relay's blocking task, or `policy test`).
pub fn inspect_with(
    envelope: &Envelope,
    raw: &[u8],
    policy: &Policy,
    known: &dyn Fn(&[u8; 32]) -> bool,
) -> Report {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        inspect_unguarded(envelope, raw, policy, known)
    }))
    .unwrap_or_else(|_| Report {
        findings: vec![uninspectable("the inspector failed")],
        ..Report::default()
    })
}

fn inspect_unguarded(
    envelope: &Envelope,
    raw: &[u8],
    policy: &Policy,
    known: &dyn Fn(&[u8; 32]) -> bool,
) -> Report {
    let limits = policy.inspection.limits();
    let bomb = mime_prescan::too_many_parts(raw, limits.max_parts);
    let parsed = if bomb.is_some() {
        None
    } else {
        // mail-parser 0.11 panics on some malformed structures ("Invalid part ID").
        std::panic::catch_unwind(|| MessageParser::default().parse(raw)).unwrap_or(None)
    };
    let ctx = Context {
        envelope,
        raw,
        message: parsed,
        policy,
    };
    let mut findings = Vec::new();
    // Content that cannot be read (a MIME bomb, a parse failure, a limit, the inspection's own
    // deadline) follows `[uninspectable] action`; mailbrake's own failures (a panic, the
    // server's inspect_timeout) are always held.
    let unreadable = |why: &str| Finding {
        action: policy.uninspectable.action,
        ..uninspectable(why)
    };
    if let Some(why) = bomb {
        findings.push(unreadable(why));
    } else if ctx.message.is_none() {
        findings.push(Finding {
            reason: HoldReason::Uninspectable,
            action: policy.uninspectable.action,
            summary: "the message could not be parsed as MIME".into(),
            location: "message".into(),
            count: None,
            columns: Vec::new(),
        });
    }
    recipients::check(&ctx, &mut findings);
    let mut attachments = Vec::new();
    let mut attendees = Vec::new();
    let mut implicated = Vec::new();
    let mut tokens = Vec::new();
    if let Some(message) = &ctx.message {
        let budget = budget::Budget::new(limits);
        let extracted = extract::extract_with(message, &budget, known);
        if let Some(name) = &extracted.known_attachment {
            findings.push(Finding {
                reason: HoldReason::KnownAttachment,
                action: policy.known_attachment.action,
                summary: "the same attachment as a message held earlier (not scanned again)".into(),
                location: format!("attachment {name}"),
                count: None,
                columns: Vec::new(),
            });
        } else {
            attendees = calendar_attendees(&extracted);
            let (parts, complete) =
                content::analyze(&extracted, entities::current_year(), budget.deadline());
            if !complete {
                findings.push(unreadable(budget::Exceeded::Time.describe()));
            }
            let content_findings = content::findings(&parts, &extracted, policy);
            implicated = implicated_attachments(&extracted.attachments, &content_findings);
            findings.extend(content_findings);
            let mut ids: std::collections::BTreeSet<&str> = std::collections::BTreeSet::new();
            for p in &parts {
                ids.extend(p.identifiers.iter().map(String::as_str));
                ids.extend(p.emails.iter().map(String::as_str));
            }
            tokens = ids.into_iter().map(crate::batch::token).collect();
        }
        attachments = extracted.attachments;
    }
    visible::check(&ctx, &attendees, &mut findings);
    let subject = ctx
        .message
        .as_ref()
        .and_then(|m| m.subject())
        .map(|s| s.chars().take(200).collect());
    Report {
        findings,
        attachments,
        implicated,
        tokens,
        subject,
    }
}

/// The attachments (SHA-256 hex) a held-worthy content finding points at: its location
/// starts with `attachment <name>`. Images and other innocent parts are never implicated.
fn implicated_attachments(
    attachments: &[extract::Attachment],
    findings: &[Finding],
) -> Vec<String> {
    let mut out = Vec::new();
    for a in attachments {
        let prefix = format!("attachment {}", a.name);
        let hit = findings.iter().any(|f| {
            f.action >= Action::Hold
                && f.location.split("; ").any(|l| {
                    l == prefix
                        || l.starts_with(&format!("{prefix} >"))
                        || l.starts_with(&format!("{prefix} /"))
                        || l.starts_with(&format!("{prefix},"))
                })
        });
        if hit {
            out.push(crate::batch::known::to_hex(&a.sha256));
        }
    }
    out.sort();
    out.dedup();
    out
}

/// `ATTENDEE;...:mailto:x@y` addresses of calendar parts (unfolded lines).
fn calendar_attendees(ex: &extract::Extracted) -> Vec<String> {
    let mut out = Vec::new();
    for item in &ex.items {
        if let extract::Item::Text {
            kind: extract::TextKind::Calendar,
            text,
            ..
        } = item
        {
            let unfolded = text.replace("\r\n ", "").replace("\n ", "");
            for line in unfolded
                .lines()
                .filter(|l| l.len() > 8 && l.as_bytes()[..8].eq_ignore_ascii_case(b"ATTENDEE"))
            {
                out.extend(entities::find_emails(line));
            }
        }
    }
    out.sort();
    out.dedup();
    out
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

#[cfg(test)]
mod tests {
    use super::*;

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

    /// An expired inspection budget is never a silent pass.
    #[test]
    fn an_exhausted_budget_holds_as_uninspectable() {
        let mut policy = Policy::builtin().unwrap();
        policy.inspection.max_time = std::time::Duration::ZERO;
        let m = b"Subject: x\r\nContent-Type: text/plain\r\n\r\nhello\r\n";
        let r = inspect(&env(), m, &policy);
        assert!(
            r.findings
                .iter()
                .any(|f| f.reason == HoldReason::Uninspectable && f.action == Action::Hold),
            "{:?}",
            r.findings
        );
        assert_eq!(
            policy.decide(r.findings).decision,
            crate::verdict::Decision::Hold
        );
    }

    /// `[uninspectable] action = "warn"` covers every content problem: an encrypted
    /// attachment, a MIME part bomb, the inspection's own time limit. (mailbrake's own
    /// failures stay held: see `uninspectable`.)
    #[test]
    fn the_uninspectable_action_covers_every_content_problem() {
        use crate::verdict::Decision;
        let mut warn = Policy::builtin().unwrap();
        warn.uninspectable.action = Action::Warn;
        let zip =
            include_bytes!("../../tests/fixtures/corpus/hold/49-encrypted-zip-ppap-zipcrypto.eml");
        let mut parts = String::from(
            "Subject: x\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n",
        );
        for _ in 0..5 {
            parts.push_str("--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n");
        }
        parts.push_str("--b--\r\n");
        let plain = b"Subject: x\r\nContent-Type: text/plain\r\n\r\nhello\r\n";
        for (what, raw, tweak) in [
            ("encrypted zip", &zip[..], (usize::MAX, false)),
            ("part bomb", parts.as_bytes(), (3, false)),
            ("time limit", &plain[..], (usize::MAX, true)),
        ] {
            for (policy, want_action, want) in [
                (&warn, Action::Warn, Decision::Forward),
                (&Policy::builtin().unwrap(), Action::Hold, Decision::Hold),
            ] {
                let mut policy = policy.clone();
                if tweak.0 != usize::MAX {
                    policy.inspection.max_parts = tweak.0;
                }
                if tweak.1 {
                    policy.inspection.max_time = std::time::Duration::ZERO;
                }
                let r = inspect(&env(), raw, &policy);
                let un: Vec<&Finding> = r
                    .findings
                    .iter()
                    .filter(|f| f.reason == HoldReason::Uninspectable)
                    .collect();
                assert!(!un.is_empty(), "{what}: {:?}", r.findings);
                assert!(un.iter().all(|f| f.action == want_action), "{what}: {un:?}");
                assert_eq!(policy.decide(r.findings).decision, want, "{what}");
            }
        }
    }

    /// Inputs the fuzzer found (fuzz/regressions/inspect/): a Japanese line in a calendar part
    /// (a byte slice inside a character) is inspected and forwarded; mail-parser's own panic
    /// ("Invalid part ID") holds the message as uninspectable instead of unwinding.
    #[test]
    fn fuzz_regressions_are_inspected_without_a_panic() {
        let policy = Policy::builtin().unwrap();
        let cal = include_bytes!("../../fuzz/regressions/inspect/calendar-multibyte-line.eml");
        let r = inspect(&env(), cal, &policy);
        assert!(r.findings.is_empty(), "{:?}", r.findings);
        let bad = include_bytes!("../../fuzz/regressions/inspect/mail-parser-invalid-part-id.eml");
        let r = inspect(&env(), bad, &policy);
        // The panic is a `debug_assert!`: only builds with debug assertions have it (release
        // builds parse the message and inspect what they find).
        if cfg!(debug_assertions) {
            assert!(
                r.findings
                    .iter()
                    .any(|f| f.reason == HoldReason::Uninspectable),
                "{:?}",
                r.findings
            );
        }
    }

    /// A text that takes longer than the inspection's time limit stops at the limit and is
    /// held as uninspectable (the blocking thread does not keep working after the deadline).
    #[test]
    fn a_long_text_stops_at_the_time_limit() {
        let mut policy = Policy::builtin().unwrap();
        policy.inspection.max_time = std::time::Duration::from_millis(50);
        let mut m = b"Subject: x\r\nContent-Type: text/plain\r\n\r\n".to_vec();
        for i in 0..200_000 {
            m.extend_from_slice(format!("ID: user{i} PW: secret{i} note: x y z\r\n").as_bytes());
        }
        let started = std::time::Instant::now();
        let r = inspect(&env(), &m, &policy);
        let took = started.elapsed();
        assert!(
            r.findings
                .iter()
                .any(|f| f.reason == HoldReason::Uninspectable
                    && f.summary.contains("took too long")),
            "{:?}",
            r.findings
        );
        // Generous: the limit is 50 ms; without the checks this text takes seconds.
        assert!(took < std::time::Duration::from_secs(2), "{took:?}");
    }

    /// A MIME structure bomb is refused before the parser builds its parts.
    #[test]
    fn a_mime_structure_bomb_is_not_parsed() {
        let policy = Policy::builtin().unwrap();
        let mut m = b"Subject: x\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n".to_vec();
        for _ in 0..100_000 {
            m.extend_from_slice(b"--b\r\n\r\n");
        }
        m.extend_from_slice(b"--b--\r\n");
        let r = inspect(&env(), &m, &policy);
        assert!(
            r.findings
                .iter()
                .any(|f| f.reason == HoldReason::Uninspectable
                    && f.summary.contains("too many MIME parts")),
            "{:?}",
            r.findings
        );
    }

    /// Calendar attendees are visible recipients (DETECTION.md §4.5), never content records.
    #[test]
    fn calendar_attendees_count_as_visible_recipients() {
        let policy = Policy::builtin().unwrap();
        let mut ics = String::from("BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\n");
        for i in 0..30 {
            ics.push_str(&format!(
                "ATTENDEE;CN=Person {i};ROLE=REQ-PARTICIPANT:mailto:p{i}@d{}.example\r\n",
                i % 15
            ));
        }
        ics.push_str("END:VEVENT\r\nEND:VCALENDAR\r\n");
        let m = format!(
            "Subject: invite\r\nTo: p0@d0.example\r\nContent-Type: text/calendar; method=REQUEST\r\n\r\n{ics}"
        );
        let r = inspect(&env(), m.as_bytes(), &policy);
        let f = r
            .findings
            .iter()
            .find(|f| f.reason == HoldReason::VisibleRecipients)
            .unwrap();
        assert_eq!(f.count, Some(30));
        assert!(
            !r.findings
                .iter()
                .any(|f| f.reason == HoldReason::PersonalData)
        );
    }
}
