//! Message ids: ULIDs, unique and never reused (RELIABILITY.md §3.2 rule 8).
//!
//! A ULID is 48 bits of milliseconds plus 80 random bits; the generator is monotonic within
//! the process, so two ids made in the same millisecond still sort in creation order.

use std::sync::Mutex;
use ulid::{Generator, Ulid};

static GENERATOR: Mutex<Option<Generator>> = Mutex::new(None);

/// A fresh id, as its 26-character Crockford base32 text.
pub fn new_id() -> String {
    let mut guard = match GENERATOR.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    };
    let generator = guard.get_or_insert_with(Generator::new);
    // `generate` fails only when the random part overflows within one millisecond
    // (2^80 ids); fall back to a fresh random ULID, which is still unique.
    match generator.generate() {
        Ok(id) => id.to_string(),
        Err(_) => Ulid::new().to_string(),
    }
}

/// True when `s` has the shape of an id this module makes (26 Crockford base32 characters).
pub fn is_valid(s: &str) -> bool {
    s.len() == 26 && Ulid::from_string(s).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_ordered() {
        let ids: Vec<String> = (0..10_000).map(|_| new_id()).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), ids.len());
        assert_eq!(sorted, ids);
        assert!(ids.iter().all(|i| is_valid(i)));
        assert!(!is_valid("../../etc/passwd"));
    }
}
