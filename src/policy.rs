//! Policies: `policies/*.toml` → typed thresholds, and findings → a [`Verdict`].
//!
//! All `*.toml` files of the policy directory are merged in file-name order (a later file
//! overrides the keys it names), so operators keep the shipped `default.toml` and put their
//! changes in, say, `local.toml`. Unknown keys are errors.

use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::verdict::{Action, Decision, Finding, HoldReason, Verdict};

/// The policy compiled into the binary (the shipped `policies/default.toml`).
pub const BUILTIN_DEFAULT: &str = include_str!("../policies/default.toml");

/// Enforce the verdicts, or only observe them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Enforce,
    /// Decide, log and count, but forward everything (for a safe roll-out).
    Monitor,
}

/// A whole policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub mode: Mode,
    /// The organisation's own domains (and their subdomains); everything else is external.
    #[serde(default)]
    pub internal_domains: Vec<String>,
    pub recipients: RecipientsRule,
    pub visible_recipients: VisibleRule,
    #[serde(default)]
    pub personal_data: PersonalDataRule,
    #[serde(default)]
    pub address_list: AddressListRule,
    #[serde(default)]
    pub my_number: MyNumberRule,
    #[serde(default)]
    pub credentials: CredentialsRule,
    #[serde(default)]
    pub uninspectable: UninspectableRule,
    #[serde(default)]
    pub inspection: InspectionLimits,
    #[serde(default)]
    pub sender: SenderRules,
    #[serde(default)]
    pub brake: BrakeRule,
    #[serde(default)]
    pub known_attachment: KnownAttachmentRule,
    #[serde(default)]
    pub cross_recipient: CrossRecipientRule,
    #[serde(default)]
    pub delay: DelayRule,
}

/// One sliding window of a sender's volume (`sender_rate`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowRule {
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Hold when the sender's messages in the window exceed this.
    pub max_messages: u64,
    /// ... or its envelope recipients.
    pub max_recipients: u64,
    /// ... or its distinct recipient domains.
    pub max_domains: u64,
}

/// `[sender.surge]`: far above the sender's own usual hourly volume (`sender_surge`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SurgeRule {
    /// Hold when this hour's messages exceed `multiple` × the learned hourly average ...
    pub multiple: f64,
    /// ... and exceed `floor`.
    pub floor: u64,
    /// Hours of history before surges are judged (before that, the windows alone apply).
    pub min_history_hours: u32,
    /// Half-life of the learned average.
    #[serde(with = "humantime_serde")]
    pub half_life: Duration,
}

impl Default for SurgeRule {
    fn default() -> Self {
        SurgeRule {
            multiple: 10.0,
            floor: 50,
            min_history_hours: 24,
            half_life: Duration::from_secs(7 * 86_400),
        }
    }
}

/// `[[sender.overrides]]`: a sender (address, `@domain` or `user:name`) with its own limits.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SenderOverride {
    /// `news@corp.example`, `@corp.example` (the sender's domain) or `user:webapp` (AUTH user).
    #[serde(rename = "match")]
    pub pattern: String,
    /// Skip the windows, the surge check and the brake for this sender.
    #[serde(default)]
    pub exempt: bool,
    /// Replace the windows for this sender.
    #[serde(default)]
    pub windows: Option<Vec<WindowRule>>,
    /// Replace the surge rule for this sender.
    #[serde(default)]
    pub surge: Option<SurgeRule>,
}

impl SenderOverride {
    /// True when this override applies to `sender` (a sender key: `user:x` or an address,
    /// see [`SenderRules::key`]). An address pattern is compared as a sender key too
    /// (domain lower-cased, subaddress cut at `delimiters`).
    pub fn matches(&self, sender: &str, delimiters: &str) -> bool {
        let p = self.pattern.trim();
        if let Some(user) = p.strip_prefix("user:") {
            return sender.strip_prefix("user:") == Some(user);
        }
        if let Some(domain) = p.strip_prefix('@') {
            let domain = crate::envelope::normalize_domain(domain);
            return !sender.starts_with("user:")
                && crate::envelope::domain_of(sender).is_some_and(|d| d == domain);
        }
        crate::envelope::sender_key(None, p, delimiters) == sender
    }
}

/// `[sender]`: per-sender windows, surges and overrides.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SenderRules {
    pub windows: Vec<WindowRule>,
    pub surge: SurgeRule,
    /// A sender with at least this many messages in the shortest window is "in a batch".
    pub batch_min_messages: u64,
    /// What a window or surge trip does to the message that trips it.
    pub action: Action,
    /// The envelope sender's local part is cut at the first of these characters, so
    /// `bounce+1@x` and `bounce+2@x` (subaddresses, VERP) are one sender. `""`: off.
    pub subaddress_delimiters: String,
    pub overrides: Vec<SenderOverride>,
}

impl Default for SenderRules {
    fn default() -> Self {
        let w = |secs, m, r, d| WindowRule {
            window: Duration::from_secs(secs),
            max_messages: m,
            max_recipients: r,
            max_domains: d,
        };
        SenderRules {
            windows: vec![
                w(600, 100, 300, 30),
                w(3600, 300, 1000, 60),
                w(86_400, 1500, 5000, 200),
            ],
            surge: SurgeRule::default(),
            batch_min_messages: 5,
            action: Action::Hold,
            subaddress_delimiters: "+".into(),
            overrides: Vec::new(),
        }
    }
}

impl SenderRules {
    /// The override for `sender` (a sender key), if any (the first that matches).
    pub fn override_for(&self, sender: &str) -> Option<&SenderOverride> {
        self.overrides
            .iter()
            .find(|o| o.matches(sender, &self.subaddress_delimiters))
    }

    /// The windows and surge rule that apply under `ov` (the sender's override, if any).
    pub fn limits_for<'a>(
        &'a self,
        ov: Option<&'a SenderOverride>,
    ) -> (&'a [WindowRule], &'a SurgeRule) {
        (
            ov.and_then(|o| o.windows.as_deref())
                .unwrap_or(&self.windows),
            ov.and_then(|o| o.surge.as_ref()).unwrap_or(&self.surge),
        )
    }

    /// The sender identity of `env` for the batch checks (see [`crate::envelope::sender_key`]).
    pub fn key(&self, env: &crate::envelope::Envelope) -> String {
        self.key_of(env.auth_user.as_deref(), &env.mail_from)
    }

    /// The sender identity of an authenticated user / envelope sender.
    pub fn key_of(&self, auth_user: Option<&str>, mail_from: &str) -> String {
        crate::envelope::sender_key(auth_user, mail_from, &self.subaddress_delimiters)
    }

    /// A sender as an operator types it (`breaker reset SENDER`): `user:NAME` and `<>` as
    /// they are, an address as a sender key.
    pub fn key_of_typed(&self, typed: &str) -> String {
        if typed.starts_with("user:") || typed == "<>" {
            typed.to_string()
        } else {
            self.key_of(None, typed)
        }
    }
}

/// `[brake]`: when a sender's line is stopped.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrakeRule {
    /// Open on a `sender_rate` / `sender_surge` trip.
    pub on_rate: bool,
    /// Open when a message inside a batch is held for its content.
    pub on_content_in_batch: bool,
    /// Close by itself after this long (`0s` = only `mailbrake breaker reset`).
    #[serde(with = "humantime_serde")]
    pub cooldown: Duration,
}

impl Default for BrakeRule {
    fn default() -> Self {
        BrakeRule {
            on_rate: true,
            on_content_in_batch: true,
            cooldown: Duration::ZERO,
        }
    }
}

/// `[known_attachment]`: an attachment identical to one in a held message.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KnownAttachmentRule {
    pub action: Action,
}

impl Default for KnownAttachmentRule {
    fn default() -> Self {
        KnownAttachmentRule {
            action: Action::Hold,
        }
    }
}

/// `[cross_recipient]`: within a sender's batch, a message to A carrying B's data.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CrossRecipientRule {
    pub action: Action,
    /// How far back the batch's recipients and their identifiers are remembered.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
}

impl Default for CrossRecipientRule {
    fn default() -> Self {
        CrossRecipientRule {
            action: Action::Hold,
            window: Duration::from_secs(3600),
        }
    }
}

/// `[delay]`: the timed hold.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DelayRule {
    /// How long a delayed message waits before it is sent.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    /// Delay every message with an external recipient (not only those a rule delays).
    pub external_mail: bool,
}

impl Default for DelayRule {
    fn default() -> Self {
        DelayRule {
            duration: Duration::from_secs(300),
            external_mail: false,
        }
    }
}

/// `[personal_data]`: tables and lists of people (incidents 3 and 4; DETECTION.md R1).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PersonalDataRule {
    /// Hold when one part, or the whole message, has more distinct personal records.
    pub max_records: usize,
    /// Above this (and not over `max_records`): forward with a warning.
    pub warn_records: usize,
    pub action: Action,
}

impl Default for PersonalDataRule {
    fn default() -> Self {
        PersonalDataRule {
            max_records: 9,
            warn_records: 3,
            action: Action::Hold,
        }
    }
}

/// `[address_list]`: personal e-mail addresses inside the content (R1b).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AddressListRule {
    /// Hold when the content shows more distinct external personal addresses than this.
    pub max_addresses: usize,
    pub action: Action,
}

impl Default for AddressListRule {
    fn default() -> Self {
        AddressListRule {
            max_addresses: 19,
            action: Action::Hold,
        }
    }
}

/// `[my_number]`: Individual Numbers (R2). Any valid number next to マイナンバー / 個人番号
/// holds; in a people-table column, more than `max_in_column` valid numbers hold.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MyNumberRule {
    pub max_in_column: usize,
    pub action: Action,
}

impl Default for MyNumberRule {
    fn default() -> Self {
        MyNumberRule {
            max_in_column: 2,
            action: Action::Hold,
        }
    }
}

/// `[credentials]`: login id / password pairs (R3, incident 1's content).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CredentialsRule {
    /// Hold when there are more pairs than this.
    pub max_pairs: usize,
    /// What a single pair does (an initial-password mail to one person is common).
    pub single_pair_action: Action,
    pub action: Action,
}

impl Default for CredentialsRule {
    fn default() -> Self {
        CredentialsRule {
            max_pairs: 1,
            single_pair_action: Action::Warn,
            action: Action::Hold,
        }
    }
}

/// `[uninspectable]`: content that cannot be inspected (R6). Never a silent pass.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UninspectableRule {
    /// Encrypted, over a limit, unreadable: `hold` (default) or `warn` (pass with a warning).
    pub action: Action,
    /// A document with no extractable text (a scanned PDF).
    pub no_text_action: Action,
}

impl Default for UninspectableRule {
    fn default() -> Self {
        UninspectableRule {
            action: Action::Hold,
            no_text_action: Action::Warn,
        }
    }
}

/// `[inspection]`: limits per message (RELIABILITY.md §2.10–2.11).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InspectionLimits {
    pub max_parts: usize,
    pub max_depth: usize,
    pub max_archive_entries: usize,
    pub max_inflated: crate::config::ByteSize,
    pub max_ratio: u64,
    pub max_cells: u64,
    #[serde(with = "humantime_serde")]
    pub max_time: std::time::Duration,
    pub max_pdf_memory: crate::config::ByteSize,
}

impl Default for InspectionLimits {
    fn default() -> Self {
        let l = crate::inspect::budget::Limits::default();
        InspectionLimits {
            max_parts: l.max_parts,
            max_depth: l.max_depth,
            max_archive_entries: l.max_archive_entries,
            max_inflated: crate::config::ByteSize(l.max_inflated),
            max_ratio: l.max_ratio,
            max_cells: l.max_cells,
            max_time: l.time,
            max_pdf_memory: crate::config::ByteSize(l.max_pdf_memory),
        }
    }
}

impl InspectionLimits {
    /// The budget limits these settings describe.
    pub fn limits(&self) -> crate::inspect::budget::Limits {
        crate::inspect::budget::Limits {
            max_parts: self.max_parts,
            max_depth: self.max_depth,
            max_archive_entries: self.max_archive_entries,
            max_inflated: self.max_inflated.0,
            max_ratio: self.max_ratio,
            max_cells: self.max_cells,
            time: self.max_time,
            max_pdf_memory: self.max_pdf_memory.0,
        }
    }
}

/// `[recipients]`: envelope recipients of one message (`too_many_recipients`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecipientsRule {
    /// Hold when a message has more envelope recipients than this.
    pub max_envelope: usize,
    /// Hold when the recipients span more distinct external domains than this.
    pub max_external_domains: usize,
    #[serde(default)]
    pub action: Action,
}

/// `[visible_recipients]`: addresses shown in To/Cc (`visible_recipients`, incident 2).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VisibleRule {
    /// Hold when To + Cc show more external addresses than this.
    pub max_external_addresses: usize,
    /// Hold when To + Cc show more distinct external domains than this.
    pub max_external_domains: usize,
    #[serde(default)]
    pub action: Action,
}

/// Why a policy cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read policy directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no *.toml policy file in {0}")]
    Empty(PathBuf),
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid policy: {0}")]
    Invalid(String),
}

impl Policy {
    /// The policy compiled into the binary.
    pub fn builtin() -> Result<Policy, PolicyError> {
        Policy::from_tables(vec![(
            PathBuf::from("<builtin default.toml>"),
            BUILTIN_DEFAULT,
        )])
    }

    /// Loads and merges every `*.toml` of `dir` in name order; `None` = the built-in policy.
    pub fn load(dir: Option<&Path>) -> Result<Policy, PolicyError> {
        let Some(dir) = dir else {
            return Policy::builtin();
        };
        let read_dir = std::fs::read_dir(dir).map_err(|source| PolicyError::Dir {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut files: Vec<PathBuf> = read_dir
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(PolicyError::Empty(dir.to_path_buf()));
        }
        let mut texts = Vec::new();
        for f in files {
            let text = std::fs::read_to_string(&f).map_err(|source| PolicyError::Dir {
                path: f.clone(),
                source,
            })?;
            texts.push((f, text));
        }
        Policy::from_tables(texts.iter().map(|(p, t)| (p.clone(), t.as_str())).collect())
    }

    /// Parses policy text (one file).
    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        Policy::from_tables(vec![(PathBuf::from("<policy>"), text)])
    }

    fn from_tables(files: Vec<(PathBuf, &str)>) -> Result<Policy, PolicyError> {
        let mut merged = toml::Table::new();
        for (path, text) in files {
            let table: toml::Table = toml::from_str(text).map_err(|e| PolicyError::Parse {
                path: path.clone(),
                message: e.to_string(),
            })?;
            merge(&mut merged, table);
        }
        let mut policy: Policy =
            toml::Value::Table(merged)
                .try_into()
                .map_err(|e: toml::de::Error| PolicyError::Parse {
                    path: PathBuf::from("<merged policy>"),
                    message: e.to_string(),
                })?;
        policy.internal_domains = policy
            .internal_domains
            .iter()
            .map(|d| crate::envelope::normalize_domain(d))
            .collect();
        policy.validate()?;
        Ok(policy)
    }

    fn validate(&self) -> Result<(), PolicyError> {
        if self
            .internal_domains
            .iter()
            .any(|d| d.is_empty() || !d.contains('.'))
        {
            return Err(PolicyError::Invalid(
                "internal_domains: each entry must be a domain such as example.co.jp".into(),
            ));
        }
        if let Some(c) = self
            .sender
            .subaddress_delimiters
            .chars()
            .find(|c| !c.is_ascii_punctuation() || matches!(c, '@' | '"' | '.'))
        {
            return Err(PolicyError::Invalid(format!(
                "sender.subaddress_delimiters: {c:?} cannot separate a subaddress (use characters such as \"+\" or \"-\", or \"\" for none)"
            )));
        }
        // `bcc` rewrites To/Cc: it answers only the visible_recipients finding. Elsewhere it
        // would forward the very content a rule was written to stop.
        let actions = [
            ("recipients.action", self.recipients.action),
            ("personal_data.action", self.personal_data.action),
            ("address_list.action", self.address_list.action),
            ("my_number.action", self.my_number.action),
            ("credentials.action", self.credentials.action),
            (
                "credentials.single_pair_action",
                self.credentials.single_pair_action,
            ),
            ("uninspectable.action", self.uninspectable.action),
            (
                "uninspectable.no_text_action",
                self.uninspectable.no_text_action,
            ),
            ("sender.action", self.sender.action),
            ("known_attachment.action", self.known_attachment.action),
            ("cross_recipient.action", self.cross_recipient.action),
        ];
        let bcc: Vec<&str> = actions
            .iter()
            .filter(|(_, a)| *a == Action::Bcc)
            .map(|(k, _)| *k)
            .collect();
        if !bcc.is_empty() {
            return Err(PolicyError::Invalid(format!(
                "{}: action \"bcc\" is only valid for visible_recipients.action (it rewrites To/Cc and forwards the message); use \"hold\", \"delay\", \"reject\" or \"warn\"",
                bcc.join(", ")
            )));
        }
        if self.recipients.max_envelope == 0 || self.visible_recipients.max_external_addresses == 0
        {
            return Err(PolicyError::Invalid(
                "recipients.max_envelope and visible_recipients.max_external_addresses must be > 0"
                    .into(),
            ));
        }
        Ok(())
    }

    /// The decision the strongest action asks for.
    fn decision_of(strongest: Option<Action>) -> Decision {
        match strongest {
            Some(Action::Reject) => Decision::Reject,
            Some(Action::Hold) => Decision::Hold,
            Some(Action::Delay) => Decision::Delay,
            Some(Action::Bcc) => Decision::Bcc,
            Some(Action::Warn) | None => Decision::Forward,
        }
    }

    /// True when [`Policy::decide`] on these findings lets the message leave (forward, bcc,
    /// or delay, then send); false for hold and reject. Monitor mode lets everything go.
    pub fn lets_go<'a>(&self, findings: impl Iterator<Item = &'a Finding>) -> bool {
        self.mode == Mode::Monitor
            || !matches!(
                Policy::decision_of(findings.map(|f| f.action).max()),
                Decision::Hold | Decision::Reject
            )
    }

    /// Findings → verdict. The strongest action among the findings wins; in monitor mode
    /// the message is forwarded whatever the policy decided.
    pub fn decide(&self, findings: Vec<Finding>) -> Verdict {
        let strongest = findings.iter().map(|f| f.action).max();
        let policy_decision = Policy::decision_of(strongest);
        let mut reasons: Vec<HoldReason> = findings
            .iter()
            .filter(|f| Some(f.action) == strongest && f.action != Action::Warn)
            .map(|f| f.reason)
            .collect();
        reasons.sort();
        reasons.dedup();
        let monitor = self.mode == Mode::Monitor;
        Verdict {
            decision: if monitor {
                Decision::Forward
            } else {
                policy_decision
            },
            policy_decision,
            monitor,
            reasons,
            findings,
        }
    }
}

/// Deep merge: tables merge key by key, anything else is replaced.
fn merge(into: &mut toml::Table, from: toml::Table) {
    for (k, v) in from {
        match (into.get_mut(&k), v) {
            (Some(toml::Value::Table(a)), toml::Value::Table(b)) => merge(a, b),
            (_, v) => {
                into.insert(k, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(reason: HoldReason, action: Action) -> Finding {
        Finding {
            reason,
            action,
            summary: String::new(),
            location: String::new(),
            count: None,
            columns: Vec::new(),
        }
    }

    #[test]
    fn builtin_policy_loads() {
        let p = Policy::builtin().unwrap();
        assert_eq!(p.mode, Mode::Enforce);
    }

    #[test]
    fn shipped_batch_rules_equal_the_defaults() {
        let p = Policy::builtin().unwrap();
        assert_eq!(p.sender, SenderRules::default());
        assert_eq!(p.brake, BrakeRule::default());
        assert_eq!(p.known_attachment, KnownAttachmentRule::default());
        assert_eq!(p.cross_recipient, CrossRecipientRule::default());
        assert_eq!(p.delay, DelayRule::default());
    }

    #[test]
    fn overrides_match_address_domain_and_user() {
        let p = Policy::parse(&format!(
            "{BUILTIN_DEFAULT}\n[[sender.overrides]]\nmatch = \"News@Corp.Example\"\nexempt = true\n[[sender.overrides]]\nmatch = \"@apps.example\"\n[[sender.overrides]]\nmatch = \"user:webapp\"\n"
        ))
        .unwrap();
        assert!(
            p.sender
                .override_for("News@corp.example")
                .is_some_and(|o| o.exempt)
        );
        assert!(p.sender.override_for("x@apps.example").is_some());
        assert!(p.sender.override_for("x@sub.apps.example").is_none());
        assert!(p.sender.override_for("user:webapp").is_some());
        assert!(p.sender.override_for("webapp@x.example").is_none());
        // An address pattern with a subaddress is the sender key without it.
        let p = Policy::parse(&format!(
            "{BUILTIN_DEFAULT}\n[[sender.overrides]]\nmatch = \"bounce+x@Lists.Example\"\nexempt = true\n"
        ))
        .unwrap();
        assert!(
            p.sender
                .override_for(&p.sender.key_of(None, "bounce+123@lists.example"))
                .is_some_and(|o| o.exempt)
        );
        // A domain pattern never matches an AUTH user's key.
        assert!(p.sender.override_for("user:x@lists.example").is_none());
        let err = Policy::parse(&BUILTIN_DEFAULT.replace(
            "subaddress_delimiters = \"+\"",
            "subaddress_delimiters = \"@\"",
        ))
        .unwrap_err();
        assert!(err.to_string().contains("subaddress_delimiters"), "{err}");
    }

    /// The shipped file and the compiled-in defaults of the content rules agree, so a policy
    /// directory that omits a section gets what default.toml documents.
    #[test]
    fn shipped_content_rules_equal_the_defaults() {
        let p = Policy::builtin().unwrap();
        let d = PersonalDataRule::default();
        assert_eq!(
            (p.personal_data.max_records, p.personal_data.warn_records),
            (d.max_records, d.warn_records)
        );
        assert_eq!(
            p.address_list.max_addresses,
            AddressListRule::default().max_addresses
        );
        assert_eq!(
            p.my_number.max_in_column,
            MyNumberRule::default().max_in_column
        );
        assert_eq!(
            p.credentials.max_pairs,
            CredentialsRule::default().max_pairs
        );
        assert_eq!(
            p.credentials.single_pair_action,
            CredentialsRule::default().single_pair_action
        );
        assert_eq!(p.uninspectable.action, UninspectableRule::default().action);
        assert_eq!(
            p.uninspectable.no_text_action,
            UninspectableRule::default().no_text_action
        );
        let (a, b) = (p.inspection.limits(), InspectionLimits::default().limits());
        assert_eq!(
            (
                a.max_parts,
                a.max_depth,
                a.max_inflated,
                a.max_ratio,
                a.max_cells,
                a.time,
                a.max_pdf_memory
            ),
            (
                b.max_parts,
                b.max_depth,
                b.max_inflated,
                b.max_ratio,
                b.max_cells,
                b.time,
                b.max_pdf_memory
            )
        );
    }

    #[test]
    fn strongest_action_wins() {
        let p = Policy::builtin().unwrap();
        let v = p.decide(vec![
            finding(HoldReason::VisibleRecipients, Action::Hold),
            finding(HoldReason::TooManyRecipients, Action::Warn),
        ]);
        assert_eq!(v.decision, Decision::Hold);
        assert_eq!(v.reasons, vec![HoldReason::VisibleRecipients]);
        let v = p.decide(vec![
            finding(HoldReason::VisibleRecipients, Action::Hold),
            finding(HoldReason::TooManyRecipients, Action::Reject),
        ]);
        assert_eq!(v.decision, Decision::Reject);
        assert_eq!(v.reasons, vec![HoldReason::TooManyRecipients]);
        assert_eq!(p.decide(vec![]).decision, Decision::Forward);
    }

    #[test]
    fn monitor_mode_forwards() {
        let mut p = Policy::builtin().unwrap();
        p.mode = Mode::Monitor;
        let v = p.decide(vec![finding(HoldReason::VisibleRecipients, Action::Hold)]);
        assert_eq!(v.decision, Decision::Forward);
        assert_eq!(v.policy_decision, Decision::Hold);
        assert!(v.monitor);
    }

    #[test]
    fn later_files_override_earlier_keys() {
        let p = Policy::from_tables(vec![
            (PathBuf::from("a.toml"), BUILTIN_DEFAULT),
            (
                PathBuf::from("b.toml"),
                "mode = \"monitor\"\ninternal_domains = [\"Example.CO.JP\"]\n[recipients]\nmax_envelope = 7",
            ),
        ])
        .unwrap();
        assert_eq!(p.mode, Mode::Monitor);
        assert_eq!(p.recipients.max_envelope, 7);
        assert_eq!(p.internal_domains, vec!["example.co.jp".to_string()]);
        // Keys not named in b.toml keep their default.
        assert!(p.recipients.max_external_domains > 0);
    }

    /// `bcc` rewrites To/Cc: only `visible_recipients` may ask for it.
    #[test]
    fn bcc_is_refused_outside_visible_recipients() {
        for (section, key) in [
            ("credentials", "action"),
            ("credentials", "single_pair_action"),
            ("personal_data", "action"),
            ("recipients", "action"),
            ("sender", "action"),
            ("known_attachment", "action"),
            ("cross_recipient", "action"),
            ("uninspectable", "no_text_action"),
        ] {
            let err = Policy::from_tables(vec![
                (PathBuf::from("a.toml"), BUILTIN_DEFAULT),
                (
                    PathBuf::from("b.toml"),
                    &format!("[{section}]\n{key} = \"bcc\"\n"),
                ),
            ])
            .unwrap_err()
            .to_string();
            assert!(
                err.contains(&format!("{section}.{key}")) && err.contains("visible_recipients"),
                "{err}"
            );
        }
        let p = Policy::from_tables(vec![
            (PathBuf::from("a.toml"), BUILTIN_DEFAULT),
            (
                PathBuf::from("b.toml"),
                "[visible_recipients]\naction = \"bcc\"\n",
            ),
        ])
        .unwrap();
        assert_eq!(p.visible_recipients.action, Action::Bcc);
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = Policy::from_tables(vec![
            (PathBuf::from("a.toml"), BUILTIN_DEFAULT),
            (PathBuf::from("b.toml"), "[recipients]\nmax_envelop = 7"),
        ])
        .unwrap_err();
        assert!(err.to_string().contains("max_envelop"), "{err}");
    }
}
