//! A linear pre-scan of the raw message for MIME structure bombs, before the MIME parser runs.
//!
//! mail-parser builds every part of a message before the walk's `max_parts` limit can stop
//! anything: 2,000,000 empty parts (19 MiB) or 300,000 nested multiparts (20 MiB) took
//! 366-429 MiB to parse. Such a message is held as `uninspectable` (too many MIME parts)
//! without parsing it. The common case costs one SIMD search for lines starting with `--`;
//! only a message with more than `2 × max_parts` of them gets the exact count of lines that
//! are delimiters of a declared boundary.

use std::collections::HashSet;

const WHY: &str = "too many MIME parts";

/// `Some(reason)` when the message has more MIME parts than `max_parts` could ever walk.
pub fn too_many_parts(raw: &[u8], max_parts: usize) -> Option<&'static str> {
    let threshold = max_parts.saturating_mul(2);
    let dashes =
        memchr::memmem::find_iter(raw, b"\n--").count() + usize::from(raw.starts_with(b"--"));
    if dashes <= threshold {
        return None;
    }
    let Some(boundaries) = declared_boundaries(raw, max_parts) else {
        return Some(WHY);
    };
    let delimiters = line_starts(raw)
        .filter(|&at| is_delimiter(&raw[at..], &boundaries))
        .count();
    (delimiters > threshold + boundaries.len()).then_some(WHY)
}

/// Largest message [`text_only`] accepts.
pub const TEXT_ONLY_MAX: usize = 16 * 1024;
/// Most lines [`text_only`] accepts (each line costs the prose analysis a little).
pub const TEXT_ONLY_MAX_LINES: usize = 400;
/// Most ASCII digits [`text_only`] accepts (headers included): a signature and a few dates.
pub const TEXT_ONLY_MAX_DIGITS: usize = 200;
/// Most `@` [`text_only`] accepts (headers included).
pub const TEXT_ONLY_MAX_ATS: usize = 12;
/// Most field separators (`,` TAB `|` `;`) [`text_only`] accepts.
pub const TEXT_ONLY_MAX_SEPARATORS: usize = 200;

/// Markers, in a `Content-*` header field, of a part that is not plain text read as it is:
/// transfer-encoded, binary or office content, an attached message, a named part.
const NOT_TEXT: [&[u8]; 17] = [
    b"html",
    b"base64",
    b"quoted-printable",
    b"uuencode",
    b"x-uue",
    b"binhex",
    b"application/",
    b"image/",
    b"audio/",
    b"video/",
    b"model/",
    b"font/",
    b"message/",
    b"name=",
    b"name*",
    b"attachment",
    b"binary",
];

/// A `Content-*` header line (or its continuation) names something [`NOT_TEXT`].
fn names_non_text(line: &[u8]) -> bool {
    let lower = line.to_ascii_lowercase();
    NOT_TEXT
        .iter()
        .any(|m| memchr::memmem::find(&lower, m).is_some())
}

fn starts_with_ci(line: &[u8], prefix: &[u8]) -> bool {
    line.len() >= prefix.len() && line[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// True when `raw` is a small message of plain ASCII text only: at most [`TEXT_ONLY_MAX`]
/// bytes and [`TEXT_ONLY_MAX_LINES`] lines, printable ASCII plus TAB, CR and LF, few
/// digits, `@` and separators, and none of the markers of encoded, binary, named, attached
/// or HTML parts. Measured (release, 16 KiB): ordinary ASCII prose 35-50 µs; the worst
/// found, label lines (`ID: x Password: y` ×200), 0.56 ms. Japanese text of the same size
/// took 1.6-4.9 ms, hence ASCII only. Such a message is prose read as it is (no archive, office file, PDF or table can
/// hide in it) and its inspection takes tens of microseconds (the load benchmark's 10 KB
/// message: 33 µs), so the relay may run it on an async worker instead of handing it to a
/// blocking thread. A false answer is always safe.
pub fn text_only(raw: &[u8]) -> bool {
    if raw.len() > TEXT_ONLY_MAX {
        return false;
    }
    // One branch-free pass (the compiler vectorises it): control bytes, and the bytes the
    // detectors' costly paths start from. Digits, `@` and field separators are what
    // records, tables and identifiers are made of; a text dense in them can take
    // milliseconds to inspect, which must not run on an async worker.
    let control = |b: u8| (b < 0x20) & (b != b'\t') & (b != b'\r') & (b != b'\n') | (b == 0x7f);
    let (mut bad, mut digits, mut ats, mut separators, mut lines) = (false, 0, 0, 0, 0);
    // Byte-wide counters per 64-byte chunk keep the loop in SIMD lanes (4 µs for 10 KiB).
    for chunk in raw.chunks(64) {
        let (mut odd, mut d, mut a, mut sep, mut l) = (0u8, 0u8, 0u8, 0u8, 0u8);
        for &b in chunk {
            // Non-ASCII text (and ISO-2022-JP's ESC) goes through Unicode normalisation and
            // the Japanese detectors: about 100 ns a byte, too slow for an async worker.
            odd |= u8::from(control(b) | (b >= 0x80));
            d += u8::from(b.is_ascii_digit());
            a += u8::from(b == b'@');
            sep += u8::from(matches!(b, b',' | b'\t' | b'|' | b';'));
            l += u8::from(b == b'\n');
        }
        bad |= odd != 0;
        digits += usize::from(d);
        ats += usize::from(a);
        separators += usize::from(sep);
        lines += usize::from(l);
    }
    if bad
        || lines > TEXT_ONLY_MAX_LINES
        || digits > TEXT_ONLY_MAX_DIGITS
        || ats > TEXT_ONLY_MAX_ATS
        || separators > TEXT_ONLY_MAX_SEPARATORS
    {
        return false;
    }
    // MIME says what a part is in its Content-* fields (at any depth, folded or not); a PDF
    // or uuencoded file in a text part starts a line. Only those lines are looked at.
    let mut in_content_field = false;
    for at in line_starts(raw) {
        let rest = &raw[at..];
        let line = &rest[..memchr::memchr(b'\n', rest).unwrap_or(rest.len())];
        let folded = matches!(line.first(), Some(b' ' | b'\t'));
        if !folded {
            in_content_field = starts_with_ci(line, b"content-");
            if starts_with_ci(line, b"%pdf") || starts_with_ci(line, b"begin ") {
                return false;
            }
        }
        if in_content_field && names_non_text(line) {
            return false;
        }
    }
    true
}

/// Where each line starts.
fn line_starts(raw: &[u8]) -> impl Iterator<Item = usize> + '_ {
    std::iter::once(0).chain(memchr::memchr_iter(b'\n', raw).map(|i| i + 1))
}

/// The distinct `boundary=` values; `None` (a bomb) when there are more than `max_parts`
/// declarations, each being a multipart of its own.
fn declared_boundaries(raw: &[u8], max_parts: usize) -> Option<HashSet<&[u8]>> {
    let Ok(ac) = aho_corasick::AhoCorasick::builder()
        .ascii_case_insensitive(true)
        .build(["boundary="])
    else {
        return Some(HashSet::new());
    };
    let mut set = HashSet::new();
    for (n, m) in ac.find_iter(raw).enumerate() {
        if n >= max_parts {
            return None;
        }
        let rest = &raw[m.end()..];
        let value = match rest.first() {
            Some(b'"') => {
                let v = &rest[1..];
                &v[..memchr::memchr2(b'"', b'\n', v).unwrap_or(v.len())]
            }
            _ => {
                let end = rest
                    .iter()
                    .position(|&b| b == b';' || b.is_ascii_whitespace())
                    .unwrap_or(rest.len());
                &rest[..end]
            }
        };
        if !value.is_empty() {
            set.insert(value);
        }
    }
    Some(set)
}

/// `--boundary` or `--boundary--`, with optional trailing white space.
fn is_delimiter(line: &[u8], boundaries: &HashSet<&[u8]>) -> bool {
    let Some(rest) = line.strip_prefix(b"--") else {
        return false;
    };
    let end = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
    let mut l = &rest[..end];
    while let [head @ .., last] = l
        && last.is_ascii_whitespace()
    {
        l = head;
    }
    boundaries.contains(l)
        || l.strip_suffix(b"--")
            .is_some_and(|b| boundaries.contains(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_only_accepts_small_plain_text_and_nothing_that_can_carry_a_file() {
        let plain = b"From: a@b.example\r\nTo: c@d.example\r\nSubject: hi\r\n\
Content-Type: text/plain; charset=utf-8\r\n\r\nhello\r\n";
        assert!(text_only(plain));
        let alt = b"Content-Type: multipart/alternative; boundary=x\r\n\r\n--x\r\n\
Content-Type: text/plain\r\n\r\nhi\r\n--x\r\nContent-Type: text/plain\r\n\r\nho\r\n--x--\r\n";
        assert!(text_only(alt));
        // HTML bodies are parsed (tables): not inline.
        assert!(!text_only(
            b"Content-Type: Text/HTML\r\n\r\n<table><tr><td>x</td></tr></table>\r\n"
        ));
        // Dense in what records and tables are made of: not inline.
        let dense =
            |unit: &str, n: usize| format!("Subject: x\r\n\r\n{}\r\n", unit.repeat(n)).into_bytes();
        assert!(text_only(&dense("1", TEXT_ONLY_MAX_DIGITS)));
        assert!(!text_only(&dense("1", TEXT_ONLY_MAX_DIGITS + 1)));
        assert!(!text_only(&dense("a@", TEXT_ONLY_MAX_ATS + 1)));
        assert!(!text_only(&dense("a,", TEXT_ONLY_MAX_SEPARATORS + 1)));
        assert!(!text_only(&dense("a\t", TEXT_ONLY_MAX_SEPARATORS + 1)));
        // Japanese (UTF-8 or ISO-2022-JP) is normalised and read by more detectors: not inline.
        assert!(!text_only(b"Subject: x\r\n\r\n\x1b$B$\"\x1b(B\r\n"));
        assert!(!text_only("Subject: x\r\n\r\n山田\r\n".as_bytes()));
        assert!(!text_only(&dense("a\n", TEXT_ONLY_MAX_LINES)));
        for bad in [
            &b"Content-Transfer-Encoding: BASE64\r\n\r\nUEsDBA==\r\n"[..],
            b"Content-Transfer-Encoding: quoted-printable\r\n\r\nPK=03=04\r\n",
            b"Content-Type: Application/zip\r\n\r\nx\r\n",
            b"Content-Type: text/csv; name=list.csv\r\n\r\na,b\r\n",
            b"Content-Disposition: attachment\r\n\r\na,b\r\n",
            b"Content-Type: text/plain;\r\n\tname=list.csv\r\n\r\na,b\r\n",
            b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\ncontent-transfer-encoding:\r\n Base64\r\n\r\nUEsDBA==\r\n--b--\r\n",
            b"Content-Type: message/rfc822\r\n\r\nSubject: y\r\n\r\nz\r\n",
            b"Subject: x\r\n\r\n%PDF-1.4 ASCII85Decode\r\n",
            b"Subject: x\r\n\r\nbegin 644 list.zip\r\n",
            b"Subject: x\r\n\r\nPK\x03\x04\r\n",
            b"Subject: x\r\n\r\n\x00\r\n",
            b"Subject: x\r\n\r\n\x7f\r\n",
        ] {
            assert!(!text_only(bad), "{}", String::from_utf8_lossy(bad));
        }
        let mut big = b"Subject: x\r\n\r\n".to_vec();
        big.resize(TEXT_ONLY_MAX + 1, b'a');
        assert!(!text_only(&big));
        big.truncate(TEXT_ONLY_MAX);
        assert!(text_only(&big));
    }

    fn flat(parts: usize, boundary: &str) -> Vec<u8> {
        let mut m = format!(
            "From: a@b.example\r\nContent-Type: multipart/mixed; BoUnDaRy=\"{boundary}\"\r\n\r\n"
        )
        .into_bytes();
        for _ in 0..parts {
            m.extend_from_slice(format!("--{boundary}\r\n\r\nx\r\n").as_bytes());
        }
        m.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        m
    }

    #[test]
    fn many_flat_parts_are_a_bomb_and_few_are_not() {
        assert_eq!(too_many_parts(&flat(2001, "b1"), 1000), Some(WHY));
        assert_eq!(too_many_parts(&flat(1500, "b1"), 1000), None);
        assert_eq!(too_many_parts(&flat(3, "----=_Part_1--"), 1000), None);
    }

    #[test]
    fn many_nested_multiparts_are_a_bomb() {
        let mut m = Vec::new();
        for i in 0..2500 {
            m.extend_from_slice(
                format!("Content-Type: multipart/mixed; boundary=n{i}\r\n\r\n--n{i}\r\n")
                    .as_bytes(),
            );
        }
        assert_eq!(too_many_parts(&m, 1000), Some(WHY));
    }

    #[test]
    fn dash_lines_that_are_not_delimiters_do_not_count() {
        let mut m = b"Content-Type: multipart/mixed; boundary=real\r\n\r\n--real\r\n\r\n".to_vec();
        for _ in 0..5000 {
            m.extend_from_slice(b"-- a SQL comment\r\n");
        }
        m.extend_from_slice(b"--real--\r\n");
        assert_eq!(too_many_parts(&m, 1000), None);
    }
}
