//! Extraction: from raw message bytes to the text and tables the detectors read.
//!
//! One MIME walk over the single mail-parser parse. Each leaf is typed by its **magic bytes**
//! (never by file name or declared type) and turned into [`Item`]s:
//! - text (bodies, text attachments, docx/pptx paragraphs, PDF text, HTML text);
//! - tables (spreadsheets — every sheet, hidden ones included —, CSV/TSV, HTML tables,
//!   docx/pptx tables).
//!
//! Anything that cannot be read completely — encrypted archives or documents, a parse
//! failure, a limit of the [`Budget`] — becomes a [`Problem`], which the policy turns into an
//! `uninspectable` hold. Nothing is ever skipped silently.
//!
//! Values extracted here never reach a log: only locations, counts and reasons do.
//!
//! Files: `mime.rs` walks the parse; `sniff.rs` types a leaf by magic and dispatches it;
//! `text.rs` (charsets, CSV/TSV), `html.rs`, `archive.rs` (zip), `gzip.rs`, `tar.rs`, `ooxml.rs` (docx,
//! pptx), `sheet.rs` (xlsx, xlsb), `xls.rs`, `ods.rs`, `ole.rs` and `pdf.rs` turn one format
//! into items; `xml.rs` holds the quick-xml helpers they share.
//!
//! Nothing here panics on hostile input: untrusted bytes only go through functions that
//! return `Option`/`Result`, and the third-party parsers that are known to panic (calamine,
//! pdf-extract) run inside `catch_unwind`.

mod archive;
mod gzip;
mod html;
mod mime;
mod ods;
mod ole;
mod ooxml;
mod pdf;
pub use pdf::{PdfTextError, child_exit as pdf_child_exit, pdf_text, read_in_child_processes};
mod pdf_streams;
mod sheet;
mod sniff;
mod tar;
mod text;
mod xls;
mod xml;

#[cfg(test)]
mod testutil;

use sha2::{Digest, Sha256};

use super::budget::{Budget, Exceeded};

/// Where an item came from, in words an operator understands.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Location {
    /// The MIME path: `body`, `attachment 会員一覧.xlsx`, `attachment a.zip > members.csv`,
    /// `attached message > body`.
    pub part: String,
    /// Inside the part: `sheet 明細`, `table 2`, `slide 3`, `page text`.
    pub sub: Option<String>,
    /// Set on the bodies of a multipart/alternative: the same content twice, so the message's
    /// totals count the larger side once instead of both.
    pub alternative: Option<Alternative>,
}

/// One side of a multipart/alternative.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Alternative {
    /// Numbers the multipart/alternatives of one message (attached messages included).
    pub group: usize,
    /// The HTML side (text and tables of text/html); else the plain side.
    pub html: bool,
}

impl Location {
    pub fn new(part: impl Into<String>) -> Location {
        Location {
            part: part.into(),
            sub: None,
            alternative: None,
        }
    }

    pub fn with_sub(&self, sub: impl Into<String>) -> Location {
        Location {
            part: self.part.clone(),
            sub: Some(sub.into()),
            alternative: self.alternative,
        }
    }

    /// `attachment x.xlsx / sheet S`.
    pub fn describe(&self) -> String {
        match &self.sub {
            Some(s) => format!("{} / {s}", self.part),
            None => self.part.clone(),
        }
    }
}

/// What kind of text a text item is; prose rules differ slightly by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextKind {
    /// A message body (text/plain, or text/html rendered to text).
    Body,
    /// A text attachment, a document's paragraphs, a PDF's text.
    Document,
    /// A calendar part (text/calendar): judged only as recipients, never as content records.
    Calendar,
}

/// Something the detectors read.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Text {
        loc: Location,
        kind: TextKind,
        text: String,
    },
    /// Rows of cells, as text. Excel date cells are rendered `YYYY-MM-DD`; whole numbers
    /// without a decimal point. Empty cells are empty strings; rows may differ in length.
    /// In spreadsheets, runs of more than two empty rows are collapsed to two, so a row's
    /// index is not its sheet row number.
    Table {
        loc: Location,
        rows: Vec<Vec<String>>,
    },
}

impl Item {
    pub fn location(&self) -> &Location {
        match self {
            Item::Text { loc, .. } | Item::Table { loc, .. } => loc,
        }
    }
}

/// Why a part could not be inspected completely.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// Password-protected: zip entries (ZipCrypto/AES), encrypted Office (OLE
    /// EncryptedPackage), encrypted PDF without readable text.
    Encrypted,
    /// A limit of the budget was hit (bombs, huge sheets, the deadline).
    Limit,
    /// The format is known but the file could not be parsed (corrupt, truncated, a panic in a
    /// parser), or the container cannot be opened at all (7z, rar).
    Unreadable,
    /// A document with no extractable text where text was expected (a scanned PDF).
    NoText,
}

/// A part that could not be inspected completely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub loc: Location,
    pub kind: ProblemKind,
    /// Operator-facing: "encrypted zip entry", "PDF could not be parsed", a limit's words.
    pub why: String,
}

/// A leaf attachment as it arrived (before any extraction), for "same attachment" checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub name: String,
    /// SHA-256 of the decoded attachment bytes.
    pub sha256: [u8; 32],
    pub size: u64,
}

/// Everything extracted from one message.
#[derive(Debug, Default)]
pub struct Extracted {
    pub items: Vec<Item>,
    pub problems: Vec<Problem>,
    pub attachments: Vec<Attachment>,
    /// The name of an attachment identical to one in a held message (extraction stopped).
    pub known_attachment: Option<String>,
}

impl Extracted {
    /// Records a limit hit at `loc`.
    pub fn exceeded(&mut self, loc: &Location, e: Exceeded) {
        self.problems.push(Problem {
            loc: loc.clone(),
            kind: ProblemKind::Limit,
            why: e.describe().to_string(),
        });
    }
}

/// Extracts every item of a parsed message. `message` is the single parse of the raw bytes.
///
/// Never fails: whatever cannot be read is reported in [`Extracted::problems`]. Runs
/// synchronously on the caller's thread (PDF text extraction alone runs on a helper thread,
/// see [`pdf`]) and stops at the budget's deadline.
pub fn extract(message: &mail_parser::Message<'_>, budget: &Budget) -> Extracted {
    extract_with(message, budget, &|_| false)
}

/// [`extract`], stopping at the first attachment whose SHA-256 `known` recognises (the same
/// attachment as a held message): `Extracted::known_attachment` names it and nothing more is
/// read or scanned.
pub fn extract_with<'a>(
    message: &mail_parser::Message<'_>,
    budget: &'a Budget,
    known: &'a KnownFn<'a>,
) -> Extracted {
    let mut ctx = Ctx::new(budget);
    ctx.known = Some(known);
    mime::walk(&mut ctx, message);
    ctx.out
}

/// Recognises an attachment by its SHA-256.
pub type KnownFn<'a> = dyn Fn(&[u8; 32]) -> bool + 'a;

/// The running state of one extraction: the budget and what has been extracted so far.
pub(crate) struct Ctx<'b> {
    pub(crate) budget: &'b Budget,
    pub(crate) out: Extracted,
    /// Recognises attachments of held messages (see [`extract_with`]).
    known: Option<&'b KnownFn<'b>>,
    /// Set once the deadline has passed or the part limit was hit: nothing more is read.
    stopped: bool,
    /// multipart/alternatives numbered so far ([`Alternative::group`]).
    pub(crate) alternatives: usize,
}

impl<'b> Ctx<'b> {
    pub(crate) fn new(budget: &'b Budget) -> Ctx<'b> {
        Ctx {
            budget,
            out: Extracted::default(),
            known: None,
            stopped: false,
            alternatives: 0,
        }
    }

    /// `true` once the deadline has passed or the part limit was hit (and was reported).
    pub(crate) fn stopped(&self) -> bool {
        self.stopped
    }

    /// Records a problem at `loc`.
    pub(crate) fn problem(&mut self, loc: &Location, kind: ProblemKind, why: impl Into<String>) {
        self.out.problems.push(Problem {
            loc: loc.clone(),
            kind,
            why: why.into(),
        });
    }

    /// Records a limit hit at `loc`. The deadline and the part limit are message-wide: they
    /// are reported once and stop everything.
    pub(crate) fn exceeded(&mut self, loc: &Location, e: Exceeded) {
        if matches!(e, Exceeded::Time | Exceeded::Parts) {
            if self.stopped {
                return;
            }
            self.stopped = true;
        }
        self.out.exceeded(loc, e);
    }

    /// Checks the deadline; on expiry records it at `loc` and returns `false`.
    pub(crate) fn time_ok(&mut self, loc: &Location) -> bool {
        if self.stopped {
            return false;
        }
        match self.budget.check_time() {
            Ok(()) => true,
            Err(e) => {
                self.exceeded(loc, e);
                false
            }
        }
    }

    /// Adds a text item unless it is blank.
    pub(crate) fn text(&mut self, loc: Location, kind: TextKind, text: String) {
        if !text.trim().is_empty() {
            self.out.items.push(Item::Text { loc, kind, text });
        }
    }

    /// Adds a table item unless every cell is blank.
    pub(crate) fn table(&mut self, loc: Location, rows: Vec<Vec<String>>) {
        if rows.iter().flatten().any(|c| !c.trim().is_empty()) {
            self.out.items.push(Item::Table { loc, rows });
        }
    }

    /// Records a leaf attachment as it arrived.
    pub(crate) fn attachment(&mut self, name: &str, bytes: &[u8]) {
        let sha256: [u8; 32] = Sha256::digest(bytes).into();
        if self.known.is_some_and(|known| known(&sha256)) {
            self.out.known_attachment = Some(name.to_string());
            self.stopped = true;
        }
        self.out.attachments.push(Attachment {
            name: name.to_string(),
            sha256,
            size: bytes.len() as u64,
        });
    }
}

/// `parent > name`: the location of something inside `parent` (an archive entry, a
/// decompressed file, a part of an attached message).
pub(crate) fn child(parent: &Location, name: &str) -> Location {
    Location::new(format!("{} > {}", parent.part, clean_name(name)))
}

/// A name from untrusted input, fit for a location: control characters replaced, at most
/// 200 characters.
pub(crate) fn clean_name(name: &str) -> String {
    name.chars()
        .take(200)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}
