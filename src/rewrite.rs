//! Header rewriting for the `bcc` action: To and Cc become an undisclosed list; the envelope
//! (who actually receives the message) is unchanged, and nothing else in the message moves.
//!
//! A field is removed when either reading calls it To or Cc:
//! - mail-parser's (the reading `visible_recipients` counted), by its own byte offsets, so
//!   every field the detector saw is gone whatever its spelling (`To :`, `CC\t:`, a field
//!   after a whitespace-only line …);
//! - a line-by-line reading of the header section (up to the first empty line) with the
//!   field name compared after dropping white space (RFC 5322 obs-syntax allows `To :`), as a
//!   receiving MUA would read it.

use mail_parser::{HeaderName, MessageParser};
use std::ops::Range;

const UNDISCLOSED: &[u8] = b"To: undisclosed-recipients:;\r\n";

/// Returns `raw` with every To and Cc field (folded lines included) removed from the header
/// section and `To: undisclosed-recipients:;` put where the first of them was.
pub fn undisclosed_recipients(raw: &[u8]) -> Vec<u8> {
    let header_end = find_header_end(raw);
    let mut cut = line_fields(&raw[..header_end]);
    cut.extend(parser_fields(raw));
    let cut = merge(cut);
    let mut out = Vec::with_capacity(raw.len() + UNDISCLOSED.len());
    let Some(first) = cut.first() else {
        // No To at all: say so explicitly (RFC 5322 allows an empty group), just before the
        // empty line ending the header section.
        let at = if raw[..header_end].ends_with(b"\r\n\r\n") {
            header_end - 2
        } else {
            header_end
        };
        out.extend_from_slice(&raw[..at]);
        out.extend_from_slice(UNDISCLOSED);
        out.extend_from_slice(&raw[at..]);
        return out;
    };
    out.extend_from_slice(&raw[..first.start]);
    out.extend_from_slice(UNDISCLOSED);
    let mut pos = first.end;
    for r in &cut[1..] {
        out.extend_from_slice(&raw[pos..r.start]);
        pos = r.end;
    }
    out.extend_from_slice(&raw[pos..]);
    out
}

/// True for a To or Cc field name, compared as mail-parser does: case-insensitive, with any
/// white space inside or around it ignored (`To :`, `CC\t:`).
fn is_to_or_cc(name: &[u8]) -> bool {
    let mut n = name.iter().filter(|b| !b.is_ascii_whitespace());
    let (a, b) = (n.next(), n.next());
    n.next().is_none()
        && matches!(
            (a.map(u8::to_ascii_lowercase), b.map(u8::to_ascii_lowercase)),
            (Some(b't'), Some(b'o')) | (Some(b'c'), Some(b'c'))
        )
}

/// To/Cc fields of the header section `head`, read line by line: a field is a line that
/// does not start with white space, plus the lines that do (folding).
fn line_fields(head: &[u8]) -> Vec<Range<usize>> {
    let mut out: Vec<Range<usize>> = Vec::new();
    let mut open: Option<usize> = None;
    let mut pos = 0;
    while pos < head.len() {
        let end = memchr::memchr(b'\n', &head[pos..])
            .map(|i| pos + i + 1)
            .unwrap_or(head.len());
        let line = &head[pos..end];
        if !matches!(line.first(), Some(b' ' | b'\t')) {
            if let Some(start) = open.take() {
                out.push(start..pos);
            }
            if let Some(colon) = memchr::memchr(b':', line)
                && is_to_or_cc(&line[..colon])
            {
                open = Some(pos);
            }
        }
        pos = end;
    }
    if let Some(start) = open {
        out.push(start..head.len());
    }
    out
}

/// To/Cc fields of the top-level header as mail-parser reads them, each with the white space
/// mail-parser skipped before it. Empty when mail-parser cannot read the message.
fn parser_fields(raw: &[u8]) -> Vec<Range<usize>> {
    let parsed = std::panic::catch_unwind(|| {
        MessageParser::default().parse_headers(raw).map(|m| {
            m.headers()
                .iter()
                .filter(|h| matches!(h.name, HeaderName::To | HeaderName::Cc))
                .map(|h| h.offset_field as usize..h.offset_end as usize)
                .collect::<Vec<_>>()
        })
    });
    let Ok(Some(fields)) = parsed else {
        return Vec::new();
    };
    fields
        .into_iter()
        .filter(|r| r.start <= r.end && r.end <= raw.len())
        .map(|mut r| {
            while r.start > 0 && raw[r.start - 1] != b'\n' && raw[r.start - 1].is_ascii_whitespace()
            {
                r.start -= 1;
            }
            r
        })
        .collect()
}

/// Sorted, non-overlapping ranges covering the same bytes.
fn merge(mut v: Vec<Range<usize>>) -> Vec<Range<usize>> {
    v.retain(|r| r.start < r.end);
    v.sort_by_key(|r| (r.start, r.end));
    let mut out: Vec<Range<usize>> = Vec::with_capacity(v.len());
    for r in v {
        match out.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

/// Index just after the blank line ending the header section (the whole input if none),
/// the blank line itself included in the header part.
fn find_header_end(raw: &[u8]) -> usize {
    if raw.starts_with(b"\r\n") {
        return 0;
    }
    memchr::memmem::find(raw, b"\r\n\r\n")
        .map(|i| i + 4)
        .unwrap_or(raw.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_and_cc_become_undisclosed() {
        let m = b"Received: x\r\nFrom: a@b.example\r\nTo: m1@x.example,\r\n m2@y.example\r\nSubject: s\r\ncc: m3@z.example\r\n\tm4@z.example\r\nMessage-ID: <1@b>\r\n\r\nTo: not a header\r\n";
        let out = undisclosed_recipients(m);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Received: x\r\nFrom: a@b.example\r\nTo: undisclosed-recipients:;\r\nSubject: s\r\nMessage-ID: <1@b>\r\n\r\nTo: not a header\r\n"
        );
    }

    #[test]
    fn message_without_to_gets_one() {
        let out = undisclosed_recipients(b"From: a@b.example\r\nSubject: s\r\n\r\nbody\r\n");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "From: a@b.example\r\nSubject: s\r\nTo: undisclosed-recipients:;\r\n\r\nbody\r\n"
        );
    }

    /// RFC 5322 obs-syntax allows white space before the colon: `To :` and `CC\t:` are To
    /// and Cc (mail-parser counts them), so they must go too — with their folded lines and
    /// encoded-word display names — and exactly one undisclosed To is left.
    #[test]
    fn whitespace_before_the_colon_is_still_to_and_cc() {
        let m = b"From: a@b.example\r\nTo : =?UTF-8?B?5bGx55Sw?= <m1@x.example>,\r\n m2@y.example\r\nSubject: s\r\nCC\t: \"=?ISO-2022-JP?B?GyRCOzNFRBsoQg==?=\" <m3@z.example>,\r\n\t=?UTF-8?Q?Sato_Hanako?= <m4@z.example>\r\nMessage-ID: <1@b>\r\n\r\nbody\r\n";
        let out = String::from_utf8(undisclosed_recipients(m)).unwrap();
        assert_eq!(
            out,
            "From: a@b.example\r\nTo: undisclosed-recipients:;\r\nSubject: s\r\nMessage-ID: <1@b>\r\n\r\nbody\r\n"
        );
    }

    /// Whatever mail-parser (the detector) reads as To or Cc is removed: a field after
    /// leading white space, a form feed, white space inside the name. Nothing else moves.
    #[test]
    fn every_field_the_detector_reads_is_removed() {
        for (m, want) in [
            (
                &b" To: m1@x.example\r\nFrom: a@b.example\r\n\r\nb\r\n"[..],
                "To: undisclosed-recipients:;\r\nFrom: a@b.example\r\n\r\nb\r\n",
            ),
            (
                b"From: a@b.example\r\n\x0cTo: m1@x.example\r\nT o: m2@x.example\r\nX: y\r\nCc  :m3@x.example\r\n\r\nb\r\n",
                "From: a@b.example\r\nTo: undisclosed-recipients:;\r\nX: y\r\n\r\nb\r\n",
            ),
            (
                b"From: a@b.example\r\nTo:\tm1@x.example\r\n\r\nTo : not a header\r\n",
                "From: a@b.example\r\nTo: undisclosed-recipients:;\r\n\r\nTo : not a header\r\n",
            ),
        ] {
            let out = String::from_utf8(undisclosed_recipients(m)).unwrap();
            assert_eq!(out, want, "{:?}", String::from_utf8_lossy(m));
            // And the detector reads no address in the result.
            let parsed = MessageParser::default().parse(out.as_bytes()).unwrap();
            for name in [HeaderName::To, HeaderName::Cc] {
                for v in parsed.header_values(name) {
                    if let mail_parser::HeaderValue::Address(a) = v {
                        assert!(a.iter().all(|x| x.address.is_none()), "{out:?}");
                    }
                }
            }
        }
    }
}
