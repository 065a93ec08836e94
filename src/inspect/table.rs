//! Tables: find the header, type the columns, count the people (DETECTION.md §4.3).
//!
//! This is the heart of incidents 3 and 4: a spreadsheet of members with no e-mail, phone or
//! address column is still personal data when its columns say name, birth date, gender,
//! prefecture and member number. A **record** is a row with a person identifier (name,
//! reading, personal e-mail, mobile phone, My Number, or a member id next to a name column)
//! and at least one further personal attribute. Records are counted distinct.
//!
//! Column types come from two sources: the header word (lexicon) and the shape of a sample of
//! values (≤ 200 cells). Every row is then counted, but only the typed columns are read, so
//! a 37,099-row sheet costs one pass over a few columns.

use std::collections::{BTreeSet, HashSet};

use super::entities::{self, NameShape, PhoneKind};
use super::lexicon::{Class, classify_header};
use super::normalize::normalize;

/// Rows scanned for a header (titles and blank rows above the header are normal).
const HEADER_SCAN_ROWS: usize = 20;
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

/// The header row: the first rows' best match of the lexicon (≥ 2 classes).
fn find_header(rows: &[Vec<String>]) -> Option<(usize, Vec<Option<Class>>)> {
    let mut best: Option<(usize, usize, Vec<Option<Class>>)> = None;
    for (i, row) in rows
        .iter()
        .enumerate()
        .filter(|(_, r)| !row_is_empty(r))
        .take(HEADER_SCAN_ROWS)
    {
        let classes: Vec<Option<Class>> = row
            .iter()
            .take(MAX_COLUMNS)
            .map(|c| classify_header(c))
            .collect();
        let distinct: BTreeSet<Class> = classes.iter().flatten().copied().collect();
        if distinct.len() >= 2 && best.as_ref().is_none_or(|(_, n, _)| distinct.len() > *n) {
            best = Some((i, distinct.len(), classes));
        }
    }
    best.map(|(i, _, c)| (i, c))
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

/// Samples a column and returns its dominant shape, the number of distinct values sampled,
/// the non-empty cells sampled, and the distinct birth years seen.
fn profile(
    rows: &[Vec<String>],
    data: &[usize],
    c: usize,
    this_year: i32,
) -> (Option<Shape>, usize, usize, usize) {
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
    // Names count loose-shaped values too when most are dictionary names.
    let names = counts.get(&Shape::Name).copied().unwrap_or(0);
    let loose = counts.get(&Shape::NameLoose).copied().unwrap_or(0);
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
    (best, distinct.len(), seen, years.len())
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
    let mut mobile_cols = HashSet::new();
    for c in 0..width {
        let h = header
            .as_ref()
            .and_then(|(_, hs)| hs.get(c).copied().flatten());
        let (s, distinct, seen, years) = profile(rows, &data, c, ctx.this_year);
        let mut class = column_class(h, s, years);
        // A name column that repeats a handful of names is the staff in charge, not the people
        // the table is about (sales sheets: 担当者 over 500 rows).
        if class == Some(Class::Name) && seen > 10 && distinct <= 5 {
            class = Some(Class::Staff);
        }
        if s == Some(Shape::Mobile) {
            mobile_cols.insert(c);
        }
        classes.push(class);
    }
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

fn identifier_present(v: &str, class: Option<Class>) -> bool {
    match class {
        _ if v.is_empty() => false,
        Some(Class::Email) => v.contains('@'),
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
}
