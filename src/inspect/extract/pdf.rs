//! PDF text through pdf-extract, isolated on a helper thread.
//!
//! pdf-extract panics on odd PDFs (issues #66, #129, #133) and can run for a very long time,
//! so each extraction runs on its own std thread inside `catch_unwind`, and the inspection
//! waits for it at most until the budget's deadline. At most [`MAX_CONCURRENT`] extractions
//! run at once in the whole process ([`SLOTS`]); a caller that finds no free slot before
//! its deadline gives up with a Limit problem.
//!
//! A thread that outlives the deadline is not killed (Rust cannot kill a thread): it is left
//! to finish on its own, keeps its slot until then, and its result is dropped. The relay
//! keeps serving; if hung threads hold both slots, PDFs in later messages are reported as
//! uninspectable until they end. pdf-extract also inflates PDF streams without a size limit,
//! so [`pdf_streams::charge`](super::pdf_streams::charge) first counts what every stream
//! inflates to against the message's inflated-bytes budget; over it, the reader never runs.

use std::sync::mpsc;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

use super::{Ctx, Location, ProblemKind, TextKind};
use crate::inspect::budget::Exceeded;

/// PDF extractions allowed at once, process-wide.
pub(super) const MAX_CONCURRENT: usize = 2;

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

/// A held slot; released when dropped (by the extraction thread, however it ends).
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
    let (tx, rx) = mpsc::channel();
    let data = bytes.to_vec();
    let spawned = std::thread::Builder::new()
        .name("mailbrake-pdf".into())
        .spawn(move || {
            let _slot = slot;
            let outcome =
                match std::panic::catch_unwind(|| pdf_extract::extract_text_from_mem(&data)) {
                    Ok(Ok(text)) => Outcome::Text(text),
                    Ok(Err(_)) => Outcome::Failed,
                    Err(_) => Outcome::Panicked,
                };
            // The receiver is gone if the inspection stopped waiting: nothing to do.
            let _ = tx.send(outcome);
        });
    if spawned.is_err() {
        ctx.problem(
            loc,
            ProblemKind::Unreadable,
            "PDF reader thread could not be started",
        );
        return;
    }
    let wait = deadline.saturating_duration_since(Instant::now());
    let outcome = match rx.recv_timeout(wait) {
        Ok(o) => o,
        Err(mpsc::RecvTimeoutError::Timeout) => {
            ctx.exceeded(loc, Exceeded::Time);
            return;
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => Outcome::Panicked,
    };
    match outcome {
        Outcome::Text(text) if !text.trim().is_empty() => {
            ctx.text(loc.with_sub("text"), TextKind::Document, text);
        }
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
