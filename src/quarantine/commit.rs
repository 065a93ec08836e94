//! Group commit of spool files: one thread turns a batch of held messages durable at once.
//!
//! For each batch: write every `tmp/<id>`, `fdatasync` each, rename each into `held/`, then
//! fsync `held/` **once**. On ext4 the first file sync commits the journal transaction that
//! holds all the batch's metadata, so the others are cheap: concurrent sessions share the cost
//! of durability instead of queueing behind one another (RELIABILITY.md §3.2 rule 4).
//! A job's reply is sent only after its file and the directory entry are on disk.

use std::fs;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::Instant;
use tokio::sync::oneshot;

use super::spool::{self, SpoolMeta};
use crate::metrics::Metrics;

/// Most jobs in one batch.
const MAX_BATCH: usize = 256;
/// Jobs waiting for the commit thread; senders wait when it is full (back-pressure).
const QUEUE: usize = 1024;

struct Job {
    meta: SpoolMeta,
    body: Arc<Vec<u8>>,
    done: oneshot::Sender<io::Result<()>>,
}

/// Handle to the commit thread. Dropping every handle stops the thread.
#[derive(Clone)]
pub struct Committer {
    tx: SyncSender<Job>,
}

impl Committer {
    /// Starts the commit thread for `tmp_dir` → `held_dir`.
    pub fn start(
        tmp_dir: PathBuf,
        held_dir: PathBuf,
        metrics: Arc<Metrics>,
    ) -> io::Result<Committer> {
        let (tx, rx) = sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("mailbrake-commit".into())
            .spawn(move || run(rx, tmp_dir, held_dir, metrics))?;
        Ok(Committer { tx })
    }

    /// Makes `meta` + `body` durable as `held/<id>`. Returns after the directory fsync.
    pub async fn commit(&self, meta: SpoolMeta, body: Arc<Vec<u8>>) -> io::Result<()> {
        let (done, wait) = oneshot::channel();
        let mut job = Job { meta, body, done };
        // Fast path without blocking a runtime worker; when the queue is full, wait for room
        // on a blocking thread so the async workers keep serving other sessions.
        match self.tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(j)) => {
                job = j;
                let tx = self.tx.clone();
                tokio::task::spawn_blocking(move || tx.send(job).map_err(|_| ()))
                    .await
                    .map_err(io::Error::other)?
                    .map_err(|()| closed())?;
            }
            Err(TrySendError::Disconnected(_)) => return Err(closed()),
        }
        wait.await.map_err(|_| closed())?
    }
}

fn closed() -> io::Error {
    io::Error::other("quarantine commit thread stopped")
}

fn run(rx: Receiver<Job>, tmp_dir: PathBuf, held_dir: PathBuf, metrics: Arc<Metrics>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let start = Instant::now();
        let results = commit_batch(&tmp_dir, &held_dir, &batch);
        metrics
            .store_commit_duration_seconds
            .observe(start.elapsed().as_secs_f64());
        for (job, result) in batch.into_iter().zip(results) {
            // The session may have gone away; the file is durable either way.
            let _ = job.done.send(result);
        }
    }
}

/// Threads syncing one batch's files at once.
const SYNC_THREADS: usize = 8;

/// `sync_data` of every open file, on up to [`SYNC_THREADS`] threads; `None` where no file.
fn sync_all_parallel(files: &[Option<fs::File>]) -> Vec<Option<io::Result<()>>> {
    let open: Vec<usize> = (0..files.len()).filter(|&i| files[i].is_some()).collect();
    let mut out: Vec<Option<io::Result<()>>> = (0..files.len()).map(|_| None).collect();
    if open.len() <= 1 {
        for &i in &open {
            out[i] = files[i].as_ref().map(fs::File::sync_data);
        }
        return out;
    }
    let per = open.len().div_ceil(SYNC_THREADS);
    let results: Vec<(usize, io::Result<()>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = open
            .chunks(per)
            .map(|chunk| {
                scope.spawn(move || {
                    chunk
                        .iter()
                        .filter_map(|&i| files[i].as_ref().map(|f| (i, f.sync_data())))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    for (i, r) in results {
        out[i] = Some(r);
    }
    // A thread that could not report leaves its files unsynced: count them as failed.
    for &i in &open {
        if out[i].is_none() {
            out[i] = Some(Err(io::Error::other("sync thread failed")));
        }
    }
    out
}

fn commit_batch(
    tmp_dir: &std::path::Path,
    held_dir: &std::path::Path,
    batch: &[Job],
) -> Vec<io::Result<()>> {
    let mut results: Vec<io::Result<()>> = Vec::with_capacity(batch.len());
    let mut files = Vec::with_capacity(batch.len());
    for job in batch {
        let tmp = tmp_dir.join(&job.meta.id);
        match spool::write_new(&tmp, &job.meta, &job.body) {
            Ok(f) => {
                files.push(Some(f));
                results.push(Ok(()));
            }
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                files.push(None);
                results.push(Err(e));
            }
        }
    }
    // fdatasync every file, several at once: concurrent syncs can share one journal commit,
    // where one after another each may wait for its own.
    let synced = sync_all_parallel(&files);
    for (i, job) in batch.iter().enumerate() {
        let Some(f) = files[i].take() else { continue };
        let tmp = tmp_dir.join(&job.meta.id);
        drop(f);
        let moved = match &synced[i] {
            Some(Err(e)) => Err(io::Error::new(e.kind(), e.to_string())),
            _ => fs::rename(&tmp, held_dir.join(&job.meta.id)),
        };
        if let Err(e) = moved {
            let _ = fs::remove_file(&tmp);
            results[i] = Err(e);
        }
    }
    if results.iter().any(|r| r.is_ok())
        && let Err(e) = spool::sync_dir(held_dir)
    {
        // The renames may not survive a crash: undo them and fail every job, so no client
        // gets 250 for a message whose directory entry is not durable.
        for (i, job) in batch.iter().enumerate() {
            if results[i].is_ok() {
                let _ = fs::remove_file(held_dir.join(&job.meta.id));
                results[i] = Err(io::Error::new(e.kind(), e.to_string()));
            }
        }
    }
    results
}
