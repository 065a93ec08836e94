//! The quarantine: held mail is accepted mail, as durable as an MTA queue (DESIGN.md §2.3).
//!
//! ```text
//! <data-dir>/spool/tmp/<id>       being written (removed at start-up: never acknowledged)
//! <data-dir>/spool/held/<id>      held; durable before `250 ... held as <id>`
//! <data-dir>/spool/released/<id>  released upstream; kept for the audit retention period
//! <data-dir>/spool/corrupt/<id>   failed verification at start-up (never silently dropped)
//! <data-dir>/index/               sled: the index, rebuildable from the spool
//! ```
//! A message's state is where its spool file is, and every move is followed by a directory
//! fsync, so releases and deletes are durable transitions. sled mirrors that state for fast
//! listing and is reconciled against the spool at every start.

mod commit;
pub mod index;
pub mod spool;

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

pub use index::{Entry, State};
use index::{Index, IndexError};
use spool::{SpoolError, SpoolMeta};

use crate::metrics::Metrics;
use crate::verdict::HoldReason;

/// Why a quarantine operation failed.
#[derive(Debug, thiserror::Error)]
pub enum QuarantineError {
    #[error("no message with id {0}")]
    NotFound(String),
    #[error("message {id} is {state}, not held")]
    NotHeld { id: String, state: &'static str },
    #[error("message {0} is being released right now")]
    Busy(String),
    #[error("spool file of {0} is unreadable: {1}")]
    Spool(String, SpoolError),
    #[error("storage: {0}")]
    Io(#[from] io::Error),
    #[error("index: {0}")]
    Index(#[from] IndexError),
}

/// Which entries a listing returns.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// `None` = every state.
    pub state: Option<State>,
    pub reason: Option<HoldReason>,
    /// Case-insensitive substring of the envelope sender or the sender identity.
    pub sender: Option<String>,
    pub limit: Option<usize>,
}

impl Filter {
    fn matches(&self, e: &Entry) -> bool {
        self.state.is_none_or(|s| s == e.state)
            && self.reason.is_none_or(|r| e.reasons.contains(&r))
            && self.sender.as_ref().is_none_or(|s| {
                let s = s.to_lowercase();
                e.from.to_lowercase().contains(&s) || e.sender.to_lowercase().contains(&s)
            })
    }
}

/// What start-up reconciliation found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Held messages after reconciliation.
    pub held: usize,
    /// Spool files that had no (or a stale) index entry and were re-indexed.
    pub reindexed: usize,
    /// Index entries whose spool file is gone (logged and dropped).
    pub dropped: usize,
    /// Spool files that failed verification, moved to `spool/corrupt/`.
    pub corrupt: usize,
    /// Unacknowledged temporary files removed.
    pub tmp_removed: usize,
}

struct Dirs {
    tmp: PathBuf,
    held: PathBuf,
    released: PathBuf,
    corrupt: PathBuf,
}

/// The quarantine of one data directory.
pub struct Quarantine {
    dirs: Dirs,
    index: Index,
    committer: commit::Committer,
    /// Ids currently held, in id (= time) order: the gauge and the oldest age come from here.
    held: Mutex<BTreeSet<String>>,
    /// Ids being released now, so two releases of one message cannot race.
    releasing: Mutex<HashSet<String>>,
    /// Timed holds: (release after, id), earliest first.
    delayed: Mutex<BTreeSet<(u64, String)>>,
    /// The index refused a write (a full disk can leave sled read-only): new holds are
    /// refused at MAIL until a probe write succeeds again.
    index_failed: std::sync::atomic::AtomicBool,
}

/// A release in progress: the message bytes, and a claim that no one else releases it.
pub struct ReleaseTicket<'a> {
    pub meta: SpoolMeta,
    pub body: Vec<u8>,
    q: &'a Quarantine,
}

impl Drop for ReleaseTicket<'_> {
    fn drop(&mut self) {
        lock(&self.q.releasing).remove(&self.meta.id);
    }
}

/// The result of starting a release.
pub enum Begin<'a> {
    /// Deliver `ticket.body`, then call `finish_release` or `fail_release`.
    Ready(ReleaseTicket<'a>),
    /// Already released earlier: nothing to do (releases are idempotent).
    Already(Entry),
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Unix time now, in seconds.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Quarantine {
    /// Opens the quarantine in `data_dir`, creating directories as needed, and reconciles the
    /// index with the spool. A sled database that will not open is moved aside and rebuilt.
    pub fn open(
        data_dir: &Path,
        metrics: Arc<Metrics>,
    ) -> Result<(Quarantine, ReconcileReport), QuarantineError> {
        let spool = data_dir.join("spool");
        let dirs = Dirs {
            tmp: spool.join("tmp"),
            held: spool.join("held"),
            released: spool.join("released"),
            corrupt: spool.join("corrupt"),
        };
        for d in [&dirs.tmp, &dirs.held, &dirs.released, &dirs.corrupt] {
            use std::os::unix::fs::DirBuilderExt;
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(d)?;
        }
        let index_path = data_dir.join("index");
        let index = match Index::open(&index_path) {
            Ok(i) => i,
            Err(IndexError::Sled(sled::Error::Io(e))) if e.kind() == io::ErrorKind::WouldBlock => {
                return Err(QuarantineError::Io(io::Error::other(format!(
                    "{} is in use by another mailbrake process",
                    index_path.display()
                ))));
            }
            Err(e) => {
                let aside = data_dir.join(format!("index.broken-{}", unix_now()));
                tracing::error!(error = %e, moved_to = %aside.display(),
                    "quarantine index cannot be opened; moving it aside and rebuilding from the spool");
                fs::rename(&index_path, &aside)?;
                Index::open(&index_path)?
            }
        };
        let committer = commit::Committer::start(dirs.tmp.clone(), dirs.held.clone(), metrics)?;
        let q = Quarantine {
            dirs,
            index,
            committer,
            held: Mutex::new(BTreeSet::new()),
            releasing: Mutex::new(HashSet::new()),
            delayed: Mutex::new(BTreeSet::new()),
            index_failed: std::sync::atomic::AtomicBool::new(false),
        };
        let report = q.reconcile()?;
        Ok((q, report))
    }

    /// The sled database, for state that lives beside the quarantine (sender windows, brakes).
    pub fn db(&self) -> &sled::Db {
        self.index.db()
    }

    /// Makes the spool and the index agree; the spool wins.
    fn reconcile(&self) -> Result<ReconcileReport, QuarantineError> {
        let mut report = ReconcileReport::default();
        for name in list_dir(&self.dirs.tmp)? {
            if fs::remove_file(self.dirs.tmp.join(&name)).is_ok() {
                report.tmp_removed += 1;
            }
        }
        let mut indexed = std::collections::HashMap::new();
        let mut bad = Vec::new();
        self.index.scan(
            |e| {
                indexed.insert(e.id.clone(), e);
            },
            &mut bad,
        );
        for id in bad {
            tracing::warn!(id = %id, "quarantine index record unreadable; rebuilding it from the spool");
            let _ = self.index.remove(&id);
        }
        let mut held = BTreeSet::new();
        for (dir, state) in [
            (&self.dirs.held, State::Held),
            (&self.dirs.released, State::Released),
        ] {
            for name in list_dir(dir)? {
                let path = dir.join(&name);
                let current = indexed.remove(&name);
                // A file the index already knows gets the cheap completeness check (it was
                // verified when written); any other file gets the full checksum.
                let known = current.as_ref().is_some_and(|e| e.state == state)
                    && crate::ids::is_valid(&name);
                if known && spool::quick_check(&path).is_ok() {
                    if state == State::Held {
                        held.insert(name);
                    }
                    continue;
                }
                let checked = if known {
                    Err(SpoolError::Torn)
                } else {
                    spool::read(&path)
                };
                match checked {
                    Ok((meta, body)) if meta.id == name => {
                        let mut e = Entry::from_meta(&meta, body.len() as u64, state);
                        if let Some(old) = current {
                            tracing::warn!(id = %name, index_state = old.state.as_str(), spool_state = state.as_str(),
                                "quarantine index disagreed with the spool; the spool wins");
                            e.attempts = old.attempts;
                            e.last_error = old.last_error;
                            e.released_at = old.released_at;
                            e.upstream_reply = old.upstream_reply;
                        }
                        if state == State::Released && e.released_at.is_none() {
                            e.released_at = Some(unix_now());
                        }
                        self.index.put(&e)?;
                        report.reindexed += 1;
                        if state == State::Held {
                            held.insert(name);
                        }
                    }
                    Ok(_) | Err(_) => {
                        tracing::error!(file = %path.display(), "spool file fails verification; moved to spool/corrupt");
                        fs::rename(&path, self.dirs.corrupt.join(&name))?;
                        if current.is_some() {
                            self.index.remove(&name)?;
                        }
                        report.corrupt += 1;
                    }
                }
            }
        }
        for (id, e) in indexed {
            if e.state != State::Deleted {
                tracing::error!(id = %id, state = e.state.as_str(),
                    "quarantine index entry has no spool file; dropping it");
                self.index.remove(&id)?;
                report.dropped += 1;
            }
        }
        report.held = held.len();
        let mut delayed = BTreeSet::new();
        for id in &held {
            if let Ok(Some(e)) = self.index.get(id)
                && let Some(t) = e.release_after
            {
                delayed.insert((t, id.clone()));
            }
        }
        *lock(&self.delayed) = delayed;
        *lock(&self.held) = held;
        self.index.flush()?;
        Ok(report)
    }

    /// Stores a held message durably and indexes it. Returns only after the spool file and
    /// its directory entry are on disk: the caller may then answer `250`.
    pub async fn hold(
        &self,
        meta: SpoolMeta,
        body: Arc<Vec<u8>>,
    ) -> Result<Entry, QuarantineError> {
        let size = body.len() as u64;
        let entry = Entry::from_meta(&meta, size, State::Held);
        self.committer.commit(meta, body).await?;
        if let Err(e) = self.index.put(&entry) {
            // The spool file is durable but could not be indexed: remove it again, so the
            // 451 the client gets is true (nothing stored, no duplicate on its retry).
            tracing::error!(id = %entry.id, error = %e, "quarantine index write failed; refusing the hold");
            let _ = fs::remove_file(self.dirs.held.join(&entry.id));
            let _ = spool::sync_dir(&self.dirs.held);
            self.index_failed
                .store(true, std::sync::atomic::Ordering::Relaxed);
            return Err(e.into());
        }
        lock(&self.held).insert(entry.id.clone());
        if let Some(t) = entry.release_after {
            lock(&self.delayed).insert((t, entry.id.clone()));
        }
        Ok(entry)
    }

    /// True while the index refuses writes (see [`Quarantine::probe_index`]).
    pub fn index_failed(&self) -> bool {
        self.index_failed.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Checks the index with a small in-memory write every housekeeping tick: sled keeps an
    /// I/O error from its background flusher (a full disk) and returns it on the next write, so
    /// this finds a broken index before a hold does. While marked failed, a flush is tried too,
    /// and a success clears the mark.
    pub fn probe_index(&self) {
        use std::sync::atomic::Ordering;
        let failed = self.index_failed();
        let mut ok =
            self.index.db().insert("probe", "1").is_ok() && self.index.db().remove("probe").is_ok();
        if failed && ok {
            ok = self.index.flush().is_ok();
        }
        if ok && failed {
            tracing::info!("quarantine index accepts writes again");
            self.index_failed.store(false, Ordering::Relaxed);
        } else if !ok && !failed {
            tracing::error!("quarantine index refuses writes; holds are refused with 452 4.3.1");
            self.index_failed.store(true, Ordering::Relaxed);
        }
    }

    /// Ids of timed holds due at `now` (still held), earliest first.
    pub fn due(&self, now: u64) -> Vec<String> {
        lock(&self.delayed)
            .iter()
            .take_while(|(t, _)| *t <= now)
            .map(|(_, id)| id.clone())
            .collect()
    }

    /// The implicated attachments of every held message (to rebuild the known set).
    pub fn held_attachments(&self) -> Vec<String> {
        let ids = self.held_ids();
        ids.iter()
            .filter_map(|id| self.index.get(id).ok().flatten())
            .flat_map(|e| e.attachments)
            .collect()
    }

    /// Moves a timed hold to `until` (its send failed; try again later).
    pub fn postpone(&self, id: &str, until: u64) {
        let mut d = lock(&self.delayed);
        if d.iter().any(|(_, i)| i == id) {
            d.retain(|(_, i)| i != id);
            d.insert((until, id.to_string()));
        }
    }

    /// Turns a timed hold into an ordinary hold (no automatic release) with one more reason
    /// and its finding — a delayed message whose sender's brake opened meanwhile. The spool
    /// file is unchanged; the index records the change (and wins over the spool's
    /// `release_after` at start-up).
    pub fn cancel_delay(
        &self,
        id: &str,
        reason: HoldReason,
        finding: crate::verdict::Finding,
    ) -> Result<Entry, QuarantineError> {
        let mut e = self.get(id)?;
        if e.state != State::Held {
            return Err(QuarantineError::NotHeld {
                id: id.into(),
                state: e.state.as_str(),
            });
        }
        if lock(&self.releasing).contains(id) {
            return Err(QuarantineError::Busy(id.to_string()));
        }
        e.release_after = None;
        if !e.reasons.contains(&reason) {
            e.reasons.push(reason);
            e.reasons.sort();
        }
        e.findings.push(finding);
        self.index.put(&e)?;
        let _ = self.index.flush();
        self.forget_delay(id);
        Ok(e)
    }

    fn forget_delay(&self, id: &str) {
        lock(&self.delayed).retain(|(_, i)| i != id);
    }

    pub fn get(&self, id: &str) -> Result<Entry, QuarantineError> {
        match self.index.get(id) {
            Ok(Some(e)) => Ok(e),
            // A broken index (full disk) must not hide a durable held message.
            Ok(None) | Err(_) if lock(&self.held).contains(id) => self.entry_from_spool(id),
            Ok(None) => Err(QuarantineError::NotFound(id.to_string())),
            Err(e) => Err(e.into()),
        }
    }

    /// A held message's entry rebuilt from its spool file (the spool is the truth).
    fn entry_from_spool(&self, id: &str) -> Result<Entry, QuarantineError> {
        let (meta, body) = spool::read(&self.dirs.held.join(id))
            .map_err(|err| QuarantineError::Spool(id.to_string(), err))?;
        Ok(Entry::from_meta(&meta, body.len() as u64, State::Held))
    }

    /// Entries matching `filter`, oldest first.
    ///
    /// Held messages come from the spool when the index cannot list them (sled stops
    /// iterating after an I/O error such as a full disk): a listing never omits a message
    /// that is durably held.
    pub fn list(&self, filter: &Filter) -> Vec<Entry> {
        let mut out = Vec::new();
        let limit = filter.limit.unwrap_or(usize::MAX);
        let mut bad = Vec::new();
        let mut seen_held = HashSet::new();
        self.index.scan(
            |e| {
                if e.state == State::Held {
                    seen_held.insert(e.id.clone());
                }
                if out.len() < limit && filter.matches(&e) {
                    out.push(e);
                }
            },
            &mut bad,
        );
        if filter.state.is_none_or(|s| s == State::Held) {
            let missing: Vec<String> = lock(&self.held)
                .iter()
                .filter(|id| !seen_held.contains(*id))
                .cloned()
                .collect();
            if !missing.is_empty() {
                tracing::warn!(
                    missing = missing.len(),
                    "quarantine index lacks held messages; listing them from the spool"
                );
                for id in missing {
                    match self.entry_from_spool(&id) {
                        Ok(e) if filter.matches(&e) => out.push(e),
                        Ok(_) => {}
                        Err(err) => {
                            tracing::error!(id = %id, error = %err, "held spool file unreadable")
                        }
                    }
                }
                out.sort_by(|a, b| a.id.cmp(&b.id));
            }
        }
        out.truncate(limit);
        out
    }

    /// The stored message bytes (verified against the spool checksum).
    pub fn raw(&self, id: &str) -> Result<Vec<u8>, QuarantineError> {
        let e = self.get(id)?;
        let dir = match e.state {
            State::Held => &self.dirs.held,
            State::Released => &self.dirs.released,
            State::Deleted => {
                return Err(QuarantineError::NotHeld {
                    id: id.into(),
                    state: "deleted",
                });
            }
        };
        spool::read(&dir.join(id))
            .map(|(_, body)| body)
            .map_err(|err| QuarantineError::Spool(id.to_string(), err))
    }

    /// Held messages now.
    pub fn held_count(&self) -> usize {
        lock(&self.held).len()
    }

    /// Ids of held messages, oldest first.
    pub fn held_ids(&self) -> Vec<String> {
        lock(&self.held).iter().cloned().collect()
    }

    /// Age in seconds of the oldest held message (0 when none).
    pub fn oldest_held_age(&self) -> u64 {
        let held = lock(&self.held);
        let Some(first) = held.first() else { return 0 };
        match ulid::Ulid::from_string(first) {
            Ok(u) => unix_now().saturating_sub(u.timestamp_ms() / 1000),
            Err(_) => 0,
        }
    }

    /// Claims a held message for release and reads it from the spool.
    pub fn begin_release(&self, id: &str) -> Result<Begin<'_>, QuarantineError> {
        let e = self.get(id)?;
        match e.state {
            State::Released => return Ok(Begin::Already(e)),
            State::Deleted => {
                return Err(QuarantineError::NotHeld {
                    id: id.into(),
                    state: "deleted",
                });
            }
            State::Held => {}
        }
        if !lock(&self.releasing).insert(id.to_string()) {
            return Err(QuarantineError::Busy(id.to_string()));
        }
        match spool::read(&self.dirs.held.join(id)) {
            Ok((meta, body)) => Ok(Begin::Ready(ReleaseTicket {
                meta,
                body,
                q: self,
            })),
            Err(err) => {
                lock(&self.releasing).remove(id);
                Err(QuarantineError::Spool(id.to_string(), err))
            }
        }
    }

    /// Records a successful release: the spool file moves to `released/` (durably), the
    /// upstream's reply is kept for the audit trail.
    pub fn finish_release(
        &self,
        ticket: ReleaseTicket<'_>,
        upstream_reply: &str,
    ) -> Result<Entry, QuarantineError> {
        let id = ticket.meta.id.clone();
        fs::rename(self.dirs.held.join(&id), self.dirs.released.join(&id))?;
        spool::sync_dir(&self.dirs.released)?;
        spool::sync_dir(&self.dirs.held)?;
        lock(&self.held).remove(&id);
        self.forget_delay(&id);
        let mut e = self.get(&id)?;
        e.state = State::Released;
        e.attempts += 1;
        e.released_at = Some(unix_now());
        e.upstream_reply = Some(upstream_reply.to_string());
        e.last_error = None;
        self.index.put(&e)?;
        let _ = self.index.flush();
        drop(ticket);
        Ok(e)
    }

    /// Records a failed release: the message stays held, with the error shown.
    pub fn fail_release(
        &self,
        ticket: ReleaseTicket<'_>,
        error: &str,
    ) -> Result<Entry, QuarantineError> {
        let mut e = self.get(&ticket.meta.id)?;
        e.attempts += 1;
        e.last_error = Some(error.to_string());
        self.index.put(&e)?;
        drop(ticket);
        Ok(e)
    }

    /// Deletes a message: its spool file is removed durably; the index keeps an audit record
    /// for the retention period. Deleting a deleted message is a no-op.
    pub fn delete(&self, id: &str) -> Result<Entry, QuarantineError> {
        let mut e = self.get(id)?;
        if e.state == State::Deleted {
            return Ok(e);
        }
        if lock(&self.releasing).contains(id) {
            return Err(QuarantineError::Busy(id.to_string()));
        }
        let dir = if e.state == State::Held {
            &self.dirs.held
        } else {
            &self.dirs.released
        };
        match fs::remove_file(dir.join(id)) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(err.into()),
        }
        spool::sync_dir(dir)?;
        lock(&self.held).remove(id);
        self.forget_delay(id);
        e.state = State::Deleted;
        e.deleted_at = Some(unix_now());
        self.index.put(&e)?;
        let _ = self.index.flush();
        Ok(e)
    }

    /// Removes released and deleted records (and released spool files) older than
    /// `retention_secs`. Returns how many were purged.
    pub fn purge(&self, retention_secs: u64) -> Result<usize, QuarantineError> {
        let cutoff = unix_now().saturating_sub(retention_secs);
        let mut purged = 0;
        for e in self.list(&Filter::default()) {
            let done_at = match e.state {
                State::Held => continue,
                State::Released => e.released_at,
                State::Deleted => e.deleted_at,
            };
            if done_at.is_some_and(|t| t < cutoff) {
                if e.state == State::Released {
                    let _ = fs::remove_file(self.dirs.released.join(&e.id));
                }
                self.index.remove(&e.id)?;
                purged += 1;
            }
        }
        if purged > 0 {
            spool::sync_dir(&self.dirs.released)?;
            tracing::info!(
                purged,
                retention_secs,
                "quarantine audit records past retention purged"
            );
        }
        Ok(purged)
    }
}

fn list_dir(dir: &Path) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::Envelope;

    fn meta(id: &str) -> SpoolMeta {
        SpoolMeta {
            id: id.into(),
            envelope: Envelope {
                mail_from: "a@b.example".into(),
                rcpt_to: vec!["c@d.example".into()],
                smtputf8: false,
                client_ip: "127.0.0.1".parse().unwrap(),
                helo: "h".into(),
                auth_user: None,
                tls: false,
            },
            received_at: 1,
            reasons: vec![HoldReason::VisibleRecipients],
            findings: vec![],
            subject: None,
            release_after: None,
            undisclose_on_release: false,
            attachments: vec![],
        }
    }

    /// A full disk can leave sled without entries the spool holds (its flusher failed, or
    /// its iterator stops at an I/O error): the listing and `get` still show every held
    /// message, from the spool.
    #[tokio::test]
    async fn held_messages_missing_from_the_index_are_listed_from_the_spool() {
        let dir = tempfile::tempdir().unwrap();
        let (q, _) = Quarantine::open(dir.path(), Arc::new(Metrics::new())).unwrap();
        let ids = [
            crate::ids::new_id(),
            crate::ids::new_id(),
            crate::ids::new_id(),
        ];
        for id in &ids {
            q.hold(meta(id), Arc::new(b"Subject: x\r\n\r\nbody\r\n".to_vec()))
                .await
                .unwrap();
        }
        q.index.remove(&ids[1]).unwrap();
        let all = q.list(&Filter::default());
        let listed: Vec<&str> = all.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(listed, ids.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(all[1].state, State::Held);
        assert_eq!(all[1].size, 20);
        let two = q.list(&Filter {
            limit: Some(2),
            ..Filter::default()
        });
        assert_eq!(two.len(), 2);
        assert_eq!(two[1].id, ids[1]);
        assert_eq!(q.get(&ids[1]).unwrap().id, ids[1]);
        assert!(matches!(
            q.get("01NOSUCH"),
            Err(QuarantineError::NotFound(_))
        ));
        let released = q.list(&Filter {
            state: Some(State::Released),
            ..Filter::default()
        });
        assert!(released.is_empty());
    }
}
