//! Spool files: one file per held message, self-describing and torn-write detectable.
//!
//! ```text
//! "MBSPOOL1"                      8 bytes magic
//! meta_len   u32 LE               4
//! meta       JSON (SpoolMeta)     meta_len
//! body_len   u64 LE               8
//! body       the message bytes    body_len
//! crc32      u32 LE               4   CRC-32 of every byte above
//! total_len  u64 LE               8   number of bytes above the crc
//! "MBSPEND1"                      8 bytes end magic
//! ```
//! A file without a valid trailer (torn by a crash before `fsync`) is never trusted, like a
//! Postfix queue file without its END record. The metadata carries the envelope and the
//! verdict, so the sled index can always be rebuilt from the spool alone.

use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::envelope::Envelope;
use crate::verdict::{Finding, HoldReason};

const MAGIC: &[u8; 8] = b"MBSPOOL1";
const END: &[u8; 8] = b"MBSPEND1";
const TRAILER_LEN: usize = 4 + 8 + 8;
/// Metadata larger than this is refused when reading (a corrupt length field).
const MAX_META: usize = 64 * 1024 * 1024;

/// The immutable facts stored with a held message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpoolMeta {
    pub id: String,
    pub envelope: Envelope,
    /// Unix time (seconds) when the message was received.
    pub received_at: u64,
    pub reasons: Vec<HoldReason>,
    pub findings: Vec<Finding>,
    /// The Subject header, decoded, for the operator's list (never logged).
    #[serde(default)]
    pub subject: Option<String>,
    /// For a timed hold (`delay`): release automatically after this Unix time.
    #[serde(default)]
    pub release_after: Option<u64>,
    /// SHA-256 (hex) of the attachments a content finding pointed at ("known attachments").
    #[serde(default)]
    pub attachments: Vec<String>,
    /// A `visible_recipients` finding asked for `bcc`, but the message was held or delayed:
    /// the spool keeps the original (what the operator reviews), and a release — by hand or
    /// when a delay is due — sends it with To/Cc made undisclosed, as a forward would have.
    #[serde(default)]
    pub undisclose_on_release: bool,
}

/// Why a spool file cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    #[error("not a mailbrake spool file")]
    BadMagic,
    #[error("truncated or torn spool file")]
    Torn,
    #[error("checksum mismatch")]
    Checksum,
    #[error("bad metadata: {0}")]
    Meta(String),
}

/// Writes a complete spool file to `path` (created exclusively), without syncing.
/// The caller syncs, renames and syncs the directory (see `commit.rs`).
pub fn write_new(path: &Path, meta: &SpoolMeta, body: &[u8]) -> io::Result<File> {
    let meta_json = serde_json::to_vec(meta).map_err(io::Error::other)?;
    let meta_len = u32::try_from(meta_json.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "metadata too large"))?;
    // Held mail is personal data: readable by the service user only, whatever the umask.
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    let mut crc = crc32fast::Hasher::new();
    let mut head = Vec::with_capacity(8 + 4 + meta_json.len() + 8);
    head.extend_from_slice(MAGIC);
    head.extend_from_slice(&meta_len.to_le_bytes());
    head.extend_from_slice(&meta_json);
    head.extend_from_slice(&(body.len() as u64).to_le_bytes());
    crc.update(&head);
    crc.update(body);
    let total = (head.len() + body.len()) as u64;
    let mut trailer = Vec::with_capacity(TRAILER_LEN);
    trailer.extend_from_slice(&crc.finalize().to_le_bytes());
    trailer.extend_from_slice(&total.to_le_bytes());
    trailer.extend_from_slice(END);
    file.write_all(&head)?;
    file.write_all(body)?;
    file.write_all(&trailer)?;
    Ok(file)
}

/// Reads and verifies a spool file: metadata and message bytes.
pub fn read(path: &Path) -> Result<(SpoolMeta, Vec<u8>), SpoolError> {
    let mut data = Vec::new();
    File::open(path)?.read_to_end(&mut data)?;
    decode(data)
}

/// A cheap check for start-up: the file is complete (size, end magic, recorded length)
/// without reading the whole message. Catches torn, truncated and appended-to files; a bit
/// flip inside is caught by the full CRC check whenever the file is read.
pub fn quick_check(path: &Path) -> Result<(), SpoolError> {
    use std::io::{Seek, SeekFrom};
    let mut f = File::open(path)?;
    let len = f.metadata()?.len();
    if len < (8 + 4 + 8 + TRAILER_LEN) as u64 {
        return Err(SpoolError::Torn);
    }
    let mut head = [0u8; 8];
    f.read_exact(&mut head)?;
    if &head != MAGIC {
        return Err(SpoolError::BadMagic);
    }
    let mut tail = [0u8; 16];
    f.seek(SeekFrom::End(-16))?;
    f.read_exact(&mut tail)?;
    if &tail[8..] != END || u64::from_le_bytes(le8(&tail[..8])) != len - TRAILER_LEN as u64 {
        return Err(SpoolError::Torn);
    }
    Ok(())
}

/// Verifies and splits the bytes of a spool file.
pub fn decode(mut data: Vec<u8>) -> Result<(SpoolMeta, Vec<u8>), SpoolError> {
    if data.len() < 8 + 4 + 8 + TRAILER_LEN {
        return Err(if data.starts_with(MAGIC) || data.is_empty() {
            SpoolError::Torn
        } else {
            SpoolError::BadMagic
        });
    }
    if &data[..8] != MAGIC {
        return Err(SpoolError::BadMagic);
    }
    let n = data.len();
    if &data[n - 8..] != END {
        return Err(SpoolError::Torn);
    }
    let crc_stored = u32::from_le_bytes(le4(&data[n - TRAILER_LEN..n - 16]));
    let total = u64::from_le_bytes(le8(&data[n - 16..n - 8]));
    if total != (n - TRAILER_LEN) as u64 {
        return Err(SpoolError::Torn);
    }
    if crc32fast::hash(&data[..n - TRAILER_LEN]) != crc_stored {
        return Err(SpoolError::Checksum);
    }
    let meta_len = u32::from_le_bytes(le4(&data[8..12])) as usize;
    if meta_len > MAX_META || 12 + meta_len + 8 > n - TRAILER_LEN {
        return Err(SpoolError::Torn);
    }
    let meta: SpoolMeta = serde_json::from_slice(&data[12..12 + meta_len])
        .map_err(|e| SpoolError::Meta(e.to_string()))?;
    let body_start = 12 + meta_len + 8;
    let body_len = u64::from_le_bytes(le8(&data[12 + meta_len..body_start]));
    if body_start as u64 + body_len != (n - TRAILER_LEN) as u64 {
        return Err(SpoolError::Torn);
    }
    data.truncate(n - TRAILER_LEN);
    let body = data.split_off(body_start);
    Ok((meta, body))
}

fn le4(s: &[u8]) -> [u8; 4] {
    let mut a = [0u8; 4];
    a.copy_from_slice(&s[..4]);
    a
}

fn le8(s: &[u8]) -> [u8; 8] {
    let mut a = [0u8; 8];
    a.copy_from_slice(&s[..8]);
    a
}

/// fsync a directory so that renames and unlinks inside it are durable. File systems that
/// cannot sync directories answer EINVAL, which is ignored (as Exim does).
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    match File::open(dir)?.sync_all() {
        Err(e) if e.raw_os_error() == Some(libc_einval()) => Ok(()),
        other => other,
    }
}

const fn libc_einval() -> i32 {
    22
}

/// Writes `parts` to `final_path` durably: temp file in `tmp_dir`, fsync, rename, dir fsync.
pub fn write_file_durable(tmp_dir: &Path, final_path: &Path, parts: &[&[u8]]) -> io::Result<()> {
    let name = final_path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let tmp = tmp_dir.join(name);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        for p in parts {
            f.write_all(p)?;
        }
        f.sync_all()?;
        fs::rename(&tmp, final_path)?;
        match final_path.parent() {
            Some(dir) => sync_dir(dir),
            None => Ok(()),
        }
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> SpoolMeta {
        SpoolMeta {
            id: "01TEST".into(),
            envelope: Envelope {
                mail_from: "a@b.example".into(),
                rcpt_to: vec!["c@d.example".into()],
                smtputf8: false,
                client_ip: "127.0.0.1".parse().unwrap(),
                helo: "h".into(),
                auth_user: None,
                tls: false,
            },
            received_at: 1,
            reasons: vec![HoldReason::VisibleRecipients],
            findings: vec![],
            subject: Some("s".into()),
            release_after: None,
            undisclose_on_release: false,
            attachments: vec![],
        }
    }

    #[test]
    fn round_trip_and_every_truncation_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let body = b"Subject: x\r\n\r\nbody\r\n".to_vec();
        write_new(&p, &meta(), &body).unwrap();
        let (m, b) = read(&p).unwrap();
        assert_eq!(m, meta());
        assert_eq!(b, body);
        let full = fs::read(&p).unwrap();
        for cut in 0..full.len() {
            assert!(
                decode(full[..cut].to_vec()).is_err(),
                "cut at {cut} accepted"
            );
        }
        assert!(quick_check(&p).is_ok());
        for cut in [0, 10, full.len() - 1] {
            fs::write(&p, &full[..cut]).unwrap();
            assert!(
                quick_check(&p).is_err(),
                "quick_check accepted a cut at {cut}"
            );
        }
        let mut longer = full.clone();
        longer.extend_from_slice(b"junk");
        fs::write(&p, &longer).unwrap();
        assert!(
            quick_check(&p).is_err(),
            "quick_check accepted appended bytes"
        );
        for i in [0, 9, 20, full.len() / 2, full.len() - 21] {
            let mut bad = full.clone();
            bad[i] ^= 0x40;
            assert!(decode(bad).is_err(), "flip at {i} accepted");
        }
    }

    #[test]
    fn create_is_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        write_new(&p, &meta(), b"x").unwrap();
        assert!(write_new(&p, &meta(), b"y").is_err());
    }
}
