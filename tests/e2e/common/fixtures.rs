//! Generated fixtures for the incidents, shared by the e2e tests and the benchmarks
//! (`#[path]`-included there). Synthetic people only; deterministic.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use base64::Engine;
use rust_xlsxwriter::{ExcelDateTime, Format, Workbook};

const SURNAMES: [&str; 40] = [
    "佐藤",
    "鈴木",
    "高橋",
    "田中",
    "伊藤",
    "渡辺",
    "山本",
    "中村",
    "小林",
    "加藤",
    "吉田",
    "山田",
    "佐々木",
    "山口",
    "松本",
    "井上",
    "木村",
    "清水",
    "山崎",
    "池田",
    "橋本",
    "阿部",
    "石川",
    "山下",
    "中島",
    "石井",
    "小川",
    "前田",
    "岡田",
    "長谷川",
    "藤田",
    "後藤",
    "近藤",
    "村上",
    "遠藤",
    "青木",
    "坂本",
    "福田",
    "太田",
    "西村",
];
const GIVEN: [&str; 30] = [
    "太郎", "花子", "健一", "美咲", "翔太", "陽子", "大輔", "直美", "拓也", "恵子", "誠", "愛",
    "健太", "由美", "蓮", "結衣", "大樹", "彩", "悠斗", "葵", "翼", "舞", "学", "香織", "浩", "瞳",
    "剛", "綾", "修", "遥",
];
const PREFS: [&str; 8] = [
    "東京都",
    "大阪府",
    "神奈川県",
    "愛知県",
    "福岡県",
    "北海道",
    "兵庫県",
    "埼玉県",
];

/// A person's name for row `i` (≈ 1,200 distinct names, then numbered variants).
pub fn person(i: usize) -> String {
    let base = format!("{} {}", SURNAMES[i % 40], GIVEN[(i / 40) % 30]);
    if i < 1200 {
        base
    } else {
        format!("{base}{}", i / 1200)
    }
}

/// Incident 3 (INCIDENTS.md §3): a member workbook with `rows` people and 20 columns —
/// name, birth date, gender, prefecture, member number, income, employer, school … and no
/// e-mail, phone or address. A title row and a blank row sit above the header.
pub fn incident3_xlsx(rows: usize) -> Vec<u8> {
    let mut wb = Workbook::new();
    let ws = wb.add_worksheet();
    ws.set_name("会員一覧").unwrap();
    let date = Format::new().set_num_format("yyyy/mm/dd");
    let headers = [
        "名前",
        "生年月日",
        "性別",
        "都道府県",
        "会員番号",
        "最新年収",
        "業種",
        "職種",
        "勤務先",
        "部署・役職",
        "在籍期間",
        "過去の勤務先",
        "学校名",
        "学部",
        "卒業年月",
        "英語レベル",
        "TOEICスコア",
        "保有資格",
        "希望職種",
        "希望勤務地",
    ];
    ws.write_string(0, 0, "会員一覧（2015年12月時点）").unwrap();
    for (c, h) in headers.iter().enumerate() {
        ws.write_string(2, c as u16, *h).unwrap();
    }
    for i in 0..rows {
        let r = (i + 3) as u32;
        ws.write_string(r, 0, person(i)).unwrap();
        let dob = ExcelDateTime::from_ymd(
            1960 + (i % 35) as u16,
            1 + (i % 12) as u8,
            1 + (i % 28) as u8,
        )
        .unwrap();
        ws.write_datetime_with_format(r, 1, &dob, &date).unwrap();
        ws.write_string(r, 2, if i % 2 == 0 { "男性" } else { "女性" })
            .unwrap();
        ws.write_string(r, 3, PREFS[i % 8]).unwrap();
        ws.write_string(r, 4, format!("M{:07}", 1_000_000 + i))
            .unwrap();
        ws.write_number(r, 5, (300 + (i % 50) * 20) as f64).unwrap();
        for (c, v) in [
            (6, "情報通信"),
            (7, "エンジニア"),
            (8, "株式会社サンプル"),
            (9, "開発部 主任"),
            (10, "5年"),
            (11, "株式会社テスト"),
            (12, "サンプル大学"),
            (13, "工学部"),
            (14, "2010年3月"),
            (15, "ビジネス"),
            (16, "780"),
            (17, "基本情報技術者"),
            (18, "プロジェクトマネージャー"),
            (19, "東京都"),
        ] {
            ws.write_string(r, c, v).unwrap();
        }
    }
    wb.save_to_buffer().unwrap()
}

/// Incident 4 (INCIDENTS.md §4): the mailing list itself — member number, name, e-mail.
pub fn incident4_csv(rows: usize) -> Vec<u8> {
    let mut s = String::from("会員番号,氏名,メールアドレス\r\n");
    for i in 0..rows {
        s.push_str(&format!(
            "{:06},{},member{i}@mail{}.example.jp\r\n",
            100_000 + i,
            person(i),
            i % 50
        ));
    }
    s.into_bytes()
}

/// A multipart/mixed message with a text body and attachments (base64, RFC 2231 names).
pub fn with_attachments(
    headers: &[(&str, &str)],
    body: &str,
    attachments: &[(&str, &str, &[u8])],
) -> Vec<u8> {
    let boundary = "=_mailbrake_test_boundary_42";
    let mut m = String::new();
    for (k, v) in headers {
        m.push_str(&format!("{k}: {v}\r\n"));
    }
    m.push_str(&format!(
        "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n"
    ));
    m.push_str(&format!("--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{body}\r\n"));
    for (name, ctype, bytes) in attachments {
        let encoded: String = name
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_' {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        m.push_str(&format!(
            "--{boundary}\r\nContent-Type: {ctype}\r\nContent-Disposition: attachment; filename*=UTF-8''{encoded}\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        ));
        let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
        for chunk in b64.as_bytes().chunks(76) {
            m.push_str(std::str::from_utf8(chunk).unwrap());
            m.push_str("\r\n");
        }
    }
    m.push_str(&format!("--{boundary}--\r\n"));
    m.into_bytes()
}

/// An ordinary business mail of about `size` bytes (Japanese prose, a signature, a quote).
pub fn ordinary_mail(size: usize) -> Vec<u8> {
    let mut body = String::from(
        "山田様\r\n\r\nいつもお世話になっております。株式会社サンプルの佐藤です。\r\n\r\n",
    );
    let para = "先日はお打ち合わせのお時間をいただき、誠にありがとうございました。ご提案いただいた内容について社内で検討し、来週中にご回答いたします。\r\n";
    while body.len() < size.saturating_sub(600) {
        body.push_str(para);
    }
    body.push_str("\r\n何卒よろしくお願いいたします。\r\n\r\n--\r\n株式会社サンプル 営業部\r\n佐藤 健一\r\nTEL: 03-1234-5678 FAX: 03-1234-5679\r\nE-mail: sato@sample.example.co.jp\r\n〒100-0001 東京都千代田区千代田1-1-1\r\n");
    format!(
        "From: sato@sample.example.co.jp\r\nTo: yamada@partner.example.jp\r\nSubject: =?UTF-8?B?5omT44Gh5ZCI44KP44Gb44Gu5Lu2?=\r\nMessage-ID: <ordinary@sample.example.co.jp>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{body}"
    )
    .into_bytes()
}

/// A one-page PDF (Helvetica, no compression of its own) whose content stream is `content`,
/// deflated.
pub fn pdf_with_content(content: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(content).unwrap();
    let stream = z.finish().unwrap();
    let mut contents = format!(
        "<< /Length {} /Filter /FlateDecode >>\nstream\n",
        stream.len()
    )
    .into_bytes();
    contents.extend_from_slice(&stream);
    contents.extend_from_slice(b"\nendstream");
    let objects: Vec<Vec<u8>> = vec![
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>".to_vec(),
        contents,
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_vec(),
    ];
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, o) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n", i + 1).as_bytes());
        out.extend_from_slice(o);
        out.extend_from_slice(b"\nendobj\n");
    }
    let xref = out.len();
    out.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for o in offsets {
        out.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    out
}

/// A PDF member list: `rows` lines of name, birth date, mobile number and e-mail.
pub fn members_pdf(rows: usize) -> Vec<u8> {
    let first = [
        "John", "Mary", "James", "Linda", "Robert", "Susan", "Michael", "Karen",
    ];
    let last = [
        "Smith", "Johnson", "Brown", "Taylor", "Miller", "Wilson", "Moore", "Clark",
    ];
    let mut c = String::from("BT /F1 10 Tf 40 760 Td 12 TL (Member list) Tj T*\n");
    c.push_str("(Member No  Name  Date of birth  Mobile  E-mail) Tj T*\n");
    for i in 0..rows {
        let (f, l) = (first[i % 8], last[(i / 8) % 8]);
        c.push_str(&format!(
            "({}  {f} {l}  19{:02}-{:02}-{:02}  090-{:04}-{:04}  {}.{}{i}@example.com) Tj T*\n",
            10001 + i,
            60 + i % 40,
            1 + i % 12,
            1 + i % 28,
            1000 + i,
            2000 + i,
            f.to_lowercase(),
            l.to_lowercase(),
        ));
    }
    c.push_str("ET\n");
    pdf_with_content(c.as_bytes())
}
