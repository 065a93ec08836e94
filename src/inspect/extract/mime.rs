//! The MIME walk: one pass over the single mail-parser parse, bodies to text, every other
//! leaf to [`sniff::leaf`].
//!
//! Text parts are never taken from mail-parser's decoded strings: 0.11 decodes a text part
//! without a `charset` parameter with `String::from_utf8_lossy`, which destroys Shift_JIS. We
//! take the part's raw bytes by its offsets, undo the transfer encoding here and let
//! [`text::decode`] find the charset. Binary parts are taken as mail-parser decoded them.
//!
//! The walk is iterative (mail-parser accepts 20 000 nested multiparts; recursion would
//! overflow the stack); only `message/rfc822` recurses, bounded by the budget's depth.

use std::borrow::Cow;

use mail_parser::{Message, MessagePart, MimeHeaders, PartType};

use super::{Alternative, Ctx, Location, ProblemKind, TextKind, clean_name, html, sniff, text};

/// Multipart nesting walked before giving up (RELIABILITY §2.10 suggests 32).
const MAX_MULTIPART_NESTING: usize = 64;

/// Walks the top-level message.
pub(super) fn walk(ctx: &mut Ctx<'_>, message: &Message<'_>) {
    walk_message(ctx, message, "", 0);
}

/// One part waiting on the walk's stack.
struct Frame {
    id: usize,
    /// Inside a multipart/alternative that also has a text/plain body: its number. Both
    /// sides are read (a client shows the HTML, which may say more than the plain text); the
    /// totals count the larger side once.
    alternative: Option<usize>,
    nesting: usize,
}

/// Walks one message; `prefix` is `""` for the top message and `attached message > ` (and
/// so on) for attached ones. `depth` is its nesting depth (0 = the top message).
fn walk_message(ctx: &mut Ctx<'_>, msg: &Message<'_>, prefix: &str, depth: usize) {
    let mut seen = vec![false; msg.parts.len()];
    let mut stack = vec![Frame {
        id: 0,
        alternative: None,
        nesting: 0,
    }];
    let mut attachment_no = 0usize;
    while let Some(frame) = stack.pop() {
        if ctx.stopped() {
            return;
        }
        // A part id seen twice would be a cycle in a malformed parse: walk each part once.
        match seen.get_mut(frame.id) {
            Some(s) if !*s => *s = true,
            _ => continue,
        }
        let Some(part) = msg.parts.get(frame.id) else {
            continue;
        };
        match &part.body {
            PartType::Multipart(children) => {
                if frame.nesting >= MAX_MULTIPART_NESTING {
                    let loc = Location::new(format!("{prefix}message"));
                    ctx.problem(
                        &loc,
                        ProblemKind::Limit,
                        "MIME multiparts nested too deeply",
                    );
                    continue;
                }
                let alternative = if is_type(part, "multipart", "alternative")
                    && children.iter().any(|&c| contains_plain(msg, c as usize))
                {
                    ctx.alternatives += 1;
                    Some(ctx.alternatives)
                } else {
                    frame.alternative
                };
                for &c in children.iter().rev() {
                    stack.push(Frame {
                        id: c as usize,
                        alternative,
                        nesting: frame.nesting + 1,
                    });
                }
            }
            PartType::Message(nested) => {
                attachment_no += 1;
                let loc = Location::new(format!("{prefix}attached message"));
                if let Err(e) = ctx.budget.check_depth(depth + 1) {
                    ctx.exceeded(&loc, e);
                    continue;
                }
                walk_message(
                    ctx,
                    nested,
                    &format!("{prefix}attached message > "),
                    depth + 1,
                );
            }
            PartType::Text(_)
            | PartType::Html(_)
            | PartType::Binary(_)
            | PartType::InlineBinary(_) => {
                let is_body = matches!(part.body, PartType::Text(_) | PartType::Html(_))
                    && (msg.text_body.contains(&(frame.id as u32))
                        || msg.html_body.contains(&(frame.id as u32)));
                // An invitation's text/calendar part has no file name: it is a body of its
                // own; a named .ics file is an attachment (typed as calendar by its content).
                let calendar =
                    is_type(part, "text", "calendar") && part.attachment_name().is_none();
                if is_body || calendar {
                    body(ctx, msg, part, prefix, frame.alternative);
                } else {
                    attachment_no += 1;
                    attachment(ctx, msg, part, prefix, depth, attachment_no);
                }
            }
        }
    }
}

/// A text/plain, text/html (or other inline text) body.
fn body(
    ctx: &mut Ctx<'_>,
    msg: &Message<'_>,
    part: &MessagePart<'_>,
    prefix: &str,
    alternative: Option<usize>,
) {
    let calendar = is_type(part, "text", "calendar");
    let mut loc = Location::new(if calendar {
        format!("{prefix}calendar")
    } else {
        format!("{prefix}body")
    });
    let is_html = matches!(part.body, PartType::Html(_));
    loc.alternative = alternative.map(|group| Alternative {
        group,
        html: is_html,
    });
    if let Err(e) = ctx.budget.take_part() {
        ctx.exceeded(&loc, e);
        return;
    }
    let bytes = part_bytes(msg, part);
    let charset = part.content_type().and_then(|ct| ct.attribute("charset"));
    let decoded = text::decode(&bytes, charset);
    if is_html {
        let page = html::extract(&decoded);
        ctx.text(loc.clone(), TextKind::Body, page.text);
        for (i, rows) in page.tables.into_iter().enumerate() {
            ctx.table(loc.with_sub(format!("table {}", i + 1)), rows);
        }
    } else if calendar {
        ctx.text(loc, TextKind::Calendar, decoded);
    } else {
        ctx.text(loc, TextKind::Body, decoded);
    }
}

/// Any leaf that is not a body: recorded with its hash, then typed by magic.
fn attachment(
    ctx: &mut Ctx<'_>,
    msg: &Message<'_>,
    part: &MessagePart<'_>,
    prefix: &str,
    depth: usize,
    n: usize,
) {
    let name = match part.attachment_name() {
        Some(name) if !name.trim().is_empty() => clean_name(name),
        _ => format!("#{n}"),
    };
    let loc = Location::new(format!("{prefix}attachment {name}"));
    if let Err(e) = ctx.budget.take_part() {
        ctx.exceeded(&loc, e);
        return;
    }
    let bytes = part_bytes(msg, part);
    ctx.attachment(&name, &bytes);
    if ctx.stopped() {
        return;
    }
    if is_type(part, "message", "rfc822") || is_type(part, "message", "global") {
        // mail-parser gives up on messages encoded inside encoded messages after 3 levels
        // (MAX_NESTED_ENCODED) and on unparseable ones; their bytes are still read as text.
        match ctx.budget.check_depth(depth + 1) {
            Err(e) => ctx.exceeded(&loc, e),
            Ok(()) => ctx.problem(
                &loc,
                ProblemKind::Unreadable,
                "attached message could not be parsed as MIME",
            ),
        }
    }
    let charset = part.content_type().and_then(|ct| ct.attribute("charset"));
    sniff::leaf(ctx, &loc, &bytes, depth, charset);
}

/// The decoded bytes of a leaf. Text parts come from the raw message (see the module doc);
/// the offsets are absolute in `msg.raw_message` (the whole outer message for an attached
/// message that was not transfer-encoded, the decoded bytes for one that was), which is why
/// the field is used rather than `Message::raw_message()`, which slices from the message's
/// own header.
fn part_bytes<'m>(msg: &'m Message<'_>, part: &'m MessagePart<'_>) -> Cow<'m, [u8]> {
    match &part.body {
        PartType::Text(_) | PartType::Html(_) => {
            let start = part.raw_body_offset() as usize;
            let end = part.raw_end_offset() as usize;
            match msg.raw_message.get(start..end) {
                Some(raw) => transfer_decode(raw, part.content_transfer_encoding()),
                None => Cow::Borrowed(part.contents()),
            }
        }
        _ => Cow::Borrowed(part.contents()),
    }
}

/// Undoes a Content-Transfer-Encoding leniently (bad characters are skipped, never fatal).
pub(super) fn transfer_decode<'r>(raw: &'r [u8], cte: Option<&str>) -> Cow<'r, [u8]> {
    match cte.map(str::trim) {
        Some(c) if c.eq_ignore_ascii_case("base64") => Cow::Owned(base64(raw)),
        Some(c) if c.eq_ignore_ascii_case("quoted-printable") => Cow::Owned(quoted_printable(raw)),
        _ => Cow::Borrowed(raw),
    }
}

/// Lenient base64: characters outside the alphabet are skipped, `=` ends a quantum.
fn base64(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() / 4 * 3);
    let mut acc = 0u32;
    let mut n = 0u8;
    for &b in raw {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => {
                flush_base64(&mut out, acc, n);
                acc = 0;
                n = 0;
                continue;
            }
            _ => continue,
        };
        acc = (acc << 6) | u32::from(v);
        n += 1;
        if n == 4 {
            out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]);
            acc = 0;
            n = 0;
        }
    }
    flush_base64(&mut out, acc, n);
    out
}

fn flush_base64(out: &mut Vec<u8>, acc: u32, n: u8) {
    match n {
        2 => out.push((acc >> 4) as u8),
        3 => out.extend_from_slice(&[(acc >> 10) as u8, (acc >> 2) as u8]),
        _ => {}
    }
}

/// Lenient quoted-printable: `=XX` decoded, `=` + line break removed, anything else kept.
fn quoted_printable(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        if b != b'=' {
            out.push(b);
            i += 1;
            continue;
        }
        let next = raw.get(i + 1).copied();
        let next2 = raw.get(i + 2).copied();
        match (next, next2) {
            (Some(b'\r'), Some(b'\n')) => i += 3,
            (Some(b'\n'), _) => i += 2,
            (Some(h), Some(l)) if h.is_ascii_hexdigit() && l.is_ascii_hexdigit() => {
                out.push((hex(h) << 4) | hex(l));
                i += 3;
            }
            _ => {
                // `=` followed by spaces and a line break is a soft break with padding.
                let rest = raw.get(i + 1..).unwrap_or_default();
                let spaces = rest
                    .iter()
                    .take_while(|&&c| c == b' ' || c == b'\t')
                    .count();
                match rest.get(spaces..) {
                    Some([b'\r', b'\n', ..]) => i += 1 + spaces + 2,
                    Some([b'\n', ..]) => i += 1 + spaces + 1,
                    Some([]) => i += 1 + spaces,
                    _ => {
                        out.push(b'=');
                        i += 1;
                    }
                }
            }
        }
    }
    out
}

fn hex(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => 0,
    }
}

/// `true` if the part's declared type is `ty/sub` (a missing Content-Type is text/plain).
fn is_type(part: &MessagePart<'_>, ty: &str, sub: &str) -> bool {
    match part.content_type() {
        Some(ct) => {
            ct.ctype().eq_ignore_ascii_case(ty)
                && ct.subtype().is_some_and(|s| s.eq_ignore_ascii_case(sub))
        }
        None => ty == "text" && sub == "plain",
    }
}

/// Whether the subtree at `id` (multiparts only, not attached messages) holds a text/plain
/// part. Visits a bounded number of parts.
fn contains_plain(msg: &Message<'_>, id: usize) -> bool {
    let mut stack = vec![id];
    let mut visited = 0;
    while let Some(id) = stack.pop() {
        visited += 1;
        if visited > 256 {
            return false;
        }
        let Some(part) = msg.parts.get(id) else {
            continue;
        };
        match &part.body {
            PartType::Text(_) if is_type(part, "text", "plain") => return true,
            PartType::Multipart(children) => stack.extend(children.iter().map(|&c| c as usize)),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::budget::{Exceeded, Limits};
    use crate::inspect::extract::testutil::{
        message, problems, rows, run, run_with, tables, texts,
    };
    use crate::inspect::extract::{Item, TextKind};
    use sha2::{Digest, Sha256};

    /// A message with headers `head` (including Content-Type) and raw body bytes.
    fn raw(head: &str, body: &[u8]) -> Vec<u8> {
        let mut m = format!("From: a@example.jp\r\nTo: b@example.com\r\nSubject: s\r\nMIME-Version: 1.0\r\n{head}\r\n\r\n")
            .into_bytes();
        m.extend_from_slice(body);
        m
    }

    #[test]
    fn japanese_bodies() {
        let text = "山田様\r\n会員番号 1001 の件です。\r\n";
        let jis = encoding_rs::ISO_2022_JP.encode(text).0.into_owned();
        let euc = encoding_rs::EUC_JP.encode(text).0.into_owned();
        let sjis = encoding_rs::SHIFT_JIS.encode(text).0.into_owned();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("Content-Type: text/plain; charset=ISO-2022-JP\r\nContent-Transfer-Encoding: 7bit", jis.clone()),
            ("Content-Type: text/plain\r\nContent-Transfer-Encoding: 7bit", jis),
            ("Content-Type: text/plain\r\nContent-Transfer-Encoding: 8bit", euc),
            ("Content-Type: text/plain; charset=\"shift_jis\"", sjis.clone()),
            ("Content-Type: text/plain", sjis),
            ("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64", b"5bGx55Sw5qeYDQrkvJrlk6Hnlarlj7cgMTAwMSDjga7ku7bjgafjgZnjgIINCg==".to_vec()),
            (
                "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable",
                b"=E5=B1=B1=E7=94=B0=E6=A7=98\r\n=E4=BC=9A=E5=93=A1=E7=95=AA=E5=8F=B7 1001 =E3=81=AE=E4=BB=\r\n=B6=E3=81=A7=E3=81=99=E3=80=82\r\n".to_vec(),
            ),
        ];
        for (head, body) in cases {
            let x = run(&raw(head, &body));
            assert!(x.problems.is_empty(), "{head}: {:?}", problems(&x));
            assert_eq!(x.items.len(), 1, "{head}");
            match &x.items[0] {
                Item::Text {
                    loc,
                    kind,
                    text: got,
                } => {
                    assert_eq!(
                        (loc.describe().as_str(), *kind),
                        ("body", TextKind::Body),
                        "{head}"
                    );
                    assert_eq!(got.trim_end(), text.trim_end(), "{head}");
                }
                other => panic!("{head}: {other:?}"),
            }
            assert!(x.attachments.is_empty(), "bodies are not attachments");
        }
    }

    const HTML: &str = "<html><body><p>名簿です</p><table><tr><th>氏名</th><th>電話</th></tr>\
        <tr><td>山田</td><td>090-1234-5678</td></tr></table></body></html>";

    #[test]
    fn html_only_and_alternative() {
        let x = run(&raw(
            "Content-Type: text/html; charset=utf-8",
            HTML.as_bytes(),
        ));
        assert_eq!(
            texts(&x, "body"),
            vec!["名簿です\n氏名\t電話\n山田\t090-1234-5678"]
        );
        assert_eq!(
            rows(tables(&x, "body / table 1")[0]),
            vec![vec!["氏名", "電話"], vec!["山田", "090-1234-5678"]]
        );

        let alt = format!(
            "--A\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nplain version\r\n\
             --A\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{HTML}\r\n--A--\r\n"
        );
        let x = run(&raw(
            "Content-Type: multipart/alternative; boundary=A",
            alt.as_bytes(),
        ));
        assert_eq!(
            texts(&x, "body"),
            vec!["plain version", "名簿です\n氏名\t電話\n山田\t090-1234-5678"],
            "both alternatives give their text"
        );
        assert_eq!(
            tables(&x, "body / table 1").len(),
            1,
            "the html alternative gives its tables"
        );
        let sides: Vec<Option<Alternative>> =
            x.items.iter().map(|i| i.location().alternative).collect();
        let plain = Some(Alternative {
            group: 1,
            html: false,
        });
        let html = Some(Alternative {
            group: 1,
            html: true,
        });
        assert_eq!(sides, vec![plain, html, html], "each item knows its side");
    }

    #[test]
    fn calendar_attached_message_and_attachments() {
        let sjis_csv = encoding_rs::SHIFT_JIS
            .encode("氏名,電話\r\n山田,090-1111-2222\r\n鈴木,080-3333-4444\r\n")
            .0;
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(&sjis_csv);
        let inner = format!(
            "From: x@example.jp\r\nSubject: fw\r\nContent-Type: multipart/mixed; boundary=I\r\n\r\n\
             --I\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n転送します\r\n\
             --I\r\nContent-Type: text/csv\r\nContent-Disposition: attachment; filename=\"=?UTF-8?B?5ZCN57C/LmNzdg==?=\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n{b64}\r\n--I--\r\n"
        );
        let body = format!(
            "--O\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nsee attached\r\n\
             --O\r\nContent-Type: text/calendar; method=REQUEST; charset=utf-8\r\n\r\nBEGIN:VCALENDAR\r\nATTENDEE:mailto:c@example.com\r\nEND:VCALENDAR\r\n\
             --O\r\nContent-Type: message/rfc822\r\n\r\n{inner}\r\n\
             --O\r\nContent-Type: text/csv\r\nContent-Disposition: attachment\r\n\r\na,b\r\n1,2\r\n3,4\r\n\
             --O\r\nContent-Type: image/png\r\nContent-Disposition: inline; filename=logo.png\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgoAAAAA\r\n--O--\r\n"
        );
        let x = run(&raw(
            "Content-Type: multipart/mixed; boundary=O",
            body.as_bytes(),
        ));
        assert!(x.problems.is_empty(), "{:?}", problems(&x));
        let cal: Vec<_> = x
            .items
            .iter()
            .filter(|i| {
                matches!(
                    i,
                    Item::Text {
                        kind: TextKind::Calendar,
                        ..
                    }
                )
            })
            .collect();
        assert_eq!(cal.len(), 1, "{:?}", x.items);
        assert_eq!(cal[0].location().describe(), "calendar");
        assert_eq!(texts(&x, "attached message > body"), vec!["転送します"]);
        let csv = tables(&x, "attached message > attachment 名簿.csv");
        assert_eq!(
            rows(csv[0]),
            vec![
                vec!["氏名", "電話"],
                vec!["山田", "090-1111-2222"],
                vec!["鈴木", "080-3333-4444"]
            ]
        );
        assert_eq!(
            tables(&x, "attachment #").len(),
            1,
            "unnamed attachments are numbered"
        );
        let names: Vec<&str> = x.attachments.iter().map(|a| a.name.as_str()).collect();
        assert!(
            names.contains(&"名簿.csv") && names.contains(&"logo.png"),
            "{names:?}"
        );
        let csv_att = x.attachments.iter().find(|a| a.name == "名簿.csv").unwrap();
        assert_eq!(csv_att.size, sjis_csv.len() as u64);
        assert_eq!(csv_att.sha256, <[u8; 32]>::from(Sha256::digest(&sjis_csv)));
    }

    #[test]
    fn encoded_attached_message_uses_its_own_offsets() {
        use base64::Engine;
        let sjis = encoding_rs::SHIFT_JIS
            .encode("氏名,電話\r\n山田,090-1111-2222\r\n鈴木,080-3333-4444\r\n")
            .0;
        let mut inner = b"From: x@example.jp\r\nSubject: fw\r\nContent-Type: multipart/mixed; boundary=I\r\n\r\n\
            --I\r\nContent-Type: text/plain\r\n\r\n"
            .to_vec();
        inner.extend_from_slice(&encoding_rs::SHIFT_JIS.encode("転送します").0);
        inner.extend_from_slice(b"\r\n--I\r\nContent-Type: text/csv\r\nContent-Disposition: attachment; filename=a.csv\r\n\r\n");
        inner.extend_from_slice(&sjis);
        inner.extend_from_slice(b"\r\n--I--\r\n");
        let b64 = base64::engine::general_purpose::STANDARD.encode(&inner);
        let body = format!(
            "--O\r\nContent-Type: text/plain\r\n\r\nsee\r\n\
             --O\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n{b64}\r\n--O--\r\n"
        );
        let x = run(&raw(
            "Content-Type: multipart/mixed; boundary=O",
            body.as_bytes(),
        ));
        assert!(x.problems.is_empty(), "{:?}", problems(&x));
        assert_eq!(texts(&x, "attached message > body"), vec!["転送します"]);
        let csv = tables(&x, "attached message > attachment a.csv");
        assert_eq!(rows(csv[0])[1], vec!["山田", "090-1111-2222"]);
    }

    #[test]
    fn deadline_is_reported_once_and_stops() {
        let atts: Vec<(&str, &str, &[u8])> = vec![("a.csv", "text/csv", b"a,b\n1,2\n3,4\n"); 5];
        let limits = Limits {
            time: std::time::Duration::ZERO,
            ..Limits::default()
        };
        let x = run_with(&message("hi", &atts), limits);
        assert_eq!(
            problems(&x),
            vec![(
                "body".into(),
                crate::inspect::extract::ProblemKind::Limit,
                Exceeded::Time.describe().into()
            )]
        );
        assert!(x.items.is_empty());
    }

    #[test]
    fn limits_on_parts_depth_and_nesting() {
        let atts: Vec<(String, Vec<u8>)> = (0..5)
            .map(|i| (format!("f{i}.txt"), b"x".to_vec()))
            .collect();
        let refs: Vec<(&str, &str, &[u8])> = atts
            .iter()
            .map(|(n, b)| (n.as_str(), "text/plain", b.as_slice()))
            .collect();
        let x = run_with(
            &message("hi", &refs),
            Limits {
                max_parts: 3,
                ..Limits::default()
            },
        );
        assert_eq!(
            problems(&x),
            vec![(
                "attachment f2.txt".into(),
                crate::inspect::extract::ProblemKind::Limit,
                Exceeded::Parts.describe().into()
            )]
        );

        let inner = "From: x@example.jp\r\nContent-Type: text/plain\r\n\r\ninner\r\n";
        let body = format!("--O\r\nContent-Type: message/rfc822\r\n\r\n{inner}\r\n--O--\r\n");
        let x = run_with(
            &raw("Content-Type: multipart/mixed; boundary=O", body.as_bytes()),
            Limits {
                max_depth: 0,
                ..Limits::default()
            },
        );
        assert_eq!(
            problems(&x),
            vec![(
                "attached message".into(),
                crate::inspect::extract::ProblemKind::Limit,
                Exceeded::Depth.describe().into()
            )]
        );

        let mut nested = String::new();
        for i in 0..80 {
            nested.push_str(&format!(
                "--B{i}\r\nContent-Type: multipart/mixed; boundary=B{}\r\n\r\n",
                i + 1
            ));
        }
        nested.push_str("--B80\r\nContent-Type: text/plain\r\n\r\ndeep\r\n");
        let x = run(&raw(
            "Content-Type: multipart/mixed; boundary=B0",
            nested.as_bytes(),
        ));
        assert_eq!(problems(&x)[0].2, "MIME multiparts nested too deeply");
    }

    #[test]
    fn transfer_decoding() {
        let cases: &[(&[u8], Option<&str>, &[u8])] = &[
            (b"44GC44GE\r\n44GG", Some("base64"), "あいう".as_bytes()),
            (b"YQ==\r\n", Some("BASE64"), b"a"),
            (b"YWJj!!ZGVm", Some("base64"), b"abcdef"),
            (b"a=3Db=\r\nc", Some("quoted-printable"), b"a=bc"),
            (b"x= \r\ny", Some("quoted-printable"), b"xy"),
            (
                b"=E3=81=82=zz",
                Some("quoted-printable"),
                "あ=zz".as_bytes(),
            ),
            (b"plain", None, b"plain"),
            (b"plain", Some("8bit"), b"plain"),
        ];
        for (raw, cte, want) in cases {
            assert_eq!(&*transfer_decode(raw, *cte), *want, "{raw:?} {cte:?}");
        }
    }
}
