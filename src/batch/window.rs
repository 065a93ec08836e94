//! A sliding window of one sender's volume: messages, recipients and distinct recipient
//! domains over the last `width` seconds. Sans-IO: callers pass the time.
//!
//! The window is kept in 60 buckets (10 s steps for 10 minutes, 1 minute for an hour …) and
//! stores only the buckets that saw traffic, so an occasional sender costs a few bytes and a
//! bulk sender at most 60 buckets. Every operation is amortised O(1): each bucket and each
//! domain touch enters once and leaves once.

use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};

/// Buckets per window.
pub const BUCKETS: u64 = 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Bucket {
    idx: u64,
    messages: u32,
    recipients: u32,
}

/// One window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Window {
    width: u64,
    step: u64,
    buckets: VecDeque<Bucket>,
    messages: u64,
    recipients: u64,
    /// Domain hash → the last bucket it was seen in.
    domains: HashMap<u64, u64>,
    /// Domain touches in bucket order, for expiry (rebuilt from `domains` after loading).
    #[serde(skip)]
    order: VecDeque<(u64, u64)>,
}

/// Where a message was counted, so it can be taken back (an upstream tempfail, a reject).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    idx: u64,
    recipients: u32,
}

/// The window's totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Totals {
    pub messages: u64,
    pub recipients: u64,
    pub domains: u64,
}

impl Window {
    pub fn new(width_secs: u64) -> Window {
        let width = width_secs.max(1);
        Window {
            width,
            step: (width / BUCKETS).max(1),
            buckets: VecDeque::new(),
            messages: 0,
            recipients: 0,
            domains: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    pub fn width(&self) -> u64 {
        self.width
    }

    fn current(&self, now: u64) -> u64 {
        now / self.step
    }

    /// Drops what is older than the window.
    fn expire(&mut self, now: u64) {
        let cur = self.current(now);
        let oldest = cur.saturating_sub(BUCKETS - 1);
        while let Some(b) = self.buckets.front().copied() {
            if b.idx >= oldest {
                break;
            }
            self.messages -= u64::from(b.messages);
            self.recipients -= u64::from(b.recipients);
            self.buckets.pop_front();
        }
        if self.order.is_empty() && !self.domains.is_empty() {
            self.rebuild_order();
        }
        while let Some(&(idx, d)) = self.order.front() {
            if idx >= oldest {
                break;
            }
            self.order.pop_front();
            if self.domains.get(&d) == Some(&idx) {
                self.domains.remove(&d);
            }
        }
    }

    fn rebuild_order(&mut self) {
        let mut v: Vec<(u64, u64)> = self.domains.iter().map(|(d, i)| (*i, *d)).collect();
        v.sort_unstable();
        self.order = v.into();
    }

    /// Counts one message with `recipients` recipients in `domains`; returns its mark.
    pub fn add(&mut self, now: u64, recipients: u32, domains: &[u64]) -> Mark {
        self.expire(now);
        let cur = self.current(now);
        match self.buckets.back_mut() {
            Some(b) if b.idx == cur => {
                b.messages += 1;
                b.recipients += recipients;
            }
            _ => self.buckets.push_back(Bucket {
                idx: cur,
                messages: 1,
                recipients,
            }),
        }
        self.messages += 1;
        self.recipients += u64::from(recipients);
        for &d in domains {
            if self.domains.insert(d, cur) != Some(cur) {
                self.order.push_back((cur, d));
            }
        }
        Mark {
            idx: cur,
            recipients,
        }
    }

    /// Takes back a message counted at `mark` (if its bucket is still in the window).
    pub fn undo(&mut self, mark: Mark) {
        if let Some(b) = self.buckets.iter_mut().find(|b| b.idx == mark.idx)
            && b.messages > 0
        {
            b.messages -= 1;
            b.recipients = b.recipients.saturating_sub(mark.recipients);
            self.messages -= 1;
            self.recipients = self.recipients.saturating_sub(u64::from(mark.recipients));
        }
    }

    /// The totals now.
    pub fn totals(&mut self, now: u64) -> Totals {
        self.expire(now);
        Totals {
            messages: self.messages,
            recipients: self.recipients,
            domains: self.domains.len() as u64,
        }
    }

    /// Forgets everything (a brake reset).
    pub fn clear(&mut self) {
        let width = self.width;
        *self = Window::new(width);
    }

    /// True when nothing is left in the window.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty() && self.domains.is_empty()
    }
}

/// A sender's usual hourly volume, learned as a decayed average (`sender_surge`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct Surge {
    /// The hour (Unix time / 3600) being counted.
    hour: u64,
    /// Messages so far in that hour.
    count: u64,
    /// Decayed average of completed hours.
    avg: f64,
    /// Hours of history (from the first message on, empty hours included).
    hours: u32,
    started: bool,
}

impl Surge {
    fn roll(&mut self, now: u64, half_life_hours: f64) {
        let hour = now / 3600;
        if !self.started {
            *self = Surge {
                hour,
                count: 0,
                avg: 0.0,
                hours: 0,
                started: true,
            };
            return;
        }
        if hour <= self.hour {
            return;
        }
        let a = 0.5f64.powf(1.0 / half_life_hours.max(1.0));
        let gap = hour - self.hour;
        self.avg = a * self.avg + (1.0 - a) * self.count as f64;
        if gap > 1 {
            self.avg *= a.powi(i32::try_from(gap - 1).unwrap_or(i32::MAX));
        }
        self.hours = self
            .hours
            .saturating_add(u32::try_from(gap).unwrap_or(u32::MAX));
        self.hour = hour;
        self.count = 0;
    }

    /// Counts one message; returns this hour's count, the learned hourly average and the
    /// hours of history. The average is bias-corrected (it starts from zero, so the raw
    /// decayed sum under-states a young sender's usual volume): avg / (1 − aʰ).
    pub fn add(&mut self, now: u64, half_life_hours: f64) -> (u64, f64, u32) {
        self.roll(now, half_life_hours);
        self.count += 1;
        let a = 0.5f64.powf(1.0 / half_life_hours.max(1.0));
        let weight = 1.0 - a.powi(i32::try_from(self.hours).unwrap_or(i32::MAX));
        let usual = if weight > 0.0 { self.avg / weight } else { 0.0 };
        (self.count, usual, self.hours)
    }

    pub fn undo(&mut self) {
        self.count = self.count.saturating_sub(1);
    }

    /// Clears this hour's count (a brake reset); the learned average stays.
    pub fn clear_hour(&mut self) {
        self.count = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_slide_out_and_domains_are_distinct() {
        let mut w = Window::new(600);
        for i in 0..100u64 {
            w.add(1_000_000 + i, 2, &[i % 7]);
        }
        let t = w.totals(1_000_100);
        assert_eq!(
            t,
            Totals {
                messages: 100,
                recipients: 200,
                domains: 7
            }
        );
        // Ten minutes later everything has slid out (bucket granularity 10 s).
        assert_eq!(w.totals(1_000_000 + 600 + 110), Totals::default());
        assert!(w.is_empty());
    }

    #[test]
    fn undo_and_serde_round_trip() {
        let mut w = Window::new(3600);
        let m = w.add(7200, 3, &[1, 2]);
        w.add(7300, 1, &[2]);
        w.undo(m);
        assert_eq!(
            w.totals(7300),
            Totals {
                messages: 1,
                recipients: 1,
                domains: 2
            }
        );
        let json = serde_json::to_string(&w).unwrap();
        let mut back: Window = serde_json::from_str(&json).unwrap();
        assert_eq!(
            back.totals(7300),
            Totals {
                messages: 1,
                recipients: 1,
                domains: 2
            }
        );
        // Expiry still works after loading (order rebuilt from the map).
        assert_eq!(back.totals(7300 + 3700).domains, 0);
    }

    #[test]
    fn surge_learns_the_usual_hour() {
        let mut s = Surge::default();
        let hl = 168.0;
        // 48 hours of 10 messages an hour.
        for h in 0..48u64 {
            for m in 0..10u64 {
                s.add(h * 3600 + m, hl);
            }
        }
        let (count, avg, hours) = s.add(48 * 3600, hl);
        assert_eq!((count, hours), (1, 48));
        assert!((avg - 10.0).abs() < 0.01, "{avg}");
        // An hour of 200 messages is far above that usual.
        for m in 1..200u64 {
            s.add(48 * 3600 + m, hl);
        }
        let (count, avg, _) = s.add(48 * 3600 + 300, hl);
        assert_eq!(count, 201);
        assert!(avg < 11.0);
    }
}
