//! Command-line framing + the command parser, as the session uses them: `next_line` over a
//! buffer of arbitrary bytes, every complete line parsed by smtp-proto (then owned).
//! Invariants: a complete line ends at its first LF, within `max`; `TooLong` only when no LF
//! is within `max` bytes and at least `max` are buffered; `Incomplete` only below `max`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailbrake::smtp::line::{Line, next_line};
use smtp_proto::Request;

fuzz_target!(|data: &[u8]| {
    // First byte: the cap (512..=4592, the configurable range starts at 512).
    let Some((&m, buf)) = data.split_first() else {
        return;
    };
    let max = 512 + usize::from(m) * 16;
    let mut pos = 0;
    loop {
        let rest = &buf[pos..];
        match next_line(rest, max) {
            Line::Complete(n) => {
                assert!(
                    n >= 1 && n <= max && n <= rest.len(),
                    "line of {n} bytes, max {max}"
                );
                assert_eq!(rest[n - 1], b'\n');
                assert!(
                    !rest[..n - 1].contains(&b'\n'),
                    "a line must end at its first LF"
                );
                let line = &rest[..n];
                if let Ok(r) = Request::parse(&mut line.iter()) {
                    let _ = r.into_owned();
                }
                pos += n;
            }
            Line::TooLong => {
                assert!(rest.len() >= max && !rest[..max].contains(&b'\n'));
                break;
            }
            Line::Incomplete => {
                assert!(rest.len() < max && !rest.contains(&b'\n'));
                break;
            }
        }
    }
});
