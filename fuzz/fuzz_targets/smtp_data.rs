//! The DATA receiver over arbitrary bytes and arbitrary chunkings, with a reference model.
//!
//! Input layout: byte 0 picks the size cap, bytes 1..=8 pick the chunk sizes, the rest is
//! what the client sends after `354`. Checked on every input:
//! - chunking never changes anything (output, bytes consumed, end seen, flags, overflow);
//! - DATA ends exactly at the first `CRLF.CRLF` (or at `.CRLF` right at the start), never at
//!   any other sequence: the smuggling property of RELIABILITY.md §2.1;
//! - the output is never larger than the cap; without overflow it has no bare CR or LF and is
//!   equal to a simple reference: split the body at real CRLFs, drop one leading dot per line,
//!   turn every bare CR or LF into CRLF; the bare-CR / bare-LF flags match the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailbrake::smtp::data::DataReceiver;

struct Run {
    out: Vec<u8>,
    consumed: usize,
    done: bool,
    overflow: bool,
    bare_lf: bool,
    bare_cr: bool,
    len: usize,
}

fn run(input: &[u8], max: usize, chunks: &[usize]) -> Run {
    let mut rx = DataReceiver::new(max);
    let mut out = Vec::new();
    let mut pos = 0;
    let mut k = 0;
    let mut done = false;
    while pos < input.len() {
        let step = chunks[k % chunks.len()].max(1);
        k += 1;
        let end = (pos + step).min(input.len());
        let r = rx.ingest(&input[pos..end], &mut out);
        assert!(r.consumed <= end - pos);
        if !r.done {
            assert_eq!(
                r.consumed,
                end - pos,
                "a chunk without the end is consumed whole"
            );
        }
        pos += r.consumed;
        if r.done {
            done = true;
            break;
        }
    }
    Run {
        len: rx.len(),
        out,
        consumed: pos,
        done,
        overflow: rx.overflowed(),
        bare_lf: rx.saw_bare_lf(),
        bare_cr: rx.saw_bare_cr(),
    }
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

/// (end of DATA, end of the body) per RFC 5321: `.CRLF` at the very start, else the first
/// `CRLF.CRLF` (the body keeps that CRLF).
fn terminator(input: &[u8]) -> Option<(usize, usize)> {
    if input.starts_with(b".\r\n") {
        return Some((3, 0));
    }
    find(input, b"\r\n.\r\n").map(|k| (k + 5, k + 2))
}

fn reference(body: &[u8]) -> (Vec<u8>, bool, bool) {
    let mut out = Vec::new();
    let (mut lf, mut cr) = (false, false);
    let mut rest = body;
    while !rest.is_empty() {
        let (line, next, real_end) = match find(rest, b"\r\n") {
            Some(i) => (&rest[..i], &rest[i + 2..], true),
            None => (rest, &rest[rest.len()..], false),
        };
        let line = line.strip_prefix(b".").unwrap_or(line);
        for &b in line {
            match b {
                b'\n' => {
                    lf = true;
                    out.extend_from_slice(b"\r\n");
                }
                b'\r' => {
                    cr = true;
                    out.extend_from_slice(b"\r\n");
                }
                _ => out.push(b),
            }
        }
        if real_end {
            out.extend_from_slice(b"\r\n");
        }
        rest = next;
    }
    (out, lf, cr)
}

fn no_bare_newline(b: &[u8]) -> bool {
    b.iter().enumerate().all(|(i, &c)| match c {
        b'\r' => b.get(i + 1) == Some(&b'\n'),
        b'\n' => i > 0 && b[i - 1] == b'\r',
        _ => true,
    })
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 9 {
        return;
    }
    let max = match data[0] % 4 {
        0 => 16,
        1 => 256,
        2 => 4096,
        _ => 1 << 20,
    };
    let chunks: Vec<usize> = data[1..9]
        .iter()
        .map(|&b| usize::from(b % 64) + 1)
        .collect();
    let input = &data[9..];

    let whole = run(input, max, &[usize::MAX]);
    let chunked = run(input, max, &chunks);
    let bytewise = run(input, max, &[1]);
    for other in [&chunked, &bytewise] {
        assert_eq!(whole.out, other.out, "output depends on chunking");
        assert_eq!(whole.consumed, other.consumed, "end depends on chunking");
        assert_eq!(whole.done, other.done);
        assert_eq!(whole.overflow, other.overflow);
        assert_eq!(whole.bare_lf, other.bare_lf);
        assert_eq!(whole.bare_cr, other.bare_cr);
    }

    match terminator(input) {
        Some((end, body_end)) => {
            assert!(whole.done, "CRLF.CRLF present but DATA did not end");
            assert_eq!(
                whole.consumed, end,
                "DATA ended somewhere other than the first CRLF.CRLF"
            );
            assert!(whole.out.len() <= max);
            let (want, lf, cr) = reference(&input[..body_end]);
            assert_eq!(
                (whole.bare_lf, whole.bare_cr),
                (lf, cr),
                "bare newline flags"
            );
            if want.len() <= max {
                assert!(!whole.overflow, "overflow below the cap");
                assert_eq!(whole.out, want, "output differs from the reference");
                assert_eq!(whole.len, want.len());
                assert!(no_bare_newline(&whole.out));
            } else {
                assert!(whole.overflow, "a message over the cap was not flagged");
                assert!(whole.out.is_empty(), "an overflowed message keeps no bytes");
            }
        }
        None => {
            assert!(!whole.done, "DATA ended without CRLF.CRLF: smuggling");
            assert_eq!(whole.consumed, input.len());
        }
    }
});
