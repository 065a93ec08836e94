//! Prose: bodies, document paragraphs, PDF text (DETECTION.md §4.4).
//!
//! - A **record line** names a person (a dictionary name, a personal e-mail, a mobile number)
//!   together with another personal attribute (birth date, address, phone, gender …).
//! - A **record block** is a run of `label: value` lines (`氏名：…`, `生年月日：…`) about one
//!   person; `【1】` or numbered headings and blank lines separate blocks.
//! - **Signatures** (after `--` or a rule line, or blocks dense in 株式会社/TEL/FAX/〒/URL)
//!   are one person's business contact and never count; nor do the From/To/Cc lines of quoted
//!   replies. A data list inside quoted or forwarded text still counts.
//! - Lines with a consistent separator (tabs, commas, `|`) over ≥ 3 lines are handed back as
//!   tables.

use std::collections::{BTreeSet, HashSet};

use super::entities::{self, NameShape, PhoneKind};
use super::lexicon::{Class, classify_header};
use super::normalize::normalize;

/// What one text contains.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProseAnalysis {
    /// Distinct personal records (lines and blocks).
    pub records: usize,
    /// First and last line (1-based) holding a record.
    pub lines: Option<(usize, usize)>,
    /// Kinds of personal data seen in records.
    pub kinds: BTreeSet<Class>,
    /// Personal e-mail addresses in the content (not in signatures or quoted headers).
    pub emails: Vec<String>,
    /// Login-id / password pairs.
    pub credential_pairs: usize,
    /// Valid My Numbers next to マイナンバー / 個人番号 / My Number.
    pub my_numbers: usize,
    /// Delimited blocks found in the text, to be analysed as tables.
    pub tables: Vec<Vec<Vec<String>>>,
    /// Personal identifiers seen (names, member numbers, e-mails, mobiles), for the
    /// cross-recipient check. Hashed by the caller; never logged or stored.
    pub identifiers: BTreeSet<String>,
}

const MY_NUMBER_WORDS: &[&str] = &[
    "マイナンバー",
    "個人番号",
    "my number",
    "mynumber",
    "通知カード",
];
const NOT_MY_NUMBER_WORDS: &[&str] = &[
    "注文",
    "伝票",
    "問合せ",
    "問い合わせ",
    "管理番号",
    "受付",
    "会員番号",
    "追跡",
    "お届け",
    "order",
    "tracking",
];
const BUSINESS_MARKERS: &[&str] = &[
    "株式会社",
    "有限会社",
    "合同会社",
    "(株)",
    "(有)",
    "inc.",
    "co.,",
    "ltd",
    "corporation",
    "tel",
    "fax",
    "〒",
    "url",
    "http://",
    "https://",
    "www.",
    "e-mail",
    "email:",
    "mail:",
    "部",
    "課",
    "本社",
    "支店",
];

fn is_rule_line(line: &str) -> bool {
    let t = line.trim();
    t == "--"
        || t == "-- "
        || (t.len() >= 5
            && t.chars().all(|c| "-=_*━─＿~#+・.".contains(c))
            && t.chars().count() >= 5)
}

fn strip_quote(line: &str) -> (&str, bool) {
    let t = line.trim_start();
    if t.starts_with('>') || t.starts_with('|') && t.len() > 1 && !t[1..].contains('|') {
        (t.trim_start_matches(['>', '|', ' ']), true)
    } else {
        (line, false)
    }
}

fn starts_with_ci(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len() && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

/// "essage" of "Original Message" / "Forwarded message", found with SIMD.
static ESSAGE: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new("essage"));

fn is_header_line(line: &str) -> bool {
    let l = line.trim_start();
    // Every prefix below starts with one of these (ASCII, either case) or a CJK character;
    // most prose lines are ruled out here, and the quoted-header search runs only on the rest.
    let first = l.as_bytes().first().copied().unwrap_or(b' ');
    let may_prefix = !first.is_ascii()
        || matches!(
            first.to_ascii_lowercase(),
            b'f' | b't' | b'c' | b'b' | b's' | b'd' | b'r' | b'o'
        );
    if !may_prefix {
        return ESSAGE.find(l.as_bytes()).is_some() && {
            let low = l.to_ascii_lowercase();
            low.contains("original message") || low.contains("forwarded message")
        };
    }
    [
        "from:",
        "to:",
        "cc:",
        "bcc:",
        "sent:",
        "date:",
        "差出人:",
        "宛先:",
        "送信者:",
        "送信日時:",
        "件名:",
        "subject:",
        "reply-to:",
    ]
    .iter()
    .any(|h| starts_with_ci(l, h))
        || (starts_with_ci(l, "on ") && l.trim_end().ends_with("wrote:"))
        || (ESSAGE.find(l.as_bytes()).is_some() && {
            let low = l.to_ascii_lowercase();
            low.contains("original message") || low.contains("forwarded message")
        })
}

/// One automaton for the business markers of signatures (ASCII case-insensitive).
static BUSINESS: std::sync::LazyLock<Option<aho_corasick::AhoCorasick>> =
    std::sync::LazyLock::new(|| {
        aho_corasick::AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .build(BUSINESS_MARKERS)
            .ok()
    });

fn is_business(line: &str) -> bool {
    BUSINESS.as_ref().is_some_and(|ac| ac.is_match(line))
}

/// Marks the lines that belong to a signature block.
fn signature_lines(lines: &[&str]) -> Vec<bool> {
    let mut sig = vec![false; lines.len()];
    let mut i = 0;
    while i < lines.len() {
        // A block: consecutive non-empty lines.
        if lines[i].trim().is_empty() {
            i += 1;
            continue;
        }
        let start = i;
        while i < lines.len() && !lines[i].trim().is_empty() {
            i += 1;
        }
        let block = &lines[start..i];
        let after_rule = start > 0 && is_rule_line(lines[start - 1]);
        let has_rule = block.iter().position(|l| is_rule_line(l));
        // Only a short block can be a signature: long ones skip the marker search.
        let dense = if block.len() <= 12 {
            block.iter().filter(|l| is_business(l)).count()
        } else {
            0
        };
        if block.len() <= 12 && (after_rule || dense >= 2) {
            sig[start..i].iter_mut().for_each(|s| *s = true);
        } else if let Some(r) = has_rule {
            // Everything after a rule inside a block, when what follows looks like contact data.
            let rest = &block[r + 1..];
            if rest.len() <= 10 && rest.iter().any(|l| is_business(l)) {
                sig[start + r..i].iter_mut().for_each(|s| *s = true);
            }
        }
    }
    sig
}

/// The line without a leading list marker (`1.`, `(2)`, `③`, `・`, `-`).
fn strip_marker(line: &str) -> &str {
    let t = line.trim_start();
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    if digits > 0
        && digits <= 3
        && let Some(rest) = t[digits..]
            .strip_prefix('.')
            .or_else(|| t[digits..].strip_prefix(')'))
            .or_else(|| t[digits..].strip_prefix('、'))
    {
        // `、` is three bytes: strip the marker as a character, never by a byte count.
        return rest.trim_start();
    }
    if let Some(rest) = t.strip_prefix('(') {
        let d = rest.bytes().take_while(u8::is_ascii_digit).count();
        if d > 0 && rest[d..].starts_with(')') {
            return rest[d + 1..].trim_start();
        }
    }
    let first = t.chars().next().unwrap_or(' ');
    if ('\u{2460}'..='\u{2473}').contains(&first) || "・-*■□●○◆▼".contains(first) {
        return t[first.len_utf8()..].trim_start();
    }
    t
}

/// A `label: value` line: the label's class and the value. A line with several labels
/// (`生年月日：… 携帯：…`) is an inline record, read by the entity scan instead.
fn labelled(line: &str) -> Option<(Class, &str)> {
    // A label is short: its separator sits within the first 48 bytes (12 CJK characters).
    let head = &line.as_bytes()[..line.len().min(48)];
    let sep = memchr::memchr3(b':', b'\t', b'=', head)?;
    // Several `label:` parts on one line are an inline record, read by the entity scan.
    if memchr::memchr_iter(b':', line.as_bytes()).nth(1).is_some() && !line.contains("://") {
        return None;
    }
    let (label, value) = (&line[..sep], &line[sep + 1..]);
    let value = value.trim();
    let label = label
        .trim()
        .trim_start_matches(['・', '-', '*', '■', '□', '●', '○', '◆', '▼'])
        .trim();
    if value.is_empty() || label.chars().count() > 12 {
        return None;
    }
    classify_header(label).map(|c| (c, value))
}

/// Entity kinds on one unlabelled line, and the identifier if any.
fn line_entities(line: &str, this_year: i32) -> (Option<String>, BTreeSet<Class>) {
    let mut kinds = BTreeSet::new();
    let mut ident = None;
    for e in entities::find_emails(line) {
        if !entities::is_role_address(&e) {
            kinds.insert(Class::Email);
            ident.get_or_insert(e);
        }
    }
    for t in entities::numeric_tokens(line) {
        match entities::phone_kind(&t) {
            Some(PhoneKind::Mobile) => {
                kinds.insert(Class::Phone);
                ident.get_or_insert(t.digits.clone());
            }
            Some(PhoneKind::Landline | PhoneKind::Ip) => {
                kinds.insert(Class::Phone);
            }
            _ => {}
        }
        if t.digits.len() == 7 && t.groups == [3, 4] && line[..t.start].trim_end().ends_with('〒')
        {
            kinds.insert(Class::Postal);
        }
        // Financial attributes: a card number (Luhn + issuer), or a 7-digit account number
        // next to 口座 / 普通 / 当座.
        let card_groups = matches!(
            t.groups.as_slice(),
            [16] | [4, 4, 4, 4] | [4, 6, 5] | [15] | [14] | [4, 6, 4]
        );
        if card_groups && entities::card_ok(&t.digits) {
            kinds.insert(Class::Finance);
        }
        if t.digits.len() == 7
            && t.groups == [7]
            && (line.contains("口座") || line.contains("普通") || line.contains("当座"))
        {
            kinds.insert(Class::Finance);
        }
    }
    for (d, _, _) in entities::find_dates(line) {
        if entities::plausible_birth(d, this_year) && this_year - d.y >= 5 {
            kinds.insert(Class::Dob);
        }
    }
    if line.contains(['都', '道', '府', '県', '市', '区', '町', '村', '郡'])
        && entities::is_address(line)
    {
        kinds.insert(Class::Address);
    }
    let words: Vec<&str> = line
        .split(|c: char| c.is_whitespace() || ",、。/|()[]「」『』:・\"{}'".contains(c))
        .filter(|w| !w.is_empty())
        .collect();
    for (i, w) in words.iter().enumerate() {
        if entities::is_gender(w) && w.chars().count() <= 2 && !w.is_ascii() {
            kinds.insert(Class::Gender);
        }
        if ident.is_none() || !kinds.contains(&Class::Name) {
            let pair = words.get(i + 1).map(|n| format!("{w} {n}"));
            let name = if entities::name_shape(w) == NameShape::Dictionary && !w.is_ascii() {
                Some(w.to_string())
            } else {
                pair.filter(|p| entities::name_shape(p) == NameShape::Dictionary)
            };
            if let Some(n) = name {
                kinds.insert(Class::Name);
                ident = Some(n);
            }
        }
    }
    (ident, kinds)
}

/// Counts credential pairs: a login-id label followed (same line or within 3 lines) by a
/// password label, each with a plausible value.
fn credential_pairs(lines: &[&str]) -> usize {
    let mut ids: HashSet<String> = HashSet::new();
    let mut pending: Option<(usize, String)> = None;
    for (i, line) in lines.iter().enumerate() {
        for part in split_labels(line) {
            let Some((class, value)) = labelled(part) else {
                continue;
            };
            let value = value.split_whitespace().next().unwrap_or("");
            let plausible = (3..=64).contains(&value.chars().count()) && !value.contains('@')
                || value.contains('@') && class == Class::LoginId;
            match class {
                Class::LoginId if plausible => pending = Some((i, value.to_string())),
                Class::Password if plausible => {
                    if let Some((at, id)) = pending.take()
                        && i - at <= 3
                    {
                        ids.insert(id);
                    }
                }
                _ => {}
            }
        }
    }
    ids.len()
}

/// `ID: a PW: b` on one line → two labelled parts. A split needs a `label:` after a space,
/// `/` or `,`, and a label is at most 12 characters (48 bytes): a line without a colon is one
/// part, and each candidate looks for its colon only within the next 48 bytes.
fn split_labels(line: &str) -> Vec<&str> {
    let bytes = line.as_bytes();
    if memchr::memchr(b':', bytes).is_none() {
        return vec![line];
    }
    let mut parts = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if (bytes[i] == b' ' || bytes[i] == b'/' || bytes[i] == b',') && i > start {
            let rest = line[i..].trim_start_matches([' ', '/', ',']);
            let at = line.len() - rest.len();
            let window = &bytes[at..bytes.len().min(at + 49)];
            if let Some(colon) = memchr::memchr(b':', window)
                && let Some(label) = line.get(at..at + colon)
                && label.chars().count() <= 12
                && matches!(
                    classify_header(label),
                    Some(Class::Password | Class::LoginId)
                )
            {
                parts.push(&line[start..i]);
                start = at;
                i = start;
                continue;
            }
        }
        i += 1;
    }
    parts.push(&line[start..]);
    parts
}

fn my_numbers_with_context(text: &str) -> usize {
    let mut found = HashSet::new();
    for t in entities::numeric_tokens(text) {
        if t.digits.len() != 12
            || !(t.groups == [12] || t.groups == [4, 4, 4])
            || !entities::my_number_ok(&t.digits)
        {
            continue;
        }
        let before_start = text[..t.start]
            .char_indices()
            .rev()
            .nth(59)
            .map(|(i, _)| i)
            .unwrap_or(0);
        let after_end = text[t.end..]
            .char_indices()
            .nth(30)
            .map(|(i, _)| t.end + i)
            .unwrap_or(text.len());
        let window = text[before_start..after_end].to_lowercase();
        let near = text[before_start..t.start].to_lowercase();
        let near_label: String = near
            .chars()
            .rev()
            .take(15)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        if MY_NUMBER_WORDS.iter().any(|w| window.contains(w))
            && !NOT_MY_NUMBER_WORDS.iter().any(|w| near_label.contains(w))
        {
            found.insert(t.digits);
        }
    }
    found.len()
}

/// Byte → slot of [`delimited_tables`]' counts: 0 tab, 1 comma, 2 bar (3, semicolon, is
/// counted apart).
static SEPARATOR_SLOT: [u8; 256] = {
    let mut t = [0u8; 256];
    t[b',' as usize] = 1;
    t[b'|' as usize] = 2;
    t
};

/// Runs of ≥ 3 lines with the same number (≥ 2) of one separator become tables.
fn delimited_tables(lines: &[&str], skip: &[bool]) -> (Vec<Vec<Vec<String>>>, Vec<bool>) {
    let mut used = vec![false; lines.len()];
    let mut tables = Vec::new();
    // One pass over each line counts all four separators.
    let counts: Vec<[usize; 4]> = lines
        .iter()
        .map(|l| {
            // Separators are rare in prose: find them with SIMD rather than look at each byte.
            let b = l.as_bytes();
            let mut c = [0usize; 4];
            for at in memchr::memchr3_iter(b'\t', b',', b'|', b) {
                c[usize::from(SEPARATOR_SLOT[usize::from(b[at])])] += 1;
            }
            c[3] = memchr::memchr_iter(b';', b).count();
            c
        })
        .collect();
    for (k, sep) in ['\t', ',', '|', ';'].into_iter().enumerate() {
        let mut i = 0;
        // JSON objects per line have constant commas too, but they are records, not rows.
        let json = |l: &str| {
            let t = l.trim();
            t.starts_with('{') || t.starts_with('[')
        };
        while i < lines.len() {
            let n = counts[i][k];
            if n < 2 || used[i] || skip[i] || json(lines[i]) {
                i += 1;
                continue;
            }
            let start = i;
            while i < lines.len() && !used[i] && !skip[i] && counts[i][k] == n {
                i += 1;
            }
            if i - start >= 3 {
                let rows = lines[start..i]
                    .iter()
                    .map(|l| {
                        l.trim_matches('|')
                            .split(sep)
                            .map(|c| c.trim().trim_matches('"').to_string())
                            .collect()
                    })
                    .collect();
                tables.push(rows);
                used[start..i].iter_mut().for_each(|u| *u = true);
            }
        }
    }
    (tables, used)
}

/// Analyses one text.
#[cfg(test)]
pub fn analyze(text: &str, this_year: i32) -> ProseAnalysis {
    let far = std::time::Instant::now() + std::time::Duration::from_secs(3600);
    analyze_until(text, this_year, far).unwrap_or_default()
}

/// Analyses one text; `None` when `deadline` passes first (checked every 1,024 lines and
/// between passes).
pub fn analyze_until(
    text: &str,
    this_year: i32,
    deadline: std::time::Instant,
) -> Option<ProseAnalysis> {
    let late = || std::time::Instant::now() >= deadline;
    let mut out = ProseAnalysis::default();
    let norm = normalize(text);
    let raw_lines: Vec<&str> = norm.lines().collect();
    let mut quoted_header = vec![false; raw_lines.len()];
    let lines: Vec<&str> = raw_lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let (body, _) = strip_quote(l);
            quoted_header[i] = is_header_line(body);
            body
        })
        .collect();
    let sig = signature_lines(&lines);
    let skip: Vec<bool> = (0..lines.len())
        .map(|i| sig[i] || quoted_header[i])
        .collect();
    let (tables, in_table) = delimited_tables(&lines, &skip);
    out.tables = tables;

    let mut keys: HashSet<String> = HashSet::new();
    let mut emails: BTreeSet<String> = BTreeSet::new();
    let note = |out: &mut ProseAnalysis, line: usize| {
        out.lines = Some(match out.lines {
            None => (line, line),
            Some((a, b)) => (a.min(line), b.max(line)),
        });
    };
    // Label blocks: the current person's name and the other labelled kinds seen.
    let mut block_name: Option<String> = None;
    let mut block_kinds: BTreeSet<Class> = BTreeSet::new();
    let mut block_line = 0;
    let flush = |out: &mut ProseAnalysis,
                 name: &mut Option<String>,
                 kinds: &mut BTreeSet<Class>,
                 at: usize,
                 keys: &mut HashSet<String>| {
        if let Some(n) = name.take()
            && kinds.iter().any(|k| k.is_personal_attribute())
            && keys.insert(n)
        {
            out.kinds.extend(kinds.iter().copied());
            out.kinds.insert(Class::Name);
            note(out, at);
        }
        kinds.clear();
    };
    if late() {
        return None;
    }
    for (i, line) in lines.iter().enumerate() {
        if i % 1024 == 1023 && late() {
            return None;
        }
        if skip[i] {
            continue;
        }
        for e in entities::find_emails(line) {
            if !entities::is_role_address(&e) {
                out.identifiers.insert(e.clone());
                emails.insert(e);
            }
        }
        if in_table[i] {
            continue;
        }
        let t = strip_marker(line.trim());
        let heading = t.starts_with('【')
            || t.starts_with('[') && t.len() < 12
            || t.chars().next().is_some_and(|c| c.is_ascii_digit())
                && (t.contains(". ") || t.contains("."))
                && t.len() < 8;
        if t.is_empty() || heading {
            flush(
                &mut out,
                &mut block_name,
                &mut block_kinds,
                block_line,
                &mut keys,
            );
            continue;
        }
        if let Some((class, value)) = labelled(t) {
            if matches!(
                class,
                Class::Name
                    | Class::Kana
                    | Class::MemberId
                    | Class::MyNumber
                    | Class::LoginId
                    | Class::Phone
            ) && value.chars().count() <= 64
            {
                out.identifiers
                    .insert(value.split_whitespace().collect::<Vec<_>>().join(" "));
            }
            match class {
                Class::Name | Class::Kana if block_name.is_some() && class == Class::Name => {
                    flush(
                        &mut out,
                        &mut block_name,
                        &mut block_kinds,
                        block_line,
                        &mut keys,
                    );
                    block_name = Some(value.to_string());
                    block_line = i + 1;
                }
                Class::Name => {
                    block_name = Some(value.to_string());
                    block_line = i + 1;
                }
                c if c.is_personal_attribute() => {
                    block_kinds.insert(c);
                }
                _ => {}
            }
            continue;
        }
        // A record line carries a date, a number or an address: lines with neither digits nor
        // `@` cannot hold one, and most prose lines are skipped here cheaply.
        if memchr::memchr(b'@', t.as_bytes()).is_none()
            && t.bytes()
                .fold(0usize, |n, c| n + usize::from(c.is_ascii_digit()))
                < 4
        {
            continue;
        }
        let (ident, kinds) = line_entities(t, this_year);
        if let Some(id) = &ident {
            out.identifiers.insert(id.clone());
        }
        if let Some(id) = ident {
            let others = kinds
                .iter()
                .filter(|k| k.is_personal_attribute() || **k == Class::Name)
                .count();
            if others >= 2 && keys.insert(id) {
                out.kinds.extend(kinds);
                note(&mut out, i + 1);
            }
        }
    }
    flush(
        &mut out,
        &mut block_name,
        &mut block_kinds,
        block_line,
        &mut keys,
    );
    out.records = keys.len();
    out.emails = emails.into_iter().collect();
    // Signatures are skipped for records (the sender's own contact data), not for credentials:
    // a short block of `ID: … PW: … URL: …` lines looks like a signature but is a credential
    // list.
    let content: Vec<&str> = (0..lines.len())
        .filter(|&i| !quoted_header[i])
        .map(|i| lines[i])
        .collect();
    if late() {
        return None;
    }
    out.credential_pairs = credential_pairs(&content);
    if late() {
        return None;
    }
    out.my_numbers = my_numbers_with_context(&norm);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the fuzzer: `4、…` (a multi-byte list marker) was sliced inside the `、`,
    /// a panic that held ordinary Japanese mail with numbered points as uninspectable.
    #[test]
    fn list_markers_are_stripped_as_characters() {
        assert_eq!(strip_marker("4、概要"), "概要");
        assert_eq!(strip_marker("4、、、x"), "、、x");
        assert_eq!(strip_marker("12. item"), "item");
        assert_eq!(strip_marker("3) item"), "item");
        assert_eq!(strip_marker("(2) item"), "item");
        assert_eq!(strip_marker("① item"), "item");
        assert_eq!(strip_marker("2026年"), "2026年");
    }

    const Y: i32 = 2026;

    #[test]
    fn record_lines_count_distinct_people() {
        let mut text = String::from("各位\n\n名簿をお送りします。\n\n");
        let people = [
            "山田 太郎",
            "鈴木 花子",
            "佐藤 健一",
            "田中 美咲",
            "伊藤 翔太",
            "渡辺 陽子",
            "山本 一郎",
            "中村 恵子",
            "小林 大輔",
            "加藤 直美",
            "吉田 誠",
            "山口 愛",
        ];
        for (i, p) in people.iter().enumerate() {
            text.push_str(&format!("{p} 090-1234-{:04} user{i}@example.jp\n", i));
        }
        text.push_str(&format!("{} 090-1234-0000 user0@example.jp\n", people[0]));
        let a = analyze(&text, Y);
        assert_eq!(a.records, 12);
        assert_eq!(a.lines, Some((5, 16)));
        assert_eq!(a.emails.len(), 12);
    }

    #[test]
    fn record_blocks() {
        let mut text = String::new();
        for i in 0..11 {
            text.push_str(&format!(
                "【{}】\n氏名：{}\n生年月日：1980年{}月1日\n住所：東京都港区芝{}-1-1\n\n",
                i + 1,
                ["山田 太郎", "鈴木 花子", "佐藤 健一"][i % 3].replace(' ', &format!("{i}")),
                1 + i % 12,
                i
            ));
        }
        assert_eq!(analyze(&text, Y).records, 11);
    }

    #[test]
    fn signatures_and_quotes_do_not_count() {
        let sig = "--\n株式会社サンプル 営業部\n山田 太郎\nTEL: 03-1234-5678 / 携帯: 090-1111-2222\nyamada@sample.co.jp\n〒100-0001 東京都千代田区千代田1-1\n";
        let mut text = format!("お世話になっております。\n資料を送ります。\n\n{sig}\n");
        for _ in 0..6 {
            text.push_str("\n> お世話になっております。\n> \n");
            for l in sig.lines() {
                text.push_str(&format!("> {l}\n"));
            }
            text.push_str("> From: someone@partner.example\n> To: other@partner.example\n");
        }
        let a = analyze(&text, Y);
        assert_eq!(a.records, 0, "{a:?}");
        assert!(a.emails.is_empty(), "{:?}", a.emails);
    }

    #[test]
    fn credentials_and_my_number() {
        let text = "受講者各位\nログインID: learner01\nパスワード: Xy7!kk2q\n\nID: learner02 PW: Zz9#mm3r\n";
        assert_eq!(analyze(text, Y).credential_pairs, 2);
        // More labels after the pair (T14's finding): still a pair per line.
        let with_url = "ID: tanaka01 PW: Xy7#kq2 URL: https://portal.example.jp/login\n\
                        ID: suzuki02 PW: Ab3$zz9 URL: https://portal.example.jp/login\n";
        assert_eq!(analyze(with_url, Y).credential_pairs, 2);
        assert_eq!(
            analyze("ログインID: only-one\n初期パスワード: abcdef12\n", Y).credential_pairs,
            1
        );
        assert_eq!(
            analyze("マイナンバー：1234-5678-9018 をご確認ください", Y).my_numbers,
            1
        );
        assert_eq!(
            analyze("注文番号 123456789018 の商品を発送しました", Y).my_numbers,
            0
        );
        assert_eq!(
            analyze("個人番号カードの申請について。注文番号 123456789018", Y).my_numbers,
            0
        );
    }

    #[test]
    fn inline_records_with_list_markers_json_and_vcards() {
        let mut text = String::new();
        let people = [
            "佐々木 学",
            "酒井 香織",
            "柴田 幸子",
            "高木 遥",
            "安藤 千尋",
            "藤田 美穂",
            "遠藤 正樹",
            "市川 沙織",
            "竹内 蓮",
            "宮本 純一",
            "近藤 悠斗",
        ];
        for (i, p) in people.iter().enumerate() {
            text.push_str(&format!(
                "{}．{}　生年月日：１９６４年１１月{}日　携帯：０９０－８３７５－８４{:02}\n",
                i + 1,
                p.replace(' ', "　"),
                i + 1,
                i
            ));
        }
        assert_eq!(analyze(&text, Y).records, 11);
        let json: String = people.iter().enumerate().map(|(i, p)| format!("{{\"id\": {i}, \"name\": \"{p}\", \"email\": \"u{i}@example.ne.jp\", \"birthday\": \"1961-12-{:02}\"}}\n", i + 1)).collect();
        assert_eq!(analyze(&json, Y).records, 11);
        let vcf: String = people.iter().enumerate().map(|(i, p)| format!("BEGIN:VCARD\nVERSION:3.0\nN:{};;;\nFN:{p}\nTEL;TYPE=CELL:090-1180-90{i:02}\nEMAIL;TYPE=HOME:v{i}@example.com\nEND:VCARD\n", p.replace(' ', ";"))).collect();
        assert_eq!(analyze(&vcf, Y).records, 11);
    }

    #[test]
    fn cards_and_bank_accounts_are_financial_attributes() {
        let text = "山田 太郎 カード 4111 1111 1111 1111\n鈴木 花子 普通 1234567\n佐藤 健一 4111 1111 1111 1112\n";
        let a = analyze(text, Y);
        assert_eq!(a.records, 2, "{a:?}");
        assert!(a.kinds.contains(&Class::Finance));
    }

    #[test]
    fn delimited_lines_become_tables() {
        let text = "一覧です\n氏名\t生年月日\t性別\n山田 太郎\t1980/01/02\t男\n鈴木 花子\t1985/03/04\t女\n";
        let a = analyze(text, Y);
        assert_eq!(a.tables.len(), 1);
        assert_eq!(a.tables[0].len(), 3);
    }

    #[test]
    fn ordinary_mail_has_nothing() {
        let text = "山田様\n\nいつもお世話になっております。\n明日の打ち合わせは14時からでお願いします。\n会議室は3F-A です。\n\nよろしくお願いいたします。\n";
        let a = analyze(text, Y);
        assert_eq!(
            (a.records, a.credential_pairs, a.my_numbers, a.emails.len()),
            (0, 0, 0, 0)
        );
    }
}
