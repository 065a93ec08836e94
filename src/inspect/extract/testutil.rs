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
