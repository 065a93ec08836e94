//! SMTP AUTH (RFC 4954): PLAIN and LOGIN against argon2 hashes, with brute-force throttling.
//!
//! - Unknown users are checked against a dummy hash made with the same parameters, so an
//!   attacker cannot tell "no such user" from "wrong password" by timing.
//! - Each failure is followed by a pause (`auth.failure_delay`), and an IP address with
//!   `auth.max_failures` failures inside `auth.failure_window` is refused with `421 4.7.0`.
//! - Passwords are never logged; user names may be, but never as metric labels.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::AuthUser;

/// The configured users. Verification is CPU-heavy: call it from a blocking thread.
pub struct UserDb {
    users: HashMap<String, String>,
    dummy: String,
}

impl UserDb {
    /// Builds the database; hashes that do not parse were rejected by config validation.
    pub fn new(users: &[AuthUser]) -> UserDb {
        let users = users
            .iter()
            .map(|u| (u.name.clone(), u.password_hash.clone()))
            .collect();
        let dummy = hash_password("mailbrake-dummy-password").unwrap_or_default();
        UserDb { users, dummy }
    }

    /// True when at least one user exists (AUTH is offered only then).
    pub fn is_enabled(&self) -> bool {
        !self.users.is_empty()
    }

    /// Checks a user name and password. Takes about the same time for unknown users.
    pub fn verify(&self, user: &str, password: &[u8]) -> bool {
        let (hash, known) = match self.users.get(user) {
            Some(h) => (h.as_str(), true),
            None => (self.dummy.as_str(), false),
        };
        let ok = match PasswordHash::new(hash) {
            Ok(parsed) => Argon2::default().verify_password(password, &parsed).is_ok(),
            Err(_) => false,
        };
        ok && known
    }
}

/// Makes an argon2id PHC string for `password` (used by `mailbrake hash-password`).
pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| e.to_string())?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Decodes an AUTH PLAIN response (`authzid \0 authcid \0 passwd`, base64).
/// Returns (user, password). An authzid different from the authcid is refused.
pub fn decode_plain(b64: &str) -> Option<(String, Vec<u8>)> {
    let raw = B64.decode(b64.trim()).ok()?;
    let mut parts = raw.splitn(3, |&b| b == 0);
    let authzid = parts.next()?;
    let authcid = parts.next()?;
    let password = parts.next()?;
    if !authzid.is_empty() && authzid != authcid {
        return None;
    }
    let user = String::from_utf8(authcid.to_vec()).ok()?;
    if user.is_empty() || user.chars().any(char::is_control) {
        return None;
    }
    Some((user, password.to_vec()))
}

/// Decodes one base64 line of the AUTH LOGIN dialogue.
pub fn decode_b64_line(b64: &str) -> Option<Vec<u8>> {
    B64.decode(b64.trim()).ok()
}

/// Failed AUTH attempts per client IP within a sliding window.
pub struct Throttle {
    max_failures: u32,
    window: Duration,
    failures: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

/// Upper bound on tracked addresses, so a scan from many addresses cannot grow memory
/// without limit; the oldest entries are dropped first.
const MAX_TRACKED: usize = 100_000;

impl Throttle {
    pub fn new(max_failures: u32, window: Duration) -> Throttle {
        Throttle {
            max_failures,
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, VecDeque<Instant>>> {
        match self.failures.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// True when `ip` has used up its failures in the current window.
    pub fn is_blocked(&self, ip: IpAddr, now: Instant) -> bool {
        let mut map = self.lock();
        match map.get_mut(&ip) {
            Some(q) => {
                while q
                    .front()
                    .is_some_and(|t| now.duration_since(*t) > self.window)
                {
                    q.pop_front();
                }
                q.len() >= self.max_failures as usize
            }
            None => false,
        }
    }

    /// Records one failure for `ip`.
    pub fn record_failure(&self, ip: IpAddr, now: Instant) {
        let mut map = self.lock();
        if map.len() >= MAX_TRACKED && !map.contains_key(&ip) {
            let window = self.window;
            map.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) <= window));
            if map.len() >= MAX_TRACKED {
                return;
            }
        }
        let q = map.entry(ip).or_default();
        q.push_back(now);
        while q.len() > self.max_failures as usize {
            q.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_decoding() {
        let b = B64.encode(b"\0alice\0s3cret");
        assert_eq!(decode_plain(&b), Some(("alice".into(), b"s3cret".to_vec())));
        let b = B64.encode(b"alice\0alice\0pw");
        assert_eq!(decode_plain(&b), Some(("alice".into(), b"pw".to_vec())));
        assert_eq!(decode_plain(&B64.encode(b"bob\0alice\0pw")), None);
        assert_eq!(decode_plain(&B64.encode(b"\0\0pw")), None);
        assert_eq!(decode_plain("!!!"), None);
        assert_eq!(decode_plain(&B64.encode(b"no-nuls")), None);
    }

    #[test]
    fn verify_known_and_unknown() {
        let hash = hash_password("pw").unwrap();
        let db = UserDb::new(&[AuthUser {
            name: "alice".into(),
            password_hash: hash,
        }]);
        assert!(db.verify("alice", b"pw"));
        assert!(!db.verify("alice", b"nope"));
        assert!(!db.verify("mallory", b"mailbrake-dummy-password"));
    }

    #[test]
    fn throttle_window() {
        let t = Throttle::new(3, Duration::from_secs(60));
        let ip: IpAddr = "127.0.0.9".parse().unwrap();
        let now = Instant::now();
        for _ in 0..2 {
            t.record_failure(ip, now);
        }
        assert!(!t.is_blocked(ip, now));
        t.record_failure(ip, now);
        assert!(t.is_blocked(ip, now));
        assert!(!t.is_blocked(ip, now + Duration::from_secs(61)));
        assert!(!t.is_blocked("127.0.0.10".parse().unwrap(), now));
    }
}
