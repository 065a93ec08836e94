//! Prose: bodies, document paragraphs, PDF text (DETECTION.md §4.4).
//!
//! - A **record line** names a person (a dictionary name, a personal e-mail, a mobile number)
//!   together with another personal attribute (birth date, address, phone, gender …).
//! - A **record block** is a run of `label: value` lines (`氏名：…`, `生年月日：…`) about one
//!   person; `【1】` or numbered headings and blank lines separate blocks.
//! - **Signatures** (after `--` or a rule line, blocks dense in 株式会社/TEL/FAX/〒/URL, and
//!   in reply threads the last blocks of every message) are one person's business contact and
//!   never count; nor do reply headers, quoted (`>`) or not: From/Sent/To/Cc/Subject and
//!   差出人/送信日時/宛先/件名 blocks, `-----Original Message-----`, `On … wrote:`,
//!   `2024年1月1日(月) 10:00 山田太郎 <a@b>:`. A signature names one person and holds contact
//!   data only, so a data list inside quoted or forwarded text still counts.
//! - **My Number**: a valid number counts only when its own label stands right before it, on
//!   the line above, or over its table column — not when マイナンバー is merely nearby.
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
    /// Valid My Numbers labelled マイナンバー / 個人番号 / My Number (the label belongs to
    /// the number).
    pub my_numbers: usize,
    /// Delimited blocks found in the text, to be analysed as tables.
    pub tables: Vec<Vec<Vec<String>>>,
    /// Personal identifiers seen (names, member numbers, e-mails, mobiles), for the
    /// cross-recipient check. Hashed by the caller; never logged or stored.
    pub identifiers: BTreeSet<String>,
}

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
        return is_message_separator(l) || is_attribution(l);
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
        "日付:",
        "件名:",
        "subject:",
        "reply-to:",
    ]
    .iter()
    .any(|h| starts_with_ci(l, h))
        || is_message_separator(l)
        || is_attribution(l)
}

/// `-----Original Message-----`, `---------- Forwarded message ---------`, and the Japanese
/// `-------- 元のメッセージ --------` / `----- 転送メッセージ -----`.
fn is_message_separator(l: &str) -> bool {
    (ESSAGE.find(l.as_bytes()).is_some() && {
        let low = l.to_ascii_lowercase();
        low.contains("original message") || low.contains("forwarded message")
    }) || (l.starts_with(['-', '=', '_'])
        && l.chars().count() <= 60
        && (l.contains("元のメッセージ")
            || l.contains("転送メッセージ")
            || l.contains("転送されたメッセージ")))
}

/// A reply attribution line: `On Mon, Jan 1, 2024 at 10:00 AM Name <a@b> wrote:` (Gmail,
/// Thunderbird), `2024年1月1日(月) 10:00 山田太郎 <a@b>:` (Gmail in Japanese),
/// `… 山田 太郎 さんは書きました:`, `… のメッセージ:`.
fn is_attribution(line: &str) -> bool {
    let t = line.trim();
    if !t.ends_with(':') {
        return false;
    }
    let wrote = ends_with_ci(t, "wrote:");
    (wrote && (starts_with_ci(t, "on ") || t.contains('@')))
        || ((t.ends_with(">:") || t.ends_with("> :")) && t.contains('@') && t.contains('<'))
        || (["書きました:", "のメッセージ:", "のメール:"]
            .iter()
            .any(|e| t.ends_with(e))
            && t.bytes().any(|b| b == b'@' || b.is_ascii_digit()))
}

/// The second line of a wrapped attribution (`a@b> wrote:`, `a@b>:`).
fn is_attribution_tail(line: &str) -> bool {
    let t = line.trim();
    t.contains('@') && (ends_with_ci(t, "wrote:") || t.ends_with(">:") || t.ends_with("> :"))
}

fn ends_with_ci(s: &str, suffix: &str) -> bool {
    s.len() >= suffix.len()
        && s.as_bytes()[s.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
}

/// Which lines belong to reply headers: header fields (`From:` `Sent:` `差出人:` `件名:` …),
/// message separators and attribution lines, plus what they wrap onto: the first half of a
/// wrapped attribution (`On … Name <` + `a@b> wrote:`) and the continuation of an address
/// field that ends in `,` or `;`.
fn header_lines(lines: &[&str]) -> Vec<bool> {
    let mut h: Vec<bool> = lines.iter().map(|l| is_header_line(l)).collect();
    for i in 0..lines.len() {
        if h[i] {
            continue;
        }
        let t = lines[i].trim();
        if t.is_empty() {
            continue;
        }
        let next_tail = lines.get(i + 1).is_some_and(|n| is_attribution_tail(n));
        if next_tail && (starts_with_ci(t, "on ") || t.ends_with('<')) {
            h[i] = true;
            h[i + 1] = true;
            continue;
        }
        if i > 0 && h[i - 1] && lines[i - 1].trim_end().ends_with([',', ';']) && t.contains('@') {
            h[i] = true;
        }
    }
    h
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

/// Who a few lines are about: the distinct person identifiers they name. Used to tell one
/// person's signature (one name, one mobile, an address or two) from a list of people.
#[derive(Debug, Clone, Default)]
struct People {
    mobiles: BTreeSet<String>,
    emails: BTreeSet<String>,
    /// At most one name per line: Japanese and romanised names are kept apart, as one
    /// signature often carries both (`山田 太郎 / Taro Yamada`).
    names_ja: BTreeSet<String>,
    names_en: BTreeSet<String>,
    /// Data a signature never carries: a birth date, gender, account or card, an ID number,
    /// credentials — or a labelled name (`氏名:`, `お名前:`, `Name:`), which is form data:
    /// signatures give the name bare.
    non_contact: bool,
    /// The lines together are a record: an identifier and another personal attribute.
    record: bool,
    /// Kinds seen, and whether an identifier was among them (for `record`).
    kinds: BTreeSet<Class>,
    identified: bool,
}

impl People {
    fn of(lines: &[&str], this_year: i32) -> People {
        let mut p = People::default();
        for l in lines {
            p.add_line(l, this_year);
        }
        p
    }

    fn add_line(&mut self, line: &str, this_year: i32) {
        let t = strip_marker(line.trim());
        if t.is_empty() {
            return;
        }
        if let Some((class, _)) = labelled(t)
            && matches!(
                class,
                Class::Name
                    | Class::Kana
                    | Class::Dob
                    | Class::Age
                    | Class::Gender
                    | Class::Finance
                    | Class::MyNumber
                    | Class::GovId
                    | Class::MemberId
                    | Class::LoginId
                    | Class::Password
            )
        {
            self.non_contact = true;
        }
        for e in entities::find_emails(t) {
            if !entities::is_role_address(&e) {
                self.emails.insert(e);
            }
        }
        for tok in entities::numeric_tokens(t) {
            if entities::phone_kind(&tok) == Some(PhoneKind::Mobile) {
                self.mobiles.insert(tok.digits);
            }
        }
        let (ident, kinds) = line_entities(t, this_year);
        if kinds.contains(&Class::Dob)
            || kinds.contains(&Class::Gender)
            || kinds.contains(&Class::Finance)
        {
            self.non_contact = true;
        }
        if let Some(id) = ident {
            if kinds.contains(&Class::Name) {
                if id.is_ascii() {
                    self.names_en.insert(id);
                } else {
                    self.names_ja.insert(id);
                }
            }
            self.identified = true;
        }
        self.kinds.extend(
            kinds
                .into_iter()
                .filter(|k| k.is_personal_attribute() || *k == Class::Name),
        );
        self.record = self.identified && self.kinds.len() >= 2;
    }

    fn is_empty(&self) -> bool {
        self.mobiles.is_empty()
            && self.emails.is_empty()
            && self.names_ja.is_empty()
            && self.names_en.is_empty()
    }

    /// At most one person: one mobile, one name per script, two addresses (work and
    /// private).
    fn one_person(&self) -> bool {
        self.mobiles.len() <= 1
            && self.emails.len() <= 2
            && self.names_ja.len() <= 1
            && self.names_en.len() <= 1
    }

    /// Contact data of one person: what a signature may hold.
    fn signature_like(&self) -> bool {
        self.one_person() && !self.non_contact
    }

    fn merged(&self, other: &People) -> People {
        let mut m = self.clone();
        m.mobiles.extend(other.mobiles.iter().cloned());
        m.emails.extend(other.emails.iter().cloned());
        m.names_ja.extend(other.names_ja.iter().cloned());
        m.names_en.extend(other.names_en.iter().cloned());
        m.non_contact |= other.non_contact;
        m.kinds.extend(other.kinds.iter().copied());
        m.identified |= other.identified;
        m.record = m.identified && m.kinds.len() >= 2;
        m
    }
}

/// Marks the lines that belong to a signature block: one person's business contact data.
///
/// - a short block dense in 株式会社/TEL/FAX/〒/URL, or what follows a rule (`--`, `━━━`)
///   inside a block;
/// - in a reply thread, the last blocks of each message: what sits right above a reply
///   header (`-----Original Message-----`, `From:`/`差出人:` blocks, `On … wrote:`), and
///   the end of the text.
///
/// Either way only when the lines name **one** person and hold contact data only: a list
/// of people (or a block with birth dates, IDs, accounts) is never a signature, wherever it
/// sits — below a separator, inside a quote or at the end of a message.
fn signature_lines(
    lines: &[&str],
    header: &[bool],
    this_year: i32,
    late: &dyn Fn() -> bool,
) -> Option<Vec<bool>> {
    let mut sig = vec![false; lines.len()];
    let mut i = 0;
    let mut blocks = 0usize;
    while i < lines.len() {
        blocks += 1;
        if blocks.is_multiple_of(1024) && late() {
            return None;
        }
        // A block: consecutive non-empty lines (reply headers end a block too).
        if lines[i].trim().is_empty() || header[i] {
            i += 1;
            continue;
        }
        let start = i;
        while i < lines.len() && !lines[i].trim().is_empty() && !header[i] {
            i += 1;
        }
        let block = &lines[start..i];
        let has_rule = block.iter().position(|l| is_rule_line(l));
        // Only a short block can be a signature: long ones skip the marker search.
        let dense = if block.len() <= 12 {
            block.iter().filter(|l| is_business(l)).count()
        } else {
            0
        };
        if block.len() <= 12 && dense >= 2 && People::of(block, this_year).signature_like() {
            sig[start..i].iter_mut().for_each(|s| *s = true);
        } else if let Some(r) = has_rule {
            // Everything after a rule inside a block, when what follows looks like contact data.
            let rest = &block[r + 1..];
            if rest.len() <= 10
                && rest.iter().any(|l| is_business(l))
                && People::of(rest, this_year).signature_like()
            {
                sig[start + r..i].iter_mut().for_each(|s| *s = true);
            }
        }
    }
    // Reply threads: the tail of every message.
    if header.iter().any(|&h| h) {
        let mut walks = 0usize;
        for b in 0..lines.len() {
            if header[b] && (b == 0 || !header[b - 1]) {
                walks += 1;
                if walks.is_multiple_of(256) && late() {
                    return None;
                }
                mark_tail_signature(lines, header, b, this_year, &mut sig);
            }
        }
        mark_tail_signature(lines, header, lines.len(), this_year, &mut sig);
    }
    Some(sig)
}

/// Walks up from `end` (a reply header, or the end of the text) over the last blocks of a
/// message and marks them as its signature while they name one person with contact data
/// only. Blocks without any person (closing words, disclaimers) are passed over. The walk
/// stops at the message's start (the reply header above), at a long block, after a rule
/// that opens the signature, or at another person. The marks are undone when that other
/// person is a record on their own (a list of one-person blocks: the tail is the list's last
/// entry), and when the message holds nothing but the marked blocks (a signature closes a
/// message; a record alone between two header blocks is a digest entry).
fn mark_tail_signature(
    lines: &[&str],
    header: &[bool],
    end: usize,
    this_year: i32,
    sig: &mut [bool],
) {
    const MAX_BLOCK: usize = 12;
    const MAX_BLOCKS: usize = 4;
    const MAX_LINES: usize = 20;
    let mut j = end;
    let mut union = People::default();
    let mut marked: Vec<(usize, usize)> = Vec::new();
    let (mut blocks, mut total) = (0usize, 0usize);
    // Message text passed over above or between the marked blocks.
    let mut text_above = false;
    let undo = loop {
        let mut crossed_rule = false;
        while j > 0
            && !header[j - 1]
            && (lines[j - 1].trim().is_empty() || is_rule_line(lines[j - 1]))
        {
            crossed_rule |= is_rule_line(lines[j - 1]);
            j -= 1;
        }
        if crossed_rule && !marked.is_empty() {
            // `--` / `━━━` opens the signature: the message's text is above it.
            break false;
        }
        if j == 0 || header[j - 1] {
            break !text_above;
        }
        let block_end = j;
        while j > 0
            && !header[j - 1]
            && !lines[j - 1].trim().is_empty()
            && !is_rule_line(lines[j - 1])
        {
            j -= 1;
        }
        let block = &lines[j..block_end];
        if block.len() > MAX_BLOCK {
            break false;
        }
        let p = People::of(block, this_year);
        blocks += 1;
        total += block.len();
        if p.non_contact {
            // Somebody's record (a birth date, an ID): a list entry, so the blocks below it
            // are list entries too.
            break p.one_person() && !marked.is_empty();
        }
        if p.is_empty() {
            text_above |= !marked.is_empty();
        } else {
            let m = union.merged(&p);
            if !m.one_person() {
                break p.one_person() && p.record;
            }
            union = m;
            marked.push((j, block_end));
        }
        if blocks >= MAX_BLOCKS || total >= MAX_LINES {
            break false;
        }
    };
    if !undo {
        for (a, b) in marked {
            sig[a..b].iter_mut().for_each(|s| *s = true);
        }
    }
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

/// Valid My Numbers whose label belongs to them (DETECTION.md §4.2, R2): a bare 12-digit
/// number passes the check digit one time in ten, and a message that mentions マイナンバー
/// may well carry ticket, order or account numbers. A number counts when
///
/// - its own label stands right before it on the line (`マイナンバー: 1234 5678 9012`,
///   `個人番号 123456789012`, `My Number (Individual Number): …`, `私のマイナンバーは …`);
/// - or it stands alone under a label line (`個人番号:` then the number on the next line);
/// - or it sits in the My Number column of a table (a header line above it in the same
///   block: tab/comma/`|` cells, or space-aligned columns matched by display position).
///
/// A number right after another label (`チケット番号`, `注文番号`, `会員番号`, `order no.`)
/// never counts, whatever the text around it says.
fn my_numbers_with_context(text: &str, late: &dyn Fn() -> bool) -> Option<usize> {
    // Most texts have no 12-digit number at all.
    if text.bytes().filter(u8::is_ascii_digit).count() < 12 {
        return Some(0);
    }
    let lines: Vec<&str> = text.lines().collect();
    let mut found = HashSet::new();
    // The header line of the table the current line belongs to (reset by a blank line).
    let mut table: Option<TableHeader> = None;
    for (i, line) in lines.iter().enumerate() {
        if i % 1024 == 1023 && late() {
            return None;
        }
        if line.trim().is_empty() {
            table = None;
            continue;
        }
        let digits = line.bytes().filter(u8::is_ascii_digit).count();
        if digits < 12 {
            if let Some(h) = my_number_header(line) {
                table = Some(h);
            }
            continue;
        }
        for t in entities::numeric_tokens(line) {
            if t.digits.len() != 12
                || !(t.groups == [12] || t.groups == [4, 4, 4])
                || !entities::my_number_ok(&t.digits)
                || found.contains(&t.digits)
            {
                continue;
            }
            let prefix = line[..t.start].to_lowercase();
            let owned = label_owns_number(&prefix)
                || (!other_label_before(&prefix)
                    && (label_line_above(&lines, i, &prefix)
                        || table
                            .as_ref()
                            .is_some_and(|h| h.my_number_at(line, t.start))));
            if owned {
                found.insert(t.digits);
            }
        }
    }
    Some(found.len())
}

/// Labels of a My Number (lower case, after NFKC).
const MY_NUMBER_LABELS: &[&str] = &[
    "マイナンバー",
    "個人番号",
    "my number",
    "mynumber",
    "my no.",
    "my no",
    "individual number",
    "通知カード",
];
/// One automaton for the labels (ASCII case-insensitive): most lines have none.
static MY_NUMBER_LABEL: std::sync::LazyLock<Option<aho_corasick::AhoCorasick>> =
    std::sync::LazyLock::new(|| {
        aho_corasick::AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .build(MY_NUMBER_LABELS)
            .ok()
    });
/// Words of other numbers' labels: a qualifier naming one of these is not about a My Number.
const OTHER_NUMBER_WORDS: &[&str] = &[
    "チケット",
    "注文",
    "伝票",
    "会員",
    "口座",
    "管理",
    "受付",
    "問合せ",
    "問い合わせ",
    "追跡",
    "お届け",
    "社員",
    "顧客",
    "登録",
    "法人",
    "予約",
    "申込",
    "整理",
    "受験",
    "保険",
    "年金",
    "電話",
    "order",
    "ticket",
    "tracking",
    "invoice",
    "account",
    "member",
    "customer",
    "booking",
    "reservation",
    "employee",
    "phone",
];
/// What may stand between a label and its value.
const LABEL_SEPARATORS: &[char] = &[
    ' ', '\t', ':', '=', '-', '|', '#', '、', ',', '・', '「', '[', '【', '】', ']', '(', '→',
];
/// Words that may follow a label before its value (`マイナンバーカード番号`, `個人番号は`,
/// `my number is`).
const LABEL_TAILS: &[&str] = &[
    "番号",
    "カード",
    "number",
    "no.",
    "no",
    "は",
    "が",
    "です",
    "is",
];

/// Whether `prefix` (lower case, the line before a number) ends with a My Number label and
/// only separators, label tails and short qualifiers (`(本人)`) after it.
fn label_owns_number(prefix: &str) -> bool {
    let mut rest = prefix;
    for _ in 0..8 {
        rest = rest.trim_end_matches(LABEL_SEPARATORS);
        if MY_NUMBER_LABELS.iter().any(|l| rest.ends_with(l)) {
            return true;
        }
        if let Some(r) = LABEL_TAILS.iter().find_map(|t| rest.strip_suffix(t)) {
            rest = r;
            continue;
        }
        // A parenthesised qualifier: a label itself (`(個人番号)`), or a short aside that
        // names no other number (`(本人)`, `(spouse)`).
        if let Some(inner_end) = rest.strip_suffix(')')
            && let Some(open) = inner_end.rfind('(')
        {
            let inner = &inner_end[open + 1..];
            if OTHER_NUMBER_WORDS.iter().any(|w| inner.contains(w)) {
                return false;
            }
            if label_owns_number(inner) {
                return true;
            }
            if inner.chars().count() > 16 {
                return false;
            }
            rest = &inner_end[..open];
            continue;
        }
        return false;
    }
    false
}

/// Whether `prefix` (lower case) ends with the label of some other number
/// (`チケット番号:`, `order no.`, `会員ID`, `#`).
fn other_label_before(prefix: &str) -> bool {
    let rest = prefix.trim_end_matches(|c: char| c.is_whitespace() || ":=|、,([【】]".contains(c));
    [
        "番号",
        "ナンバー",
        "number",
        "no.",
        "no",
        "id",
        "コード",
        "code",
        "#",
    ]
    .iter()
    .any(|w| rest.ends_with(w))
        || OTHER_NUMBER_WORDS.iter().any(|w| rest.ends_with(w))
}

/// `個人番号:` (or `■マイナンバー`) alone on the line right above a line that starts with
/// the number.
fn label_line_above(lines: &[&str], i: usize, prefix: &str) -> bool {
    if !strip_marker(prefix.trim_matches(LABEL_SEPARATORS)).is_empty() || i == 0 {
        return false;
    }
    let above = strip_marker(lines[i - 1].trim()).to_lowercase();
    !above.is_empty()
        && above.chars().count() <= 24
        && !above.bytes().any(|b| b.is_ascii_digit())
        && label_owns_number(&above)
}

/// Cells of a table line: by tab, `|` or comma when the line has them, else by runs of
/// two or more spaces, else by single spaces. Each cell with its byte offset.
fn table_cells(line: &str) -> (Option<char>, Vec<(usize, &str)>) {
    let split_by = |sep: char| -> Vec<(usize, &str)> {
        let mut out = Vec::new();
        let mut at = 0;
        for part in line.split(sep) {
            out.push((at, part));
            at += part.len() + sep.len_utf8();
        }
        out
    };
    for sep in ['\t', '|', ','] {
        if line.contains(sep) {
            return (Some(sep), split_by(sep));
        }
    }
    let mut wide = Vec::new();
    let mut start: Option<usize> = None;
    let mut spaces = 0;
    for (at, c) in line.char_indices() {
        if c == ' ' {
            spaces += 1;
            continue;
        }
        match start {
            None => start = Some(at),
            Some(s) if spaces >= 2 => {
                wide.push((s, line[s..at].trim_end()));
                start = Some(at);
            }
            _ => {}
        }
        spaces = 0;
    }
    if let Some(s) = start {
        wide.push((s, line[s..].trim_end()));
    }
    if wide.len() >= 2 {
        return (None, wide);
    }
    let mut single = Vec::new();
    let mut at = 0;
    for part in line.split(' ') {
        if !part.is_empty() {
            single.push((at, part));
        }
        at += part.len() + 1;
    }
    (None, single)
}

/// Display width of `s` in a fixed-width font: CJK and full-width characters take two
/// columns.
fn display_width(s: &str) -> usize {
    s.chars()
        .map(|c| {
            if (c as u32) >= 0x1100 && !('\u{FF61}'..='\u{FF9F}').contains(&c) {
                2
            } else {
                1
            }
        })
        .sum()
}

/// The header line of a table with a My Number column: its cells and their classes.
struct TableHeader {
    line: String,
    sep: Option<char>,
    /// Byte offset of each cell in `line`.
    offsets: Vec<usize>,
    classes: Vec<Option<Class>>,
}

/// A table header with a My Number column: at least two known column names, at least half
/// of its cells known, one of them a My Number label (`個人番号`, `My Number`, not a sentence
/// that mentions one), no numbers (a `(12桁)` note at most) and no sentence end.
fn my_number_header(line: &str) -> Option<TableHeader> {
    if !MY_NUMBER_LABEL.as_ref().is_some_and(|ac| ac.is_match(line))
        || line.contains('。')
        || entities::numeric_tokens(line)
            .iter()
            .any(|t| t.digits.len() >= 4)
    {
        return None;
    }
    let line = line.trim_end();
    let (sep, cells) = table_cells(line);
    let classes: Vec<Option<Class>> = cells
        .iter()
        .map(|(_, c)| match classify_header(c) {
            Some(Class::MyNumber) if !label_owns_number(&c.trim().to_lowercase()) => None,
            class => class,
        })
        .collect();
    let known = classes.iter().flatten().count();
    if known < 2 || known * 2 < cells.len() || !classes.contains(&Some(Class::MyNumber)) {
        return None;
    }
    Some(TableHeader {
        line: line.to_string(),
        sep,
        offsets: cells.iter().map(|(o, _)| *o).collect(),
        classes,
    })
}

impl TableHeader {
    /// Whether a number at byte `at` of a row sits in the My Number column: by cell index
    /// when header and row share a separator (tab, `|`, comma), else by display position
    /// (the header cell whose start is nearest to the number's).
    fn my_number_at(&self, row: &str, at: usize) -> bool {
        let column = match self.sep {
            Some(sep) if row.contains(sep) => Some(row[..at].matches(sep).count()),
            _ => {
                let col = display_width(&row[..at]);
                self.offsets
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, off)| {
                        display_width(self.line.get(..**off).unwrap_or("")).abs_diff(col)
                    })
                    .map(|(n, _)| n)
            }
        };
        column.and_then(|c| self.classes.get(c).copied().flatten()) == Some(Class::MyNumber)
    }
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
    let lines: Vec<&str> = norm.lines().map(|l| strip_quote(l).0).collect();
    let quoted_header = header_lines(&lines);
    let sig = signature_lines(&lines, &quoted_header, this_year, &late)?;
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
    out.my_numbers = my_numbers_with_context(&norm, &late)?;
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

    /// An English Outlook thread, not '>'-quoted: every earlier message below
    /// `-----Original Message-----` + From/Sent/To/Cc/Subject (or `________________________________`,
    /// or Gmail's `On … wrote:`), and every participant's signature with mobile and e-mail on
    /// one line.
    fn english_thread() -> String {
        let people = [
            (
                "Sarah Johnson",
                "sarah.johnson@acme.example.com",
                "090-3141-5926",
            ),
            (
                "Robert Green",
                "robert.green@northwind.example.com",
                "080-2718-2818",
            ),
            (
                "Emily Clark",
                "emily.clark@acme.example.com",
                "070-1414-2135",
            ),
            (
                "David Miller",
                "david.miller@northwind.example.com",
                "090-1732-0508",
            ),
            (
                "Laura White",
                "laura.white@globex.example.com",
                "080-2236-0679",
            ),
            (
                "James Walker",
                "james.walker@globex.example.com",
                "070-2645-7513",
            ),
            (
                "Megan Turner",
                "megan.turner@acme.example.com",
                "090-3316-6247",
            ),
        ];
        let mut text = String::new();
        for (i, (name, mail, mobile)) in people.iter().enumerate() {
            let (to, to_mail, _) = people[(i + 1) % people.len()];
            if i > 0 {
                let (prev, prev_mail, _) = people[i - 1];
                match i % 3 {
                    0 => text.push_str(&format!(
                        "\n-----Original Message-----\nFrom: {name} <{mail}>\nSent: Monday, February {} 2025 9:{:02} AM\nTo: {prev} <{prev_mail}>\nCc: {to} <{to_mail}>; Kevin Adams <kevin.adams@acme.example.com>;\n Olivia Hall <olivia.hall@globex.example.com>\nSubject: RE: Q3 delivery schedule\n\n",
                        10 - i,
                        10 + i
                    )),
                    1 => text.push_str(&format!(
                        "\n________________________________\nFrom: {name} <{mail}>\nSent: Friday, January {} 2019 4:{:02} PM\nTo: {prev} <{prev_mail}>\nSubject: RE: Q3 delivery schedule\n\n",
                        20 + i,
                        10 + i
                    )),
                    _ => text.push_str(&format!(
                        "\nOn Mon, Jan {}, 2019 at 10:00 AM {name} <\n{mail}> wrote:\n\n",
                        i + 1
                    )),
                }
            }
            // Signature styles seen in the wild, all with the mobile and the e-mail on one line.
            let contact = match i % 4 {
                0 => format!("Mobile: {mobile} | Email: {mail}"),
                1 => format!("M {mobile}  E {mail}"),
                2 => format!("{mobile} / {mail}"),
                _ => format!("{name} | {mobile} | {mail}"),
            };
            text.push_str(&format!(
                "Hi {},\n\nThanks, the revised schedule works for us. Let's confirm on Thursday.\n\nBest regards,\n{name}\nProject Manager\n{contact}\n",
                to.split(' ').next().unwrap_or("")
            ));
        }
        text
    }

    /// The same in Japanese Outlook / Gmail: 差出人/送信日時/宛先/件名 blocks, a
    /// `2024年1月1日(月) 10:00 山田太郎 <a@b>:` attribution, signatures with 携帯 and mail on
    /// one line.
    fn japanese_thread() -> String {
        let people = [
            (
                "佐藤 健一",
                "k-sato@sakura-shoji.example.co.jp",
                "090-1234-5678",
            ),
            (
                "鈴木 花子",
                "h-suzuki@aoba-sys.example.co.jp",
                "080-2345-6789",
            ),
            (
                "高橋 誠",
                "m-takahashi@sakura-shoji.example.co.jp",
                "070-3456-7890",
            ),
            (
                "田中 美咲",
                "m-tanaka@aoba-sys.example.co.jp",
                "090-4567-8901",
            ),
            (
                "伊藤 翔太",
                "s-ito@hikari-denki.example.co.jp",
                "080-5678-9012",
            ),
            (
                "渡辺 陽子",
                "y-watanabe@hikari-denki.example.co.jp",
                "070-6789-0123",
            ),
        ];
        let mut text = String::new();
        for (i, (name, mail, mobile)) in people.iter().enumerate() {
            let (to, to_mail, _) = people[(i + 1) % people.len()];
            if i > 0 {
                match i % 3 {
                    0 => text.push_str(&format!(
                        "\n2019年1月{}日(月) 10:00 {} <{mail}>:\n\n",
                        i + 1,
                        name.replace(' ', "")
                    )),
                    1 => text.push_str(&format!(
                        "\n-----Original Message-----\n差出人: {name} <{mail}>\n送信日時: 2019年1月{}日 10:{:02}\n宛先: {to} <{to_mail}>\nCC: 山本 一郎 <i-yamamoto@sakura-shoji.example.co.jp>\n件名: RE: 新システム導入の件\n\n",
                        i + 1,
                        10 + i
                    )),
                    _ => text.push_str(&format!(
                        "\n________________________________\n差出人： {name} <{mail}>\n送信日時： 2019年1月{}日 9:00\n宛先： {to} <{to_mail}>\n件名： RE: 新システム導入の件\n\n",
                        i + 1
                    )),
                }
            }
            text.push_str(&format!(
                "{}様\n\nお世話になっております。{}です。\n資料を確認いたしました。来週の打ち合わせでご説明します。\n\nよろしくお願いいたします。\n\n{name}\n携帯：{mobile}　Mail：{mail}\n",
                to.split(' ').next().unwrap_or(""),
                name.split(' ').next().unwrap_or("")
            ));
        }
        text
    }

    #[test]
    fn outlook_reply_threads_are_not_records() {
        for (lang, text) in [("en", english_thread()), ("ja", japanese_thread())] {
            let a = analyze(&text, Y);
            assert_eq!(a.records, 0, "{lang}: {a:?}");
            assert!(a.emails.is_empty(), "{lang}: {:?}", a.emails);
        }
    }

    #[test]
    fn reply_headers_and_attributions_are_recognised() {
        let lines = [
            "On Mon, Jan 1, 2024 at 10:00 AM Robert Green <robert.green@example.com> wrote:",
            "2024年1月1日(月) 10:00 山田太郎 <yamada@example.jp>:",
            "-------- 元のメッセージ --------",
            "差出人: 山田 太郎 <yamada@example.jp>",
            "日付: 2024/01/01 10:00",
            "山田 太郎 さんは書きました (2024/01/01 10:00):",
        ];
        let h = header_lines(&lines);
        assert_eq!(h, vec![true, true, true, true, true, false]);
        // Wrapped: the name half of the attribution goes with it.
        let wrapped = [
            "On Mon, Jan 1, 2024 at 10:00 AM Robert Green <",
            "robert.green@example.com> wrote:",
        ];
        assert_eq!(header_lines(&wrapped), vec![true, true]);
        let wrapped_ja = ["2019年1月1日(火) 10:00 山田太郎 <", "yamada@example.jp>:"];
        assert_eq!(header_lines(&wrapped_ja), vec![true, true]);
        // Ordinary record lines are not headers.
        let list = [
            "山田 太郎 090-1111-2222 yamada@example.jp",
            "Robert Green, 1980-01-02, robert@example.com",
        ];
        assert_eq!(header_lines(&list), vec![false, false]);
    }

    fn ja_members(n: usize) -> Vec<String> {
        let sei = [
            "山田", "鈴木", "佐藤", "田中", "伊藤", "渡辺", "山本", "中村", "小林", "加藤", "吉田",
            "山口", "松本", "井上", "木村", "清水", "山崎", "森田", "池田", "橋本",
        ];
        let mei = [
            "太郎", "花子", "健一", "美咲", "翔太", "陽子", "一郎", "恵子", "大輔", "直美",
        ];
        (0..n)
            .map(|i| {
                format!(
                    "{} {}　090-55{:02}-{:04}　東京都世田谷区太子堂{}-{}-{}",
                    sei[i % sei.len()],
                    mei[(i * 3) % mei.len()],
                    i,
                    1000 + i * 7,
                    1 + i % 5,
                    1 + i % 20,
                    2 + i
                )
            })
            .collect()
    }

    #[test]
    fn member_list_below_an_outlook_separator_still_counts() {
        let list = ja_members(20).join("\n");
        // Under -----Original Message----- and a header block, in the forwarded message.
        let text = format!(
            "各位\n\n下記、転送します。\n\n佐藤 健一\n携帯：090-1234-5678　Mail：k-sato@sakura.example.co.jp\n\n-----Original Message-----\n差出人: 鈴木 花子 <h-suzuki@aoba.example.co.jp>\n送信日時: 2024年9月2日 10:00\n宛先: 佐藤 健一 <k-sato@sakura.example.co.jp>\n件名: 会員リスト\n\n佐藤様\n\n会員リストです。\n\n{list}\n\n鈴木 花子\n携帯：080-2345-6789　Mail：h-suzuki@aoba.example.co.jp\n"
        );
        assert_eq!(analyze(&text, Y).records, 20);
        // Directly under the separator, without a header block; and as the tail of a message
        // (right above the next reply header).
        let text = format!("転送します。\n\n________________________________\n{list}\n");
        assert_eq!(analyze(&text, Y).records, 20);
        let text = format!(
            "会員リストです。\n\n{list}\n\n-----Original Message-----\nFrom: a <a@example.jp>\nSubject: x\n\n了解です。\n"
        );
        assert_eq!(analyze(&text, Y).records, 20);
        // A short list (≤ 12 lines) right under a rule used to pass as a signature.
        let short = ja_members(11).join("\n");
        let text = format!("メンバーです\n________________________________\n{short}\n");
        assert_eq!(analyze(&text, Y).records, 11);
        // Even when the lines are dense in business markers (TEL, 部, 課).
        let dense: String = ja_members(11)
            .iter()
            .map(|l| format!("営業部 {}\n", l.replace('　', " TEL: ")))
            .collect();
        assert_eq!(analyze(&dense, Y).records, 11, "{dense}");
    }

    #[test]
    fn record_blocks_below_a_separator_still_count() {
        let mut blocks = String::new();
        for (i, l) in ja_members(10).iter().enumerate() {
            let name: String = l.split('　').next().unwrap_or("").to_string();
            blocks.push_str(&format!(
                "【{}】\n氏名：{name}\n生年月日：1980年{}月{}日\n住所：東京都港区芝{}-1-1\n\n",
                i + 1,
                1 + i % 12,
                1 + i,
                i + 1
            ));
        }
        let text = format!(
            "ご確認ください。\n\n-----Original Message-----\nFrom: Sarah Johnson <sarah.johnson@acme.example.com>\nSent: Monday, February 10, 2025 9:12 AM\nTo: Robert Green <robert.green@northwind.example.com>\nSubject: 申込者\n\n{blocks}\n-----Original Message-----\nFrom: Robert Green <robert.green@northwind.example.com>\nSubject: 申込者\n\n送ってください。\n"
        );
        assert_eq!(analyze(&text, Y).records, 10);
        // Contact-only blocks (name, mobile, e-mail) at the tail of a message: the last one is
        // a list entry, not a signature.
        let mut contacts = String::new();
        for i in 0..10 {
            let (sei, mei) = (
                [
                    "山田", "鈴木", "佐藤", "田中", "伊藤", "渡辺", "山本", "中村", "小林", "加藤",
                ][i],
                [
                    "太郎", "花子", "健一", "美咲", "翔太", "陽子", "一郎", "恵子", "大輔", "直美",
                ][i],
            );
            contacts.push_str(&format!("氏名：{sei} {mei}\n携帯：090-77{i:02}-12{i:02}\nメール：member{i}@example.ne.jp\n\n"));
        }
        let text = format!(
            "連絡先です。\n\n{contacts}-----Original Message-----\nFrom: a <a@example.jp>\nSubject: x\n\nお願いします。\n"
        );
        assert_eq!(analyze(&text, Y).records, 10);
        let text = format!(
            "Contacts below.\n\n-----Original Message-----\nFrom: a <a@example.jp>\nSubject: x\n\n{contacts}"
        );
        assert_eq!(analyze(&text, Y).records, 10);
    }

    /// A digest of forwarded form mails: every entry is a header block and one person's
    /// contact data. A record alone in its message (no text above it) or a labelled name is
    /// not a signature.
    #[test]
    fn records_between_header_blocks_are_not_signatures() {
        let members = ja_members(12);
        let mut labelled = String::from("今週のお問い合わせです。\n");
        let mut bare = String::from("今週のお問い合わせです。\n");
        for (i, m) in members.iter().enumerate() {
            let mut f = m.split('　');
            let (name, phone) = (f.next().unwrap_or(""), f.next().unwrap_or(""));
            let head = format!(
                "\n-----Original Message-----\nFrom: form@example.co.jp\nSent: 2024/10/0{} 10:00\nSubject: お問い合わせ\n\n",
                1 + i % 9
            );
            labelled.push_str(&format!("{head}以下の内容でお問い合わせがありました。\n\nお名前：{name}\n電話番号：{phone}\nメール：user{i}@example.ne.jp\n"));
            bare.push_str(&format!("{head}{name}\n{phone} / user{i}@example.ne.jp\n"));
        }
        assert_eq!(analyze(&labelled, Y).records, 12, "{labelled}");
        assert_eq!(analyze(&bare, Y).records, 12, "{bare}");
        // One line per entry between header lines.
        let alternating: String = members
            .iter()
            .enumerate()
            .map(|(i, m)| format!("From: x\n{} user{i}@example.ne.jp\n", m.replace('　', " ")))
            .collect();
        assert_eq!(analyze(&alternating, Y).records, 12);
    }

    #[test]
    fn english_list_in_a_thread_still_counts() {
        let first = [
            "James", "Mary", "John", "Linda", "Robert", "Susan", "Michael", "Karen", "David",
            "Emma", "Paul", "Grace",
        ];
        let last = [
            "Smith", "Brown", "Jones", "Davis", "Wilson", "Moore", "Taylor", "Clark", "Lewis",
            "Hall", "King", "Young",
        ];
        let list: String = (0..12)
            .map(|i| {
                format!(
                    "{} {} (born 198{}-0{}-1{}) {}.{}@example.com / 090-88{i:02}-34{i:02}\n",
                    first[i],
                    last[i],
                    i % 10,
                    1 + i % 9,
                    i % 10,
                    first[i].to_lowercase(),
                    last[i].to_lowercase()
                )
            })
            .collect();
        let text = format!(
            "Hi,\n\nFYI, see below.\n\nBest,\nSarah Johnson\nMobile: 090-3141-5926 | sarah.johnson@acme.example.com\n\nOn Mon, Jan 6, 2025 at 10:00 AM Robert Green <robert.green@northwind.example.com> wrote:\n\nHere are the volunteers:\n\n{list}\nRobert Green\nMobile: 080-2718-2818 | robert.green@northwind.example.com\n"
        );
        assert_eq!(analyze(&text, Y).records, 12);
        // Comma-separated, the list is handed over as a table, signatures or not.
        let csv = list
            .replace(" (born ", ", born ")
            .replace(") ", ", ")
            .replace(" / ", ", ");
        let a = analyze(&text.replace(&list, &csv), Y);
        assert_eq!(a.tables.len(), 1, "{a:?}");
        assert_eq!(a.tables[0].len(), 12);
    }

    #[test]
    fn one_signature_is_one_person() {
        let sig = [
            "山田 太郎 / Taro Yamada",
            "携帯：090-1234-5678　Mail：t-yamada@example.co.jp / taro@example.ne.jp",
        ];
        assert!(People::of(&sig, Y).signature_like());
        let two = ["山田 太郎 090-1234-5678", "鈴木 花子 080-1234-5678"];
        assert!(!People::of(&two, Y).one_person());
        let dob = ["山田 太郎", "生年月日：1980年1月2日"];
        assert!(!People::of(&dob, Y).signature_like());
    }

    #[test]
    fn my_number_label_must_belong_to_the_number() {
        // Valid check digits (entities::my_number_ok): 123456789018, 111122223333.
        assert!(entities::my_number_ok("123456789018"));
        assert!(entities::my_number_ok("111122223333"));
        let held = [
            "マイナンバー: 1234 5678 9018",
            "マイナンバー：１２３４－５６７８－９０１８",
            "個人番号 123456789018",
            "個人番号（本人）：123456789018",
            "マイナンバー（個人番号）: 1234-5678-9018",
            "マイナンバーカード番号: 123456789018",
            "私のマイナンバーは 1234 5678 9018 です。",
            "My Number: 1234 5678 9018",
            "My Number：123456789018",
            "My Number (Individual Number): 1234-5678-9018",
            "Individual Number 123456789018",
            "■個人番号\n1234 5678 9018",
            "My Number:\n1234-5678-9018",
            "氏名\t生年月日\t個人番号\n山田 太郎\t1980/01/02\t123456789018\n",
            "氏名        個人番号\n山田 太郎   1234 5678 9018\n",
            "氏名 社員番号 個人番号 電話番号\n山田 太郎  5521  123456789018  03-1234-5678\n",
            "Name | Employee No. | My Number\nTaro Yamada | 5521 | 1234 5678 9018\n",
        ];
        for t in held {
            assert_eq!(analyze(t, Y).my_numbers, 1, "{t}");
        }
        let passed = [
            // The audit's case: マイナンバー in the text, a ticket number that passes the check.
            "マイナンバーカードをご持参ください。チケット番号：123456789018",
            "マイナンバーカードでの本人確認のため、チケット番号 1234 5678 9018 を受付でお伝えください。",
            "マイナンバー チケット番号 123456789018",
            "マイナンバーについて\n注文番号: 123456789018",
            "個人番号の提出は不要です。伝票番号 123456789018、会員番号 111122223333",
            "マイナンバー(チケット番号): 123456789018",
            "口座番号 111122223333（マイナンバーとは別です）",
            "My Number card required. Order no. 123456789018, ticket no. 111122223333",
            "Please bring your My Number card.\nTicket number: 1234 5678 9018",
            // A table whose My Number column is elsewhere.
            "氏名\t会員番号\t個人番号\n山田 太郎\t123456789018\t\n",
            "氏名        会員番号        個人番号\n山田 太郎   123456789018    (未提出)\n",
            // A sentence is not a header.
            "マイナンバーの提出をお願いします 氏名\n123456789018\n",
            // No label at all.
            "お問い合わせ 123456789018",
        ];
        for t in passed {
            assert_eq!(analyze(t, Y).my_numbers, 0, "{t}");
        }
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
