//! tar (POSIX ustar and pax, GNU, old v7): every regular member becomes a leaf one nesting
//! level deeper, named by its path (like a zip entry).
//!
//! A tar is not compressed: members are slices of the archive's bytes, so reading them costs
//! no memory and their total is bounded by the input (a `.tar.gz` reaches here as the gzip's
//! content, already counted against the inflate budget). Members are counted against the
//! archive-entry limit and nest one level deeper, like zip entries.
//!
//! Headers are checked (checksum, numeric fields, pax records). Whatever cannot be read to the
//! end — a bad header, a truncated member, a missing end-of-archive marker, a sparse or
//! multi-volume member — is a [`Problem`](super::Problem), never a silent skip. Zero blocks
//! are skipped rather than ending the archive (as `tar --ignore-zeros` reads), so members
//! after an early end marker (concatenated archives) are read too.

use super::{Ctx, Location, ProblemKind, archive, child, sniff};

const BLOCK: usize = 512;

/// One header block.
type Header = [u8; BLOCK];

/// Operator-facing words.
const CORRUPT: &str = "tar archive is corrupt (bad header)";
const TRUNCATED: &str = "tar archive is truncated";
const SPARSE: &str = "sparse tar member cannot be inspected";
const MULTI_VOLUME: &str = "multi-volume tar member cannot be inspected";

/// Does `bytes` start with a tar header? The ustar/GNU magic at offset 257 (its checksum is
/// checked when the archive is read, so a damaged header is reported, not dropped), or an old
/// v7 header (no magic) whose checksum validates.
pub(super) fn is_tar(bytes: &[u8]) -> bool {
    let Some(h) = header_at(bytes, 0) else {
        return false;
    };
    has_magic(h) || (h[0] != 0 && matches!(h[156], 0 | b'0'..=b'7') && checksum_ok(h))
}

/// Extracts a tar leaf: each regular member becomes a leaf one level deeper.
pub(super) fn extract(ctx: &mut Ctx<'_>, loc: &Location, bytes: &[u8], depth: usize) {
    if let Err(e) = ctx.budget.check_depth(depth + 1) {
        ctx.exceeded(loc, e);
        return;
    }
    if let Err(why) = walk(ctx, loc, bytes, depth) {
        ctx.problem(loc, ProblemKind::Unreadable, why);
    }
}

/// What extended headers (GNU `L`, pax `x`) say about the next member.
#[derive(Default)]
struct Pending {
    name: Option<Vec<u8>>,
    size: Option<u64>,
    sparse: bool,
}

/// Reads every header; `Err` is the problem that stopped the walk (limits and the deadline
/// are recorded where they are hit, and end the walk with `Ok`).
fn walk(ctx: &mut Ctx<'_>, loc: &Location, bytes: &[u8], depth: usize) -> Result<(), &'static str> {
    let mut pos = 0usize;
    let mut pending = Pending::default();
    // An end-of-archive marker (a zero block) was seen and nothing but zeros followed it.
    let mut ended = false;
    while pos < bytes.len() {
        let Some(h) = header_at(bytes, pos) else {
            // A partial block: zero padding after the end marker, else a truncated archive.
            let rest = bytes.get(pos..).unwrap_or_default();
            return if ended && rest.iter().all(|&b| b == 0) {
                Ok(())
            } else {
                Err(TRUNCATED)
            };
        };
        if h.iter().all(|&b| b == 0) {
            ended = true;
            pos += BLOCK;
            continue;
        }
        if !checksum_ok(h) {
            return Err(CORRUPT);
        }
        ended = false;
        if !ctx.time_ok(loc) {
            return Ok(());
        }
        let typeflag = h[156];
        let mut data_start = pos + BLOCK;
        if typeflag == b'S' && h[482] != 0 {
            // Old GNU sparse: extension blocks of the sparse map precede the data.
            loop {
                let ext = header_at(bytes, data_start).ok_or(TRUNCATED)?;
                data_start += BLOCK;
                if ext[504] == 0 {
                    break;
                }
            }
        }
        let size = numeric(&h[124..136]).ok_or(CORRUPT)?;
        // Link, device, directory and FIFO headers carry no data whatever their size says.
        let size = match typeflag {
            b'1'..=b'6' => 0,
            b'x' | b'g' | b'L' | b'K' => size,
            _ => pending.size.take().unwrap_or(size),
        };
        let data_end = usize::try_from(size)
            .ok()
            .and_then(|n| data_start.checked_add(n))
            .ok_or(TRUNCATED)?;
        let data = bytes.get(data_start..data_end).ok_or(TRUNCATED)?;
        pos = data_start
            .checked_add(data.len().div_ceil(BLOCK) * BLOCK)
            .ok_or(TRUNCATED)?;
        match typeflag {
            b'L' => {
                pending.name = Some(until_nul(data).to_vec());
                continue;
            }
            b'x' => {
                let pax = Pax::parse(data).ok_or(CORRUPT)?;
                if pax.path.is_some() {
                    pending.name = pax.path;
                }
                pending.size = pax.size.or(pending.size);
                pending.sparse |= pax.sparse;
                continue;
            }
            // GNU long link target, pax global header: nothing we read.
            b'K' | b'g' => continue,
            _ => {}
        }
        if let Err(e) = ctx.budget.take_entry() {
            ctx.exceeded(loc, e);
            return Ok(());
        }
        let raw_name = pending.name.take().unwrap_or_else(|| header_name(h));
        let sparse = std::mem::take(&mut pending.sparse) || typeflag == b'S';
        pending = Pending::default();
        let name = archive::entry_name(&raw_name, 0);
        let member_loc = child(loc, &name);
        match typeflag {
            // Links, devices, directories, FIFOs, GNU dump directories and volume labels.
            b'1'..=b'6' | b'D' | b'V' => {}
            // Old tars mark directories with a trailing slash only.
            0 if name.ends_with('/') => {}
            b'M' => ctx.problem(&member_loc, ProblemKind::Unreadable, MULTI_VOLUME),
            _ if sparse => ctx.problem(&member_loc, ProblemKind::Unreadable, SPARSE),
            _ if !archive::safe_name(&name) => {
                ctx.problem(&member_loc, ProblemKind::Unreadable, "unsafe entry name");
            }
            // Regular files ('0', '\0', contiguous '7') and, as POSIX says, unknown types.
            _ => sniff::leaf(ctx, &member_loc, data, depth + 1, None),
        }
        if ctx.stopped() {
            return Ok(());
        }
    }
    if ended { Ok(()) } else { Err(TRUNCATED) }
}

/// The header block at `pos`, if the input holds all of it.
fn header_at(bytes: &[u8], pos: usize) -> Option<&Header> {
    bytes.get(pos..pos.checked_add(BLOCK)?)?.try_into().ok()
}

/// POSIX `ustar\0` or GNU `ustar ` (followed by ` \0`).
fn has_magic(h: &Header) -> bool {
    &h[257..262] == b"ustar" && matches!(h[262], 0 | b' ')
}

/// The header checksum: the sum of its bytes with the checksum field taken as spaces,
/// unsigned (POSIX) or signed (some old tars).
fn checksum_ok(h: &Header) -> bool {
    let Some(stored) = octal(&h[148..156]) else {
        return false;
    };
    let (mut unsigned, mut signed) = (0u64, 0i64);
    for (i, &b) in h.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += u64::from(b);
        signed += i64::from(b as i8);
    }
    stored == unsigned || i64::try_from(stored).is_ok_and(|s| s == signed)
}

/// A numeric field: octal text (empty = 0), or GNU base-256 for large values.
fn numeric(field: &[u8]) -> Option<u64> {
    match field.split_first() {
        Some((&0x80, rest)) => rest
            .iter()
            .try_fold(0u64, |n, &b| n.checked_mul(256).map(|n| n | u64::from(b))),
        Some((&first, _)) if first & 0x80 != 0 => None,
        _ if until_nul(field).trim_ascii().is_empty() => Some(0),
        _ => octal(field),
    }
}

/// Octal digits, optionally surrounded by spaces and ended by NUL; `None` if there are none
/// or another character occurs.
fn octal(field: &[u8]) -> Option<u64> {
    let digits = until_nul(field).trim_ascii();
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| match b {
        b'0'..=b'7' => n.checked_mul(8)?.checked_add(u64::from(b - b'0')),
        _ => None,
    })
}

/// `bytes` up to the first NUL.
fn until_nul(bytes: &[u8]) -> &[u8] {
    match memchr::memchr(0, bytes) {
        Some(i) => bytes.get(..i).unwrap_or(bytes),
        None => bytes,
    }
}

/// The name in a header: POSIX ustar splits long paths into `prefix/name`; GNU headers use
/// that area for other fields.
fn header_name(h: &Header) -> Vec<u8> {
    let name = until_nul(&h[0..100]);
    let prefix = until_nul(&h[345..500]);
    if h[262] == 0 && has_magic(h) && !prefix.is_empty() {
        [prefix, b"/", name].concat()
    } else {
        name.to_vec()
    }
}

/// The records of a pax extended header that matter to us.
#[derive(Debug, Default, PartialEq)]
struct Pax {
    path: Option<Vec<u8>>,
    size: Option<u64>,
    /// GNU sparse files in pax form (`GNU.sparse.*`): the data is not the file's content.
    sparse: bool,
}

impl Pax {
    /// Parses `"<len> <key>=<value>\n"` records; `None` if one is malformed.
    fn parse(mut data: &[u8]) -> Option<Pax> {
        let mut pax = Pax::default();
        while !data.is_empty() {
            let space = memchr::memchr(b' ', data)?;
            let len: usize = std::str::from_utf8(data.get(..space)?).ok()?.parse().ok()?;
            if len <= space + 1 {
                return None;
            }
            let record = data.get(space + 1..len)?.strip_suffix(b"\n")?;
            let eq = memchr::memchr(b'=', record)?;
            let (key, value) = (record.get(..eq)?, record.get(eq + 1..)?);
            match key {
                b"path" if !value.is_empty() => pax.path = Some(value.to_vec()),
                b"size" => pax.size = Some(std::str::from_utf8(value).ok()?.parse().ok()?),
                k if k.starts_with(b"GNU.sparse.") => pax.sparse = true,
                _ => {}
            }
            data = data.get(len..)?;
        }
        Some(pax)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::budget::{Exceeded, Limits};
    use crate::inspect::extract::testutil::{
        TarEntry, TarFormat, gzip, member_csv, message, problems, rows, run_attachment, run_with,
        tables, tar, tar_with, zip,
    };

    const CSV: &[u8] = b"name,tel\nTaro,090-1111-2222\nHanako,080-3333-4444\n";

    /// One pax record, `"<len> <key>=<value>\n"`, its length counting its own digits.
    fn pax_record(key: &str, value: &str) -> String {
        let body = format!(" {key}={value}\n");
        (1..10)
            .map(|digits| body.len() + digits)
            .find(|total| total.to_string().len() == total - body.len())
            .map(|total| format!("{total}{body}"))
            .unwrap()
    }

    fn problem(at: &str, why: &str) -> Vec<(String, ProblemKind, String)> {
        vec![(at.to_string(), ProblemKind::Unreadable, why.to_string())]
    }

    #[test]
    fn member_csv_in_tar_and_tar_gz() {
        let csv = member_csv();
        let t = tar(&[
            TarEntry::dir("名簿/"),
            TarEntry::file("名簿/会員一覧.csv", csv.as_bytes()),
            TarEntry::link("名簿/latest.csv", "名簿/会員一覧.csv"),
            TarEntry::file("readme.txt", "会員データです".as_bytes()),
        ]);
        let want_rows: Vec<Vec<&str>> = csv.lines().map(|l| l.split(',').collect()).collect();
        assert_eq!(want_rows.len(), 31);
        assert_eq!(want_rows[0], vec!["氏名", "生年月日", "住所", "電話番号"]);
        for (name, bytes, at) in [
            (
                "members.tar",
                t.clone(),
                "attachment members.tar > 名簿/会員一覧.csv",
            ),
            (
                "members.tar.gz",
                gzip("members.tar", &t),
                "attachment members.tar.gz > members.tar > 名簿/会員一覧.csv",
            ),
        ] {
            let x = run_attachment(name, &bytes);
            assert!(x.problems.is_empty(), "{name}: {:?}", problems(&x));
            let found = tables(&x, at);
            assert_eq!(found.len(), 1, "{name}: {:?}", x.items);
            assert_eq!(rows(found[0]), want_rows, "{name}");
            let locs: Vec<String> = x.items.iter().map(|i| i.location().describe()).collect();
            assert_eq!(
                locs.len(),
                3,
                "{name}: body, csv, readme; the link is not read: {locs:?}"
            );
        }
    }

    #[test]
    fn formats_gnu_v7_pax_and_long_names() {
        let long = format!("{}/members.csv", "d".repeat(150));
        let long_entry = |t: &mut Vec<u8>| {
            t.extend(tar_with(
                &[
                    TarEntry::raw(b'L', "././@LongLink", format!("{long}\0").as_bytes()),
                    TarEntry::file(&long[..99], CSV),
                ],
                TarFormat::Gnu,
            ));
        };
        // GNU long name.
        let mut t = Vec::new();
        long_entry(&mut t);
        let x = run_attachment("gnu.tar", &t);
        assert!(x.problems.is_empty(), "{:?}", problems(&x));
        assert_eq!(tables(&x, &format!("gnu.tar > {long}")).len(), 1);
        // pax path and ustar prefix.
        let pax = pax_record("path", &long);
        let t = tar(&[
            TarEntry::raw(
                b'g',
                "pax_global_header",
                pax_record("comment", "created").as_bytes(),
            ),
            TarEntry::raw(b'x', "PaxHeaders/x", pax.as_bytes()),
            TarEntry::file("short.csv", CSV),
            TarEntry::file(&long, CSV),
        ]);
        let x = run_attachment("pax.tar", &t);
        assert!(x.problems.is_empty(), "{:?}", problems(&x));
        assert_eq!(tables(&x, &format!("pax.tar > {long}")).len(), 2);
        // v7: no magic, '\0' type flag.
        let t = tar_with(&[TarEntry::raw(0, "old.csv", CSV)], TarFormat::V7);
        assert_eq!(sniff::sniff(&t), sniff::Kind::Tar);
        let x = run_attachment("old.tar", &t);
        assert!(x.problems.is_empty(), "{:?}", problems(&x));
        assert_eq!(tables(&x, "old.tar > old.csv").len(), 1);
        // Concatenated archives (an end marker in the middle) are read to the end.
        let mut t = tar(&[TarEntry::file("a.csv", CSV)]);
        t.extend(tar(&[TarEntry::file("b.csv", CSV)]));
        let x = run_attachment("cat.tar", &t);
        assert!(x.problems.is_empty(), "{:?}", problems(&x));
        assert_eq!(tables(&x, "cat.tar > b.csv").len(), 1);
    }

    #[test]
    fn broken_archives_are_problems() {
        let good = tar(&[TarEntry::file("a.csv", CSV), TarEntry::file("b.csv", CSV)]);
        // Cut in the middle of a member.
        let x = run_attachment("cut.tar", &good[..BLOCK + 10]);
        assert_eq!(problems(&x), problem("attachment cut.tar", TRUNCATED));
        // Cut at a block boundary after a member: no end-of-archive marker.
        let x = run_attachment("cut.tar", &good[..2 * BLOCK]);
        assert_eq!(problems(&x), problem("attachment cut.tar", TRUNCATED));
        assert_eq!(
            tables(&x, "cut.tar > a.csv").len(),
            1,
            "what is there is read"
        );
        // A damaged second header.
        let mut bad = good.clone();
        bad[2 * BLOCK + 3] ^= 0x20;
        let x = run_attachment("bad.tar", &bad);
        assert_eq!(problems(&x), problem("attachment bad.tar", CORRUPT));
        // A damaged first header is still a tar (by its magic), and corrupt.
        let mut bad = good.clone();
        bad[3] ^= 0x20;
        let x = run_attachment("bad.tar", &bad);
        assert_eq!(problems(&x), problem("attachment bad.tar", CORRUPT));
        // A malformed pax record.
        let t = tar(&[
            TarEntry::raw(b'x', "PaxHeaders/a", b"99 path=a\n"),
            TarEntry::file("a.csv", CSV),
        ]);
        let x = run_attachment("pax.tar", &t);
        assert_eq!(problems(&x), problem("attachment pax.tar", CORRUPT));
        // Sparse, multi-volume and unsafe members; the others are read.
        let t = tar(&[
            TarEntry::raw(b'S', "sparse.csv", CSV),
            TarEntry::raw(
                b'x',
                "PaxHeaders/b",
                pax_record("GNU.sparse.major", "1").as_bytes(),
            ),
            TarEntry::file("pax-sparse.csv", CSV),
            TarEntry::raw(b'M', "rest.csv", CSV),
            TarEntry::file("../evil.csv", CSV),
            TarEntry::file("ok.csv", CSV),
        ]);
        let x = run_attachment("odd.tar", &t);
        let p = |n: &str, why: &str| {
            (
                format!("attachment odd.tar > {n}"),
                ProblemKind::Unreadable,
                why.to_string(),
            )
        };
        assert_eq!(
            problems(&x),
            vec![
                p("sparse.csv", SPARSE),
                p("pax-sparse.csv", SPARSE),
                p("rest.csv", MULTI_VOLUME),
                p("../evil.csv", "unsafe entry name"),
            ]
        );
        assert_eq!(tables(&x, "odd.tar > ok.csv").len(), 1);
    }

    #[test]
    fn limits_apply_to_members() {
        let names: Vec<String> = (0..50).map(|i| format!("f{i}.txt")).collect();
        let entries: Vec<TarEntry<'_>> = names.iter().map(|n| TarEntry::file(n, b"x")).collect();
        let raw = message("hi", &[("many.tar", "application/x-tar", &tar(&entries))]);
        let x = run_with(
            &raw,
            Limits {
                max_archive_entries: 10,
                ..Limits::default()
            },
        );
        assert_eq!(
            problems(&x),
            vec![(
                "attachment many.tar".into(),
                ProblemKind::Limit,
                Exceeded::ArchiveEntries.describe().into()
            )]
        );
        // A tar in a zip in a tar: each level one deeper.
        let inner = tar(&[TarEntry::file("deep.csv", CSV)]);
        let mid = zip(&[("inner.tar", &inner)]);
        let outer = tar(&[TarEntry::file("mid.zip", &mid)]);
        let raw = message("hi", &[("outer.tar", "application/x-tar", &outer)]);
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
                "attachment outer.tar > mid.zip > inner.tar".into(),
                ProblemKind::Limit,
                Exceeded::Depth.describe().into()
            )]
        );
        let x = run_with(&raw, Limits::default());
        assert_eq!(
            tables(&x, "outer.tar > mid.zip > inner.tar > deep.csv").len(),
            1
        );
    }

    #[test]
    fn fields() {
        assert_eq!(octal(b"0000644\0"), Some(0o644));
        assert_eq!(octal(b" 12345 \0"), Some(0o12345));
        assert_eq!(octal(b"\0\0\0"), None);
        assert_eq!(octal(b"0008"), None);
        assert_eq!(octal(b"77777777777777777777777777"), None, "overflow");
        assert_eq!(numeric(b"00000000012\0"), Some(10));
        assert_eq!(numeric(b"\0\0\0\0\0\0\0\0\0\0\0\0"), Some(0));
        assert_eq!(numeric(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]), Some(256));
        assert_eq!(numeric(&[0xFF; 12]), None);
        assert_eq!(numeric(&[0x80, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), None);
        assert_eq!(
            Pax::parse(b"12 path=a/b\n12 size=100\n"),
            Some(Pax {
                path: Some(b"a/b".to_vec()),
                size: Some(100),
                sparse: false
            })
        );
        for bad in [&b"0 path=a\n"[..], b"3 a\n", b"x path=a\n", b"11 path=a\n"] {
            assert_eq!(Pax::parse(bad), None, "{bad:?}");
        }
    }

    /// Truncated, bit-flipped and random tars: results or problems, never a panic; a tar that
    /// lost anything is never read silently.
    #[test]
    fn hostile_tars_never_panic() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let samples = vec![
            tar(&[
                TarEntry::raw(b'x', "PaxHeaders/a", b"12 path=a/b\n"),
                TarEntry::file("x.csv", CSV),
                TarEntry::dir("d/"),
                TarEntry::file("d/y.csv", CSV),
            ]),
            tar_with(
                &[
                    TarEntry::raw(b'L', "././@LongLink", b"long/name.csv\0"),
                    TarEntry::file("long/name.csv", CSV),
                    TarEntry::raw(b'S', "s", CSV),
                ],
                TarFormat::Gnu,
            ),
        ];
        for sample in &samples {
            for cut in 0..sample.len() {
                let x = run_attachment("t.tar", &sample[..cut]);
                if cut >= BLOCK && cut < sample.len() - BLOCK {
                    assert!(!x.problems.is_empty(), "cut at {cut} passed silently");
                }
            }
            for _ in 0..300 {
                let mut flipped = sample.clone();
                for _ in 0..1 + next() % 8 {
                    let i = (next() % flipped.len() as u64) as usize;
                    flipped[i] = next() as u8;
                }
                let _ = run_attachment("f.tar", &flipped);
            }
        }
        // Random blocks behind a valid first header, and headers with random fields whose
        // checksum is made to validate.
        for _ in 0..300 {
            let mut t = samples[0][..BLOCK].to_vec();
            let n = (next() % 4096) as usize;
            t.extend((0..n).map(|_| next() as u8));
            let _ = run_attachment("r.tar", &t);
            let mut h = [0u8; BLOCK];
            for b in h.iter_mut() {
                *b = next() as u8;
            }
            h[257..263].copy_from_slice(b"ustar\0");
            h[148..156].copy_from_slice(b"        ");
            let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
            h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
            let mut t = h.to_vec();
            t.extend((0..n).map(|_| next() as u8));
            let _ = run_attachment("h.tar", &t);
        }
    }

    #[test]
    fn sniffing() {
        let t = tar(&[TarEntry::file("a.csv", CSV)]);
        assert!(is_tar(&t));
        assert!(!is_tar(&t[..BLOCK - 1]));
        // v7 needs a valid checksum.
        let mut v7 = tar_with(&[TarEntry::raw(0, "old.csv", CSV)], TarFormat::V7);
        assert!(is_tar(&v7));
        v7[0] ^= 1;
        assert!(!is_tar(&v7));
        // Text is not a tar.
        assert!(!is_tar("名前,電話\n".repeat(100).as_bytes()));
        assert!(!is_tar(&[0u8; 2 * BLOCK]));
    }
}
