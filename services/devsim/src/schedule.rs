//! When a device opens its next session: the count and time bounds, and start spreading so a fleet does not
//! connect in one burst.

use std::time::Duration;

/// The run's bounds, from the flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Sessions each device opens on its own; 0 = only on notification.
    pub sessions_per_device: u32,
    /// Pause between two sessions of one device.
    pub interval: Duration,
    /// The run stops starting sessions after this long.
    pub duration: Option<Duration>,
}

/// Why the bounds make no run.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BoundsError {
    #[error("--sessions-per-device 0 (only on notification) needs --duration, or the run would never end")]
    Unbounded,
    #[error("--concurrency must be at least 1")]
    NoConcurrency,
}

impl Bounds {
    pub fn validate(&self, concurrency: usize) -> Result<(), BoundsError> {
        if self.sessions_per_device == 0 && self.duration.is_none() {
            return Err(BoundsError::Unbounded);
        }
        if concurrency == 0 {
            return Err(BoundsError::NoConcurrency);
        }
        Ok(())
    }

    /// Whether a device that has done `sessions_done` sessions on its own starts another at `elapsed`.
    pub fn may_start_own_session(&self, sessions_done: u32, elapsed: Duration) -> bool {
        sessions_done < self.sessions_per_device && !self.past_deadline(elapsed)
    }

    /// Whether the run's time is over (no new session of any kind starts).
    pub fn past_deadline(&self, elapsed: Duration) -> bool {
        self.duration.is_some_and(|duration| elapsed >= duration)
    }

    /// When the device's first session starts: devices are spread evenly over one interval (when there is one),
    /// so periodic sessions arrive at a steady rate of devices / interval.
    pub fn first_start_offset(&self, index: u32, devices: u32) -> Duration {
        if devices == 0 || self.interval.is_zero() {
            return Duration::ZERO;
        }
        self.interval.mul_f64(f64::from(index) / f64::from(devices))
    }
}

/// Sessions per second over `elapsed` (0 for no time).
pub fn rate_per_second(count: u64, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    if seconds <= 0.0 { 0.0 } else { count as f64 / seconds }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds(sessions_per_device: u32, interval_ms: u64, duration_s: Option<u64>) -> Bounds {
        Bounds {
            sessions_per_device,
            interval: Duration::from_millis(interval_ms),
            duration: duration_s.map(Duration::from_secs),
        }
    }

    #[test]
    fn count_bound_stops_after_k_sessions() {
        let bounds = bounds(2, 0, None);
        assert!(bounds.may_start_own_session(0, Duration::from_secs(1000)));
        assert!(bounds.may_start_own_session(1, Duration::ZERO));
        assert!(!bounds.may_start_own_session(2, Duration::ZERO));
        assert!(!bounds.past_deadline(Duration::from_secs(1_000_000)));
    }

    #[test]
    fn time_bound_stops_new_sessions_at_the_deadline() {
        let bounds = bounds(5, 0, Some(10));
        assert!(bounds.may_start_own_session(0, Duration::from_millis(9_999)));
        assert!(!bounds.may_start_own_session(0, Duration::from_secs(10)));
        assert!(bounds.past_deadline(Duration::from_secs(10)));
    }

    #[test]
    fn notification_only_needs_a_duration_and_concurrency_is_positive() {
        assert_eq!(bounds(0, 0, None).validate(4), Err(BoundsError::Unbounded));
        assert!(bounds(0, 0, Some(5)).validate(4).is_ok());
        assert!(!bounds(0, 0, Some(5)).may_start_own_session(0, Duration::ZERO));
        assert_eq!(bounds(1, 0, None).validate(0), Err(BoundsError::NoConcurrency));
    }

    #[test]
    fn first_starts_spread_over_one_interval() {
        let bounds = bounds(3, 1000, None);
        assert_eq!(bounds.first_start_offset(0, 4), Duration::ZERO);
        assert_eq!(bounds.first_start_offset(2, 4), Duration::from_millis(500));
        assert_eq!(bounds.first_start_offset(3, 4), Duration::from_millis(750));
        assert_eq!(self::bounds(3, 0, None).first_start_offset(3, 4), Duration::ZERO);
    }

    #[test]
    fn rate_is_count_over_seconds() {
        assert_eq!(rate_per_second(50, Duration::from_millis(500)), 100.0);
        assert_eq!(rate_per_second(50, Duration::ZERO), 0.0);
    }
}
