//! How campaigns are kept: the campaign under the scope `campaigns`, each of its devices under the campaign's own
//! scope (labelled by state, wave and result, so pages and counts need no walk), and, under each device's scope,
//! which campaigns it is active in (what a device's session events are matched with).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::events::{campaign_device_changed, campaign_state_changed};
use super::{Campaign, CampaignDevice, CampaignState, DeviceState};
use crate::clock::Millis;
use crate::model::{Record, RecordWrite};
use crate::store::{Store, StoreError, WriteBatch};

/// The scope of every campaign record.
pub const CAMPAIGNS_SCOPE: &str = "campaigns";
pub const CAMPAIGN_COLLECTION: &str = "campaign";
/// A campaign's devices, in the campaign's scope (its id).
pub const DEVICE_COLLECTION: &str = "device";
/// The campaigns of a device, in the device's scope (its id); labelled [`ACTIVE_LABEL`] until final there.
pub const MEMBERSHIP_COLLECTION: &str = "campaign-membership";
pub const ACTIVE_LABEL: &str = "active";

/// Status codes whose devices are counted per code in a campaign's figures: FUMO result codes (200, 400 to 412,
/// 500 to 503) and the command statuses a device refuses with.
pub const COUNTED_CODES: [u16; 23] =
    [200, 400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 411, 412, 413, 415, 425, 500, 501, 502, 503, 506, 510];

/// A record read back with the revision to write it against.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored<T> {
    pub value: T,
    pub revision: u64,
}

pub fn state_label(state: DeviceState) -> String {
    format!("state:{}", state.name())
}

pub fn wave_label(wave: usize, state: DeviceState) -> String {
    format!("wave:{wave}:{}", state.name())
}

/// Every device of a wave, whatever its state.
pub fn wave_all_label(wave: usize) -> String {
    format!("wave:{wave}")
}

pub fn code_label(code: u16) -> String {
    format!("code:{code}")
}

fn campaign_state_label(state: CampaignState) -> String {
    format!("state:{}", state.name())
}

fn json<T: Serialize>(value: &T) -> serde_json::Value {
    // Plain structs with string keys: serializing cannot fail.
    serde_json::to_value(value).unwrap_or_default()
}

pub fn campaign_record(campaign: &Campaign) -> Record {
    Record {
        scope: CAMPAIGNS_SCOPE.to_owned(),
        collection: CAMPAIGN_COLLECTION.to_owned(),
        key: campaign.id.clone(),
        labels: BTreeSet::from([campaign_state_label(campaign.state)]),
        value: json(campaign),
        revision: 0,
    }
}

pub fn device_labels(device: &CampaignDevice) -> BTreeSet<String> {
    let mut labels =
        BTreeSet::from([state_label(device.state), wave_label(device.wave, device.state), wave_all_label(device.wave)]);
    if let Some(code) = device.result_code
        && device.state.is_final()
    {
        labels.insert(code_label(code));
    }
    if let Some(segment) = &device.segment
        && device.state.is_in_flight()
    {
        labels.insert(segment_in_flight_label(segment));
    }
    labels
}

/// The label of a campaign's devices in flight in `segment` (`policy.segments`).
pub fn segment_in_flight_label(segment: &str) -> String {
    format!("segment:{segment}:in_flight")
}

/// Devices in flight per segment of `segments`, from the labels.
pub async fn count_in_flight_by_segment(
    store: &dyn Store,
    campaign_id: &str,
    segments: &[String],
) -> Result<Vec<u64>, StoreError> {
    if segments.is_empty() {
        return Ok(Vec::new());
    }
    let labels: Vec<String> = segments.iter().map(|segment| segment_in_flight_label(segment)).collect();
    Ok(store.count_records(campaign_id, DEVICE_COLLECTION, &labels).await?.labels)
}

pub fn device_record(campaign_id: &str, device: &CampaignDevice) -> Record {
    Record {
        scope: campaign_id.to_owned(),
        collection: DEVICE_COLLECTION.to_owned(),
        key: device.device_id.clone(),
        labels: device_labels(device),
        value: json(device),
        revision: 0,
    }
}

/// The device's side: which campaign it is in, active while it is in flight there (its session events matter
/// to the campaign then; a pending device's do not).
pub fn membership_record(campaign_id: &str, device: &CampaignDevice) -> Record {
    let labels = if device.state.is_in_flight() { BTreeSet::from([ACTIVE_LABEL.to_owned()]) } else { BTreeSet::new() };
    Record {
        scope: device.device_id.clone(),
        collection: MEMBERSHIP_COLLECTION.to_owned(),
        key: campaign_id.to_owned(),
        labels,
        value: serde_json::json!({"state": device.state}),
        revision: 0,
    }
}

fn read<T: serde::de::DeserializeOwned>(record: Record) -> Result<Stored<T>, StoreError> {
    let revision = record.revision;
    serde_json::from_value(record.value).map(|value| Stored { value, revision }).map_err(|error| {
        StoreError::Corrupt(format!("{}/{} of {}: {error}", record.collection, record.key, record.scope))
    })
}

pub async fn get_campaign(store: &dyn Store, campaign_id: &str) -> Result<Option<Stored<Campaign>>, StoreError> {
    store.get_record(CAMPAIGNS_SCOPE, CAMPAIGN_COLLECTION, campaign_id).await?.map(read).transpose()
}

/// Campaigns in id order after `after`, all or those in `state`.
pub async fn list_campaigns(
    store: &dyn Store,
    state: Option<CampaignState>,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<Stored<Campaign>>, StoreError> {
    let label = state.map(campaign_state_label);
    let records = store.list_records(CAMPAIGNS_SCOPE, CAMPAIGN_COLLECTION, label.as_deref(), after, limit).await?;
    records.into_iter().map(read).collect()
}

pub async fn get_device(
    store: &dyn Store,
    campaign_id: &str,
    device_id: &str,
) -> Result<Option<Stored<CampaignDevice>>, StoreError> {
    store.get_record(campaign_id, DEVICE_COLLECTION, device_id).await?.map(read).transpose()
}

pub async fn get_devices(
    store: &dyn Store,
    campaign_id: &str,
    device_ids: &[String],
) -> Result<Vec<Option<Stored<CampaignDevice>>>, StoreError> {
    let records = store.get_records(campaign_id, DEVICE_COLLECTION, device_ids).await?;
    records.into_iter().map(|record| record.map(read).transpose()).collect()
}

/// A campaign's devices in id order after `after`: all, in `state`, or of one wave in `state`.
pub async fn list_devices(
    store: &dyn Store,
    campaign_id: &str,
    label: Option<&str>,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<Stored<CampaignDevice>>, StoreError> {
    let records = store.list_records(campaign_id, DEVICE_COLLECTION, label, after, limit).await?;
    records.into_iter().map(read).collect()
}

/// The campaigns a device is active in.
pub async fn active_campaigns_of(store: &dyn Store, device_id: &str) -> Result<Vec<String>, StoreError> {
    let records = store.list_records(device_id, MEMBERSHIP_COLLECTION, Some(ACTIVE_LABEL), None, 64).await?;
    Ok(records.into_iter().map(|record| record.key).collect())
}

/// A campaign's devices counted by state, by wave and state, and by result code, from the labels (no walk).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DeviceCounts {
    pub total: u64,
    pub by_state: BTreeMap<DeviceState, u64>,
    /// Per wave, by state.
    pub by_wave: Vec<BTreeMap<DeviceState, u64>>,
    /// Final devices per result code (codes of [`COUNTED_CODES`] with devices).
    pub by_code: BTreeMap<u16, u64>,
}

impl DeviceCounts {
    pub fn state(&self, state: DeviceState) -> u64 {
        self.by_state.get(&state).copied().unwrap_or(0)
    }

    pub fn wave_state(&self, wave: usize, state: DeviceState) -> u64 {
        self.by_wave.get(wave).and_then(|states| states.get(&state)).copied().unwrap_or(0)
    }

    pub fn in_flight(&self) -> u64 {
        DeviceState::IN_FLIGHT.iter().map(|state| self.state(*state)).sum()
    }

    /// Failed devices of every kind.
    pub fn failures(&self) -> u64 {
        self.state(DeviceState::Failed) + self.state(DeviceState::TimedOut)
    }

    /// Devices that reported an outcome the failure threshold judges: failures, successes, and successes whose
    /// version is still being read back (they reported 200; leaving them out would judge failures, which report
    /// at once, against only the successes verified so far). Skipped devices did nothing.
    pub fn reported(&self) -> u64 {
        self.state(DeviceState::Succeeded) + self.state(DeviceState::Verifying) + self.failures()
    }

    pub fn wave_total(&self, wave: usize) -> u64 {
        self.by_wave.get(wave).map_or(0, |states| states.values().sum())
    }
}

/// How many of a campaign's devices are in one of `states` (a retry's or a rollback's target), from the state
/// labels alone.
pub async fn count_in_states(store: &dyn Store, campaign_id: &str, states: &[DeviceState]) -> Result<u64, StoreError> {
    let labels: Vec<String> = states.iter().map(|state| state_label(*state)).collect();
    Ok(store.count_records(campaign_id, DEVICE_COLLECTION, &labels).await?.labels.iter().sum())
}

pub async fn count_devices(store: &dyn Store, campaign_id: &str, waves: usize) -> Result<DeviceCounts, StoreError> {
    let mut labels: Vec<String> = DeviceState::ALL.iter().map(|state| state_label(*state)).collect();
    for wave in 0..waves {
        labels.extend(DeviceState::ALL.iter().map(|state| wave_label(wave, *state)));
    }
    labels.extend(COUNTED_CODES.iter().map(|code| code_label(*code)));
    let counts = store.count_records(campaign_id, DEVICE_COLLECTION, &labels).await?;
    let mut figures = counts.labels.into_iter();
    let mut result = DeviceCounts { total: counts.total, ..DeviceCounts::default() };
    for state in DeviceState::ALL {
        result.by_state.insert(state, figures.next().unwrap_or(0));
    }
    for _ in 0..waves {
        let states = DeviceState::ALL.iter().map(|state| (*state, figures.next().unwrap_or(0))).collect();
        result.by_wave.push(states);
    }
    for code in COUNTED_CODES {
        let count = figures.next().unwrap_or(0);
        if count > 0 {
            result.by_code.insert(code, count);
        }
    }
    Ok(result)
}

/// Adds to `batch` the device's new record (against the revision read, 0 for a new one), its membership, and
/// its `campaign.device_changed` event.
pub fn write_device(
    batch: &mut WriteBatch,
    campaign_id: &str,
    device: &CampaignDevice,
    from: Option<DeviceState>,
    read_revision: u64,
    now: Millis,
) {
    batch.records.push(RecordWrite::put(device_record(campaign_id, device), Some(read_revision)));
    // The membership changes only when the device starts or stops being in flight: a selected (pending) device
    // has none yet, which keeps a million-device selection to one record per device.
    let was_in_flight = from.is_some_and(DeviceState::is_in_flight);
    if was_in_flight != device.state.is_in_flight() {
        batch.records.push(RecordWrite::put(membership_record(campaign_id, device), None));
    }
    batch.events.push(campaign_device_changed(campaign_id, device, from, read_revision + 1, now));
}

/// Adds to `batch` the campaign's new record (against the revision read) and, when its state changed, the
/// `campaign.state_changed` event.
pub fn write_campaign(
    batch: &mut WriteBatch,
    campaign: &Campaign,
    from: CampaignState,
    read_revision: u64,
    now: Millis,
) {
    batch.records.push(RecordWrite::put(campaign_record(campaign), Some(read_revision)));
    if campaign.state != from {
        batch.events.push(campaign_state_changed(campaign, from, read_revision + 1, now));
    }
}
