//! docx and pptx: paragraphs to text, `tbl`/`tr`/`tc` to tables, with quick-xml.
//!
//! Both formats use the same local names (`p`, `t`, `tbl`, `tr`, `tc`, `br`, `tab`), in the
//! `w:` namespace for Word and `a:` for DrawingML, so one reader serves both. Paragraphs
//! inside a table cell become that cell's text (lines joined with `\n`) and are not repeated
//! in the document text. Deleted text of tracked changes (`w:delText`) is still in the file,
//! so it is read too.
//!
//! Word: `word/document.xml`, then headers, footers, foot/endnotes and comments.
//! PowerPoint: `ppt/slides/slideN.xml` in slide order, then the speaker notes.

use quick_xml::events::Event;

use super::archive::{self, Zip};
use super::{Ctx, Location, ProblemKind, TextKind, xml};
use crate::inspect::budget::{Budget, Exceeded};

/// The text and tables of one XML part.
#[derive(Debug, Default)]
pub(super) struct Parsed {
    pub(super) text: String,
    pub(super) tables: Vec<Vec<Vec<String>>>,
}

/// Why a part was not read to its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Stop {
    Malformed,
    Limit(Exceeded),
}

/// A table being built.
#[derive(Default)]
struct Table {
    rows: Vec<Vec<String>>,
    row: Option<Vec<String>>,
    cell: Option<String>,
}

impl Table {
    fn close_cell(&mut self) {
        if let Some(cell) = self.cell.take() {
            self.row.get_or_insert_with(Vec::new).push(cell);
        }
    }

    fn close_row(&mut self) {
        self.close_cell();
        if let Some(row) = self.row.take() {
            self.rows.push(row);
        }
    }
}

/// Reads one WordprocessingML or DrawingML part. On a stop, what was read so far comes
/// with the reason.
pub(super) fn parse(xml_text: &str, budget: &Budget) -> (Parsed, Option<Stop>) {
    let mut out = Parsed::default();
    let mut tables: Vec<Table> = Vec::new();
    let mut para = String::new();
    let mut in_text = false;
    let mut reader = xml::reader(xml_text);
    let mut events = 0u32;
    let stop = loop {
        events = events.wrapping_add(1);
        if events.is_multiple_of(xml::EVENTS_PER_TIME_CHECK)
            && let Err(e) = budget.check_time()
        {
            break Some(Stop::Limit(e));
        }
        let event = match reader.read_event() {
            Ok(Event::Eof) => break None,
            Ok(e) => e,
            Err(_) => break Some(Stop::Malformed),
        };
        match event {
            Event::Start(e) => match xml::local(&e).as_ref() {
                "p" => para.clear(),
                "t" | "delText" => in_text = true,
                "tbl" => tables.push(Table::default()),
                "tr" => {
                    if let Some(t) = tables.last_mut() {
                        t.close_row();
                        t.row = Some(Vec::new());
                    }
                }
                "tc" => {
                    if let Some(t) = tables.last_mut() {
                        t.close_cell();
                        t.cell = Some(String::new());
                    }
                }
                _ => {}
            },
            Event::Empty(e) => match xml::local(&e).as_ref() {
                "tab" => para.push('\t'),
                "br" | "cr" => para.push('\n'),
                "p" => end_paragraph(&mut out.text, &mut tables, ""),
                _ => {}
            },
            Event::End(e) => {
                let name = e.name();
                match xml::local_end(name.as_ref()) {
                    "p" => {
                        end_paragraph(&mut out.text, &mut tables, &para);
                        para.clear();
                    }
                    "t" | "delText" => in_text = false,
                    "tc" => {
                        if let Some(t) = tables.last_mut() {
                            t.close_cell();
                        }
                    }
                    "tr" => {
                        if let Some(t) = tables.last_mut() {
                            t.close_row();
                        }
                    }
                    "tbl" => {
                        if let Some(mut t) = tables.pop() {
                            t.close_row();
                            out.tables.push(t.rows);
                        }
                    }
                    _ => {}
                }
            }
            Event::Text(t) if in_text => para.push_str(&t.xml10_content()),
            Event::CData(t) if in_text => para.push_str(&t.xml10_content()),
            Event::GeneralRef(r) if in_text => xml::push_ref(&mut para, &r),
            _ => {}
        }
    };
    // A truncated part still gives what it had.
    if !para.is_empty() {
        end_paragraph(&mut out.text, &mut tables, &para);
    }
    while let Some(mut t) = tables.pop() {
        t.close_row();
        out.tables.push(t.rows);
    }
    (out, stop)
}

/// A finished paragraph goes to the innermost open cell, else to the document text.
fn end_paragraph(text: &mut String, tables: &mut [Table], para: &str) {
    if let Some(cell) = tables.last_mut().and_then(|t| t.cell.as_mut()) {
        if !cell.is_empty() {
            cell.push('\n');
        }
        cell.push_str(para);
    } else {
        text.push_str(para);
        text.push('\n');
    }
}

/// Extracts a docx.
pub(super) fn docx(ctx: &mut Ctx<'_>, loc: &Location, archive: &mut Zip<'_>, len: u64) {
    let mut table_no = 0usize;
    match read_part(ctx, loc, archive, "word/document.xml", len) {
        Some(parsed) => emit(ctx, loc, "text", parsed, &mut table_no),
        None => return,
    }
    let mut extra: Vec<String> = archive
        .file_names()
        .filter_map(Result::ok)
        .filter(|n| {
            n.strip_prefix("word/").is_some_and(|rest| {
                rest.ends_with(".xml")
                    && !rest.contains('/')
                    && (rest.starts_with("header")
                        || rest.starts_with("footer")
                        || rest == "footnotes.xml"
                        || rest == "endnotes.xml"
                        || rest == "comments.xml")
            })
        })
        .map(|n| n.into_owned())
        .collect();
    extra.sort();
    let mut notes = Parsed::default();
    for name in extra {
        if !ctx.time_ok(loc) {
            return;
        }
        if let Some(parsed) = read_part(ctx, loc, archive, &name, len) {
            notes.text.push_str(&parsed.text);
            notes.tables.extend(parsed.tables);
        }
    }
    emit(
        ctx,
        loc,
        "headers, footers, notes and comments",
        notes,
        &mut table_no,
    );
}

/// Extracts a pptx: each slide (in slide order), then each slide's notes.
pub(super) fn pptx(ctx: &mut Ctx<'_>, loc: &Location, archive: &mut Zip<'_>, len: u64) {
    for (prefix, label) in [
        ("ppt/slides/slide", "slide"),
        ("ppt/notesSlides/notesSlide", "notes"),
    ] {
        let mut parts: Vec<(u32, String)> = archive
            .file_names()
            .filter_map(|n| {
                let n = n.ok()?;
                let number = n.strip_prefix(prefix)?.strip_suffix(".xml")?.parse().ok()?;
                Some((number, n.to_string()))
            })
            .collect();
        parts.sort();
        for (number, name) in parts {
            if !ctx.time_ok(loc) {
                return;
            }
            if let Some(parsed) = read_part(ctx, loc, archive, &name, len) {
                let mut table_no = 0;
                emit(
                    ctx,
                    loc,
                    &format!("{label} {number}"),
                    parsed,
                    &mut table_no,
                );
            }
        }
    }
}

/// Adds a part's text (sub `sub`) and tables (`sub table n`, or `table n` for the main text).
fn emit(ctx: &mut Ctx<'_>, loc: &Location, sub: &str, parsed: Parsed, table_no: &mut usize) {
    ctx.text(loc.with_sub(sub), TextKind::Document, parsed.text);
    for rows in parsed.tables {
        *table_no += 1;
        let name = if sub.starts_with("slide") {
            format!("{sub} table {table_no}")
        } else {
            format!("table {table_no}")
        };
        ctx.table(loc.with_sub(name), rows);
    }
}

/// Reads and parses one part, recording any problem; `None` if nothing could be read.
fn read_part(
    ctx: &mut Ctx<'_>,
    loc: &Location,
    archive: &mut Zip<'_>,
    name: &str,
    len: u64,
) -> Option<Parsed> {
    let bytes = match archive::read_named(ctx.budget, archive, name, len)? {
        Ok(b) => b,
        Err(e) => {
            archive::report(ctx, &loc.with_sub(name), e);
            return None;
        }
    };
    let text = xml::to_str(&bytes);
    let (parsed, stop) = parse(&text, ctx.budget);
    match stop {
        None => {}
        Some(Stop::Malformed) => ctx.problem(
            &loc.with_sub(name),
            ProblemKind::Unreadable,
            "document XML is malformed; the rest of this part was not read",
        ),
        Some(Stop::Limit(e)) => ctx.exceeded(loc, e),
    }
    Some(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::extract::testutil::{problems, rows, run_attachment, tables, texts, zip};

    const CT: &[u8] = b"<?xml version=\"1.0\"?><Types/>";

    const DOCUMENT: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>
<w:p><w:r><w:t>受講者一覧</w:t></w:r></w:p>
<w:p><w:r><w:t xml:space="preserve">ID: </w:t></w:r><w:r><w:t>taro01</w:t><w:tab/><w:t>PW: a&amp;b&#x31;</w:t></w:r></w:p>
<w:tbl><w:tr><w:tc><w:p><w:r><w:t>氏名</w:t></w:r></w:p></w:tc><w:tc><w:p><w:r><w:t>住所</w:t></w:r></w:p></w:tc></w:tr>
<w:tr><w:tc><w:p><w:r><w:t>山田</w:t></w:r></w:p></w:tc><w:tc><w:p><w:r><w:t>東京都</w:t></w:r></w:p><w:p><w:r><w:t>千代田区</w:t></w:r></w:p></w:tc></w:tr></w:tbl>
<w:p><w:r><w:delText>削除済み 090-0000-0000</w:delText></w:r></w:p>
<w:p/><w:p><w:r><w:t>以上</w:t></w:r></w:p>
</w:body></w:document>"#;

    #[test]
    fn docx_paragraphs_tables_headers() {
        let header = r#"<w:hdr xmlns:w="w"><w:p><w:r><w:t>社外秘</w:t></w:r></w:p></w:hdr>"#;
        let bytes = zip(&[
            ("[Content_Types].xml", CT),
            ("word/document.xml", DOCUMENT.as_bytes()),
            ("word/header1.xml", header.as_bytes()),
            ("word/media/image1.png", b"\x89PNG\r\n\x1a\n"),
        ]);
        let x = run_attachment("a.docx", &bytes);
        assert!(x.problems.is_empty(), "{:?}", problems(&x));
        assert_eq!(
            texts(&x, "attachment a.docx / text"),
            vec!["受講者一覧\nID: taro01\tPW: a&b1\n削除済み 090-0000-0000\n\n以上\n"]
        );
        assert_eq!(
            rows(tables(&x, "attachment a.docx / table 1")[0]),
            vec![vec!["氏名", "住所"], vec!["山田", "東京都\n千代田区"]]
        );
        assert_eq!(texts(&x, "headers, footers"), vec!["社外秘\n"]);
    }

    #[test]
    fn pptx_slides_in_order_with_tables() {
        let slide = |t: &str| {
            format!(
                r#"<p:sld xmlns:p="p" xmlns:a="a"><p:cSld><p:spTree><p:sp><p:txBody><a:p><a:r><a:t>{t}</a:t></a:r><a:br/><a:r><a:t>2行目</a:t></a:r></a:p></p:txBody></p:sp>
<p:graphicFrame><a:graphic><a:graphicData><a:tbl><a:tr><a:tc><a:txBody><a:p><a:r><a:t>氏名</a:t></a:r></a:p></a:txBody></a:tc><a:tc><a:txBody><a:p><a:r><a:t>電話</a:t></a:r></a:p></a:txBody></a:tc></a:tr></a:tbl></a:graphicData></a:graphic></p:graphicFrame></p:spTree></p:cSld></p:sld>"#
            )
        };
        let (s2, s10) = (slide("二枚目"), slide("十枚目"));
        let bytes = zip(&[
            ("[Content_Types].xml", CT),
            ("ppt/presentation.xml", b"<p:presentation/>"),
            ("ppt/slides/slide10.xml", s10.as_bytes()),
            ("ppt/slides/slide2.xml", s2.as_bytes()),
            (
                "ppt/notesSlides/notesSlide2.xml",
                r#"<p:notes xmlns:a="a"><a:p><a:r><a:t>話す内容</a:t></a:r></a:p></p:notes>"#
                    .as_bytes(),
            ),
        ]);
        let x = run_attachment("a.pptx", &bytes);
        assert!(x.problems.is_empty(), "{:?}", problems(&x));
        let order: Vec<String> = x.items.iter().map(|i| i.location().describe()).collect();
        assert_eq!(
            order,
            vec![
                "body",
                "attachment a.pptx / slide 2",
                "attachment a.pptx / slide 2 table 1",
                "attachment a.pptx / slide 10",
                "attachment a.pptx / slide 10 table 1",
                "attachment a.pptx / notes 2",
            ]
        );
        assert_eq!(texts(&x, "slide 10"), vec!["十枚目\n2行目\n"]);
        assert_eq!(
            rows(tables(&x, "slide 2 table 1")[0]),
            vec![vec!["氏名", "電話"]]
        );
    }

    #[test]
    fn malformed_part_keeps_what_was_read() {
        let cut = &DOCUMENT[..DOCUMENT.find("<w:tbl>").unwrap()];
        let bytes = zip(&[
            ("[Content_Types].xml", CT),
            (
                "word/document.xml",
                format!("{cut}<w:p><w:r><w:t>cut off</w:t></w:r><w:p w:x=\"unterminated")
                    .as_bytes(),
            ),
        ]);
        let x = run_attachment("a.docx", &bytes);
        assert_eq!(
            texts(&x, "a.docx / text"),
            vec!["受講者一覧\nID: taro01\tPW: a&b1\ncut off\n"]
        );
        assert_eq!(
            problems(&x),
            vec![(
                "attachment a.docx / word/document.xml".into(),
                ProblemKind::Unreadable,
                "document XML is malformed; the rest of this part was not read".into()
            )]
        );
    }
}
