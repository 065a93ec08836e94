//! The DATA receiver (sans-IO): message bytes in, unstuffed message out.
//!
//! Rules (RFC 5321 §2.3.8, §4.1.1.4, §4.5.2; RELIABILITY.md §2.1):
//! - DATA ends **only** at `CRLF . CRLF`. `LF.LF`, `LF.CRLF`, `CR.CRLF`, `CRLF.LF`, `CRLF.CR`
//!   and `CR.CR` never end it, so no second message can be smuggled inside one DATA.
//! - A dot at the start of a line (after a real CRLF) is removed (dot-unstuffing).
//! - A bare CR or bare LF is turned into CRLF in the output (normalised) and remembered, so
//!   the caller can refuse the message instead when the policy says `reject`. A line start
//!   created by normalisation never starts a terminator.
//! - The output never grows past `max` bytes: once over, the receiver keeps reading to the
//!   final dot (so a pipelined client stays in sync) but discards the rest.
//!
//! Runs of ordinary bytes are copied with one `memchr2` search and one `extend_from_slice`,
//! so a 1 MB body costs a handful of calls, not one per byte.

/// Where the receiver is within the current line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a line that follows a real CRLF (or the start of DATA).
    LineStart,
    /// Saw `.` at a line start.
    Dot,
    /// Saw `.` `CR` at a line start.
    DotCr,
    /// Inside a line.
    Mid,
    /// Saw `CR` inside a line.
    Cr,
}

/// Incremental DATA receiver for one message.
#[derive(Debug)]
pub struct DataReceiver {
    state: State,
    max: usize,
    written: usize,
    overflow: bool,
    bare_lf: bool,
    bare_cr: bool,
}

/// What [`DataReceiver::ingest`] did with a chunk.
#[derive(Debug, PartialEq, Eq)]
pub struct Ingested {
    /// Bytes of the input consumed. When `done`, the rest belongs to the next command.
    pub consumed: usize,
    /// The final `CRLF.CRLF` was seen.
    pub done: bool,
}

impl DataReceiver {
    /// A receiver that writes at most `max` message bytes to its output.
    pub fn new(max: usize) -> Self {
        DataReceiver {
            state: State::LineStart,
            max,
            written: 0,
            overflow: false,
            bare_lf: false,
            bare_cr: false,
        }
    }

    /// More than `max` bytes were sent; the output holds no usable message.
    pub fn overflowed(&self) -> bool {
        self.overflow
    }

    /// A bare LF was seen (and normalised to CRLF in the output).
    pub fn saw_bare_lf(&self) -> bool {
        self.bare_lf
    }

    /// A bare CR was seen (and normalised to CRLF in the output).
    pub fn saw_bare_cr(&self) -> bool {
        self.bare_cr
    }

    /// Message bytes received so far (after unstuffing and normalisation).
    pub fn len(&self) -> usize {
        self.written
    }

    pub fn is_empty(&self) -> bool {
        self.written == 0
    }

    fn emit(&mut self, out: &mut Vec<u8>, bytes: &[u8]) {
        if self.overflow {
            return;
        }
        if self.written + bytes.len() > self.max {
            self.overflow = true;
            // Release what was buffered: the message will be refused anyway.
            out.clear();
            out.shrink_to_fit();
            return;
        }
        self.written += bytes.len();
        out.extend_from_slice(bytes);
    }

    /// Feeds `input`; appends message bytes to `out`. Stops right after the final dot line.
    pub fn ingest(&mut self, input: &[u8], out: &mut Vec<u8>) -> Ingested {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                State::LineStart => {
                    if input[i] == b'.' {
                        self.state = State::Dot;
                        i += 1;
                    } else {
                        self.state = State::Mid;
                    }
                }
                State::Dot => {
                    if input[i] == b'\r' {
                        self.state = State::DotCr;
                        i += 1;
                    } else {
                        // A stuffed dot: drop it and read the rest of the line as text.
                        self.state = State::Mid;
                    }
                }
                State::DotCr => {
                    if input[i] == b'\n' {
                        return Ingested {
                            consumed: i + 1,
                            done: true,
                        };
                    }
                    // `.` `CR` + something else: stuffed dot, then a bare CR.
                    self.bare_cr = true;
                    self.emit(out, b"\r\n");
                    self.state = State::Mid;
                }
                State::Mid => {
                    let rest = &input[i..];
                    match memchr::memchr2(b'\r', b'\n', rest) {
                        None => {
                            self.emit(out, rest);
                            i = input.len();
                        }
                        Some(pos) => {
                            self.emit(out, &rest[..pos]);
                            if rest[pos] == b'\r' {
                                self.state = State::Cr;
                            } else {
                                // Bare LF: normalise, but it does not start a line that
                                // could end DATA.
                                self.bare_lf = true;
                                self.emit(out, b"\r\n");
                            }
                            i += pos + 1;
                        }
                    }
                }
                State::Cr => {
                    self.emit(out, b"\r\n");
                    if input[i] == b'\n' {
                        self.state = State::LineStart;
                        i += 1;
                    } else {
                        self.bare_cr = true;
                        self.state = State::Mid;
                    }
                }
            }
        }
        Ingested {
            consumed: input.len(),
            done: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in chunks of `step` bytes; returns (output, consumed, done).
    fn run(input: &[u8], step: usize, max: usize) -> (Vec<u8>, usize, bool, DataReceiver) {
        let mut rx = DataReceiver::new(max);
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < input.len() {
            let end = (pos + step).min(input.len());
            let r = rx.ingest(&input[pos..end], &mut out);
            pos += r.consumed;
            if r.done {
                return (out, pos, true, rx);
            }
        }
        (out, pos, false, rx)
    }

    #[test]
    fn ends_only_at_crlf_dot_crlf_in_any_chunking() {
        let input = b"Subject: x\r\n\r\nhello\r\n..dot\r\n.\r\nQUIT\r\n";
        for step in 1..input.len() {
            let (out, consumed, done, rx) = run(input, step, 1 << 20);
            assert!(done, "step {step}");
            assert_eq!(out, b"Subject: x\r\n\r\nhello\r\n.dot\r\n", "step {step}");
            assert_eq!(&input[consumed..], b"QUIT\r\n");
            assert!(!rx.saw_bare_lf() && !rx.saw_bare_cr());
        }
    }

    #[test]
    fn empty_message_and_leading_dot() {
        let (out, _, done, _) = run(b".\r\n", 1, 100);
        assert!(done);
        assert!(out.is_empty());
        let (out, _, done, _) = run(b"..x\r\n.\r\n", 2, 100);
        assert!(done);
        assert_eq!(out, b".x\r\n");
    }

    #[test]
    fn smuggling_variants_never_end_data() {
        // RELIABILITY.md §2.1: each variant followed by a second transaction.
        let variants: &[&[u8]] = &[
            b"\n.\n", b"\n.\r\n", b"\r.\r\n", b"\r\n.\n", b"\r\n.\r", b"\r.\r",
        ];
        for v in variants {
            let mut input = b"Subject: first\r\n\r\nbody".to_vec();
            input.extend_from_slice(v);
            input.extend_from_slice(
                b"MAIL FROM:<s@x.test>\r\nRCPT TO:<b@x.test>\r\nDATA\r\nx\r\n.\r\n",
            );
            for step in [1, 3, input.len()] {
                let (out, consumed, done, rx) = run(&input, step, 1 << 20);
                assert!(done, "{v:?}");
                assert_eq!(consumed, input.len(), "{v:?} ended early");
                assert!(rx.saw_bare_lf() || rx.saw_bare_cr(), "{v:?}");
                // Normalised output has no bare CR or LF left.
                let text = String::from_utf8(out).unwrap();
                assert!(!text.replace("\r\n", "").contains(['\r', '\n']), "{v:?}");
                assert!(text.contains("MAIL FROM"), "{v:?}");
            }
        }
    }

    #[test]
    fn bare_newlines_are_normalised() {
        let (out, _, done, rx) = run(b"a\nb\rc\r\n.\r\n", 1, 100);
        assert!(done);
        assert_eq!(out, b"a\r\nb\r\nc\r\n");
        assert!(rx.saw_bare_lf() && rx.saw_bare_cr());
    }

    #[test]
    fn overflow_discards_but_finds_the_end() {
        let mut input = vec![b'x'; 5000];
        input.extend_from_slice(b"\r\n.\r\nNOOP\r\n");
        let (out, consumed, done, rx) = run(&input, 700, 1000);
        assert!(done);
        assert!(rx.overflowed());
        assert!(out.is_empty());
        assert_eq!(&input[consumed..], b"NOOP\r\n");
    }

    #[test]
    fn exact_limit_is_accepted() {
        let (out, _, done, rx) = run(b"12345678\r\n.\r\n", 4, 10);
        assert!(done);
        assert!(!rx.overflowed());
        assert_eq!(out.len(), 10);
    }
}
