//! Column-header lexicon (DETECTION.md §3): header words → what a column holds.
//!
//! Headers are compared after [`header_key`](super::normalize::header_key) (NFKC, lower case,
//! no spaces or decorations). Order matters: more specific words come first (`氏名カナ` is a
//! reading, `メールアドレス` an e-mail, `会社名` not a person's name).

use super::normalize::header_key;

/// What a column (or a `label: value` line) holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    Name,
    Kana,
    Dob,
    Age,
    Gender,
    Address,
    Prefecture,
    Postal,
    Phone,
    Email,
    MemberId,
    MyNumber,
    GovId,
    Finance,
    LoginId,
    Password,
    Profile,
    /// `担当者`, `営業担当`: a staff member in charge — an attribute of the row, not its subject.
    /// Also `代表者`, `代表取締役`: the person acting for the organisation a row is about
    /// (published business information; see `table.rs` for when it still makes a record).
    Staff,
    /// `会社名`, `取引先`, `店舗名`: organisations, not people.
    Organisation,
    /// `注文番号`, `伝票番号`, `問合せ番号`: business identifiers (suppressor).
    OrderNo,
    /// `法人番号`, `登録番号`, `適格請求書`: corporate numbers (suppressor).
    CorporateNo,
}

impl Class {
    /// The snake_case word shown to operators in findings.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Name => "name",
            Class::Kana => "name_reading",
            Class::Dob => "date_of_birth",
            Class::Age => "age",
            Class::Gender => "gender",
            Class::Address => "address",
            Class::Prefecture => "prefecture",
            Class::Postal => "postal_code",
            Class::Phone => "phone",
            Class::Email => "email",
            Class::MemberId => "member_id",
            Class::MyNumber => "my_number",
            Class::GovId => "government_id",
            Class::Finance => "financial",
            Class::LoginId => "login_id",
            Class::Password => "password",
            Class::Profile => "profile",
            Class::Staff => "staff",
            Class::Organisation => "organisation",
            Class::OrderNo => "order_number",
            Class::CorporateNo => "corporate_number",
        }
    }

    /// Attributes that make a row about a person personal data.
    pub fn is_personal_attribute(self) -> bool {
        matches!(
            self,
            Class::Dob
                | Class::Age
                | Class::Gender
                | Class::Address
                | Class::Prefecture
                | Class::Postal
                | Class::Phone
                | Class::Email
                | Class::MemberId
                | Class::MyNumber
                | Class::GovId
                | Class::Finance
                | Class::LoginId
                | Class::Password
                | Class::Profile
                | Class::Kana
        )
    }
}

/// (key, class, exact): `exact` entries must equal the whole header key; the others may be
/// contained in it. Specific entries first.
const LEXICON: &[(&str, Class, bool)] = &[
    // Suppressors and organisations first, so `会社名` never reads as a name.
    ("法人番号", Class::CorporateNo, false),
    ("適格請求書", Class::CorporateNo, false),
    ("インボイス", Class::CorporateNo, false),
    ("registrationnumber", Class::CorporateNo, false),
    ("注文番号", Class::OrderNo, false),
    ("注文no", Class::OrderNo, false),
    ("受注番号", Class::OrderNo, false),
    ("発注番号", Class::OrderNo, false),
    ("伝票番号", Class::OrderNo, false),
    ("問合せ番号", Class::OrderNo, false),
    ("問い合わせ番号", Class::OrderNo, false),
    ("お問合せ番号", Class::OrderNo, false),
    ("追跡番号", Class::OrderNo, false),
    ("管理番号", Class::OrderNo, false),
    ("受付番号", Class::OrderNo, false),
    ("商品コード", Class::OrderNo, false),
    ("janコード", Class::OrderNo, false),
    ("ordernumber", Class::OrderNo, false),
    ("orderid", Class::OrderNo, false),
    ("invoice", Class::OrderNo, false),
    ("tracking", Class::OrderNo, false),
    ("担当者", Class::Staff, false),
    ("担当", Class::Staff, false),
    ("営業", Class::Staff, false),
    ("salesrep", Class::Staff, false),
    ("代表者", Class::Staff, false),
    ("代表取締役", Class::Staff, false),
    ("代表名", Class::Staff, false),
    ("代表", Class::Staff, true),
    ("社長", Class::Staff, false),
    ("representative", Class::Staff, false),
    ("contactperson", Class::Staff, false),
    ("contactname", Class::Staff, false),
    ("owner", Class::Staff, true),
    ("assignee", Class::Staff, true),
    ("会社名", Class::Organisation, false),
    ("企業名", Class::Organisation, false),
    ("取引先", Class::Organisation, false),
    ("店舗", Class::Organisation, false),
    ("支店名", Class::Organisation, false),
    ("拠点", Class::Organisation, false),
    ("商品名", Class::Organisation, false),
    ("品名", Class::Organisation, false),
    ("company", Class::Organisation, false),
    ("store", Class::Organisation, false),
    ("branch", Class::Organisation, false),
    ("product", Class::Organisation, false),
    // Government ids.
    ("個人番号", Class::MyNumber, false),
    ("マイナンバー", Class::MyNumber, false),
    ("mynumber", Class::MyNumber, false),
    ("基礎年金番号", Class::GovId, false),
    ("被保険者番号", Class::GovId, false),
    ("保険者番号", Class::GovId, false),
    ("保険証", Class::GovId, false),
    ("免許証番号", Class::GovId, false),
    ("旅券番号", Class::GovId, false),
    ("パスポート", Class::GovId, false),
    ("在留カード", Class::GovId, false),
    ("passport", Class::GovId, false),
    ("ssn", Class::GovId, true),
    ("socialsecurity", Class::GovId, false),
    ("driverslicense", Class::GovId, false),
    ("licensenumber", Class::GovId, false),
    // Readings before names.
    ("フリガナ", Class::Kana, false),
    ("ふりがな", Class::Kana, false),
    ("氏名カナ", Class::Kana, false),
    ("名前カナ", Class::Kana, false),
    ("カナ氏名", Class::Kana, false),
    ("姓カナ", Class::Kana, false),
    ("名カナ", Class::Kana, false),
    ("カナ", Class::Kana, true),
    ("かな", Class::Kana, true),
    // Legacy host exports write their headers in (half-width) katakana.
    ("セイネンガッピ", Class::Dob, false),
    ("タンジョウビ", Class::Dob, false),
    ("セイベツ", Class::Gender, false),
    ("カイインno", Class::MemberId, false),
    ("カイインバンゴウ", Class::MemberId, false),
    ("コキャクno", Class::MemberId, false),
    ("コキャクバンゴウ", Class::MemberId, false),
    ("ジュウショ", Class::Address, false),
    ("デンワ", Class::Phone, false),
    ("ユウビン", Class::Postal, false),
    ("セイ", Class::Kana, true),
    ("メイ", Class::Kana, true),
    ("シメイ", Class::Kana, false),
    ("kana", Class::Kana, true),
    ("furigana", Class::Kana, false),
    ("reading", Class::Kana, false),
    // Contact details.
    ("メールアドレス", Class::Email, false),
    ("メール", Class::Email, false),
    ("eメール", Class::Email, false),
    ("email", Class::Email, false),
    ("mailaddress", Class::Email, false),
    ("mail", Class::Email, true),
    ("アドレス", Class::Email, true),
    ("郵便番号", Class::Postal, false),
    ("〒", Class::Postal, true),
    ("zip", Class::Postal, false),
    ("postalcode", Class::Postal, false),
    ("postcode", Class::Postal, false),
    ("電話", Class::Phone, false),
    ("携帯", Class::Phone, false),
    ("tel", Class::Phone, false),
    ("連絡先", Class::Phone, false),
    ("phone", Class::Phone, false),
    ("mobile", Class::Phone, false),
    ("cell", Class::Phone, true),
    ("住所", Class::Address, false),
    ("現住所", Class::Address, false),
    ("市区町村", Class::Address, false),
    ("番地", Class::Address, false),
    ("所在地", Class::Address, false),
    ("address", Class::Address, false),
    ("street", Class::Address, false),
    ("city", Class::Address, true),
    ("都道府県", Class::Prefecture, false),
    ("prefecture", Class::Prefecture, false),
    ("state", Class::Prefecture, true),
    // Identity.
    ("生年月日", Class::Dob, false),
    ("誕生日", Class::Dob, false),
    ("生まれ", Class::Dob, false),
    ("dateofbirth", Class::Dob, false),
    ("birthdate", Class::Dob, false),
    ("birthday", Class::Dob, false),
    ("dob", Class::Dob, true),
    ("年齢", Class::Age, false),
    ("age", Class::Age, true),
    ("性別", Class::Gender, false),
    ("男女", Class::Gender, false),
    ("性", Class::Gender, true),
    ("gender", Class::Gender, false),
    ("sex", Class::Gender, true),
    ("会員番号", Class::MemberId, false),
    ("会員no", Class::MemberId, false),
    ("会員id", Class::MemberId, false),
    ("会員コード", Class::MemberId, false),
    ("顧客番号", Class::MemberId, false),
    ("顧客id", Class::MemberId, false),
    ("顧客コード", Class::MemberId, false),
    ("社員番号", Class::MemberId, false),
    ("職員番号", Class::MemberId, false),
    ("従業員番号", Class::MemberId, false),
    ("学籍番号", Class::MemberId, false),
    ("受講者番号", Class::MemberId, false),
    ("受験番号", Class::MemberId, false),
    ("患者番号", Class::MemberId, false),
    ("memberid", Class::MemberId, false),
    ("memberno", Class::MemberId, false),
    ("membernumber", Class::MemberId, false),
    ("customerid", Class::MemberId, false),
    ("customernumber", Class::MemberId, false),
    ("employeeid", Class::MemberId, false),
    ("employeenumber", Class::MemberId, false),
    ("studentid", Class::MemberId, false),
    // Credentials.
    ("パスワード", Class::Password, false),
    ("暗証番号", Class::Password, false),
    ("password", Class::Password, false),
    ("passcode", Class::Password, false),
    ("pw", Class::Password, true),
    ("pass", Class::Password, true),
    ("pin", Class::Password, true),
    ("ログインid", Class::LoginId, false),
    ("ログイン名", Class::LoginId, false),
    ("ユーザーid", Class::LoginId, false),
    ("ユーザid", Class::LoginId, false),
    ("ユーザー名", Class::LoginId, false),
    ("ユーザ名", Class::LoginId, false),
    ("アカウント", Class::LoginId, false),
    ("loginid", Class::LoginId, false),
    ("login", Class::LoginId, false),
    ("userid", Class::LoginId, false),
    ("username", Class::LoginId, false),
    ("account", Class::LoginId, true),
    ("id", Class::LoginId, true),
    // Money.
    ("口座番号", Class::Finance, false),
    ("口座名義", Class::Finance, false),
    ("口座", Class::Finance, false),
    ("年収", Class::Finance, false),
    ("給与", Class::Finance, false),
    ("給料", Class::Finance, false),
    ("所得", Class::Finance, false),
    ("クレジットカード", Class::Finance, false),
    ("カード番号", Class::Finance, false),
    ("accountnumber", Class::Finance, false),
    ("income", Class::Finance, false),
    ("salary", Class::Finance, false),
    ("creditcard", Class::Finance, false),
    ("cardnumber", Class::Finance, false),
    // Names.
    ("氏名", Class::Name, false),
    ("名前", Class::Name, false),
    ("お名前", Class::Name, false),
    ("姓名", Class::Name, false),
    ("社員名", Class::Name, false),
    ("会員名", Class::Name, false),
    ("顧客名", Class::Name, false),
    ("受講者名", Class::Name, false),
    ("患者名", Class::Name, false),
    ("生徒名", Class::Name, false),
    ("学生名", Class::Name, false),
    ("参加者名", Class::Name, false),
    ("姓", Class::Name, true),
    ("名", Class::Name, true),
    ("name", Class::Name, true),
    ("fullname", Class::Name, false),
    ("fn", Class::Name, true),
    ("firstname", Class::Name, false),
    ("lastname", Class::Name, false),
    ("givenname", Class::Name, false),
    ("familyname", Class::Name, false),
    ("surname", Class::Name, false),
    ("employeename", Class::Name, false),
    ("customername", Class::Name, false),
    ("membername", Class::Name, false),
    ("customer", Class::Name, true),
    // Quasi-identifiers of a person's profile.
    ("勤務先", Class::Profile, false),
    ("部署", Class::Profile, false),
    ("役職", Class::Profile, false),
    ("在籍", Class::Profile, false),
    ("勤続", Class::Profile, false),
    ("職歴", Class::Profile, false),
    ("学校", Class::Profile, false),
    ("学歴", Class::Profile, false),
    ("学部", Class::Profile, false),
    ("学位", Class::Profile, false),
    ("卒業", Class::Profile, false),
    ("資格", Class::Profile, false),
    ("英語", Class::Profile, false),
    ("toeic", Class::Profile, false),
    ("職種", Class::Profile, false),
    ("業種", Class::Profile, false),
    ("希望", Class::Profile, false),
    ("既往歴", Class::Profile, false),
    ("健康", Class::Profile, false),
    ("血液型", Class::Profile, false),
    ("国籍", Class::Profile, false),
    ("employer", Class::Profile, false),
    ("department", Class::Profile, false),
    ("jobtitle", Class::Profile, false),
    ("title", Class::Profile, true),
    ("tenure", Class::Profile, false),
    ("school", Class::Profile, false),
    ("degree", Class::Profile, false),
    ("graduation", Class::Profile, false),
    ("qualification", Class::Profile, false),
    ("nationality", Class::Profile, false),
];

/// The class of a header cell, if the lexicon knows it.
pub fn classify_header(cell: &str) -> Option<Class> {
    let key = header_key(cell);
    if key.is_empty() || key.chars().count() > 24 {
        return None;
    }
    let Some(index) = INDEX.as_ref() else {
        return LEXICON
            .iter()
            .find(|(word, _, exact)| {
                if *exact {
                    key == *word
                } else {
                    key.contains(word)
                }
            })
            .map(|(_, class, _)| *class);
    };
    // The first entry of LEXICON that matches wins, as in a linear scan: the smallest index
    // among the exact hit and every substring hit (one Aho-Corasick pass, overlapping).
    let exact = index.exact.get(key.as_str()).copied();
    let contained = index
        .contains
        .find_overlapping_iter(key.as_str())
        .map(|m| index.contains_entry[m.pattern().as_usize()])
        .min();
    let first = match (exact, contained) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b)?,
    };
    LEXICON.get(first).map(|(_, class, _)| *class)
}

/// LEXICON as one automaton (substring entries) and one map (exact entries), each giving
/// the entry's position in LEXICON. A header cell is classified once per table column, but
/// a label is classified for every `label: value` line of a text, so this is on a hot path.
struct LexiconIndex {
    contains: aho_corasick::AhoCorasick,
    contains_entry: Vec<usize>,
    exact: std::collections::HashMap<&'static str, usize>,
}

static INDEX: std::sync::LazyLock<Option<LexiconIndex>> = std::sync::LazyLock::new(|| {
    let mut words = Vec::new();
    let mut contains_entry = Vec::new();
    let mut exact = std::collections::HashMap::new();
    for (i, (word, _, is_exact)) in LEXICON.iter().enumerate() {
        if *is_exact {
            exact.entry(*word).or_insert(i);
        } else {
            words.push(*word);
            contains_entry.push(i);
        }
    }
    let contains = aho_corasick::AhoCorasick::builder()
        .match_kind(aho_corasick::MatchKind::Standard)
        .build(&words)
        .ok()?;
    Some(LexiconIndex {
        contains,
        contains_entry,
        exact,
    })
});

#[cfg(test)]
mod tests {
    use super::*;

    /// The indexed lookup answers exactly what the linear scan of LEXICON answers.
    #[test]
    fn indexed_lookup_equals_the_linear_scan() {
        let linear = |cell: &str| {
            let key = header_key(cell);
            if key.is_empty() || key.chars().count() > 24 {
                return None;
            }
            LEXICON
                .iter()
                .find(|(w, _, exact)| if *exact { key == *w } else { key.contains(w) })
                .map(|(_, c, _)| *c)
        };
        let mut cells: Vec<String> = LEXICON.iter().map(|(w, _, _)| w.to_string()).collect();
        for (a, _, _) in LEXICON.iter().take(60) {
            for (b, _, _) in LEXICON.iter().rev().take(60) {
                cells.push(format!("{a}{b}"));
                cells.push(format!("x{a} {b}"));
            }
        }
        cells.extend(
            [
                "",
                "ID",
                "id",
                "パスワード",
                "登録番号",
                "no",
                "Name of shop",
            ]
            .map(String::from),
        );
        for c in &cells {
            assert_eq!(classify_header(c), linear(c), "{c:?}");
        }
    }

    #[test]
    fn headers() {
        let cases: &[(&str, Option<Class>)] = &[
            ("氏名", Some(Class::Name)),
            ("氏名（漢字）", Some(Class::Name)),
            ("氏名カナ", Some(Class::Kana)),
            ("ﾌﾘｶﾞﾅ", Some(Class::Kana)),
            ("生年月日", Some(Class::Dob)),
            ("性別", Some(Class::Gender)),
            ("都道府県", Some(Class::Prefecture)),
            ("会員番号", Some(Class::MemberId)),
            ("メールアドレス", Some(Class::Email)),
            ("E-mail", Some(Class::Email)),
            ("電話番号", Some(Class::Phone)),
            ("携帯番号", Some(Class::Phone)),
            ("郵便番号", Some(Class::Postal)),
            ("個人番号", Some(Class::MyNumber)),
            ("年収", Some(Class::Finance)),
            ("勤務先", Some(Class::Profile)),
            ("会社名", Some(Class::Organisation)),
            ("店舗名", Some(Class::Organisation)),
            ("担当者名", Some(Class::Staff)),
            ("代表者名", Some(Class::Staff)),
            ("代表者氏名", Some(Class::Staff)),
            ("代表電話", Some(Class::Phone)),
            ("Contact Person", Some(Class::Staff)),
            ("顧客名", Some(Class::Name)),
            ("取引先名", Some(Class::Organisation)),
            ("Customer", Some(Class::Name)),
            ("注文番号", Some(Class::OrderNo)),
            ("登録番号", None),
            ("法人番号", Some(Class::CorporateNo)),
            ("ログインID", Some(Class::LoginId)),
            ("初期パスワード", Some(Class::Password)),
            ("Date of Birth", Some(Class::Dob)),
            ("Full Name", Some(Class::Name)),
            ("Name", Some(Class::Name)),
            ("First Name", Some(Class::Name)),
            ("Product Name", Some(Class::Organisation)),
            ("Page views", None),
            ("町域カナ", None),
            ("ｾｲﾈﾝｶﾞｯﾋﾟ", Some(Class::Dob)),
            ("ｶｲｲﾝNO", Some(Class::MemberId)),
            ("ｾｲ", Some(Class::Kana)),
            ("カナ", Some(Class::Kana)),
            ("FN", Some(Class::Name)),
            ("売上", None),
            ("", None),
        ];
        for (h, want) in cases {
            assert_eq!(classify_header(h), *want, "{h}");
        }
    }
}
