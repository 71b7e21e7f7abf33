//! `count_in_window` of the embedded engine: hit counts per fixed window, kept in memory.
//!
//! Every Package#1 reads two authentication throttles and adds a hit to its device's session rate; in redb that
//! was two reads on the blocking pool and a write through the writer (its own transaction and fsync share), the
//! largest part of a minimal session's cost. The embedded store admits one process, so a map in that process
//! sees every hit; what a restart loses is at most one window of counts (a minute by default), after which a
//! fresh count is what the window would hold anyway.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use super::ephemeral::window_key;
use crate::clock::Millis;

/// How often ended windows are dropped: the map holds about one window's keys, not every key ever counted.
const SWEEP_EVERY: Millis = 1_000;

#[derive(Default)]
pub struct WindowCounts {
    inner: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    /// `window_key` -> (window end, hits).
    by_window: HashMap<String, (Millis, u64)>,
    next_sweep: Millis,
}

impl WindowCounts {
    /// Adds `hits` to `key`'s count in the window `now` falls in and returns that count; `hits` = 0 reads it.
    pub fn add(&self, key: &str, hits: u64, window: Millis, now: Millis) -> u64 {
        let (stored_key, window_end) = window_key(key, window, now);
        let mut counts = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if now >= counts.next_sweep {
            counts.by_window.retain(|_, (ends_at, _)| *ends_at > now);
            counts.next_sweep = now.saturating_add(SWEEP_EVERY);
        }
        if hits == 0 {
            return counts.by_window.get(&stored_key).filter(|(ends_at, _)| *ends_at > now).map_or(0, |(_, n)| *n);
        }
        let entry = counts.by_window.entry(stored_key).or_insert((window_end, 0));
        if entry.0 <= now {
            *entry = (window_end, 0);
        }
        entry.1 = entry.1.saturating_add(hits);
        entry.1
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).by_window.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_up_within_a_window_and_start_over_in_the_next() {
        let counts = WindowCounts::default();
        let window = 60_000;
        let start = 1_700_000_040_000 - 1_700_000_040_000 % window;
        assert_eq!(counts.add("k", 0, window, start), 0);
        assert_eq!(counts.add("k", 1, window, start), 1);
        assert_eq!(counts.add("k", 2, window, start + 10), 3);
        assert_eq!(counts.add("k", 0, window, start + window - 1), 3);
        assert_eq!(counts.add("k", 0, window, start + window), 0, "the next window");
        assert_eq!(counts.add("k", 1, window, start + window), 1);
        assert_eq!(counts.add("k", 0, 30_000, start), 0, "another window length is another count");
    }

    #[test]
    fn ended_windows_are_dropped() {
        let counts = WindowCounts::default();
        let window = 1_000;
        for device in 0..100 {
            counts.add(&format!("device-{device}"), 1, window, 10_000);
        }
        assert_eq!(counts.len(), 100);
        counts.add("later", 1, window, 10_000 + 2 * SWEEP_EVERY);
        assert_eq!(counts.len(), 1, "only the live window's key is kept");
    }
}
