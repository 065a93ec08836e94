//! How many bytes a PDF's streams inflate to, counted before the PDF reader sees the file.
//!
//! pdf-extract (through lopdf) decompresses streams into memory without a size limit, so a
//! few hundred KiB of deflated zeros would cost gigabytes. This pre-scan walks the raw file
//! for `<< … >> stream` bodies, decodes each with the filters lopdf would apply (FlateDecode,
//! with lopdf's raw-deflate fallback, LZWDecode and ASCII85Decode, chained in order), counts
//! the output without keeping it where it can, and charges it to the inspection's
//! inflated-bytes budget. Over the budget, the PDF is not handed to the reader at all.
//!
//! It reads the raw bytes, not lopdf's object model, because lopdf already inflates object
//! streams while loading the document. Each decoder reads from the body to the end of the
//! file and stops at its own end-of-data marker, so a wrong `/Length` or a stray `endstream`
//! inside compressed data cannot shorten the count. A filter lopdf cannot decode (DCT, JPX,
//! CCITT …) ends the chain: lopdf gives up on that stream too.

use std::io::{self, BufRead, BufReader, Cursor, Read, Write};

use flate2::bufread::{DeflateDecoder, ZlibDecoder};

use crate::inspect::budget::{Budget, Exceeded};

/// How far back from `stream` the stream's dictionary is looked for.
const DICT_WINDOW: usize = 64 * 1024;

/// Filters lopdf decodes (the names and their standard abbreviations).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Filter {
    Flate,
    Lzw {
        early_change: bool,
    },
    Ascii85,
    /// Anything else: lopdf stops decoding the stream here.
    Other,
}

/// Charges every stream's decoded size to `budget`; the limit that stopped the count, if any.
pub(super) fn charge(bytes: &[u8], budget: &Budget) -> Result<(), Exceeded> {
    let finder = memchr::memmem::Finder::new(b"stream");
    let mut from = 0;
    while let Some(i) = finder.find(&bytes[from..]) {
        let at = from + i;
        from = at + b"stream".len();
        // `stream` right after a dictionary's `>>` (this also skips `endstream`).
        if !trim_ws_end(&bytes[..at]).ends_with(b">>") {
            continue;
        }
        let filters = stream_filters(dictionary_before(bytes, at));
        if filters.first().is_none_or(|f| *f == Filter::Other) {
            continue;
        }
        budget.check_time()?;
        let body = body_start(bytes, from);
        let decoded = decoded_len(&bytes[body..], &filters, budget.inflated_left());
        budget.take_inflated(decoded)?;
    }
    Ok(())
}

/// `bytes` without trailing PDF white space.
fn trim_ws_end(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().rposition(|b| !is_ws(*b)).map_or(0, |p| p + 1);
    &bytes[..end]
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b'\x0c' | b'\0')
}

fn is_delimiter(b: u8) -> bool {
    is_ws(b) || b"()<>[]{}/%".contains(&b)
}

/// The text of the object that holds the stream keyword at `at`: from its `obj` keyword,
/// within [`DICT_WINDOW`].
fn dictionary_before(bytes: &[u8], at: usize) -> &[u8] {
    let window = &bytes[at.saturating_sub(DICT_WINDOW)..at];
    match memchr::memmem::rfind(window, b"obj") {
        Some(p) => &window[p..],
        None => window,
    }
}

/// The first byte of a stream body: after `stream` and its end of line.
fn body_start(bytes: &[u8], after_keyword: usize) -> usize {
    let mut p = after_keyword;
    if bytes.get(p) == Some(&b'\r') {
        p += 1;
    }
    if bytes.get(p) == Some(&b'\n') {
        p += 1;
    }
    p
}

/// The `/Filter` of a dictionary, in decoding order (a name or an array of names).
fn stream_filters(dict: &[u8]) -> Vec<Filter> {
    let Some(p) = memchr::memmem::find(dict, b"/Filter") else {
        return Vec::new();
    };
    let early_change = !has_early_change_off(dict);
    let mut rest = &dict[p + b"/Filter".len()..];
    // `/FilterX` is another key.
    if rest.first().is_some_and(|b| !is_delimiter(*b)) {
        return Vec::new();
    }
    while rest.first().is_some_and(|b| is_ws(*b)) {
        rest = &rest[1..];
    }
    let names: &[u8] = match rest.first() {
        Some(b'[') => {
            let end = memchr::memchr(b']', rest).unwrap_or(rest.len());
            &rest[1..end]
        }
        Some(b'/') => {
            let end = rest[1..]
                .iter()
                .position(|b| is_delimiter(*b))
                .map_or(rest.len(), |e| e + 1);
            &rest[..end]
        }
        // An indirect reference: lopdf treats the stream as uncompressed.
        _ => return Vec::new(),
    };
    names
        .split(|b| *b == b'/')
        .map(trim_ws_end)
        .filter(|n| !n.is_empty())
        .map(|n| match n {
            b"FlateDecode" | b"Fl" => Filter::Flate,
            b"LZWDecode" | b"LZW" => Filter::Lzw { early_change },
            b"ASCII85Decode" | b"A85" => Filter::Ascii85,
            _ => Filter::Other,
        })
        .collect()
}

/// `/EarlyChange 0` in the decode parameters.
fn has_early_change_off(dict: &[u8]) -> bool {
    memchr::memmem::find(dict, b"/EarlyChange").is_some_and(|p| {
        dict[p + b"/EarlyChange".len()..]
            .iter()
            .find(|b| !is_ws(**b))
            .is_some_and(|b| *b == b'0')
    })
}

/// Bytes the chain of `filters` produces from `input`, counted up to `cap + 1`.
fn decoded_len(input: &[u8], filters: &[Filter], cap: u64) -> u64 {
    let limit = cap.saturating_add(1);
    let mut reader: Box<dyn BufRead + '_> = Box::new(input);
    let stages = filters
        .iter()
        .position(|f| *f == Filter::Other)
        .unwrap_or(filters.len());
    for (i, filter) in filters[..stages].iter().enumerate() {
        let last = i + 1 == stages;
        reader = match *filter {
            Filter::Flate => flate(reader),
            Filter::Ascii85 => Box::new(BufReader::new(Ascii85::new(reader))),
            Filter::Lzw { early_change } => {
                let mut sink = Capped::new(limit, !last);
                lzw(reader, early_change, &mut sink);
                if last {
                    return sink.count;
                }
                Box::new(Cursor::new(sink.kept))
            }
            Filter::Other => break,
        };
    }
    count(reader, limit)
}

/// A FlateDecode stage: zlib, or raw deflate after the two header bytes when the zlib header
/// is wrong (lopdf's fallback for streams with a damaged header).
fn flate<'a>(mut reader: Box<dyn BufRead + 'a>) -> Box<dyn BufRead + 'a> {
    let header = match reader.fill_buf() {
        Ok(b) if b.len() >= 2 => [b[0], b[1]],
        _ => return Box::new(io::empty()),
    };
    let zlib =
        header[0] & 0x0f == 8 && (u16::from(header[0]) << 8 | u16::from(header[1])) % 31 == 0;
    if zlib {
        Box::new(BufReader::new(ZlibDecoder::new(reader)))
    } else {
        reader.consume(2);
        Box::new(BufReader::new(DeflateDecoder::new(reader)))
    }
}

/// An LZWDecode stage into `sink` (which stops it by refusing writes past its limit).
fn lzw(reader: Box<dyn BufRead + '_>, early_change: bool, sink: &mut Capped) {
    use weezl::{BitOrder, decode::Decoder};
    let mut decoder = if early_change {
        Decoder::with_tiff_size_switch(BitOrder::Msb, 8)
    } else {
        Decoder::new(BitOrder::Msb, 8)
    };
    // Errors (corrupt data, the sink's limit) end the stage with what was produced.
    let _ = decoder.into_stream(sink).decode_all(reader).status;
}

/// Bytes readable from `reader`, up to `limit`; a read error ends the count.
fn count(mut reader: Box<dyn BufRead + '_>, limit: u64) -> u64 {
    let mut n = 0u64;
    while n < limit {
        match reader.fill_buf() {
            Ok([]) | Err(_) => break,
            Ok(buf) => {
                let len = buf.len();
                n = n.saturating_add(len as u64);
                reader.consume(len);
            }
        }
    }
    n
}

/// A writer that counts, keeps the bytes only when asked, and fails past its limit.
struct Capped {
    count: u64,
    limit: u64,
    kept: Vec<u8>,
    keep: bool,
}

impl Capped {
    fn new(limit: u64, keep: bool) -> Capped {
        Capped {
            count: 0,
            limit,
            kept: Vec::new(),
            keep,
        }
    }
}

impl Write for Capped {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.count >= self.limit {
            return Err(io::Error::other("decoded size limit"));
        }
        self.count = self.count.saturating_add(buf.len() as u64);
        if self.keep {
            self.kept.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// An ASCII85Decode stage, streaming: groups of five characters, `z` for four zeros, white
/// space ignored; `~>`, an invalid character or the end of input ends it.
struct Ascii85<'a> {
    inner: Box<dyn BufRead + 'a>,
    group: Group,
    done: bool,
}

/// The characters of one ASCII85 group read so far.
#[derive(Default)]
struct Group {
    digits: [u8; 5],
    filled: usize,
}

impl Group {
    /// Adds one digit (0..=84); a full group is decoded into `out`.
    fn push(&mut self, digit: u8, out: &mut Vec<u8>) {
        self.digits[self.filled] = digit;
        self.filled += 1;
        if self.filled == 5 {
            self.flush(out);
        }
    }

    /// Decodes the pending group (padded with `u` when short) into `out`.
    fn flush(&mut self, out: &mut Vec<u8>) {
        if self.filled < 2 {
            self.filled = 0;
            return;
        }
        let mut value: u32 = 0;
        for i in 0..5 {
            let digit = if i < self.filled { self.digits[i] } else { 84 };
            value = value.wrapping_mul(85).wrapping_add(u32::from(digit));
        }
        out.extend_from_slice(&value.to_be_bytes()[..self.filled - 1]);
        self.filled = 0;
    }
}

impl<'a> Ascii85<'a> {
    fn new(inner: Box<dyn BufRead + 'a>) -> Self {
        Ascii85 {
            inner,
            group: Group::default(),
            done: false,
        }
    }
}

impl Read for Ascii85<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut out = Vec::with_capacity(buf.len() + 4);
        while out.len() + 4 <= buf.len() && !self.done {
            let chunk = match self.inner.fill_buf() {
                Ok(c) => c,
                Err(_) => {
                    self.done = true;
                    break;
                }
            };
            if chunk.is_empty() {
                self.done = true;
                break;
            }
            let mut used = 0;
            for &c in chunk {
                if out.len() + 4 > buf.len() {
                    break;
                }
                used += 1;
                match c {
                    b'!'..=b'u' => self.group.push(c - b'!', &mut out),
                    b'z' if self.group.filled == 0 => out.extend_from_slice(&[0; 4]),
                    c if is_ws(c) => {}
                    _ => {
                        self.done = true;
                        break;
                    }
                }
            }
            self.inner.consume(used);
        }
        if self.done {
            self.group.flush(&mut out);
        }
        // `out` never exceeds `buf` by construction, except a final partial group of at
        // most three bytes, which only comes when `buf` has room for four.
        let n = out.len().min(buf.len());
        buf[..n].copy_from_slice(&out[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::budget::Limits;
    use flate2::Compression;
    use flate2::write::ZlibEncoder;

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut e = ZlibEncoder::new(Vec::new(), Compression::best());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn pdf(dict: &str, body: &[u8]) -> Vec<u8> {
        let mut p = b"%PDF-1.4\n1 0 obj\n<< /Length 44 >>\nstream\nBT /F1 12 Tf (hi) Tj ET\nendstream\nendobj\n4 0 obj\n".to_vec();
        p.extend_from_slice(dict.as_bytes());
        p.extend_from_slice(b"\nstream\r\n");
        p.extend_from_slice(body);
        p.extend_from_slice(b"\nendstream\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n");
        p
    }

    fn budget(max: u64) -> Budget {
        Budget::new(Limits {
            max_inflated: max,
            ..Limits::default()
        })
    }

    const MIB: usize = 1024 * 1024;

    #[test]
    fn a_deflate_bomb_exceeds_the_inflated_budget() {
        let zeros = vec![0u8; 3 * MIB];
        let bomb = pdf("<< /Length 9 0 R /Filter /FlateDecode >>", &zlib(&zeros));
        assert_eq!(charge(&bomb, &budget(MIB as u64)), Err(Exceeded::Inflated));
        let b = budget(4 * MIB as u64);
        assert_eq!(charge(&bomb, &b), Ok(()));
        assert_eq!(b.inflated_left(), MIB as u64, "counted exactly 3 MiB");
    }

    #[test]
    fn chained_and_abbreviated_filters_are_followed() {
        let zeros = vec![0u8; 3 * MIB];
        let twice = zlib(&zlib(&zeros));
        for dict in [
            "<< /Filter [ /FlateDecode /FlateDecode ] /Length 5 >>",
            "<</Filter[/Fl/Fl]/DecodeParms[null null]>>",
        ] {
            assert_eq!(
                charge(&pdf(dict, &twice), &budget(MIB as u64)),
                Err(Exceeded::Inflated),
                "{dict}"
            );
        }
        // A filter lopdf cannot decode stops the chain where lopdf stops.
        let b = budget(MIB as u64);
        let dct = pdf(
            "<< /Filter [/FlateDecode /DCTDecode] >>",
            &zlib(&[7u8; 1000]),
        );
        assert_eq!(charge(&dct, &b), Ok(()));
        assert_eq!(b.inflated_left(), MIB as u64 - 1000);
    }

    #[test]
    fn lzw_and_ascii85_streams_are_counted() {
        use weezl::{BitOrder, encode::Encoder};
        let zeros = vec![0u8; 3 * MIB];
        let lzw = Encoder::with_tiff_size_switch(BitOrder::Msb, 8)
            .encode(&zeros)
            .unwrap();
        assert_eq!(
            charge(&pdf("<< /Filter /LZWDecode >>", &lzw), &budget(MIB as u64)),
            Err(Exceeded::Inflated)
        );
        // ASCII85 of a deflated bomb: `z` is four zero bytes.
        let a85 = ascii85(&zlib(&zeros));
        assert_eq!(
            charge(
                &pdf("<< /Filter [/ASCII85Decode /FlateDecode] >>", &a85),
                &budget(MIB as u64)
            ),
            Err(Exceeded::Inflated)
        );
        let b = budget(MIB as u64);
        let hello = pdf("<< /Filter /A85 >>", &ascii85(b"Hello world"));
        assert_eq!(charge(&hello, &b), Ok(()));
        assert_eq!(
            b.inflated_left(),
            MIB as u64 - 11,
            "'Hello world' is 11 bytes"
        );
    }

    #[test]
    fn a_wrong_length_or_endstream_inside_the_data_cannot_shorten_the_count() {
        // Stored (uncompressed) deflate blocks carry their bytes as they are, so the body
        // holds a literal `endstream` right at its start, and the dictionary lies about the
        // length: the decoder still reads to the deflate stream's own end.
        let mut content = b"endstream\nendobj\n".to_vec();
        content.resize(3 * MIB, b' ');
        let mut e = ZlibEncoder::new(Vec::new(), Compression::none());
        e.write_all(&content).unwrap();
        let p = pdf("<< /Length 3 /Filter /FlateDecode >>", &e.finish().unwrap());
        assert_eq!(charge(&p, &budget(MIB as u64)), Err(Exceeded::Inflated));
    }

    #[test]
    fn damaged_zlib_headers_use_the_raw_deflate_fallback() {
        let zeros = vec![0u8; 3 * MIB];
        let mut body = zlib(&zeros);
        body[0] = 0;
        body[1] = 0;
        let p = pdf("<< /Filter /FlateDecode >>", &body);
        assert_eq!(charge(&p, &budget(MIB as u64)), Err(Exceeded::Inflated));
    }

    #[test]
    fn ordinary_pdfs_cost_what_their_streams_hold() {
        let real = include_bytes!("../../../tests/fixtures/formats/members.pdf");
        let b = budget(u64::MAX / 2);
        assert_eq!(charge(real, &b), Ok(()));
        let used = u64::MAX / 2 - b.inflated_left();
        assert!(used > 0 && used < 10 * MIB as u64, "{used}");
        // Uncompressed streams, indirect filters and other keys cost nothing extra.
        let b = budget(MIB as u64);
        for dict in [
            "<< /Length 5 >>",
            "<< /Filter 7 0 R >>",
            "<< /FilterX /FlateDecode >>",
        ] {
            assert_eq!(charge(&pdf(dict, &zlib(&[1u8; 100])), &b), Ok(()), "{dict}");
        }
        assert_eq!(b.inflated_left(), MIB as u64);
    }

    /// ASCII85 with `z` for zero groups, ending with `~>`.
    fn ascii85(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for chunk in data.chunks(4) {
            let mut word = [0u8; 4];
            word[..chunk.len()].copy_from_slice(chunk);
            let mut v = u32::from_be_bytes(word);
            if v == 0 && chunk.len() == 4 {
                out.push(b'z');
                continue;
            }
            let mut digits = [0u8; 5];
            for d in digits.iter_mut().rev() {
                *d = (v % 85) as u8 + b'!';
                v /= 85;
            }
            out.extend_from_slice(&digits[..chunk.len() + 1]);
        }
        out.extend_from_slice(b"~>");
        out
    }
}
