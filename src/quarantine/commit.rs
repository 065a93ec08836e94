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
    let pool = SyncPool::start(SYNC_THREADS - 1);
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let start = Instant::now();
        let results = commit_batch(&pool, &tmp_dir, &held_dir, &batch);
        metrics
            .store_commit_duration_seconds
            .observe(start.elapsed().as_secs_f64());
        for (job, result) in batch.into_iter().zip(results) {
            // The session may have gone away; the file is durable either way.
            let _ = job.done.send(result);
        }
    }
}

/// Threads syncing one batch's files at once (the commit thread is one of them).
const SYNC_THREADS: usize = 8;

type SyncDone = (usize, fs::File, io::Result<()>);

/// Long-lived helper threads that `fdatasync` files for the commit thread: spawning threads
/// per batch cost more CPU than the syncs at a few thousand holds a second.
struct SyncPool {
    workers: Vec<std::sync::mpsc::Sender<(usize, fs::File)>>,
    done_rx: Receiver<SyncDone>,
}

impl SyncPool {
    fn start(n: usize) -> SyncPool {
        let (done_tx, done_rx) = std::sync::mpsc::channel::<SyncDone>();
        let mut workers = Vec::new();
        for k in 0..n {
            let (tx, rx) = std::sync::mpsc::channel::<(usize, fs::File)>();
            let done = done_tx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("mailbrake-sync-{k}"))
                .spawn(move || {
                    while let Ok((i, f)) = rx.recv() {
                        let r = f.sync_data();
                        if done.send((i, f, r)).is_err() {
                            break;
                        }
                    }
                });
            // Without helpers the commit thread syncs everything itself.
            if spawned.is_ok() {
                workers.push(tx);
            }
        }
        SyncPool { workers, done_rx }
    }

    /// `sync_data` of every open file, several at once; `None` where no file. The files
    /// are handed back in place.
    fn sync_all(&self, files: &mut [Option<fs::File>]) -> Vec<Option<io::Result<()>>> {
        let mut out: Vec<Option<io::Result<()>>> = (0..files.len()).map(|_| None).collect();
        let open: Vec<usize> = (0..files.len()).filter(|&i| files[i].is_some()).collect();
        let helpers = self.workers.len().min(open.len().saturating_sub(1));
        let mut sent = 0;
        // The first file stays here; the others go round-robin to the helpers.
        if helpers > 0 {
            for (n, &i) in open.iter().enumerate().skip(1) {
                let Some(f) = files[i].take() else { continue };
                if let Err(std::sync::mpsc::SendError((i, f))) =
                    self.workers[n % helpers].send((i, f))
                {
                    out[i] = Some(f.sync_data());
                    files[i] = Some(f);
                } else {
                    sent += 1;
                }
            }
        }
        // Any file not handed out (no helpers) is synced here, the first one included.
        for &i in &open {
            if out[i].is_none()
                && let Some(f) = files[i].as_ref()
            {
                out[i] = Some(f.sync_data());
            }
        }
        for _ in 0..sent {
            match self.done_rx.recv() {
                Ok((i, f, r)) => {
                    out[i] = Some(r);
                    files[i] = Some(f);
                }
                Err(_) => break,
            }
        }
        // A file that did not come back is not known to be synced: its job fails.
        for &i in &open {
            if files[i].is_none() {
                out[i] = Some(Err(io::Error::other("sync thread failed")));
            }
        }
        out
    }
}

fn commit_batch(
    pool: &SyncPool,
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
    let synced = pool.sync_all(&mut files);
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
