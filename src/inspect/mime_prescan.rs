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
