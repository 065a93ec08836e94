//! Zip containers (plain archives, and the zip under OOXML and ODF) and gzip.
//!
//! Owns every byte inflated from a zip: [`copy_entry`] reads through `Read::take` sized by the
//! budget, accounts the bytes actually produced, and checks the per-entry ratio as it goes,
//! so declared sizes (which a bomb lies about) are never trusted. Plain archives recurse into
//! their entries (zips in zips) one nesting level deeper each time.
//! gzip is in [`gzip`](super::gzip), which reuses [`read_entry`].

use std::io::{self, Cursor, Read, Write};

use zip::ZipArchive;
use zip::result::ZipError;

use super::{Ctx, Location, ProblemKind, child, ods, ooxml, sheet, sniff};
use crate::inspect::budget::{Budget, Exceeded};

/// A zip archive over bytes in memory.
pub(super) type Zip<'a> = ZipArchive<Cursor<&'a [u8]>>;

/// The ODF mimetype of a spreadsheet.
const ODS_MIMETYPE: &[u8] = b"application/vnd.oasis.opendocument.spreadsheet";

/// What a zip holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Container {
    Xlsx,
    Xlsb,
    Docx,
    Pptx,
    Ods,
    Archive,
}

/// Extracts a zip leaf: an OOXML/ODF document or a plain archive.
pub(super) fn zip(ctx: &mut Ctx<'_>, loc: &Location, bytes: &[u8], depth: usize) {
    let mut archive = match ZipArchive::new(Cursor::new(bytes)) {
        Ok(a) => a,
        Err(_) => {
            ctx.problem(
                loc,
                ProblemKind::Unreadable,
                "zip archive could not be opened (corrupt or truncated)",
            );
            return;
        }
    };
    // Legitimate archives never share data between entries; bombs do (Fifield 2019).
    if archive.has_overlapping_files().unwrap_or(false) {
        ctx.problem(
            loc,
            ProblemKind::Limit,
            "zip entries overlap each other (zip bomb)",
        );
        return;
    }
    if archive.has_duplicate_names() {
        // The zip crate keeps one entry per name: the others cannot be read.
        ctx.problem(
            loc,
            ProblemKind::Unreadable,
            "zip archive has duplicate entry names; some entries were not read",
        );
    }
    let len = bytes.len() as u64;
    match classify(ctx.budget, &mut archive, len) {
        Container::Xlsx => sheet::xlsx(ctx, loc, &mut archive, bytes),
        Container::Xlsb => sheet::xlsb(ctx, loc, &mut archive, bytes),
        Container::Docx => ooxml::docx(ctx, loc, &mut archive, len),
        Container::Pptx => ooxml::pptx(ctx, loc, &mut archive, len),
        Container::Ods => ods::extract(ctx, loc, &mut archive, len),
        Container::Archive => entries(ctx, loc, &mut archive, len, depth),
    }
}

/// OOXML by `[Content_Types].xml` and its main part, ODS by its `mimetype` entry.
fn classify(budget: &Budget, archive: &mut Zip<'_>, len: u64) -> Container {
    if archive.index_for_name("[Content_Types].xml").is_some() {
        let has = |name: &str| archive.index_for_name(name).is_some();
        if has("xl/workbook.xml") {
            return Container::Xlsx;
        }
        if has("xl/workbook.bin") {
            return Container::Xlsb;
        }
        if has("word/document.xml") {
            return Container::Docx;
        }
        if has("ppt/presentation.xml") {
            return Container::Pptx;
        }
    }
    if let Some(i) = archive.index_for_name("mimetype") {
        let mut head = Vec::new();
        let read = copy_entry(budget, archive, i, len, &mut head, Some(256));
        if read.is_ok() && head.trim_ascii() == ODS_MIMETYPE {
            return Container::Ods;
        }
    }
    Container::Archive
}

/// Extracts every entry of a plain archive as a leaf one level deeper.
fn entries(ctx: &mut Ctx<'_>, loc: &Location, archive: &mut Zip<'_>, len: u64, depth: usize) {
    if let Err(e) = ctx.budget.check_depth(depth + 1) {
        ctx.exceeded(loc, e);
        return;
    }
    for i in 0..archive.len() {
        if !ctx.time_ok(loc) {
            return;
        }
        if let Err(e) = ctx.budget.take_entry() {
            ctx.exceeded(loc, e);
            return;
        }
        let Ok(meta) = archive.by_index_data(i) else {
            ctx.problem(
                loc,
                ProblemKind::Unreadable,
                "zip entry header could not be read",
            );
            continue;
        };
        if meta.is_dir() {
            continue;
        }
        let name = entry_name(meta.name_raw(), meta.flags().as_u16());
        let encrypted = meta.encrypted();
        let entry_loc = child(loc, &name);
        if !safe_name(&name) {
            ctx.problem(&entry_loc, ProblemKind::Unreadable, "unsafe entry name");
            continue;
        }
        if encrypted {
            ctx.problem(&entry_loc, ProblemKind::Encrypted, "encrypted zip entry");
            continue;
        }
        match read_entry(ctx.budget, archive, i, len) {
            Ok(bytes) => sniff::leaf(ctx, &entry_loc, &bytes, depth + 1, None),
            Err(e) => {
                let total = matches!(e, EntryError::Limit(Exceeded::Inflated | Exceeded::Time));
                report(ctx, &entry_loc, e);
                if total {
                    // The message's inflate budget (or time) is spent: no later entry fits.
                    return;
                }
            }
        }
    }
}

/// An entry name: UTF-8 when flagged (or when it is valid UTF-8), else CP932 — Windows
/// Explorer writes Japanese names in CP932 without the UTF-8 flag (DETECTION §3).
pub(super) fn entry_name(raw: &[u8], flags: u16) -> String {
    const UTF8_FLAG: u16 = 0x0800;
    if flags & UTF8_FLAG != 0 {
        return String::from_utf8_lossy(raw).into_owned();
    }
    match std::str::from_utf8(raw) {
        Ok(s) => s.to_string(),
        Err(_) => encoding_rs::SHIFT_JIS
            .decode_without_bom_handling(raw)
            .0
            .into_owned(),
    }
}

/// Rejects absolute names, drive letters and `..` components (Zip Slip).
pub(super) fn safe_name(name: &str) -> bool {
    let absolute = name.starts_with(['/', '\\'])
        || name.as_bytes().get(1) == Some(&b':')
        || name.contains('\0');
    !absolute && !name.split(['/', '\\']).any(|c| c == "..")
}

/// Why an entry could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum EntryError {
    Encrypted,
    Unsupported,
    Corrupt,
    Limit(Exceeded),
}

/// Records an entry error as a problem at `loc`.
pub(super) fn report(ctx: &mut Ctx<'_>, loc: &Location, e: EntryError) {
    match e {
        EntryError::Encrypted => ctx.problem(loc, ProblemKind::Encrypted, "encrypted zip entry"),
        EntryError::Unsupported => ctx.problem(
            loc,
            ProblemKind::Unreadable,
            "zip entry uses an unsupported compression method",
        ),
        EntryError::Corrupt => ctx.problem(
            loc,
            ProblemKind::Unreadable,
            "zip entry is corrupt (bad compressed data or checksum)",
        ),
        EntryError::Limit(e) => ctx.exceeded(loc, e),
    }
}

/// Reads entry `index` into memory (see [`copy_entry`]).
pub(super) fn read_entry(
    budget: &Budget,
    archive: &mut Zip<'_>,
    index: usize,
    archive_len: u64,
) -> Result<Vec<u8>, EntryError> {
    let mut out = Vec::new();
    copy_entry(budget, archive, index, archive_len, &mut out, None)?;
    Ok(out)
}

/// Reads entry `index` named `name` into memory; `None` if there is no such entry.
pub(super) fn read_named(
    budget: &Budget,
    archive: &mut Zip<'_>,
    name: &str,
    archive_len: u64,
) -> Option<Result<Vec<u8>, EntryError>> {
    let index = archive.index_for_name(name)?;
    Some(read_entry(budget, archive, index, archive_len))
}

/// Inflates entry `index` into `sink`, at most `cap` bytes if given. Every byte produced is
/// taken from the budget as it is produced; the reader never yields more than the budget
/// has left (plus one byte, to notice the overrun), and the entry's ratio to its compressed
/// size (bounded by the archive's length, since the header may lie) is checked per chunk.
pub(super) fn copy_entry<W: Write>(
    budget: &Budget,
    archive: &mut Zip<'_>,
    index: usize,
    archive_len: u64,
    sink: &mut W,
    cap: Option<u64>,
) -> Result<u64, EntryError> {
    let file = archive.by_index(index).map_err(|e| match e {
        ZipError::UnsupportedArchive(m) if m == ZipError::PASSWORD_REQUIRED => {
            EntryError::Encrypted
        }
        ZipError::UnsupportedArchive(_) | ZipError::CompressionMethodNotSupported(_) => {
            EntryError::Unsupported
        }
        _ => EntryError::Corrupt,
    })?;
    if file.encrypted() {
        return Err(EntryError::Encrypted);
    }
    let compressed = file.compressed_size().min(archive_len);
    let limit = budget
        .inflated_left()
        .saturating_add(1)
        .min(cap.unwrap_or(u64::MAX));
    copy_limited(budget, file.take(limit), compressed, sink)
}

/// The read loop of [`copy_entry`].
fn copy_limited<R: Read, W: Write>(
    budget: &Budget,
    mut reader: R,
    compressed: u64,
    sink: &mut W,
) -> Result<u64, EntryError> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    let mut chunks = 0u32;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Err(EntryError::Corrupt),
        };
        let chunk = buf.get(..n).ok_or(EntryError::Corrupt)?;
        total = total.saturating_add(n as u64);
        budget.take_inflated(n as u64).map_err(EntryError::Limit)?;
        budget
            .check_ratio(total, compressed)
            .map_err(EntryError::Limit)?;
        sink.write_all(chunk).map_err(|_| EntryError::Corrupt)?;
        chunks = chunks.wrapping_add(1);
        if chunks.is_multiple_of(16) {
            budget.check_time().map_err(EntryError::Limit)?;
        }
    }
    Ok(total)
}

/// Reads every entry of a document's zip once, without keeping the bytes, so that a bomb
/// inside an xlsx is caught by our limits before calamine (which has none) inflates it.
/// Returns `false` after recording the problem.
pub(super) fn prescan(
    ctx: &mut Ctx<'_>,
    loc: &Location,
    archive: &mut Zip<'_>,
    archive_len: u64,
) -> bool {
    for i in 0..archive.len() {
        if !ctx.time_ok(loc) {
            return false;
        }
        if let Err(e) = copy_entry(ctx.budget, archive, i, archive_len, &mut io::sink(), None) {
            match e {
                EntryError::Encrypted => ctx.problem(
                    loc,
                    ProblemKind::Encrypted,
                    "document contains an encrypted part",
                ),
                other => report(ctx, loc, other),
            }
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::budget::Limits;
    use crate::inspect::extract::testutil::{
        RawEntry, message, problems, rows, run_attachment, run_with, stored_zip, tables, texts,
        zip, zip_with,
    };
    use crate::inspect::extract::{Problem, extract};
    use zip::CompressionMethod;

    const CSV: &[u8] = b"name,tel\nTaro,090-1111-2222\nHanako,080-3333-4444\n";

    #[test]
    fn entries_are_typed_and_located() {
        let sjis_csv = encoding_rs::SHIFT_JIS
            .encode("氏名,電話\n山田,03-1234-5678\n鈴木,06-1234-5678\n")
            .0;
        let z = zip(&[
            ("dir/名簿.csv", &sjis_csv),
            ("notes.txt", "連絡先一覧です".as_bytes()),
            ("img.png", b"\x89PNG\r\n\x1a\n"),
        ]);
        let x = run_attachment("a.zip", &z);
        assert!(x.problems.is_empty(), "{:?}", problems(&x));
        let t = tables(&x, "attachment a.zip > dir/名簿.csv");
        assert_eq!(
            rows(t[0]),
            vec![
                vec!["氏名", "電話"],
                vec!["山田", "03-1234-5678"],
                vec!["鈴木", "06-1234-5678"]
            ]
        );
        assert_eq!(
            texts(&x, "attachment a.zip > notes.txt"),
            vec!["連絡先一覧です"]
        );
        assert_eq!(x.attachments.len(), 1, "entries are not attachments");
    }

    #[test]
    fn cp932_entry_names() {
        let name = encoding_rs::SHIFT_JIS.encode("会員名簿.csv").0;
        let z = stored_zip(
            &[RawEntry {
                name: &name,
                data: CSV,
                flags: 0,
            }],
            &[],
        );
        let x = run_attachment("a.zip", &z);
        assert_eq!(
            tables(&x, "attachment a.zip > 会員名簿.csv").len(),
            1,
            "{:?}",
            x.items
        );
        let cases: &[(&[u8], u16, &str)] = &[
            (b"plain.csv", 0, "plain.csv"),
            ("名簿.csv".as_bytes(), 0x0800, "名簿.csv"),
            ("名簿.csv".as_bytes(), 0, "名簿.csv"),
            (&[0x96, 0xBC, 0x95, 0xEB], 0, "名簿"),
        ];
        for (raw, flags, want) in cases {
            assert_eq!(entry_name(raw, *flags), *want);
        }
    }

    #[test]
    fn unsafe_and_encrypted_entries_are_reported_and_the_rest_read() {
        let z = stored_zip(
            &[
                RawEntry {
                    name: b"../evil.csv",
                    data: CSV,
                    flags: 0,
                },
                RawEntry {
                    name: b"/etc/passwd",
                    data: CSV,
                    flags: 0,
                },
                RawEntry {
                    name: b"secret.csv",
                    data: CSV,
                    flags: 1,
                },
                RawEntry {
                    name: b"ok.csv",
                    data: CSV,
                    flags: 0,
                },
            ],
            &[],
        );
        let x = run_attachment("a.zip", &z);
        let want = vec![
            (
                "attachment a.zip > ../evil.csv".to_string(),
                ProblemKind::Unreadable,
                "unsafe entry name".to_string(),
            ),
            (
                "attachment a.zip > /etc/passwd".to_string(),
                ProblemKind::Unreadable,
                "unsafe entry name".to_string(),
            ),
            (
                "attachment a.zip > secret.csv".to_string(),
                ProblemKind::Encrypted,
                "encrypted zip entry".to_string(),
            ),
        ];
        assert_eq!(problems(&x), want);
        assert_eq!(tables(&x, "ok.csv").len(), 1);
    }

    #[test]
    fn deflate_bomb_stops_at_ratio_or_inflate_cap() {
        let zeros = vec![0u8; 10 * 1024 * 1024];
        let z = zip(&[("zeros.bin", &zeros), ("after.csv", CSV)]);
        assert!(z.len() < 100 * 1024);
        let raw = message("hi", &[("bomb.zip", "application/zip", &z)]);
        let msg = mail_parser::MessageParser::default().parse(&raw).unwrap();

        let budget = Budget::new(Limits::default());
        let x = extract(&msg, &budget);
        assert_eq!(
            problems(&x),
            vec![(
                "attachment bomb.zip > zeros.bin".into(),
                ProblemKind::Limit,
                Exceeded::Ratio.describe().into()
            )]
        );
        assert_eq!(tables(&x, "after.csv").len(), 1, "a ratio hit is per entry");
        let left = budget.inflated_left();
        assert!(
            Limits::default().max_inflated - left < 2 * 1024 * 1024,
            "stopped early"
        );

        let cap = 1024 * 1024;
        let budget = Budget::new(Limits {
            max_inflated: cap,
            max_ratio: u64::MAX,
            ..Limits::default()
        });
        let x = extract(&msg, &budget);
        assert_eq!(
            problems(&x),
            vec![(
                "attachment bomb.zip > zeros.bin".into(),
                ProblemKind::Limit,
                Exceeded::Inflated.describe().into()
            )]
        );
        assert_eq!(budget.inflated_left(), 0);
        assert!(
            tables(&x, "after.csv").is_empty(),
            "nothing inflates after the cap"
        );
    }

    #[test]
    fn overlapping_entries_are_a_bomb() {
        let z = stored_zip(
            &[RawEntry {
                name: b"a.csv",
                data: CSV,
                flags: 0,
            }],
            &[(b"b.csv", 0), (b"c.csv", 0)],
        );
        let x = run_attachment("o.zip", &z);
        assert_eq!(
            problems(&x),
            vec![(
                "attachment o.zip".into(),
                ProblemKind::Limit,
                "zip entries overlap each other (zip bomb)".into()
            )]
        );
    }

    #[test]
    fn nesting_depth_is_limited() {
        let inner = zip(&[("deep.csv", CSV)]);
        let mid = zip(&[("inner.zip", &inner), ("mid.csv", CSV)]);
        let outer = zip(&[("mid.zip", &mid), ("top.csv", CSV)]);
        let raw = message("hi", &[("outer.zip", "application/zip", &outer)]);
        let x = run_with(
            &raw,
            Limits {
                max_depth: 2,
                ..Limits::default()
            },
        );
        assert_eq!(
            problems(&x),
            vec![(
                "attachment outer.zip > mid.zip > inner.zip".into(),
                ProblemKind::Limit,
                Exceeded::Depth.describe().into()
            )]
        );
        assert_eq!(tables(&x, "attachment outer.zip > top.csv").len(), 1);
        assert_eq!(
            tables(&x, "attachment outer.zip > mid.zip > mid.csv").len(),
            1
        );
        assert!(tables(&x, "deep.csv").is_empty());
        let x = run_with(&raw, Limits::default());
        assert_eq!(
            tables(&x, "attachment outer.zip > mid.zip > inner.zip > deep.csv").len(),
            1
        );
    }

    #[test]
    fn entry_count_is_limited() {
        let names: Vec<String> = (0..10_000).map(|i| format!("f{i}.txt")).collect();
        let entries: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"x"[..])).collect();
        let z = zip_with(&entries, CompressionMethod::Stored);
        let raw = message("hi", &[("many.zip", "application/zip", &z)]);
        let x = run_with(
            &raw,
            Limits {
                max_archive_entries: 100,
                ..Limits::default()
            },
        );
        assert_eq!(
            problems(&x),
            vec![(
                "attachment many.zip".into(),
                ProblemKind::Limit,
                Exceeded::ArchiveEntries.describe().into()
            )]
        );
        assert_eq!(
            x.items
                .iter()
                .filter(|i| i.location().part.contains("many.zip >"))
                .count(),
            100
        );
    }

    #[test]
    fn broken_and_uninspectable_containers() {
        let good = zip(&[("a.csv", CSV)]);
        let cases: Vec<(&str, Vec<u8>, ProblemKind, &str)> = vec![
            (
                "truncated.zip",
                good[..good.len() / 2].to_vec(),
                ProblemKind::Unreadable,
                "zip archive could not be opened (corrupt or truncated)",
            ),
            (
                "a.7z",
                b"7z\xbc\xaf\x27\x1c\x00\x04rest".to_vec(),
                ProblemKind::Unreadable,
                "7z/rar archives cannot be inspected",
            ),
            (
                "a.rar",
                b"Rar!\x1a\x07\x01\x00rest".to_vec(),
                ProblemKind::Unreadable,
                "7z/rar archives cannot be inspected",
            ),
            (
                "bad.gz",
                vec![
                    0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6, 7, 8, 9,
                ],
                ProblemKind::Unreadable,
                "gzip data is corrupt",
            ),
        ];
        for (name, bytes, kind, why) in cases {
            let x = run_attachment(name, &bytes);
            let want = Problem {
                loc: crate::inspect::extract::Location::new(format!("attachment {name}")),
                kind,
                why: why.into(),
            };
            assert_eq!(x.problems, vec![want], "{name}");
        }
    }
}
