//! Sliding windows of one sender's volume: messages, recipients and distinct recipient
//! domains over several window widths at once (10 minutes, 1 hour, 1 day …). Sans-IO:
//! callers pass the time.
//!
//! All windows share **one** queue of per-bucket counts and **one** map of domains (bucket =
//! 1/60 of the shortest window); each window is only a cursor into the shared queues plus its
//! running totals. A message enters each queue once, and each cursor passes each entry once,
//! so counting is amortised O(1) per message and window, and an occasional sender costs a
//! few hundred bytes whatever the number of windows.

use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};

/// Buckets in the shortest window.
pub const BUCKETS: u64 = 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Bucket {
    idx: u64,
    messages: u32,
    recipients: u32,
}

/// Per-window state derived from the shared queues (rebuilt after loading).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Cursor {
    /// Absolute position (in `buckets`) of the first bucket inside the window.
    bucket: u64,
    /// Absolute position (in `touches`) of the first domain touch inside the window.
    touch: u64,
    messages: u64,
    recipients: u64,
    domains: u64,
}

/// Windows of one sender.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Windows {
    /// Window widths in buckets, as configured (the order of the policy's windows).
    spans: Vec<u64>,
    step: u64,
    buckets: VecDeque<Bucket>,
    /// Domain hash → the last bucket it was seen in.
    domains: HashMap<u64, u64>,
    #[serde(skip)]
    touches: VecDeque<(u64, u64)>,
    #[serde(skip)]
    bucket_base: u64,
    #[serde(skip)]
    touch_base: u64,
    #[serde(skip)]
    cursors: Vec<Cursor>,
    #[serde(skip)]
    ready: bool,
}

/// Where a message was counted, so it can be taken back (an upstream tempfail, a reject).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    idx: u64,
    recipients: u32,
}

/// A window's totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Totals {
    pub messages: u64,
    pub recipients: u64,
    pub domains: u64,
}

impl Windows {
    /// Windows of the given widths (seconds).
    pub fn new(widths: &[u64]) -> Windows {
        let shortest = widths.iter().copied().min().unwrap_or(60).max(1);
        let step = (shortest / BUCKETS).max(1);
        Windows {
            spans: widths.iter().map(|w| (w / step).max(1)).collect(),
            step,
            buckets: VecDeque::new(),
            domains: HashMap::new(),
            touches: VecDeque::new(),
            bucket_base: 0,
            touch_base: 0,
            cursors: Vec::new(),
            ready: false,
        }
    }

    /// True when these windows were made for `widths` (a policy reload may change them).
    pub fn matches(&self, widths: &[u64]) -> bool {
        let step = (widths.iter().copied().min().unwrap_or(60).max(1) / BUCKETS).max(1);
        step == self.step
            && self.spans.len() == widths.len()
            && self
                .spans
                .iter()
                .zip(widths)
                .all(|(s, w)| *s == (w / step).max(1))
    }

    /// Rebuilds the cursors and the touch queue (after loading, or on first use).
    fn prepare(&mut self) {
        if self.ready {
            return;
        }
        let mut t: Vec<(u64, u64)> = self.domains.iter().map(|(d, i)| (*i, *d)).collect();
        t.sort_unstable();
        self.touches = t.into();
        self.bucket_base = 0;
        self.touch_base = 0;
        let b = &self.buckets;
        self.cursors = vec![
            Cursor {
                messages: b.iter().map(|x| u64::from(x.messages)).sum(),
                recipients: b.iter().map(|x| u64::from(x.recipients)).sum(),
                domains: self.domains.len() as u64,
                ..Cursor::default()
            };
            self.spans.len()
        ];
        self.ready = true;
    }

    /// Moves every window to `cur`: what fell out of a window leaves its totals.
    fn advance(&mut self, cur: u64) {
        self.prepare();
        for (w, span) in self.spans.iter().enumerate() {
            let oldest = cur.saturating_sub(span - 1);
            let c = &mut self.cursors[w];
            while let Some(b) = self.buckets.get((c.bucket - self.bucket_base) as usize) {
                if b.idx >= oldest {
                    break;
                }
                c.messages -= u64::from(b.messages);
                c.recipients -= u64::from(b.recipients);
                c.bucket += 1;
            }
            while let Some(&(idx, d)) = self.touches.get((c.touch - self.touch_base) as usize) {
                if idx >= oldest {
                    break;
                }
                // The domain leaves this window only if this was its last touch.
                if self.domains.get(&d) == Some(&idx) {
                    c.domains -= 1;
                }
                c.touch += 1;
            }
        }
        // Drop what every window has passed.
        let min_bucket = self
            .cursors
            .iter()
            .map(|c| c.bucket)
            .min()
            .unwrap_or(self.bucket_base);
        while self.bucket_base < min_bucket {
            self.buckets.pop_front();
            self.bucket_base += 1;
        }
        let min_touch = self
            .cursors
            .iter()
            .map(|c| c.touch)
            .min()
            .unwrap_or(self.touch_base);
        while self.touch_base < min_touch {
            if let Some((idx, d)) = self.touches.pop_front()
                && self.domains.get(&d) == Some(&idx)
            {
                self.domains.remove(&d);
            }
            self.touch_base += 1;
        }
    }

    /// Counts one message with `recipients` recipients in `domains`; returns its mark.
    pub fn add(&mut self, now: u64, recipients: u32, domains: &[u64]) -> Mark {
        let cur = now / self.step;
        self.advance(cur);
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
        for c in &mut self.cursors {
            c.messages += 1;
            c.recipients += u64::from(recipients);
        }
        for &d in domains {
            let prev = self.domains.insert(d, cur);
            if prev == Some(cur) {
                continue;
            }
            for (w, span) in self.spans.iter().enumerate() {
                let oldest = cur.saturating_sub(span - 1);
                if prev.is_none_or(|p| p < oldest) {
                    self.cursors[w].domains += 1;
                }
            }
            self.touches.push_back((cur, d));
        }
        Mark {
            idx: cur,
            recipients,
        }
    }

    /// The totals of every window (policy order) at `now` if one more message with
    /// `recipients` recipients in `domains` (distinct) were counted — without counting it.
    pub fn with_one_more(&mut self, now: u64, recipients: u32, domains: &[u64]) -> Vec<Totals> {
        let cur = now / self.step;
        self.advance(cur);
        self.spans
            .iter()
            .zip(&self.cursors)
            .map(|(span, c)| {
                let oldest = cur.saturating_sub(span - 1);
                let new_domains = domains
                    .iter()
                    .filter(|d| self.domains.get(d).is_none_or(|&p| p < oldest))
                    .count() as u64;
                Totals {
                    messages: c.messages + 1,
                    recipients: c.recipients + u64::from(recipients),
                    domains: c.domains + new_domains,
                }
            })
            .collect()
    }

    /// Takes back a message counted at `mark` (in the windows that still hold its bucket).
    pub fn undo(&mut self, mark: Mark) {
        self.prepare();
        let Some(pos) = self.buckets.iter().position(|b| b.idx == mark.idx) else {
            return;
        };
        let abs = self.bucket_base + pos as u64;
        if self.buckets[pos].messages == 0 {
            return;
        }
        self.buckets[pos].messages -= 1;
        self.buckets[pos].recipients = self.buckets[pos].recipients.saturating_sub(mark.recipients);
        for c in self.cursors.iter_mut().filter(|c| c.bucket <= abs) {
            c.messages = c.messages.saturating_sub(1);
            c.recipients = c.recipients.saturating_sub(u64::from(mark.recipients));
        }
    }

    /// The totals of window `w` (policy order) at `now`.
    pub fn totals(&mut self, w: usize, now: u64) -> Totals {
        self.advance(now / self.step);
        self.cursors
            .get(w)
            .map(|c| Totals {
                messages: c.messages,
                recipients: c.recipients,
                domains: c.domains,
            })
            .unwrap_or_default()
    }

    /// Forgets everything (a brake reset).
    pub fn clear(&mut self) {
        let spans = std::mem::take(&mut self.spans);
        let step = self.step;
        *self = Windows {
            spans,
            step,
            ..Windows::new(&[])
        };
    }

    /// True when nothing is left in any window.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty() && self.domains.is_empty()
    }
}

/// Messages a sender *tried* to send in its shortest window, held ones included: whether it
/// is "in a batch" (a content hold then opens its brake). Buckets as in [`Windows`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Attempts {
    step: u64,
    span: u64,
    /// (bucket, messages), oldest first.
    buckets: VecDeque<(u64, u32)>,
}

impl Attempts {
    /// Counts one message and returns the messages in the window of `width` seconds.
    pub fn add(&mut self, now: u64, width: u64) -> u64 {
        let step = (width.max(1) / BUCKETS).max(1);
        let span = (width / step).max(1);
        if (step, span) != (self.step, self.span) {
            *self = Attempts {
                step,
                span,
                buckets: VecDeque::new(),
            };
        }
        let cur = now / step;
        let oldest = cur.saturating_sub(span - 1);
        while self.buckets.front().is_some_and(|(i, _)| *i < oldest) {
            self.buckets.pop_front();
        }
        match self.buckets.back_mut() {
            Some((i, n)) if *i == cur => *n = n.saturating_add(1),
            _ => self.buckets.push_back((cur, 1)),
        }
        self.buckets.iter().map(|(_, n)| u64::from(*n)).sum()
    }

    pub fn clear(&mut self) {
        self.buckets.clear();
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

    /// This hour's count if one more message were counted (without counting it), the
    /// learned hourly average and the hours of history. The average is bias-corrected (it
    /// starts from zero, so the raw decayed sum under-states a young sender's usual volume):
    /// avg / (1 − aʰ).
    pub fn with_one_more(&mut self, now: u64, half_life_hours: f64) -> (u64, f64, u32) {
        self.roll(now, half_life_hours);
        let a = 0.5f64.powf(1.0 / half_life_hours.max(1.0));
        let weight = 1.0 - a.powi(i32::try_from(self.hours).unwrap_or(i32::MAX));
        let usual = if weight > 0.0 { self.avg / weight } else { 0.0 };
        (self.count + 1, usual, self.hours)
    }

    /// Counts one message (one that left); returns the hour it was counted in.
    pub fn add(&mut self, now: u64, half_life_hours: f64) -> u64 {
        self.roll(now, half_life_hours);
        self.count += 1;
        self.hour
    }

    /// Takes back a message counted in `hour` (nothing once that hour is over: it is
    /// already part of the average).
    pub fn undo(&mut self, hour: u64) {
        if self.started && self.hour == hour {
            self.count = self.count.saturating_sub(1);
        }
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
        let mut w = Windows::new(&[600, 3600]);
        for i in 0..100u64 {
            w.add(1_000_000 + i, 2, &[i % 7]);
        }
        let t = w.totals(0, 1_000_100);
        assert_eq!(
            t,
            Totals {
                messages: 100,
                recipients: 200,
                domains: 7
            }
        );
        // Ten minutes later the 10-minute window is empty (10 s buckets); the hour is not.
        assert_eq!(w.totals(0, 1_000_000 + 600 + 110), Totals::default());
        assert_eq!(
            w.totals(1, 1_000_000 + 600 + 110),
            Totals {
                messages: 100,
                recipients: 200,
                domains: 7
            }
        );
        // A domain touched again stays counted in the short window.
        w.add(1_000_000 + 700, 1, &[3]);
        assert_eq!(w.totals(0, 1_000_000 + 701).domains, 1);
        assert_eq!(w.totals(1, 1_000_000 + 701).domains, 7);
        assert_eq!(w.totals(1, 1_000_000 + 4400), Totals::default());
        assert!(w.is_empty());
    }

    #[test]
    fn undo_and_serde_round_trip() {
        let mut w = Windows::new(&[3600, 86_400]);
        let m = w.add(7200, 3, &[1, 2]);
        w.add(7300, 1, &[2]);
        w.undo(m);
        assert_eq!(
            w.totals(0, 7300),
            Totals {
                messages: 1,
                recipients: 1,
                domains: 2
            }
        );
        let json = serde_json::to_string(&w).unwrap();
        let mut back: Windows = serde_json::from_str(&json).unwrap();
        assert_eq!(
            back.totals(0, 7300),
            Totals {
                messages: 1,
                recipients: 1,
                domains: 2
            }
        );
        assert_eq!(
            back.totals(1, 7300),
            Totals {
                messages: 1,
                recipients: 1,
                domains: 2
            }
        );
        assert_eq!(back.totals(0, 7300 + 3700).domains, 0);
        assert_eq!(back.totals(1, 7300 + 3700).domains, 2);
        assert!(back.matches(&[3600, 86_400]) && !back.matches(&[600, 3600]));
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
        let (count, avg, hours) = s.with_one_more(48 * 3600, hl);
        assert_eq!((count, hours), (1, 48));
        assert!((avg - 10.0).abs() < 0.01, "{avg}");
        // An hour of 200 messages is far above that usual.
        for m in 0..200u64 {
            s.add(48 * 3600 + m, hl);
        }
        let (count, avg, _) = s.with_one_more(48 * 3600 + 300, hl);
        assert_eq!(count, 201);
        assert!(avg < 11.0);
        // Asking does not count; a take-back counts only in its own hour.
        assert_eq!(s.with_one_more(48 * 3600 + 301, hl).0, 201);
        let hour = s.add(48 * 3600 + 302, hl);
        s.undo(hour);
        assert_eq!(s.with_one_more(48 * 3600 + 303, hl).0, 201);
        s.undo(hour - 1);
        assert_eq!(s.with_one_more(48 * 3600 + 304, hl).0, 201);
    }

    #[test]
    fn one_more_is_what_add_would_make() {
        let mut w = Windows::new(&[600, 3600]);
        w.add(10_000, 2, &[1, 2]);
        w.add(10_100, 1, &[3]);
        // 700 s later domain 1, 2 and 3 left the 10-minute window, not the hour.
        let t = w.with_one_more(10_800, 4, &[2, 9]);
        let before = (w.totals(0, 10_800), w.totals(1, 10_800));
        assert_eq!(
            t,
            [
                Totals {
                    messages: 1,
                    recipients: 4,
                    domains: 2
                },
                Totals {
                    messages: 3,
                    recipients: 7,
                    domains: 4
                }
            ]
        );
        assert_eq!(before.1.messages, 2, "asking counted nothing");
        w.add(10_800, 4, &[2, 9]);
        assert_eq!((w.totals(0, 10_800), w.totals(1, 10_800)), (t[0], t[1]));
    }

    #[test]
    fn attempts_slide() {
        let mut a = Attempts::default();
        for i in 0..5 {
            assert_eq!(a.add(1_000 + i, 600), i + 1);
        }
        assert_eq!(a.add(1_000 + 600, 600), 1);
        a.clear();
        assert_eq!(a.add(1_000 + 601, 600), 1);
    }
}
