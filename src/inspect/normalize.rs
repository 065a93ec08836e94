//! Text normalisation before detection (DETECTION.md §3).
//!
//! NFKC (full-width digits and letters → ASCII, half-width katakana → full-width, `㈱` →
//! `(株)`, U+3000 → space), then what NFKC leaves alone: dash look-alikes between digits
//! become `-` (U+2010–2015, U+2212, `ー` misused as a hyphen), wave dashes become `~`, and
//! zero-width characters are dropped.
//!
//! Speed matters (an ordinary mail is inspected in well under a millisecond): ASCII text is
//! returned as is, and NFKC runs only on lines that fail the quick check.

use std::borrow::Cow;
use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfkc_quick};

/// Normalises `s`; borrows when nothing changes.
pub fn normalize(s: &str) -> Cow<'_, str> {
    if s.is_ascii() {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut changed = false;
    for line in s.split_inclusive('\n') {
        if line.chars().all(stable)
            || (is_nfkc_quick(line.chars()) == IsNormalized::Yes && !line.chars().any(needs_map))
        {
            out.push_str(line);
        } else {
            changed = true;
            push_mapped(&mut out, line);
        }
    }
    if changed {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(s)
    }
}

/// Characters that NFKC leaves unchanged and the detectors do not map: printable ASCII,
/// hiragana, katakana (but `ー`), CJK ideographs and the common Japanese punctuation. A range
/// test, far cheaper than the quick-check tables, and true for nearly all business text.
fn stable(c: char) -> bool {
    matches!(c,
        '\u{20}'..='\u{7E}' | '\n' | '\r' | '\t'
        | '\u{3041}'..='\u{3096}' | '\u{3099}'..='\u{309A}' | '\u{309D}'..='\u{309E}'
        | '\u{30A1}'..='\u{30FA}' | '\u{30FD}'..='\u{30FE}'
        | '\u{4E00}'..='\u{9FFF}' | '\u{3400}'..='\u{4DBF}'
        | '\u{3001}'..='\u{3003}' | '\u{3005}'..='\u{3007}' | '\u{3008}'..='\u{3011}' | '\u{3014}'..='\u{301B}' | '\u{30FB}')
}

/// Characters NFKC keeps that the detectors want mapped.
fn needs_map(c: char) -> bool {
    matches!(c, '\u{2010}'..='\u{2015}' | '\u{2212}' | '\u{30FC}' | '\u{301C}' | '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}')
}

fn push_mapped(out: &mut String, line: &str) {
    let chars: Vec<char> = line.nfkc().collect();
    for (i, &c) in chars.iter().enumerate() {
        match c {
            '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}' => {}
            '\u{2010}'..='\u{2015}' | '\u{2212}' => out.push('-'),
            '\u{301C}' => out.push('~'),
            // `ー` is a long-vowel mark in katakana words, a hyphen between digits.
            '\u{30FC}' => {
                let digit_before = i > 0 && chars[i - 1].is_ascii_digit();
                let digit_after = chars.get(i + 1).is_some_and(|d| d.is_ascii_digit());
                out.push(if digit_before && digit_after { '-' } else { c });
            }
            _ => out.push(c),
        }
    }
}

/// A header cell reduced for lexicon matching: normalised, lower-cased, without spaces and
/// the punctuation headers are decorated with (`()（）・/_-:：*※「」[]`).
pub fn header_key(s: &str) -> String {
    normalize(s)
        .chars()
        .filter(|c| !c.is_whitespace() && !"()（）・/_-:：*※「」[]【】.#".contains(*c))
        .flat_map(char::to_lowercase)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let cases = [
            ("plain ascii", "plain ascii"),
            ("０３－１２３４－５６７８", "03-1234-5678"),
            ("０９０ー１２３４ー５６７８", "090-1234-5678"),
            ("ｶﾀｶﾅ ﾀﾛｳ", "カタカナ タロウ"),
            ("山田\u{3000}太郎", "山田 太郎"),
            ("〒１２３‐４５６７", "〒123-4567"),
            ("1234\u{2212}5678", "1234-5678"),
            ("コーヒー", "コーヒー"),
            ("㈱テスト", "(株)テスト"),
            ("a\u{200B}b", "ab"),
            ("平成元年４月１日", "平成元年4月1日"),
        ];
        for (input, want) in cases {
            assert_eq!(normalize(input), want, "{input}");
        }
    }

    #[test]
    fn borrowed_when_unchanged() {
        assert!(matches!(
            normalize("こんにちは、山田です。"),
            Cow::Borrowed(_)
        ));
        assert!(matches!(normalize("ascii"), Cow::Borrowed(_)));
    }

    #[test]
    fn header_keys() {
        assert_eq!(header_key("氏名（漢字）"), "氏名漢字");
        assert_eq!(header_key(" E-Mail Address "), "emailaddress");
        assert_eq!(header_key("ﾌﾘｶﾞﾅ"), "フリガナ");
    }
}
