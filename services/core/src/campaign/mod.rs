//! Campaigns: what an operator asks for ([`spec`]), where a campaign and each of its devices stand, how both are
//! kept as store records ([`records`]) and told as events ([`events`]). The rollout that moves them is the
//! campaigns role's (services/campaigns); the operator API creates and steers campaigns through these types.

pub mod control;
pub mod events;
pub mod records;
pub mod spec;
pub mod window;

use serde::{Deserialize, Serialize};

use crate::clock::Millis;
pub use spec::{Action, CampaignSpec, FirmwareAction, OnThreshold, Policy, SpecError, Target, TargetFilter, WaveSize};

/// Where a campaign stands. `draft` waits for approval; `completed`, `aborted` and `cancelled` are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CampaignState {
    Draft,
    Running,
    Paused,
    Completed,
    Aborted,
    Cancelled,
}

impl CampaignState {
    pub const ALL: [CampaignState; 6] = [
        CampaignState::Draft,
        CampaignState::Running,
        CampaignState::Paused,
        CampaignState::Completed,
        CampaignState::Aborted,
        CampaignState::Cancelled,
    ];

    pub fn name(self) -> &'static str {
        match self {
            CampaignState::Draft => "draft",
            CampaignState::Running => "running",
            CampaignState::Paused => "paused",
            CampaignState::Completed => "completed",
            CampaignState::Aborted => "aborted",
            CampaignState::Cancelled => "cancelled",
        }
    }

    pub fn is_final(self) -> bool {
        matches!(self, CampaignState::Completed | CampaignState::Aborted | CampaignState::Cancelled)
    }
}

/// Where one device of a campaign stands. `succeeded`, `failed`, `timed_out` and `skipped` are final (a retry
/// makes a failed or timed-out device `pending` again, with its attempt counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceState {
    /// Selected, not started yet.
    Pending,
    /// Its commands are queued and a notification requested.
    Notified,
    /// It opened a session since.
    InSession,
    /// It accepted the EXEC; the update runs on the device.
    Executing,
    /// It reported success; the version it now reports is being read back.
    Verifying,
    Succeeded,
    Failed,
    /// No outcome before its deadline.
    TimedOut,
    /// Nothing to do: already on the target version, or no longer matching.
    Skipped,
}

impl DeviceState {
    pub const ALL: [DeviceState; 9] = [
        DeviceState::Pending,
        DeviceState::Notified,
        DeviceState::InSession,
        DeviceState::Executing,
        DeviceState::Verifying,
        DeviceState::Succeeded,
        DeviceState::Failed,
        DeviceState::TimedOut,
        DeviceState::Skipped,
    ];

    /// Started and not finished: what `max_in_flight` bounds.
    pub const IN_FLIGHT: [DeviceState; 4] =
        [DeviceState::Notified, DeviceState::InSession, DeviceState::Executing, DeviceState::Verifying];

    pub fn name(self) -> &'static str {
        match self {
            DeviceState::Pending => "pending",
            DeviceState::Notified => "notified",
            DeviceState::InSession => "in_session",
            DeviceState::Executing => "executing",
            DeviceState::Verifying => "verifying",
            DeviceState::Succeeded => "succeeded",
            DeviceState::Failed => "failed",
            DeviceState::TimedOut => "timed_out",
            DeviceState::Skipped => "skipped",
        }
    }

    pub fn from_name(name: &str) -> Option<DeviceState> {
        DeviceState::ALL.into_iter().find(|state| state.name() == name)
    }

    pub fn is_final(self) -> bool {
        matches!(self, DeviceState::Succeeded | DeviceState::Failed | DeviceState::TimedOut | DeviceState::Skipped)
    }

    pub fn is_in_flight(self) -> bool {
        DeviceState::IN_FLIGHT.contains(&self)
    }
}

/// A campaign as stored: what was asked and where the rollout stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Campaign {
    pub id: String,
    pub spec: CampaignSpec,
    pub state: CampaignState,
    /// Why it is in its state when that was not the operator's plain request (`failure_threshold`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Where a firmware campaign's devices HGET their FUMO instance from (its descriptor in the repository).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub descriptor_url: Option<String>,
    /// The campaign this one follows: it retries its failed devices (`POST .../retry`) or rolls back its
    /// updated ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow_up_of: Option<String>,
    /// The descriptor of `policy.rollback`'s package, written with the campaign, for its rollback to HGET.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_descriptor_url: Option<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
    #[serde(default)]
    pub progress: Progress,
}

/// The rollout's position, rebuilt by a restarted orchestrator from this record and the device records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Devices the target matched when the campaign started (what wave percentages are shares of).
    pub target_size: u64,
    /// The end (exclusive, in selection order) of each wave: device n of the selection is in the first wave
    /// whose bound is above n. Set when the campaign starts.
    #[serde(default)]
    pub wave_bounds: Vec<u64>,
    /// Devices selected so far (device records written).
    pub selected: u64,
    /// The last device id selected: selection goes on after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// Entries of an explicit device list walked so far (devices that joined earlier are passed over, so this
    /// can be ahead of `selected`).
    #[serde(default)]
    pub listed: u64,
    /// The whole target has been selected (devices may still join a dynamic campaign).
    pub selection_done: bool,
    /// The wave devices are started from (0-based); earlier waves have passed their gate.
    pub current_wave: usize,
    /// Devices started (notified) so far, retries included.
    pub started: u64,
    /// The start rate in force (devices per minute), after the ramp and any back-off.
    pub rate_per_minute: u32,
    /// Starts allowed but not yet spent (a fraction carries over between ticks).
    pub rate_tokens: f64,
    /// When `rate_tokens` was last counted.
    pub rate_at: Millis,
    /// Finished and failed devices when the campaign was last resumed: the failure threshold judges only the
    /// devices that finished since.
    #[serde(default)]
    pub threshold_base_finished: u64,
    #[serde(default)]
    pub threshold_base_failed: u64,
    /// The share of the rate the back-off controller allows (1: all of it).
    #[serde(default = "Progress::full_share")]
    pub backoff_share: f64,
    /// When the controller's window began, and the reported and failed devices then.
    #[serde(default)]
    pub backoff_window_at: Millis,
    #[serde(default)]
    pub backoff_base_reported: u64,
    #[serde(default)]
    pub backoff_base_failed: u64,
    /// Start tokens per segment (`policy.segments`), counted at `segment_tokens_at`; a segment not in here yet
    /// has one second's worth.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub segment_tokens: std::collections::BTreeMap<String, f64>,
    #[serde(default)]
    pub segment_tokens_at: Millis,
}

impl Progress {
    fn full_share() -> f64 {
        1.0
    }
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            target_size: 0,
            wave_bounds: Vec::new(),
            selected: 0,
            cursor: None,
            listed: 0,
            selection_done: false,
            current_wave: 0,
            started: 0,
            rate_per_minute: 0,
            rate_tokens: 0.0,
            rate_at: 0,
            threshold_base_finished: 0,
            threshold_base_failed: 0,
            backoff_share: 1.0,
            backoff_window_at: 0,
            backoff_base_reported: 0,
            backoff_base_failed: 0,
            segment_tokens: std::collections::BTreeMap::new(),
            segment_tokens_at: 0,
        }
    }
}

/// One device in a campaign, as stored in the campaign's scope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CampaignDevice {
    pub device_id: String,
    pub state: DeviceState,
    /// The wave it belongs to (0-based).
    pub wave: usize,
    /// Starts so far (1 after the first notification).
    pub attempt: u32,
    /// The FUMO result code or the failing command's status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_code: Option<u16>,
    /// Why it failed or was skipped (`result_code`, `command_failed`, `version_mismatch`, `already_on_version`...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Not started again before this (a retry's back-off).
    #[serde(default)]
    pub not_before: Millis,
    /// When the current attempt gives up (timed out).
    #[serde(default)]
    pub deadline_at: Millis,
    /// Commands of a command action answered in the current attempt.
    #[serde(default)]
    pub answered: u32,
    /// When it reported success (the version read back must come after).
    #[serde(default)]
    pub verify_since: Millis,
    /// The FUMO instance the update runs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fumo_miid: Option<String>,
    /// Its segment (the value of `policy.segments.tag` when it was started), what segment budgets count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<String>,
    /// What happened to it, oldest first (bounded: [`MAX_TIMELINE_ENTRIES`]).
    #[serde(default)]
    pub timeline: Vec<TimelineEntry>,
    pub updated_at: Millis,
}

/// Entries kept in a device's timeline; older ones are dropped first (the first entry stays).
pub const MAX_TIMELINE_ENTRIES: usize = 32;

/// One step of a device through a campaign.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineEntry {
    pub at: Millis,
    /// `selected`, `notified`, `session`, `command`, `alert`, `verified`, `outcome`, `retry`.
    pub event: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl CampaignDevice {
    pub fn new(device_id: &str, wave: usize, now: Millis) -> CampaignDevice {
        CampaignDevice {
            device_id: device_id.to_owned(),
            state: DeviceState::Pending,
            wave,
            attempt: 0,
            result_code: None,
            reason: None,
            not_before: 0,
            deadline_at: 0,
            answered: 0,
            verify_since: 0,
            fumo_miid: None,
            segment: None,
            timeline: vec![TimelineEntry { at: now, event: "selected".to_owned(), detail: None }],
            updated_at: now,
        }
    }

    /// Appends to the timeline, keeping its first entry and the newest ones.
    pub fn note(&mut self, at: Millis, event: &str, detail: Option<String>) {
        if self.timeline.len() >= MAX_TIMELINE_ENTRIES {
            self.timeline.remove(1);
        }
        self.timeline.push(TimelineEntry { at, event: event.to_owned(), detail });
        self.updated_at = at;
    }
}
