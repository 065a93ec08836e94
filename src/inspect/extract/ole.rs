//! OLE compound files (`D0 CF 11 E0`): tells encrypted OOXML, xls, doc, ppt and Outlook .msg
//! apart by their streams. Only xls is read (see [`xls`](super::xls)); the others are
//! reported.
//!
//! A password-protected xlsx/docx/pptx is not a zip at all: Office stores it as an OLE file
//! with `EncryptionInfo` and `EncryptedPackage` streams (MS-OFFCRYPTO).

use std::io::{Cursor, Read};
use std::panic::{AssertUnwindSafe, catch_unwind};

use super::{Ctx, Location, ProblemKind, xls};

/// Extracts an OLE leaf.
pub(super) fn extract(ctx: &mut Ctx<'_>, loc: &Location, bytes: &[u8]) {
    // The cfb crate validates its input, but it is third-party code on hostile bytes.
    let opened = catch_unwind(AssertUnwindSafe(|| {
        cfb::CompoundFile::open(Cursor::new(bytes))
    }));
    let Ok(Ok(mut file)) = opened else {
        ctx.problem(
            loc,
            ProblemKind::Unreadable,
            "OLE compound file could not be opened (corrupt or truncated)",
        );
        return;
    };
    if file.is_stream("EncryptedPackage") || file.is_stream("EncryptionInfo") {
        ctx.problem(
            loc,
            ProblemKind::Encrypted,
            "password-protected Office document (encrypted OOXML)",
        );
        return;
    }
    for name in ["Workbook", "Book"] {
        if !file.is_stream(name) {
            continue;
        }
        // A stream is never longer than the file holding it (unless its sector chain loops,
        // which the limit stops).
        let mut stream = Vec::new();
        let read = catch_unwind(AssertUnwindSafe(|| {
            file.open_stream(name)
                .and_then(|s| s.take(bytes.len() as u64 + 1).read_to_end(&mut stream))
        }));
        match read {
            Ok(Ok(n)) if n <= bytes.len() => xls::extract(ctx, loc, bytes, &stream),
            _ => ctx.problem(
                loc,
                ProblemKind::Unreadable,
                "xls workbook stream could not be read",
            ),
        }
        return;
    }
    let why = if file.is_stream("WordDocument") {
        "legacy .doc not supported"
    } else if file.is_stream("PowerPoint Document") {
        "legacy .ppt not supported"
    } else if file
        .read_root_storage()
        .any(|e| e.name().starts_with("__substg1.0_"))
    {
        "Outlook .msg not supported"
    } else {
        "unknown OLE compound document"
    };
    ctx.problem(loc, ProblemKind::Unreadable, why);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::extract::testutil::{problems, run_attachment};
    use std::io::Write;

    fn ole(streams: &[&str]) -> Vec<u8> {
        let mut file = cfb::CompoundFile::create(Cursor::new(Vec::new())).unwrap();
        for name in streams {
            let mut s = file.create_stream(name).unwrap();
            s.write_all(&[0u8; 64]).unwrap();
        }
        file.flush().unwrap();
        file.into_inner().into_inner()
    }

    #[test]
    fn ole_kinds() {
        let cases: Vec<(Vec<u8>, ProblemKind, &str)> = vec![
            (
                ole(&["EncryptionInfo", "EncryptedPackage"]),
                ProblemKind::Encrypted,
                "password-protected Office document (encrypted OOXML)",
            ),
            (
                ole(&["WordDocument", "1Table"]),
                ProblemKind::Unreadable,
                "legacy .doc not supported",
            ),
            (
                ole(&["PowerPoint Document"]),
                ProblemKind::Unreadable,
                "legacy .ppt not supported",
            ),
            (
                ole(&["__substg1.0_0037001F"]),
                ProblemKind::Unreadable,
                "Outlook .msg not supported",
            ),
            (
                ole(&["Something"]),
                ProblemKind::Unreadable,
                "unknown OLE compound document",
            ),
            (
                ole(&["Workbook"]),
                ProblemKind::Unreadable,
                "xls workbook is malformed",
            ),
        ];
        for (bytes, kind, why) in cases {
            let x = run_attachment("f.bin", &bytes);
            assert_eq!(
                problems(&x),
                vec![("attachment f.bin".into(), kind, why.into())],
                "{why}"
            );
        }
        let mut truncated = ole(&["WordDocument"]);
        truncated.truncate(600);
        let x = run_attachment("f.bin", &truncated);
        assert_eq!(
            problems(&x)[0].2,
            "OLE compound file could not be opened (corrupt or truncated)"
        );
    }
}
