//! Tables: find the header, type the columns, count the people (DETECTION.md §4.3).
//!
//! This is the heart of incidents 3 and 4: a spreadsheet of members with no e-mail, phone or
//! address column is still personal data when its columns say name, birth date, gender,
//! prefecture and member number. A **record** is a row with a person identifier (name,
//! reading, personal e-mail, mobile phone, My Number, or a member id next to a name column)
//! and at least one further personal attribute. Records are counted distinct.
//!
//! Column types come from two sources: the header word (lexicon) and the shape of a sample of
//! values (≤ 200 cells); when they disagree the values decide (a `顧客名` column of
//! `株式会社…` is an organisation column, not a name column). Every row is then counted, but
//! only the typed columns are read, so a 37,099-row sheet costs one pass over a few columns.

use std::collections::{BTreeSet, HashSet};

use super::entities::{self, NameShape, PhoneKind};
use super::lexicon::{Class, classify_header};
use super::normalize::{header_key, normalize};

/// Non-empty rows scanned for a header. Titles, notes and instructions above the header are
/// normal in Japanese workbooks and can run to a few dozen lines, so the window is wide; its
/// cost does not grow with the sheet (at most this many rows, and [`HEADER_SCAN_CELLS`]).
const HEADER_SCAN_ROWS: usize = 100;
/// Non-empty cells classified while looking for the header (bounds very wide sheets).
const HEADER_SCAN_CELLS: usize = 20_000;
/// Cells sampled per column to type it by value.
const SAMPLE: usize = 200;
/// Share of sampled cells that must have a shape for the column to take it.
const SHARE: f64 = 0.6;
/// Columns considered.
const MAX_COLUMNS: usize = 512;

/// Facts the analysis needs from outside.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub this_year: i32,
}

/// What one table contains.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TableAnalysis {
    /// Index of the header row, if one was found.
    pub header_row: Option<usize>,
    /// The personal columns found (identifier and attributes), in column order.
    pub columns: Vec<Class>,
    /// Distinct personal records.
    pub records: usize,
    /// First and last row (1-based, within the table) holding a record.
    pub rows: Option<(usize, usize)>,
    /// Valid My Numbers in columns of a people table.
    pub my_numbers: usize,
    /// Rows with both a login id and a password.
    pub credential_pairs: usize,
    /// Personal e-mail addresses in e-mail columns (lower case, distinct).
    pub emails: Vec<String>,
}

fn cell(rows: &[Vec<String>], r: usize, c: usize) -> &str {
    rows.get(r)
        .and_then(|row| row.get(c))
        .map(|s| s.trim())
        .unwrap_or("")
}

fn row_is_empty(row: &[String]) -> bool {
    row.iter().all(|c| c.trim().is_empty())
}

/// The header row: among the first [`HEADER_SCAN_ROWS`] non-empty rows, the one matching the
/// most lexicon classes (≥ 2; the earliest on a tie), preferring a row that has rows under it
/// (a legend or footer row after the table is not its header). A preamble line that happens
/// to hold two header words (`担当 | 山田 | TEL | 03-…`) loses to the real header below it.
fn find_header(rows: &[Vec<String>]) -> Option<(usize, Vec<Option<Class>>)> {
    // (row, distinct classes, classes), for rows with data under them and for any row.
    type Candidate = (usize, usize, Vec<Option<Class>>);
    let mut with_data: Option<Candidate> = None;
    let mut any: Option<Candidate> = None;
    let mut cells = 0usize;
    let mut scanned = rows
        .iter()
        .enumerate()
        .filter(|(_, r)| !row_is_empty(r))
        .take(HEADER_SCAN_ROWS)
        .peekable();
    while let Some((i, row)) = scanned.next() {
        if cells >= HEADER_SCAN_CELLS {
            break;
        }
        let row = &row[..row.len().min(MAX_COLUMNS)];
        cells += row.iter().filter(|c| !c.trim().is_empty()).count();
        let classes: Vec<Option<Class>> = row.iter().map(|c| classify_header(c)).collect();
        let distinct = classes
            .iter()
            .flatten()
            .copied()
            .collect::<BTreeSet<Class>>()
            .len();
        if distinct < 2 {
            continue;
        }
        // Rows under it: another scanned row follows, or (past the window) any non-empty row.
        let has_data = scanned.peek().is_some()
            || rows
                .get(i + 1..)
                .is_some_and(|rest| rest.iter().any(|r| !row_is_empty(r)));
        let better = |best: &Option<Candidate>| best.as_ref().is_none_or(|(_, n, _)| distinct > *n);
        if has_data && better(&with_data) {
            with_data = Some((i, distinct, classes.clone()));
        }
        if better(&any) {
            any = Some((i, distinct, classes));
        }
    }
    with_data.or(any).map(|(i, _, c)| (i, c))
}

/// What a value's shape says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Shape {
    Email,
    Mobile,
    Phone,
    Postal,
    MyNumber,
    BirthDate,
    Date,
    Gender,
    Prefecture,
    Address,
    Kana,
    /// `株式会社…`, `…(株)`, `Acme Co., Ltd.`, `東都大学`: an organisation, not a person.
    Organisation,
    Name,
    NameLoose,
    Code,
    Card,
}

fn shape(v: &str, this_year: i32) -> Option<Shape> {
    if v.contains('@') {
        return entities::cell_email(v).map(|_| Shape::Email);
    }
    if let Some(k) = entities::cell_phone(v) {
        return Some(if k == PhoneKind::Mobile {
            Shape::Mobile
        } else {
            Shape::Phone
        });
    }
    if entities::cell_postal(v) {
        return Some(Shape::Postal);
    }
    if entities::cell_my_number(v) {
        return Some(Shape::MyNumber);
    }
    let digits: String = v.chars().filter(|c| c.is_ascii_digit()).collect();
    if (13..=19).contains(&digits.len())
        && v.chars()
            .all(|c| c.is_ascii_digit() || c == ' ' || c == '-')
        && entities::card_ok(&digits)
    {
        return Some(Shape::Card);
    }
    if let Some(d) = entities::cell_date(v) {
        return Some(if entities::plausible_birth(d, this_year) {
            Shape::BirthDate
        } else {
            Shape::Date
        });
    }
    if entities::is_gender(v) {
        return Some(Shape::Gender);
    }
    if super::names::is_prefecture(v) {
        return Some(Shape::Prefecture);
    }
    if entities::is_address(v) {
        return Some(Shape::Address);
    }
    // Before names: `佐藤歯科医院` and `田中商店` start with a dictionary surname.
    if entities::is_organisation_name(v) {
        return Some(Shape::Organisation);
    }
    if entities::is_kana_full_name(v) {
        return Some(Shape::Kana);
    }
    match entities::name_shape(v) {
        NameShape::Dictionary => return Some(Shape::Name),
        NameShape::Shape => return Some(Shape::NameLoose),
        NameShape::No => {}
    }
    entities::is_code(v).then_some(Shape::Code)
}

/// What a sample of a column's values says.
#[derive(Debug, Clone, Copy, Default)]
struct Profile {
    /// The dominant shape (≥ [`SHARE`] of the non-empty cells sampled).
    shape: Option<Shape>,
    /// Distinct values sampled.
    distinct: usize,
    /// Non-empty cells sampled.
    seen: usize,
    /// Distinct birth years seen.
    birth_years: usize,
    /// Cells shaped like an organisation's name.
    organisations: usize,
    /// Cells shaped like a person's name or its reading (dictionary, loose or kana).
    people: usize,
}

impl Profile {
    /// The values of a name-headed column are organisations, not people: most of them are
    /// organisation names, or a fair share are and hardly any looks like a person's name
    /// (`顧客名` over `株式会社…`, `…(株)`, `Acme Inc.`, `東都大学`, `佐藤歯科医院`).
    fn names_organisations(&self) -> bool {
        let (org, people, seen) = (self.organisations, self.people, self.seen);
        org >= 2 && (2 * org > seen || (5 * org >= seen && 5 * people < seen))
    }
}

/// Samples a column (≤ [`SAMPLE`] cells spread over the data rows).
fn profile(rows: &[Vec<String>], data: &[usize], c: usize, this_year: i32) -> Profile {
    let step = (data.len() / SAMPLE).max(1);
    let mut counts: std::collections::HashMap<Shape, usize> = Default::default();
    let mut distinct = HashSet::new();
    let mut years = HashSet::new();
    let mut seen = 0;
    for &r in data.iter().step_by(step).take(SAMPLE) {
        let v = cell(rows, r, c);
        if v.is_empty() {
            continue;
        }
        seen += 1;
        let v = normalize(v);
        distinct.insert(v.to_string());
        if let Some(s) = shape(&v, this_year) {
            *counts.entry(s).or_default() += 1;
            if s == Shape::BirthDate
                && let Some(d) = entities::cell_date(&v)
            {
                years.insert(d.y);
            }
        }
    }
    let count = |s: Shape| counts.get(&s).copied().unwrap_or(0);
    // Names count loose-shaped values too when most are dictionary names.
    let names = count(Shape::Name);
    let loose = count(Shape::NameLoose);
    let best = counts
        .iter()
        .filter(|(s, _)| **s != Shape::NameLoose)
        .map(|(s, n)| (*s, if *s == Shape::Name { n + loose } else { *n }))
        .max_by_key(|(_, n)| *n)
        .filter(|(_, n)| seen > 0 && *n as f64 >= SHARE * seen as f64)
        .map(|(s, _)| s);
    let best = match best {
        Some(Shape::Name) if (names as f64) < 0.3 * seen as f64 => None,
        other => other,
    };
    Profile {
        shape: best,
        distinct: distinct.len(),
        seen,
        birth_years: years.len(),
        organisations: count(Shape::Organisation),
        people: names + loose + count(Shape::Kana),
    }
}

/// Combines the header word and the value shape into the column's class.
fn column_class(header: Option<Class>, shape: Option<Shape>, birth_years: usize) -> Option<Class> {
    match (header, shape) {
        // Suppressors and non-people columns: the header decides.
        (
            Some(h @ (Class::Organisation | Class::OrderNo | Class::CorporateNo | Class::Staff)),
            _,
        ) => Some(h),
        // Values are decisive for shapes that cannot be mistaken.
        (_, Some(Shape::MyNumber)) => Some(Class::MyNumber),
        (_, Some(Shape::Email)) => Some(Class::Email),
        (Some(Class::Dob), Some(Shape::Date)) => None,
        (Some(h), _) => Some(h),
        (None, Some(s)) => match s {
            Shape::Mobile | Shape::Phone => Some(Class::Phone),
            Shape::Postal => Some(Class::Postal),
            Shape::BirthDate if birth_years >= 5 => Some(Class::Dob),
            Shape::Gender => Some(Class::Gender),
            Shape::Prefecture => Some(Class::Prefecture),
            Shape::Address => Some(Class::Address),
            Shape::Kana => Some(Class::Kana),
            Shape::Name => Some(Class::Name),
            Shape::Organisation => Some(Class::Organisation),
            Shape::Card => Some(Class::Finance),
            _ => None,
        },
        (None, None) => None,
    }
}

/// Analyses one table.
pub fn analyze(rows: &[Vec<String>], ctx: &Ctx) -> TableAnalysis {
    let mut out = TableAnalysis::default();
    let header = find_header(rows);
    let first_data = header.as_ref().map(|(i, _)| i + 1).unwrap_or(0);
    let data: Vec<usize> = (first_data..rows.len())
        .filter(|&r| !row_is_empty(&rows[r]))
        .collect();
    out.header_row = header.as_ref().map(|(i, _)| *i);
    if data.is_empty() {
        return out;
    }
    let width = rows
        .iter()
        .map(Vec::len)
        .max()
        .unwrap_or(0)
        .min(MAX_COLUMNS);
    let mut classes: Vec<Option<Class>> = Vec::with_capacity(width);
    let mut profiles: Vec<Profile> = Vec::with_capacity(width);
    let mut mobile_cols = HashSet::new();
    for c in 0..width {
        let h = header
            .as_ref()
            .and_then(|(_, hs)| hs.get(c).copied().flatten());
        let p = profile(rows, &data, c, ctx.this_year);
        let mut class = column_class(h, p.shape, p.birth_years);
        // The header says name, the values say organisation: a customer list of companies
        // (顧客名 / Name / Customer over 株式会社…, …(株), Acme Inc., 東都大学). Values
        // resolve the disagreement (§4.3.3); organisations are not personal.
        if matches!(class, Some(Class::Name | Class::Kana)) && p.names_organisations() {
            class = Some(Class::Organisation);
        }
        // A name column that repeats a handful of names is the staff in charge, not the people
        // the table is about (sales sheets: 担当者 over 500 rows).
        if class == Some(Class::Name) && p.seen > 10 && p.distinct <= 5 {
            class = Some(Class::Staff);
        }
        if p.shape == Some(Shape::Mobile) {
            mobile_cols.insert(c);
        }
        classes.push(class);
        profiles.push(p);
    }
    organisation_rows(rows, header.as_ref(), &profiles, &mut classes);
    let has = |k: Class| classes.contains(&Some(k));
    let named = has(Class::Name) || has(Class::Kana);
    // Identifier columns, strongest first.
    let identifiers: Vec<usize> = (0..width)
        .filter(|&c| match classes[c] {
            Some(Class::Name | Class::Kana | Class::Email | Class::MyNumber | Class::GovId) => true,
            Some(Class::Phone) => mobile_cols.contains(&c),
            Some(Class::MemberId | Class::LoginId) => named,
            _ => false,
        })
        .collect();
    let attributes: Vec<usize> = (0..width)
        .filter(|&c| classes[c].is_some_and(Class::is_personal_attribute))
        .collect();
    out.columns = (0..width)
        .filter(|c| identifiers.contains(c) || attributes.contains(c))
        .filter_map(|c| classes[c])
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();

    let mut keys: HashSet<String> = HashSet::new();
    let mut emails: BTreeSet<String> = BTreeSet::new();
    let email_cols: Vec<usize> = (0..width)
        .filter(|&c| classes[c] == Some(Class::Email))
        .collect();
    let my_cols: Vec<usize> = (0..width)
        .filter(|&c| classes[c] == Some(Class::MyNumber))
        .collect();
    let login = (0..width).find(|&c| classes[c] == Some(Class::LoginId));
    let password = (0..width).find(|&c| classes[c] == Some(Class::Password));
    for &r in &data {
        if let Some(id_col) = identifiers
            .iter()
            .copied()
            .find(|&c| identifier_present(cell(rows, r, c), classes[c]))
        {
            let attr = attributes
                .iter()
                .copied()
                .filter(|&c| c != id_col)
                .find(|&c| !cell(rows, r, c).is_empty());
            if let Some(a) = attr {
                let key = format!("{}\u{1f}{}", cell(rows, r, id_col), cell(rows, r, a));
                if keys.insert(key) {
                    let row = r + 1;
                    out.rows = Some(match out.rows {
                        None => (row, row),
                        Some((a, b)) => (a.min(row), b.max(row)),
                    });
                }
            }
        }
        for &c in &email_cols {
            if let Some(e) = entities::cell_email(&normalize(cell(rows, r, c)))
                && !entities::is_role_address(&e)
            {
                emails.insert(e);
            }
        }
        for &c in &my_cols {
            if entities::cell_my_number(&normalize(cell(rows, r, c))) {
                out.my_numbers += 1;
            }
        }
        if let (Some(l), Some(p)) = (login, password)
            && !cell(rows, r, l).is_empty()
            && !cell(rows, r, p).is_empty()
        {
            out.credential_pairs += 1;
        }
    }
    out.records = keys.len();
    out.emails = emails.into_iter().collect();
    out
}

/// Tables whose rows are organisations (a column of organisation names, no column of person
/// names): the one reading column reads the organisations' names, and a representative or
/// person-in-charge column makes a record only next to that person's private attributes.
///
/// DETECTION.md §3 marks `会社名`, `所在地` and `担当者` as ambiguous alone and §4.3.4 makes a
/// landline + address without a person a business contact, but it does not settle a supplier
/// list with `会社名, 代表者名, 所在地, 代表電話`. Our reading: a company's representative
/// is published business information (commercial register, company profile), so such a list
/// is business data, as is a customer list with `担当者` — unless its rows also carry that
/// person's private attributes (birth date, age, gender, a government id, a home address or
/// phone), which no company list needs: then the representative is the subject of the row
/// and the column counts as a person-name column. A birth date counts here only under a
/// birth-date header: dates typed as birth dates by their spread alone are, next to company
/// names, founding dates (設立年月日). A personal mobile column needs no such rule: it is an
/// identifier by itself (§4.3.4).
fn organisation_rows(
    rows: &[Vec<String>],
    header: Option<&(usize, Vec<Option<Class>>)>,
    profiles: &[Profile],
    classes: &mut [Option<Class>],
) {
    let has = |classes: &[Option<Class>], k: Class| classes.contains(&Some(k));
    if !has(classes, Class::Organisation) || has(classes, Class::Name) {
        return;
    }
    // `顧客名 | フリガナ` over companies: one reading column that is not mostly two-word
    // person readings (`ヤマダ タロウ`) reads the organisation. Two (セイ, メイ) are a person's.
    let kana: Vec<usize> = (0..classes.len())
        .filter(|&c| classes[c] == Some(Class::Kana))
        .collect();
    if let [c] = kana[..]
        && profiles
            .get(c)
            .is_some_and(|p| p.shape != Some(Shape::Kana))
    {
        classes[c] = Some(Class::Organisation);
    }
    if has(classes, Class::Kana) {
        return;
    }
    let header_class = |c: usize| header.and_then(|(_, hs)| hs.get(c).copied().flatten());
    let private_header = |c: usize| {
        header.is_some_and(|(h, _)| {
            let key = header_key(cell(rows, *h, c));
            [
                "自宅",
                "現住所",
                "個人",
                "私用",
                "home",
                "private",
                "personal",
            ]
            .iter()
            .any(|w| key.contains(w))
        })
    };
    let private = (0..classes.len()).any(|c| match classes[c] {
        Some(Class::Dob) => header_class(c) == Some(Class::Dob),
        Some(Class::Age | Class::Gender | Class::MyNumber | Class::GovId) => true,
        Some(k) => k.is_personal_attribute() && private_header(c),
        None => false,
    });
    if !private {
        return;
    }
    for (c, class) in classes.iter_mut().enumerate() {
        let handful = profiles
            .get(c)
            .is_some_and(|p| p.seen > 10 && p.distinct <= 5);
        if *class == Some(Class::Staff) && !handful {
            *class = Some(Class::Name);
        }
    }
}

fn identifier_present(v: &str, class: Option<Class>) -> bool {
    match class {
        _ if v.is_empty() => false,
        // A role address (info@, sales@) is an organisation's, not a person's (§4.2); other
        // cells with an `@` (`Name <addr>`, two addresses) count as before.
        Some(Class::Email) => match entities::cell_email(&normalize(v)) {
            Some(e) => !entities::is_role_address(&e),
            None => v.contains('@'),
        },
        Some(Class::Phone) => entities::cell_phone(&normalize(v)) == Some(PhoneKind::Mobile),
        Some(Class::MyNumber) => entities::cell_my_number(&normalize(v)),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(rows: &[&[&str]]) -> Vec<Vec<String>> {
        rows.iter()
            .map(|r| r.iter().map(|c| c.to_string()).collect())
            .collect()
    }

    fn ctx() -> Ctx {
        Ctx { this_year: 2026 }
    }

    const SURNAMES: [&str; 12] = [
        "佐藤", "鈴木", "高橋", "田中", "伊藤", "渡辺", "山本", "中村", "小林", "加藤", "吉田",
        "山田",
    ];
    const GIVEN: [&str; 6] = ["太郎", "花子", "健一", "美咲", "翔太", "陽子"];

    /// Incident 3's columns, with titles above the header and no contact details.
    #[test]
    fn incident_3_shape_is_personal_data() {
        let mut rows = t(&[
            &["会員一覧（3月末時点）"],
            &[],
            &[
                "",
                "",
                "名前",
                "生年月日",
                "性別",
                "都道府県",
                "会員番号",
                "年収",
                "勤務先",
            ],
        ]);
        for i in 0..60 {
            rows.push(
                [
                    "",
                    "",
                    &format!("{} {}", SURNAMES[i % 12], GIVEN[i % 6]),
                    &format!("19{}-0{}-1{}", 60 + i % 30, 1 + i % 9, i % 10),
                    if i % 2 == 0 { "男" } else { "女" },
                    "東京都",
                    &format!("M{:06}", i),
                    "500",
                    "株式会社サンプル",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            );
        }
        let a = analyze(&rows, &ctx());
        assert_eq!(a.header_row, Some(2));
        assert_eq!(a.records, 60);
        assert_eq!(a.rows, Some((4, 63)));
        for k in [
            Class::Name,
            Class::Dob,
            Class::Gender,
            Class::Prefecture,
            Class::MemberId,
            Class::Finance,
            Class::Profile,
        ] {
            assert!(a.columns.contains(&k), "{k:?} in {:?}", a.columns);
        }
    }

    /// Incident 4: member number, name, e-mail.
    #[test]
    fn incident_4_member_list() {
        let mut rows = t(&[&["会員番号", "氏名", "メールアドレス"]]);
        for i in 0..50 {
            rows.push(vec![
                format!("{:05}", i),
                format!("{}{}", SURNAMES[i % 12], GIVEN[i % 6]),
                format!("member{i}@mail.example.jp"),
            ]);
        }
        let a = analyze(&rows, &ctx());
        assert_eq!(a.records, 50);
        assert_eq!(a.emails.len(), 50);
    }

    #[test]
    fn negatives() {
        // Sales sheet: the 担当者 column repeats three names.
        let mut sales = t(&[&["担当者", "都道府県", "商品名", "売上"]]);
        for i in 0..200 {
            sales.push(vec![
                ["山田 太郎", "鈴木 花子", "佐藤 健一"][i % 3].into(),
                "東京都".into(),
                "商品A".into(),
                "1000".into(),
            ]);
        }
        assert_eq!(analyze(&sales, &ctx()).records, 0);
        // A name column without a header, repeating 3 names, is not a people table either.
        let mut repeat = t(&[&["name", "region", "amount"]]);
        for i in 0..50 {
            repeat.push(vec![
                ["Emily Clark", "John Smith", "Mary Jones"][i % 3].into(),
                "East".into(),
                "3".into(),
            ]);
        }
        assert_eq!(analyze(&repeat, &ctx()).records, 0);
        // Blank template: headers, no rows.
        assert_eq!(
            analyze(&t(&[&["氏名", "生年月日", "住所", "電話番号"]]), &ctx()).records,
            0
        );
        // Postal-code master: single katakana place readings are not name readings.
        let mut postal = t(&[&["郵便番号", "都道府県", "市区町村", "町域", "町域カナ"]]);
        for i in 0..40 {
            postal.push(vec![
                format!("{:07}", 1_000_000 + i * 7),
                "東京都".into(),
                "練馬区".into(),
                "豊玉北".into(),
                "トヨタマキタ".into(),
            ]);
        }
        assert_eq!(analyze(&postal, &ctx()).records, 0);
        // Store list: landline + address, no person.
        let mut stores = t(&[&["店舗名", "電話番号", "住所"]]);
        for i in 0..30 {
            stores.push(vec![
                format!("新宿{i}号店"),
                format!("03-1234-{:04}", i),
                format!("東京都新宿区西新宿{i}-1-1"),
            ]);
        }
        assert_eq!(analyze(&stores, &ctx()).records, 0);
        // Metrics: dates that are not birth dates.
        let mut metrics = t(&[&["date", "page views", "sessions"]]);
        for i in 0..365 {
            metrics.push(vec![
                format!("2025-{:02}-{:02}", 1 + i % 12, 1 + i % 28),
                "100".into(),
                "50".into(),
            ]);
        }
        assert_eq!(analyze(&metrics, &ctx()).records, 0);
        // Attendee list of three: three records (below any threshold).
        let a = analyze(
            &t(&[
                &["氏名", "メール"],
                &["山田 太郎", "taro@example.jp"],
                &["鈴木 花子", "hanako@example.jp"],
                &["佐藤 健一", "k@example.jp"],
            ]),
            &ctx(),
        );
        assert_eq!(a.records, 3);
    }

    #[test]
    fn headerless_people_table_is_typed_by_values() {
        let mut rows = Vec::new();
        for i in 0..20 {
            rows.push(vec![
                format!("{} {}", SURNAMES[i % 12], GIVEN[i % 6]),
                format!("090-{:04}-{:04}", i, i),
                format!("u{i}@example.jp"),
            ]);
        }
        let a = analyze(&rows, &ctx());
        assert_eq!(a.header_row, None);
        assert_eq!(a.records, 20);
    }

    #[test]
    fn my_numbers_and_credentials_in_columns() {
        let mut rows = t(&[&["氏名", "個人番号"]]);
        for n in ["123456789018", "1234 5678 9018", "123456789019"] {
            rows.push(vec!["山田 太郎".into(), n.into()]);
        }
        assert_eq!(analyze(&rows, &ctx()).my_numbers, 2);
        let rows = t(&[
            &["氏名", "ログインID", "初期パスワード"],
            &["山田 太郎", "yamada01", "Xk29!aa"],
            &["鈴木 花子", "suzuki02", "Qw88#bb"],
        ]);
        let a = analyze(&rows, &ctx());
        assert_eq!(a.credential_pairs, 2);
        assert_eq!(a.records, 2);
    }

    /// R1's hold threshold (DETECTION.md §4.6): ≥ 10 distinct records.
    const HOLD: usize = 10;

    fn owned(row: &[&str]) -> Vec<String> {
        row.iter().map(|c| c.to_string()).collect()
    }

    /// 20 Japanese organisations in the usual written forms.
    fn companies_ja() -> Vec<String> {
        let stems = ["ひかり", "東邦", "大和", "みなと", "青葉"];
        (0..20)
            .map(|i| {
                let s = stems[i % 5];
                match i % 10 {
                    0 => format!("株式会社{s}デンキ"),
                    1 => format!("{s}精工株式会社"),
                    2 => format!("{s}物流（株）"),
                    3 => format!("有限会社{s}"),
                    4 => format!("合同会社{s}ラボ"),
                    5 => format!("㈱{s}フーズ"),
                    6 => format!("一般社団法人{s}協会"),
                    7 => format!("{s}総合病院"),
                    8 => format!("{s}会計事務所"),
                    _ => format!("学校法人{s}学園"),
                }
            })
            .collect()
    }

    /// 20 English organisation names.
    fn companies_en() -> Vec<String> {
        let stems = ["Acme", "Globex", "Initech", "Umbrella", "Northwind"];
        let forms = [
            "Co., Ltd.",
            "Inc.",
            "K.K.",
            "Corporation",
            "LLC",
            "GmbH",
            "Holdings",
            "Trading Co.",
        ];
        (0..20)
            .map(|i| format!("{} {}", stems[i % 5], forms[i % 8]))
            .collect()
    }

    /// `顧客名` (or `Customer`) over the given names, with the organisation's landline, address
    /// and a role address: what a customer list of companies carries.
    fn customer_list(header: [&str; 4], names: &[String]) -> Vec<Vec<String>> {
        let mut rows = vec![owned(&header)];
        for (i, n) in names.iter().enumerate() {
            rows.push(vec![
                n.clone(),
                format!("03-5321-{:04}", 1000 + i),
                format!("東京都新宿区西新宿{}-{}-1", 1 + i % 8, 1 + i),
                format!("info@client{i}.example.co.jp"),
            ]);
        }
        rows
    }

    fn people_ja(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("{} {}", SURNAMES[i % 12], GIVEN[(i / 12 + i) % 6]))
            .collect()
    }

    const FIRST: [&str; 10] = [
        "Emily", "James", "Sarah", "David", "Laura", "Kevin", "Grace", "Brian", "Megan", "Paul",
    ];
    const LAST: [&str; 4] = ["Clark", "Smith", "Jones", "Brown"];

    fn people_en(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("{} {}", FIRST[i % 10], LAST[(i / 10 + i) % 4]))
            .collect()
    }

    /// Audit A: a name-headed column of organisation names is not a people column.
    #[test]
    fn customer_list_of_companies_is_business_data() {
        for header in [
            ["顧客名", "電話番号", "住所", "メールアドレス"],
            ["取引先名", "電話番号", "住所", "メールアドレス"],
        ] {
            let a = analyze(&customer_list(header, &companies_ja()), &ctx());
            assert_eq!(a.records, 0, "{header:?}: {a:?}");
            assert!(!a.columns.contains(&Class::Name), "{:?}", a.columns);
        }
        for header in [
            ["Customer", "Phone", "Address", "Email"],
            ["Name", "Phone", "Address", "Email"],
        ] {
            let a = analyze(&customer_list(header, &companies_en()), &ctx());
            assert_eq!(a.records, 0, "{header:?}: {a:?}");
        }
        // A reading column next to company names reads the companies.
        let mut rows = t(&[&["顧客名", "フリガナ", "電話番号", "住所"]]);
        for (i, n) in companies_ja().into_iter().enumerate() {
            rows.push(vec![
                n,
                format!("サンプルショウジ{}", ["", "ヒガシ", "ニシ", "キタ"][i % 4]),
                format!("03-5321-{:04}", 2000 + i),
                format!("大阪府大阪市北区梅田{}-1-1", 1 + i),
            ]);
        }
        assert_eq!(analyze(&rows, &ctx()).records, 0);
    }

    /// The same lists with people in the name column are held.
    #[test]
    fn customer_list_of_people_is_held() {
        let a = analyze(
            &customer_list(
                ["顧客名", "電話番号", "住所", "メールアドレス"],
                &people_ja(20),
            ),
            &ctx(),
        );
        assert_eq!(a.records, 20);
        assert!(a.records >= HOLD && a.columns.contains(&Class::Name));
        let a = analyze(
            &customer_list(["Customer", "Phone", "Address", "Email"], &people_en(20)),
            &ctx(),
        );
        assert_eq!(a.records, 20);
        // One person with an affiliation in brackets is still a person.
        let mut names = people_ja(20);
        for (i, n) in names.iter_mut().enumerate().filter(|(i, _)| i % 2 == 0) {
            *n = format!("{n}（株式会社サンプル{i}）");
        }
        let a = analyze(
            &customer_list(["氏名", "電話番号", "住所", "メール"], &names),
            &ctx(),
        );
        assert_eq!(a.records, 20);
    }

    /// A supplier list whose only person column is the representative is business data; the
    /// representative's private attributes (birth date, gender) make it personal data.
    #[test]
    fn supplier_list_with_representatives() {
        let reps = people_ja(20);
        let list = |extra: &[&str]| {
            let mut header = vec!["会社名", "代表者名", "所在地", "代表電話"];
            header.extend_from_slice(extra);
            let mut rows = vec![owned(&header)];
            for (i, (co, rep)) in companies_ja().into_iter().zip(&reps).enumerate() {
                let mut row = vec![
                    co,
                    rep.clone(),
                    format!("愛知県名古屋市中区栄{}-{}-2", 1 + i % 5, 1 + i),
                    format!("052-201-{:04}", 3000 + i),
                ];
                for e in extra {
                    row.push(match *e {
                        "生年月日" => format!("19{}-0{}-1{}", 50 + i, 1 + i % 9, i % 10),
                        "性別" => ["男", "女"][i % 2].to_string(),
                        "設立年月日" => format!("19{}-{:02}-01", 50 + i, 1 + i % 12),
                        _ => format!("{}", 1950 + i),
                    });
                }
                rows.push(row);
            }
            rows
        };
        let a = analyze(&list(&[]), &ctx());
        assert_eq!(a.records, 0, "{a:?}");
        // Founding dates spread like birth dates, but no header says birth date.
        let a = analyze(&list(&["設立年", "設立年月日"]), &ctx());
        assert_eq!(a.records, 0, "{a:?}");
        let a = analyze(&list(&["生年月日", "性別"]), &ctx());
        assert_eq!(a.records, 20, "{a:?}");
        // English: a contact person next to companies, landline and address.
        let mut rows = t(&[&["Company", "Contact Person", "Phone", "Address"]]);
        for (i, (co, p)) in companies_en().into_iter().zip(people_en(20)).enumerate() {
            rows.push(vec![
                co,
                p,
                format!("03-6400-{:04}", i),
                format!("東京都港区芝{}-1-1", 1 + i),
            ]);
        }
        assert_eq!(analyze(&rows, &ctx()).records, 0);
    }

    /// A preamble of 22 lines (title, notes, instructions, blank lines, a contact line that
    /// holds two header words) above the header.
    fn preamble(lines: &[&str], contact: &[&str]) -> Vec<Vec<String>> {
        let mut rows = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            rows.push(owned(&[l]));
            if i % 5 == 4 {
                rows.push(Vec::new());
            }
        }
        rows.push(owned(contact));
        rows
    }

    /// Audit B: a 30-row member table under a 22-line preamble. The preamble sits in the name
    /// column, so without the header the names are too few of that column's cells (30 of 53)
    /// to type it by value, and no column (e-mail, mobile) identifies a person by itself.
    #[test]
    fn member_table_below_a_long_preamble_is_held() {
        let notes: Vec<String> = (1..=20)
            .map(|i| format!("{i}. 記入上の注意：会員情報の取扱いは社内規程第{i}条に従うこと"))
            .collect();
        let mut lines: Vec<&str> = vec!["会員名簿（2025年3月末時点）"];
        lines.extend(notes.iter().map(String::as_str));
        let mut rows = preamble(&lines, &["担当", "総務部", "TEL", "03-1234-5678"]);
        assert_eq!(rows.iter().filter(|r| !row_is_empty(r)).count(), 22);
        let header_at = rows.len();
        rows.push(owned(&["氏名", "会員番号", "生年月日", "性別", "都道府県"]));
        for (i, n) in people_ja(30).into_iter().enumerate() {
            rows.push(vec![
                n,
                format!("M{:05}", i),
                format!("19{}-{:02}-{:02}", 60 + i, 1 + i % 12, 1 + i % 28),
                ["男", "女"][i % 2].into(),
                ["東京都", "大阪府", "北海道"][i % 3].into(),
            ]);
        }
        let a = analyze(&rows, &ctx());
        assert_eq!(a.header_row, Some(header_at));
        assert_eq!(a.records, 30);
        assert!(a.records >= HOLD);

        let lines_en: Vec<String> = std::iter::once("Member register (as of March 2025)".into())
            .chain((1..=20).map(|i| format!("Note {i}: handle member data under policy {i}.")))
            .collect();
        let lines_en: Vec<&str> = lines_en.iter().map(String::as_str).collect();
        let mut rows = preamble(&lines_en, &["Owner", "HR", "Tel", "03-1234-5678"]);
        assert_eq!(rows.iter().filter(|r| !row_is_empty(r)).count(), 22);
        let header_at = rows.len();
        rows.push(owned(&[
            "Name",
            "Member ID",
            "Date of Birth",
            "Gender",
            "Prefecture",
        ]));
        for (i, n) in people_en(30).into_iter().enumerate() {
            rows.push(vec![
                n,
                format!("M{:05}", i),
                format!("19{}-{:02}-{:02}", 60 + i, 1 + i % 12, 1 + i % 28),
                ["male", "female"][i % 2].into(),
                ["Tokyo", "Osaka", "Hokkaido"][i % 3].into(),
            ]);
        }
        let a = analyze(&rows, &ctx());
        assert_eq!(a.header_row, Some(header_at));
        assert_eq!(a.records, 30);
    }

    /// The shipped corner case: name, birth date, gender, prefecture and member number
    /// columns and nothing else (incident 3 without contact details) stays held.
    #[test]
    fn name_dob_gender_prefecture_member_no_only_is_held() {
        let mut rows = t(&[&["氏名", "生年月日", "性別", "都道府県", "会員番号"]]);
        let mut en = t(&[&["Name", "Date of Birth", "Gender", "Prefecture", "Member ID"]]);
        for (i, (ja, e)) in people_ja(40).into_iter().zip(people_en(40)).enumerate() {
            let dob = format!("19{}-{:02}-{:02}", 55 + i, 1 + i % 12, 1 + i % 28);
            let pref = ["東京都", "大阪府", "北海道", "福岡県"][i % 4].to_string();
            let no = format!("{:07}", 100 + i);
            rows.push(vec![
                ja,
                dob.clone(),
                ["男", "女"][i % 2].into(),
                pref.clone(),
                no.clone(),
            ]);
            en.push(vec![e, dob, ["male", "female"][i % 2].into(), pref, no]);
        }
        for t in [rows, en] {
            let a = analyze(&t, &ctx());
            assert!(a.records >= HOLD, "{a:?}");
            assert_eq!(a.records, 40);
        }
    }

    /// A header past the window is not looked for: the scan stays bounded on huge sheets.
    #[test]
    fn header_scan_is_bounded() {
        let mut rows: Vec<Vec<String>> = (0..HEADER_SCAN_ROWS)
            .map(|i| vec![format!("{i}"), "x".into()])
            .collect();
        rows.push(owned(&["氏名", "生年月日"]));
        rows.push(owned(&["山田 太郎", "1980-01-01"]));
        assert_eq!(analyze(&rows, &ctx()).header_row, None);
        rows.remove(0);
        assert_eq!(
            analyze(&rows, &ctx()).header_row,
            Some(HEADER_SCAN_ROWS - 1)
        );
    }
}
