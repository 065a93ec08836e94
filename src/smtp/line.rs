//! Command-line framing (sans-IO): find the next complete line in a read buffer.
//!
//! A line ends at LF; a CR before it is dropped by the command parser. A line longer than the
//! limit is reported as [`Line::TooLong`] as soon as the limit is passed, so a client sending
//! megabytes without LF never makes the buffer grow past the limit.

/// The result of looking for a line at the start of `buf`.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A complete line of this many bytes, LF included.
    Complete(usize),
    /// No LF within the limit: the client is over the command-line cap.
    TooLong,
    /// Not enough bytes yet.
    Incomplete,
}

/// Looks for a complete line of at most `max` bytes (LF included) at the start of `buf`.
pub fn next_line(buf: &[u8], max: usize) -> Line {
    let window = &buf[..buf.len().min(max)];
    match memchr::memchr(b'\n', window) {
        Some(pos) => Line::Complete(pos + 1),
        None if buf.len() >= max => Line::TooLong,
        None => Line::Incomplete,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_table() {
        let cases: &[(&[u8], usize, Line)] = &[
            (b"NOOP\r\n", 4096, Line::Complete(6)),
            (b"NOOP\r\nQUIT\r\n", 4096, Line::Complete(6)),
            (b"NOOP\n", 4096, Line::Complete(5)),
            (b"NOO", 4096, Line::Incomplete),
            (b"", 4096, Line::Incomplete),
            (b"0123456789", 10, Line::TooLong),
            (b"012345678\n", 10, Line::Complete(10)),
            (b"0123456789\n", 10, Line::TooLong),
        ];
        for (input, max, want) in cases {
            assert_eq!(
                &next_line(input, *max),
                want,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }
}
