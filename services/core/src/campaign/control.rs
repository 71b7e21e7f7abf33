//! What an operator does to a campaign: create it, approve, pause, resume or cancel it, retry its failed devices.
//! Each is a write of the campaign's record against the revision read, so a change made meanwhile by the
//! orchestrator (or another operator) is read again, never overwritten.

use super::events::campaign_created;
use super::records::{Stored, campaign_record, count_devices, get_campaign, write_campaign};
use super::{Campaign, CampaignSpec, CampaignState, Progress};
use crate::clock::Millis;
use crate::model::RecordWrite;
use crate::store::{Store, StoreError, WriteBatch};

/// An operator's request on an existing campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Approve,
    Pause,
    Resume,
    Cancel,
}

impl Control {
    pub fn name(self) -> &'static str {
        match self {
            Control::Approve => "approve",
            Control::Pause => "pause",
            Control::Resume => "resume",
            Control::Cancel => "cancel",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("no campaign {0:?}")]
    NotFound(String),
    /// The request does not apply to the campaign's state (a finished campaign, resuming a running one): 409.
    #[error("campaign {id:?} is {state}: it cannot {control}")]
    WrongState { id: String, state: &'static str, control: &'static str },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The state `control` leads to from `state`, if it applies. Pure.
pub fn transition(state: CampaignState, control: Control) -> Option<CampaignState> {
    match (state, control) {
        (CampaignState::Draft, Control::Approve) => Some(CampaignState::Running),
        (CampaignState::Running, Control::Pause) => Some(CampaignState::Paused),
        (CampaignState::Paused, Control::Resume) => Some(CampaignState::Running),
        (CampaignState::Draft | CampaignState::Running | CampaignState::Paused, Control::Cancel) => {
            Some(CampaignState::Cancelled)
        }
        _ => None,
    }
}

/// Writes attempted before a change that keeps meeting newer revisions gives up (the store answers 503 then).
const ATTEMPTS: usize = 8;

/// Where a new firmware campaign's devices HGET their FUMO instance from: the action's descriptor and the
/// rollback package's (both written to the repository with the campaign).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Descriptors {
    pub action: Option<String>,
    pub rollback: Option<String>,
}

/// A new campaign: `draft` when it waits for approval, else `running`. Pure.
pub fn new_campaign(
    id: String,
    spec: CampaignSpec,
    descriptors: Descriptors,
    follow_up_of: Option<String>,
    now: Millis,
) -> Campaign {
    let state = if spec.policy.requires_approval { CampaignState::Draft } else { CampaignState::Running };
    Campaign {
        id,
        progress: Progress { rate_per_minute: spec.policy.initial_rate(), rate_at: now, ..Progress::default() },
        spec,
        state,
        reason: None,
        descriptor_url: descriptors.action,
        follow_up_of,
        rollback_descriptor_url: descriptors.rollback,
        created_at: now,
        updated_at: now,
    }
}

/// Adds to `batch` a new campaign's record (only if no campaign has its id) and its `campaign.created`.
pub fn add_creation(batch: &mut WriteBatch, campaign: &Campaign) {
    batch.records.push(RecordWrite::put(campaign_record(campaign), Some(0)));
    batch.events.push(campaign_created(campaign));
}

/// The rollback of `campaign` as it is aborted, when its policy names a package: a running follow-up
/// `{id}-rollback` that installs the package, in one wave, on the devices the campaign updated (verifying or
/// succeeded), at the campaign's rate. Pure; its id makes a second rollback of the same campaign a conflict.
pub fn rollback_of(campaign: &Campaign, now: Millis) -> Option<Campaign> {
    let package = campaign.spec.policy.rollback.clone()?;
    let mut spec = campaign.spec.clone();
    spec.name = format!("{} (rollback)", campaign.spec.name);
    spec.action = super::Action::Firmware(package);
    spec.target = super::Target {
        filter: None,
        devices: Vec::new(),
        campaign: Some(super::spec::CampaignSource {
            id: campaign.id.clone(),
            states: vec![super::DeviceState::Verifying, super::DeviceState::Succeeded],
        }),
    };
    spec.policy.waves = vec![super::WaveSize::Percent(100.0)];
    spec.policy.requires_approval = false;
    spec.policy.dynamic = false;
    spec.policy.rollback = None;
    // A rollback tries every updated device: its own failures do not stop it.
    spec.policy.failure_threshold = 1.0;
    let descriptors = Descriptors { action: campaign.rollback_descriptor_url.clone(), rollback: None };
    Some(new_campaign(format!("{}-rollback", campaign.id), spec, descriptors, Some(campaign.id.clone()), now))
}

/// Creates a campaign (its record and `campaign.created` in one commit); the orchestrator picks running
/// campaigns up.
pub async fn create(
    store: &dyn Store,
    id: String,
    spec: CampaignSpec,
    descriptors: Descriptors,
    follow_up_of: Option<String>,
    now: Millis,
) -> Result<Campaign, StoreError> {
    let campaign = new_campaign(id, spec, descriptors, follow_up_of, now);
    let mut batch = WriteBatch::default();
    add_creation(&mut batch, &campaign);
    store.commit(batch).await?;
    tracing::info!(campaign_id = %campaign.id, state = campaign.state.name(), "campaign created");
    Ok(campaign)
}

/// Applies `control` to the campaign `id`; the campaign as it now stands.
pub async fn apply(store: &dyn Store, id: &str, control: Control, now: Millis) -> Result<Campaign, ControlError> {
    let mut last_error = None;
    for _ in 0..ATTEMPTS {
        let Some(Stored { value: mut campaign, revision }) = get_campaign(store, id).await? else {
            return Err(ControlError::NotFound(id.to_owned()));
        };
        let from = campaign.state;
        let Some(to) = transition(from, control) else {
            return Err(ControlError::WrongState { id: id.to_owned(), state: from.name(), control: control.name() });
        };
        if control == Control::Resume {
            // The failure threshold judges what finishes from now on, or a paused campaign would pause again.
            let counts = count_devices(store, id, campaign.spec.policy.waves.len()).await?;
            campaign.progress.threshold_base_finished = counts.reported();
            campaign.progress.threshold_base_failed = counts.failures();
        }
        campaign.state = to;
        campaign.reason = Some(format!("operator:{}", control.name()));
        campaign.updated_at = now;
        let mut batch = WriteBatch::default();
        write_campaign(&mut batch, &campaign, from, revision, now);
        match store.commit(batch).await {
            Ok(()) => {
                tracing::info!(campaign_id = %id, from = from.name(), to = to.name(), "campaign changed by operator");
                return Ok(campaign);
            }
            Err(error @ StoreError::Conflict { .. }) => last_error = Some(error),
            Err(error) => return Err(error.into()),
        }
    }
    Err(ControlError::Store(last_error.unwrap_or_else(|| StoreError::Unavailable("campaign kept changing".into()))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaign::DeviceState;

    #[test]
    fn a_rollback_installs_its_package_on_the_updated_devices_only_once() {
        let body = serde_json::json!({"name": "fw-2", "target": {"filter": {"mod": "X1"}},
            "action": {"firmware": {"url": "fw/x1-2.bin", "version": "2"}},
            "policy": {"waves": ["10%", "100%"], "failure_threshold": 0.1, "on_threshold": "abort",
                       "rollback": {"url": "fw/x1-1.bin", "version": "1"}}});
        let spec = CampaignSpec::from_json(&serde_json::to_vec(&body).unwrap()).unwrap();
        let descriptors = Descriptors { action: Some("a".into()), rollback: Some("r".into()) };
        let mut campaign = new_campaign("cmp-1".into(), spec, descriptors, None, 5);
        campaign.state = CampaignState::Aborted;
        let rollback = rollback_of(&campaign, 9).unwrap();
        assert_eq!((rollback.id.as_str(), rollback.follow_up_of.as_deref()), ("cmp-1-rollback", Some("cmp-1")));
        assert_eq!((rollback.state, rollback.descriptor_url.as_deref()), (CampaignState::Running, Some("r")));
        let source = rollback.spec.target.campaign.clone().unwrap();
        assert_eq!(
            (source.id.as_str(), source.states),
            ("cmp-1", vec![DeviceState::Verifying, DeviceState::Succeeded])
        );
        assert!(rollback.spec.target.filter.is_none());
        assert!(matches!(&rollback.spec.action, crate::campaign::Action::Firmware(package) if package.version == "1"));
        assert_eq!(rollback.spec.policy.waves.len(), 1);
        assert_eq!((rollback.spec.policy.failure_threshold, rollback.spec.policy.rollback.is_none()), (1.0, true));
        assert!(rollback.spec.check().is_ok());
        assert!(rollback_of(&rollback, 10).is_none(), "a rollback has nothing to roll back to");
        let commands = serde_json::json!({"name": "c", "target": {"filter": {"mod": "X1"}},
            "action": {"commands": [["GET", "urn:oma:mo:oma-dm-devinfo:1.2//FwV"]]},
            "policy": {"rollback": {"url": "fw/x1-1.bin", "version": "1"}}});
        let refused = CampaignSpec::from_json(&serde_json::to_vec(&commands).unwrap()).unwrap_err();
        assert_eq!(refused.field, "policy.rollback");
    }

    #[test]
    fn controls_apply_to_the_states_they_name() {
        use CampaignState::*;
        assert_eq!(transition(Draft, Control::Approve), Some(Running));
        assert_eq!(transition(Running, Control::Approve), None);
        assert_eq!(transition(Running, Control::Pause), Some(Paused));
        assert_eq!(transition(Paused, Control::Resume), Some(Running));
        assert_eq!(transition(Running, Control::Resume), None);
        for state in [Draft, Running, Paused] {
            assert_eq!(transition(state, Control::Cancel), Some(Cancelled));
        }
        for state in [Completed, Aborted, Cancelled] {
            for control in [Control::Approve, Control::Pause, Control::Resume, Control::Cancel] {
                assert_eq!(transition(state, control), None, "{state:?} is final");
            }
        }
    }
}
