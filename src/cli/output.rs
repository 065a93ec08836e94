//! Human output: control characters from mail are escaped so a sender cannot move the
//! operator's cursor, recolour the terminal or fake extra lines (RELIABILITY.md §2.9).
//! JSON output needs no help: serde_json escapes every control character.

use crate::smtp::received::civil_from_days;

/// `s` with every control character (C0, DEL, C1, and the bidi overrides) escaped.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let bidi = matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}');
        if c.is_control() || bidi {
            out.push_str(&c.escape_unicode().to_string());
        } else {
            out.push(c);
        }
    }
    out
}

/// `2026-11-21 17:31:00Z` for a Unix time.
pub fn time(unix: u64) -> String {
    let (y, m, d) = civil_from_days((unix / 86_400) as i64);
    let r = unix % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}Z",
        r / 3600,
        (r % 3600) / 60,
        r % 60
    )
}

/// Cuts `s` to `max` characters, marking the cut with `…`.
pub fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_terminal_controls() {
        let s = escape("a\u{1b}[31mred\r\nb\u{202E}c\u{0}");
        assert!(!s.chars().any(|c| c.is_control()));
        assert!(
            s.contains("\\u{1b}[31mred\\u{d}\\u{a}b\\u{202e}c\\u{0}"),
            "{s}"
        );
    }

    #[test]
    fn times() {
        assert_eq!(time(0), "1970-01-01 00:00:00Z");
        assert_eq!(time(1_795_283_460), "2026-11-21 17:51:00Z");
    }
}
