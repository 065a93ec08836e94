//! The benchmark's message: one realistic clean plain-text mail of an exact size, built once
//! and shared (as bytes) by every session.
//!
//! The text is ordinary business prose from a small vocabulary chosen so that no check of the
//! shipped policy fires: no names, numbers, addresses, phone numbers or credentials. The To:
//! header shows one external address, which the shipped policy allows (20) and the hold
//! variant (`policies-hold/`, 0 allowed) holds.

/// Envelope sender: exempted from the sender windows in `policies/zz-load.toml`.
pub const SENDER: &str = "loadgen@bench.example";
/// Envelope recipient (and To:): an external address.
pub const RECIPIENT: &str = "reader@partner.example";

const WORDS: &[&str] = &[
    "the",
    "meeting",
    "schedule",
    "project",
    "review",
    "team",
    "update",
    "draft",
    "budget",
    "quarter",
    "delivery",
    "customer",
    "feedback",
    "design",
    "release",
    "notes",
    "agenda",
    "plan",
    "next",
    "week",
    "please",
    "find",
    "below",
    "summary",
    "of",
    "and",
    "for",
    "with",
    "we",
    "discuss",
    "timeline",
    "scope",
    "risks",
    "action",
    "items",
    "progress",
    "on",
    "migration",
    "testing",
    "documentation",
    "is",
    "ready",
    "after",
    "before",
    "approval",
    "thanks",
    "to",
    "everyone",
    "who",
    "joined",
    "today",
    "our",
    "goals",
    "remain",
    "the",
    "same",
    "as",
    "last",
    "month",
    "while",
    "priorities",
    "shift",
    "slightly",
    "toward",
    "quality",
    "and",
    "stability",
    "of",
    "the",
    "service",
    "platform",
    "workshop",
    "slides",
    "are",
    "shared",
    "in",
    "folder",
    "comments",
    "welcome",
    "by",
    "end",
    "day",
];

/// Headers of the message (CRLF), without the blank line that ends them.
fn headers() -> String {
    format!(
        "From: Load Generator <{SENDER}>\r\n\
         To: Reader <{RECIPIENT}>\r\n\
         Subject: Weekly project notes\r\n\
         Date: Mon, 16 Nov 2026 09:00:00 +0000\r\n\
         Message-ID: <weekly-notes@bench.example>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\
         Content-Transfer-Encoding: 7bit\r\n"
    )
}

/// The whole message, exactly `size` bytes (headers, blank line, body; CRLF line ends, lines
/// of at most 76 characters, the last one ending in CRLF). `size` must be at least 512.
pub fn build(size: usize) -> Vec<u8> {
    let mut out = headers().into_bytes();
    out.extend_from_slice(b"\r\n");
    // Deterministic word choice (xorshift): the same bytes in every run.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut line = String::new();
    let mut sentence_start = true;
    while out.len() < size {
        let w = WORDS[(next() % WORDS.len() as u64) as usize];
        let mut word = if sentence_start {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        } else {
            w.to_string()
        };
        sentence_start = false;
        if next() % 11 == 0 {
            word.push('.');
            sentence_start = true;
        }
        if line.len() + 1 + word.len() > 72 {
            line.push_str("\r\n");
            out.extend_from_slice(line.as_bytes());
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&word);
    }
    // Cut to the size and end on CRLF. A cut that lands on a line end turns that CR (or CRLF)
    // into text, so no bare CR or LF is left.
    out.truncate(size.saturating_sub(2));
    let n = out.len();
    if out.ends_with(b"\r\n") {
        out[n - 2..].copy_from_slice(b"ss");
    } else if out.ends_with(b"\r") {
        out[n - 1] = b's';
    }
    out.extend_from_slice(b"\r\n");
    debug_assert_eq!(out.len(), size);
    out
}

/// The DATA payload: `message` dot-stuffed, followed by the end-of-data `.` line.
pub fn data_payload(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 16);
    let mut at_line_start = true;
    for &b in message {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    out.extend_from_slice(b".\r\n");
    out
}
