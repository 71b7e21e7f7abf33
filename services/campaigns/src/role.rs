//! The campaigns role's shell: a ticker that moves every running campaign this replica holds (select, start,
//! time out, gate, finish), and a consumer loop that moves each device on its sessions, command results and FUMO
//! alerts. Both read and write only through the Store, against the revisions they read ([`omadm_core::campaign`]).
//!
//! ```text
//! tick (every tick_interval, per running campaign held this window):
//!   count_records -> rollout::plan -> state change? write, done
//!                                  -> select a page of the target (device records, cursor) in one commit
//!                                  -> deadlines of devices in flight (at most every deadline_sweep)
//!                                  -> start up to the budget: per device start::plan, then one commit of the
//!                                     device records, their queued commands, notification requests, events and
//!                                     the campaign's spent rate
//! progress (group omadm-campaigns on sessions, results, alerts):
//!   event -> the device's active campaigns -> progress::on_event -> device record + event (+ FwV read back)
//! ```
//!
//! A campaign is held by one replica per lease window: the first whose `record_once` of the window's key wins.
//! A tick that overruns into the next window meets the next holder's writes through the revisions: the later
//! commit fails with `Conflict` and writes nothing, so no device is started twice and none is lost; rates hold
//! across replicas because only the holder spends the campaign's tokens.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use omadm_core::bus::{Bus, Delivery, Topic};
use omadm_core::campaign::control::{add_creation, rollback_of};
use omadm_core::campaign::events::campaign_rate_changed;
use omadm_core::campaign::records::{
    self, DeviceCounts, Stored, active_campaigns_of, count_devices, get_campaign, list_campaigns, state_label,
    wave_label, write_campaign, write_device,
};
use omadm_core::campaign::{Campaign, CampaignDevice, CampaignState, DeviceState, window};
use omadm_core::clock::{Millis, now_millis};
use omadm_core::model::{CommandOrigin, Device, NewCommand};
use omadm_core::session::events::{AlertReceived, COMMAND_RESULT, CommandResult, SESSION_ENDED, SESSION_STARTED};
use omadm_core::store::{EnqueuedCommands, Store, StoreError, WriteBatch};
use omadm_core::usecase::notify::{NotificationRequest, add_request};
use omadm_proto::mo::{FumoOperation, FumoResultCode};
use omadm_runtime::consumer::{BatchHandler, ConsumerLoop, ConsumerOptions, HandlerError};
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tracing::Instrument as _;

use crate::metrics::metrics;
use crate::progress::{self, DeviceEvent, FollowUp};
use crate::start::{self, Start};
use crate::{CONSUMER_GROUP, CampaignsError, CampaignsSettings};

/// Target devices selected per commit.
const SELECT_PAGE: usize = 1_000;
/// Devices started per commit: one round trip (one fsync embedded) for this many.
const START_BATCH: usize = 250;
/// Devices read per page when looking for deadlines.
const DEADLINE_PAGE: usize = 500;
/// Running campaigns read per page by the ticker.
const CAMPAIGN_PAGE: usize = 100;
/// Writes of one device's change tried against newer revisions before the batch is handed over again.
const ATTEMPTS: usize = 5;

/// A running campaigns role; [`Orchestrator::stop`] ends it after the tick and the batch in hand.
pub struct Orchestrator {
    stop: watch::Sender<bool>,
    ticker: tokio::task::JoinHandle<()>,
    progress: ConsumerLoop,
}

impl Orchestrator {
    /// Joins the consumer group `omadm-campaigns` and starts ticking.
    pub async fn start(
        store: Arc<dyn Store>,
        bus: Arc<dyn Bus>,
        settings: CampaignsSettings,
    ) -> Result<Orchestrator, CampaignsError> {
        let handler = ProgressHandler { store: Arc::clone(&store), dynamic: Vec::new(), dynamic_read_at: None };
        let progress = ConsumerLoop::start(
            &bus,
            CONSUMER_GROUP,
            &[Topic::Sessions, Topic::Results, Topic::Alerts],
            handler,
            // Large batches: the handler works on a batch's devices side by side.
            ConsumerOptions { batch_size: 500, ..ConsumerOptions::default() },
        )
        .await
        .map_err(|error| CampaignsError::Bus(error.to_string()))?;
        let (stop, mut stopped) = watch::channel(false);
        let ticker = tokio::spawn(async move {
            let mut ticker = Ticker { store, settings, held: HashMap::new(), swept: HashMap::new() };
            while !*stopped.borrow() {
                let started = Instant::now();
                let selecting = ticker.tick_all().await;
                metrics().tick_seconds.observe(started.elapsed().as_secs_f64());
                if selecting {
                    // A target still being selected goes on at once: its devices are waiting to be counted.
                    tokio::task::yield_now().await;
                    continue;
                }
                tokio::select! {
                    () = tokio::time::sleep(ticker.settings.tick_interval) => {}
                    _ = stopped.changed() => {}
                }
            }
            tracing::info!("campaign ticker stopped");
        });
        Ok(Orchestrator { stop, ticker, progress })
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        if let Err(error) = self.ticker.await {
            tracing::error!(%error, "the campaign ticker failed");
        }
        self.progress.stop().await;
    }
}

struct Ticker {
    store: Arc<dyn Store>,
    settings: CampaignsSettings,
    /// The lease window each campaign is held in by this replica.
    held: HashMap<String, Millis>,
    /// When each campaign's devices were last checked against their deadlines.
    swept: HashMap<String, Millis>,
}

impl Ticker {
    /// Moves every running campaign held here; whether one of them has more of its target to select.
    async fn tick_all(&mut self) -> bool {
        let mut selecting = false;
        let mut after: Option<String> = None;
        loop {
            let page = match list_campaigns(
                self.store.as_ref(),
                Some(CampaignState::Running),
                after.as_deref(),
                CAMPAIGN_PAGE,
            )
            .await
            {
                Ok(page) => page,
                Err(error) => {
                    tracing::warn!(%error, "cannot list the running campaigns");
                    return false;
                }
            };
            let Some(last) = page.last() else { return selecting };
            after = Some(last.value.id.clone());
            let full = page.len() == CAMPAIGN_PAGE;
            for stored in page {
                let id = stored.value.id.clone();
                match self.holds(&id).await {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(error) => {
                        tracing::warn!(campaign_id = %id, %error, "cannot take the campaign's lease");
                        continue;
                    }
                }
                let span = tracing::info_span!("campaign_tick", campaign_id = %id);
                match self.tick(stored).instrument(span).await {
                    Ok(more) => selecting |= more,
                    Err(StoreError::Conflict { .. }) => metrics().conflicts.with_label_values(&["tick"]).inc(),
                    Err(error) => tracing::warn!(campaign_id = %id, %error, "campaign tick failed"),
                }
            }
            if !full {
                return selecting;
            }
        }
    }

    /// Whether this replica holds `campaign_id` in the current lease window (the first to record it does).
    async fn holds(&mut self, campaign_id: &str) -> Result<bool, StoreError> {
        let lease = self.settings.lease.as_millis().max(1) as Millis;
        let now = now_millis();
        let window = now / lease;
        if self.held.get(campaign_id) == Some(&window) {
            return Ok(true);
        }
        let key = format!("campaign-lease:{campaign_id}:{window}");
        let won = self.store.record_once(&key, lease.saturating_mul(2), now).await?;
        if won {
            self.held.insert(campaign_id.to_owned(), window);
        } else {
            self.held.remove(campaign_id);
        }
        Ok(won)
    }

    /// One tick of one campaign; whether its target has more to select.
    async fn tick(&mut self, stored: Stored<Campaign>) -> Result<bool, StoreError> {
        let store = self.store.as_ref();
        let Stored { value: campaign, mut revision } = stored;
        let now = now_millis();
        let waves = campaign.spec.policy.waves.len();
        let counts = count_devices(store, &campaign.id, waves).await?;
        let load = match campaign.spec.policy.backoff {
            Some(_) => crate::rollout::Load { outbox_waiting: store.outbox_len().await? },
            None => crate::rollout::Load::default(),
        };
        let plan = crate::rollout::plan(&campaign, &counts, load, now);
        let mut next = plan.campaign;
        if next.state != campaign.state {
            let mut batch = WriteBatch::default();
            write_campaign(&mut batch, &next, campaign.state, revision, now);
            // The rollback starts with the abort, in its commit: once, or not at all.
            let rollback = (next.state == CampaignState::Aborted).then(|| rollback_of(&next, now)).flatten();
            if let Some(rollback) = &rollback {
                add_creation(&mut batch, rollback);
            }
            store.commit(batch).await?;
            if let Some(rollback) = rollback {
                tracing::info!(campaign_id = %next.id, rollback_id = %rollback.id, "rollback started");
            }
            metrics().campaign_states.with_label_values(&[next.state.name()]).inc();
            tracing::info!(campaign_id = %next.id, from = campaign.state.name(), to = next.state.name(),
                reason = next.reason.as_deref().unwrap_or(""), "campaign changed");
            return Ok(false);
        }
        if let Some(change) = plan.rate_changed {
            let mut batch = WriteBatch::default();
            write_campaign(&mut batch, &next, next.state, revision, now);
            batch.events.push(campaign_rate_changed(&next, change.from, change.reason, revision + 1, now));
            store.commit(batch).await?;
            revision += 1;
            metrics().rate_changes.with_label_values(&[change.reason]).inc();
            tracing::info!(campaign_id = %next.id, from = change.from, to = change.to, reason = change.reason,
                "start rate changed");
        }
        let mut dirty = next.progress.current_wave != campaign.progress.current_wave;
        if dirty {
            tracing::info!(campaign_id = %next.id, wave = next.progress.current_wave, "next wave opens");
        }
        if plan.select {
            // Selection goes on page after page for up to one tick interval: a million-device target is
            // selected in seconds, and the tick still comes round to its starts and deadlines.
            select(store, &mut next, &mut revision, now, Instant::now() + self.settings.tick_interval).await?;
            dirty = false;
        }
        let sweep_every = self.settings.deadline_sweep.as_millis() as Millis;
        if self.swept.get(&next.id).is_none_or(|at| now.saturating_sub(*at) >= sweep_every) {
            sweep_deadlines(store, &next, now).await?;
            self.swept.insert(next.id.clone(), now);
        }
        if plan.start_budget > 0 {
            let started = start_devices(store, &mut next, &mut revision, plan.start_budget, &counts).await?;
            dirty = dirty && started == 0;
        }
        if dirty {
            let mut batch = WriteBatch::default();
            write_campaign(&mut batch, &next, next.state, revision, now);
            store.commit(batch).await?;
        }
        Ok(plan.select && !next.progress.selection_done)
    }
}

/// One page of a campaign's target, in selection order, and where the next starts.
struct TargetPage {
    device_ids: Vec<String>,
    /// The filter walk's cursor after this page.
    cursor: Option<String>,
    /// Entries of the explicit list walked after this page.
    listed: u64,
    done: bool,
}

/// Reads the page of the target after `cursor` (a filter walk) or `listed` entries (an explicit list).
async fn target_page(
    store: &dyn Store,
    campaign: &Campaign,
    cursor: Option<&str>,
    listed: u64,
) -> Result<TargetPage, StoreError> {
    if let Some(source) = &campaign.spec.target.campaign {
        // State after state of the source campaign; `listed` counts the states walked.
        let Some(state) = source.states.get(listed as usize) else {
            return Ok(TargetPage { device_ids: Vec::new(), cursor: None, listed, done: true });
        };
        let page = records::list_devices(store, &source.id, Some(&state_label(*state)), cursor, SELECT_PAGE).await?;
        let full = page.len() == SELECT_PAGE;
        let device_ids: Vec<String> = page.into_iter().map(|stored| stored.value.device_id).collect();
        if full {
            let next = device_ids.last().cloned();
            return Ok(TargetPage { device_ids, cursor: next, listed, done: false });
        }
        let listed = listed + 1;
        return Ok(TargetPage { device_ids, cursor: None, listed, done: listed as usize >= source.states.len() });
    }
    let explicit = &campaign.spec.target.devices;
    if explicit.is_empty() {
        let filter = campaign.spec.target.filter.clone().unwrap_or_default().device_filter();
        let page = store.list_devices(&filter, cursor, SELECT_PAGE).await?;
        let device_ids: Vec<String> = page.devices.into_iter().map(|device| device.id).collect();
        let next = page.next.clone().or_else(|| device_ids.last().cloned()).or_else(|| cursor.map(str::to_owned));
        return Ok(TargetPage { device_ids, cursor: next, listed, done: page.next.is_none() });
    }
    let from = (listed as usize).min(explicit.len());
    let to = (from + SELECT_PAGE).min(explicit.len());
    let device_ids = explicit.get(from..to).unwrap_or_default().to_vec();
    Ok(TargetPage { device_ids, cursor: None, listed: to as u64, done: to == explicit.len() })
}

/// Selects the target page after page for up to `until`: per page, a device record (pending, in its wave) for
/// each device not already in the campaign, and the campaign's position, in one commit; the next page is read
/// while that commit is in flight.
async fn select(
    store: &dyn Store,
    campaign: &mut Campaign,
    revision: &mut u64,
    now: Millis,
    until: Instant,
) -> Result<(), StoreError> {
    let explicit = !campaign.spec.target.devices.is_empty();
    if campaign.progress.selected == 0 && campaign.progress.wave_bounds.is_empty() {
        let size = if let Some(source) = &campaign.spec.target.campaign {
            records::count_in_states(store, &source.id, &source.states).await?
        } else if explicit {
            campaign.spec.target.devices.len() as u64
        } else {
            let filter = campaign.spec.target.filter.clone().unwrap_or_default().device_filter();
            store.count_devices(&filter).await?
        };
        campaign.progress.target_size = size;
        campaign.progress.wave_bounds = campaign.spec.policy.wave_bounds(size);
    }
    // Only the walk writes a device's first record, unless devices join a dynamic campaign or a list repeats
    // one: then each is looked for first, or its second first write would fail the whole page. A source campaign's
    // device may move from one listed state to the next while it is walked.
    let look_first = campaign.spec.policy.dynamic || explicit || campaign.spec.target.campaign.is_some();
    let mut page = target_page(store, campaign, campaign.progress.cursor.as_deref(), campaign.progress.listed).await?;
    loop {
        let existing = if look_first {
            records::get_devices(store, &campaign.id, &page.device_ids).await?
        } else {
            vec![None; page.device_ids.len()]
        };
        let mut batch = WriteBatch::default();
        let mut ordinal = campaign.progress.selected;
        let mut in_page = std::collections::HashSet::new();
        for (device_id, existing) in page.device_ids.iter().zip(existing) {
            if existing.is_some() || !in_page.insert(device_id.as_str()) {
                continue;
            }
            let wave = crate::rollout::wave_of(&campaign.progress.wave_bounds, ordinal, campaign.progress.current_wave);
            write_device(&mut batch, &campaign.id, &CampaignDevice::new(device_id, wave, now), None, 0, now);
            ordinal += 1;
        }
        let selected = ordinal - campaign.progress.selected;
        campaign.progress.selected = ordinal;
        campaign.progress.cursor = page.cursor.clone();
        campaign.progress.listed = page.listed;
        campaign.progress.selection_done = page.done;
        campaign.updated_at = now;
        write_campaign(&mut batch, campaign, campaign.state, *revision, now);
        let more = !page.done && Instant::now() < until;
        let next = if more {
            let (committed, next) =
                tokio::join!(store.commit(batch), target_page(store, campaign, page.cursor.as_deref(), page.listed));
            committed?;
            Some(next)
        } else {
            store.commit(batch).await?;
            None
        };
        *revision += 1;
        metrics().devices.with_label_values(&[DeviceState::Pending.name()]).inc_by(selected);
        tracing::debug!(campaign_id = %campaign.id, selected, done = page.done, "target page selected");
        match next {
            Some(next) => page = next?,
            None => return Ok(()),
        }
    }
}

/// Times out (or schedules the retry of) every device in flight past its deadline, one commit each: deadlines
/// are rare next to the device's own progress, which may write the same record meanwhile.
async fn sweep_deadlines(store: &dyn Store, campaign: &Campaign, now: Millis) -> Result<(), StoreError> {
    for state in DeviceState::IN_FLIGHT {
        let label = state_label(state);
        let mut after: Option<String> = None;
        loop {
            let page =
                records::list_devices(store, &campaign.id, Some(&label), after.as_deref(), DEADLINE_PAGE).await?;
            let full = page.len() == DEADLINE_PAGE;
            after = page.last().map(|stored| stored.value.device_id.clone());
            for stored in page {
                if let Some(next) = progress::on_deadline(campaign, &stored.value, now) {
                    let mut batch = WriteBatch::default();
                    write_device(&mut batch, &campaign.id, &next, Some(stored.value.state), stored.revision, now);
                    match store.commit(batch).await {
                        Ok(()) => metrics().devices.with_label_values(&[next.state.name()]).inc(),
                        Err(StoreError::Conflict { .. }) => metrics().conflicts.with_label_values(&["deadline"]).inc(),
                        Err(error) => return Err(error),
                    }
                }
            }
            if !full {
                break;
            }
        }
    }
    Ok(())
}

/// A request id that names the campaign, the device and the attempt: a start repeated after a failed commit
/// asks for the same notification.
fn notification_nonce(campaign_id: &str, device_id: &str, attempt: u32, purpose: &str) -> u128 {
    let digest = Sha256::digest(format!("campaign:{campaign_id}:{device_id}:{attempt}:{purpose}").as_bytes());
    let mut bytes = [0u8; 16];
    for (byte, digest_byte) in bytes.iter_mut().zip(digest.iter()) {
        *byte = *digest_byte;
    }
    u128::from_be_bytes(bytes)
}

/// Starts up to `budget` pending devices of the open waves (earliest wave first: retries of a passed wave go
/// before new devices), [`START_BATCH`] to a commit with the campaign's spent tokens; how many were started.
async fn start_devices(
    store: &dyn Store,
    campaign: &mut Campaign,
    revision: &mut u64,
    budget: u64,
    counts: &DeviceCounts,
) -> Result<u64, StoreError> {
    let mut started_total = 0;
    let mut left = budget;
    let windows = &campaign.spec.policy.windows.clone();
    let local_windows = window::any_local(windows);
    // With device-local windows, many pending devices may be outside theirs: a tick looks at a bounded number.
    let scan_limit = (budget as usize).saturating_mul(4).max(START_BATCH * 4);
    let mut scanned = 0;
    let policy = campaign.spec.policy.segments.clone();
    let in_flight = match &policy {
        Some(_) => {
            let known: Vec<String> = campaign.progress.segment_tokens.keys().cloned().collect();
            records::count_in_flight_by_segment(store, &campaign.id, &known).await?
        }
        None => Default::default(),
    };
    // The clock is read after the in-flight snapshot, not at the start of the tick: a start never carries a
    // time earlier than the finish of a device it counted gone, and its deadline runs from the start itself.
    let now = now_millis();
    let mut segments = policy.map(|policy| {
        crate::rollout::SegmentBudget::new(
            &policy,
            &campaign.progress.segment_tokens,
            campaign.progress.segment_tokens_at,
            &in_flight,
            now,
        )
    });
    for wave in 0..=campaign.progress.current_wave {
        if counts.wave_state(wave, DeviceState::Pending) == 0 {
            continue;
        }
        let label = wave_label(wave, DeviceState::Pending);
        let mut after: Option<String> = None;
        while left > 0 {
            let limit = (left as usize).min(START_BATCH);
            let page = records::list_devices(store, &campaign.id, Some(&label), after.as_deref(), limit).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.value.device_id.clone());
            let full = page.len() == limit;
            let due: Vec<Stored<CampaignDevice>> =
                page.into_iter().filter(|stored| stored.value.not_before <= now).collect();
            let devices = read_devices(store, &due).await?;
            // Devices outside their own maintenance window wait for the next tick, not counted against the budget.
            let (ready, devices): (Vec<_>, Vec<_>) = due
                .into_iter()
                .zip(devices)
                .filter(|(_, device)| !local_windows || window::may_start(windows, now, device.as_ref()))
                .unzip();
            scanned += limit;
            let mut batch = WriteBatch::default();
            let mut started = 0;
            let mut written = 0;
            for (stored, device) in ready.iter().zip(&devices) {
                let mut next = stored.value.clone();
                let plan = start::plan(campaign, device.as_ref());
                if let (Start::Commands { .. }, Some(budget), Some(device)) = (&plan, segments.as_mut(), device) {
                    // A device whose segment is at its budget waits, not counted against the campaign's.
                    let segment = budget.segment_of(device);
                    if !budget.take(&segment) {
                        continue;
                    }
                    next.segment = Some(segment);
                }
                written += 1;
                match plan {
                    Start::Skip(reason) => {
                        next.state = DeviceState::Skipped;
                        next.reason = Some(reason.to_owned());
                        next.note(now, "outcome", Some(format!("skipped ({reason})")));
                    }
                    Start::Fail(reason) => {
                        next.state = DeviceState::Failed;
                        next.reason = Some(reason.to_owned());
                        next.note(now, "outcome", Some(format!("failed ({reason})")));
                    }
                    Start::Commands { commands, fumo_miid } => {
                        next.state = DeviceState::Notified;
                        next.attempt += 1;
                        next.answered = 0;
                        next.fumo_miid = fumo_miid;
                        next.deadline_at = now.saturating_add(campaign.spec.policy.device_deadline_s * 1000);
                        next.note(now, "notified", Some(format!("attempt {}", next.attempt)));
                        queue_and_wake(&mut batch, &campaign.id, &next.device_id, next.attempt, "start", commands, now);
                        started += 1;
                    }
                }
                write_device(&mut batch, &campaign.id, &next, Some(stored.value.state), stored.revision, now);
                metrics().devices.with_label_values(&[next.state.name()]).inc();
            }
            crate::rollout::spend(campaign, started);
            if let Some(budget) = &segments {
                campaign.progress.segment_tokens = budget.tokens();
                campaign.progress.segment_tokens_at = now;
            }
            campaign.updated_at = now;
            write_campaign(&mut batch, campaign, campaign.state, *revision, now);
            store.commit(batch).await?;
            *revision += 1;
            started_total += started;
            left = left.saturating_sub(written);
            if !full || scanned >= scan_limit {
                break;
            }
        }
    }
    Ok(started_total)
}

/// The registry records of `devices`, read concurrently.
async fn read_devices(
    store: &dyn Store,
    devices: &[Stored<CampaignDevice>],
) -> Result<Vec<Option<Device>>, StoreError> {
    let reads = devices.iter().map(|stored| store.get_device(&stored.value.device_id));
    futures_util::future::join_all(reads).await.into_iter().collect()
}

/// Queues `commands` for the device under the campaign's name and requests its notification, in `batch`.
fn queue_and_wake(
    batch: &mut WriteBatch,
    campaign_id: &str,
    device_id: &str,
    attempt: u32,
    purpose: &str,
    commands: Vec<omadm_proto::command::Command>,
    now: Millis,
) {
    let commands = commands
        .into_iter()
        .map(|command| NewCommand {
            command,
            origin: CommandOrigin::Operator,
            campaign_id: Some(campaign_id.to_owned()),
        })
        .collect();
    batch.enqueued.push(EnqueuedCommands { device_id: device_id.to_owned(), commands, now });
    let requested_by = format!("campaign:{campaign_id}");
    let request = NotificationRequest {
        device_id,
        request_mos: false,
        requested_by: &requested_by,
        preferred_con_types: &[],
        nonce: notification_nonce(campaign_id, device_id, attempt, purpose),
    };
    add_request(batch, &request, now);
}

/// Moves devices on the events of their sessions, and takes devices into dynamic campaigns they now match.
struct ProgressHandler {
    store: Arc<dyn Store>,
    /// The running and paused campaigns with `policy.dynamic`, as read at `dynamic_read_at`.
    dynamic: Vec<Campaign>,
    dynamic_read_at: Option<Instant>,
}

/// How long the list of dynamic campaigns is trusted: a new one takes in devices from then on.
const DYNAMIC_REFRESH: std::time::Duration = std::time::Duration::from_secs(1);

/// What a device event means to the campaigns it is in.
enum Observed {
    SessionStarted,
    SessionEnded,
    CommandResult(Box<CommandResult>),
    FumoResult(u16),
}

fn observe(delivery: &Delivery) -> Option<(String, Observed)> {
    let event = &delivery.event;
    match event.event_type.as_str() {
        SESSION_STARTED => Some((event.key.clone(), Observed::SessionStarted)),
        SESSION_ENDED => Some((event.key.clone(), Observed::SessionEnded)),
        COMMAND_RESULT => {
            let result: CommandResult = serde_json::from_value(event.payload.clone()).ok()?;
            result.campaign_id.as_ref()?;
            Some((result.device_id.clone(), Observed::CommandResult(Box::new(result))))
        }
        omadm_core::session::events::ALERT_RECEIVED => {
            let alert: AlertReceived = serde_json::from_value(event.payload.clone()).ok()?;
            FumoOperation::from_alert_type(&alert.item.alert_type)?;
            let code = FumoResultCode::from_alert_data(alert.item.data.as_ref()?).ok()?;
            Some((alert.device_id, Observed::FumoResult(code.0)))
        }
        _ => None,
    }
}

#[async_trait]
impl BatchHandler for ProgressHandler {
    async fn handle(&mut self, deliveries: &[Delivery]) -> Result<(), HandlerError> {
        if self.dynamic_read_at.is_none_or(|read_at| read_at.elapsed() >= DYNAMIC_REFRESH) {
            self.dynamic = dynamic_campaigns(self.store.as_ref()).await.map_err(handler_error)?;
            self.dynamic_read_at = Some(Instant::now());
        }
        // One device's events in their order, devices side by side: a fleet's events are mostly store reads
        // that find nothing to change, and waiting for them one at a time would let the consumer fall behind.
        let mut by_device: Vec<(String, Vec<(Observed, Millis)>)> = Vec::new();
        let mut position: HashMap<String, usize> = HashMap::new();
        for delivery in deliveries {
            let Some((device_id, observed)) = observe(delivery) else { continue };
            let index = *position.entry(device_id.clone()).or_insert_with(|| {
                by_device.push((device_id.clone(), Vec::new()));
                by_device.len() - 1
            });
            if let Some((_, observations)) = by_device.get_mut(index) {
                observations.push((observed, delivery.event.timestamp));
            }
        }
        let campaigns = BatchCampaigns::default();
        let devices =
            by_device.iter().map(|(device_id, observations)| self.device_events(&campaigns, device_id, observations));
        futures_util::future::try_join_all(devices).await.map_err(handler_error)?;
        Ok(())
    }
}

impl ProgressHandler {
    /// Applies one device's observations in order to each campaign it is in.
    async fn device_events(
        &self,
        campaigns: &BatchCampaigns,
        device_id: &str,
        observations: &[(Observed, Millis)],
    ) -> Result<(), StoreError> {
        for (observed, happened_at) in observations {
            if matches!(observed, Observed::SessionEnded) && !self.dynamic.is_empty() {
                self.join(device_id).await?;
            }
            let campaign_ids = match observed {
                Observed::CommandResult(result) => result.campaign_id.clone().into_iter().collect(),
                _ => active_campaigns_of(self.store.as_ref(), device_id).await?,
            };
            for campaign_id in campaign_ids {
                let span = tracing::info_span!("campaign_device", campaign_id = %campaign_id, device_id = %device_id);
                self.advance(campaigns, &campaign_id, device_id, observed, *happened_at).instrument(span).await?;
            }
        }
        Ok(())
    }
}

impl ProgressHandler {
    /// Takes `device_id` into each dynamic campaign whose target it now matches and that does not have it yet
    /// (its session just refreshed the inventory): a pending device of the wave open now, started by the ticker
    /// like any other.
    async fn join(&self, device_id: &str) -> Result<(), StoreError> {
        let store = self.store.as_ref();
        let Some(device) = store.get_device(device_id).await? else { return Ok(()) };
        for campaign in &self.dynamic {
            let target = &campaign.spec.target;
            // A campaign over another campaign's devices takes in nobody else.
            let listed = target.campaign.is_none()
                && (target.devices.is_empty() || target.devices.iter().any(|listed| listed == device_id));
            let matches = target.filter.as_ref().is_some_and(|filter| filter.device_filter().matches(&device));
            if !listed || !matches || records::get_device(store, &campaign.id, device_id).await?.is_some() {
                continue;
            }
            let now = now_millis();
            let mut joined = CampaignDevice::new(device_id, campaign.progress.current_wave, now);
            joined.note(now, "joined", Some("matched the target after the start".to_owned()));
            let mut batch = WriteBatch::default();
            write_device(&mut batch, &campaign.id, &joined, None, 0, now);
            match store.commit(batch).await {
                Ok(()) => {
                    metrics().devices.with_label_values(&[DeviceState::Pending.name()]).inc();
                    metrics().joined.inc();
                    tracing::info!(campaign_id = %campaign.id, device_id, "device joined the dynamic campaign");
                }
                // The selection walk or another replica wrote it first.
                Err(StoreError::Conflict { .. }) => metrics().conflicts.with_label_values(&["join"]).inc(),
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }
}

/// The running and paused campaigns that take in devices matching later.
async fn dynamic_campaigns(store: &dyn Store) -> Result<Vec<Campaign>, StoreError> {
    let mut dynamic = Vec::new();
    for state in [CampaignState::Running, CampaignState::Paused] {
        let mut after: Option<String> = None;
        loop {
            let page = list_campaigns(store, Some(state), after.as_deref(), CAMPAIGN_PAGE).await?;
            let full = page.len() == CAMPAIGN_PAGE;
            after = page.last().map(|stored| stored.value.id.clone());
            dynamic.extend(page.into_iter().map(|stored| stored.value).filter(|campaign| campaign.spec.policy.dynamic));
            if !full {
                break;
            }
        }
    }
    Ok(dynamic)
}

/// The campaigns one batch of events is about, each read once for the batch (a fleet's events name few
/// campaigns; a change made meanwhile is seen by the next batch).
#[derive(Default)]
struct BatchCampaigns(tokio::sync::Mutex<HashMap<String, Option<Arc<Campaign>>>>);

impl BatchCampaigns {
    async fn get(&self, store: &dyn Store, campaign_id: &str) -> Result<Option<Arc<Campaign>>, StoreError> {
        if let Some(known) = self.0.lock().await.get(campaign_id) {
            return Ok(known.clone());
        }
        let read = get_campaign(store, campaign_id).await?.map(|stored| Arc::new(stored.value));
        self.0.lock().await.insert(campaign_id.to_owned(), read.clone());
        Ok(read)
    }
}

fn handler_error(error: StoreError) -> HandlerError {
    HandlerError(error.to_string())
}

impl ProgressHandler {
    /// Applies one observation to the device's record in one campaign, again on a newer revision if another
    /// writer got there first.
    async fn advance(
        &self,
        campaigns: &BatchCampaigns,
        campaign_id: &str,
        device_id: &str,
        observed: &Observed,
        happened_at: Millis,
    ) -> Result<(), StoreError> {
        let store = self.store.as_ref();
        for _ in 0..ATTEMPTS {
            let Some(campaign) = campaigns.get(store, campaign_id).await? else { return Ok(()) };
            let Some(stored) = records::get_device(store, campaign_id, device_id).await? else { return Ok(()) };
            let now = now_millis();
            let event = match observed {
                Observed::SessionStarted => DeviceEvent::SessionStarted,
                Observed::FumoResult(code) => DeviceEvent::FumoResult { code: *code },
                Observed::CommandResult(result) => DeviceEvent::CommandResult {
                    command: &result.command,
                    state: result.state,
                    status: result.status,
                    data: result.data.as_ref(),
                },
                Observed::SessionEnded => {
                    if stored.value.state != DeviceState::Verifying {
                        return Ok(());
                    }
                    match reported_version(store, device_id, stored.value.verify_since).await? {
                        Some(fwv) => DeviceEvent::VersionReported { fwv },
                        None => return Ok(()),
                    }
                }
            };
            let Some((mut next, follow_up)) = progress::on_event(&campaign, &stored.value, &event, now) else {
                return Ok(());
            };
            let mut batch = WriteBatch::default();
            if follow_up == FollowUp::ReadVersion {
                // The version may already be in: a device that reboots into new firmware sends DevInfo with
                // the alert's Package#1, and that step is what published the alert.
                match reported_version(store, device_id, happened_at).await? {
                    Some(fwv) => {
                        let reported = DeviceEvent::VersionReported { fwv };
                        if let Some((verified, _)) = progress::on_event(&campaign, &next, &reported, now) {
                            next = verified;
                        }
                    }
                    None => queue_and_wake(
                        &mut batch,
                        campaign_id,
                        device_id,
                        next.attempt,
                        "verify",
                        vec![start::version_read()],
                        now,
                    ),
                }
            }
            write_device(&mut batch, campaign_id, &next, Some(stored.value.state), stored.revision, now);
            match store.commit(batch).await {
                Ok(()) => {
                    metrics().devices.with_label_values(&[next.state.name()]).inc();
                    return Ok(());
                }
                Err(StoreError::Conflict { .. }) => metrics().conflicts.with_label_values(&["progress"]).inc(),
                Err(error) => return Err(error),
            }
        }
        Err(StoreError::Unavailable(format!("device {device_id} of campaign {campaign_id} kept changing")))
    }
}

/// The FwV the device's inventory holds when it was read at or after `since`.
async fn reported_version(store: &dyn Store, device_id: &str, since: Millis) -> Result<Option<String>, StoreError> {
    let device = store.get_device(device_id).await?;
    Ok(device.and_then(|device| {
        let fresh = device.inventory.updated_at.is_some_and(|read_at| read_at >= since);
        fresh.then_some(device.inventory.fwv).flatten()
    }))
}
