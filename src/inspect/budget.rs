//! Limits of one inspection, and the running account against them.
//!
//! Every extractor asks the budget before it decompresses, recurses or loops, so a MIME bomb,
//! a zip bomb or a pathological spreadsheet stops at a limit instead of taking the relay's
//! memory or time. Hitting a limit is never a silent pass: the caller records a
//! [`Problem`](super::extract::Problem) and the message is held as `uninspectable` (unless the
//! policy says otherwise).

use std::cell::Cell;
use std::time::{Duration, Instant};

/// The configurable limits (policy `[inspection]`).
#[derive(Debug, Clone)]
pub struct Limits {
    /// MIME parts walked per message.
    pub max_parts: usize,
    /// Nesting: message/rfc822 inside messages, archives inside archives.
    pub max_depth: usize,
    /// Entries listed in all archives of one message.
    pub max_archive_entries: usize,
    /// Bytes produced by all decompression and decoding of one message.
    pub max_inflated: u64,
    /// Inflated/compressed ratio allowed for one archive entry once it is over 1 MiB.
    pub max_ratio: u64,
    /// Spreadsheet cells read per message (all sheets, all files).
    pub max_cells: u64,
    /// Wall-clock time for the whole inspection.
    pub time: Duration,
    /// Heap one PDF reader process may allocate (the server and the CLI read PDFs in a child
    /// process; see `extract::pdf`).
    pub max_pdf_memory: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_parts: 1000,
            max_depth: 3,
            max_archive_entries: 10_000,
            max_inflated: 200 * 1024 * 1024,
            max_ratio: 100,
            max_cells: 20_000_000,
            time: Duration::from_secs(8),
            max_pdf_memory: 512 * 1024 * 1024,
        }
    }
}

/// Why a limit stopped extraction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exceeded {
    Parts,
    Depth,
    ArchiveEntries,
    Inflated,
    Ratio,
    Cells,
    Time,
}

impl Exceeded {
    /// Operator-facing words.
    pub fn describe(&self) -> &'static str {
        match self {
            Exceeded::Parts => "too many MIME parts",
            Exceeded::Depth => "nested too deeply",
            Exceeded::ArchiveEntries => "too many archive entries",
            Exceeded::Inflated => "too much data after decompression",
            Exceeded::Ratio => "compression ratio too high (possible zip bomb)",
            Exceeded::Cells => "too many spreadsheet cells",
            Exceeded::Time => "inspection took too long",
        }
    }
}

/// The running account of one inspection. Single-threaded by design (inspection runs on one
/// blocking thread), hence `Cell`.
#[derive(Debug)]
pub struct Budget {
    pub limits: Limits,
    deadline: Instant,
    parts: Cell<usize>,
    entries: Cell<usize>,
    inflated: Cell<u64>,
    cells: Cell<u64>,
}

impl Budget {
    pub fn new(limits: Limits) -> Budget {
        let deadline = Instant::now() + limits.time;
        Budget {
            limits,
            deadline,
            parts: Cell::new(0),
            entries: Cell::new(0),
            inflated: Cell::new(0),
            cells: Cell::new(0),
        }
    }

    /// The deadline passed?
    pub fn check_time(&self) -> Result<(), Exceeded> {
        if Instant::now() >= self.deadline {
            Err(Exceeded::Time)
        } else {
            Ok(())
        }
    }

    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Accounts one more MIME part.
    pub fn take_part(&self) -> Result<(), Exceeded> {
        self.parts.set(self.parts.get() + 1);
        if self.parts.get() > self.limits.max_parts {
            return Err(Exceeded::Parts);
        }
        self.check_time()
    }

    /// Accounts one more archive entry.
    pub fn take_entry(&self) -> Result<(), Exceeded> {
        self.entries.set(self.entries.get() + 1);
        if self.entries.get() > self.limits.max_archive_entries {
            return Err(Exceeded::ArchiveEntries);
        }
        Ok(())
    }

    /// Accounts `n` bytes produced by decoding or decompression.
    pub fn take_inflated(&self, n: u64) -> Result<(), Exceeded> {
        self.inflated.set(self.inflated.get().saturating_add(n));
        if self.inflated.get() > self.limits.max_inflated {
            return Err(Exceeded::Inflated);
        }
        Ok(())
    }

    /// Bytes that may still be inflated.
    pub fn inflated_left(&self) -> u64 {
        self.limits.max_inflated.saturating_sub(self.inflated.get())
    }

    /// Accounts `n` spreadsheet cells.
    pub fn take_cells(&self, n: u64) -> Result<(), Exceeded> {
        self.cells.set(self.cells.get().saturating_add(n));
        if self.cells.get() > self.limits.max_cells {
            return Err(Exceeded::Cells);
        }
        Ok(())
    }

    /// Checks nesting depth (0 = the message itself).
    pub fn check_depth(&self, depth: usize) -> Result<(), Exceeded> {
        if depth > self.limits.max_depth {
            Err(Exceeded::Depth)
        } else {
            Ok(())
        }
    }

    /// Checks one archive entry's ratio once it is over 1 MiB.
    pub fn check_ratio(&self, inflated: u64, compressed: u64) -> Result<(), Exceeded> {
        if inflated > 1024 * 1024
            && inflated > compressed.max(1).saturating_mul(self.limits.max_ratio)
        {
            Err(Exceeded::Ratio)
        } else {
            Ok(())
        }
    }
}
