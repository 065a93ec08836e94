//! PDF text through pdf-extract, isolated from the relay.
//!
//! pdf-extract panics on odd PDFs (issues #66, #129, #133), can run for a very long time, and
//! can allocate gigabytes for a few KiB of content-stream operators. So:
//! - every stream's inflated size is counted against the message's inflated-bytes budget
//!   first ([`pdf_streams::charge`](super::pdf_streams::charge)); over it, no reader runs;
//! - the binary reads each PDF in a **child process** of itself (`mailbrake pdf-text`, set up
//!   with [`read_in_child_processes`]) whose heap is capped (`[inspection] max_pdf_memory`)
//!   and which is killed at the inspection deadline, so neither memory nor a hang outlives
//!   the inspection; a child that dies (its heap cap, a crash) makes the PDF uninspectable;
//! - library users without the binary (unit tests, benchmarks, fuzzing) read on a helper
//!   thread inside `catch_unwind`, waited for until the deadline; a thread that outlives it
//!   keeps its slot until it ends (Rust cannot kill a thread).
//!
//! At most [`MAX_CONCURRENT`] readers run at once in the whole process ([`SLOTS`]); a caller
//! that finds no free slot before its deadline gives up with a Limit problem.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use super::{Ctx, Location, ProblemKind, TextKind};
use crate::inspect::budget::Exceeded;

/// PDF extractions allowed at once, process-wide.
pub(super) const MAX_CONCURRENT: usize = 2;

/// The executable whose `pdf-text` subcommand reads PDFs; unset: read on a thread.
static READER_EXE: OnceLock<PathBuf> = OnceLock::new();

/// Makes every later PDF extraction run `exe pdf-text` in a child process (the `mailbrake`
/// binary calls this with itself). The first call wins.
pub fn read_in_child_processes(exe: PathBuf) {
    let _ = READER_EXE.set(exe);
}

/// Exit statuses of `mailbrake pdf-text` besides 0 (text on standard output).
pub mod child_exit {
    /// pdf-extract returned an error.
    pub const UNREADABLE: u8 = 3;
    /// pdf-extract panicked.
    pub const PANICKED: u8 = 4;
    /// Standard input or output failed.
    pub const IO: u8 = 5;
}

/// Why [`pdf_text`] found no text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PdfTextError {
    Unreadable,
    Panicked,
}

/// The text of a PDF, in this process (the body of `mailbrake pdf-text`).
pub fn pdf_text(bytes: &[u8]) -> Result<String, PdfTextError> {
    match std::panic::catch_unwind(|| pdf_extract::extract_text_from_mem(bytes)) {
        Ok(Ok(text)) => Ok(text),
        Ok(Err(_)) => Err(PdfTextError::Unreadable),
        Err(_) => Err(PdfTextError::Panicked),
    }
}

/// The process-wide count of running extractions and its wake-up signal.
static SLOTS: Slots = Slots {
    used: Mutex::new(0),
    freed: Condvar::new(),
};

struct Slots {
    used: Mutex<usize>,
    freed: Condvar,
}

impl Slots {
    /// The counter, whether or not a holder panicked (the count stays meaningful).
    fn lock(&self) -> MutexGuard<'_, usize> {
        self.used
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits for a free slot until `deadline`.
    fn acquire(&'static self, deadline: Instant) -> Option<Slot> {
        let mut used = self.lock();
        loop {
            if *used < MAX_CONCURRENT {
                *used += 1;
                return Some(Slot(self));
            }
            let wait = deadline.checked_duration_since(Instant::now())?;
            if wait.is_zero() {
                return None;
            }
            used = match self.freed.wait_timeout(used, wait) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }
}

/// A held slot; released when dropped (by whoever runs the reader, however it ends).
struct Slot(&'static Slots);

impl Drop for Slot {
    fn drop(&mut self) {
        let mut used = self.0.lock();
        *used = used.saturating_sub(1);
        self.0.freed.notify_one();
    }
}

/// How one extraction ended.
#[derive(Debug)]
enum Outcome {
    Text(String),
    /// pdf-extract returned an error.
    Failed,
    /// pdf-extract panicked.
    Panicked,
    /// Still running at the deadline (a child is killed then).
    TimedOut,
    /// The child died: its heap cap, or a crash.
    Died,
    /// More text than the inflated-bytes budget has left.
    TooMuchText,
    /// No reader could be started.
    NotStarted,
}

/// Extracts a PDF leaf.
pub(super) fn extract(ctx: &mut Ctx<'_>, loc: &Location, bytes: &[u8]) {
    let encrypted = has_encrypt(bytes);
    if let Err(e) = super::pdf_streams::charge(bytes, ctx.budget) {
        ctx.exceeded(loc, e);
        return;
    }
    let deadline = ctx.budget.deadline();
    let Some(slot) = SLOTS.acquire(deadline) else {
        ctx.problem(
            loc,
            ProblemKind::Limit,
            "PDF not inspected: no PDF reader free before the inspection deadline",
        );
        return;
    };
    let outcome = match READER_EXE.get() {
        Some(exe) => {
            let limits = &ctx.budget.limits;
            let out = in_child(
                exe,
                bytes,
                deadline,
                limits.max_pdf_memory,
                ctx.budget.inflated_left(),
            );
            drop(slot);
            out
        }
        None => on_thread(bytes, deadline, slot),
    };
    match outcome {
        Outcome::Text(text) if !text.trim().is_empty() => {
            if let Err(e) = ctx.budget.take_inflated(text.len() as u64) {
                ctx.exceeded(loc, e);
                return;
            }
            ctx.text(loc.with_sub("text"), TextKind::Document, text);
        }
        Outcome::TimedOut => ctx.exceeded(loc, Exceeded::Time),
        Outcome::TooMuchText => ctx.exceeded(loc, Exceeded::Inflated),
        Outcome::Died => ctx.problem(
            loc,
            ProblemKind::Limit,
            format!(
                "PDF reader stopped: it needed more than {} MiB of memory, or crashed",
                ctx.budget.limits.max_pdf_memory / (1024 * 1024)
            ),
        ),
        Outcome::NotStarted => ctx.problem(
            loc,
            ProblemKind::Unreadable,
            "PDF reader could not be started",
        ),
        _ if encrypted => ctx.problem(loc, ProblemKind::Encrypted, "password-protected PDF"),
        Outcome::Text(_) => ctx.problem(
            loc,
            ProblemKind::NoText,
            "PDF has no extractable text (scanned image or fonts without a text mapping)",
        ),
        Outcome::Failed => ctx.problem(loc, ProblemKind::Unreadable, "PDF could not be parsed"),
        Outcome::Panicked => ctx.problem(
            loc,
            ProblemKind::Unreadable,
            "PDF reader failed on malformed data",
        ),
    }
}

/// Reads the PDF on a helper thread of this process, waiting until `deadline`.
fn on_thread(bytes: &[u8], deadline: Instant, slot: Slot) -> Outcome {
    let (tx, rx) = mpsc::channel();
    let data = bytes.to_vec();
    let spawned = std::thread::Builder::new()
        .name("mailbrake-pdf".into())
        .spawn(move || {
            let _slot = slot;
            let outcome = match pdf_text(&data) {
                Ok(text) => Outcome::Text(text),
                Err(PdfTextError::Unreadable) => Outcome::Failed,
                Err(PdfTextError::Panicked) => Outcome::Panicked,
            };
            // The receiver is gone if the inspection stopped waiting: nothing to do.
            let _ = tx.send(outcome);
        });
    if spawned.is_err() {
        return Outcome::NotStarted;
    }
    let wait = deadline.saturating_duration_since(Instant::now());
    match rx.recv_timeout(wait) {
        Ok(o) => o,
        Err(mpsc::RecvTimeoutError::Timeout) => Outcome::TimedOut,
        Err(mpsc::RecvTimeoutError::Disconnected) => Outcome::Panicked,
    }
}

/// Reads the PDF in `exe pdf-text`, a child process with its heap capped at `max_memory`,
/// killed at `deadline`; at most `max_text` bytes of text are accepted.
fn in_child(
    exe: &Path,
    bytes: &[u8],
    deadline: Instant,
    max_memory: u64,
    max_text: u64,
) -> Outcome {
    let spawned = Command::new(exe)
        .arg("pdf-text")
        .arg("--max-memory")
        .arg(max_memory.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        // The child's messages could quote the PDF: never shown.
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = spawned else {
        return Outcome::NotStarted;
    };
    let stop = |child: &mut std::process::Child| {
        let _ = child.kill();
        let _ = child.wait();
    };
    // The child reads all of its input before it writes anything, so writing it all first
    // cannot deadlock; a child that died early makes this fail (EPIPE), and its status says
    // why below.
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(bytes);
    }
    let Some(mut stdout) = child.stdout.take() else {
        stop(&mut child);
        return Outcome::NotStarted;
    };
    let (tx, rx) = mpsc::channel();
    let limit = max_text.saturating_add(1);
    let reader = std::thread::Builder::new()
        .name("mailbrake-pdf-out".into())
        .spawn(move || {
            let mut text = Vec::new();
            let read = (&mut stdout).take(limit).read_to_end(&mut text);
            let _ = tx.send(read.map(|_| text));
        });
    if reader.is_err() {
        stop(&mut child);
        return Outcome::NotStarted;
    }
    let text = match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        Ok(Ok(text)) => text,
        Ok(Err(_)) => {
            stop(&mut child);
            return Outcome::Died;
        }
        Err(_) => {
            // Killing the child closes its output, which ends the reader thread.
            stop(&mut child);
            return Outcome::TimedOut;
        }
    };
    if text.len() as u64 >= limit {
        stop(&mut child);
        return Outcome::TooMuchText;
    }
    // Output closed: the child is exiting. Wait for its status, still bounded by the deadline.
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
            _ => {
                stop(&mut child);
                return Outcome::TimedOut;
            }
        }
    };
    match status.code().and_then(|c| u8::try_from(c).ok()) {
        Some(0) => Outcome::Text(String::from_utf8_lossy(&text).into_owned()),
        Some(child_exit::UNREADABLE) => Outcome::Failed,
        Some(child_exit::PANICKED) => Outcome::Panicked,
        // A signal (the heap cap aborts), or an I/O failure.
        _ => Outcome::Died,
    }
}

/// Whether the trailer (or a cross-reference stream dictionary) names an `/Encrypt`
/// dictionary. Looked for in the last 64 KiB, where trailers live, and the first 4 KiB
/// (linearized files put their first trailer there).
fn has_encrypt(bytes: &[u8]) -> bool {
    let tail = bytes
        .get(bytes.len().saturating_sub(64 * 1024)..)
        .unwrap_or(bytes);
    let head = bytes.get(..4096).unwrap_or(bytes);
    let finder = memchr::memmem::Finder::new(b"/Encrypt");
    finder.find(tail).is_some() || finder.find(head).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn slots_are_bounded_and_released() {
        let far = Instant::now() + Duration::from_secs(5);
        let a = SLOTS.acquire(far);
        let b = SLOTS.acquire(far);
        assert!(a.is_some() && b.is_some());
        // Other tests may hold slots too, so only check that a short wait can fail...
        assert!(
            SLOTS
                .acquire(Instant::now() + Duration::from_millis(20))
                .is_none()
        );
        drop(a);
        // ...and that a released slot is handed out again.
        assert!(SLOTS.acquire(far).is_some());
        drop(b);
    }

    #[test]
    fn pdf_fixtures() {
        use crate::inspect::extract::testutil::{problems, run_attachment, texts};
        let x = run_attachment(
            "m.pdf",
            include_bytes!("../../../tests/fixtures/formats/members.pdf"),
        );
        assert!(x.problems.is_empty(), "{:?}", problems(&x));
        let text = texts(&x, "attachment m.pdf / text").concat();
        for want in ["会員名簿", "山田", "090-1234-5678", "1985-04-12"] {
            assert!(text.contains(want), "{want} not in {text:?}");
        }
        let cases: Vec<(&[u8], ProblemKind, &str)> = vec![
            (
                include_bytes!("../../../tests/fixtures/formats/encrypted.pdf"),
                ProblemKind::Encrypted,
                "password-protected PDF",
            ),
            (
                include_bytes!("../../../tests/fixtures/formats/scanned.pdf"),
                ProblemKind::NoText,
                "PDF has no extractable text (scanned image or fonts without a text mapping)",
            ),
            (
                b"%PDF-1.4\nnot really a pdf\n%%EOF",
                ProblemKind::Unreadable,
                "PDF could not be parsed",
            ),
        ];
        for (bytes, kind, why) in cases {
            let x = run_attachment("f.pdf", bytes);
            assert_eq!(
                problems(&x),
                vec![("attachment f.pdf".into(), kind, why.into())],
                "{why}"
            );
        }
    }

    #[test]
    fn encrypt_marker() {
        assert!(has_encrypt(
            b"%PDF-1.4\n...trailer\n<< /Root 1 0 R /Encrypt 5 0 R >>\n%%EOF"
        ));
        assert!(!has_encrypt(
            b"%PDF-1.4\n...trailer\n<< /Root 1 0 R >>\n%%EOF"
        ));
    }
}
