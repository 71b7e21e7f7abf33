//! The campaigns topic: `campaign.created`, `campaign.state_changed` and `campaign.device_changed`, keyed by the
//! campaign id (docs/events.md). Ids name the record revision the change produced, so a retried write repeats
//! the same id and a consumer drops it.

use serde::{Deserialize, Serialize};

use super::{Campaign, CampaignDevice, CampaignSpec, CampaignState, DeviceState};
use crate::bus::{Event, Topic};
use crate::clock::Millis;
use crate::session::events::envelope;

pub const CAMPAIGN_CREATED: &str = "campaign.created";
pub const CAMPAIGN_STATE_CHANGED: &str = "campaign.state_changed";
pub const CAMPAIGN_DEVICE_CHANGED: &str = "campaign.device_changed";
pub const CAMPAIGN_RATE_CHANGED: &str = "campaign.rate_changed";

/// Payload of `campaign.created`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CampaignCreated {
    pub campaign_id: String,
    pub name: String,
    pub state: CampaignState,
    pub spec: CampaignSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow_up_of: Option<String>,
}

/// Payload of `campaign.state_changed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CampaignStateChanged {
    pub campaign_id: String,
    pub from: CampaignState,
    pub to: CampaignState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Payload of `campaign.rate_changed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CampaignRateChanged {
    pub campaign_id: String,
    /// Starts per minute before and after.
    pub from: u32,
    pub to: u32,
    /// `ramp`, `failures`, `outbox_backlog` or `recovered`.
    pub reason: String,
    /// The share of the policy's rate the back-off controller allows now (1 without back-off).
    pub backoff_share: f64,
}

/// Payload of `campaign.device_changed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CampaignDeviceChanged {
    pub campaign_id: String,
    pub device_id: String,
    /// Absent when the device joined the campaign.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<DeviceState>,
    pub to: DeviceState,
    pub wave: usize,
    pub attempt: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_code: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `campaign:{id}:created`.
pub fn campaign_created(campaign: &Campaign) -> Event {
    let payload = CampaignCreated {
        campaign_id: campaign.id.clone(),
        name: campaign.spec.name.clone(),
        state: campaign.state,
        spec: campaign.spec.clone(),
        follow_up_of: campaign.follow_up_of.clone(),
    };
    let id = format!("campaign:{}:created", campaign.id);
    envelope(id, CAMPAIGN_CREATED, Topic::Campaigns, &campaign.id, campaign.created_at, payload)
}

/// `campaign:{id}:state:{revision}`: the change that made revision `revision` of the campaign's record.
pub fn campaign_state_changed(campaign: &Campaign, from: CampaignState, revision: u64, now: Millis) -> Event {
    let payload = CampaignStateChanged {
        campaign_id: campaign.id.clone(),
        from,
        to: campaign.state,
        reason: campaign.reason.clone(),
    };
    let id = format!("campaign:{}:state:{revision}", campaign.id);
    envelope(id, CAMPAIGN_STATE_CHANGED, Topic::Campaigns, &campaign.id, now, payload)
}

/// `campaign:{id}:rate:{revision}`: the rate change that made revision `revision` of the campaign's record.
pub fn campaign_rate_changed(campaign: &Campaign, from: u32, reason: &str, revision: u64, now: Millis) -> Event {
    let payload = CampaignRateChanged {
        campaign_id: campaign.id.clone(),
        from,
        to: campaign.progress.rate_per_minute,
        reason: reason.to_owned(),
        backoff_share: campaign.progress.backoff_share,
    };
    let id = format!("campaign:{}:rate:{revision}", campaign.id);
    envelope(id, CAMPAIGN_RATE_CHANGED, Topic::Campaigns, &campaign.id, now, payload)
}

/// `campaign:{id}:device:{device id}:{revision}`: the change that made revision `revision` of the device's record.
pub fn campaign_device_changed(
    campaign_id: &str,
    device: &CampaignDevice,
    from: Option<DeviceState>,
    revision: u64,
    now: Millis,
) -> Event {
    let payload = CampaignDeviceChanged {
        campaign_id: campaign_id.to_owned(),
        device_id: device.device_id.clone(),
        from,
        to: device.state,
        wave: device.wave,
        attempt: device.attempt,
        result_code: device.result_code,
        reason: device.reason.clone(),
    };
    let id = format!("campaign:{campaign_id}:device:{}:{revision}", device.device_id);
    envelope(id, CAMPAIGN_DEVICE_CHANGED, Topic::Campaigns, campaign_id, now, payload)
}
