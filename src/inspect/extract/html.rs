//! HTML (and other markup) to text and tables, with a small forgiving tokenizer.
//!
//! Text: tags stripped, entities decoded, whitespace collapsed (kept in `<pre>`), block
//! elements and `<br>` become line breaks (never empty lines), table cells are separated by
//! tabs so a row stays on one line. `<script>`, `<style>` and `<title>` are dropped. Tables:
//! every `<table>` becomes rows of cell texts; a nested table is a table of its own and its
//! text is not repeated in the enclosing cell; `colspan` adds empty cells.
//! HTML is not XML, so quick-xml is not used: unclosed `<p>`/`<td>`/`<br>` are normal here.

/// The text and tables of one HTML document.
#[derive(Debug, Default)]
pub(super) struct Page {
    pub(super) text: String,
    pub(super) tables: Vec<Vec<Vec<String>>>,
}

/// Whether the start of a text (lower-cased, leading whitespace trimmed) is HTML.
pub(super) fn looks_like_html(head: &str) -> bool {
    const STARTS: [&str; 10] = [
        "<!doctype html",
        "<html",
        "<head",
        "<body",
        "<table",
        "<meta",
        "<div",
        "<p>",
        "<br",
        "<span",
    ];
    STARTS.iter().any(|s| head.starts_with(s))
}

/// Elements that end a line of text.
const BLOCKS: [&str; 33] = [
    "p",
    "div",
    "br",
    "li",
    "tr",
    "table",
    "ul",
    "ol",
    "dl",
    "dt",
    "dd",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "blockquote",
    "pre",
    "hr",
    "section",
    "article",
    "header",
    "footer",
    "nav",
    "main",
    "aside",
    "address",
    "form",
    "fieldset",
    "figure",
    "figcaption",
    "center",
];

/// Elements whose content is not text.
const SKIPPED: [&str; 3] = ["script", "style", "title"];

/// The largest colspan honoured.
const MAX_COLSPAN: usize = 100;

/// A table being built.
#[derive(Default)]
struct Table {
    rows: Vec<Vec<String>>,
    row: Option<Vec<String>>,
    cell: Option<Text>,
    colspan: usize,
}

impl Table {
    fn close_cell(&mut self) {
        if let Some(cell) = self.cell.take() {
            let row = self.row.get_or_insert_with(Vec::new);
            row.push(cell.finish());
            for _ in 1..self.colspan {
                row.push(String::new());
            }
        }
    }

    fn close_row(&mut self) {
        self.close_cell();
        if let Some(row) = self.row.take() {
            self.rows.push(row);
        }
    }
}

/// Text with HTML whitespace rules.
#[derive(Default)]
struct Text {
    out: String,
    /// A space is owed before the next word.
    space: bool,
}

impl Text {
    fn push(&mut self, s: &str, pre: bool) {
        if pre {
            self.out.push_str(s);
            self.space = false;
            return;
        }
        for c in s.chars() {
            if c.is_whitespace() && c != '\u{3000}' && c != '\u{a0}' {
                self.space = true;
            } else {
                if self.space && !self.out.is_empty() && !self.out.ends_with(['\n', '\t']) {
                    self.out.push(' ');
                }
                self.space = false;
                self.out.push(c);
            }
        }
    }

    /// Ends the line (never producing empty lines).
    fn newline(&mut self) {
        let trimmed = self.out.trim_end_matches([' ', '\t']).len();
        self.out.truncate(trimmed);
        if !self.out.is_empty() && !self.out.ends_with('\n') {
            self.out.push('\n');
        }
        self.space = false;
    }

    fn tab(&mut self) {
        if !self.out.is_empty() && !self.out.ends_with('\n') {
            self.out.push('\t');
        }
        self.space = false;
    }

    fn finish(self) -> String {
        self.out.trim().to_string()
    }
}

/// Extracts text and tables from an HTML document.
pub(super) fn extract(html: &str) -> Page {
    let mut text = Text::default();
    let mut tables: Vec<Table> = Vec::new();
    let mut done: Vec<Vec<Vec<String>>> = Vec::new();
    let mut pre = 0usize;
    let mut rest = html;
    while !rest.is_empty() {
        let Some(lt) = rest.find('<') else {
            emit(&mut text, &mut tables, &decode_entities(rest), pre > 0);
            break;
        };
        let (before, after) = rest.split_at(lt);
        if !before.is_empty() {
            emit(&mut text, &mut tables, &decode_entities(before), pre > 0);
        }
        let tag = match Tag::parse(after) {
            Parsed::Tag(tag) => tag,
            Parsed::Text => {
                // A lone '<' is text.
                emit(&mut text, &mut tables, "<", pre > 0);
                rest = after.get(1..).unwrap_or_default();
                continue;
            }
            Parsed::Unterminated => {
                // No '>' anywhere after: the rest is text (and scanning again would be
                // quadratic).
                emit(&mut text, &mut tables, &decode_entities(after), pre > 0);
                break;
            }
        };
        rest = after.get(tag.len..).unwrap_or_default();
        let name = tag.name.as_str();
        if !tag.end && SKIPPED.contains(&name) {
            rest = skip_to_end_tag(rest, name);
            continue;
        }
        match (name, tag.end) {
            ("table", false) => {
                text.newline();
                tables.push(Table::default());
            }
            ("table", true) => {
                text.newline();
                if let Some(mut t) = tables.pop() {
                    t.close_row();
                    done.push(t.rows);
                }
            }
            ("tr", false) => {
                text.newline();
                if let Some(t) = tables.last_mut() {
                    t.close_row();
                    t.row = Some(Vec::new());
                }
            }
            ("tr", true) => {
                text.newline();
                if let Some(t) = tables.last_mut() {
                    t.close_row();
                }
            }
            ("td" | "th", false) => {
                text.tab();
                if let Some(t) = tables.last_mut() {
                    t.close_cell();
                    t.cell = Some(Text::default());
                    t.colspan = tag.colspan.clamp(1, MAX_COLSPAN);
                }
            }
            ("td" | "th", true) => {
                if let Some(t) = tables.last_mut() {
                    t.close_cell();
                }
            }
            ("pre", false) => {
                text.newline();
                pre += 1;
            }
            ("pre", true) => {
                text.newline();
                pre = pre.saturating_sub(1);
            }
            ("br", _) => {
                text.newline();
                if let Some(cell) = tables.last_mut().and_then(|t| t.cell.as_mut()) {
                    cell.out.push('\n');
                    cell.space = false;
                }
            }
            _ if BLOCKS.contains(&name) => {
                text.newline();
                if let Some(cell) = tables.last_mut().and_then(|t| t.cell.as_mut()) {
                    cell.newline();
                }
            }
            _ => {}
        }
    }
    // Unclosed tables still count.
    while let Some(mut t) = tables.pop() {
        t.close_row();
        done.push(t.rows);
    }
    Page {
        text: text.finish(),
        tables: done,
    }
}

/// Text goes to the page and to the innermost open cell.
fn emit(text: &mut Text, tables: &mut [Table], s: &str, pre: bool) {
    text.push(s, pre);
    if let Some(cell) = tables.last_mut().and_then(|t| t.cell.as_mut()) {
        cell.push(s, pre);
    }
}

/// A parsed tag: `<name attrs>` or `</name>`, or a comment/declaration (empty name).
struct Tag {
    name: String,
    end: bool,
    colspan: usize,
    /// Bytes from `<` through `>`.
    len: usize,
}

/// What follows a `<`.
enum Parsed {
    Tag(Tag),
    /// Not a tag (`< 2`, `<3`): the `<` is text.
    Text,
    /// Looks like a tag but no `>` follows anywhere.
    Unterminated,
}

impl Tag {
    /// Parses the tag at the start of `s` (which starts with `<`).
    fn parse(s: &str) -> Parsed {
        let Some(body) = s.get(1..) else {
            return Parsed::Text;
        };
        if let Some(comment) = body.strip_prefix("!--") {
            let len = comment.find("-->").map_or(s.len(), |i| 4 + i + 3);
            return Parsed::Tag(Tag::other(len));
        }
        if body.starts_with(['!', '?']) {
            let len = body.find('>').map_or(s.len(), |i| i + 2);
            return Parsed::Tag(Tag::other(len));
        }
        let (end, name_start) = match body.strip_prefix('/') {
            Some(b) => (true, b),
            None => (false, body),
        };
        if !name_start.starts_with(|c: char| c.is_ascii_alphabetic()) {
            return Parsed::Text;
        }
        let Some(close) = find_tag_end(s) else {
            return Parsed::Unterminated;
        };
        let inner = s.get(1..close).unwrap_or_default();
        let name: String = name_start
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        let colspan = if end {
            1
        } else {
            attr_number(inner, "colspan").unwrap_or(1)
        };
        Parsed::Tag(Tag {
            name,
            end,
            colspan,
            len: close + 1,
        })
    }

    fn other(len: usize) -> Tag {
        Tag {
            name: String::new(),
            end: false,
            colspan: 1,
            len,
        }
    }
}

/// The index of the `>` closing the tag at the start of `s`, skipping quoted attributes.
fn find_tag_end(s: &str) -> Option<usize> {
    let mut quote: Option<u8> = None;
    for (i, &b) in s.as_bytes().iter().enumerate() {
        match (quote, b) {
            (Some(q), _) if b == q => quote = None,
            (Some(_), _) => {}
            (None, b'"' | b'\'') => quote = Some(b),
            (None, b'>') => return Some(i),
            _ => {}
        }
    }
    None
}

/// The numeric value of attribute `name` in a tag's inside, if any.
fn attr_number(inner: &str, name: &str) -> Option<usize> {
    let lower = inner.to_ascii_lowercase();
    let at = lower.find(name)?;
    let rest = lower
        .get(at + name.len()..)?
        .trim_start()
        .strip_prefix('=')?;
    let digits: String = rest
        .trim_start()
        .trim_start_matches(['"', '\''])
        .chars()
        .take_while(char::is_ascii_digit)
        .take(4)
        .collect();
    digits.parse().ok()
}

/// Skips past `</name>` (case-insensitive); the rest of the input if it never comes.
fn skip_to_end_tag<'a>(s: &'a str, name: &str) -> &'a str {
    let mut from = 0;
    while let Some(i) = s.get(from..).and_then(|r| r.find("</")) {
        let at = from + i + 2;
        let candidate = s.get(at..at + name.len());
        if candidate.is_some_and(|c| c.eq_ignore_ascii_case(name)) {
            let tail = s.get(at..).unwrap_or_default();
            return match tail.find('>') {
                Some(j) => tail.get(j + 1..).unwrap_or_default(),
                None => "",
            };
        }
        from = at;
    }
    ""
}

/// Decodes character references and the common named entities; unknown ones stay as is.
pub(super) fn decode_entities(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        let (before, after) = rest.split_at(amp);
        out.push_str(before);
        // Entity names are short: look for ';' in the next 33 bytes only (linear time).
        let semi = after
            .as_bytes()
            .iter()
            .skip(1)
            .take(33)
            .position(|&b| b == b';')
            .filter(|&i| i > 0);
        let decoded = semi.and_then(|i| after.get(1..=i)).and_then(entity);
        match (decoded, semi) {
            (Some(c), Some(i)) => {
                out.push(c);
                rest = after.get(i + 2..).unwrap_or_default();
            }
            _ => {
                out.push('&');
                rest = after.get(1..).unwrap_or_default();
            }
        }
    }
    out.push_str(rest);
    out
}

/// One entity's character, from its name without `&` and `;`.
fn entity(name: &str) -> Option<char> {
    if let Some(num) = name.strip_prefix('#') {
        let code = match num.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => num.parse().ok()?,
        };
        return char::from_u32(code).filter(|&c| c != '\0');
    }
    Some(match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" | "ensp" | "emsp" | "thinsp" => ' ',
        "copy" => '©',
        "reg" => '®',
        "trade" => '™',
        "yen" => '¥',
        "euro" => '€',
        "pound" => '£',
        "cent" => '¢',
        "sect" => '§',
        "para" => '¶',
        "deg" => '°',
        "plusmn" => '±',
        "times" => '×',
        "divide" => '÷',
        "middot" => '·',
        "bull" => '•',
        "hellip" => '…',
        "ndash" => '–',
        "mdash" => '—',
        "lsquo" => '‘',
        "rsquo" => '’',
        "ldquo" => '“',
        "rdquo" => '”',
        "laquo" => '«',
        "raquo" => '»',
        "larr" => '←',
        "rarr" => '→',
        "uarr" => '↑',
        "darr" => '↓',
        "zwj" | "zwnj" => '\u{200b}',
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_rendering() {
        let cases: &[(&str, &str)] = &[
            (
                "<p>Hello&nbsp;<b>world</b></p><p>2nd</p>",
                "Hello world\n2nd",
            ),
            ("a<br>b<BR/>c", "a\nb\nc"),
            ("<div>x</div>\n\n   <div>  y   z </div>", "x\ny z"),
            (
                "<script>var a='<p>';</script>visible<style>p{}</style>",
                "visible",
            ),
            (
                "<!-- hidden --><title>t</title>&lt;tag&gt; &amp; &#x5c71;&#30000;",
                "<tag> & 山田",
            ),
            ("<pre>  keep\n  this</pre>", "keep\n  this"),
            ("1 < 2 &unknown; &", "1 < 2 &unknown; &"),
            ("<p title=\"a>b\">quoted</p>", "quoted"),
            ("unterminated <b", "unterminated <b"),
        ];
        for (html, want) in cases {
            assert_eq!(extract(html).text, *want, "{html:?}");
        }
    }

    #[test]
    fn tables() {
        let html = "<html><body><p>会員一覧</p>\
            <table><tr><th>氏名</th><th>電話</th></tr>\
            <tr><td>山田 太郎</td><td>090-1234-5678</td></tr>\
            <tr><td colspan=2>合計 1名</td></tr>\
            <tr><td>a<br>b</td><td><table><tr><td>inner</td></tr></table></td></tr>\
            </table></body></html>";
        let page = extract(html);
        assert_eq!(page.tables.len(), 2);
        assert_eq!(page.tables[0], vec![vec!["inner".to_string()]]);
        assert_eq!(
            page.tables[1],
            vec![
                vec!["氏名", "電話"],
                vec!["山田 太郎", "090-1234-5678"],
                vec!["合計 1名", ""],
                // Text of a nested table belongs to that table only (HTML mail layouts
                // nest everything in tables).
                vec!["a\nb", ""],
            ]
        );
        assert!(
            page.text.contains("山田 太郎\t090-1234-5678"),
            "{}",
            page.text
        );
        assert!(page.text.starts_with("会員一覧\n"), "{}", page.text);
    }

    #[test]
    fn unclosed_cells_and_tables() {
        let page = extract("<table><tr><td>a<td>b<tr><td>c");
        assert_eq!(page.tables, vec![vec![vec!["a", "b"], vec!["c"]]]);
    }
}
