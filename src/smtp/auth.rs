//! SMTP AUTH (RFC 4954): PLAIN and LOGIN against argon2 hashes, with brute-force throttling.
//!
//! - Unknown users are checked against a dummy hash made with the same parameters, so an
//!   attacker cannot tell "no such user" from "wrong password" by timing.
//! - Each failure is followed by a pause (`auth.failure_delay`). An IP address with
//!   `auth.max_failures` failures inside `auth.failure_window` is refused with `421 4.7.0`;
//!   a user name with `auth.max_user_failures` failures (from any address) gets `454 4.7.0`
//!   whatever the password until the window passes. Attempts in flight count against both.
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

/// Failed AUTH attempts within a sliding window, per client IP and per user name.
///
/// An attempt **reserves** its slot before the (slow) password check, so parallel sessions
/// from one address cannot all pass the "blocked?" test before any failure is recorded: the
/// failures plus the attempts in flight never exceed the cap.
pub struct Throttle {
    per_ip: Window<IpAddr>,
    per_user: Window<String>,
}

/// Upper bound on tracked keys, so a scan from many addresses (or with many user names)
/// cannot grow memory without limit; entries with no recent failure are dropped first.
const MAX_TRACKED: usize = 100_000;

struct Window<K> {
    max: usize,
    window: Duration,
    map: Mutex<HashMap<K, Slot>>,
}

#[derive(Default)]
struct Slot {
    failures: VecDeque<Instant>,
    in_flight: usize,
}

impl<K: std::hash::Hash + Eq + Clone> Window<K> {
    fn new(max: u32, window: Duration) -> Self {
        Window {
            max: max.max(1) as usize,
            window,
            map: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Slot>> {
        match self.map.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Reserves one attempt for `key`; false when the failures and attempts in flight
    /// already reach the cap.
    fn try_begin(&self, key: &K, now: Instant) -> bool {
        let mut map = self.lock();
        if map.len() >= MAX_TRACKED && !map.contains_key(key) {
            let window = self.window;
            map.retain(|_, s| {
                s.in_flight > 0
                    || s.failures
                        .back()
                        .is_some_and(|t| now.duration_since(*t) <= window)
            });
            if map.len() >= MAX_TRACKED {
                return false;
            }
        }
        let slot = map.entry(key.clone()).or_default();
        while slot
            .failures
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.window)
        {
            slot.failures.pop_front();
        }
        if slot.failures.len() + slot.in_flight >= self.max {
            return false;
        }
        slot.in_flight += 1;
        true
    }

    /// Ends a reserved attempt, recording a failure if it failed.
    fn finish(&self, key: &K, now: Instant, failed: bool) {
        let mut map = self.lock();
        if let Some(slot) = map.get_mut(key) {
            slot.in_flight = slot.in_flight.saturating_sub(1);
            if failed {
                slot.failures.push_back(now);
                while slot.failures.len() > self.max {
                    slot.failures.pop_front();
                }
            } else if slot.failures.is_empty() && slot.in_flight == 0 {
                map.remove(key);
            }
        }
    }
}

impl Throttle {
    /// `max_per_ip` failures per address and `max_per_user` per user name, per `window`.
    pub fn new(max_per_ip: u32, max_per_user: u32, window: Duration) -> Throttle {
        Throttle {
            per_ip: Window::new(max_per_ip, window),
            per_user: Window::new(max_per_user, window),
        }
    }

    /// Reserves an attempt from `ip`; false = this address is locked out (`421 4.7.0`).
    pub fn begin_ip(&self, ip: IpAddr, now: Instant) -> bool {
        self.per_ip.try_begin(&ip, now)
    }

    /// Ends the attempt reserved by [`Throttle::begin_ip`].
    pub fn end_ip(&self, ip: IpAddr, now: Instant, failed: bool) {
        self.per_ip.finish(&ip, now, failed);
    }

    /// Reserves an attempt for `user`; false = this user is locked out (`454 4.7.0`),
    /// whatever the password, until the window passes.
    pub fn begin_user(&self, user: &str, now: Instant) -> bool {
        self.per_user.try_begin(&user.to_string(), now)
    }

    /// Ends the attempt reserved by [`Throttle::begin_user`].
    pub fn end_user(&self, user: &str, now: Instant, failed: bool) {
        self.per_user.finish(&user.to_string(), now, failed);
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
    fn throttle_window_counts_attempts_in_flight() {
        let t = Throttle::new(3, 10, Duration::from_secs(60));
        let ip: IpAddr = "127.0.0.9".parse().unwrap();
        let now = Instant::now();
        // Three parallel attempts reserve the three slots; the fourth is refused at once.
        assert!(t.begin_ip(ip, now) && t.begin_ip(ip, now) && t.begin_ip(ip, now));
        assert!(!t.begin_ip(ip, now));
        t.end_ip(ip, now, false);
        assert!(t.begin_ip(ip, now));
        for _ in 0..3 {
            t.end_ip(ip, now, true);
        }
        assert!(!t.begin_ip(ip, now));
        assert!(t.begin_ip(ip, now + Duration::from_secs(61)));
        assert!(t.begin_ip("127.0.0.10".parse().unwrap(), now));
    }

    #[test]
    fn per_user_cap_is_independent_of_the_address() {
        let t = Throttle::new(100, 2, Duration::from_secs(60));
        let now = Instant::now();
        for _ in 0..2 {
            assert!(t.begin_user("alice", now));
            t.end_user("alice", now, true);
        }
        assert!(!t.begin_user("alice", now));
        assert!(t.begin_user("bob", now));
    }
}
