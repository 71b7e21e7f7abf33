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

/// A new campaign: `draft` when it waits for approval, else `running`; its record and `campaign.created` (and,
/// when it starts at once, nothing more: the orchestrator picks running campaigns up) in one commit.
pub async fn create(
    store: &dyn Store,
    id: String,
    spec: CampaignSpec,
    descriptor_url: Option<String>,
    follow_up_of: Option<String>,
    now: Millis,
) -> Result<Campaign, StoreError> {
    let state = if spec.policy.requires_approval { CampaignState::Draft } else { CampaignState::Running };
    let campaign = Campaign {
        id,
        progress: Progress { rate_per_minute: spec.policy.initial_rate(), rate_at: now, ..Progress::default() },
        spec,
        state,
        reason: None,
        descriptor_url,
        follow_up_of,
        created_at: now,
        updated_at: now,
    };
    let batch = WriteBatch {
        records: vec![RecordWrite::put(campaign_record(&campaign), Some(0))],
        events: vec![campaign_created(&campaign)],
        ..WriteBatch::default()
    };
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
