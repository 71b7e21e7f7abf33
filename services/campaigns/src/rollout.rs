//! The rollout of one campaign, pure: from the campaign's record, its device counts and the time, what the next
//! tick does (change state, open the next wave, how many devices it may start) and the record after it.
//!
//! ```text
//! running --failure share over threshold (after threshold_min_finished)--> paused | aborted
//! running --every wave open, nothing pending or in flight, selection done--> completed
//! wave w --succeeded >= success share of its devices, or all of them finished--> wave w + 1 opens
//! starts this tick = min(rate tokens, max_in_flight - in flight)
//! ```

use omadm_core::campaign::records::DeviceCounts;
use omadm_core::campaign::{Campaign, CampaignState, DeviceState, OnThreshold};
use omadm_core::clock::Millis;

/// What one tick of a running campaign does.
#[derive(Debug, Clone, PartialEq)]
pub struct TickPlan {
    /// The campaign after the tick's decisions (state, wave, rate); the shell writes it against the revision read.
    pub campaign: Campaign,
    /// Select more of the target this tick.
    pub select: bool,
    /// Devices of `campaign.progress.current_wave` it may start.
    pub start_budget: u64,
    /// The start rate changed this tick (written at once, with its `campaign.rate_changed` event).
    pub rate_changed: Option<RateChange>,
}

/// A change of the start rate in force and why: `ramp` (more devices succeeded), `failures` or
/// `outbox_backlog` (the controller backed off), `recovered` (a calm window raised it again).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateChange {
    pub from: u32,
    pub to: u32,
    pub reason: &'static str,
}

/// What the shell reads of the system's load for the back-off controller.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Load {
    /// Events waiting in the store's outbox.
    pub outbox_waiting: u64,
}

/// One step of the back-off controller at the end of its window: the share of the rate it allows next and
/// why it moved, if it did. Pure; the window and its bases move in `progress`.
pub fn backoff_step(
    campaign: &Campaign,
    progress: &mut omadm_core::campaign::Progress,
    counts: &DeviceCounts,
    load: Load,
    now: Millis,
) -> Option<&'static str> {
    let backoff = campaign.spec.policy.backoff?;
    let window_over = now.saturating_sub(progress.backoff_window_at) >= backoff.window_s.saturating_mul(1000);
    if progress.backoff_window_at != 0 && !window_over {
        return None;
    }
    let first = progress.backoff_window_at == 0;
    let reported = counts.reported().saturating_sub(progress.backoff_base_reported);
    let failed = counts.failures().saturating_sub(progress.backoff_base_failed);
    progress.backoff_window_at = now;
    progress.backoff_base_reported = counts.reported();
    progress.backoff_base_failed = counts.failures();
    if first {
        return None;
    }
    let pressure = if load.outbox_waiting > backoff.max_outbox_backlog {
        Some("outbox_backlog")
    } else if reported >= backoff.min_reported.max(1) && failed as f64 > backoff.failure_share * reported as f64 {
        Some("failures")
    } else {
        None
    };
    let share = progress.backoff_share;
    let next = match pressure {
        Some(_) => (share * backoff.factor).max(backoff.min_share),
        None => (share / backoff.factor).min(1.0),
    };
    if (next - share).abs() < f64::EPSILON {
        return None;
    }
    progress.backoff_share = next;
    Some(pressure.unwrap_or("recovered"))
}

/// The start rate in force: the ramp's step for the devices succeeded so far, within the policy's maximum.
pub fn rate_per_minute(campaign: &Campaign, counts: &DeviceCounts) -> u32 {
    let policy = &campaign.spec.policy;
    match policy.ramp {
        None => policy.max_starts_per_minute,
        Some(ramp) => {
            let steps = counts.state(DeviceState::Succeeded) / ramp.every.max(1);
            let rate = f64::from(ramp.base_per_minute) * ramp.factor.powf(steps.min(1_000) as f64);
            rate.min(f64::from(policy.max_starts_per_minute)) as u32
        }
    }
    .max(1)
}

/// The tick of `campaign` at `now`, given its devices' counts. Pure.
pub fn plan(campaign: &Campaign, counts: &DeviceCounts, load: Load, now: Millis) -> TickPlan {
    let mut next = campaign.clone();
    if campaign.state != CampaignState::Running {
        return TickPlan { campaign: next, select: false, start_budget: 0, rate_changed: None };
    }
    let policy = &campaign.spec.policy;
    let progress = &mut next.progress;

    // The threshold judges the devices finished since the last resume.
    let finished_since = counts.reported().saturating_sub(progress.threshold_base_finished);
    let failed_since = counts.failures().saturating_sub(progress.threshold_base_failed);
    if finished_since >= policy.threshold_min_finished.max(1)
        && failed_since as f64 > policy.failure_threshold * finished_since as f64
    {
        next.state = match policy.on_threshold {
            OnThreshold::Pause => CampaignState::Paused,
            OnThreshold::Abort => CampaignState::Aborted,
        };
        next.reason = Some("failure_threshold".to_owned());
        next.updated_at = now;
        return TickPlan { campaign: next, select: false, start_budget: 0, rate_changed: None };
    }

    // The wave gate: the current wave is wholly selected, and enough of it succeeded (or all of it finished).
    let last_wave = progress.wave_bounds.len().saturating_sub(1);
    while progress.current_wave < last_wave {
        let wave = progress.current_wave;
        let bound = progress.wave_bounds.get(wave).copied().unwrap_or(0);
        let selected_all = progress.selection_done || progress.selected >= bound;
        let size = counts.wave_total(wave);
        let succeeded = counts.wave_state(wave, DeviceState::Succeeded);
        let open = counts.wave_state(wave, DeviceState::Pending)
            + DeviceState::IN_FLIGHT.iter().map(|state| counts.wave_state(wave, *state)).sum::<u64>();
        let share_met = succeeded as f64 >= policy.success_share() * size as f64;
        if selected_all && (open == 0 || (share_met && size > 0)) {
            progress.current_wave += 1;
        } else {
            break;
        }
    }

    let pending = counts.state(DeviceState::Pending);
    let nothing_left =
        progress.selection_done && progress.current_wave >= last_wave && pending == 0 && counts.in_flight() == 0;
    if nothing_left && !policy.dynamic {
        next.state = CampaignState::Completed;
        next.reason = None;
        next.updated_at = now;
        return TickPlan { campaign: next, select: false, start_budget: 0, rate_changed: None };
    }

    // The rate in force: the ramp's, times the share the back-off controller allows.
    let backed_off = backoff_step(campaign, progress, counts, load, now);
    let rate = ((f64::from(rate_per_minute(campaign, counts)) * progress.backoff_share).round() as u32).max(1);
    let from = campaign.progress.rate_per_minute;
    let rate_changed = (rate != from).then(|| RateChange { from, to: rate, reason: backed_off.unwrap_or("ramp") });
    progress.rate_per_minute = rate;
    // Tokens accrue at the rate in force, at most one second's worth (no burst after a pause).
    let elapsed = now.saturating_sub(progress.rate_at);
    let per_second = (f64::from(rate) / 60.0).max(1.0);
    progress.rate_tokens = (progress.rate_tokens + elapsed as f64 * f64::from(rate) / 60_000.0).min(per_second);
    progress.rate_at = now;
    let room = u64::from(policy.max_in_flight).saturating_sub(counts.in_flight());
    // Outside every maintenance window nothing starts (device-local windows are judged per device at start).
    let window_open = omadm_core::campaign::window::may_start(&policy.windows, now, None);
    let start_budget = if window_open { (progress.rate_tokens.floor() as u64).min(room) } else { 0 };
    TickPlan { select: !progress.selection_done, start_budget, rate_changed, campaign: next }
}

/// One tick's segment budgets (`policy.segments`): start tokens and room in flight per segment. Pure.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentBudget {
    tag: String,
    /// Starts a second per segment (its bucket holds at most one second's worth); None: no rate per segment.
    per_second: Option<f64>,
    max_in_flight: Option<u64>,
    tokens: std::collections::BTreeMap<String, f64>,
    in_flight: std::collections::BTreeMap<String, u64>,
}

/// The segment of devices whose value is one too many to budget apart.
pub const OTHER_SEGMENTS: &str = "*";

impl SegmentBudget {
    /// The budgets at `now`: the tokens saved at `tokens_at` plus what accrued since, and the devices in flight
    /// per known segment (`in_flight`, in the order of `tokens`' keys).
    pub fn new(
        segments: &omadm_core::campaign::spec::Segments,
        tokens: &std::collections::BTreeMap<String, f64>,
        tokens_at: Millis,
        in_flight: &[u64],
        now: Millis,
    ) -> SegmentBudget {
        let per_second = segments.max_starts_per_minute.map(|rate| (f64::from(rate) / 60.0).max(1.0));
        let elapsed = now.saturating_sub(tokens_at) as f64 / 1000.0;
        let tokens = tokens
            .iter()
            .map(|(segment, saved)| {
                let accrued = per_second.map_or(0.0, |rate| (saved + elapsed * rate).min(rate));
                (segment.clone(), accrued)
            })
            .collect::<std::collections::BTreeMap<_, _>>();
        let in_flight = tokens.keys().cloned().zip(in_flight.iter().copied()).collect();
        SegmentBudget {
            tag: segments.tag.clone(),
            per_second,
            max_in_flight: segments.max_in_flight.map(u64::from),
            tokens,
            in_flight,
        }
    }

    /// The segment `device` is counted in: its tag's value (`""` without it), or [`OTHER_SEGMENTS`] once
    /// [`omadm_core::campaign::spec::MAX_SEGMENTS`] segments are known.
    pub fn segment_of(&self, device: &omadm_core::model::Device) -> String {
        let value = device.tags.get(&self.tag).cloned().unwrap_or_default();
        if self.tokens.contains_key(&value) || self.tokens.len() < omadm_core::campaign::spec::MAX_SEGMENTS {
            value
        } else {
            OTHER_SEGMENTS.to_owned()
        }
    }

    /// Takes one start in `segment` if its budgets allow it.
    pub fn take(&mut self, segment: &str) -> bool {
        let full = self.per_second.unwrap_or(0.0);
        let tokens = self.tokens.entry(segment.to_owned()).or_insert(full);
        let in_flight = self.in_flight.entry(segment.to_owned()).or_insert(0);
        if self.per_second.is_some() && *tokens < 1.0 {
            return false;
        }
        if self.max_in_flight.is_some_and(|max| *in_flight >= max) {
            return false;
        }
        if self.per_second.is_some() {
            *tokens -= 1.0;
        }
        *in_flight += 1;
        true
    }

    /// The tokens to save with the campaign.
    pub fn tokens(&self) -> std::collections::BTreeMap<String, f64> {
        self.tokens.clone()
    }
}

/// Spends `started` of the plan's rate tokens.
pub fn spend(campaign: &mut Campaign, started: u64) {
    campaign.progress.rate_tokens = (campaign.progress.rate_tokens - started as f64).max(0.0);
    campaign.progress.started += started;
}

/// The wave of the `ordinal`-th selected device (0-based): the first whose bound is above it; devices beyond the
/// last bound (joining later) belong to the wave open now.
pub fn wave_of(bounds: &[u64], ordinal: u64, current_wave: usize) -> usize {
    bounds.iter().position(|bound| ordinal < *bound).unwrap_or(current_wave).max(current_wave.min(bounds.len()))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use omadm_core::campaign::control::{Descriptors, new_campaign};
    use omadm_core::campaign::{CampaignSpec, Progress};

    use super::*;

    fn campaign(policy: serde_json::Value) -> Campaign {
        let spec = CampaignSpec::from_json(
            &serde_json::to_vec(&serde_json::json!({"name": "t", "target": {"filter": {"mod": "X1"}},
                "action": {"firmware": {"url": "fw/x.bin", "version": "2"}}, "policy": policy}))
            .unwrap(),
        )
        .unwrap();
        let bounds = spec.policy.wave_bounds(100);
        let mut campaign = new_campaign("cmp-1".into(), spec, Descriptors::default(), None, 0);
        campaign.progress =
            Progress { target_size: 100, wave_bounds: bounds, rate_per_minute: 60, ..Progress::default() };
        campaign
    }

    fn counts(waves: &[&[(DeviceState, u64)]]) -> DeviceCounts {
        let mut counts = DeviceCounts::default();
        for wave in waves {
            let mut states = BTreeMap::new();
            for (state, count) in *wave {
                states.insert(*state, *count);
                *counts.by_state.entry(*state).or_default() += count;
                counts.total += count;
            }
            counts.by_wave.push(states);
        }
        counts
    }

    #[test]
    fn the_threshold_waits_for_enough_finished_devices_then_pauses() {
        let campaign = campaign(serde_json::json!({"failure_threshold": 0.1, "threshold_min_finished": 10}));
        let few = counts(&[&[(DeviceState::Failed, 5), (DeviceState::Pending, 95)]]);
        assert_eq!(
            plan(&campaign, &few, Load::default(), 1_000).campaign.state,
            CampaignState::Running,
            "5 finished is too few"
        );
        let many = counts(&[&[(DeviceState::Failed, 3), (DeviceState::Succeeded, 17), (DeviceState::Pending, 80)]]);
        let paused = plan(&campaign, &many, Load::default(), 1_000);
        assert_eq!(paused.campaign.state, CampaignState::Paused);
        assert_eq!(paused.campaign.reason.as_deref(), Some("failure_threshold"));
        assert_eq!(paused.start_budget, 0);
        // After a resume the threshold judges only what finished since.
        let mut resumed = campaign.clone();
        resumed.progress.threshold_base_finished = 20;
        resumed.progress.threshold_base_failed = 3;
        assert_eq!(plan(&resumed, &many, Load::default(), 1_000).campaign.state, CampaignState::Running);
        let abort = super::tests::campaign(serde_json::json!({"failure_threshold": 0.1, "on_threshold": "abort"}));
        assert_eq!(plan(&abort, &many, Load::default(), 1_000).campaign.state, CampaignState::Aborted);
        // Successes still being verified count as reported outcomes: 3 failures of 30 is at the threshold.
        let verifying =
            counts(&[&[(DeviceState::Failed, 3), (DeviceState::Succeeded, 7), (DeviceState::Verifying, 20)]]);
        assert_eq!(plan(&campaign, &verifying, Load::default(), 1_000).campaign.state, CampaignState::Running);
    }

    #[test]
    fn the_next_wave_opens_at_the_success_share() {
        let mut campaign = campaign(serde_json::json!({"waves": ["10%", "100%"], "failure_threshold": 0.2}));
        campaign.progress.selected = 100;
        campaign.progress.selection_done = true;
        let below =
            counts(&[&[(DeviceState::Succeeded, 7), (DeviceState::Executing, 3)], &[(DeviceState::Pending, 90)]]);
        assert_eq!(
            plan(&campaign, &below, Load::default(), 0).campaign.progress.current_wave,
            0,
            "7 of 10 is under 80%"
        );
        let met = counts(&[&[(DeviceState::Succeeded, 8), (DeviceState::Executing, 2)], &[(DeviceState::Pending, 90)]]);
        assert_eq!(plan(&campaign, &met, Load::default(), 0).campaign.progress.current_wave, 1);
        // A wave whose devices all finished opens the next even under the share (the threshold judges failures).
        let done = counts(&[&[(DeviceState::Succeeded, 1), (DeviceState::Skipped, 9)], &[(DeviceState::Pending, 90)]]);
        assert_eq!(plan(&campaign, &done, Load::default(), 0).campaign.progress.current_wave, 1);
        // Not wholly selected yet: the wave stays.
        campaign.progress.selected = 5;
        campaign.progress.selection_done = false;
        assert_eq!(plan(&campaign, &met, Load::default(), 0).campaign.progress.current_wave, 0);
    }

    #[test]
    fn starts_follow_the_rate_and_the_room_in_flight() {
        let mut campaign = campaign(serde_json::json!({"max_starts_per_minute": 600, "max_in_flight": 5}));
        campaign.progress.rate_at = 0;
        let idle = counts(&[&[(DeviceState::Pending, 100)]]);
        // 10 a second: after 500 ms, 5 tokens, and 5 may fly.
        let first = plan(&campaign, &idle, Load::default(), 500);
        assert_eq!(first.start_budget, 5);
        // Tokens never exceed one second's worth.
        assert_eq!(plan(&campaign, &idle, Load::default(), 3_600_000).campaign.progress.rate_tokens, 10.0);
        let busy = counts(&[&[(DeviceState::Pending, 97), (DeviceState::Notified, 3)]]);
        assert_eq!(plan(&campaign, &busy, Load::default(), 500).start_budget, 2, "room for 2 more in flight");
        let mut spent = first.campaign;
        spend(&mut spent, 5);
        assert_eq!(spent.progress.rate_tokens, 0.0);
        assert_eq!(spent.progress.started, 5);
    }

    #[test]
    fn the_ramp_grows_by_its_factor_per_step_up_to_the_maximum() {
        let campaign = campaign(serde_json::json!({"max_starts_per_minute": 1000,
            "ramp": {"base_per_minute": 10, "factor": 2.0, "every": 5}}));
        assert_eq!(rate_per_minute(&campaign, &counts(&[&[]])), 10);
        assert_eq!(rate_per_minute(&campaign, &counts(&[&[(DeviceState::Succeeded, 12)]])), 40);
        assert_eq!(rate_per_minute(&campaign, &counts(&[&[(DeviceState::Succeeded, 500)]])), 1000);
    }

    #[test]
    fn a_campaign_completes_when_nothing_is_left_and_not_while_dynamic() {
        let mut campaign = campaign(serde_json::json!({}));
        campaign.progress.selection_done = true;
        let done = counts(&[&[(DeviceState::Succeeded, 90), (DeviceState::Failed, 10)]]);
        let mut lenient = campaign.clone();
        lenient.spec.policy.failure_threshold = 1.0;
        assert_eq!(plan(&lenient, &done, Load::default(), 0).campaign.state, CampaignState::Completed);
        lenient.spec.policy.dynamic = true;
        assert_eq!(plan(&lenient, &done, Load::default(), 0).campaign.state, CampaignState::Running);
        assert_eq!(campaign.state, CampaignState::Running);
    }

    #[test]
    fn the_controller_backs_off_on_failures_and_a_backlog_and_recovers_in_calm_windows() {
        let mut campaign = campaign(serde_json::json!({"max_starts_per_minute": 1000, "failure_threshold": 1.0,
            "backoff": {"window_s": 10, "failure_share": 0.2, "min_reported": 10, "max_outbox_backlog": 500}}));
        campaign.progress.rate_per_minute = 1000;
        let quiet = counts(&[&[(DeviceState::Pending, 100)]]);
        // The first tick opens the window; nothing moves within it.
        let opened = plan(&campaign, &quiet, Load::default(), 1_000);
        assert_eq!((opened.rate_changed, opened.campaign.progress.backoff_window_at), (None, 1_000));
        campaign = opened.campaign;
        assert_eq!(plan(&campaign, &quiet, Load::default(), 5_000).rate_changed, None);
        // 6 of 20 failed in the window: 30% is over 20%, the rate halves.
        let failing = counts(&[&[(DeviceState::Pending, 80), (DeviceState::Succeeded, 14), (DeviceState::Failed, 6)]]);
        let backed = plan(&campaign, &failing, Load::default(), 11_000);
        assert_eq!(backed.rate_changed, Some(RateChange { from: 1000, to: 500, reason: "failures" }));
        assert_eq!(backed.campaign.progress.backoff_share, 0.5);
        campaign = backed.campaign;
        // A backlog in the outbox halves it again, whatever the failures.
        let backlog = Load { outbox_waiting: 501 };
        let lower = plan(&campaign, &failing, backlog, 21_000);
        assert_eq!(lower.rate_changed, Some(RateChange { from: 500, to: 250, reason: "outbox_backlog" }));
        campaign = lower.campaign;
        // Too few reported in a window (5 < 10) is calm: the rate comes back step by step.
        let calm = counts(&[&[(DeviceState::Pending, 75), (DeviceState::Succeeded, 18), (DeviceState::Failed, 7)]]);
        let up = plan(&campaign, &calm, Load::default(), 31_000);
        assert_eq!(up.rate_changed, Some(RateChange { from: 250, to: 500, reason: "recovered" }));
        let up = plan(&up.campaign, &calm, Load::default(), 41_000);
        assert_eq!(up.rate_changed.map(|change| change.to), Some(1000));
        assert_eq!(plan(&up.campaign, &calm, Load::default(), 51_000).rate_changed, None, "never above the rate");
    }

    #[test]
    fn the_controller_never_goes_below_its_minimum_share() {
        let mut campaign = campaign(serde_json::json!({"max_starts_per_minute": 1000,
            "backoff": {"window_s": 1, "min_share": 0.2}}));
        campaign.progress.rate_per_minute = 1000;
        campaign.progress.backoff_window_at = 1;
        let backlog = Load { outbox_waiting: 1_000_000 };
        let quiet = counts(&[&[(DeviceState::Pending, 100)]]);
        for second in 1..10 {
            campaign = plan(&campaign, &quiet, backlog, second * 1_000 + 1).campaign;
        }
        assert_eq!((campaign.progress.backoff_share, campaign.progress.rate_per_minute), (0.2, 200));
    }

    #[test]
    fn ramp_steps_are_rate_changes_too() {
        let mut campaign = campaign(serde_json::json!({"max_starts_per_minute": 1000,
            "ramp": {"base_per_minute": 10, "factor": 2.0, "every": 5}}));
        campaign.progress.rate_per_minute = 10;
        let grown = plan(&campaign, &counts(&[&[(DeviceState::Succeeded, 5)]]), Load::default(), 1_000);
        assert_eq!(grown.rate_changed, Some(RateChange { from: 10, to: 20, reason: "ramp" }));
    }

    #[test]
    fn segment_budgets_bound_each_segment_apart() {
        let segments = omadm_core::campaign::spec::Segments {
            tag: "region".into(),
            max_starts_per_minute: Some(120),
            max_in_flight: Some(3),
        };
        let device = |region: Option<&str>| {
            let credentials = omadm_core::auth::credentials_for("d", "omadm", "pw");
            let mut device = omadm_core::model::Device::new("d", credentials, 0);
            if let Some(region) = region {
                device.tags.insert("region".into(), region.into());
            }
            device
        };
        // eu is known with 1 token saved and 2 in flight; us is new (a second's worth: 2 tokens).
        let saved = BTreeMap::from([("eu".to_owned(), 1.0)]);
        let mut budget = SegmentBudget::new(&segments, &saved, 1_000, &[2], 1_000);
        let eu = budget.segment_of(&device(Some("eu")));
        assert!(budget.take(&eu), "one token, one slot in flight");
        assert!(!budget.take(&eu), "no token and no room left");
        let us = budget.segment_of(&device(Some("us")));
        assert!(budget.take(&us) && budget.take(&us));
        assert!(!budget.take(&us), "a second's worth is two");
        assert_eq!(budget.segment_of(&device(None)), "");
        // Half a second later eu has one token again, but its in-flight room is still spent.
        let saved = budget.tokens();
        let mut later = SegmentBudget::new(&segments, &saved, 1_000, &[3, 2], 1_500);
        assert!(!later.take("eu"), "three in flight in eu");
        assert!(later.take("us"));
        let lots: BTreeMap<String, f64> =
            (0..omadm_core::campaign::spec::MAX_SEGMENTS).map(|index| (format!("cell-{index}"), 0.0)).collect();
        let crowded = SegmentBudget::new(&segments, &lots, 0, &[], 0);
        assert_eq!(crowded.segment_of(&device(Some("new-cell"))), OTHER_SEGMENTS);
        assert_eq!(crowded.segment_of(&device(Some("cell-7"))), "cell-7");
    }

    #[test]
    fn waves_of_selected_devices() {
        assert_eq!(wave_of(&[5, 100], 0, 0), 0);
        assert_eq!(wave_of(&[5, 100], 5, 0), 1);
        assert_eq!(wave_of(&[5, 100], 150, 1), 1, "beyond the target: the open wave");
        assert_eq!(wave_of(&[5, 100], 2, 1), 1, "a late joiner never lands in a wave already passed");
    }
}
