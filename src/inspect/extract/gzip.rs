//! gzip (`1f 8b`): the member's content becomes a leaf one nesting level deeper.
//!
//! The member's raw deflate stream is wrapped in a one-entry zip built in memory and read
//! through [`archive::read_entry`], so it gets exactly the budget accounting of any zip entry
//! (inflated bytes, ratio) and the zip crate checks the gzip CRC-32.

use std::io::Cursor;

use zip::ZipArchive;

use super::archive::{self, EntryError};
use super::{Ctx, Location, ProblemKind, child, sniff};

/// Extracts a gzip leaf: its content becomes a leaf one level deeper, named by the gzip
/// header's file name when there is one.
pub(super) fn extract(ctx: &mut Ctx<'_>, loc: &Location, bytes: &[u8], depth: usize) {
    if let Err(e) = ctx.budget.check_depth(depth + 1) {
        ctx.exceeded(loc, e);
        return;
    }
    let Some(member) = GzipMember::parse(bytes) else {
        ctx.problem(
            loc,
            ProblemKind::Unreadable,
            "gzip file is corrupt or truncated",
        );
        return;
    };
    let wrapped = member.as_zip();
    let len = wrapped.len() as u64;
    let result = ZipArchive::new(Cursor::new(wrapped.as_slice()))
        .map_err(|_| EntryError::Corrupt)
        .and_then(|mut a| archive::read_entry(ctx.budget, &mut a, 0, len));
    let inner_loc = child(loc, member.name.as_deref().unwrap_or("decompressed"));
    match result {
        Ok(inflated) => sniff::leaf(ctx, &inner_loc, &inflated, depth + 1, None),
        Err(EntryError::Corrupt) => {
            ctx.problem(loc, ProblemKind::Unreadable, "gzip data is corrupt")
        }
        Err(e) => archive::report(ctx, loc, e),
    }
}

/// The parts of a gzip member (RFC 1952) that we need.
struct GzipMember<'a> {
    name: Option<String>,
    deflate: &'a [u8],
    crc32: u32,
    size: u32,
}

impl<'a> GzipMember<'a> {
    fn parse(b: &'a [u8]) -> Option<GzipMember<'a>> {
        const FHCRC: u8 = 0x02;
        const FEXTRA: u8 = 0x04;
        const FNAME: u8 = 0x08;
        const FCOMMENT: u8 = 0x10;
        let (&cm, &flg) = (b.get(2)?, b.get(3)?);
        if cm != 8 {
            return None;
        }
        let mut pos = 10usize;
        if flg & FEXTRA != 0 {
            let xlen = u16::from_le_bytes([*b.get(pos)?, *b.get(pos + 1)?]) as usize;
            pos = pos.checked_add(2 + xlen)?;
        }
        let mut name = None;
        if flg & FNAME != 0 {
            let end = pos + memchr::memchr(0, b.get(pos..)?)?;
            // RFC 1952 says ISO 8859-1; windows-1252 is its superset in encoding_rs.
            let raw = b.get(pos..end)?;
            name = Some(
                encoding_rs::WINDOWS_1252
                    .decode_without_bom_handling(raw)
                    .0
                    .into_owned(),
            );
            pos = end + 1;
        }
        if flg & FCOMMENT != 0 {
            pos = pos + memchr::memchr(0, b.get(pos..)?)? + 1;
        }
        if flg & FHCRC != 0 {
            pos += 2;
        }
        let trailer_at = b.len().checked_sub(8)?;
        let deflate = b.get(pos..trailer_at)?;
        let trailer = b.get(trailer_at..)?;
        let crc32 = u32::from_le_bytes(trailer.get(..4)?.try_into().ok()?);
        let size = u32::from_le_bytes(trailer.get(4..8)?.try_into().ok()?);
        Some(GzipMember {
            name: name.filter(|n| !n.is_empty()),
            deflate,
            crc32,
            size,
        })
    }

    /// A one-entry zip (method 8) holding the member's deflate stream.
    fn as_zip(&self) -> Vec<u8> {
        let name = b"gz";
        let csize = u32::try_from(self.deflate.len()).unwrap_or(u32::MAX);
        let mut z = Vec::with_capacity(self.deflate.len() + 128);
        let common = |z: &mut Vec<u8>| {
            for v in [8u16, 0, 0x21] {
                // method deflate, time 00:00, date 1980-01-01
                z.extend_from_slice(&v.to_le_bytes());
            }
            z.extend_from_slice(&self.crc32.to_le_bytes());
            z.extend_from_slice(&csize.to_le_bytes());
            z.extend_from_slice(&self.size.to_le_bytes());
            z.extend_from_slice(&(name.len() as u16).to_le_bytes());
            z.extend_from_slice(&0u16.to_le_bytes());
        };
        z.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        z.extend_from_slice(&20u16.to_le_bytes());
        z.extend_from_slice(&0u16.to_le_bytes());
        common(&mut z);
        z.extend_from_slice(name);
        z.extend_from_slice(self.deflate);
        let cd_start = z.len();
        z.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        z.extend_from_slice(&20u16.to_le_bytes());
        z.extend_from_slice(&20u16.to_le_bytes());
        z.extend_from_slice(&0u16.to_le_bytes());
        common(&mut z);
        z.extend_from_slice(&[0; 10]); // comment len, disk, internal attrs, external attrs
        z.extend_from_slice(&0u32.to_le_bytes()); // local header offset
        z.extend_from_slice(name);
        let cd_len = z.len() - cd_start;
        z.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
        z.extend_from_slice(&[0; 4]);
        z.extend_from_slice(&1u16.to_le_bytes());
        z.extend_from_slice(&1u16.to_le_bytes());
        z.extend_from_slice(&u32::try_from(cd_len).unwrap_or(u32::MAX).to_le_bytes());
        z.extend_from_slice(&u32::try_from(cd_start).unwrap_or(u32::MAX).to_le_bytes());
        z.extend_from_slice(&0u16.to_le_bytes());
        z
    }
}

#[cfg(test)]
mod tests {
    use crate::inspect::extract::testutil::{problems, run_attachment, tables, zip};
    use std::io::{Cursor, Read};
    use zip::ZipArchive;

    const CSV: &[u8] = b"name,tel\nTaro,090-1111-2222\nHanako,080-3333-4444\n";

    #[test]
    fn gzip_is_decompressed_and_typed() {
        let mut z = ZipArchive::new(Cursor::new(zip(&[("x", CSV)]))).unwrap();
        let mut deflate = Vec::new();
        z.by_index_raw(0)
            .unwrap()
            .read_to_end(&mut deflate)
            .unwrap();
        let mut gz = vec![0x1f, 0x8b, 8, 0x08, 0, 0, 0, 0, 0, 3];
        gz.extend_from_slice(b"members.csv\0");
        gz.extend_from_slice(&deflate);
        gz.extend_from_slice(&crc32fast::hash(CSV).to_le_bytes());
        gz.extend_from_slice(&(CSV.len() as u32).to_le_bytes());
        let x = run_attachment("members.csv.gz", &gz);
        assert!(x.problems.is_empty(), "{:?}", problems(&x));
        assert_eq!(
            tables(&x, "attachment members.csv.gz > members.csv").len(),
            1
        );
        // A wrong CRC is caught.
        let n = gz.len();
        gz[n - 8] ^= 0xff;
        let x = run_attachment("members.csv.gz", &gz);
        assert_eq!(problems(&x)[0].2, "gzip data is corrupt");
    }
}
