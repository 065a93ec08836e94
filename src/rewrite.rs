//! Header rewriting for the `bcc` action: To and Cc become an undisclosed list; the envelope
//! (who actually receives the message) is unchanged, and nothing else in the message moves.

/// Returns `raw` with every To and Cc field (folded lines included) removed from the header
/// section and `To: undisclosed-recipients:;` put where the first of them was.
pub fn undisclosed_recipients(raw: &[u8]) -> Vec<u8> {
    let header_end = find_header_end(raw);
    let (head, body) = raw.split_at(header_end);
    let mut out = Vec::with_capacity(raw.len());
    let mut inserted = false;
    let mut dropping = false;
    let mut pos = 0;
    while pos < head.len() {
        let end = head[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map(|i| pos + i + 1)
            .unwrap_or(head.len());
        let line = &head[pos..end];
        let continuation = matches!(line.first(), Some(b' ' | b'\t'));
        if !continuation {
            let name = line.split(|&b| b == b':').next().unwrap_or(&[]);
            dropping = name.eq_ignore_ascii_case(b"to") || name.eq_ignore_ascii_case(b"cc");
            if dropping && !inserted {
                out.extend_from_slice(b"To: undisclosed-recipients:;\r\n");
                inserted = true;
            }
        }
        if !dropping {
            out.extend_from_slice(line);
        }
        pos = end;
    }
    if !inserted {
        // No To at all: say so explicitly (RFC 5322 allows an empty group).
        let at = out
            .len()
            .saturating_sub(if out.ends_with(b"\r\n\r\n") { 2 } else { 0 });
        out.splice(at..at, b"To: undisclosed-recipients:;\r\n".iter().copied());
    }
    out.extend_from_slice(body);
    out
}

/// Index just after the blank line ending the header section (the whole input if none),
/// the blank line itself included in the header part.
fn find_header_end(raw: &[u8]) -> usize {
    if raw.starts_with(b"\r\n") {
        return 0;
    }
    memchr::memmem::find(raw, b"\r\n\r\n")
        .map(|i| i + 4)
        .unwrap_or(raw.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_and_cc_become_undisclosed() {
        let m = b"Received: x\r\nFrom: a@b.example\r\nTo: m1@x.example,\r\n m2@y.example\r\nSubject: s\r\ncc: m3@z.example\r\n\tm4@z.example\r\nMessage-ID: <1@b>\r\n\r\nTo: not a header\r\n";
        let out = undisclosed_recipients(m);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Received: x\r\nFrom: a@b.example\r\nTo: undisclosed-recipients:;\r\nSubject: s\r\nMessage-ID: <1@b>\r\n\r\nTo: not a header\r\n"
        );
    }

    #[test]
    fn message_without_to_gets_one() {
        let out = undisclosed_recipients(b"From: a@b.example\r\nSubject: s\r\n\r\nbody\r\n");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "From: a@b.example\r\nSubject: s\r\nTo: undisclosed-recipients:;\r\n\r\nbody\r\n"
        );
    }
}
