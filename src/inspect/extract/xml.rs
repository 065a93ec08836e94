//! Small quick-xml 0.42 helpers shared by the OOXML and ODF readers.
//!
//! In 0.42 names and text are `&str`, and entity/character references arrive as separate
//! `GeneralRef` events, so text is assembled from `Text`, `CData` and `GeneralRef` events.

use std::borrow::Cow;

use quick_xml::Reader;
use quick_xml::events::{BytesRef, BytesStart};

/// Events read between two deadline checks.
pub(super) const EVENTS_PER_TIME_CHECK: u32 = 4096;

/// The XML part as text: UTF-8, or UTF-16 when it has a BOM (both are allowed by OPC/ODF).
pub(super) fn to_str(bytes: &[u8]) -> Cow<'_, str> {
    let (text, _, _) = encoding_rs::UTF_8.decode(bytes);
    text
}

/// A lenient reader over a whole part held in memory.
pub(super) fn reader(xml: &str) -> Reader<&[u8]> {
    let mut reader = Reader::from_str(xml);
    let config = reader.config_mut();
    config.check_end_names = false;
    config.allow_unmatched_ends = true;
    config.allow_dangling_amp = true;
    reader
}

/// The local name of an element (`w:t` → `t`).
pub(super) fn local<'e>(e: &'e BytesStart<'_>) -> Cow<'e, str> {
    let name = e.name();
    let full: &str = name.as_ref();
    Cow::Owned(full.rsplit(':').next().unwrap_or(full).to_string())
}

/// The local name of an end tag.
pub(super) fn local_end(name: &str) -> &str {
    name.rsplit(':').next().unwrap_or(name)
}

/// The value of attribute `qname` (qualified, e.g. `table:name`), unescaped.
pub(super) fn attr(e: &BytesStart<'_>, qname: &str) -> Option<String> {
    e.attributes().with_checks(false).flatten().find_map(|a| {
        if a.key.as_ref() != qname {
            return None;
        }
        Some(
            match a.normalized_value(quick_xml::XmlVersion::Implicit1_0) {
                Ok(v) => v.into_owned(),
                Err(_) => a.value.into_owned(),
            },
        )
    })
}

/// Appends the text of a `&...;` reference; unknown entities are kept as written.
pub(super) fn push_ref(out: &mut String, r: &BytesRef<'_>) {
    match r.resolve_char_ref() {
        Ok(Some(c)) => out.push(c),
        Ok(None) => {
            let name = r.xml10_content();
            match quick_xml::escape::resolve_predefined_entity(&name) {
                Some(s) => out.push_str(s),
                None => {
                    out.push('&');
                    out.push_str(&name);
                    out.push(';');
                }
            }
        }
        Err(_) => {}
    }
}
