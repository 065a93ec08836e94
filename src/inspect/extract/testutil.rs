//! Fixture builders shared by the extraction tests.

use std::io::{Cursor, Write};

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

use super::{Extracted, Item, ProblemKind, extract};
use crate::inspect::budget::{Budget, Limits};

/// A zip of `(name, bytes)` entries, deflated.
pub(crate) fn zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
    zip_with(entries, CompressionMethod::Deflated)
}

/// A zip of `(name, bytes)` entries with `method`.
pub(crate) fn zip_with(entries: &[(&str, &[u8])], method: CompressionMethod) -> Vec<u8> {
    let mut w = ZipWriter::new(Cursor::new(Vec::new()));
    let opts = SimpleFileOptions::default().compression_method(method);
    for (name, bytes) in entries {
        w.start_file(*name, opts).unwrap();
        w.write_all(bytes).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// A MIME message with a text body and base64 attachments `(name, content-type, bytes)`.
pub(crate) fn message(body: &str, attachments: &[(&str, &str, &[u8])]) -> Vec<u8> {
    use base64::Engine;
    let mut m = String::from(
        "From: a@example.jp\r\nTo: b@example.com\r\nSubject: t\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"BOUNDARY\"\r\n\r\n\
         --BOUNDARY\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n",
    );
    m.push_str(body);
    m.push_str("\r\n");
    for (name, ctype, bytes) in attachments {
        let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
        m.push_str(&format!(
            "--BOUNDARY\r\nContent-Type: {ctype}\r\nContent-Disposition: attachment; filename=\"{name}\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n"
        ));
        for line in b64.as_bytes().chunks(76) {
            m.push_str(std::str::from_utf8(line).unwrap());
            m.push_str("\r\n");
        }
    }
    m.push_str("--BOUNDARY--\r\n");
    m.into_bytes()
}

/// Parses `raw` and extracts it with `limits`.
pub(crate) fn run_with(raw: &[u8], limits: Limits) -> Extracted {
    let msg = mail_parser::MessageParser::default().parse(raw).unwrap();
    extract(&msg, &Budget::new(limits))
}

/// Parses `raw` and extracts it with the default limits.
pub(crate) fn run(raw: &[u8]) -> Extracted {
    run_with(raw, Limits::default())
}

/// Extracts one attachment `name` holding `bytes`.
pub(crate) fn run_attachment(name: &str, bytes: &[u8]) -> Extracted {
    run(&message(
        "hello",
        &[(name, "application/octet-stream", bytes)],
    ))
}

/// The tables whose location (`part / sub`) contains `at`.
pub(crate) fn tables<'e>(x: &'e Extracted, at: &str) -> Vec<&'e Vec<Vec<String>>> {
    x.items
        .iter()
        .filter_map(|i| match i {
            Item::Table { loc, rows } if loc.describe().contains(at) => Some(rows),
            _ => None,
        })
        .collect()
}

/// The texts whose location contains `at`.
pub(crate) fn texts<'e>(x: &'e Extracted, at: &str) -> Vec<&'e str> {
    x.items
        .iter()
        .filter_map(|i| match i {
            Item::Text { loc, text, .. } if loc.describe().contains(at) => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

/// The problems as `(location, kind, why)`, for assertions and failure messages.
pub(crate) fn problems(x: &Extracted) -> Vec<(String, ProblemKind, String)> {
    x.problems
        .iter()
        .map(|p| (p.loc.describe(), p.kind, p.why.clone()))
        .collect()
}

/// Rows as `&str` for comparisons.
pub(crate) fn rows(table: &[Vec<String>]) -> Vec<Vec<&str>> {
    table
        .iter()
        .map(|r| r.iter().map(String::as_str).collect())
        .collect()
}

/// One entry of [`stored_zip`]: raw name bytes, data, general-purpose flags.
pub(crate) struct RawEntry<'a> {
    pub(crate) name: &'a [u8],
    pub(crate) data: &'a [u8],
    pub(crate) flags: u16,
}

/// A stored (uncompressed) zip written by hand, for what ZipWriter will not write: raw
/// non-UTF-8 names without the UTF-8 flag, the encryption flag, entries sharing data.
/// `aliases` adds central-directory entries `(name, index of the entry whose data they
/// reuse)`.
pub(crate) fn stored_zip(entries: &[RawEntry<'_>], aliases: &[(&[u8], usize)]) -> Vec<u8> {
    fn common(z: &mut Vec<u8>, e: &RawEntry<'_>) {
        let crc = crc32fast::hash(e.data);
        z.extend_from_slice(&e.flags.to_le_bytes());
        z.extend_from_slice(&[0, 0, 0, 0, 0x21, 0]); // stored, time, date
        z.extend_from_slice(&crc.to_le_bytes());
        z.extend_from_slice(&(e.data.len() as u32).to_le_bytes());
        z.extend_from_slice(&(e.data.len() as u32).to_le_bytes());
    }
    let mut z = Vec::new();
    let mut offsets = Vec::new();
    for e in entries {
        offsets.push(z.len() as u32);
        z.extend_from_slice(b"PK\x03\x04\x14\x00");
        common(&mut z, e);
        z.extend_from_slice(&(e.name.len() as u16).to_le_bytes());
        z.extend_from_slice(&[0, 0]);
        z.extend_from_slice(e.name);
        z.extend_from_slice(e.data);
    }
    let cd = z.len();
    let central: Vec<(&[u8], usize)> = (0..entries.len())
        .map(|i| (entries[i].name, i))
        .chain(aliases.iter().copied())
        .collect();
    for (name, i) in &central {
        let e = &entries[*i];
        z.extend_from_slice(b"PK\x01\x02\x14\x00\x14\x00");
        common(&mut z, e);
        z.extend_from_slice(&(name.len() as u16).to_le_bytes());
        z.extend_from_slice(&[0; 12]); // extra, comment, disk, internal, external
        z.extend_from_slice(&offsets[*i].to_le_bytes());
        z.extend_from_slice(name);
    }
    let cd_len = z.len() - cd;
    z.extend_from_slice(b"PK\x05\x06\0\0\0\0");
    z.extend_from_slice(&(central.len() as u16).to_le_bytes());
    z.extend_from_slice(&(central.len() as u16).to_le_bytes());
    z.extend_from_slice(&(cd_len as u32).to_le_bytes());
    z.extend_from_slice(&(cd as u32).to_le_bytes());
    z.extend_from_slice(&[0, 0]);
    z
}

/// A member list as CSV: the header 氏名,生年月日,住所,電話番号 and 30 distinct people.
pub(crate) fn member_csv() -> String {
    const SEI: [&str; 6] = ["佐藤", "鈴木", "高橋", "田中", "伊藤", "渡辺"];
    const MEI: [&str; 5] = ["太郎", "花子", "健一", "美咲", "翔太"];
    const CITY: [&str; 3] = ["東京都千代田区", "大阪府大阪市北区", "愛知県名古屋市中区"];
    let mut csv = String::from("氏名,生年月日,住所,電話番号\n");
    for i in 0..30usize {
        csv.push_str(&format!(
            "{} {},{}-{:02}-{:02},{}{}-{}-{},090-{:04}-{:04}\n",
            SEI[i % 6],
            MEI[i / 6],
            1960 + i,
            i % 12 + 1,
            i % 28 + 1,
            CITY[i % 3],
            i % 5 + 1,
            i + 2,
            i % 9 + 1,
            1200 + i * 7,
            5000 + i * 13,
        ));
    }
    csv
}

/// A gzip member named `name` holding `data`.
pub(crate) fn gzip(name: &str, data: &[u8]) -> Vec<u8> {
    let mut w = flate2::GzBuilder::new()
        .filename(name)
        .mtime(0)
        .write(Vec::new(), flate2::Compression::default());
    w.write_all(data).unwrap();
    w.finish().unwrap()
}

/// The header layout of [`tar_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TarFormat {
    /// POSIX ustar (`ustar\0` `00`), long paths split into prefix and name.
    Ustar,
    /// GNU (`ustar  \0`), names cut at 100 bytes (long names need an `L` entry).
    Gnu,
    /// Old Unix v7: no magic, no owner names.
    V7,
}

/// One member of [`tar_with`]: its type flag, name, link target and data.
pub(crate) struct TarEntry<'a> {
    pub(crate) kind: u8,
    pub(crate) name: &'a str,
    pub(crate) link: &'a str,
    pub(crate) data: &'a [u8],
}

impl<'a> TarEntry<'a> {
    pub(crate) fn file(name: &'a str, data: &'a [u8]) -> TarEntry<'a> {
        TarEntry::raw(b'0', name, data)
    }

    pub(crate) fn dir(name: &'a str) -> TarEntry<'a> {
        TarEntry::raw(b'5', name, b"")
    }

    /// A hard link to `target`.
    pub(crate) fn link(name: &'a str, target: &'a str) -> TarEntry<'a> {
        TarEntry {
            kind: b'1',
            name,
            link: target,
            data: b"",
        }
    }

    /// Any type flag with data (`L`, `x`, `g`, `S`…).
    pub(crate) fn raw(kind: u8, name: &'a str, data: &'a [u8]) -> TarEntry<'a> {
        TarEntry {
            kind,
            name,
            link: "",
            data,
        }
    }
}

/// A POSIX ustar archive of `entries`.
pub(crate) fn tar(entries: &[TarEntry<'_>]) -> Vec<u8> {
    tar_with(entries, TarFormat::Ustar)
}

/// A tar archive written by hand, as GNU tar lays it out: a 512-byte header per entry (with
/// its checksum), the data padded to 512 bytes, two zero blocks at the end.
pub(crate) fn tar_with(entries: &[TarEntry<'_>], format: TarFormat) -> Vec<u8> {
    fn put(h: &mut [u8; 512], at: usize, bytes: &[u8]) {
        h[at..at + bytes.len()].copy_from_slice(bytes);
    }
    let mut out = Vec::new();
    for e in entries {
        let mut h = [0u8; 512];
        let (prefix, name) = match e.name.rfind('/') {
            Some(i) if format == TarFormat::Ustar && e.name.len() > 100 => {
                (&e.name[..i], &e.name[i + 1..])
            }
            _ => ("", e.name),
        };
        let name = &name.as_bytes()[..name.len().min(100)];
        put(&mut h, 0, name);
        put(&mut h, 100, b"0000644\0");
        put(&mut h, 108, b"0001750\0");
        put(&mut h, 116, b"0001750\0");
        put(&mut h, 124, format!("{:011o}\0", e.data.len()).as_bytes());
        put(&mut h, 136, b"14760346400\0");
        h[156] = e.kind;
        put(&mut h, 157, e.link.as_bytes());
        match format {
            TarFormat::Ustar => {
                put(&mut h, 257, b"ustar\x0000");
                put(&mut h, 345, prefix.as_bytes());
            }
            TarFormat::Gnu => put(&mut h, 257, b"ustar  \0"),
            TarFormat::V7 => {}
        }
        if format != TarFormat::V7 {
            put(&mut h, 265, b"user");
            put(&mut h, 297, b"staff");
        }
        put(&mut h, 148, b"        ");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        put(&mut h, 148, format!("{sum:06o}\0 ").as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(e.data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}
