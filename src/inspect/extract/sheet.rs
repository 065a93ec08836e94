//! Spreadsheets: xlsx/xlsm and xlsb through calamine's streaming cell readers, and the row
//! builder and cell rendering shared with [`xls`](super::xls) and [`ods`](super::ods).
//!
//! Never `worksheet_range` for xlsx: calamine builds a dense `Vec` over the used range, so a
//! sheet with cells at A1 and XFD1048576 would allocate ~17 billion cells. Cells are streamed
//! and rows are built here, with caps on the extent that is materialised ([`MAX_COLS`],
//! [`MAX_ROWS`], empty-row runs collapsed to [`MAX_EMPTY_RUN`]) and every materialised cell
//! (padding included) taken from the budget. Every sheet is read, hidden ones too.
//!
//! calamine has no limits and can panic on malformed input: the zip is pre-scanned by our
//! own bounded reader first ([`archive::prescan`]) and calamine runs inside `catch_unwind`.

use std::io::Cursor;
use std::panic::{AssertUnwindSafe, catch_unwind};

use calamine::{
    Data, DataRef, ExcelDateTime, Reader, SheetType, SheetVisible, Xlsb, Xlsx, XlsxError,
};

use super::archive::{self, Zip};
use super::{Ctx, Location, ProblemKind};
use crate::inspect::budget::{Budget, Exceeded};

/// Columns materialised per row (A..SR); non-empty cells further right are reported.
pub(super) const MAX_COLS: u64 = 512;
/// Rows read per sheet (Excel's own maximum).
pub(super) const MAX_ROWS: u64 = 1_048_576;
/// Consecutive empty rows kept; longer runs are collapsed to this many.
pub(super) const MAX_EMPTY_RUN: u64 = 2;
/// Cells read between two deadline checks.
const CELLS_PER_TIME_CHECK: u32 = 4096;

/// Builds the rows of one sheet from cells given with absolute positions, in any order
/// (normally row by row, left to right).
pub(super) struct SheetBuilder<'b> {
    budget: &'b Budget,
    rows: Vec<Vec<String>>,
    cur: Vec<String>,
    cur_row: Option<u64>,
    /// Non-empty cells right of [`MAX_COLS`].
    pub(super) beyond_cols: u64,
    /// A non-empty cell below [`MAX_ROWS`] was seen (reading stops there).
    pub(super) beyond_rows: bool,
}

impl<'b> SheetBuilder<'b> {
    pub(super) fn new(budget: &'b Budget) -> SheetBuilder<'b> {
        SheetBuilder {
            budget,
            rows: Vec::new(),
            cur: Vec::new(),
            cur_row: None,
            beyond_cols: 0,
            beyond_rows: false,
        }
    }

    /// Adds a value at (row, col), 0-based. Empty values are not materialised.
    pub(super) fn push(&mut self, row: u64, col: u64, value: String) -> Result<(), Exceeded> {
        if value.is_empty() {
            return Ok(());
        }
        if row >= MAX_ROWS {
            self.beyond_rows = true;
            return Ok(());
        }
        if col >= MAX_COLS {
            self.beyond_cols += 1;
            return Ok(());
        }
        match self.cur_row {
            Some(r) if r == row => {}
            Some(r) => {
                self.end_row();
                // Rows out of order start a new row without a gap.
                self.empty_rows(row.saturating_sub(r + 1))?;
                self.cur_row = Some(row);
            }
            None => {
                self.empty_rows(row)?;
                self.cur_row = Some(row);
            }
        }
        let col = col as usize;
        if let Some(cell) = self.cur.get_mut(col) {
            *cell = value;
            return Ok(());
        }
        self.budget.take_cells((col - self.cur.len() + 1) as u64)?;
        self.cur.resize(col, String::new());
        self.cur.push(value);
        Ok(())
    }

    fn end_row(&mut self) {
        self.rows.push(std::mem::take(&mut self.cur));
    }

    fn empty_rows(&mut self, n: u64) -> Result<(), Exceeded> {
        let n = n.min(MAX_EMPTY_RUN);
        self.budget.take_cells(n)?;
        for _ in 0..n {
            self.rows.push(Vec::new());
        }
        Ok(())
    }

    /// The rows, and problems about what was left out.
    pub(super) fn finish(mut self, ctx: &mut Ctx<'_>, loc: &Location) -> Vec<Vec<String>> {
        if self.cur_row.is_some() {
            self.end_row();
        }
        if self.beyond_cols > 0 {
            ctx.problem(
                loc,
                ProblemKind::Limit,
                format!(
                    "{} non-empty cells right of column {MAX_COLS} were not read",
                    self.beyond_cols
                ),
            );
        }
        if self.beyond_rows {
            ctx.problem(
                loc,
                ProblemKind::Limit,
                format!("cells below row {MAX_ROWS} were not read"),
            );
        }
        self.rows
    }
}

/// `sheet NAME`, plus ` (hidden)` for hidden and very hidden sheets.
pub(super) fn sheet_sub(name: &str, hidden: bool) -> String {
    let name = super::clean_name(name);
    if hidden {
        format!("sheet {name} (hidden)")
    } else {
        format!("sheet {name}")
    }
}

/// A whole float as an integer, others as a plain decimal (never exponent notation).
pub(super) fn number(f: f64) -> String {
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{}", f as i64)
    } else {
        format!("{f}")
    }
}

/// A date cell as `YYYY-MM-DD`, a time-only cell as `HH:MM:SS`, a duration as its number.
fn date(dt: &ExcelDateTime) -> String {
    if dt.is_duration() {
        return number(dt.as_f64());
    }
    let (y, m, d, hh, mm, ss, _) = dt.to_ymd_hms_milli();
    if dt.as_f64() < 1.0 && dt.as_f64() >= 0.0 {
        format!("{hh:02}:{mm:02}:{ss:02}")
    } else {
        format!("{y:04}-{m:02}-{d:02}")
    }
}

/// An ISO 8601 date-time cell: its date part when it has one.
pub(super) fn iso_date(s: &str) -> String {
    let date = s.get(..10).filter(|d| {
        d.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        })
    });
    date.unwrap_or(s).to_string()
}

/// A streamed cell's text.
pub(super) fn render_ref(v: &DataRef<'_>) -> String {
    match v {
        DataRef::Int(i) => i.to_string(),
        DataRef::Float(f) => number(*f),
        DataRef::String(s) => s.clone(),
        DataRef::SharedString(s) => (*s).to_string(),
        DataRef::Bool(b) => bool_text(*b),
        DataRef::DateTime(dt) => date(dt),
        DataRef::DateTimeIso(s) => iso_date(s),
        DataRef::DurationIso(s) => s.clone(),
        DataRef::Error(_) | DataRef::Empty => String::new(),
    }
}

/// A cell's text (xls ranges).
pub(super) fn render(v: &Data) -> String {
    match v {
        Data::Int(i) => i.to_string(),
        Data::Float(f) => number(*f),
        Data::String(s) => s.clone(),
        Data::Bool(b) => bool_text(*b),
        Data::DateTime(dt) => date(dt),
        Data::DateTimeIso(s) => iso_date(s),
        Data::DurationIso(s) => s.clone(),
        Data::Error(_) | Data::Empty => String::new(),
    }
}

fn bool_text(b: bool) -> String {
    if b { "TRUE" } else { "FALSE" }.to_string()
}

/// Why a sheet stopped early.
enum Stop {
    Malformed,
    Limit(Exceeded),
}

/// Extracts an xlsx/xlsm.
pub(super) fn xlsx(ctx: &mut Ctx<'_>, loc: &Location, archive: &mut Zip<'_>, bytes: &[u8]) {
    if !archive::prescan(ctx, loc, archive, bytes.len() as u64) {
        return;
    }
    let run = catch_unwind(AssertUnwindSafe(|| {
        let mut wb = match Xlsx::new(Cursor::new(bytes)) {
            Ok(wb) => wb,
            Err(XlsxError::Password) => {
                ctx.problem(loc, ProblemKind::Encrypted, "password-protected workbook");
                return;
            }
            Err(_) => {
                ctx.problem(
                    loc,
                    ProblemKind::Unreadable,
                    "xlsx workbook could not be opened (corrupt or truncated)",
                );
                return;
            }
        };
        for (name, hidden) in sheet_list(wb.sheets_metadata()) {
            let sloc = loc.with_sub(sheet_sub(&name, hidden));
            if !ctx.time_ok(&sloc) {
                return;
            }
            match wb.worksheet_cells_reader(&name) {
                Ok(mut reader) => stream_sheet(ctx, &sloc, || match reader.next_cell() {
                    Ok(Some(c)) => Ok(Some((c.get_position(), render_ref(c.get_value())))),
                    Ok(None) => Ok(None),
                    Err(_) => Err(()),
                }),
                Err(XlsxError::NotAWorksheet(_)) => {}
                Err(_) => ctx.problem(
                    &sloc,
                    ProblemKind::Unreadable,
                    "sheet could not be read (corrupt)",
                ),
            }
        }
    }));
    if run.is_err() {
        ctx.problem(
            loc,
            ProblemKind::Unreadable,
            "xlsx reader failed on malformed data",
        );
    }
}

/// Extracts an xlsb.
pub(super) fn xlsb(ctx: &mut Ctx<'_>, loc: &Location, archive: &mut Zip<'_>, bytes: &[u8]) {
    if !archive::prescan(ctx, loc, archive, bytes.len() as u64) {
        return;
    }
    let run = catch_unwind(AssertUnwindSafe(|| {
        let mut wb = match Xlsb::new(Cursor::new(bytes)) {
            Ok(wb) => wb,
            Err(_) => {
                ctx.problem(
                    loc,
                    ProblemKind::Unreadable,
                    "xlsb workbook could not be opened (corrupt or truncated)",
                );
                return;
            }
        };
        for (name, hidden) in sheet_list(wb.sheets_metadata()) {
            let sloc = loc.with_sub(sheet_sub(&name, hidden));
            if !ctx.time_ok(&sloc) {
                return;
            }
            match wb.worksheet_cells_reader(&name) {
                Ok(mut reader) => stream_sheet(ctx, &sloc, || match reader.next_cell() {
                    Ok(Some(c)) => Ok(Some((c.get_position(), render_ref(c.get_value())))),
                    Ok(None) => Ok(None),
                    Err(_) => Err(()),
                }),
                Err(_) => ctx.problem(
                    &sloc,
                    ProblemKind::Unreadable,
                    "sheet could not be read (corrupt)",
                ),
            }
        }
    }));
    if run.is_err() {
        ctx.problem(
            loc,
            ProblemKind::Unreadable,
            "xlsb reader failed on malformed data",
        );
    }
}

/// Sheets that can hold cells, with their hidden flag.
pub(super) fn sheet_list(sheets: &[calamine::Sheet]) -> Vec<(String, bool)> {
    sheets
        .iter()
        .filter(|s| !matches!(s.typ, SheetType::ChartSheet | SheetType::Vba))
        .map(|s| (s.name.clone(), s.visible != SheetVisible::Visible))
        .collect()
}

/// One streamed cell: its (row, col) and text; `Err` when the sheet data is corrupt.
type NextCell = Result<Option<((u32, u32), String)>, ()>;

/// Reads one sheet's cells from `next` into a table item at `loc`.
fn stream_sheet(ctx: &mut Ctx<'_>, loc: &Location, mut next: impl FnMut() -> NextCell) {
    let mut builder = SheetBuilder::new(ctx.budget);
    let mut n = 0u32;
    let stop = loop {
        match next() {
            Ok(Some(((row, col), value))) => {
                if let Err(e) = builder.push(u64::from(row), u64::from(col), value) {
                    break Some(Stop::Limit(e));
                }
                if builder.beyond_rows {
                    break None;
                }
            }
            Ok(None) => break None,
            Err(()) => break Some(Stop::Malformed),
        }
        n = n.wrapping_add(1);
        if n.is_multiple_of(CELLS_PER_TIME_CHECK)
            && let Err(e) = ctx.budget.check_time()
        {
            break Some(Stop::Limit(e));
        }
    };
    let rows = builder.finish(ctx, loc);
    ctx.table(loc.clone(), rows);
    match stop {
        None => {}
        Some(Stop::Malformed) => ctx.problem(
            loc,
            ProblemKind::Unreadable,
            "sheet data is corrupt; cells after the error were not read",
        ),
        Some(Stop::Limit(e)) => ctx.exceeded(loc, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::budget::Limits;
    use crate::inspect::extract::testutil::{
        message, problems, rows, run_attachment, run_with, tables,
    };
    use rust_xlsxwriter::{ExcelDateTime as XlDate, Format, Workbook};

    fn members_xlsx() -> Vec<u8> {
        let mut wb = Workbook::new();
        let date = Format::new().set_num_format("yyyy-mm-dd");
        let ws = wb.add_worksheet();
        ws.set_name("名簿").unwrap();
        ws.write_string(0, 0, "会員一覧（3月末時点）").unwrap();
        for (c, h) in ["会員番号", "氏名", "生年月日", "年収", "在籍"]
            .iter()
            .enumerate()
        {
            ws.write_string(2, c as u16, *h).unwrap();
        }
        ws.write_number(3, 0, 1001.0).unwrap();
        ws.write_string(3, 1, "山田 太郎").unwrap();
        ws.write_date_with_format(3, 2, XlDate::from_ymd(1985, 4, 12).unwrap(), &date)
            .unwrap();
        ws.write_number(3, 3, 512.5).unwrap();
        ws.write_boolean(3, 4, true).unwrap();
        let hidden = wb.add_worksheet();
        hidden.set_name("秘密").unwrap();
        hidden.write_string(0, 0, "パスワード").unwrap();
        hidden.write_string(0, 1, "s3cret").unwrap();
        hidden.set_hidden(true);
        wb.save_to_buffer().unwrap()
    }

    #[test]
    fn xlsx_every_sheet_dates_numbers() {
        let x = run_attachment("会員.xlsx", &members_xlsx());
        assert!(x.problems.is_empty(), "{:?}", problems(&x));
        let visible = tables(&x, "attachment 会員.xlsx / sheet 名簿");
        assert_eq!(
            rows(visible[0]),
            vec![
                vec!["会員一覧（3月末時点）"],
                vec![],
                vec!["会員番号", "氏名", "生年月日", "年収", "在籍"],
                vec!["1001", "山田 太郎", "1985-04-12", "512.5", "TRUE"],
            ]
        );
        let hidden = tables(&x, "attachment 会員.xlsx / sheet 秘密 (hidden)");
        assert_eq!(rows(hidden[0]), vec![vec!["パスワード", "s3cret"]]);
    }

    #[test]
    fn far_corners_stay_small() {
        let mut wb = Workbook::new();
        let ws = wb.add_worksheet();
        ws.write_string(0, 0, "A1").unwrap();
        ws.write_string(1_048_575, 16_383, "XFD1048576").unwrap();
        ws.write_string(1_048_575, 0, "A1048576").unwrap();
        let x = run_attachment("far.xlsx", &wb.save_to_buffer().unwrap());
        let t = tables(&x, "sheet Sheet1");
        // The gap is collapsed to two empty rows; the cell right of column 512 is reported.
        assert_eq!(
            rows(t[0]),
            vec![vec!["A1"], vec![], vec![], vec!["A1048576"]]
        );
        assert_eq!(
            problems(&x),
            vec![(
                "attachment far.xlsx / sheet Sheet1".into(),
                ProblemKind::Limit,
                "1 non-empty cells right of column 512 were not read".into()
            )]
        );
    }

    #[test]
    fn cell_budget_and_truncated_workbook() {
        let bytes = members_xlsx();
        let raw = message("x", &[("m.xlsx", "application/octet-stream", &bytes)]);
        let x = run_with(
            &raw,
            Limits {
                max_cells: 6,
                ..Limits::default()
            },
        );
        assert!(
            problems(&x).contains(&(
                "attachment m.xlsx / sheet 名簿".into(),
                ProblemKind::Limit,
                Exceeded::Cells.describe().into()
            )),
            "{:?}",
            problems(&x)
        );
        let x = run_attachment("t.xlsx", &bytes[..bytes.len() * 2 / 3]);
        assert_eq!(
            problems(&x),
            vec![(
                "attachment t.xlsx".into(),
                ProblemKind::Unreadable,
                "zip archive could not be opened (corrupt or truncated)".into()
            )]
        );
    }

    #[test]
    fn builder_rules() {
        let budget = Budget::new(Limits::default());
        let mut b = SheetBuilder::new(&budget);
        b.push(5, 1, "b".into()).unwrap();
        b.push(5, 0, "a".into()).unwrap();
        b.push(6, 600, "far".into()).unwrap();
        b.push(9, 0, String::new()).unwrap();
        b.push(2, 0, "back".into()).unwrap();
        let mut ctx = Ctx::new(&budget);
        let loc = Location::new("x");
        let rows = b.finish(&mut ctx, &loc);
        assert_eq!(
            rows,
            vec![
                Vec::<String>::new(),
                vec![],
                vec!["a".to_string(), "b".to_string()],
                vec!["back".to_string()],
            ]
        );
        assert_eq!(ctx.out.problems.len(), 1);
        let cases: &[(f64, &str)] = &[
            (1001.0, "1001"),
            (0.5, "0.5"),
            (-3.0, "-3"),
            (1e20, "100000000000000000000"),
            (1.5e-7, "0.00000015"),
        ];
        for (f, want) in cases {
            assert_eq!(number(*f), *want);
        }
        assert_eq!(iso_date("2024-03-31T00:00:00"), "2024-03-31");
        assert_eq!(iso_date("PT10H"), "PT10H");
    }
}
