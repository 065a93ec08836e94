//! Cross-recipient data (incident 5's mail twin): in one sender's batch of one-recipient
//! messages, a message to A that carries B's address or B's identifier, where B received
//! another message of the batch.
//!
//! Each identifier in a message (its content's e-mail addresses, names, member numbers,
//! mobile numbers — hashed, never stored in clear) is "owned" by the message's recipient
//! while it is only ever seen in messages to that recipient; an identifier seen with two
//! recipients is shared (a company name, an event code) and ignored. Every recipient's own
//! address is owned by that recipient. Memory is bounded by a time window and a token cap.

use std::collections::HashMap;

/// Tokens remembered per sender.
const MAX_TOKENS: usize = 20_000;
/// Messages of the batch that must go by without a token before it counts as one
/// recipient's own: a token shared by every message (an event code, the sender's phone
/// number) shows up again at once and becomes shared instead.
const MIN_EXCLUSIVE: u64 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    /// Seen only in messages to this recipient; first seen at this message number.
    One {
        to: u32,
        first: u32,
    },
    /// A recipient's own address: theirs at once.
    Address(u32),
    Shared,
}

/// One sender's recent identifiers: token → (owner, last seen, seconds after `base`).
#[derive(Debug, Default)]
pub struct Cross {
    owners: HashMap<u64, (Owner, u32)>,
    base: u64,
    seq: u32,
    last_sweep: u64,
}

impl Cross {
    /// Forgets tokens not seen within `window`: a sweep at most four times a window, so the
    /// cost per message stays constant on average and no second queue is kept.
    fn expire(&mut self, now: u64, window: u64) {
        if self.base == 0 {
            self.base = now;
            self.last_sweep = now;
        }
        if now.saturating_sub(self.last_sweep) >= (window / 4).max(1)
            || self.owners.len() > MAX_TOKENS
        {
            let cutoff = now.saturating_sub(window);
            let base = self.base;
            self.owners
                .retain(|_, (_, seen)| base + u64::from(*seen) >= cutoff);
            while self.owners.len() > MAX_TOKENS {
                // Still over the cap (a flood of distinct tokens): drop the oldest half.
                let mut seen: Vec<u32> = self.owners.values().map(|(_, s)| *s).collect();
                seen.sort_unstable();
                let median = seen[seen.len() / 2];
                self.owners.retain(|_, (_, s)| *s > median);
            }
            self.last_sweep = now;
        }
    }

    /// Checks a one-recipient message (recipient hash `to`, its address token `to_token`,
    /// content tokens `tokens`): returns how many tokens belong to another recipient, then
    /// learns the message's tokens.
    pub fn observe(
        &mut self,
        now: u64,
        window: u64,
        to: u64,
        to_token: u64,
        tokens: &[u64],
    ) -> usize {
        self.expire(now, window);
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let to = to as u32;
        let cutoff = now.saturating_sub(window);
        let live = |seen: u32| self.base + u64::from(seen) >= cutoff;
        let foreign = tokens
            .iter()
            .filter(|t| **t != to_token)
            .filter(|t| match self.owners.get(t) {
                Some((Owner::Address(o), s)) => live(*s) && *o != to,
                Some((Owner::One { to: o, first }, s)) => {
                    live(*s)
                        && *o != to
                        && seq.wrapping_sub(first.wrapping_add(1)) >= MIN_EXCLUSIVE as u32
                }
                _ => false,
            })
            .count();
        let seen = u32::try_from(now.saturating_sub(self.base)).unwrap_or(u32::MAX);
        for &t in tokens.iter().filter(|t| **t != to_token) {
            let owner = match self.owners.get(&t) {
                None => Owner::One { to, first: seq },
                Some((o @ Owner::One { to: o_to, .. }, _)) if *o_to == to => *o,
                Some((o @ Owner::Address(_), _)) => *o,
                Some(_) => Owner::Shared,
            };
            self.owners.insert(t, (owner, seen));
        }
        self.owners.insert(to_token, (Owner::Address(to), seen));
        foreign
    }

    pub fn is_empty(&self) -> bool {
        self.owners.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreign_identifiers_are_found_and_shared_ones_ignored() {
        let mut c = Cross::default();
        let event = 500; // in every message: shared, never foreign
        // A mail merge: recipient i gets its own name/number tokens (10i+1, 10i+2).
        for i in 1..=6u64 {
            assert_eq!(
                c.observe(i, 3600, i, 100 + i, &[10 * i + 1, 10 * i + 2, event]),
                0,
                "message {i}"
            );
        }
        // Message 7 to recipient 1 carries recipient 2's member number and address.
        assert_eq!(c.observe(7, 3600, 1, 101, &[11, 22, event, 102]), 2);
        // A token seen too recently (recipient 6's, first seen at message 6) is not yet
        // proof of anything.
        assert_eq!(c.observe(8, 3600, 1, 101, &[62]), 0);
        // After the window, nothing is remembered.
        assert_eq!(c.observe(10_000, 3600, 1, 101, &[22, 102]), 0);
    }
}
