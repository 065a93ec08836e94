//! Sender brakes: once tripped, everything from the sender is held as `breaker_open` until
//! `mailbrake breaker reset SENDER` or the policy's cool-down. Brakes live in sled and every
//! change is flushed at once, so they survive a crash and a restart.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;

use crate::verdict::HoldReason;

/// One open brake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Brake {
    pub sender: String,
    /// What tripped it (`sender_rate`, `sender_surge`, or a content reason in a batch).
    pub reason: HoldReason,
    /// Unix time it opened.
    pub since: u64,
    /// Messages held because of it since then.
    pub held_since: u64,
    /// Closes by itself at this Unix time (cool-down), if configured.
    #[serde(default)]
    pub cooldown_until: Option<u64>,
}

/// All brakes.
pub struct Breakers {
    tree: sled::Tree,
    open: Mutex<HashMap<String, Brake>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl Breakers {
    /// Loads the brakes kept in `db`.
    pub fn open(db: &sled::Db) -> Result<Breakers, sled::Error> {
        let tree = db.open_tree("breakers")?;
        let mut open = HashMap::new();
        for item in tree.iter() {
            let (k, v) = item?;
            match serde_json::from_slice::<Brake>(&v) {
                Ok(b) => {
                    open.insert(b.sender.clone(), b);
                }
                Err(_) => {
                    tracing::warn!(key = %String::from_utf8_lossy(&k).escape_debug(), "unreadable brake record dropped");
                    tree.remove(k)?;
                }
            }
        }
        Ok(Breakers {
            tree,
            open: Mutex::new(open),
        })
    }

    fn persist(&self, b: &Brake) {
        let result = serde_json::to_vec(b)
            .map_err(|e| e.to_string())
            .and_then(|v| {
                self.tree
                    .insert(b.sender.as_bytes(), v)
                    .map_err(|e| e.to_string())
            })
            .and_then(|_| self.tree.flush().map(|_| ()).map_err(|e| e.to_string()));
        if let Err(e) = result {
            tracing::error!(error = %e, "cannot persist a sender brake");
        }
    }

    /// The open brake of `sender`, closing it first when its cool-down has passed.
    pub fn get(&self, sender: &str, now: u64) -> Option<Brake> {
        let mut open = lock(&self.open);
        let expired = open
            .get(sender)
            .and_then(|b| b.cooldown_until)
            .is_some_and(|t| now >= t);
        if expired {
            open.remove(sender);
            drop(open);
            let _ = self.tree.remove(sender.as_bytes());
            let _ = self.tree.flush();
            tracing::info!(sender = %sender.escape_debug(), "sender brake closed after its cool-down");
            return None;
        }
        open.get(sender).cloned()
    }

    /// Opens the brake of `sender` (no-op when already open). Returns true when it opened.
    pub fn trip(&self, sender: &str, reason: HoldReason, now: u64, cooldown_secs: u64) -> bool {
        let b = {
            let mut open = lock(&self.open);
            if open.contains_key(sender) {
                return false;
            }
            let b = Brake {
                sender: sender.to_string(),
                reason,
                since: now,
                held_since: 0,
                cooldown_until: (cooldown_secs > 0).then(|| now + cooldown_secs),
            };
            open.insert(sender.to_string(), b.clone());
            b
        };
        self.persist(&b);
        true
    }

    /// Counts one more message held by the brake of `sender`.
    pub fn note_held(&self, sender: &str) {
        let b = {
            let mut open = lock(&self.open);
            let Some(b) = open.get_mut(sender) else {
                return;
            };
            b.held_since += 1;
            b.clone()
        };
        // The count is informational: written without waiting for a flush.
        if let Ok(v) = serde_json::to_vec(&b) {
            let _ = self.tree.insert(b.sender.as_bytes(), v);
        }
    }

    /// Closes the brake of `sender`; returns it if it was open.
    pub fn reset(&self, sender: &str) -> Option<Brake> {
        let b = lock(&self.open).remove(sender)?;
        let _ = self.tree.remove(sender.as_bytes());
        if let Err(e) = self.tree.flush() {
            tracing::error!(error = %e, "cannot persist a brake reset");
        }
        Some(b)
    }

    /// Every open brake, oldest first.
    pub fn list(&self, now: u64) -> Vec<Brake> {
        let senders: Vec<String> = lock(&self.open).keys().cloned().collect();
        let mut v: Vec<Brake> = senders.iter().filter_map(|s| self.get(s, now)).collect();
        v.sort_by(|a, b| (a.since, &a.sender).cmp(&(b.since, &b.sender)));
        v
    }

    /// Brakes open at `now` (those whose cool-down has passed are closed first).
    pub fn count(&self, now: u64) -> usize {
        self.list(now).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trip_persist_reset_cooldown() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let b = Breakers::open(&db).unwrap();
        assert!(b.trip("app@corp.example", HoldReason::SenderRate, 100, 0));
        assert!(!b.trip("app@corp.example", HoldReason::SenderSurge, 101, 0));
        b.note_held("app@corp.example");
        assert!(b.trip("other@corp.example", HoldReason::PersonalData, 200, 60));
        drop(b);
        let b = Breakers::open(&db).unwrap();
        let list = b.list(150);
        assert_eq!(list.len(), 2);
        assert_eq!(
            (list[0].reason, list[0].held_since),
            (HoldReason::SenderRate, 1)
        );
        // The cool-down closes the second one by itself.
        assert!(b.get("other@corp.example", 260).is_none());
        assert!(b.reset("app@corp.example").is_some());
        assert!(b.reset("app@corp.example").is_none());
        assert_eq!(Breakers::open(&db).unwrap().count(300), 0);
    }
}
