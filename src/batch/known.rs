//! Attachments of held messages (`known_attachment`): a later message carrying the same
//! bytes is held without being scanned again, so a bulk send that attached a member list
//! stops at zero (incident 4). Only attachments a content finding pointed at are recorded,
//! never logos or other innocent parts of the held message.
//!
//! The set is derived from the quarantine (each held entry lists its implicated attachments)
//! and rebuilt at start-up; releasing or deleting a message removes its attachments.

use std::collections::HashMap;
use std::sync::RwLock;

/// SHA-256 digests of implicated attachments of held messages, with reference counts.
#[derive(Default)]
pub struct KnownAttachments {
    map: RwLock<HashMap<[u8; 32], u32>>,
}

/// Hex form used in the quarantine index.
pub fn to_hex(d: &[u8; 32]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses a hex digest.
pub fn from_hex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl KnownAttachments {
    pub fn add<'a>(&self, digests: impl IntoIterator<Item = &'a String>) {
        let mut m = match self.map.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        for d in digests.into_iter().filter_map(|h| from_hex(h)) {
            *m.entry(d).or_default() += 1;
        }
    }

    pub fn remove<'a>(&self, digests: impl IntoIterator<Item = &'a String>) {
        let mut m = match self.map.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        for d in digests.into_iter().filter_map(|h| from_hex(h)) {
            if let Some(n) = m.get_mut(&d) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&d);
                }
            }
        }
    }

    pub fn contains(&self, d: &[u8; 32]) -> bool {
        match self.map.read() {
            Ok(g) => g.contains_key(d),
            Err(p) => p.into_inner().contains_key(d),
        }
    }

    pub fn len(&self) -> usize {
        match self.map.read() {
            Ok(g) => g.len(),
            Err(p) => p.into_inner().len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refcounts_and_hex() {
        let d = [7u8; 32];
        let h = to_hex(&d);
        assert_eq!(from_hex(&h), Some(d));
        assert_eq!(from_hex("zz"), None);
        let k = KnownAttachments::default();
        k.add([&h, &h]);
        k.remove([&h]);
        assert!(k.contains(&d));
        k.remove([&h]);
        assert!(!k.contains(&d) && k.is_empty());
    }
}
