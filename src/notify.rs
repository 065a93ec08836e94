//! Notices to senders whose mail was held: the id, the reasons in words and how to ask for
//! release — never the content. Sent with the null sender (like a DSN, so they can never
//! loop), through the same upstream, and rate limited per sender.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use crate::config::NotifyConfig;
use crate::verdict::HoldReason;

/// Rate limiter and composer of hold notices.
pub struct Notifier {
    cfg: NotifyConfig,
    hostname: String,
    sent: Mutex<Sent>,
}

/// Notice times (Unix seconds) of the last hour: per sender identity, and in all.
#[derive(Default)]
struct Sent {
    by_sender: HashMap<String, VecDeque<u64>>,
    all: VecDeque<u64>,
}

/// Operator-facing words for a reason.
pub fn explain(r: HoldReason) -> &'static str {
    match r {
        HoldReason::TooManyRecipients => "too many recipients in one message",
        HoldReason::VisibleRecipients => "many external addresses are visible in To/Cc",
        HoldReason::SenderRate => "more mail than allowed from one sender in a short time",
        HoldReason::SenderSurge => "far more mail than this sender usually sends",
        HoldReason::BreakerOpen => "the sender's mail is paused after an earlier hold",
        HoldReason::PersonalData => "the message or an attachment contains a list of personal data",
        HoldReason::MyNumber => "the message contains an Individual Number (My Number)",
        HoldReason::Credentials => "the message contains login IDs and passwords",
        HoldReason::AddressList => "the message contains a list of e-mail addresses",
        HoldReason::KnownAttachment => {
            "an attachment is identical to one in a message held earlier"
        }
        HoldReason::CrossRecipient => "the message carries another recipient's data",
        HoldReason::Uninspectable => {
            "an attachment could not be inspected (for example, an encrypted file)"
        }
    }
}

impl Notifier {
    pub fn new(cfg: NotifyConfig, hostname: &str) -> Notifier {
        Notifier {
            cfg,
            hostname: hostname.to_string(),
            sent: Mutex::new(Sent::default()),
        }
    }

    pub fn enabled(&self) -> bool {
        self.cfg.enabled
    }

    /// Takes a notice slot for the sender identity `sender` (at most
    /// `max_per_sender_per_hour`, and at most `max_per_hour` for all senders together).
    pub fn take_slot(&self, sender: &str, now: u64) -> bool {
        let mut sent = match self.sent.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let sent = &mut *sent;
        let expired = |q: &mut VecDeque<u64>| {
            while q.front().is_some_and(|t| now.saturating_sub(*t) >= 3600) {
                q.pop_front();
            }
        };
        expired(&mut sent.all);
        if sent.all.len() >= self.cfg.max_per_hour as usize {
            return false;
        }
        if sent.by_sender.len() > 100_000 {
            sent.by_sender
                .retain(|_, q| q.back().is_some_and(|t| now.saturating_sub(*t) < 3600));
        }
        let q = sent.by_sender.entry(sender.to_string()).or_default();
        expired(q);
        if q.len() >= self.cfg.max_per_sender_per_hour as usize {
            return false;
        }
        q.push_back(now);
        sent.all.push_back(now);
        true
    }

    /// The notice for a held message (`to` = the envelope sender, validated by the session).
    pub fn compose(
        &self,
        to: &str,
        id: &str,
        reasons: &[HoldReason],
        rcpt_count: usize,
        now: std::time::SystemTime,
    ) -> Vec<u8> {
        let from = self
            .cfg
            .from
            .clone()
            .unwrap_or_else(|| format!("mailbrake@{}", self.hostname));
        let why: Vec<String> = reasons
            .iter()
            .map(|r| format!("  - {} ({r})", explain(*r)))
            .collect();
        let body = format!(
            "Your message (id {id}) to {rcpt_count} recipient(s) has been held for review and has not been delivered yet.\r\n\
             あなたが送信したメール（ID {id}、宛先 {rcpt_count} 件）は確認のため保留され、まだ配送されていません。\r\n\r\n\
             Reason / 理由:\r\n{}\r\n\r\n\
             To ask for its release, contact {} and quote the id {id}.\r\n\
             配送を希望する場合は、ID {id} を添えて {} にご連絡ください。\r\n\r\n\
             This notice never contains the message itself. / この通知にメール本文は含まれません。\r\n",
            why.join("\r\n"),
            self.cfg.contact,
            self.cfg.contact
        );
        format!(
            "From: mailbrake <{from}>\r\nTo: <{to}>\r\nSubject: [mailbrake] Your message was held for review / 送信メールを保留しました\r\n\
             Date: {}\r\nMessage-ID: <{id}.notice@{}>\r\nAuto-Submitted: auto-generated\r\nMIME-Version: 1.0\r\n\
             Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{body}",
            crate::smtp::received::rfc5322_date(now),
            self.hostname
        )
        .into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_and_no_content() {
        let n = Notifier::new(
            NotifyConfig {
                enabled: true,
                from: None,
                contact: "it@corp.example".into(),
                max_per_sender_per_hour: 2,
                max_per_hour: 100,
            },
            "relay.test",
        );
        assert!(n.take_slot("a@x", 100) && n.take_slot("a@x", 101));
        assert!(!n.take_slot("a@x", 102));
        assert!(n.take_slot("b@x", 102));
        assert!(n.take_slot("a@x", 100 + 3600));
        let m = String::from_utf8(n.compose(
            "a@x",
            "01ID",
            &[HoldReason::PersonalData],
            3,
            std::time::UNIX_EPOCH,
        ))
        .unwrap();
        assert!(
            m.contains("id 01ID")
                && m.contains("it@corp.example")
                && m.contains("Auto-Submitted: auto-generated")
        );
        assert!(m.contains("From: mailbrake <mailbrake@relay.test>"));
    }

    /// The global cap: many senders, each under its own limit, still get at most
    /// `max_per_hour` notices in all; slots come back as the hour slides.
    #[test]
    fn global_cap_over_all_senders() {
        let n = Notifier::new(
            NotifyConfig {
                enabled: true,
                from: None,
                contact: "it@corp.example".into(),
                max_per_sender_per_hour: 2,
                max_per_hour: 3,
            },
            "relay.test",
        );
        assert!(n.take_slot("user:a", 10) && n.take_slot("b@x", 11) && n.take_slot("c@x", 12));
        assert!(!n.take_slot("d@x", 13), "a 4th notice in the hour");
        assert!(!n.take_slot("user:a", 14));
        // A refused notice takes no slot: d@x gets the first one that frees up.
        assert!(n.take_slot("d@x", 10 + 3600));
        assert!(!n.take_slot("e@x", 10 + 3600));
    }
}
