//! Cross-recipient data (incident 5's mail twin): in one sender's batch of one-recipient
//! messages, a message to A that carries B's address or B's identifier, where B received
//! another message of the batch.
//!
//! Each identifier in a message (its content's e-mail addresses, names, member numbers,
//! mobile numbers — hashed, never stored in clear) is "owned" by the message's recipient
//! while it is only ever seen in messages to that recipient; an identifier seen with two
//! recipients is shared (a company name, an event code) and ignored. Every recipient's own
//! address is owned by that recipient. Memory is bounded by a time window and a token cap.

use std::collections::{HashMap, VecDeque};

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
        to: u64,
        first: u64,
    },
    /// A recipient's own address: theirs at once.
    Address(u64),
    Shared,
}

/// One sender's recent identifiers.
#[derive(Debug, Default)]
pub struct Cross {
    owners: HashMap<u64, (Owner, u64)>,
    order: VecDeque<(u64, u64)>,
    seq: u64,
}

impl Cross {
    fn expire(&mut self, now: u64, window: u64) {
        while let Some(&(t, tok)) = self.order.front() {
            if now.saturating_sub(t) < window && self.order.len() <= MAX_TOKENS {
                break;
            }
            self.order.pop_front();
            if self.owners.get(&tok).is_some_and(|(_, seen)| *seen == t) {
                self.owners.remove(&tok);
            }
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
        self.seq += 1;
        let seq = self.seq;
        let foreign = tokens
            .iter()
            .filter(|t| **t != to_token)
            .filter(|t| match self.owners.get(t) {
                Some((Owner::Address(o), _)) => *o != to,
                Some((Owner::One { to: o, first }, _)) => {
                    *o != to && seq.saturating_sub(*first + 1) >= MIN_EXCLUSIVE
                }
                _ => false,
            })
            .count();
        for &t in tokens.iter().filter(|t| **t != to_token) {
            let owner = match self.owners.get(&t) {
                None => Owner::One { to, first: seq },
                Some((o @ Owner::One { to: o_to, .. }, _)) if *o_to == to => *o,
                Some((o @ Owner::Address(_), _)) => *o,
                Some(_) => Owner::Shared,
            };
            self.owners.insert(t, (owner, now));
            self.order.push_back((now, t));
        }
        self.owners.insert(to_token, (Owner::Address(to), now));
        self.order.push_back((now, to_token));
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
