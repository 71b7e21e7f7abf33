//! Maintenance windows: the recurring times of day (and days of the week) a campaign may start devices in, in
//! UTC, at a fixed offset, or in each device's own local time. Pure.
//!
//! ```text
//! {"days": ["sat", "sun"], "start": "22:00", "end": "04:00", "utc_offset": "+01:00"}   Sat 22:00 to Sun 04:00,
//!                                                                                     Sun 22:00 to Mon 04:00
//! {"start": "01:00", "end": "05:00", "local": true}     01:00 to 05:00 every day on each device's clock
//! ```
//!
//! A window whose end is before its start runs past midnight and belongs to the day it starts on; equal start
//! and end mean the whole day. A device's local time is UTC plus its `utc_offset` tag (`+05:30`, `-08:00`);
//! a device without that tag keeps the window's own `utc_offset`.

use serde::{Deserialize, Serialize};

use crate::clock::Millis;
use crate::model::Device;

/// The device tag that gives a device's offset from UTC for device-local windows.
pub const UTC_OFFSET_TAG: &str = "utc_offset";

const MINUTES_PER_DAY: i64 = 24 * 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Weekday {
    const ALL: [Weekday; 7] =
        [Weekday::Mon, Weekday::Tue, Weekday::Wed, Weekday::Thu, Weekday::Fri, Weekday::Sat, Weekday::Sun];

    /// The weekday of day `days` since 1970-01-01 (a Thursday).
    fn of_day(days: i64) -> Weekday {
        let index = (days + 3).rem_euclid(7) as usize;
        Weekday::ALL.get(index).copied().unwrap_or(Weekday::Mon)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceWindow {
    /// The days it opens on; every day when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub days: Vec<Weekday>,
    /// `HH:MM`.
    pub start: String,
    /// `HH:MM`; before `start`: the next day's.
    pub end: String,
    /// `+HH:MM` or `-HH:MM` from UTC (UTC when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utc_offset: Option<String>,
    /// On each device's clock (its `utc_offset` tag) rather than one clock for all.
    #[serde(default)]
    pub local: bool,
}

/// `HH:MM` as minutes of the day.
pub fn parse_time(text: &str) -> Option<i64> {
    let (hours, minutes) = text.split_once(':')?;
    if hours.len() != 2 || minutes.len() != 2 {
        return None;
    }
    let (hours, minutes): (i64, i64) = (hours.parse().ok()?, minutes.parse().ok()?);
    ((0..24).contains(&hours) && (0..60).contains(&minutes)).then_some(hours * 60 + minutes)
}

/// `+HH:MM` or `-HH:MM` as minutes east of UTC (at most 14 hours either way).
pub fn parse_offset(text: &str) -> Option<i64> {
    let (sign, rest) = match text.as_bytes().first()? {
        b'+' => (1, text.get(1..)?),
        b'-' => (-1, text.get(1..)?),
        _ => return None,
    };
    let minutes = parse_time(rest)?;
    (minutes <= 14 * 60).then_some(sign * minutes)
}

impl MaintenanceWindow {
    /// What is wrong with it, for a 400 naming the field (`start`, `end`, `utc_offset`).
    pub fn problem(&self) -> Option<(&'static str, &'static str)> {
        if parse_time(&self.start).is_none() {
            return Some(("start", "a time of day as HH:MM"));
        }
        if parse_time(&self.end).is_none() {
            return Some(("end", "a time of day as HH:MM"));
        }
        if self.utc_offset.as_deref().is_some_and(|offset| parse_offset(offset).is_none()) {
            return Some(("utc_offset", "+HH:MM or -HH:MM, at most 14 hours"));
        }
        None
    }

    fn opens_on(&self, day: Weekday) -> bool {
        self.days.is_empty() || self.days.contains(&day)
    }

    /// Whether it is open at `now` on a clock `offset_minutes` east of UTC.
    pub fn is_open_at(&self, now: Millis, offset_minutes: i64) -> bool {
        let (Some(start), Some(end)) = (parse_time(&self.start), parse_time(&self.end)) else { return false };
        let local_minutes = (now / 60_000) as i64 + offset_minutes;
        let day = local_minutes.div_euclid(MINUTES_PER_DAY);
        let minute = local_minutes.rem_euclid(MINUTES_PER_DAY);
        let today = Weekday::of_day(day);
        let yesterday = Weekday::of_day(day - 1);
        if start == end {
            self.opens_on(today)
        } else if start < end {
            self.opens_on(today) && (start..end).contains(&minute)
        } else {
            (self.opens_on(today) && minute >= start) || (self.opens_on(yesterday) && minute < end)
        }
    }

    /// The offset this window reads the clock at for `device` (None: no device, or not device-local).
    fn offset_for(&self, device: Option<&Device>) -> i64 {
        let own = self.utc_offset.as_deref().and_then(parse_offset).unwrap_or(0);
        if !self.local {
            return own;
        }
        device.and_then(|device| device.tags.get(UTC_OFFSET_TAG)).and_then(|offset| parse_offset(offset)).unwrap_or(own)
    }
}

/// Whether devices may be started at `now`: with no windows always; else when one of them is open. A device-local
/// window is judged on `device`'s clock; without a device (the campaign-wide check), a device-local window counts
/// as open, since somewhere it may be.
pub fn may_start(windows: &[MaintenanceWindow], now: Millis, device: Option<&Device>) -> bool {
    windows.is_empty()
        || windows
            .iter()
            .any(|window| (window.local && device.is_none()) || window.is_open_at(now, window.offset_for(device)))
}

/// True when some window reads each device's own clock: devices are then judged one by one at their start.
pub fn any_local(windows: &[MaintenanceWindow]) -> bool {
    windows.iter().any(|window| window.local)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-05 (a Saturday) at `hh:mm` UTC.
    fn saturday(hours: u64, minutes: u64) -> Millis {
        // 2026-12-05 is day 20,792 since 1970-01-01.
        (20_792 * 86_400 + hours * 3_600 + minutes * 60) * 1_000
    }

    fn window(json: serde_json::Value) -> MaintenanceWindow {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn the_day_of_the_week_is_counted_from_a_thursday() {
        assert_eq!(Weekday::of_day(0), Weekday::Thu);
        assert_eq!(Weekday::of_day(20_792), Weekday::Sat);
        assert_eq!(Weekday::of_day(-1), Weekday::Wed);
    }

    #[test]
    fn a_window_within_a_day_is_open_from_its_start_to_before_its_end() {
        let nightly = window(serde_json::json!({"start": "01:00", "end": "05:00"}));
        assert!(!nightly.is_open_at(saturday(0, 59), 0));
        assert!(nightly.is_open_at(saturday(1, 0), 0));
        assert!(nightly.is_open_at(saturday(4, 59), 0));
        assert!(!nightly.is_open_at(saturday(5, 0), 0));
    }

    #[test]
    fn a_window_past_midnight_belongs_to_the_day_it_starts_on() {
        let weekend = window(serde_json::json!({"days": ["sat"], "start": "22:00", "end": "04:00"}));
        assert!(weekend.is_open_at(saturday(23, 0), 0));
        assert!(!weekend.is_open_at(saturday(3, 0), 0), "Saturday 03:00 belongs to Friday's window");
        assert!(weekend.is_open_at(saturday(23, 0) + 4 * 3_600_000, 0), "Sunday 03:00 is Saturday's");
        assert!(!weekend.is_open_at(saturday(21, 59), 0));
    }

    #[test]
    fn offsets_move_the_clock_and_devices_bring_their_own() {
        let nightly = window(serde_json::json!({"start": "01:00", "end": "05:00", "utc_offset": "+02:00"}));
        assert!(nightly.is_open_at(saturday(0, 0), 120), "02:00 at +02:00");
        assert!(may_start(std::slice::from_ref(&nightly), saturday(0, 0), None));
        assert!(!may_start(std::slice::from_ref(&nightly), saturday(4, 0), None), "06:00 at +02:00");

        let local = window(serde_json::json!({"start": "01:00", "end": "05:00", "local": true}));
        let mut device = Device::new("IMEI:1", crate::auth::credentials_for("IMEI:1", "omadm", "pw"), 0);
        assert!(!may_start(std::slice::from_ref(&local), saturday(12, 0), Some(&device)), "no tag: UTC noon");
        device.tags.insert(UTC_OFFSET_TAG.to_owned(), "-10:00".to_owned());
        assert!(may_start(std::slice::from_ref(&local), saturday(12, 0), Some(&device)), "02:00 at -10:00");
        assert!(may_start(std::slice::from_ref(&local), saturday(12, 0), None), "somewhere it is open");
        assert!(may_start(&[], saturday(12, 0), None), "no windows: always");
    }

    #[test]
    fn malformed_times_and_offsets_are_named() {
        let problem = |json| window(json).problem().map(|(field, _)| field);
        assert_eq!(problem(serde_json::json!({"start": "1:00", "end": "05:00"})), Some("start"));
        assert_eq!(problem(serde_json::json!({"start": "01:00", "end": "24:00"})), Some("end"));
        assert_eq!(
            problem(serde_json::json!({"start": "01:00", "end": "02:00", "utc_offset": "+15:00"})),
            Some("utc_offset")
        );
        assert_eq!(problem(serde_json::json!({"start": "01:00", "end": "02:00", "utc_offset": "-05:30"})), None);
        assert_eq!(parse_offset("-05:30"), Some(-330));
    }
}
