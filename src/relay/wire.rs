//! The client side of the SMTP wire (sans-IO): reading replies and dot-stuffing a message.

use crate::smtp::reply::Reply;

/// Longest reply accepted from the upstream (all lines together).
pub const MAX_REPLY: usize = 64 * 1024;

/// Why a reply could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyError {
    /// Not a `ddd` or `ddd-text` / `ddd text` line.
    Malformed,
    /// Over [`MAX_REPLY`].
    TooLong,
}

/// Looks for one complete (possibly multi-line) reply at the start of `buf`. Returns the
/// reply and the bytes it used, `Ok(None)` when more bytes are needed.
pub fn parse_reply(buf: &[u8]) -> Result<Option<(Reply, usize)>, ReplyError> {
    let mut pos = 0;
    let mut lines = Vec::new();
    let mut code = 0u16;
    loop {
        let Some(nl) = memchr::memchr(b'\n', &buf[pos..]) else {
            return if buf.len() > MAX_REPLY {
                Err(ReplyError::TooLong)
            } else {
                Ok(None)
            };
        };
        let line = &buf[pos..pos + nl];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        pos += nl + 1;
        if pos > MAX_REPLY {
            return Err(ReplyError::TooLong);
        }
        if line.len() < 3 || !line[..3].iter().all(u8::is_ascii_digit) {
            return Err(ReplyError::Malformed);
        }
        let c = u16::from(line[0] - b'0') * 100
            + u16::from(line[1] - b'0') * 10
            + u16::from(line[2] - b'0');
        if code != 0 && c != code {
            return Err(ReplyError::Malformed);
        }
        code = c;
        let text = line.get(4..).unwrap_or(&[]);
        lines.push(String::from_utf8_lossy(text).into_owned());
        match line.get(3) {
            None | Some(b' ') => return Ok(Some((Reply::multi(code, lines), pos))),
            Some(b'-') => {}
            Some(_) => return Err(ReplyError::Malformed),
        }
    }
}

/// Appends `message` to `out` dot-stuffed (a `.` is doubled at the start of every line), then
/// the terminating `.` line. `message` holds CRLF line ends only (the DATA receiver made it
/// so); if it does not end with CRLF, one is added before the terminator. Lines are found with
/// one `memmem` search per line start, and copied in runs, never byte by byte.
pub fn stuff_into(message: &[u8], out: &mut Vec<u8>) {
    out.reserve(message.len() + message.len() / 256 + 8);
    let mut start = 0;
    if message.first() == Some(&b'.') {
        out.push(b'.');
    }
    for hit in memchr::memmem::find_iter(message, b"\n.") {
        out.extend_from_slice(&message[start..=hit]);
        out.push(b'.');
        start = hit + 1;
    }
    out.extend_from_slice(&message[start..]);
    if !message.is_empty() && !message.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
}

/// The dot-stuffed message as pieces to write in order: runs of the message itself and the
/// inserted dots, then the terminator. No message byte is copied.
pub fn stuffed_pieces(message: &[u8]) -> Vec<&[u8]> {
    let mut pieces = Vec::new();
    let mut start = 0;
    if message.first() == Some(&b'.') {
        pieces.push(&b"."[..]);
    }
    for hit in memchr::memmem::find_iter(message, b"\n.") {
        pieces.push(&message[start..=hit]);
        pieces.push(&b"."[..]);
        start = hit + 1;
    }
    pieces.push(&message[start..]);
    if !message.is_empty() && !message.ends_with(b"\r\n") {
        pieces.push(&b"\r\n"[..]);
    }
    pieces.push(&b".\r\n"[..]);
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies() {
        let (r, n) = parse_reply(b"250-a\r\n250-SIZE 10\r\n250 PIPELINING\r\nnext")
            .unwrap()
            .unwrap();
        assert_eq!((r.code, r.lines.len(), n), (250, 3, 36));
        assert_eq!(parse_reply(b"250-a\r\n250 b").unwrap(), None);
        assert!(parse_reply(b"25x ok\r\n").is_err());
        assert!(parse_reply(b"250-a\r\n354 b\r\n").is_err());
        let (r, _) = parse_reply(b"220\r\n").unwrap().unwrap();
        assert_eq!(r.code, 220);
        assert_eq!(
            parse_reply(&vec![b'2'; MAX_REPLY + 10]),
            Err(ReplyError::TooLong)
        );
    }

    #[test]
    fn stuffing() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"a\r\n.b\r\n..c\r\n", b"a\r\n..b\r\n...c\r\n.\r\n"),
            (b".x\r\n", b"..x\r\n.\r\n"),
            (b"no crlf at end", b"no crlf at end\r\n.\r\n"),
            (b"", b".\r\n"),
            (b"a\r\n.\r\n", b"a\r\n..\r\n.\r\n"),
        ];
        for (input, want) in cases {
            let mut out = Vec::new();
            stuff_into(input, &mut out);
            assert_eq!(out, *want, "{:?}", String::from_utf8_lossy(input));
            assert_eq!(stuffed_pieces(input).concat(), *want);
        }
    }
}
