//! The closed vocabulary of decisions: hold reasons, findings, actions and verdicts.
//!
//! Reason names are a contract (DESIGN.md §5): the same snake_case strings appear in logs,
//! metric labels, the admin API, the CLI and policy files.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why a message is held. A closed set with stable names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldReason {
    TooManyRecipients,
    VisibleRecipients,
    SenderRate,
    SenderSurge,
    BreakerOpen,
    PersonalData,
    MyNumber,
    Credentials,
    AddressList,
    KnownAttachment,
    CrossRecipient,
    Uninspectable,
}

impl HoldReason {
    /// Every reason, in the order of DESIGN.md §5 (used to pre-register metric labels).
    pub const ALL: [HoldReason; 12] = [
        HoldReason::TooManyRecipients,
        HoldReason::VisibleRecipients,
        HoldReason::SenderRate,
        HoldReason::SenderSurge,
        HoldReason::BreakerOpen,
        HoldReason::PersonalData,
        HoldReason::MyNumber,
        HoldReason::Credentials,
        HoldReason::AddressList,
        HoldReason::KnownAttachment,
        HoldReason::CrossRecipient,
        HoldReason::Uninspectable,
    ];

    /// The stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            HoldReason::TooManyRecipients => "too_many_recipients",
            HoldReason::VisibleRecipients => "visible_recipients",
            HoldReason::SenderRate => "sender_rate",
            HoldReason::SenderSurge => "sender_surge",
            HoldReason::BreakerOpen => "breaker_open",
            HoldReason::PersonalData => "personal_data",
            HoldReason::MyNumber => "my_number",
            HoldReason::Credentials => "credentials",
            HoldReason::AddressList => "address_list",
            HoldReason::KnownAttachment => "known_attachment",
            HoldReason::CrossRecipient => "cross_recipient",
            HoldReason::Uninspectable => "uninspectable",
        }
    }

    /// Parses a stable name (as typed on the CLI or in a query string).
    pub fn parse(name: &str) -> Option<HoldReason> {
        HoldReason::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

impl fmt::Display for HoldReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a policy rule asks for when its check fires. Ordered by strength: when several
/// findings fire, the strongest action wins (`Reject` > `Hold` > `Warn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Record the finding, forward the message.
    Warn,
    /// Forward with To/Cc rewritten to an undisclosed list (envelope unchanged); only
    /// meaningful for `visible_recipients`.
    Bcc,
    /// Keep the message for the policy's `[delay] duration`, then send it unless an operator
    /// deleted it meanwhile (the timed hold of mis-send prevention products).
    Delay,
    /// Keep the message in the quarantine until an operator releases or deletes it.
    #[default]
    Hold,
    /// Refuse the message with `550 5.7.1`.
    Reject,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Warn => "warn",
            Action::Bcc => "bcc",
            Action::Delay => "delay",
            Action::Hold => "hold",
            Action::Reject => "reject",
        }
    }
}

/// One thing a check found, with where it was found. Never carries the detected values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// The hold reason this finding supports.
    pub reason: HoldReason,
    /// What the policy asks for when this finding is present.
    pub action: Action,
    /// One sentence an operator understands, with the measured value and the limit.
    pub summary: String,
    /// Where it was found: `envelope`, `header To/Cc`, `attachment x.xlsx sheet S rows 2-901`.
    pub location: String,
    /// The measured count (recipients, addresses, records) when the check counts something.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// The kinds of personal data involved (`name`, `date_of_birth`, `email` …), when known.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<String>,
}

/// The outcome of the policy for one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Forward,
    /// Forward with To/Cc rewritten to `undisclosed-recipients:;`.
    Bcc,
    /// Keep for the delay period, then forward.
    Delay,
    Hold,
    Reject,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Forward => "forward",
            Decision::Bcc => "bcc",
            Decision::Delay => "delay",
            Decision::Hold => "hold",
            Decision::Reject => "reject",
        }
    }
}

/// The policy's verdict: what to do, why, and everything that was found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// What happens to the message (after monitor mode is applied).
    pub decision: Decision,
    /// What the policy would have done in enforce mode (differs from `decision` in monitor mode).
    pub policy_decision: Decision,
    /// True when the policy runs in monitor mode.
    pub monitor: bool,
    /// The distinct reasons of the findings that drove the decision, sorted.
    pub reasons: Vec<HoldReason>,
    /// Every finding, including warnings.
    pub findings: Vec<Finding>,
}

impl Verdict {
    /// A one-line text for a `550 5.7.1` reply: reason names only, never content.
    pub fn reject_text(&self) -> String {
        let names: Vec<&str> = self.reasons.iter().map(|r| r.as_str()).collect();
        format!("Message refused by policy ({})", names.join(", "))
    }
}
