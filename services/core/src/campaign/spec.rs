//! What an operator asks a campaign to do (`POST /api/v1/campaigns`), read strictly and checked before anything is
//! stored: every refusal names the field it is about.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use omadm_proto::mo::{FirmwareUpdate, FumoState};
use omadm_proto::tree::DmmoDocument;

use crate::model::{DeviceFilter, check_device_id};
use crate::usecase::queue::parse_commands;

/// Most devices an explicit target may list (larger fleets are targeted by filter).
pub const MAX_TARGET_DEVICES: usize = 10_000;
/// Commands a command action may hold.
pub const MAX_ACTION_COMMANDS: usize = 100;
/// Retries per failure kind.
pub const MAX_RETRIES: u32 = 20;
/// Per-device deadline bounds, in seconds: one minute to 30 days.
pub const DEADLINE_SECONDS: std::ops::RangeInclusive<u64> = 60..=30 * 86_400;
/// Maintenance windows a policy may list.
pub const MAX_WINDOWS: usize = 32;
/// Highest start rate a policy may ask for (devices per minute).
pub const MAX_STARTS_PER_MINUTE: u32 = 10_000_000;

/// The campaign as asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignSpec {
    pub name: String,
    pub target: Target,
    pub action: Action,
    #[serde(default)]
    pub policy: Policy,
}

/// Which devices: those an inventory filter matches, the listed ones, or the listed ones that match the filter.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<TargetFilter>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<String>,
    /// The devices of another campaign in some of its states (with a filter: those that also match it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<CampaignSource>,
}

/// Devices of campaign `id` in `states`: a retry's failed and timed-out devices, a rollback's updated ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignSource {
    pub id: String,
    pub states: Vec<super::DeviceState>,
}

/// The inventory fields of `GET /api/v1/devices`: every given one must match exactly.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub man: Option<String>,
    #[serde(default, rename = "mod", skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fwv: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swv: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devtype: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

impl TargetFilter {
    pub fn device_filter(&self) -> DeviceFilter {
        DeviceFilter {
            man: self.man.clone(),
            model: self.model.clone(),
            fwv: self.fwv.clone(),
            swv: self.swv.clone(),
            dev_type: self.devtype.clone(),
            tags: self.tags.iter().map(|(key, value)| (key.clone(), value.clone())).collect(),
        }
    }

    fn is_empty(&self) -> bool {
        self.man.is_none()
            && self.model.is_none()
            && self.fwv.is_none()
            && self.swv.is_none()
            && self.devtype.is_none()
            && self.tags.is_empty()
    }
}

/// What each device gets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// A FUMO update: the server writes the package's address into the device's FUMO instance (HGET of a
    /// descriptor) and EXECs DownloadAndUpdate; the FUMO result alert decides, and the version read back confirms.
    Firmware(FirmwareAction),
    /// Any DM commands in their Package#2 array form; the device succeeds when every one is answered 2xx/3xx.
    Commands(Vec<serde_json::Value>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FirmwareAction {
    /// The package: a repository path (`fw/x1-1.3.bin`) or its URL under the server's public `/repo/`.
    pub url: String,
    /// The version the device reports (DevInfo FwV) once updated.
    pub version: String,
    /// PkgName for the device (the version when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// `sha256:<hex>` of the package, checked against the repository's copy when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
}

/// A wave's size: a share of the target (`"5%"`) or a device count (`100`), cumulative.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WaveSize {
    Percent(f64),
    Count(u64),
}

impl Serialize for WaveSize {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            WaveSize::Percent(percent) => serializer.serialize_str(&format!("{percent}%")),
            WaveSize::Count(count) => serializer.serialize_u64(*count),
        }
    }
}

impl<'de> Deserialize<'de> for WaveSize {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Count(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Count(count) => Ok(WaveSize::Count(count)),
            Raw::Text(text) => text
                .strip_suffix('%')
                .and_then(|number| number.trim().parse::<f64>().ok())
                .filter(|percent| percent.is_finite())
                .map(WaveSize::Percent)
                .ok_or_else(|| serde::de::Error::custom(format!("a wave is \"<percent>%\" or a count, not {text:?}"))),
        }
    }
}

/// What happens when the failure share passes the threshold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnThreshold {
    #[default]
    Pause,
    Abort,
}

/// Retries per failure kind, each 0 to [`MAX_RETRIES`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retries {
    #[serde(default)]
    pub failed: u32,
    #[serde(default)]
    pub timed_out: u32,
}

/// A start rate that grows: `base_per_minute`, multiplied by `factor` after every `every` devices succeeded, up
/// to `max_starts_per_minute`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ramp {
    pub base_per_minute: u32,
    pub factor: f64,
    pub every: u64,
}

/// Per-segment budgets: devices are grouped by the value of their tag `tag` (devices without it form the
/// segment `""`); each segment may start at most `max_starts_per_minute` devices a minute and have at most
/// `max_in_flight` started and not finished, so no one region, carrier or cell is flooded. At most
/// [`MAX_SEGMENTS`] segments are budgeted apart; devices of further values share the budget of `"*"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Segments {
    pub tag: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_starts_per_minute: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<u32>,
}

/// Segments budgeted apart (`policy.segments`).
pub const MAX_SEGMENTS: usize = 1_000;

/// The rate controller: every `window_s`, the failure share of the devices that reported in the window (at
/// least `min_reported` of them) above `failure_share`, or more than `max_outbox_backlog` events waiting in the
/// store's outbox, multiplies the rate by `factor`, down to `min_share` of it; a window without either divides
/// it by `factor` again, up to the whole rate. `{}` takes every default.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backoff {
    #[serde(default = "Backoff::default_window_s")]
    pub window_s: u64,
    #[serde(default = "Backoff::default_failure_share")]
    pub failure_share: f64,
    #[serde(default = "Backoff::default_min_reported")]
    pub min_reported: u64,
    #[serde(default = "Backoff::default_max_outbox_backlog")]
    pub max_outbox_backlog: u64,
    #[serde(default = "Backoff::default_factor")]
    pub factor: f64,
    #[serde(default = "Backoff::default_min_share")]
    pub min_share: f64,
}

impl Backoff {
    fn default_window_s() -> u64 {
        60
    }
    fn default_failure_share() -> f64 {
        0.1
    }
    fn default_min_reported() -> u64 {
        10
    }
    fn default_max_outbox_backlog() -> u64 {
        100_000
    }
    fn default_factor() -> f64 {
        0.5
    }
    fn default_min_share() -> f64 {
        0.05
    }

    fn check(&self) -> Result<(), SpecError> {
        if !(1..=86_400).contains(&self.window_s) {
            return Err(refuse("policy.backoff.window_s", "1 to 86400 seconds"));
        }
        if !(0.0..=1.0).contains(&self.failure_share) {
            return Err(refuse("policy.backoff.failure_share", "a share from 0 to 1"));
        }
        if !(self.factor > 0.0 && self.factor < 1.0) {
            return Err(refuse("policy.backoff.factor", "above 0 and below 1"));
        }
        if !(self.min_share > 0.0 && self.min_share <= 1.0) {
            return Err(refuse("policy.backoff.min_share", "above 0, at most 1"));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default = "Policy::default_waves")]
    pub waves: Vec<WaveSize>,
    /// The share of a wave that must have succeeded before the next starts; `1 - failure_threshold` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wave_success_share: Option<f64>,
    #[serde(default = "Policy::default_max_in_flight")]
    pub max_in_flight: u32,
    #[serde(default = "Policy::default_max_starts_per_minute")]
    pub max_starts_per_minute: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ramp: Option<Ramp>,
    /// Failed devices (any kind) over finished devices above which `on_threshold` happens; 1 never.
    #[serde(default = "Policy::default_failure_threshold")]
    pub failure_threshold: f64,
    #[serde(default)]
    pub on_threshold: OnThreshold,
    /// Finished devices the threshold waits for before it judges.
    #[serde(default = "Policy::default_threshold_min_finished")]
    pub threshold_min_finished: u64,
    #[serde(default)]
    pub retries: Retries,
    /// Wait before a retry; doubled at each further attempt.
    #[serde(default = "Policy::default_retry_backoff_s")]
    pub retry_backoff_s: u64,
    #[serde(default = "Policy::default_device_deadline_s")]
    pub device_deadline_s: u64,
    /// Created as `draft`; starts at `POST .../approve`.
    #[serde(default)]
    pub requires_approval: bool,
    /// Reserved for the user-consent pages (SHOW): stored and shown, not acted on yet.
    #[serde(default)]
    pub requires_consent: bool,
    /// Devices that register or start matching the filter after the start join the running campaign.
    #[serde(default)]
    pub dynamic: bool,
    /// A firmware campaign aborted by its threshold starts a follow-up that installs this package on the devices
    /// it updated (`{id}-rollback`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<FirmwareAction>,
    /// Lowers the start rate while failures rise or the outbox backs up, and raises it again after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Backoff>,
    /// Budgets per segment of the fleet (the value of one device tag: region, carrier, cell).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segments: Option<Segments>,
    /// When devices may be started (`campaign::window`); any time when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<super::window::MaintenanceWindow>,
}

impl Policy {
    fn default_waves() -> Vec<WaveSize> {
        vec![WaveSize::Percent(100.0)]
    }
    fn default_max_in_flight() -> u32 {
        1_000
    }
    fn default_max_starts_per_minute() -> u32 {
        6_000
    }
    fn default_failure_threshold() -> f64 {
        1.0
    }
    fn default_threshold_min_finished() -> u64 {
        10
    }
    fn default_retry_backoff_s() -> u64 {
        60
    }
    fn default_device_deadline_s() -> u64 {
        86_400
    }

    /// The wave gate's success share.
    pub fn success_share(&self) -> f64 {
        self.wave_success_share.unwrap_or(1.0 - self.failure_threshold).clamp(0.0, 1.0)
    }

    /// The rate a campaign starts at.
    pub fn initial_rate(&self) -> u32 {
        self.ramp.map_or(self.max_starts_per_minute, |ramp| ramp.base_per_minute.min(self.max_starts_per_minute))
    }
}

impl Default for Policy {
    fn default() -> Self {
        serde_json::from_value(serde_json::json!({})).unwrap_or_else(|_| unreachable!("every field has a default"))
    }
}

/// Why a campaign request is refused: the field (a JSON path such as `policy.waves`) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SpecError {
    pub field: String,
    pub message: String,
}

fn refuse(field: &str, message: impl Into<String>) -> SpecError {
    SpecError { field: field.to_owned(), message: message.into() }
}

impl CampaignSpec {
    /// Reads a request body strictly (unknown fields refused, by name) and checks it.
    pub fn from_json(body: &[u8]) -> Result<CampaignSpec, SpecError> {
        let deserializer = &mut serde_json::Deserializer::from_slice(body);
        let spec: CampaignSpec = serde_path_to_error::deserialize(deserializer).map_err(|error| {
            let path = error.path().to_string();
            let field = if path == "." { "body".to_owned() } else { path };
            refuse(&field, error.into_inner().to_string())
        })?;
        spec.check()?;
        Ok(spec)
    }

    /// The checks beyond the shape; pure.
    pub fn check(&self) -> Result<(), SpecError> {
        if self.name.trim().is_empty() || self.name.len() > 200 {
            return Err(refuse("name", "a name of 1 to 200 bytes is required"));
        }
        let filter_empty = self.target.filter.as_ref().is_none_or(TargetFilter::is_empty);
        if filter_empty && self.target.devices.is_empty() && self.target.campaign.is_none() {
            return Err(refuse("target", "the target is empty: give a filter, devices, a campaign's devices, or both"));
        }
        if let Some(source) = &self.target.campaign {
            if !self.target.devices.is_empty() {
                return Err(refuse("target.campaign", "a campaign's devices or a list of devices, not both"));
            }
            if source.id.trim().is_empty() {
                return Err(refuse("target.campaign.id", "the campaign's id is required"));
            }
            if source.states.is_empty() || source.states.len() > super::DeviceState::ALL.len() {
                return Err(refuse("target.campaign.states", "one or more device states"));
            }
        }
        if self.target.devices.len() > MAX_TARGET_DEVICES {
            return Err(refuse(
                "target.devices",
                format!("at most {MAX_TARGET_DEVICES} devices; target more by filter"),
            ));
        }
        for (index, device_id) in self.target.devices.iter().enumerate() {
            check_device_id(device_id)
                .map_err(|error| refuse(&format!("target.devices[{index}]"), error.to_string()))?;
        }
        if self.policy.rollback.is_some() && !matches!(self.action, Action::Firmware(_)) {
            return Err(refuse("policy.rollback", "only a firmware campaign rolls back"));
        }
        if let Some(rollback) = &self.policy.rollback {
            check_firmware(rollback, "policy.rollback")?;
        }
        match &self.action {
            Action::Firmware(firmware) => check_firmware(firmware, "action.firmware")?,
            Action::Commands(commands) => {
                if commands.len() > MAX_ACTION_COMMANDS {
                    return Err(refuse("action.commands", format!("at most {MAX_ACTION_COMMANDS} commands")));
                }
                parse_commands(commands).map_err(|error| refuse("action.commands", error.to_string()))?;
            }
        }
        self.policy.check()
    }
}

/// The checks of a firmware package's fields, named under `prefix` (`action.firmware`, `policy.rollback`).
fn check_firmware(firmware: &FirmwareAction, prefix: &str) -> Result<(), SpecError> {
    if firmware.url.trim().is_empty() {
        return Err(refuse(&format!("{prefix}.url"), "the package's repository path or URL is required"));
    }
    if firmware.version.trim().is_empty() || firmware.version.len() > 100 {
        return Err(refuse(&format!("{prefix}.version"), "a version of 1 to 100 bytes is required"));
    }
    if let Some(checksum) = &firmware.checksum {
        let valid = checksum
            .strip_prefix("sha256:")
            .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|byte| byte.is_ascii_hexdigit()));
        if !valid {
            return Err(refuse(&format!("{prefix}.checksum"), "expected sha256:<64 hex digits>"));
        }
    }
    Ok(())
}

impl CampaignSpec {
    /// The action's commands, parsed (a checked spec parses).
    pub fn commands(&self) -> Vec<omadm_proto::command::Command> {
        match &self.action {
            Action::Commands(values) => parse_commands(values).unwrap_or_default(),
            Action::Firmware(_) => Vec::new(),
        }
    }
}

impl Policy {
    fn check(&self) -> Result<(), SpecError> {
        if self.waves.is_empty() {
            return Err(refuse("policy.waves", "at least one wave, the last \"100%\""));
        }
        let mut previous_percent = 0.0;
        let mut previous_count = 0;
        for (index, wave) in self.waves.iter().enumerate() {
            let field = format!("policy.waves[{index}]");
            match *wave {
                WaveSize::Percent(percent) => {
                    if !(percent > previous_percent && percent <= 100.0) {
                        return Err(refuse(&field, "wave shares grow, above 0% and up to 100%"));
                    }
                    previous_percent = percent;
                }
                WaveSize::Count(count) => {
                    if count <= previous_count {
                        return Err(refuse(&field, "wave counts are cumulative and grow, from 1"));
                    }
                    previous_count = count;
                }
            }
        }
        if !matches!(self.waves.last(), Some(WaveSize::Percent(percent)) if *percent == 100.0) {
            return Err(refuse("policy.waves", "the last wave must be \"100%\""));
        }
        if self.max_in_flight == 0 {
            return Err(refuse("policy.max_in_flight", "at least 1"));
        }
        if self.max_starts_per_minute == 0 || self.max_starts_per_minute > MAX_STARTS_PER_MINUTE {
            return Err(refuse("policy.max_starts_per_minute", format!("1 to {MAX_STARTS_PER_MINUTE}")));
        }
        if !(0.0..=1.0).contains(&self.failure_threshold) {
            return Err(refuse("policy.failure_threshold", "a share from 0 to 1"));
        }
        if let Some(share) = self.wave_success_share
            && !(0.0..=1.0).contains(&share)
        {
            return Err(refuse("policy.wave_success_share", "a share from 0 to 1"));
        }
        if let Some(ramp) = self.ramp {
            if ramp.base_per_minute == 0 {
                return Err(refuse("policy.ramp.base_per_minute", "at least 1"));
            }
            if !(ramp.factor > 1.0 && ramp.factor <= 10.0) {
                return Err(refuse("policy.ramp.factor", "above 1, at most 10"));
            }
            if ramp.every == 0 {
                return Err(refuse("policy.ramp.every", "at least 1"));
            }
        }
        if self.retries.failed > MAX_RETRIES {
            return Err(refuse("policy.retries.failed", format!("0 to {MAX_RETRIES}")));
        }
        if self.retries.timed_out > MAX_RETRIES {
            return Err(refuse("policy.retries.timed_out", format!("0 to {MAX_RETRIES}")));
        }
        if !(1..=86_400).contains(&self.retry_backoff_s) {
            return Err(refuse("policy.retry_backoff_s", "1 to 86400 seconds"));
        }
        if !DEADLINE_SECONDS.contains(&self.device_deadline_s) {
            return Err(refuse("policy.device_deadline_s", "60 seconds to 30 days"));
        }
        if let Some(backoff) = &self.backoff {
            backoff.check()?;
        }
        if let Some(segments) = &self.segments {
            if segments.tag.trim().is_empty() || segments.tag.len() > 64 {
                return Err(refuse("policy.segments.tag", "a device tag of 1 to 64 bytes"));
            }
            if segments.max_starts_per_minute.is_some_and(|rate| rate == 0 || rate > MAX_STARTS_PER_MINUTE) {
                return Err(refuse("policy.segments.max_starts_per_minute", format!("1 to {MAX_STARTS_PER_MINUTE}")));
            }
            if segments.max_in_flight == Some(0) {
                return Err(refuse("policy.segments.max_in_flight", "at least 1"));
            }
        }
        if self.windows.len() > MAX_WINDOWS {
            return Err(refuse("policy.windows", format!("at most {MAX_WINDOWS} windows")));
        }
        for (index, window) in self.windows.iter().enumerate() {
            if let Some((field, message)) = window.problem() {
                return Err(refuse(&format!("policy.windows[{index}].{field}"), message));
            }
        }
        Ok(())
    }

    /// The cumulative end of each wave over a target of `target_size` devices (the last is the whole target).
    pub fn wave_bounds(&self, target_size: u64) -> Vec<u64> {
        let mut bounds: Vec<u64> = self
            .waves
            .iter()
            .map(|wave| match *wave {
                WaveSize::Percent(percent) => ((percent / 100.0) * target_size as f64).ceil() as u64,
                WaveSize::Count(count) => count.min(target_size),
            })
            .collect();
        let mut floor = 0;
        for bound in &mut bounds {
            *bound = (*bound).max(floor);
            floor = *bound;
        }
        if let Some(last) = bounds.last_mut() {
            *last = target_size;
        }
        bounds
    }
}

/// The repository item a firmware campaign's devices HGET: their FUMO instance, pointing at the package.
pub fn fumo_descriptor(campaign_version: &str, package_name: Option<&str>, package_url: &str) -> serde_json::Value {
    let instance = FirmwareUpdate {
        package_name: Some(package_name.unwrap_or(campaign_version).to_owned()),
        package_version: Some(campaign_version.to_owned()),
        download_url: None,
        update_package: None,
        download_and_update_url: Some(package_url.to_owned()),
        state: FumoState::Idle,
        extensions: None,
    };
    let mo_data = match instance.to_mo_data() {
        serde_json::Value::Object(map) => map,
        _ => serde_json::Map::new(),
    };
    let document =
        DmmoDocument { ddf: None, moid: FirmwareUpdate::MOID.to_owned(), miid: None, client_uri: None, mo_data };
    document.to_json()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> Result<CampaignSpec, SpecError> {
        CampaignSpec::from_json(&serde_json::to_vec(&json).unwrap())
    }

    fn issue_example() -> serde_json::Value {
        serde_json::json!({"name": "fw-1.3", "target": {"filter": {"mod": "X1", "fwv": "1.2"}},
            "action": {"firmware": {"url": "http://h/repo/fw-1.3.bin", "version": "1.3"}},
            "policy": {"waves": ["5%", "100%"], "max_in_flight": 2000, "max_starts_per_minute": 60000,
                       "failure_threshold": 0.03, "on_threshold": "pause", "device_deadline_s": 3600}})
    }

    #[test]
    fn the_issue_example_reads() {
        let spec = spec(issue_example()).unwrap();
        assert_eq!(spec.policy.waves, vec![WaveSize::Percent(5.0), WaveSize::Percent(100.0)]);
        assert_eq!(spec.target.filter.unwrap().device_filter().model.as_deref(), Some("X1"));
        assert!((spec.policy.success_share() - 0.97).abs() < 1e-9);
    }

    #[test]
    fn refusals_name_their_field() {
        let field = |mutate: &dyn Fn(&mut serde_json::Value)| {
            let mut json = issue_example();
            mutate(&mut json);
            spec(json).unwrap_err().field
        };
        assert_eq!(field(&|j| j["target"]["filter"]["colour"] = "red".into()), "target.filter.colour");
        assert_eq!(field(&|j| j["target"] = serde_json::json!({})), "target");
        assert_eq!(field(&|j| j["policy"]["waves"] = serde_json::json!(["5%", "50%"])), "policy.waves");
        assert_eq!(field(&|j| j["policy"]["waves"] = serde_json::json!(["50%", "5%", "100%"])), "policy.waves[1]");
        assert_eq!(field(&|j| j["policy"]["waves"] = serde_json::json!(["half", "100%"])), "policy.waves[0]");
        assert_eq!(field(&|j| j["policy"]["max_starts_per_minute"] = 0.into()), "policy.max_starts_per_minute");
        assert_eq!(field(&|j| j["policy"]["failure_threshold"] = 1.5.into()), "policy.failure_threshold");
        assert_eq!(field(&|j| j["policy"]["retries"] = serde_json::json!({"failed": 21})), "policy.retries.failed");
        assert_eq!(field(&|j| j["policy"]["device_deadline_s"] = 10.into()), "policy.device_deadline_s");
        assert_eq!(field(&|j| j["action"] = serde_json::json!({"commands": [["END"]]})), "action.commands");
        assert_eq!(field(&|j| j["action"] = serde_json::json!({"reboot": {}})), "action");
        assert_eq!(field(&|j| j["target"]["devices"] = serde_json::json!(["bad id with spaces"])), "target.devices[0]");
    }

    #[test]
    fn wave_bounds_are_cumulative_and_end_at_the_target() {
        let policy = spec(issue_example()).unwrap().policy;
        assert_eq!(policy.wave_bounds(10_000), vec![500, 10_000]);
        assert_eq!(policy.wave_bounds(3), vec![1, 3]);
        assert_eq!(policy.wave_bounds(0), vec![0, 0]);
        let mixed = Policy { waves: vec![WaveSize::Count(10), WaveSize::Percent(100.0)], ..Policy::default() };
        assert_eq!(mixed.wave_bounds(5), vec![5, 5]);
        assert_eq!(mixed.wave_bounds(100), vec![10, 100]);
    }
}
