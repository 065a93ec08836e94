//! The sender's batch (issue 4): stop a sender's line, not just one message.
//!
//! - [`window`]: per-sender sliding windows (messages, recipients, distinct recipient
//!   domains) → `sender_rate`; a learned hourly average → `sender_surge`.
//! - [`breaker`]: brakes; once open, everything from the sender is held as `breaker_open`.
//! - [`known`]: attachments of held messages → `known_attachment`.
//! - [`cross`]: a message to A carrying B's identifiers → `cross_recipient`.
//!
//! The windows and the surge average measure mail that **left**: a message is judged and,
//! only if the policy lets it go (forward, bcc, delay), counted, in one critical section
//! under one of 64 shard locks — so no more than a window's limit can pass however many
//! sessions race, and held, rejected or braked mail never fills a window. A message that did
//! not leave after all (upstream 4xx/5xx, a delay that could not be stored) is taken back;
//! a held message counts when it is released. Whether the sender is "in a batch" counts every
//! message it tried to send, held ones included. When a brake closes (reset or cool-down) the
//! sender starts afresh. State is snapshotted to sled every few seconds and at shutdown;
//! brakes are flushed at once.

pub mod breaker;
pub mod cross;
pub mod known;
pub mod window;

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Mutex, MutexGuard};

use crate::envelope::{Envelope, domain_of, normalize_address};
use crate::policy::Policy;
use crate::verdict::{Action, Decision, Finding, HoldReason, Verdict};
use breaker::{Brake, Breakers};
use cross::Cross;
use known::KnownAttachments;
use window::{Attempts, Mark, Surge, Windows};

const SHARDS: usize = 64;

/// A stable 64-bit hash (identifiers and domains are kept hashed, never in clear).
pub fn token(s: &str) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

#[derive(Debug, Serialize, Deserialize)]
struct SenderState {
    windows: Windows,
    surge: Surge,
    #[serde(default)]
    last_seen: u64,
    /// Every message tried in the shortest window (held ones included): "in a batch".
    #[serde(default)]
    attempts: Attempts,
    /// The sender's brake was seen open: when it is found closed, the sender starts afresh.
    #[serde(default)]
    braked: bool,
    #[serde(skip)]
    cross: Option<Box<Cross>>,
    #[serde(skip)]
    dirty: bool,
}

impl SenderState {
    fn new(widths: &[u64]) -> SenderState {
        SenderState {
            windows: Windows::new(widths),
            surge: Surge::default(),
            last_seen: 0,
            attempts: Attempts::default(),
            braked: false,
            cross: None,
            dirty: false,
        }
    }

    /// Forgets the current windows, this hour's surge count and the batch (a brake closed);
    /// the learned average stays.
    fn start_afresh(&mut self) {
        self.windows.clear();
        self.surge.clear_hour();
        self.attempts.clear();
        self.cross = None;
        self.braked = false;
        self.dirty = true;
    }

    /// Makes the windows match the rules (a policy reload may change them; changed windows
    /// start counting afresh).
    fn align(&mut self, widths: &[u64]) {
        if !self.windows.matches(widths) {
            self.windows = Windows::new(widths);
        }
    }
}

/// What the batch checks found for one message.
#[derive(Debug, Default)]
pub struct Observation {
    pub findings: Vec<Finding>,
    /// The sender has at least `batch_min_messages` messages in its shortest window.
    pub in_batch: bool,
    /// A rate or surge trip by this message.
    pub trip: Option<HoldReason>,
    /// The sender is exempt (override): no windows, no brake.
    pub exempt: bool,
    sender: String,
    /// Where the message was counted (only when the policy lets it leave).
    mark: Option<(Mark, u64)>,
    /// The key of the open brake that holds it (the sender, or its legacy spelling).
    brake_key: Option<String>,
}

/// Every sender's batch state.
pub struct Batches {
    shards: Vec<Mutex<HashMap<String, SenderState>>>,
    tree: sled::Tree,
    pub breakers: Breakers,
    pub known: KnownAttachments,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

fn human(secs: u64) -> String {
    humantime::format_duration(std::time::Duration::from_secs(secs)).to_string()
}

impl Batches {
    /// Opens the batch state kept in `db` (sender windows and brakes).
    pub fn open(db: &sled::Db) -> Result<Batches, sled::Error> {
        Ok(Batches {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            tree: db.open_tree("senders")?,
            breakers: Breakers::open(db)?,
            known: KnownAttachments::default(),
        })
    }

    fn shard(&self, sender: &str) -> MutexGuard<'_, HashMap<String, SenderState>> {
        let i = (token(sender) % SHARDS as u64) as usize;
        lock(&self.shards[i])
    }

    fn load(&self, sender: &str, widths: &[u64]) -> SenderState {
        match self.tree.get(sender.as_bytes()) {
            Ok(Some(v)) => serde_json::from_slice(&v).unwrap_or_else(|_| SenderState::new(widths)),
            _ => SenderState::new(widths),
        }
    }

    /// Judges `env` against its sender's windows, surge and brake, and counts it in the
    /// windows when the policy, given `content` (the message's own findings) and what the
    /// batch checks find, lets it leave. Returns what the batch checks found.
    /// `tokens` are the message's hashed identifiers (for cross-recipient data).
    pub fn observe(
        &self,
        policy: &Policy,
        env: &Envelope,
        tokens: &[u64],
        content: &[Finding],
        now: u64,
    ) -> Observation {
        let rules = &policy.sender;
        let sender = rules.key(env);
        let ov = rules.override_for(&sender);
        if ov.is_some_and(|o| o.exempt) {
            return Observation {
                exempt: true,
                sender,
                ..Observation::default()
            };
        }
        let mut findings = Vec::new();
        let (window_rules, surge_rule) = rules.limits_for(ov);
        let rcpts = u32::try_from(env.rcpt_to.len()).unwrap_or(u32::MAX);
        let domains = domain_tokens(env);
        let mut obs = Observation {
            sender: sender.clone(),
            ..Observation::default()
        };
        {
            let widths: Vec<u64> = window_rules.iter().map(|r| r.window.as_secs()).collect();
            let mut shard = self.shard(&sender);
            if !shard.contains_key(&sender) {
                let loaded = self.load(&sender, &widths);
                shard.insert(sender.clone(), loaded);
            }
            let Some(state) = shard.get_mut(&sender) else {
                return obs;
            };
            state.align(&widths);
            // The brake, judged under the sender's lock: closed since it was last seen open
            // (reset, cool-down), the sender starts afresh.
            // A brake opened under the sender's address as written (before subaddresses
            // were cut) still applies.
            let legacy = crate::envelope::sender_key(env.auth_user.as_deref(), &env.mail_from, "");
            let brake = self.breakers.get(&sender, now).or_else(|| {
                (legacy != sender)
                    .then(|| self.breakers.get(&legacy, now))
                    .flatten()
            });
            match brake {
                Some(b) => {
                    obs.brake_key = Some(b.sender.clone());
                    state.braked = true;
                    findings.push(Finding {
                        reason: HoldReason::BreakerOpen,
                        action: Action::Hold,
                        summary: format!(
                            "the sender's brake has been open for {} ({}): everything it sends is held until `mailbrake breaker reset`",
                            human(now.saturating_sub(b.since)),
                            b.reason
                        ),
                        location: "sender".into(),
                        count: Some(b.held_since),
                        columns: Vec::new(),
                    });
                }
                None if state.braked => state.start_afresh(),
                None => {}
            }
            let shortest = window_rules
                .iter()
                .enumerate()
                .min_by_key(|(_, r)| r.window)
                .map(|(i, _)| i);
            if let Some(i) = shortest {
                let tried = state.attempts.add(now, window_rules[i].window.as_secs());
                obs.in_batch = tried >= rules.batch_min_messages;
            }
            let totals = state.windows.with_one_more(now, rcpts, &domains);
            let rate = window_rules.iter().zip(&totals).find(|(r, t)| {
                t.messages > r.max_messages
                    || t.recipients > r.max_recipients
                    || t.domains > r.max_domains
            });
            if let Some((r, t)) = rate {
                findings.push(Finding {
                    reason: HoldReason::SenderRate,
                    action: rules.action,
                    summary: format!(
                        "{} messages, {} recipients, {} recipient domains in the last {} with this one (policy allows {}, {}, {})",
                        t.messages,
                        t.recipients,
                        t.domains,
                        human(r.window.as_secs()),
                        r.max_messages,
                        r.max_recipients,
                        r.max_domains
                    ),
                    location: "sender".into(),
                    count: None,
                    columns: Vec::new(),
                });
                obs.trip = Some(HoldReason::SenderRate);
            }
            let half_life = surge_rule.half_life.as_secs_f64() / 3600.0;
            let (count, usual, hours) = state.surge.with_one_more(now, half_life);
            if hours >= surge_rule.min_history_hours
                && count > surge_rule.floor
                && count as f64 > surge_rule.multiple * usual
            {
                findings.push(Finding {
                    reason: HoldReason::SenderSurge,
                    action: rules.action,
                    summary: format!(
                        "{count} messages this hour with this one against a usual {usual:.1} an hour (policy: more than {}× and more than {})",
                        surge_rule.multiple, surge_rule.floor
                    ),
                    location: "sender".into(),
                    count: Some(count),
                    columns: Vec::new(),
                });
                obs.trip.get_or_insert(HoldReason::SenderSurge);
            }
            // Every one-recipient message is remembered (even a batch's first recipient must be
            // protected); the tracker forgets what is older than its window.
            if let [to] = env.rcpt_to.as_slice() {
                let to = normalize_address(to).to_lowercase();
                let cross = state.cross.get_or_insert_with(Box::default);
                let foreign = cross.observe(
                    now,
                    policy.cross_recipient.window.as_secs(),
                    token(&to),
                    token(&to),
                    tokens,
                );
                if obs.in_batch && foreign > 0 {
                    findings.push(Finding {
                        reason: HoldReason::CrossRecipient,
                        action: policy.cross_recipient.action,
                        summary: format!(
                            "carries {foreign} identifier(s) (address, name, member number …) of another recipient of this sender's batch"
                        ),
                        location: "message content".into(),
                        count: Some(foreign as u64),
                        columns: Vec::new(),
                    });
                }
            }
            // Counted only if it leaves: the verdict the pipeline will reach from the same
            // findings.
            if policy.lets_go(content.iter().chain(&findings)) {
                let mark = state.windows.add(now, rcpts, &domains);
                let hour = state.surge.add(now, half_life);
                obs.mark = Some((mark, hour));
            }
            state.last_seen = now;
            state.dirty = true;
        }
        obs.findings = findings;
        obs
    }

    /// Takes a message back out of its sender's windows (it did not leave after all).
    pub fn undo(&self, obs: &Observation) {
        let Some((mark, hour)) = obs.mark.filter(|_| !obs.exempt) else {
            return;
        };
        let mut shard = self.shard(&obs.sender);
        if let Some(state) = shard.get_mut(&obs.sender) {
            state.windows.undo(mark);
            state.surge.undo(hour);
            state.dirty = true;
        }
    }

    /// Counts a released message in its sender's windows and surge (it left now); not
    /// judged. A timed hold was counted when it was accepted and is not counted again.
    pub fn count_released(&self, policy: &Policy, env: &Envelope, now: u64) {
        let rules = &policy.sender;
        let sender = rules.key(env);
        let ov = rules.override_for(&sender);
        if ov.is_some_and(|o| o.exempt) {
            return;
        }
        let (window_rules, surge_rule) = rules.limits_for(ov);
        let rcpts = u32::try_from(env.rcpt_to.len()).unwrap_or(u32::MAX);
        let domains = domain_tokens(env);
        let widths: Vec<u64> = window_rules.iter().map(|r| r.window.as_secs()).collect();
        let mut shard = self.shard(&sender);
        if !shard.contains_key(&sender) {
            let loaded = self.load(&sender, &widths);
            shard.insert(sender.clone(), loaded);
        }
        if let Some(state) = shard.get_mut(&sender) {
            state.align(&widths);
            state.windows.add(now, rcpts, &domains);
            state
                .surge
                .add(now, surge_rule.half_life.as_secs_f64() / 3600.0);
            state.last_seen = now;
            state.dirty = true;
        }
    }

    /// After the verdict: opens the brake on a rate or surge trip, or on a content hold
    /// inside a batch; counts messages held by an open brake. Returns the brake it opened.
    pub fn after_verdict(
        &self,
        policy: &Policy,
        obs: &Observation,
        verdict: &Verdict,
        now: u64,
    ) -> Option<HoldReason> {
        if obs.exempt || verdict.monitor {
            return None;
        }
        let content = verdict.reasons.iter().copied().find(|r| {
            !matches!(
                r,
                HoldReason::SenderRate
                    | HoldReason::SenderSurge
                    | HoldReason::BreakerOpen
                    | HoldReason::TooManyRecipients
                    | HoldReason::VisibleRecipients
            )
        });
        let reason = obs.trip.filter(|_| policy.brake.on_rate).or_else(|| {
            (policy.brake.on_content_in_batch && obs.in_batch && verdict.decision == Decision::Hold)
                .then_some(content)
                .flatten()
        });
        let mut opened = None;
        if let Some(r) = reason
            && self
                .breakers
                .trip(&obs.sender, r, now, policy.brake.cooldown.as_secs())
        {
            opened = Some(r);
            // However soon the brake closes again, the sender then starts afresh.
            if let Some(state) = self.shard(&obs.sender).get_mut(&obs.sender) {
                state.braked = true;
                state.dirty = true;
            }
        }
        if verdict.decision == Decision::Hold && verdict.reasons.contains(&HoldReason::BreakerOpen)
        {
            self.breakers
                .note_held(obs.brake_key.as_deref().unwrap_or(&obs.sender));
        }
        opened
    }

    /// Closes a sender's brake (`sender` as an operator types it) and forgets its current
    /// windows, so its new mail flows. A brake kept under the address as written (opened
    /// before subaddresses were cut) is found too.
    pub fn reset(&self, policy: &Policy, sender: &str) -> Option<Brake> {
        let key = policy.sender.key_of_typed(sender);
        let b = self.breakers.reset(&key).or_else(|| {
            let written = crate::envelope::sender_key(None, sender, "");
            (!key.starts_with("user:") && key != "<>" && written != key)
                .then(|| self.breakers.reset(&written))
                .flatten()
        });
        let mut shard = self.shard(&key);
        if !shard.contains_key(&key)
            && let Ok(Some(_)) = self.tree.get(key.as_bytes())
        {
            // Not in memory (evicted, or a restart): start afresh in sled too.
            let loaded = self.load(&key, &[]);
            shard.insert(key.clone(), loaded);
        }
        if let Some(state) = shard.get_mut(&key) {
            state.start_afresh();
        }
        b
    }

    /// Writes changed sender states to sled; evicts senders idle for `idle_secs` from
    /// memory (their state stays in sled). Returns how many were written.
    pub fn snapshot(&self, now: u64, idle_secs: u64) -> usize {
        let mut written = 0;
        for shard in &self.shards {
            let mut s = lock(shard);
            for (sender, state) in s.iter_mut().filter(|(_, st)| st.dirty) {
                if let Ok(v) = serde_json::to_vec(state)
                    && self.tree.insert(sender.as_bytes(), v).is_ok()
                {
                    state.dirty = false;
                    written += 1;
                }
            }
            s.retain(|_, st| st.dirty || now.saturating_sub(st.last_seen) < idle_secs);
        }
        written
    }

    /// Senders held in memory now.
    pub fn active_senders(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }
}

/// The distinct recipient domains of `env`, as tokens.
fn domain_tokens(env: &Envelope) -> Vec<u64> {
    let mut domains: Vec<u64> = env
        .rcpt_to
        .iter()
        .filter_map(|r| domain_of(r))
        .map(|d| token(&d))
        .collect();
    domains.sort_unstable();
    domains.dedup();
    domains
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::WindowRule;
    use std::time::Duration;

    fn env(from: &str, to: &str) -> Envelope {
        Envelope {
            mail_from: from.into(),
            rcpt_to: vec![to.into()],
            smtputf8: false,
            client_ip: "127.0.0.1".parse().unwrap(),
            helo: "h".into(),
            auth_user: None,
            tls: false,
        }
    }

    fn hold(reason: HoldReason) -> Vec<Finding> {
        vec![Finding {
            reason,
            action: Action::Hold,
            summary: String::new(),
            location: String::new(),
            count: None,
            columns: Vec::new(),
        }]
    }

    fn reasons(o: &Observation) -> Vec<HoldReason> {
        o.findings.iter().map(|f| f.reason).collect()
    }

    /// Held mail fills neither the windows nor the surge count; a message that leaves is
    /// counted once; when the brake closes by its cool-down the sender starts afresh.
    #[test]
    fn only_mail_that_leaves_counts_and_a_closed_brake_starts_afresh() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let b = Batches::open(&db).unwrap();
        let mut p = Policy::builtin().unwrap();
        p.sender.windows = vec![WindowRule {
            window: Duration::from_secs(86_400),
            max_messages: 3,
            max_recipients: 1000,
            max_domains: 1000,
        }];
        p.brake.cooldown = Duration::from_secs(60);
        let e = env("app@sys.example", "u@d.example");
        let t = 1_000_000;
        for _ in 0..10 {
            let o = b.observe(&p, &e, &[], &hold(HoldReason::Credentials), t);
            assert!(o.findings.is_empty(), "{:?}", reasons(&o));
        }
        let run = |t: u64| {
            for _ in 0..3 {
                let o = b.observe(&p, &e, &[], &[], t);
                assert!(o.findings.is_empty(), "{:?}", reasons(&o));
            }
            let o = b.observe(&p, &e, &[], &[], t);
            assert_eq!(reasons(&o), [HoldReason::SenderRate]);
            let v = p.decide(o.findings.clone());
            assert_eq!(b.after_verdict(&p, &o, &v, t), Some(HoldReason::SenderRate));
        };
        run(t);
        for _ in 0..5 {
            let o = b.observe(&p, &e, &[], &[], t + 1);
            assert!(reasons(&o).contains(&HoldReason::BreakerOpen));
        }
        // The cool-down is over: three more leave within the same day window.
        run(t + 61);

        // Surge: held messages are not part of this hour's count.
        let mut p = Policy::builtin().unwrap();
        p.sender.surge.min_history_hours = 0;
        p.sender.surge.floor = 2;
        let e = env("new@apps.example", "u@d.example");
        let t = 3600 * 1000 + 10;
        for _ in 0..5 {
            b.observe(&p, &e, &[], &hold(HoldReason::PersonalData), t);
        }
        for _ in 0..2 {
            assert!(b.observe(&p, &e, &[], &[], t).findings.is_empty());
        }
        assert_eq!(
            reasons(&b.observe(&p, &e, &[], &[], t)),
            [HoldReason::SenderSurge]
        );
    }
}
