//! Legacy Excel (BIFF5/BIFF8 `.xls`) through calamine, behind a pre-scan of the BIFF records.
//!
//! Memory risk: calamine's `Xls::new` parses every sheet at open time into a *dense* range
//! over the sheet's used cells (bounded only by BIFF's 65536 × 256), and reserves a vector
//! sized by each sheet's DIMENSIONS record, which a hostile file can set to 2³² rows (an
//! allocation failure aborts the process; a start past the end underflows). So before
//! calamine sees the file, [`scan`] walks the same Workbook stream and refuses files whose
//! DIMENSIONS or cell bounding boxes exceed [`MAX_DENSE_CELLS`], whose MULRK records are
//! inconsistent, or which are encrypted (FILEPASS). The stream is read here with the `cfb`
//! crate while calamine uses its own CFB reader; a file crafted to look different to the two
//! is a residual risk, and calamine still runs inside `catch_unwind`.

use std::io::Cursor;
use std::panic::{AssertUnwindSafe, catch_unwind};

use calamine::{Reader, Xls, XlsError};

use super::sheet::{SheetBuilder, render, sheet_list, sheet_sub};
use super::{Ctx, Location, ProblemKind};

/// Dense cells calamine may allocate for the whole workbook (about 32 bytes each, held
/// twice while a range is copied out).
const MAX_DENSE_CELLS: u64 = 4_000_000;

/// Why the pre-scan refused a workbook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refused {
    Encrypted,
    TooLarge,
    Malformed,
}

/// Walks the BIFF records of a Workbook stream; see the module doc.
fn scan(stream: &[u8]) -> Result<(), Refused> {
    let mut pos = 0usize;
    let mut level = 0usize;
    let mut total: u64 = 0;
    // Bounding box of the current sheet's cells: (min row, max row, min col, max col).
    let mut bbox: Option<(u32, u32, u32, u32)> = None;
    // A workbook stream starts with a BIFF5/BIFF8 BOF record.
    if le16(stream, 0) != Some(0x0809) {
        return Err(Refused::Malformed);
    }
    while pos < stream.len() {
        let record = le16(stream, pos)
            .zip(le16(stream, pos + 2))
            .and_then(|(typ, len)| {
                let len = usize::from(len);
                Some((typ, len, stream.get(pos + 4..pos + 4 + len)?))
            });
        let Some((typ, len, data)) = record else {
            // Padding after the last substream is never read by calamine; a cut inside
            // one is.
            return if level == 0 {
                Ok(())
            } else {
                Err(Refused::Malformed)
            };
        };
        pos += 4 + len;
        let u16_at = |i: usize| le16(data, i).map(u32::from);
        let u32_at = |i: usize| {
            data.get(i..i + 4)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(u32::from_le_bytes)
        };
        match typ {
            0x0809 => level += 1,
            0x000A => {
                level = level.saturating_sub(1);
                if level == 0
                    && let Some((r0, r1, c0, c1)) = bbox.take()
                {
                    let cells = u64::from(r1 - r0 + 1) * u64::from(c1 - c0 + 1);
                    total = total.saturating_add(cells);
                    if total > MAX_DENSE_CELLS {
                        return Err(Refused::TooLarge);
                    }
                }
            }
            0x002F => return Err(Refused::Encrypted),
            // DIMENSIONS: calamine reserves rows × cols cells from it.
            0x0200 => {
                let (rf, rl, cl) = match len {
                    10 => (u16_at(0), u16_at(2), u16_at(6)),
                    14 | 16 => (u32_at(0), u32_at(4), u16_at(10)),
                    _ => continue, // calamine rejects the record itself
                };
                let (rf, rl, cl) = (rf.unwrap_or(0), rl.unwrap_or(0), cl.unwrap_or(0));
                if rl >= 1 && rf > rl - 1 {
                    return Err(Refused::Malformed);
                }
                let rows = u64::from(rl.saturating_sub(rf).max(1));
                if rows.saturating_mul(u64::from(cl.max(1))) > MAX_DENSE_CELLS {
                    return Err(Refused::TooLarge);
                }
            }
            // MULRK: calamine computes `last - first + 1` in u16.
            0x00BD => {
                let (Some(row), Some(first)) = (u16_at(0), u16_at(2)) else {
                    return Err(Refused::Malformed);
                };
                let last = len
                    .checked_sub(2)
                    .and_then(u16_at)
                    .ok_or(Refused::Malformed)?;
                if last < first {
                    return Err(Refused::Malformed);
                }
                if level == 1 {
                    grow(&mut bbox, row, first);
                    grow(&mut bbox, row, last);
                }
            }
            // Cell records: NUMBER, LABEL, RSTRING, BOOLERR, RK, LABELSST, FORMULA.
            0x0203 | 0x0204 | 0x00D6 | 0x0205 | 0x027E | 0x00FD | 0x0006 if level == 1 => {
                if let (Some(row), Some(col)) = (u16_at(0), u16_at(2)) {
                    grow(&mut bbox, row, col);
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The little-endian u16 at `at`, if there.
fn le16(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at + 2)
        .and_then(|b| <[u8; 2]>::try_from(b).ok())
        .map(u16::from_le_bytes)
}

fn grow(bbox: &mut Option<(u32, u32, u32, u32)>, row: u32, col: u32) {
    *bbox = Some(match *bbox {
        None => (row, row, col, col),
        Some((r0, r1, c0, c1)) => (r0.min(row), r1.max(row), c0.min(col), c1.max(col)),
    });
}

/// Extracts an xls whose Workbook (or Book) stream is `stream`.
pub(super) fn extract(ctx: &mut Ctx<'_>, loc: &Location, bytes: &[u8], stream: &[u8]) {
    match scan(stream) {
        Ok(()) => {}
        Err(Refused::Encrypted) => {
            ctx.problem(
                loc,
                ProblemKind::Encrypted,
                "password-protected xls workbook",
            );
            return;
        }
        Err(Refused::TooLarge) => {
            ctx.problem(
                loc,
                ProblemKind::Limit,
                "xls workbook too large to read safely (sheet extent over 4,000,000 cells)",
            );
            return;
        }
        Err(Refused::Malformed) => {
            ctx.problem(loc, ProblemKind::Unreadable, "xls workbook is malformed");
            return;
        }
    }
    let run = catch_unwind(AssertUnwindSafe(|| {
        let mut wb = match Xls::new(Cursor::new(bytes)) {
            Ok(wb) => wb,
            Err(XlsError::Password) => {
                ctx.problem(
                    loc,
                    ProblemKind::Encrypted,
                    "password-protected xls workbook",
                );
                return;
            }
            Err(_) => {
                ctx.problem(
                    loc,
                    ProblemKind::Unreadable,
                    "xls workbook could not be parsed (corrupt or unsupported BIFF version)",
                );
                return;
            }
        };
        for (name, hidden) in sheet_list(wb.sheets_metadata()) {
            let sloc = loc.with_sub(sheet_sub(&name, hidden));
            if !ctx.time_ok(&sloc) {
                return;
            }
            let Ok(range) = wb.worksheet_range(&name) else {
                ctx.problem(
                    &sloc,
                    ProblemKind::Unreadable,
                    "sheet could not be read (corrupt)",
                );
                continue;
            };
            let (r0, c0) = range.start().unwrap_or((0, 0));
            let mut builder = SheetBuilder::new(ctx.budget);
            let mut limit = None;
            for (r, c, v) in range.used_cells() {
                let (row, col) = (u64::from(r0) + r as u64, u64::from(c0) + c as u64);
                if let Err(e) = builder.push(row, col, render(v)) {
                    limit = Some(e);
                    break;
                }
            }
            let rows = builder.finish(ctx, &sloc);
            ctx.table(sloc.clone(), rows);
            if let Some(e) = limit {
                ctx.exceeded(&sloc, e);
            }
        }
    }));
    if run.is_err() {
        ctx.problem(
            loc,
            ProblemKind::Unreadable,
            "xls reader failed on malformed data",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::extract::testutil::{rows, tables};

    fn record(typ: u16, data: &[u8]) -> Vec<u8> {
        let mut r = typ.to_le_bytes().to_vec();
        r.extend_from_slice(&(data.len() as u16).to_le_bytes());
        r.extend_from_slice(data);
        r
    }

    fn cell(row: u16, col: u16) -> Vec<u8> {
        let mut d = row.to_le_bytes().to_vec();
        d.extend_from_slice(&col.to_le_bytes());
        d.extend_from_slice(&[0; 10]);
        record(0x0203, &d)
    }

    fn dims(rf: u32, rl: u32, cf: u16, cl: u16) -> Vec<u8> {
        let mut d = rf.to_le_bytes().to_vec();
        d.extend_from_slice(&rl.to_le_bytes());
        d.extend_from_slice(&cf.to_le_bytes());
        d.extend_from_slice(&cl.to_le_bytes());
        d.extend_from_slice(&[0, 0]);
        record(0x0200, &d)
    }

    fn stream(sheet: &[Vec<u8>]) -> Vec<u8> {
        let mut s = record(0x0809, &[0; 16]);
        s.extend(record(0x000A, &[]));
        s.extend(record(0x0809, &[0; 16]));
        for r in sheet {
            s.extend_from_slice(r);
        }
        s.extend(record(0x000A, &[]));
        s
    }

    #[test]
    fn xls_fixture_every_sheet() {
        let bytes = include_bytes!("../../../tests/fixtures/formats/members.xls");
        let x = crate::inspect::extract::testutil::run_attachment("会員.xls", bytes);
        assert!(x.problems.is_empty(), "{:?}", x.problems);
        let visible = tables(&x, "attachment 会員.xls / sheet 名簿");
        assert_eq!(
            rows(visible[0]),
            vec![
                vec!["会員一覧（3月末時点）"],
                vec![],
                vec!["会員番号", "氏名", "生年月日", "電話番号"],
                vec!["1001", "山田 太郎", "1985-04-12", "090-1234-5678"],
                vec!["1002", "鈴木 花子", "1990-12-01", "080-2345-6789"],
                vec!["1003", "佐藤 次郎", "1978-07-30", "070-3456-7890"],
            ]
        );
        let hidden = tables(&x, "attachment 会員.xls / sheet 控え (hidden)");
        assert_eq!(
            rows(hidden[0]),
            vec![vec!["パスワード", "s3cret-Pass"], vec!["3.5", "TRUE"]]
        );
    }

    #[test]
    fn biff_prescan() {
        let cases: Vec<(&str, Vec<u8>, Result<(), Refused>)> = vec![
            (
                "small",
                stream(&[dims(0, 3, 0, 2), cell(0, 0), cell(2, 1)]),
                Ok(()),
            ),
            (
                "corner to corner",
                stream(&[cell(0, 0), cell(65535, 255)]),
                Err(Refused::TooLarge),
            ),
            (
                "huge dimensions",
                stream(&[dims(0, u32::MAX, 0, 256)]),
                Err(Refused::TooLarge),
            ),
            (
                "inverted dimensions",
                stream(&[dims(10, 5, 0, 2)]),
                Err(Refused::Malformed),
            ),
            (
                "filepass",
                stream(&[record(0x002F, &[1, 0])]),
                Err(Refused::Encrypted),
            ),
            (
                "truncated",
                stream(&[cell(0, 0)])[..50].to_vec(),
                Err(Refused::Malformed),
            ),
            (
                "bad mulrk",
                stream(&[record(0x00BD, &[0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 1, 0])]),
                Err(Refused::Malformed),
            ),
        ];
        for (name, s, want) in cases {
            assert_eq!(scan(&s), want, "{name}");
        }
    }
}
