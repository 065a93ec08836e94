//! Typing a leaf by its magic bytes (never by its name or declared type) and handing it to
//! the extractor for that format.
//!
//! Owns the decision "what is this file"; must not parse any format itself.

use super::{Ctx, Location, ProblemKind, TextKind, archive, gzip, html, ole, pdf, tar, text};

/// What a leaf's first bytes say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// `PK\x03\x04` (or an empty archive `PK\x05\x06`): OOXML, ODF or a plain archive.
    Zip,
    /// `D0 CF 11 E0 A1 B1 1A E1`: xls, doc, encrypted OOXML.
    Ole,
    Pdf,
    Gzip,
    /// POSIX/GNU tar (`ustar` at 257), or an old v7 header whose checksum validates.
    Tar,
    SevenZip,
    Rar,
    /// Compressed or archived formats we have no reader for: uninspectable.
    Bzip2,
    Xz,
    Zstd,
    Lzh,
    Cab,
    /// Unix compress (`.Z`), lzip, lz4: named for the operator.
    Compressed(&'static str),
    /// Images carry no text we can read.
    Image,
    /// Anything else: text if it decodes as text, else unknown binary.
    Other,
}

/// Types `bytes` by magic.
pub(super) fn sniff(bytes: &[u8]) -> Kind {
    const OLE: &[u8] = &[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];
    if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
        Kind::Zip
    } else if bytes.starts_with(OLE) {
        Kind::Ole
    } else if tar::is_tar(bytes) {
        // Before PDF: a tar whose first member is a PDF has `%PDF-` at offset 512.
        Kind::Tar
    } else if is_pdf(bytes) {
        Kind::Pdf
    } else if bytes.starts_with(&[0x1F, 0x8B]) {
        Kind::Gzip
    } else if bytes.starts_with(&[0x37, 0x7A, 0xBC, 0xAF, 0x27, 0x1C]) {
        Kind::SevenZip
    } else if bytes.starts_with(b"Rar!\x1a\x07") {
        Kind::Rar
    } else if is_bzip2(bytes) {
        Kind::Bzip2
    } else if bytes.starts_with(&[0xFD, b'7', b'z', b'X', b'Z', 0]) {
        Kind::Xz
    } else if bytes.starts_with(&[0x28, 0xB5, 0x2F, 0xFD]) {
        Kind::Zstd
    } else if is_lzh(bytes) {
        Kind::Lzh
    } else if bytes.starts_with(b"MSCF\0\0\0\0") {
        Kind::Cab
    } else if bytes.starts_with(&[0x1F, 0x9D]) || bytes.starts_with(&[0x1F, 0xA0]) {
        Kind::Compressed("compress (.Z)")
    } else if bytes.starts_with(b"LZIP\x01") {
        Kind::Compressed("lzip")
    } else if bytes.starts_with(&[0x04, 0x22, 0x4D, 0x18])
        || bytes.starts_with(&[0x02, 0x21, 0x4C, 0x18])
    {
        Kind::Compressed("lz4")
    } else if is_image(bytes) {
        Kind::Image
    } else {
        Kind::Other
    }
}

/// `%PDF-` at the start, or within the first 1024 bytes as readers accept.
fn is_pdf(bytes: &[u8]) -> bool {
    let head = bytes.get(..1024).unwrap_or(bytes);
    memchr::memmem::find(head, b"%PDF-").is_some()
}

/// `BZh` + block size `1`..`9` + the first block's magic (the digits of pi).
fn is_bzip2(b: &[u8]) -> bool {
    b.starts_with(b"BZh")
        && b.get(3).is_some_and(|c| (b'1'..=b'9').contains(c))
        && b.get(4..10) == Some(&[0x31, 0x41, 0x59, 0x26, 0x53, 0x59])
}

/// LHA/LZH: the method id `-lh?-` (or LArc's `-lz?-`) at offset 2 of the first header.
fn is_lzh(b: &[u8]) -> bool {
    matches!(b.get(2..5), Some(b"-lh" | b"-lz"))
        && b.get(5)
            .is_some_and(|c| c.is_ascii_digit() || c.is_ascii_lowercase())
        && b.get(6) == Some(&b'-')
}

fn is_image(b: &[u8]) -> bool {
    b.starts_with(b"\x89PNG\r\n\x1a\n")
        || b.starts_with(&[0xFF, 0xD8, 0xFF])
        || b.starts_with(b"GIF87a")
        || b.starts_with(b"GIF89a")
        || (b.starts_with(b"RIFF") && b.get(8..12) == Some(b"WEBP"))
        || b.starts_with(b"II*\0")
        || b.starts_with(b"MM\0*")
        || (b.starts_with(&[0, 0, 1, 0]) && b.get(4..6).is_some_and(|n| n != [0, 0]))
        || is_bmp(b)
}

/// "BM" alone would swallow text starting with those letters: also require a known DIB
/// header size.
fn is_bmp(b: &[u8]) -> bool {
    b.starts_with(b"BM")
        && b.get(14..18)
            .and_then(|h| <[u8; 4]>::try_from(h).ok())
            .is_some_and(|h| matches!(u32::from_le_bytes(h), 12 | 40 | 52 | 56 | 64 | 108 | 124))
}

/// Extracts one leaf (an attachment, an archive entry, a decompressed file) at `loc`.
/// `depth` is the leaf's nesting depth; containers check `depth + 1` before opening.
/// `charset` is the declared charset, used only for text.
pub(super) fn leaf(
    ctx: &mut Ctx<'_>,
    loc: &Location,
    bytes: &[u8],
    depth: usize,
    charset: Option<&str>,
) {
    if !ctx.time_ok(loc) {
        return;
    }
    let kind = sniff(bytes);
    match kind {
        Kind::Zip => archive::zip(ctx, loc, bytes, depth),
        Kind::Ole => ole::extract(ctx, loc, bytes),
        Kind::Pdf => pdf::extract(ctx, loc, bytes),
        Kind::Gzip => gzip::extract(ctx, loc, bytes, depth),
        Kind::Tar => tar::extract(ctx, loc, bytes, depth),
        Kind::SevenZip
        | Kind::Rar
        | Kind::Bzip2
        | Kind::Xz
        | Kind::Zstd
        | Kind::Lzh
        | Kind::Cab
        | Kind::Compressed(_) => {
            ctx.problem(loc, ProblemKind::Unreadable, no_reader(kind));
        }
        Kind::Image => {}
        Kind::Other => text_leaf(ctx, loc, bytes, charset),
    }
}

/// Why a format we have no reader for cannot be inspected, naming the format.
fn no_reader(kind: Kind) -> String {
    let what = match kind {
        Kind::SevenZip | Kind::Rar => "7z/rar archives",
        Kind::Bzip2 => "bzip2-compressed files",
        Kind::Xz => "xz-compressed files",
        Kind::Zstd => "zstd-compressed files",
        Kind::Lzh => "lzh/lha archives",
        Kind::Cab => "cab archives",
        Kind::Compressed(format) => {
            return format!("{format}-compressed files cannot be inspected");
        }
        _ => "files of this format",
    };
    format!("{what} cannot be inspected")
}

/// A leaf that is not a known binary format: text (plain, CSV/TSV, HTML, XML, calendar) or
/// unknown binary, which is skipped.
fn text_leaf(ctx: &mut Ctx<'_>, loc: &Location, bytes: &[u8], charset: Option<&str>) {
    let Some(decoded) = text::decode_if_text(bytes, charset) else {
        return;
    };
    let head: String = decoded
        .trim_start_matches('\u{feff}')
        .trim_start()
        .chars()
        .take(256)
        .collect::<String>()
        .to_ascii_lowercase();
    if head.starts_with("begin:vcalendar") {
        ctx.text(loc.clone(), TextKind::Calendar, decoded);
    } else if html::looks_like_html(&head) {
        let page = html::extract(&decoded);
        ctx.text(loc.with_sub("text"), TextKind::Document, page.text);
        for (i, rows) in page.tables.into_iter().enumerate() {
            ctx.table(loc.with_sub(format!("table {}", i + 1)), rows);
        }
    } else if head.starts_with("<?xml") {
        // Markup without a reader of its own (SpreadsheetML 2003, SVG, exports): its text.
        let page = html::extract(&decoded);
        ctx.text(loc.clone(), TextKind::Document, page.text);
    } else if let Some(delim) = text::sniff_delimiter(&decoded) {
        match text::parse_table(&decoded, delim, ctx.budget) {
            Ok(rows) => ctx.table(loc.clone(), rows),
            Err(e) => ctx.exceeded(loc, e),
        }
    } else {
        ctx.text(loc.clone(), TextKind::Document, decoded);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_flavours() {
        use crate::inspect::extract::testutil::{run_attachment, tables, texts};
        use crate::inspect::extract::{Item, TextKind};
        let html = "<!DOCTYPE html><html><body><table><tr><td>氏名</td></tr><tr><td>山田</td></tr></table></body></html>";
        let x = run_attachment("list.html", html.as_bytes());
        assert_eq!(tables(&x, "attachment list.html / table 1").len(), 1);
        assert_eq!(texts(&x, "attachment list.html / text"), vec!["氏名\n山田"]);
        let x = run_attachment(
            "a.ics",
            b"BEGIN:VCALENDAR\r\nATTENDEE:mailto:a@example.com\r\nEND:VCALENDAR\r\n",
        );
        assert!(x.items.iter().any(|i| matches!(
            i,
            Item::Text {
                kind: TextKind::Calendar,
                ..
            }
        )));
        let x = run_attachment(
            "a.xml",
            "<?xml version=\"1.0\"?><r><name>山田</name></r>".as_bytes(),
        );
        assert_eq!(texts(&x, "attachment a.xml"), vec!["山田"]);
        let x = run_attachment("blob.bin", &[0u8, 1, 2, 3, 0xff, 0xfe, 7, 8]);
        assert!(
            x.items.len() == 1 && x.problems.is_empty(),
            "unknown binary is skipped: {:?}",
            x.items
        );
    }

    /// Truncated and bit-flipped documents of every format: problems, never a panic.
    #[test]
    fn hostile_inputs_never_panic() {
        use crate::inspect::extract::testutil::{run_attachment, zip};
        let ct: &[u8] = b"<Types/>";
        let docx = zip(&[
            ("[Content_Types].xml", ct),
            ("word/document.xml", b"<w:document><w:body><w:p><w:r><w:t>x</w:t></w:r></w:p><w:tbl><w:tr><w:tc><w:p/></w:tc></w:tr></w:tbl></w:body></w:document>"),
        ]);
        let mut xlsx_book = rust_xlsxwriter::Workbook::new();
        let ws = xlsx_book.add_worksheet();
        for r in 0..20u32 {
            ws.write_string(r, 0, "山田").unwrap();
            ws.write_number(r, 1, f64::from(r)).unwrap();
        }
        let xlsx = xlsx_book.save_to_buffer().unwrap();
        let samples: Vec<Vec<u8>> = vec![
            docx,
            xlsx,
            include_bytes!("../../../tests/fixtures/formats/members.xls").to_vec(),
            include_bytes!("../../../tests/fixtures/formats/members.pdf").to_vec(),
        ];
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for sample in &samples {
            for _ in 0..12 {
                let cut = (next() % sample.len() as u64) as usize;
                let _ = run_attachment("t", &sample[..cut]);
                let mut flipped = sample.clone();
                for _ in 0..8 {
                    let i = (next() % flipped.len() as u64) as usize;
                    flipped[i] ^= 1 << (next() % 8);
                }
                let _ = run_attachment("f", &flipped);
            }
        }
    }

    /// Formats we have no reader for are held as uninspectable, naming the format.
    #[test]
    fn unreadable_formats_are_problems() {
        use crate::inspect::extract::testutil::{member_csv, problems, run_attachment};
        let csv = member_csv();
        let cases: &[(&str, &[u8], &str)] = &[
            (
                "members.csv.bz2",
                b"BZh91AY&SY",
                "bzip2-compressed files cannot be inspected",
            ),
            (
                "members.tar.xz",
                &[0xFD, b'7', b'z', b'X', b'Z', 0],
                "xz-compressed files cannot be inspected",
            ),
            (
                "members.csv.zst",
                &[0x28, 0xB5, 0x2F, 0xFD],
                "zstd-compressed files cannot be inspected",
            ),
            (
                "members.lzh",
                b"\x2a\x5a-lh5-",
                "lzh/lha archives cannot be inspected",
            ),
            (
                "members.cab",
                b"MSCF\0\0\0\0",
                "cab archives cannot be inspected",
            ),
            (
                "members.csv.Z",
                &[0x1F, 0x9D, 0x90],
                "compress (.Z)-compressed files cannot be inspected",
            ),
            (
                "members.csv.lz",
                b"LZIP\x01\x0c",
                "lzip-compressed files cannot be inspected",
            ),
            (
                "members.csv.lz4",
                &[0x04, 0x22, 0x4D, 0x18, 0x64],
                "lz4-compressed files cannot be inspected",
            ),
        ];
        for (name, magic, why) in cases {
            // The magic, then what a compressor would leave readable: nothing may be read.
            let mut bytes = magic.to_vec();
            bytes.extend_from_slice(csv.as_bytes());
            let x = run_attachment(name, &bytes);
            assert_eq!(
                problems(&x),
                vec![(
                    format!("attachment {name}"),
                    ProblemKind::Unreadable,
                    why.to_string()
                )]
            );
            assert_eq!(x.items.len(), 1, "{name}: only the body: {:?}", x.items);
        }
    }

    #[test]
    fn magic_table() {
        let cases: &[(&[u8], Kind)] = &[
            (b"PK\x03\x04rest", Kind::Zip),
            (b"PK\x05\x06\0\0", Kind::Zip),
            (
                &[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1, 0],
                Kind::Ole,
            ),
            (b"%PDF-1.7\n", Kind::Pdf),
            (b"\r\n%PDF-1.4", Kind::Pdf),
            (&[0x1F, 0x8B, 8, 0], Kind::Gzip),
            (&[0x37, 0x7A, 0xBC, 0xAF, 0x27, 0x1C, 0, 4], Kind::SevenZip),
            (b"Rar!\x1a\x07\x01\x00", Kind::Rar),
            (b"BZh91AY&SY\x00\x01", Kind::Bzip2),
            (b"BZh11AY&SY", Kind::Bzip2),
            (b"BZh01AY&SY", Kind::Other),
            (b"BZh9 is not a block", Kind::Other),
            (&[0xFD, b'7', b'z', b'X', b'Z', 0, 0, 4], Kind::Xz),
            (&[0x28, 0xB5, 0x2F, 0xFD, 0x24, 0x10], Kind::Zstd),
            (b"\x2a\x5a-lh5-\x10\x00\x00\x00", Kind::Lzh),
            (b"\x24\x00-lh0-", Kind::Lzh),
            (b"ab-lh5 text", Kind::Other),
            (b"MSCF\0\0\0\0\x10\x27\0\0", Kind::Cab),
            (b"MSCF report", Kind::Other),
            (&[0x1F, 0x9D, 0x90, 0], Kind::Compressed("compress (.Z)")),
            (b"LZIP\x01\x0c", Kind::Compressed("lzip")),
            (b"LZIP is a word", Kind::Other),
            (&[0x04, 0x22, 0x4D, 0x18, 0x64], Kind::Compressed("lz4")),
            (b"\x89PNG\r\n\x1a\n....", Kind::Image),
            (&[0xFF, 0xD8, 0xFF, 0xE0], Kind::Image),
            (b"GIF89a..", Kind::Image),
            (b"RIFF\0\0\0\0WEBPVP8 ", Kind::Image),
            (b"BMI report 2024, members list follows", Kind::Other),
            (b"name,age\nTaro,30\n", Kind::Other),
            (b"", Kind::Other),
            (b"P", Kind::Other),
        ];
        for (bytes, kind) in cases {
            assert_eq!(sniff(bytes), *kind, "{bytes:?}");
        }
        let tar = crate::inspect::extract::testutil::tar(&[
            crate::inspect::extract::testutil::TarEntry::file("a.pdf", b"%PDF-1.7\n"),
        ]);
        assert_eq!(sniff(&tar), Kind::Tar, "a tar of a PDF is a tar");
        let mut bmp = b"BM".to_vec();
        bmp.extend_from_slice(&[0; 12]);
        bmp.extend_from_slice(&40u32.to_le_bytes());
        assert_eq!(sniff(&bmp), Kind::Image);
    }
}
