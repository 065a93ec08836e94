//! OpenDocument spreadsheets: a streaming reader over `content.xml` (quick-xml).
//!
//! Not calamine: its ODS reader materialises a dense range, and ODS repeats rows and cells
//! with `table:number-rows-repeated` / `table:number-columns-repeated` — a sheet "ends" with
//! a row repeated a million times. Here repeated *empty* rows and cells only advance the
//! position; repeated non-empty ones are materialised through [`SheetBuilder`], which caps
//! the extent and takes every cell from the budget. Hidden sheets (a table style with
//! `table:display="false"`) are read like the others.

use std::collections::HashSet;

use quick_xml::events::{BytesStart, Event};

use super::archive::{self, Zip};
use super::sheet::{MAX_COLS, MAX_ROWS, SheetBuilder, iso_date, number, sheet_sub};
use super::{Ctx, Location, ProblemKind, xml};
use crate::inspect::budget::Exceeded;

/// Spaces produced by one `text:s` element at most.
const MAX_SPACES: usize = 1000;

/// Extracts an ODS.
pub(super) fn extract(ctx: &mut Ctx<'_>, loc: &Location, archive: &mut Zip<'_>, len: u64) {
    if let Some(Ok(manifest)) =
        archive::read_named(ctx.budget, archive, "META-INF/manifest.xml", len)
        && memchr::memmem::find(&manifest, b"encryption-data").is_some()
    {
        ctx.problem(
            loc,
            ProblemKind::Encrypted,
            "password-protected ODS spreadsheet",
        );
        return;
    }
    let bytes = match archive::read_named(ctx.budget, archive, "content.xml", len) {
        Some(Ok(b)) => b,
        Some(Err(e)) => {
            archive::report(ctx, loc, e);
            return;
        }
        None => {
            ctx.problem(
                loc,
                ProblemKind::Unreadable,
                "ODS spreadsheet has no content.xml",
            );
            return;
        }
    };
    let text = xml::to_str(&bytes);
    parse(ctx, loc, &text);
}

/// The sheet being read.
struct Sheet<'b> {
    loc: Location,
    builder: SheetBuilder<'b>,
    row: u64,
}

/// The cell being read.
struct Cell {
    value: Option<String>,
    text: String,
    repeat: u64,
    paragraphs: usize,
}

/// Reads `content.xml`, adding one table per sheet.
fn parse(ctx: &mut Ctx<'_>, loc: &Location, content: &str) {
    let mut reader = xml::reader(content);
    let mut hidden_styles: HashSet<String> = HashSet::new();
    let mut style: Option<String> = None;
    let mut sheet: Option<Sheet<'_>> = None;
    let mut row: Option<(Vec<(String, u64)>, u64)> = None;
    let mut cell: Option<Cell> = None;
    let mut annotation = 0usize;
    let mut sheet_no = 0usize;
    let mut events = 0u32;
    loop {
        events = events.wrapping_add(1);
        if events.is_multiple_of(xml::EVENTS_PER_TIME_CHECK) && !ctx.time_ok(loc) {
            return;
        }
        let event = match reader.read_event() {
            Ok(Event::Eof) => break,
            Ok(e) => e,
            Err(_) => {
                ctx.problem(
                    loc,
                    ProblemKind::Unreadable,
                    "ODS content.xml is malformed; the rest was not read",
                );
                break;
            }
        };
        let (e, empty) = match event {
            Event::Start(e) => (e, false),
            Event::Empty(e) => (e, true),
            Event::End(end) => {
                let name = end.name();
                let result = match name.as_ref() {
                    "office:annotation" => {
                        annotation = annotation.saturating_sub(1);
                        Ok(())
                    }
                    "style:style" => {
                        style = None;
                        Ok(())
                    }
                    "table:table-cell" | "table:covered-table-cell" => {
                        end_cell(&mut row, cell.take());
                        Ok(())
                    }
                    "table:table-row" => match (sheet.as_mut(), row.take()) {
                        (Some(s), Some((cells, repeat))) => end_row(s, &cells, repeat),
                        _ => Ok(()),
                    },
                    "table:table" => {
                        if let Some(s) = sheet.take() {
                            let rows = s.builder.finish(ctx, &s.loc);
                            ctx.table(s.loc, rows);
                        }
                        Ok(())
                    }
                    _ => Ok(()),
                };
                if let Err(e) = result {
                    let fatal = matches!(e, Exceeded::Time | Exceeded::Cells);
                    if let Some(s) = sheet.take() {
                        ctx.exceeded(&s.loc, e);
                        let rows = s.builder.finish(ctx, &s.loc);
                        ctx.table(s.loc, rows);
                    }
                    if fatal {
                        return;
                    }
                }
                continue;
            }
            Event::Text(t) => {
                if let Some(c) = cell.as_mut().filter(|_| annotation == 0) {
                    c.text.push_str(&t.xml10_content());
                }
                continue;
            }
            Event::CData(t) => {
                if let Some(c) = cell.as_mut().filter(|_| annotation == 0) {
                    c.text.push_str(&t.xml10_content());
                }
                continue;
            }
            Event::GeneralRef(r) => {
                if let Some(c) = cell.as_mut().filter(|_| annotation == 0) {
                    xml::push_ref(&mut c.text, &r);
                }
                continue;
            }
            _ => continue,
        };
        let name = e.name();
        match name.as_ref() {
            "office:annotation" if !empty => annotation += 1,
            "style:style" if !empty => {
                style = (xml::attr(&e, "style:family").as_deref() == Some("table"))
                    .then(|| xml::attr(&e, "style:name"))
                    .flatten();
            }
            "style:table-properties" => {
                if let Some(s) = &style
                    && xml::attr(&e, "table:display").as_deref() == Some("false")
                {
                    hidden_styles.insert(s.clone());
                }
            }
            "table:table" if !empty => {
                sheet_no += 1;
                let name = xml::attr(&e, "table:name").unwrap_or_else(|| format!("#{sheet_no}"));
                let hidden =
                    xml::attr(&e, "table:style-name").is_some_and(|s| hidden_styles.contains(&s));
                sheet = Some(Sheet {
                    loc: loc.with_sub(sheet_sub(&name, hidden)),
                    builder: SheetBuilder::new(ctx.budget),
                    row: 0,
                });
            }
            "table:table-row" => {
                let repeat = repeat_attr(&e, "table:number-rows-repeated");
                if empty {
                    if let Some(s) = sheet.as_mut() {
                        s.row = s.row.saturating_add(repeat);
                    }
                } else {
                    row = Some((Vec::new(), repeat));
                }
            }
            "table:table-cell" | "table:covered-table-cell" => {
                let c = Cell {
                    value: cell_value(&e),
                    text: String::new(),
                    repeat: repeat_attr(&e, "table:number-columns-repeated"),
                    paragraphs: 0,
                };
                if empty {
                    end_cell(&mut row, Some(c));
                } else {
                    cell = Some(c);
                }
            }
            "text:p" | "text:h" if annotation == 0 => {
                if let Some(c) = cell.as_mut() {
                    if c.paragraphs > 0 {
                        c.text.push('\n');
                    }
                    c.paragraphs += 1;
                }
            }
            "text:s" if annotation == 0 => {
                if let Some(c) = cell.as_mut() {
                    let n = xml::attr(&e, "text:c")
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(1usize);
                    c.text.extend(std::iter::repeat_n(' ', n.min(MAX_SPACES)));
                }
            }
            "text:tab" if annotation == 0 => cell.iter_mut().for_each(|c| c.text.push('\t')),
            "text:line-break" if annotation == 0 => cell.iter_mut().for_each(|c| c.text.push('\n')),
            _ => {}
        }
    }
    // A truncated file still gives the sheet it was in.
    if let Some(s) = sheet.take() {
        let rows = s.builder.finish(ctx, &s.loc);
        ctx.table(s.loc, rows);
    }
}

/// A repeat count attribute (at least 1).
fn repeat_attr(e: &BytesStart<'_>, name: &str) -> u64 {
    xml::attr(e, name)
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(1u64)
        .max(1)
}

/// The typed value of a cell, from its attributes; `None` means "use the cell's text".
fn cell_value(e: &BytesStart<'_>) -> Option<String> {
    match xml::attr(e, "office:value-type")?.as_str() {
        "float" | "percentage" | "currency" => xml::attr(e, "office:value")
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(number),
        "date" => xml::attr(e, "office:date-value").map(|d| iso_date(d.trim())),
        "boolean" => xml::attr(e, "office:boolean-value")
            .map(|b| if b.trim() == "true" { "TRUE" } else { "FALSE" }.to_string()),
        _ => None,
    }
}

fn end_cell(row: &mut Option<(Vec<(String, u64)>, u64)>, cell: Option<Cell>) {
    if let (Some((cells, _)), Some(c)) = (row.as_mut(), cell) {
        let value = c.value.unwrap_or(c.text);
        cells.push((value, c.repeat));
    }
}

/// Places a finished row (repeated `repeat` times) into the sheet.
fn end_row(sheet: &mut Sheet<'_>, cells: &[(String, u64)], repeat: u64) -> Result<(), Exceeded> {
    if cells.iter().all(|(v, _)| v.is_empty()) {
        sheet.row = sheet.row.saturating_add(repeat);
        return Ok(());
    }
    for _ in 0..repeat {
        if sheet.row >= MAX_ROWS {
            sheet.builder.beyond_rows = true;
            return Ok(());
        }
        let mut col = 0u64;
        for (value, n) in cells {
            if !value.is_empty() {
                let fits = (*n).min(MAX_COLS.saturating_sub(col));
                for i in 0..fits {
                    sheet.builder.push(sheet.row, col + i, value.clone())?;
                }
                sheet.builder.beyond_cols += n - fits;
            }
            col = col.saturating_add(*n);
        }
        sheet.row += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::budget::Limits;
    use crate::inspect::extract::testutil::{
        message, problems, rows, run_attachment, run_with, tables, zip_with,
    };
    use zip::CompressionMethod;

    const CONTENT: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0"
  xmlns:style="urn:oasis:names:tc:opendocument:xmlns:style:1.0"
  xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0"
  xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0">
 <office:automatic-styles>
  <style:style style:name="ta1" style:family="table"><style:table-properties table:display="true"/></style:style>
  <style:style style:name="ta2" style:family="table"><style:table-properties table:display="false"/></style:style>
 </office:automatic-styles>
 <office:body><office:spreadsheet>
  <table:table table:name="名簿" table:style-name="ta1">
   <table:table-column table:number-columns-repeated="16384"/>
   <table:table-row>
    <table:table-cell office:value-type="string"><text:p>氏名</text:p></table:table-cell>
    <table:table-cell office:value-type="string"><text:p>生年月日</text:p></table:table-cell>
    <table:table-cell office:value-type="string"><text:p>番号</text:p></table:table-cell>
    <table:table-cell table:number-columns-repeated="16381"/>
   </table:table-row>
   <table:table-row table:number-rows-repeated="2">
    <table:table-cell office:value-type="string"><text:p>山田<text:s text:c="2"/>太郎</text:p><office:annotation><text:p>memo</text:p></office:annotation></table:table-cell>
    <table:table-cell office:value-type="date" office:date-value="1985-04-12T00:00:00"><text:p>1985/4/12</text:p></table:table-cell>
    <table:table-cell office:value-type="float" office:value="1001"><text:p>1,001</text:p></table:table-cell>
    <table:table-cell table:number-columns-repeated="2"/>
    <table:table-cell office:value-type="boolean" office:boolean-value="true" table:number-columns-repeated="2"><text:p>TRUE</text:p></table:table-cell>
   </table:table-row>
   <table:table-row table:number-rows-repeated="1048000"><table:table-cell table:number-columns-repeated="16384"/></table:table-row>
   <table:table-row><table:table-cell office:value-type="float" office:value="0.25"><text:p>25%</text:p></table:table-cell></table:table-row>
  </table:table>
  <table:table table:name="控え" table:style-name="ta2">
   <table:table-row><table:table-cell office:value-type="string"><text:p>a &amp; b</text:p><text:p>2行目</text:p></table:table-cell></table:table-row>
  </table:table>
 </office:spreadsheet></office:body>
</office:document-content>"#;

    fn ods(content: &str, manifest: &str) -> Vec<u8> {
        zip_with(
            &[
                (
                    "mimetype",
                    b"application/vnd.oasis.opendocument.spreadsheet",
                ),
                ("META-INF/manifest.xml", manifest.as_bytes()),
                ("content.xml", content.as_bytes()),
            ],
            CompressionMethod::Stored,
        )
    }

    #[test]
    fn ods_repeats_hidden_sheets_and_values() {
        let x = run_attachment("a.ods", &ods(CONTENT, "<manifest/>"));
        assert!(x.problems.is_empty(), "{:?}", problems(&x));
        let t = tables(&x, "attachment a.ods / sheet 名簿");
        assert_eq!(
            rows(t[0]),
            vec![
                vec!["氏名", "生年月日", "番号"],
                vec!["山田  太郎", "1985-04-12", "1001", "", "", "TRUE", "TRUE"],
                vec!["山田  太郎", "1985-04-12", "1001", "", "", "TRUE", "TRUE"],
                vec![],
                vec![],
                vec!["0.25"],
            ]
        );
        let hidden = tables(&x, "attachment a.ods / sheet 控え (hidden)");
        assert_eq!(rows(hidden[0]), vec![vec!["a & b\n2行目"]]);
    }

    #[test]
    fn ods_repeated_content_is_capped() {
        let content = CONTENT.replace(
            r#"<table:table-row table:number-rows-repeated="2">"#,
            r#"<table:table-row table:number-rows-repeated="5000000">"#,
        );
        let bytes = ods(&content, "<manifest/>");
        let raw = message("x", &[("a.ods", "application/octet-stream", &bytes)]);
        let x = run_with(
            &raw,
            Limits {
                max_cells: 10_000,
                ..Limits::default()
            },
        );
        assert!(
            problems(&x).contains(&(
                "attachment a.ods / sheet 名簿".into(),
                ProblemKind::Limit,
                Exceeded::Cells.describe().into()
            )),
            "{:?}",
            problems(&x)
        );
        let wide = CONTENT.replace(
            r#"<table:table-cell office:value-type="boolean" office:boolean-value="true" table:number-columns-repeated="2">"#,
            r#"<table:table-cell office:value-type="boolean" office:boolean-value="true" table:number-columns-repeated="1000">"#,
        );
        let x = run_attachment("w.ods", &ods(&wide, "<manifest/>"));
        let t = tables(&x, "sheet 名簿");
        assert_eq!(t[0][1].len(), 512);
        assert_eq!(
            problems(&x)[0].2,
            "986 non-empty cells right of column 512 were not read"
        );
    }

    #[test]
    fn ods_encrypted_and_malformed() {
        let manifest = r#"<manifest:manifest><manifest:file-entry manifest:full-path="content.xml"><manifest:encryption-data/></manifest:file-entry></manifest:manifest>"#;
        let x = run_attachment("e.ods", &ods("garbage", manifest));
        assert_eq!(
            problems(&x),
            vec![(
                "attachment e.ods".into(),
                ProblemKind::Encrypted,
                "password-protected ODS spreadsheet".into()
            )]
        );
        let cut = &CONTENT[..CONTENT.find("<table:table table:name=\"控え\"").unwrap() - 40];
        let x = run_attachment("m.ods", &ods(&format!("{cut}</wrong"), "<manifest/>"));
        assert_eq!(
            tables(&x, "sheet 名簿").len(),
            1,
            "the sheet read so far is kept"
        );
        assert_eq!(problems(&x)[0].1, ProblemKind::Unreadable);
    }
}
