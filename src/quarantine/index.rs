//! The sled index of the quarantine: one JSON record per message, keyed by id.
//!
//! sled is an index, not the source of truth (RELIABILITY.md §3): everything in it can be
//! rebuilt from the spool directories, and a database that will not open is moved aside and
//! rebuilt. This module is the only code that touches sled.

use serde::{Deserialize, Serialize};
use std::path::Path;

use crate::envelope::Envelope;
use crate::verdict::{Finding, HoldReason};

use super::spool::SpoolMeta;

/// Where a quarantined message is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Held,
    Released,
    Deleted,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Held => "held",
            State::Released => "released",
            State::Deleted => "deleted",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        match s {
            "held" => Some(State::Held),
            "released" => Some(State::Released),
            "deleted" => Some(State::Deleted),
            _ => None,
        }
    }
}

/// One message in the quarantine, as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub id: String,
    pub state: State,
    pub reasons: Vec<HoldReason>,
    pub from: String,
    /// The sender identity used for brakes (auth user or normalised envelope sender).
    pub sender: String,
    pub rcpts: Vec<String>,
    pub rcpt_count: usize,
    /// Message size in bytes.
    pub size: u64,
    /// Unix time (seconds) of receipt.
    pub received_at: u64,
    pub client_ip: String,
    #[serde(default)]
    pub auth_user: Option<String>,
    #[serde(default)]
    pub subject: Option<String>,
    pub findings: Vec<Finding>,
    /// For a timed hold: released automatically after this Unix time.
    #[serde(default)]
    pub release_after: Option<u64>,
    /// Release attempts so far.
    #[serde(default)]
    pub attempts: u32,
    /// The error of the last failed release.
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(default)]
    pub released_at: Option<u64>,
    /// The upstream's reply to the release (its queue id), for the audit trail.
    #[serde(default)]
    pub upstream_reply: Option<String>,
    #[serde(default)]
    pub deleted_at: Option<u64>,
    /// SHA-256 (hex) of the implicated attachments (see `SpoolMeta::attachments`).
    #[serde(default)]
    pub attachments: Vec<String>,
}

impl Entry {
    /// A fresh `held` entry from spool metadata.
    pub fn from_meta(meta: &SpoolMeta, size: u64, state: State) -> Entry {
        let env: &Envelope = &meta.envelope;
        Entry {
            id: meta.id.clone(),
            state,
            reasons: meta.reasons.clone(),
            from: env.mail_from.clone(),
            sender: env.sender_key(),
            rcpts: env.rcpt_to.clone(),
            rcpt_count: env.rcpt_to.len(),
            size,
            received_at: meta.received_at,
            client_ip: env.client_ip.to_string(),
            auth_user: env.auth_user.clone(),
            subject: meta.subject.clone(),
            findings: meta.findings.clone(),
            release_after: meta.release_after,
            attempts: 0,
            last_error: None,
            released_at: None,
            upstream_reply: None,
            deleted_at: None,
            attachments: meta.attachments.clone(),
        }
    }
}

/// Why the index failed.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    #[error("index record {0} is not valid JSON: {1}")]
    Record(String, String),
}

/// The sled database and its tree of entries.
pub struct Index {
    db: sled::Db,
    entries: sled::Tree,
}

impl Index {
    /// Opens (or creates) the index at `path`.
    pub fn open(path: &Path) -> Result<Index, IndexError> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(64 * 1024 * 1024)
            .mode(sled::Mode::LowSpace)
            .open()?;
        let entries = db.open_tree("entries")?;
        Ok(Index { db, entries })
    }

    /// The database itself, for other stores that keep state beside the quarantine.
    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    pub fn put(&self, e: &Entry) -> Result<(), IndexError> {
        let v =
            serde_json::to_vec(e).map_err(|x| IndexError::Record(e.id.clone(), x.to_string()))?;
        self.entries.insert(e.id.as_bytes(), v)?;
        Ok(())
    }

    pub fn get(&self, id: &str) -> Result<Option<Entry>, IndexError> {
        match self.entries.get(id.as_bytes())? {
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|x| IndexError::Record(id.to_string(), x.to_string())),
            None => Ok(None),
        }
    }

    pub fn remove(&self, id: &str) -> Result<(), IndexError> {
        self.entries.remove(id.as_bytes())?;
        Ok(())
    }

    /// Every entry, oldest first (ids are ULIDs, so key order is time order). Records that
    /// do not decode are skipped and reported through `bad`.
    pub fn scan(&self, mut visit: impl FnMut(Entry), bad: &mut Vec<String>) {
        for item in self.entries.iter() {
            match item {
                Ok((k, v)) => match serde_json::from_slice::<Entry>(&v) {
                    Ok(e) => visit(e),
                    Err(_) => bad.push(String::from_utf8_lossy(&k).into_owned()),
                },
                Err(e) => {
                    bad.push(format!("<iteration error: {e}>"));
                    break;
                }
            }
        }
    }

    /// Asks sled to write its buffers out (not a durability guarantee: the spool is).
    pub fn flush(&self) -> Result<(), IndexError> {
        self.db.flush()?;
        Ok(())
    }
}
