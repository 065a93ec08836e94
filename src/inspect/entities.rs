//! Entity validators and value shapes (DETECTION.md §2, §4.2). All functions read
//! **normalised** text (see `normalize.rs`) and are pure.
//!
//! A checksum is a filter, never evidence on its own: a random 12-digit number passes the
//! My Number check digit one time in ten. Callers add context (a label, a column header).

use regex::Regex;
use std::sync::LazyLock;

use super::names;

// ---------------------------------------------------------------------------------------
// Check digits

fn digits_of(s: &str) -> Option<Vec<u32>> {
    s.chars().map(|c| c.to_digit(10)).collect()
}

/// 個人番号: 12 digits, the last a check digit (総務省令第85号 第5条); all-same digits refused.
pub fn my_number_ok(s: &str) -> bool {
    let Some(d) = digits_of(s) else { return false };
    if d.len() != 12 || d.iter().all(|&x| x == d[0]) {
        return false;
    }
    let sum: u32 = (1..=11usize)
        .map(|n| {
            let p = d[11 - n];
            let q = if n <= 6 { n as u32 + 1 } else { n as u32 - 5 };
            p * q
        })
        .sum();
    let r = sum % 11;
    let cd = if r <= 1 { 0 } else { 11 - r };
    cd == d[11]
}

/// 法人番号: 13 digits, the FIRST a check digit (財務省令第70号 第2条).
pub fn corporate_ok(s: &str) -> bool {
    let Some(d) = digits_of(s) else { return false };
    if d.len() != 13 {
        return false;
    }
    let sum: u32 = (1..=12usize)
        .map(|n| d[13 - n] * if n % 2 == 1 { 1 } else { 2 })
        .sum();
    9 - sum % 9 == d[0]
}

/// Luhn (credit cards).
pub fn luhn_ok(s: &str) -> bool {
    let Some(d) = digits_of(s) else { return false };
    if d.len() < 12 {
        return false;
    }
    let sum: u32 = d
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &x)| {
            if i % 2 == 1 {
                let y = x * 2;
                if y > 9 { y - 9 } else { y }
            } else {
                x
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// A card number: 13–19 digits, a known issuer prefix, Luhn.
pub fn card_ok(s: &str) -> bool {
    let n = s.len();
    if !(13..=19).contains(&n) || !luhn_ok(s) {
        return false;
    }
    let p2: u32 = s.get(..2).and_then(|x| x.parse().ok()).unwrap_or(0);
    let p4: u32 = s.get(..4).and_then(|x| x.parse().ok()).unwrap_or(0);
    s.starts_with('4')
        || (51..=55).contains(&p2)
        || (2221..=2720).contains(&p4)
        || p2 == 34
        || p2 == 37
        || (3528..=3589).contains(&p4)
        || p2 == 36
        || p2 == 38
        || p4 == 6011
        || p2 == 65
}

/// JAN/EAN-13 product codes (45… / 49… in Japan): a suppressor.
pub fn jan_ok(s: &str) -> bool {
    let Some(d) = digits_of(s) else { return false };
    if d.len() != 13 || !(s.starts_with("45") || s.starts_with("49")) {
        return false;
    }
    let sum: u32 = d[..12]
        .iter()
        .enumerate()
        .map(|(i, &x)| if i % 2 == 1 { x * 3 } else { x })
        .sum();
    (10 - sum % 10) % 10 == d[12]
}

// ---------------------------------------------------------------------------------------
// Numbers in text

/// A run of digits with single separators (`-`, space, `.`, parentheses) between groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumToken {
    pub start: usize,
    pub end: usize,
    /// The digits only.
    pub digits: String,
    /// Digit counts of the groups, in order.
    pub groups: Vec<usize>,
    /// Written with a leading `+81` (the `0` is restored in `digits`).
    pub intl: bool,
    /// Preceded by `T` (a qualified-invoice registration number).
    pub t_prefix: bool,
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Every numeric token in `text` (byte offsets). A token glued to letters (`ABC123`,
/// `123abc`) is skipped: it is a code, not a number.
/// The index of the first ASCII digit at or after `from`. Whole 32-byte chunks are tested
/// with a branch-free OR (the compiler vectorises it) before the byte is looked for.
fn next_digit(b: &[u8], from: usize) -> Option<usize> {
    const CHUNK: usize = 32;
    let mut at = from;
    while at + CHUNK <= b.len() {
        let chunk = &b[at..at + CHUNK];
        if chunk
            .iter()
            .fold(false, |any, &c| any | (c.wrapping_sub(b'0') < 10))
        {
            break;
        }
        at += CHUNK;
    }
    b[at..].iter().position(u8::is_ascii_digit).map(|p| at + p)
}

pub fn numeric_tokens(text: &str) -> Vec<NumToken> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() {
            // Most text has few digits: jump to the next one a chunk at a time.
            match next_digit(b, i) {
                Some(d) => i = d,
                None => break,
            }
        }
        if i > 0 && b[i - 1].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        let mut intl = false;
        let mut t_prefix = false;
        if i >= 1 && b[i - 1] == b'+' && b[i..].starts_with(b"81") {
            // +81-90-1234-5678: the country code replaces the leading 0.
            let mut k = i + 2;
            if k < b.len() && matches!(b[k], b'-' | b' ' | b'(') {
                k += 1;
            }
            if k < b.len() && b[k].is_ascii_digit() {
                intl = true;
                i = k;
            } else {
                i += 1;
                continue;
            }
        } else if i >= 1 && b[i - 1] == b'T' && (i < 2 || !is_word_byte(b[i - 2])) {
            t_prefix = true;
        } else if i >= 1 && (is_word_byte(b[i - 1]) || b[i - 1] == b'/') && b[i - 1] != b'(' {
            // Part of a word, a code or a path.
            i += 1;
            continue;
        }
        let mut digits = String::new();
        let mut groups = Vec::new();
        let mut j = i;
        let mut group = 0;
        loop {
            while j < b.len() && b[j].is_ascii_digit() {
                digits.push(b[j] as char);
                group += 1;
                j += 1;
            }
            groups.push(group);
            group = 0;
            // One separator followed by a digit continues the token; `)(` is allowed too.
            let sep = j < b.len() && matches!(b[j], b'-' | b' ' | b'.' | b'(' | b')');
            if sep && j + 1 < b.len() && b[j + 1].is_ascii_digit() && groups.len() < 6 {
                j += 1;
            } else {
                break;
            }
        }
        if intl {
            digits.insert(0, '0');
        }
        let glued = j < b.len() && (b[j].is_ascii_alphabetic() || b[j] == b'_');
        if !glued && digits.len() <= 24 {
            let start = if intl { start - 1 } else { start };
            out.push(NumToken {
                start,
                end: j,
                digits,
                groups,
                intl,
                t_prefix,
            });
        }
        i = j.max(i + 1);
    }
    out
}

/// Japanese phone number kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhoneKind {
    /// 070/080/090: a person.
    Mobile,
    /// 0X-XXXX-XXXX landlines: a person or a business.
    Landline,
    /// 050 IP phones.
    Ip,
    /// 0120 / 0800 / 0570: business numbers (suppressors).
    Business,
}

/// The phone kind of a numeric token, if it is a plausible Japanese phone number.
pub fn phone_kind(t: &NumToken) -> Option<PhoneKind> {
    let d = t.digits.as_str();
    if !d.starts_with('0') || d.starts_with("00") || t.t_prefix {
        return None;
    }
    // Separated forms end in four digits (0120-123-456 and 0570-012-345 end in three).
    let business = d.starts_with("0120") || d.starts_with("0570") || d.starts_with("0800");
    let last_ok = |g: usize| g == 4 || (business && g == 3);
    if t.groups.len() > 1 && (t.groups.len() > 3 || t.groups.last().is_none_or(|&g| !last_ok(g))) {
        return None;
    }
    match d.len() {
        10 if d.starts_with("0120") || d.starts_with("0570") => Some(PhoneKind::Business),
        10 => Some(PhoneKind::Landline),
        11 if d.starts_with("090") || d.starts_with("080") || d.starts_with("070") => {
            Some(PhoneKind::Mobile)
        }
        11 if d.starts_with("050") => Some(PhoneKind::Ip),
        11 if d.starts_with("0800") => Some(PhoneKind::Business),
        _ => None,
    }
}

/// A whole cell that is a phone number.
pub fn cell_phone(cell: &str) -> Option<PhoneKind> {
    let toks = numeric_tokens(cell.trim());
    match toks.as_slice() {
        [t] if t.start == 0 && t.end == cell.trim().len() => phone_kind(t),
        _ => None,
    }
}

/// A whole cell that is a postal code (`123-4567`, `〒1234567`).
pub fn cell_postal(cell: &str) -> bool {
    let c = cell.trim().trim_start_matches('〒').trim();
    let toks = numeric_tokens(c);
    matches!(toks.as_slice(), [t] if t.start == 0 && t.end == c.len() && t.digits.len() == 7
        && (t.groups == [3, 4] || (t.groups == [7] && cell.trim().starts_with('〒'))))
}

/// A whole cell that is a valid My Number (12 digits, optionally 4-4-4).
pub fn cell_my_number(cell: &str) -> bool {
    let toks = numeric_tokens(cell.trim());
    matches!(toks.as_slice(), [t] if t.digits.len() == 12 && (t.groups == [12] || t.groups == [4, 4, 4])
        && my_number_ok(&t.digits))
}

// ---------------------------------------------------------------------------------------
// Dates

/// A calendar date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date {
    pub y: i32,
    pub m: u32,
    pub d: u32,
}

static DATE_RE: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r"(?x)
        (?P<y>(?:19|20)\d{2})\s?[/\-.年]\s?(?P<m>\d{1,2})\s?[/\-.月]\s?(?P<d>\d{1,2})日?
        | (?P<era>明治|大正|昭和|平成|令和|[MTSHR])\s?(?P<ey>元|\d{1,2})\s?[/\-.年]\s?(?P<em>\d{1,2})\s?[/\-.月]\s?(?P<ed>\d{1,2})日?",
    )
    .ok()
});

fn era_base(era: &str) -> Option<i32> {
    Some(match era {
        "明治" | "M" => 1868,
        "大正" | "T" => 1912,
        "昭和" | "S" => 1926,
        "平成" | "H" => 1989,
        "令和" | "R" => 2019,
        _ => return None,
    })
}

fn valid_date(y: i32, m: u32, d: u32) -> Option<Date> {
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => return None,
    };
    (1..=days).contains(&d).then_some(Date { y, m, d })
}

/// Every date in `text`, with its byte range: `1985/04/12`, `1985-04-12`, `1985年4月12日`,
/// `S60.04.12`, `昭和60年4月12日`, `平成元年4月1日`.
pub fn find_dates(text: &str) -> Vec<(Date, usize, usize)> {
    let Some(re) = DATE_RE.as_ref() else {
        return Vec::new();
    };
    if !text.bytes().any(|b| b.is_ascii_digit()) {
        return Vec::new();
    }
    let mut out = Vec::new();
    for c in re.captures_iter(text) {
        let Some(whole) = c.get(0) else { continue };
        // A date glued to more digits is part of a longer number.
        let glued_before = text[..whole.start()]
            .chars()
            .next_back()
            .is_some_and(|ch| ch.is_ascii_digit());
        let glued_after = text[whole.end()..]
            .chars()
            .next()
            .is_some_and(|ch| ch.is_ascii_digit());
        if glued_before || glued_after {
            continue;
        }
        let date = if let (Some(y), Some(m), Some(d)) = (c.name("y"), c.name("m"), c.name("d")) {
            valid_date(
                y.as_str().parse().unwrap_or(0),
                m.as_str().parse().unwrap_or(0),
                d.as_str().parse().unwrap_or(0),
            )
        } else if let (Some(era), Some(ey), Some(m), Some(d)) =
            (c.name("era"), c.name("ey"), c.name("em"), c.name("ed"))
        {
            let n: i32 = if ey.as_str() == "元" {
                1
            } else {
                ey.as_str().parse().unwrap_or(0)
            };
            era_base(era.as_str()).and_then(|b| {
                valid_date(
                    b + n - 1,
                    m.as_str().parse().unwrap_or(0),
                    d.as_str().parse().unwrap_or(0),
                )
            })
        } else {
            None
        };
        if let Some(date) = date {
            out.push((date, whole.start(), whole.end()));
        }
    }
    out
}

/// A whole cell that is a date.
pub fn cell_date(cell: &str) -> Option<Date> {
    let c = cell.trim();
    match find_dates(c).as_slice() {
        [(d, 0, end)] if *end == c.len() => Some(*d),
        _ => None,
    }
}

/// The current year (UTC).
pub fn current_year() -> i32 {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0);
    crate::smtp::received::civil_from_days(days as i64).0 as i32
}

/// A date that can be someone's birth date: 1900 or later, not in the future, age ≤ 110.
pub fn plausible_birth(d: Date, this_year: i32) -> bool {
    d.y >= 1900 && d.y <= this_year && this_year - d.y <= 110
}

// ---------------------------------------------------------------------------------------
// E-mail addresses

fn local_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"._%+-!#$&'*/=?^`{|}~".contains(&b)
}

fn domain_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'.' || b == b'-'
}

/// Every e-mail address in `text`, lower-cased.
pub fn find_emails(text: &str) -> Vec<String> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    for at in memchr::memchr_iter(b'@', b) {
        let mut s = at;
        while s > 0 && local_byte(b[s - 1]) {
            s -= 1;
        }
        let mut e = at + 1;
        while e < b.len() && domain_byte(b[e]) {
            e += 1;
        }
        while s < at && b[s] == b'.' {
            s += 1;
        }
        while e > at + 1 && matches!(b[e - 1], b'.' | b'-') {
            e -= 1;
        }
        if s == at || e <= at + 1 {
            continue;
        }
        let domain = &text[at + 1..e];
        let tld = domain.rsplit('.').next().unwrap_or("");
        if !domain.contains('.')
            || tld.len() < 2
            || !tld.bytes().all(|c| c.is_ascii_alphabetic())
            || domain.contains("..")
        {
            continue;
        }
        out.push(text[s..e].to_ascii_lowercase());
    }
    out
}

/// A whole cell that is an e-mail address.
pub fn cell_email(cell: &str) -> Option<String> {
    let c = cell.trim().trim_start_matches("mailto:");
    match find_emails(c).as_slice() {
        [e] if e.len() == c.len() => Some(e.clone()),
        _ => None,
    }
}

const ROLE_LOCALS: &[&str] = &[
    "info",
    "support",
    "noreply",
    "no-reply",
    "donotreply",
    "do-not-reply",
    "admin",
    "sales",
    "contact",
    "webmaster",
    "postmaster",
    "help",
    "helpdesk",
    "office",
    "hr",
    "recruit",
    "jobs",
    "press",
    "pr",
    "billing",
    "invoice",
    "service",
    "newsletter",
    "news",
    "marketing",
    "team",
    "hello",
    "mail",
    "system",
    "notification",
    "notifications",
    "customer",
    "inquiry",
    "toiawase",
    "soumu",
    "jinji",
    "keiri",
    "eigyo",
];

/// A role address (info@, noreply@ …): not a person.
pub fn is_role_address(addr: &str) -> bool {
    let local = addr.split('@').next().unwrap_or("");
    ROLE_LOCALS.contains(&local) || local.starts_with("no-reply") || local.starts_with("noreply")
}

// ---------------------------------------------------------------------------------------
// Names, gender, addresses

fn is_kanji(c: char) -> bool {
    matches!(c, '\u{4E00}'..='\u{9FFF}' | '\u{3400}'..='\u{4DBF}' | '々' | '〆' | 'ヶ' | '\u{F900}'..='\u{FAFF}')
}

fn is_hiragana(c: char) -> bool {
    matches!(c, '\u{3041}'..='\u{309F}')
}

fn is_katakana(c: char) -> bool {
    matches!(c, '\u{30A1}'..='\u{30FA}' | 'ー' | '・')
}

/// How much a value looks like a person's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum NameShape {
    No,
    /// The right shape (CJK characters, or two capitalised words) without a dictionary hit.
    Shape,
    /// A dictionary surname (Japanese) or first name / surname (English).
    Dictionary,
}

/// Judges a whole value (a table cell, a labelled value) as a person's name.
pub fn name_shape(value: &str) -> NameShape {
    let v = value
        .trim()
        .trim_end_matches(['様', '殿'])
        .trim_end_matches("さん")
        .trim();
    let n = v.chars().count();
    if !(2..=24).contains(&n) {
        return NameShape::No;
    }
    let parts: Vec<&str> = v.split([' ', '\t']).filter(|p| !p.is_empty()).collect();
    let all_ja = v.chars().all(|c| is_kanji(c) || is_hiragana(c) || c == ' ');
    if all_ja && (2..=10).contains(&n) && v.chars().any(is_kanji) && parts.len() <= 2 {
        if let Some(len) = names::surname_prefix(v) {
            let rest = v[len..].trim();
            if rest.is_empty() {
                return if parts.len() == 1 {
                    NameShape::Shape
                } else {
                    NameShape::No
                };
            }
            // One-character surnames (東, 森, 林 …) start many words and places: they count
            // only when a space or a known given name follows.
            let one_char = v[..len].chars().count() == 1;
            let spaced = v[len..].starts_with(' ');
            if rest.chars().count() <= 4 && (!one_char || spaced || names::is_given_name(rest)) {
                return NameShape::Dictionary;
            }
        }
        return if parts.len() == 2 || (3..=5).contains(&n) {
            NameShape::Shape
        } else {
            NameShape::No
        };
    }
    let ascii_words = parts.len() >= 2
        && parts.len() <= 3
        && parts.iter().all(|p| {
            let p = p.trim_end_matches(',');
            p.len() >= 2
                && p.chars().next().is_some_and(|c| c.is_ascii_uppercase())
                && p.chars()
                    .all(|c| c.is_ascii_alphabetic() || c == '-' || c == '\'' || c == '.')
        });
    if ascii_words {
        let first = parts[0].trim_end_matches(',');
        let last = parts[parts.len() - 1];
        if names::is_first_name(first)
            || names::is_first_name(last)
            || names::is_last_name(first)
            || names::is_last_name(last)
        {
            return NameShape::Dictionary;
        }
        return NameShape::Shape;
    }
    NameShape::No
}

/// A name reading in katakana (`ヤマダ タロウ`), or one katakana word in a reading column.
pub fn is_kana_name(value: &str) -> bool {
    let v = value.trim();
    let n = v.chars().count();
    (2..=20).contains(&n)
        && v.chars().all(|c| is_katakana(c) || c == ' ')
        && v.chars().any(|c| c != ' ' && c != 'ー')
}

/// A full name reading: two katakana words (`ヤマダ タロウ`). Single katakana words are
/// too common (place names, products) to count without a header.
pub fn is_kana_full_name(value: &str) -> bool {
    let v = value.trim();
    is_kana_name(v) && v.split(' ').filter(|w| !w.is_empty()).count() == 2
}

/// 男 / 女 / male / female …
pub fn is_gender(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "男" | "女"
            | "男性"
            | "女性"
            | "男子"
            | "女子"
            | "m"
            | "f"
            | "male"
            | "female"
            | "man"
            | "woman"
            | "その他"
            | "不明"
    )
}

static ADDRESS_NUMBER: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"\d+(?:-\d+){1,3}|\d+丁目|\d+番地?|\d+号|[一二三四五六七八九十]+丁目").ok()
});

/// A Japanese street address: a prefecture or a municipality, and a block number.
pub fn is_address(value: &str) -> bool {
    let v = value.trim();
    if v.chars().count() < 6 {
        return false;
    }
    let has_place =
        names::prefecture_prefix(v).is_some() || v.contains(['市', '区', '町', '村', '郡']);
    has_place && ADDRESS_NUMBER.as_ref().is_some_and(|re| re.is_match(v))
}

/// Japanese words that make a value an organisation's name: legal forms (also abbreviated,
/// `㈱` is `(株)` after NFKC), institutions and trade-name endings. Multi-character words
/// only: single characters (`店`, `院`, `省` …) occur in given names.
const ORG_WORDS_JA: &[&str] = &[
    "株式会社",
    "有限会社",
    "合同会社",
    "合資会社",
    "合名会社",
    "相互会社",
    "(株)",
    "(有)",
    "(合)",
    "(同)",
    "(資)",
    "(医)",
    "(財)",
    "(社)",
    "(学)",
    "(福)",
    "(特非)",
    "(一社)",
    "(公社)",
    "(一財)",
    "(公財)",
    "法人",
    "財団",
    "協会",
    "組合",
    "連合会",
    "商工会",
    "協議会",
    "委員会",
    "機構",
    "大学",
    "学校",
    "学園",
    "高校",
    "幼稚園",
    "保育園",
    "病院",
    "医院",
    "クリニック",
    "歯科",
    "薬局",
    "事務所",
    "研究所",
    "製作所",
    "工務店",
    "工業",
    "産業",
    "商事",
    "商店",
    "商会",
    "物産",
    "建設",
    "銀行",
    "信用金庫",
    "証券",
    "保険",
    "不動産",
    "興業",
    "電機",
    "自動車",
    "運輸",
    "運送",
    "物流",
    "食品",
    "製薬",
    "化学",
    "ホールディングス",
    "グループ",
    "センター",
    "支店",
    "営業所",
    "役所",
    "役場",
    "カブシキガイシャ",
    "ユウゲンガイシャ",
    "ゴウドウガイシャ",
];

/// English words (lower case, one whole word) that make a value an organisation's name.
const ORG_WORDS_EN: &[&str] = &[
    "inc",
    "incorporated",
    "ltd",
    "limited",
    "llc",
    "llp",
    "corp",
    "corporation",
    "co",
    "company",
    "gmbh",
    "ag",
    "kk",
    "k.k",
    "plc",
    "pte",
    "pty",
    "s.a",
    "b.v",
    "holdings",
    "group",
    "university",
    "college",
    "school",
    "hospital",
    "clinic",
    "association",
    "foundation",
    "institute",
    "bank",
    "trading",
    "industries",
    "systems",
    "solutions",
    "technologies",
    "services",
    "partners",
    "consulting",
    "laboratories",
    "council",
    "agency",
    "society",
];

static ORG_JA: LazyLock<Option<aho_corasick::AhoCorasick>> =
    LazyLock::new(|| aho_corasick::AhoCorasick::new(ORG_WORDS_JA).ok());

/// An organisation's name: a company (`株式会社…`, `…(株)`, `Acme Co., Ltd.`, `… K.K.`,
/// `… GmbH`), an association, a school, a hospital, an office (DETECTION.md §3, `会社名*`).
/// A person with an affiliation in brackets (`山田 太郎(株式会社サンプル)`) is a person.
/// Reads normalised text (`㈱` → `(株)`, full-width brackets → ASCII).
pub fn is_organisation_name(value: &str) -> bool {
    let v = value.trim();
    if v.is_empty() || v.len() > 200 {
        return false;
    }
    // Bank-style kana abbreviations of the legal form: `カ)サンプル`, `サンプル(カ`.
    let kana_form = ["カ)", "ユ)", "ド)"].iter().any(|p| v.starts_with(p))
        || ["(カ", "(ユ", "(ド"].iter().any(|p| v.ends_with(p));
    let ja = kana_form || ORG_JA.as_ref().is_some_and(|ac| ac.is_match(v));
    let en = !ja
        && v.split(|c: char| c.is_whitespace() || matches!(c, ',' | '(' | ')' | '&' | '/'))
            .map(|w| w.trim_matches('.').to_ascii_lowercase())
            .any(|w| ORG_WORDS_EN.contains(&w.as_str()));
    if !(ja || en) {
        return false;
    }
    // `山田 太郎(株式会社サンプル)`, `Emily Clark / Acme Inc.`: the person comes first.
    let person = v
        .split(['(', '/'])
        .next()
        .map(str::trim)
        .filter(|p| !p.is_empty() && p.len() < v.len());
    person.is_none_or(|p| name_shape(p) != NameShape::Dictionary)
}

/// A member/customer id shape: 3–20 characters of letters, digits and `-`, with digits.
pub fn is_code(value: &str) -> bool {
    let v = value.trim();
    (3..=20).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && v.bytes().filter(u8::is_ascii_digit).count() >= 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_digit_finds_the_first_digit_across_chunk_boundaries() {
        for len in [0usize, 1, 31, 32, 33, 64, 100] {
            for at in [0usize, 1, 30, 31, 32, 33, 63, 64, 99] {
                let mut b = vec![b'x'; len];
                if at < len {
                    b[at] = b'7';
                }
                for from in [0usize, 1, 32] {
                    let want = (from..len).find(|&i| b[i].is_ascii_digit());
                    assert_eq!(next_digit(&b, from.min(len)), want.filter(|_| from <= len));
                }
            }
        }
    }

    #[test]
    fn check_digits() {
        assert!(my_number_ok("123456789018"));
        assert!(!my_number_ok("123456789019"));
        assert!(!my_number_ok("111111111111"));
        assert!(!my_number_ok("12345678901"));
        assert!(corporate_ok("7123456789012"));
        assert!(corporate_ok("4011001098993"));
        assert!(!corporate_ok("1123456789012"));
        assert!(luhn_ok("4111111111111111") && card_ok("4111111111111111"));
        assert!(!card_ok("4111111111111112"));
        assert!(card_ok("3530111333300000"));
        assert!(jan_ok("4901234567894"));
        assert!(!jan_ok("4901234567890"));
    }

    #[test]
    fn numbers_in_text() {
        let t = numeric_tokens(
            "TEL 03-1234-5678 / 携帯 090(1234)5678, +81-90-1111-2222, T7123456789012, ABC123 x12",
        );
        let ds: Vec<&str> = t.iter().map(|x| x.digits.as_str()).collect();
        assert_eq!(
            ds,
            vec!["0312345678", "09012345678", "09011112222", "7123456789012"]
        );
        assert_eq!(phone_kind(&t[0]), Some(PhoneKind::Landline));
        assert_eq!(phone_kind(&t[1]), Some(PhoneKind::Mobile));
        assert_eq!(phone_kind(&t[2]), Some(PhoneKind::Mobile));
        assert!(t[2].intl);
        assert!(t[3].t_prefix && phone_kind(&t[3]).is_none());
        assert_eq!(cell_phone("0120-123-456"), Some(PhoneKind::Business));
        assert_eq!(cell_phone("012-345"), None);
        assert!(cell_postal("〒123-4567") && cell_postal("123-4567") && cell_postal("〒1234567"));
        assert!(!cell_postal("1234567"));
        assert!(cell_my_number("1234 5678 9018") && cell_my_number("1234-5678-9018"));
        assert!(!cell_my_number("12345-678-9018"));
    }

    #[test]
    fn dates() {
        let cases = [
            ("1985/04/12", Some((1985, 4, 12))),
            ("1985-4-12", Some((1985, 4, 12))),
            ("1985年4月12日", Some((1985, 4, 12))),
            ("S60.04.12", Some((1985, 4, 12))),
            ("昭和60年4月12日", Some((1985, 4, 12))),
            ("平成元年1月8日", Some((1989, 1, 8))),
            ("平成27年3月1日", Some((2015, 3, 1))),
            ("H27/3/1", Some((2015, 3, 1))),
            ("2024/02/30", None),
            ("20240101", None),
            ("version 1.2.3", None),
        ];
        for (s, want) in cases {
            assert_eq!(cell_date(s).map(|d| (d.y, d.m, d.d)), want, "{s}");
        }
        assert_eq!(find_dates("生年月日：1980/1/2、入会 2020-05-06").len(), 2);
        assert!(plausible_birth(
            Date {
                y: 1985,
                m: 1,
                d: 1
            },
            2026
        ));
        assert!(!plausible_birth(
            Date {
                y: 1850,
                m: 1,
                d: 1
            },
            2026
        ));
    }

    #[test]
    fn emails() {
        assert_eq!(
            find_emails("a: Taro.Y@Example.co.jp, b <x+1@ex.com>. bad@nodot x@y.c1 @@ z@a..b.jp"),
            vec!["taro.y@example.co.jp", "x+1@ex.com"]
        );
        assert_eq!(
            cell_email(" mailto:hanako@example.jp "),
            Some("hanako@example.jp".into())
        );
        assert!(is_role_address("info@example.jp") && is_role_address("noreply-alerts@x.jp"));
        assert!(!is_role_address("taro@example.jp"));
    }

    #[test]
    fn names_and_shapes() {
        assert_eq!(name_shape("山田 太郎"), NameShape::Dictionary);
        assert_eq!(name_shape("山田太郎様"), NameShape::Dictionary);
        assert_eq!(name_shape("佐々木"), NameShape::Shape);
        assert_eq!(name_shape("東海林 寛"), NameShape::Shape);
        assert_eq!(name_shape("Emily Clark"), NameShape::Dictionary);
        assert_eq!(name_shape("Quarterly Report"), NameShape::Shape);
        assert_eq!(name_shape("株式会社テスト"), NameShape::No);
        assert_eq!(name_shape("合計"), NameShape::No);
        assert_eq!(name_shape("東京都港区"), NameShape::Shape);
        assert_eq!(name_shape("森 花子"), NameShape::Dictionary);
        assert_eq!(name_shape("12345"), NameShape::No);
        for org in [
            "株式会社サンプル",
            "サンプル(株)",
            "有限会社みどり",
            "合同会社テスト",
            "佐藤歯科医院",
            "田中商店",
            "日本精工協会",
            "東都大学",
            "山本税理士事務所",
            "カ)サンプル",
            "カブシキガイシャ サンプル",
            "Acme Co., Ltd.",
            "Globex Inc.",
            "Nihon Trading K.K.",
            "Initech Corporation",
            "Umbrella LLC",
            "Müller GmbH",
            "Northwind Holdings",
        ] {
            assert!(is_organisation_name(org), "{org}");
        }
        for not_org in [
            "山田 太郎",
            "佐々木 健一",
            "Emily Clark",
            "山田 太郎(株式会社サンプル)",
            "Emily Clark / Acme Inc.",
            "東京都港区芝1-1-1",
            "Coco Chanel",
            "",
        ] {
            assert!(!is_organisation_name(not_org), "{not_org}");
        }
        assert!(is_kana_name("ヤマダ タロウ") && !is_kana_name("ー"));
        assert!(is_gender("女性") && is_gender("M") && !is_gender("東京"));
        assert!(is_address("東京都千代田区丸の内1-2-3"));
        assert!(is_address("大阪市北区梅田三丁目"));
        assert!(!is_address("東京都"));
        assert!(is_code("M000123") && !is_code("ABC") && !is_code("12"));
    }
}
