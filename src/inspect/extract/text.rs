//! Text: charset detection and decoding, "is this text at all", and CSV/TSV tables.
//!
//! Charset order (DETECTION §4.1): BOM → the declared charset (unless the bytes contradict
//! it) → chardetng with the `jp` TLD hint and ISO-2022-JP allowed. Decoding is encoding_rs.
//! Bytes with NUL bytes are text only as UTF-16: with a BOM, or without one when the NUL
//! bytes fall on one side of the code units ([`decode_if_text`]).

use chardetng::{EncodingDetector, Iso2022JpDetection, Utf8Detection};
use encoding_rs::{Encoding, UTF_8, UTF_16BE, UTF_16LE, WINDOWS_1252};

use crate::inspect::budget::{Budget, Exceeded};

/// Bytes fed to chardetng: enough to decide, bounded for huge files.
const DETECT_SAMPLE: usize = 1024 * 1024;

/// Decodes `bytes` as text (see the module doc for how the charset is chosen). Never fails:
/// undecodable sequences become U+FFFD.
pub(super) fn decode(bytes: &[u8], declared: Option<&str>) -> String {
    let enc = pick(bytes, declared);
    let (text, _) = enc.decode_with_bom_removal(bytes);
    text.into_owned()
}

/// The encoding for `bytes`.
pub(super) fn pick(bytes: &[u8], declared: Option<&str>) -> &'static Encoding {
    if let Some((enc, _)) = Encoding::for_bom(bytes) {
        return enc;
    }
    if let Some(enc) = declared.and_then(|l| Encoding::for_label(l.trim().as_bytes())) {
        // "us-ascii"/"iso-8859-1" map to windows-1252, which accepts any byte: a Japanese
        // text mislabelled that way is common, so non-ASCII bytes go to the detector.
        let contradicted = if enc == WINDOWS_1252 {
            !bytes.is_ascii()
        } else {
            let (_, _, had_errors) = enc.decode(bytes);
            had_errors
        };
        if !contradicted {
            return enc;
        }
    }
    // Valid UTF-8 without ESC is UTF-8 (ISO-2022-JP is 7-bit, hence valid UTF-8, but uses ESC).
    if memchr::memchr(0x1B, bytes).is_none() && std::str::from_utf8(bytes).is_ok() {
        return UTF_8;
    }
    let mut detector = EncodingDetector::new(Iso2022JpDetection::Allow);
    detector.feed(bytes.get(..DETECT_SAMPLE).unwrap_or(bytes), true);
    detector.guess(Some(b"jp"), Utf8Detection::Allow)
}

/// Decodes `bytes` if they are text: no NUL bytes (unless a UTF-16 BOM says so, or the NUL
/// bytes are those of BOM-less UTF-16, see [`utf16_without_bom`]) and at most 2 % control
/// characters or undecodable sequences in the first 64 KiB of text.
pub(super) fn decode_if_text(bytes: &[u8], declared: Option<&str>) -> Option<String> {
    let utf16 = matches!(Encoding::for_bom(bytes), Some((enc, _)) if enc != UTF_8);
    let head = bytes.get(..64 * 1024).unwrap_or(bytes);
    let (text, strict) = if !utf16 && memchr::memchr(0, head).is_some() {
        let enc = utf16_without_bom(head)?;
        (enc.decode_without_bom_handling(bytes).0.into_owned(), true)
    } else {
        (decode(bytes, declared), false)
    };
    let mut total = 0usize;
    let mut bad = 0usize;
    for c in text.chars().take(64 * 1024) {
        total += 1;
        let control = c.is_control() && !matches!(c, '\t' | '\n' | '\r' | '\u{c}' | '\u{1b}');
        // Binary read as UTF-16 also shows private-use characters and noncharacters.
        let odd = strict
            && matches!(c, '\u{e000}'..='\u{f8ff}' | '\u{fdd0}'..='\u{fdef}' | '\u{fffe}' | '\u{ffff}');
        if control || odd || c == '\u{fffd}' {
            bad += 1;
        }
    }
    (bad * 50 <= total).then_some(text)
}

/// Bytes looked at to recognise UTF-16 without a BOM.
const UTF16_SAMPLE: usize = 8 * 1024;

/// The byte order of UTF-16 text without a BOM (Excel's "Unicode text" cut from its BOM,
/// exports of Windows tools), from where its NUL bytes are: every ASCII character (digits,
/// delimiters, line breaks) is a code unit with one NUL byte, always on the same side, while
/// binary data has NUL bytes on both sides (or in pairs). Japanese text has NUL bytes on the
/// other side too, in U+xx00 characters (一, the ideographic space), but far fewer.
/// `None` unless one side clearly dominates; the caller still checks the decoded text.
fn utf16_without_bom(head: &[u8]) -> Option<&'static Encoding> {
    let sample = head.get(..UTF16_SAMPLE).unwrap_or(head);
    let units = sample.len() / 2;
    // Code units with a NUL high byte (and a non-NUL low byte), read as LE and as BE.
    let (mut le, mut be) = (0usize, 0usize);
    for pair in sample.chunks_exact(2) {
        match pair {
            [0, 0] => {}
            [_, 0] => le += 1,
            [0, _] => be += 1,
            _ => {}
        }
    }
    // At least 1 unit in 64 (random bytes give 1 in 256 on each side), and at least twice as
    // many as on the other side (a Japanese letter full of 一 and 　 still has more ASCII).
    let dominant = |this: usize, other: usize| this >= 2 && this * 64 >= units && other * 2 <= this;
    if dominant(le, be) {
        Some(UTF_16LE)
    } else if dominant(be, le) {
        Some(UTF_16BE)
    } else {
        None
    }
}

/// Candidate delimiters, in order of preference on ties.
const DELIMITERS: [u8; 4] = [b'\t', b',', b';', b'|'];
/// Records looked at to sniff a delimiter.
const SNIFF_RECORDS: usize = 50;

/// Finds the delimiter of a CSV/TSV text: the one that occurs the same number of times (at
/// least once) in at least 80 % of the first non-empty records, over at least 3 records.
/// Quotes are honoured, so quoted delimiters and line breaks do not count.
pub(super) fn sniff_delimiter(text: &str) -> Option<u8> {
    // JSON Lines have constant commas too, but each line is an object, not a row: leave them
    // to the prose scan, which reads each line as one record.
    let first = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim_start();
    if first.starts_with('{') || first.starts_with('[') {
        return None;
    }
    let mut best: Option<(usize, u8)> = None;
    for delim in DELIMITERS {
        let counts = counts_per_record(text, delim);
        if counts.len() < 3 {
            continue;
        }
        let Some(mode) = mode(&counts) else { continue };
        if mode == 0 {
            continue;
        }
        let agree = counts.iter().filter(|&&c| c == mode).count();
        let first_agrees = counts.first() == Some(&mode);
        if first_agrees && agree * 5 >= counts.len() * 4 && best.is_none_or(|(a, _)| agree > a) {
            best = Some((agree, delim));
        }
    }
    best.map(|(_, d)| d)
}

/// Occurrences of `delim` outside quotes in each of the first non-empty records.
fn counts_per_record(text: &str, delim: u8) -> Vec<usize> {
    let mut counts = Vec::new();
    let mut quoted = false;
    let mut count = 0usize;
    let mut nonblank = false;
    for &b in text.as_bytes().iter().take(256 * 1024) {
        match b {
            b'"' => quoted = !quoted,
            b'\n' if !quoted => {
                if nonblank {
                    counts.push(count);
                    if counts.len() >= SNIFF_RECORDS {
                        return counts;
                    }
                }
                count = 0;
                nonblank = false;
                continue;
            }
            _ if b == delim && !quoted => count += 1,
            _ => {}
        }
        if !b.is_ascii_whitespace() {
            nonblank = true;
        }
    }
    if nonblank {
        counts.push(count);
    }
    counts
}

fn mode(counts: &[usize]) -> Option<usize> {
    let mut sorted = counts.to_vec();
    sorted.sort_unstable();
    let mut best: Option<(usize, usize)> = None;
    for run in sorted.chunk_by(|a, b| a == b) {
        if let Some(&v) = run.first()
            && best.is_none_or(|(n, _)| run.len() > n)
        {
            best = Some((run.len(), v));
        }
    }
    best.map(|(_, v)| v)
}

/// Parses a CSV/TSV text into rows (flexible record lengths, quotes honoured), counting
/// every cell against the budget.
pub(super) fn parse_table(
    text: &str,
    delim: u8,
    budget: &Budget,
) -> Result<Vec<Vec<String>>, Exceeded> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delim)
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut rows = Vec::new();
    let mut record = csv::StringRecord::new();
    // The input is a `str` and records are flexible, so errors cannot really occur; stop at
    // one rather than loop on it.
    while let Ok(true) = reader.read_record(&mut record) {
        budget.take_cells(record.len() as u64)?;
        if rows.len().is_multiple_of(1024) {
            budget.check_time()?;
        }
        rows.push(record.iter().map(str::to_string).collect());
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::budget::Limits;

    #[test]
    fn charsets() {
        let text = "会員番号,氏名,住所\n1,山田太郎,東京都千代田区\n2,鈴木花子,大阪府大阪市\n";
        let sjis = encoding_rs::SHIFT_JIS.encode(text).0.into_owned();
        let eucjp = encoding_rs::EUC_JP.encode(text).0.into_owned();
        let jis = encoding_rs::ISO_2022_JP.encode(text).0.into_owned();
        let mut bom = vec![0xEF, 0xBB, 0xBF];
        bom.extend_from_slice(text.as_bytes());
        let cases: Vec<(&str, Vec<u8>, Option<&str>)> = vec![
            ("utf-8", text.as_bytes().to_vec(), None),
            ("utf-8 bom", bom, None),
            ("shift_jis", sjis.clone(), None),
            ("shift_jis declared", sjis.clone(), Some("Shift_JIS")),
            ("shift_jis mislabelled ascii", sjis, Some("us-ascii")),
            ("euc-jp", eucjp, None),
            ("iso-2022-jp", jis.clone(), None),
            ("iso-2022-jp declared", jis, Some("iso-2022-jp")),
        ];
        for (name, bytes, declared) in cases {
            assert_eq!(decode(&bytes, declared), text, "{name}");
            assert_eq!(
                decode_if_text(&bytes, declared).as_deref(),
                Some(text),
                "{name}"
            );
        }
    }

    #[test]
    fn binary_is_not_text() {
        let cases: &[&[u8]] = &[
            b"abc\0def",
            &[1, 2, 3, 4, 5, 6, 7, 8, 0x0e, 0x0f, 0x10, 0x11],
        ];
        for bytes in cases {
            assert_eq!(decode_if_text(bytes, None), None, "{bytes:?}");
        }
    }

    fn utf16le(s: &str) -> Vec<u8> {
        s.encode_utf16().flat_map(u16::to_le_bytes).collect()
    }

    fn utf16be(s: &str) -> Vec<u8> {
        s.encode_utf16().flat_map(u16::to_be_bytes).collect()
    }

    #[test]
    fn utf16_with_and_without_bom() {
        use crate::inspect::extract::testutil::{
            member_csv, problems, rows, run_attachment, tables,
        };
        let csv = member_csv();
        let prose = "会員各位\r\n\r\n一月の定例会は一日（月）に開催いたします。\r\n会場は本社三階の大会議室です。\r\n\u{3000}以上、よろしくお願い申し上げます。\r\n";
        let english = "Dear members,\nThe meeting is on Monday.\n";
        for text in [csv.as_str(), prose, english] {
            let mut bom_le = vec![0xFF, 0xFE];
            bom_le.extend(utf16le(text));
            let mut bom_be = vec![0xFE, 0xFF];
            bom_be.extend(utf16be(text));
            for (name, bytes) in [
                ("le", utf16le(text)),
                ("be", utf16be(text)),
                ("le bom", bom_le),
                ("be bom", bom_be),
            ] {
                assert_eq!(
                    decode_if_text(&bytes, None).as_deref(),
                    Some(text),
                    "{name}: {text}"
                );
            }
        }
        // A UTF-16LE CSV without BOM is a table.
        let x = run_attachment("members.csv", &utf16le(&csv));
        assert!(x.problems.is_empty(), "{:?}", problems(&x));
        let found = tables(&x, "attachment members.csv");
        assert_eq!(found.len(), 1, "{:?}", x.items);
        let want: Vec<Vec<&str>> = csv.lines().map(|l| l.split(',').collect()).collect();
        assert_eq!(rows(found[0]), want);
    }

    /// Binary with NUL bytes is not misread as BOM-less UTF-16.
    #[test]
    fn binary_is_not_utf16() {
        let mut seed = 0x853c_49e6_748f_ea9b_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut samples: Vec<(String, Vec<u8>)> = Vec::new();
        for len in [2usize, 3, 8, 64, 500, 4096, 100_000] {
            for i in 0..20 {
                let mut b: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                b[0] = 0;
                samples.push((format!("random {len} #{i}"), b.clone()));
                let mut png =
                    b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\x01\0\0\0\0\xc8\x08\x06\0\0\0".to_vec();
                png.extend_from_slice(&b);
                samples.push((format!("png {len} #{i}"), png));
                let mut z = b"PK\x03\x04\x14\0\0\0\x08\0\0\0!\0".to_vec();
                z.extend_from_slice(&b);
                samples.push((format!("zip {len} #{i}"), z));
            }
        }
        // 16-bit PCM: quiet and loud sines.
        for amp in [3.0f64, 100.0, 200.0, 12_000.0] {
            let mut wav = b"RIFF\x24\x71\x02\0WAVEfmt \x10\0\0\0\x01\0\x01\0\x44\xac\0\0\x88\x58\x01\0\x02\0\x10\0data\0\x71\x02\0".to_vec();
            for t in 0..80_000 {
                let v = (amp * (f64::from(t) * 0.05).sin()) as i16;
                wav.extend_from_slice(&v.to_le_bytes());
            }
            samples.push((format!("wav amplitude {amp}"), wav));
        }
        // Little-endian integer arrays, and a DER certificate (what an S/MIME .p7s holds).
        let ints: Vec<u8> = (0u32..5000).flat_map(|i| (i % 300).to_le_bytes()).collect();
        samples.push(("u32 array".into(), ints));
        let shorts: Vec<u8> = (0u16..5000).flat_map(|i| (i % 200).to_le_bytes()).collect();
        samples.push(("u16 array".into(), shorts));
        let cert = rcgen::generate_simple_self_signed(vec!["mail.example.jp".to_string()]).unwrap();
        samples.push(("der certificate".into(), cert.cert.der().to_vec()));
        for (name, bytes) in &samples {
            assert!(
                decode_if_text(bytes, None).is_none(),
                "{name} was read as text"
            );
        }
    }

    #[test]
    fn delimiters() {
        let cases: &[(&str, Option<u8>)] = &[
            ("a,b,c\n1,2,3\n4,5,6\n", Some(b',')),
            ("a\tb\n1\t2\n3\t4\n", Some(b'\t')),
            ("a;b\n1;2\n3;4\n", Some(b';')),
            ("a|b|c\n1|2|3\n4|5|6\n", Some(b'|')),
            ("a,b\n\"x,y\",2\n3,\"multi\nline\"\n", Some(b',')),
            ("a,b\n1,2\n", None),
            (
                "Hello, world.\nThis is a letter with no commas\nRegards\nTaro, Yamada, Esq.\n",
                None,
            ),
            ("just one line of prose", None),
            (
                "{\"a\": 1, \"b\": 2}\n{\"a\": 3, \"b\": 4}\n{\"a\": 5, \"b\": 6}\n",
                None,
            ),
        ];
        for (text, want) in cases {
            assert_eq!(sniff_delimiter(text), *want, "{text:?}");
        }
    }

    #[test]
    fn csv_rows_and_cell_budget() {
        let budget = Budget::new(Limits::default());
        let rows = parse_table("a,b\n\"x,y\",2\n3\n", b',', &budget).unwrap();
        assert_eq!(rows, vec![vec!["a", "b"], vec!["x,y", "2"], vec!["3"]]);
        let tight = Budget::new(Limits {
            max_cells: 3,
            ..Limits::default()
        });
        assert_eq!(
            parse_table("a,b\nc,d\n", b',', &tight),
            Err(Exceeded::Cells)
        );
    }
}
