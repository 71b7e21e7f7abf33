//! The Store conformance suite: the promises of the [`Store`] trait, checked against any engine.
//!
//! Each check takes a store (fresh or shared: checks use their own device ids,
//! node ids and tags, and only [`outbox_keeps_order_until_acknowledged`] leaves
//! events committed while it runs) and panics on the first broken promise.
//! [`crate::store_conformance_tests!`] turns them into one `#[tokio::test]` each;
//! it takes two factories, the second opening a store with given [`StoreOptions`]
//! (for [`outbox_refuses_commits_past_its_bound`], which needs a small bound):
//!
//! ```text
//! async fn fresh_store() -> (Arc<dyn Store>, tempfile::TempDir) { ... }
//! async fn fresh_store_with(options: StoreOptions) -> (Arc<dyn Store>, tempfile::TempDir) { ... }
//! omadm_core::store_conformance_tests!(fresh_store, fresh_store_with);
//! ```
//!
//! The outbox may have several shards (one per Redis Cluster slot): checks read
//! and acknowledge events in `store.outbox_shard_of(event key)` and expect
//! commit order within a shard only.
//!
//! Time. Leases and membership judge expiry by the `now` the caller passes
//! (`LeaseRequest::now`, `heartbeat`'s `now`), and a commit's fence renews a
//! lease by the store's own clock. An engine may also let the entry expire by
//! itself (Redis: `PX`). So the checks that let a lease or a node expire use
//! the wall clock for `now`, a short real ttl ([`SHORT_TTL`]) and really sleep
//! past it: `now` then moves by more than the ttl too, and both kinds of engine
//! see the expiry. These checks take about a second each.
//!
//! Built for tests only (`cfg(test)` or the `conformance` feature, which the
//! crate's own integration tests enable through their dev-dependency).

// Test support: a broken promise is reported by panicking, as assertions do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use omadm_proto::command::Command;
use omadm_proto::package::{AlertItem, SupportedObject};
use serde_json::json;

use super::{
    ScheduledEvent, SessionLoad, SessionSnapshot, Store, StoreError, StoreOptions, UploadCharge, UploadLimits,
    UploadQuotaKind, UploadUsage, WriteBatch,
};
use crate::bus::{Event, SCHEMA_VERSION, Topic};
use crate::clock::{Millis, now_millis};
use crate::cluster::{Fence, Lease, LeaseRequest, NodeInfo};
use crate::model::{
    AlertRecord, CommandOrigin, CommandRecord, CommandResultData, CommandState, ContentSource, Credentials, Device,
    DeviceFilter, Inventory, MirrorRecord, NOTIFICATION_RETENTION_MILLIS, NewCommand, NotificationAnswer,
    NotificationDelivery, NotificationOutcome, NotificationRecord, NotificationState, RepositoryItem, SessionOutcome,
    SessionState, SessionSummary,
};

/// Generates one `#[tokio::test]` per check. `$fresh` is an async fn returning
/// `(Arc<dyn Store>, guard)`, the guard kept alive for the test (e.g. a TempDir);
/// `$fresh_with` is an async fn taking [`StoreOptions`] and returning the same,
/// for the checks that need a store opened with particular options.
#[macro_export]
macro_rules! store_conformance_tests {
    ($fresh:path, $fresh_with:path) => {
        #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn outbox_refuses_commits_past_its_bound() {
            let (store, _guard) = $fresh_with($crate::store::conformance::small_outbox_options()).await;
            $crate::store::conformance::outbox_refuses_commits_past_its_bound(store).await;
        }
        #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn session_history_keeps_the_newest_per_device() {
            let (store, _guard) = $fresh_with($crate::store::conformance::short_history_options()).await;
            $crate::store::conformance::session_history_keeps_the_newest_per_device(store).await;
        }
        $crate::store_conformance_tests!(@tests $fresh;
            devices_round_trip,
            enqueue_numbers_commands_in_order,
            commit_keeps_queue_and_pending_count,
            concurrent_enqueues_get_distinct_ids,
            sessions_move_from_open_to_history,
            mirrors_are_replaced,
            alerts_are_numbered_and_listed_newest_first,
            repository_round_trip,
            upload_quotas_move_with_the_content,
            outbox_keeps_order_until_acknowledged,
            one_batch_writes_everything,
            delete_device_removes_everything_of_the_device,
            list_devices_filters_and_pages,
            load_session_reads_what_a_step_needs,
            unknown_device_is_not_leased,
            leases_are_granted_renewed_held_and_taken_over,
            lease_expires_after_its_ttl,
            stale_fence_writes_nothing,
            current_fence_applies_renews_and_releases,
            membership_follows_heartbeats_and_leaves,
            record_once_is_new_once_until_it_expires,
            count_in_window_counts_per_fixed_window,
            device_and_counts_are_read_together,
            next_sequence_counts_from_one_without_repeats,
            notifications_keep_the_request_then_its_outcome,
            scheduled_events_enter_the_outbox_when_due,
            latest_notification_is_the_newest_sent_request,
            rate_tokens_are_shared_and_refill_at_their_rate,
            deliveries_join_their_records_and_outlive_later_writes,
            the_inventory_index_follows_writes_and_deletes,
            remembered_values_live_until_their_ttl,
            records_keep_revisions_and_labels,
            records_written_twice_in_one_batch_end_as_the_last_write,
            records_commit_with_queued_commands_and_events_or_not_at_all
        );
    };
    (@tests $fresh:path; $($check:ident),+) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let (store, _guard) = $fresh().await;
                $crate::store::conformance::$check(store).await;
            }
        )+
    };
}

/// Runs every check that takes any store in turn on one store: all but
/// [`outbox_refuses_commits_past_its_bound`] and [`session_history_keeps_the_newest_per_device`],
/// which need a store opened with [`small_outbox_options`] and [`short_history_options`].
pub async fn run_all(store: Arc<dyn Store>) {
    devices_round_trip(store.clone()).await;
    enqueue_numbers_commands_in_order(store.clone()).await;
    commit_keeps_queue_and_pending_count(store.clone()).await;
    concurrent_enqueues_get_distinct_ids(store.clone()).await;
    sessions_move_from_open_to_history(store.clone()).await;
    mirrors_are_replaced(store.clone()).await;
    alerts_are_numbered_and_listed_newest_first(store.clone()).await;
    repository_round_trip(store.clone()).await;
    upload_quotas_move_with_the_content(store.clone()).await;
    outbox_keeps_order_until_acknowledged(store.clone()).await;
    one_batch_writes_everything(store.clone()).await;
    delete_device_removes_everything_of_the_device(store.clone()).await;
    list_devices_filters_and_pages(store.clone()).await;
    scheduled_events_enter_the_outbox_when_due(store.clone()).await;
    latest_notification_is_the_newest_sent_request(store.clone()).await;
    rate_tokens_are_shared_and_refill_at_their_rate(store.clone()).await;
    records_keep_revisions_and_labels(store.clone()).await;
    records_written_twice_in_one_batch_end_as_the_last_write(store.clone()).await;
    records_commit_with_queued_commands_and_events_or_not_at_all(store.clone()).await;
    deliveries_join_their_records_and_outlive_later_writes(store.clone()).await;
    the_inventory_index_follows_writes_and_deletes(store.clone()).await;
    remembered_values_live_until_their_ttl(store.clone()).await;
    load_session_reads_what_a_step_needs(store.clone()).await;
    unknown_device_is_not_leased(store.clone()).await;
    leases_are_granted_renewed_held_and_taken_over(store.clone()).await;
    lease_expires_after_its_ttl(store.clone()).await;
    stale_fence_writes_nothing(store.clone()).await;
    current_fence_applies_renews_and_releases(store.clone()).await;
    membership_follows_heartbeats_and_leaves(store.clone()).await;
    record_once_is_new_once_until_it_expires(store.clone()).await;
    count_in_window_counts_per_fixed_window(store.clone()).await;
    device_and_counts_are_read_together(store.clone()).await;
    next_sequence_counts_from_one_without_repeats(store.clone()).await;
    notifications_keep_the_request_then_its_outcome(store).await;
}

// ---- Fixtures -------------------------------------------------------------------------------

/// A device as the API registers it, with a little of everything so the JSON round trip is exercised.
pub fn device(id: &str) -> Device {
    Device {
        id: id.to_owned(),
        credentials: Credentials { realm: "omadm".to_owned(), ha1_md5: "0".repeat(32), ha1_sha256: "1".repeat(64) },
        auth_secret: Some("notification secret".to_owned()),
        tags: BTreeMap::from([("suite".to_owned(), "conformance".to_owned())]),
        inventory: Inventory {
            man: Some("ACME".to_owned()),
            model: Some("Meter 3".to_owned()),
            fwv: Some("1.0.0".to_owned()),
            roaming: Some(false),
            updated_at: Some(1_700_000_000_000),
            ..Inventory::default()
        },
        supported_objects: vec![
            serde_json::from_value::<SupportedObject>(json!({"MOID": "urn:oma:mo:oma-dm-devinfo:1.2", "MIID": ["1"]}))
                .unwrap(),
        ],
        notify_address: None,
        msisdn: Some("+491701234567".to_owned()),
        push_registration: Some(crate::model::PushRegistration {
            registration_id: "cZ3f-9Qk:APA91bH_x7".to_owned(),
            registered_at: 1_700_000_000_500,
        }),
        notify_order: vec![crate::model::NotifyTransport::Sms, crate::model::NotifyTransport::Udp],
        preferred_con_types: vec!["wireless".to_owned(), "any".to_owned()],
        last_session_id: None,
        created_at: 1_700_000_000_000,
        updated_at: 1_700_000_000_000,
    }
}

/// `["GET", uri]` for the operator.
pub fn get_command(uri: &str) -> NewCommand {
    NewCommand {
        command: Command::from_json(&json!(["GET", uri])).unwrap(),
        origin: CommandOrigin::Operator,
        campaign_id: None,
    }
}

fn numbered_gets(count: usize) -> Vec<NewCommand> {
    (0..count).map(|index| get_command(&format!("urn:oma:mo:oma-dm-devinfo:1.2//Ext{index}"))).collect()
}

pub fn open_session(id: &str, device_id: &str, started_at: u64) -> SessionState {
    SessionState {
        id: id.to_owned(),
        device_id: device_id.to_owned(),
        started_at,
        last_activity: started_at,
        packages: 1,
        awaiting: Vec::new(),
        ended: false,
        commands_answered: 0,
        replay: None,
    }
}

pub fn ended_session(state: &SessionState, ended_at: u64, outcome: SessionOutcome) -> SessionSummary {
    SessionSummary {
        id: state.id.clone(),
        device_id: state.device_id.clone(),
        started_at: state.started_at,
        ended_at: Some(ended_at),
        outcome,
        packages: state.packages,
        commands_answered: state.commands_answered,
    }
}

pub fn alert(device_id: &str, id: u64) -> AlertRecord {
    AlertRecord {
        id,
        device_id: device_id.to_owned(),
        session_id: "session".to_owned(),
        received_at: 1_700_000_000_000 + id,
        item: AlertItem {
            alert_type: "urn:oma:at:fumo:1.0:DownloadComplete".to_owned(),
            mime_type: Some("text/plain".to_owned()),
            source_uri: Some("urn:oma:mo:oma-fumo:1.0//Download".to_owned()),
            mark: None,
            data: Some(json!(format!("alert {id}"))),
        },
        status: 200,
    }
}

pub fn event(id: &str, topic: Topic, key: &str) -> Event {
    Event {
        id: id.to_owned(),
        event_type: "command.result".to_owned(),
        schema_version: SCHEMA_VERSION,
        timestamp: 1_700_000_000_000,
        topic,
        key: key.to_owned(),
        payload: json!({"device_id": key, "event": id, "nested": {"list": [1, 2, 3]}}),
    }
}

fn mirror(marker: &str) -> MirrorRecord {
    MirrorRecord {
        tree: json!([{"MOID": "urn:oma:mo:oma-dm-devinfo:1.2", "MIID": "1", "Man": marker}]),
        validators: BTreeMap::from([("urn:oma:mo:oma-dm-devinfo:1.2/1".to_owned(), format!("cv-{marker}"))]),
        updated_at: 1_700_000_000_000,
    }
}

async fn register(store: &Arc<dyn Store>, device: Device) {
    store.commit(WriteBatch { devices: vec![device], ..WriteBatch::default() }).await.unwrap();
}

async fn command(store: &Arc<dyn Store>, device_id: &str, id: u64) -> CommandRecord {
    store.get_command(device_id, id).await.unwrap().unwrap_or_else(|| panic!("command {device_id}/{id} is missing"))
}

fn ids(records: &[CommandRecord]) -> Vec<u64> {
    records.iter().map(|record| record.id).collect()
}

// ---- Checks ---------------------------------------------------------------------------------

/// A device reads back exactly as committed, and a second commit replaces it.
pub async fn devices_round_trip(store: Arc<dyn Store>) {
    assert_eq!(store.get_device("conf-dev-1").await.unwrap(), None);
    let mut registered = device("conf-dev-1");
    register(&store, registered.clone()).await;
    assert_eq!(store.get_device("conf-dev-1").await.unwrap(), Some(registered.clone()));

    registered.tags.insert("region".to_owned(), "eu".to_owned());
    registered.inventory.fwv = Some("2.0.0".to_owned());
    registered.last_session_id = Some("s-1".to_owned());
    register(&store, registered.clone()).await;
    assert_eq!(store.get_device("conf-dev-1").await.unwrap(), Some(registered.clone()));
    assert_eq!(
        store.get_device("conf-dev-1").await.unwrap().and_then(|device| device.msisdn).as_deref(),
        Some("+491701234567"),
        "the MSISDN is kept"
    );
    registered.msisdn = None;
    register(&store, registered.clone()).await;
    assert_eq!(store.get_device("conf-dev-1").await.unwrap().unwrap().msisdn, None, "and can be cleared");
    assert_eq!(store.get_device("conf-dev-1").await.unwrap(), Some(registered));
    assert_eq!(store.get_device("conf-dev-1x").await.unwrap(), None, "ids are exact, not prefixes");
}

/// Ids increase from 1 per device in queue order; new commands are queued, unsent, timestamped.
pub async fn enqueue_numbers_commands_in_order(store: Arc<dyn Store>) {
    let device_id = "conf-queue-1";
    assert_eq!(store.enqueue_commands(device_id, Vec::new(), 5).await.unwrap(), Vec::<u64>::new());
    assert_eq!(store.enqueue_commands(device_id, numbered_gets(3), 10).await.unwrap(), vec![1, 2, 3]);
    assert_eq!(store.enqueue_commands(device_id, numbered_gets(2), 20).await.unwrap(), vec![4, 5]);
    assert_eq!(store.enqueue_commands("conf-queue-2", numbered_gets(1), 30).await.unwrap(), vec![1]);

    let first = command(&store, device_id, 1).await;
    assert_eq!(first.device_id, device_id);
    assert_eq!(first.command, numbered_gets(1)[0].command);
    assert_eq!(first.origin, CommandOrigin::Operator);
    assert_eq!(first.state, CommandState::Queued);
    assert_eq!((first.status, first.data, first.session_id, first.attempts), (None, None, None, 0));
    assert!(first.extra.is_empty());
    assert_eq!((first.created_at, first.updated_at), (10, 10));
    assert_eq!(command(&store, device_id, 5).await.created_at, 20);
    assert_eq!(store.get_command(device_id, 6).await.unwrap(), None);
    assert_eq!(store.get_command("conf-queue-3", 1).await.unwrap(), None);

    assert_eq!(ids(&store.list_commands(device_id, None, 100).await.unwrap()), vec![1, 2, 3, 4, 5]);
    assert_eq!(ids(&store.list_commands(device_id, None, 2).await.unwrap()), vec![1, 2]);
    assert_eq!(ids(&store.list_commands(device_id, Some(2), 2).await.unwrap()), vec![3, 4]);
    assert_eq!(ids(&store.list_commands(device_id, Some(5), 2).await.unwrap()), Vec::<u64>::new());
    assert_eq!(ids(&store.list_commands(device_id, Some(u64::MAX), 2).await.unwrap()), Vec::<u64>::new());
    assert_eq!(ids(&store.list_commands("conf-queue-2", None, 100).await.unwrap()), vec![1]);

    assert_eq!(ids(&store.queued_commands(device_id, 100).await.unwrap()), vec![1, 2, 3, 4, 5]);
    assert_eq!(ids(&store.queued_commands(device_id, 3).await.unwrap()), vec![1, 2, 3]);
    assert_eq!(store.pending_count(device_id).await.unwrap(), 5);
    assert_eq!(store.pending_count("conf-queue-2").await.unwrap(), 1);
    assert_eq!(store.pending_count("conf-queue-3").await.unwrap(), 0);
}

/// Commits that change command states keep `queued_commands` and `pending_count` in step.
pub async fn commit_keeps_queue_and_pending_count(store: Arc<dyn Store>) {
    let device_id = "conf-states-1";
    store.enqueue_commands(device_id, numbered_gets(4), 100).await.unwrap();
    let update = |mut record: CommandRecord, state: CommandState, status: Option<u16>| {
        record.state = state;
        record.status = status;
        record.session_id = Some("s-1".to_owned());
        record.updated_at = 200;
        record
    };
    let commit_commands = |records: Vec<CommandRecord>| {
        let store = store.clone();
        async move { store.commit(WriteBatch { commands: records, ..WriteBatch::default() }).await.unwrap() }
    };

    // 1 and 2 go out in a Package#2: no longer queued, still pending.
    let sent_one = update(command(&store, device_id, 1).await, CommandState::Sent, None);
    let sent_two = update(command(&store, device_id, 2).await, CommandState::Sent, None);
    commit_commands(vec![sent_one.clone(), sent_two.clone()]).await;
    assert_eq!(ids(&store.queued_commands(device_id, 10).await.unwrap()), vec![3, 4]);
    assert_eq!(store.pending_count(device_id).await.unwrap(), 4);
    assert_eq!(command(&store, device_id, 1).await, sent_one);

    // 1 answered 200 with data, 2 answered 404.
    let mut done_one = update(sent_one, CommandState::Done, Some(200));
    done_one.data =
        Some(CommandResultData { content_type: "text/plain".to_owned(), value: json!("ACME"), base64: false });
    done_one.extra = vec![json!("https://dm.example.com/repo/x")];
    let failed_two = update(sent_two, CommandState::Failed, Some(404));
    commit_commands(vec![done_one.clone(), failed_two.clone()]).await;
    assert_eq!(store.pending_count(device_id).await.unwrap(), 2);
    assert_eq!(command(&store, device_id, 1).await, done_one);
    assert_eq!(command(&store, device_id, 2).await, failed_two);

    // A final record committed again (a replayed batch) changes no count.
    commit_commands(vec![done_one]).await;
    assert_eq!(store.pending_count(device_id).await.unwrap(), 2);

    // 4 is sent, the session dies, 4 goes back to the queue in id order, before... after 3.
    let sent_four = update(command(&store, device_id, 4).await, CommandState::Sent, None);
    commit_commands(vec![sent_four.clone()]).await;
    assert_eq!(ids(&store.queued_commands(device_id, 10).await.unwrap()), vec![3]);
    let mut requeued_four = update(sent_four, CommandState::Queued, None);
    requeued_four.attempts = 1;
    commit_commands(vec![requeued_four]).await;
    assert_eq!(ids(&store.queued_commands(device_id, 10).await.unwrap()), vec![3, 4]);
    assert_eq!(command(&store, device_id, 4).await.attempts, 1);
    assert_eq!(store.pending_count(device_id).await.unwrap(), 2);

    // 3 expires from the queue directly.
    let expired_three = update(command(&store, device_id, 3).await, CommandState::Expired, None);
    commit_commands(vec![expired_three]).await;
    assert_eq!(ids(&store.queued_commands(device_id, 10).await.unwrap()), vec![4]);
    assert_eq!(store.pending_count(device_id).await.unwrap(), 1);

    // The history still lists every command, and numbering goes on after the last id.
    assert_eq!(ids(&store.list_commands(device_id, None, 10).await.unwrap()), vec![1, 2, 3, 4]);
    assert_eq!(store.enqueue_commands(device_id, numbered_gets(1), 300).await.unwrap(), vec![5]);
    assert_eq!(store.pending_count(device_id).await.unwrap(), 2);
}

/// Many tasks enqueueing for one device at once get distinct ids, consecutive within each call.
pub async fn concurrent_enqueues_get_distinct_ids(store: Arc<dyn Store>) {
    const TASKS: usize = 24;
    const PER_TASK: usize = 5;
    let device_id = "conf-concurrent-1";
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move { store.enqueue_commands(device_id, numbered_gets(PER_TASK), 1).await }));
    }
    let mut all = BTreeSet::new();
    for task in tasks {
        let ids = task.await.unwrap().unwrap();
        assert_eq!(ids.len(), PER_TASK);
        assert!(ids.windows(2).all(|pair| pair[1] == pair[0] + 1), "one call's ids are consecutive: {ids:?}");
        for id in ids {
            assert!(all.insert(id), "id {id} given twice");
        }
    }
    let expected: BTreeSet<u64> = (1..=(TASKS * PER_TASK) as u64).collect();
    assert_eq!(all, expected);
    assert_eq!(store.pending_count(device_id).await.unwrap(), (TASKS * PER_TASK) as u64);
    assert_eq!(store.queued_commands(device_id, 1000).await.unwrap().len(), TASKS * PER_TASK);
}

/// Open sessions are found by id and listed as active; ending one moves it to the history, newest first.
pub async fn sessions_move_from_open_to_history(store: Arc<dyn Store>) {
    let device_id = "conf-sessions-1";
    assert_eq!(store.get_session(device_id, "conf-s-1").await.unwrap(), None);
    assert!(store.list_sessions(device_id, 10).await.unwrap().is_empty());

    let mut first = open_session("conf-s-1", device_id, 1_000);
    store.commit(WriteBatch { sessions: vec![first.clone()], ..WriteBatch::default() }).await.unwrap();
    assert_eq!(store.get_session(device_id, "conf-s-1").await.unwrap(), Some(first.clone()));
    assert_eq!(store.get_session("conf-sessions-2", "conf-s-1").await.unwrap(), None, "another device's session");
    assert!(store.open_sessions().await.unwrap().contains(&first));
    let listed = store.list_sessions(device_id, 10).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].id.as_str(), listed[0].outcome, listed[0].ended_at),
        ("conf-s-1", SessionOutcome::Active, None)
    );

    // A Package#3 updates the open session in place.
    first.packages = 2;
    first.last_activity = 1_500;
    first.commands_answered = 3;
    first.awaiting = vec![crate::model::SentCommand {
        command_id: Some(7),
        command: get_command("urn:oma:mo:oma-dm-devinfo:1.2//Man").command,
    }];
    store.commit(WriteBatch { sessions: vec![first.clone()], ..WriteBatch::default() }).await.unwrap();
    assert_eq!(store.get_session(device_id, "conf-s-1").await.unwrap(), Some(first.clone()));

    // It ends: gone from the open sessions, in the history.
    let first_summary = ended_session(&first, 2_000, SessionOutcome::Ended);
    store.commit(WriteBatch { ended_sessions: vec![first_summary.clone()], ..WriteBatch::default() }).await.unwrap();
    assert_eq!(store.get_session(device_id, "conf-s-1").await.unwrap(), None);
    assert!(!store.open_sessions().await.unwrap().iter().any(|session| session.id == "conf-s-1"));
    assert_eq!(store.list_sessions(device_id, 10).await.unwrap(), vec![first_summary.clone()]);

    // More sessions: one expired, one open; newest first, limited.
    let second = open_session("conf-s-2", device_id, 3_000);
    let second_summary = ended_session(&second, 9_000, SessionOutcome::Expired);
    let third = open_session("conf-s-3", device_id, 5_000);
    store
        .commit(WriteBatch {
            sessions: vec![second.clone(), third.clone()],
            ended_sessions: vec![second_summary.clone()],
            ..WriteBatch::default()
        })
        .await
        .unwrap();
    let listed = store.list_sessions(device_id, 10).await.unwrap();
    let listed_ids: Vec<&str> = listed.iter().map(|summary| summary.id.as_str()).collect();
    assert_eq!(listed_ids, vec!["conf-s-3", "conf-s-2", "conf-s-1"]);
    assert_eq!(listed[0].outcome, SessionOutcome::Active);
    assert_eq!(listed[1], second_summary);
    assert_eq!(listed[2], first_summary);
    let limited: Vec<String> =
        store.list_sessions(device_id, 2).await.unwrap().into_iter().map(|summary| summary.id).collect();
    assert_eq!(limited, vec!["conf-s-3", "conf-s-2"]);
    // A batch that carries an ended session's final state keeps it readable (a late
    // Package#3 gets 410, not 404), never among the open sessions.
    assert_eq!(store.get_session(device_id, "conf-s-2").await.unwrap(), Some(second.clone()), "ended with its state");
    assert_eq!(store.get_session("conf-sessions-2", "conf-s-2").await.unwrap(), None, "another device's session");
    assert!(!store.open_sessions().await.unwrap().iter().any(|session| session.id == "conf-s-2"));
    assert_eq!(store.get_session(device_id, "conf-s-3").await.unwrap(), Some(third.clone()));
    // Only the device's latest ended session keeps its state: the table stays one entry per device.
    let third_summary = ended_session(&third, 10_000, SessionOutcome::Ended);
    store
        .commit(WriteBatch {
            sessions: vec![third.clone()],
            ended_sessions: vec![third_summary],
            ..WriteBatch::default()
        })
        .await
        .unwrap();
    assert_eq!(store.get_session(device_id, "conf-s-2").await.unwrap(), None);
    assert_eq!(store.get_session(device_id, "conf-s-3").await.unwrap(), Some(third));
    assert!(store.list_sessions("conf-sessions-2", 10).await.unwrap().is_empty());
}

/// A mirror reads back as committed and a later commit replaces it.
pub async fn mirrors_are_replaced(store: Arc<dyn Store>) {
    let device_id = "conf-mirror-1";
    assert_eq!(store.get_mirror(device_id).await.unwrap(), None);
    for marker in ["first", "second"] {
        let record = mirror(marker);
        store
            .commit(WriteBatch { mirrors: vec![(device_id.to_owned(), record.clone())], ..WriteBatch::default() })
            .await
            .unwrap();
        assert_eq!(store.get_mirror(device_id).await.unwrap(), Some(record));
    }
    assert_eq!(store.get_mirror("conf-mirror-2").await.unwrap(), None);
}

/// `next_alert_id` starts at 1 and follows committed alerts; alerts list newest first.
pub async fn alerts_are_numbered_and_listed_newest_first(store: Arc<dyn Store>) {
    let device_id = "conf-alerts-1";
    assert_eq!(store.next_alert_id(device_id).await.unwrap(), 1);
    assert!(store.list_alerts(device_id, 10).await.unwrap().is_empty());
    store
        .commit(WriteBatch { alerts: vec![alert(device_id, 1), alert(device_id, 2)], ..WriteBatch::default() })
        .await
        .unwrap();
    assert_eq!(store.next_alert_id(device_id).await.unwrap(), 3);
    store.commit(WriteBatch { alerts: vec![alert(device_id, 3)], ..WriteBatch::default() }).await.unwrap();
    assert_eq!(store.next_alert_id(device_id).await.unwrap(), 4);
    assert_eq!(
        store.list_alerts(device_id, 10).await.unwrap(),
        vec![alert(device_id, 3), alert(device_id, 2), alert(device_id, 1)]
    );
    assert_eq!(store.list_alerts(device_id, 2).await.unwrap(), vec![alert(device_id, 3), alert(device_id, 2)]);
    assert_eq!(store.next_alert_id("conf-alerts-2").await.unwrap(), 1);
}

/// An item's record round-trips, is replaced, and deleted once (its bytes are the content engine's).
pub async fn repository_round_trip(store: Arc<dyn Store>) {
    let path = "conf/firmware/image.bin";
    assert_eq!(store.get_content(path).await.unwrap(), None);
    let operator_item = RepositoryItem {
        path: path.to_owned(),
        content_type: "application/octet-stream".to_owned(),
        blob: "items/stored-elsewhere".to_owned(),
        size: 6,
        sha256: "0".repeat(64),
        source: ContentSource::Operator,
        device_id: None,
        stored_at: 10,
    };
    store.put_content(operator_item.clone()).await.unwrap();
    assert_eq!(store.get_content(path).await.unwrap(), Some(operator_item));

    let device_item = RepositoryItem {
        path: path.to_owned(),
        content_type: "application/dmmo+json".to_owned(),
        blob: "items/stored-elsewhere".to_owned(),
        size: 42,
        sha256: "0".repeat(64),
        source: ContentSource::Device,
        device_id: Some("conf-repo-1".to_owned()),
        stored_at: 20,
    };
    store.put_content(device_item.clone()).await.unwrap();
    assert_eq!(store.get_content(path).await.unwrap(), Some(device_item));
    assert_eq!(store.get_content("conf/firmware").await.unwrap(), None, "paths are exact");

    assert!(store.delete_content(path).await.unwrap());
    assert_eq!(store.get_content(path).await.unwrap(), None);
    assert!(!store.delete_content(path).await.unwrap());
}

/// Upload quotas: a batch with an [`UploadCharge`] writes its content and moves the counters together, or is
/// refused with `QuotaExceeded` naming the quota and writes nothing; replacing one's own upload counts the
/// difference, not a second item; operator writes over a device upload release its share.
pub async fn upload_quotas_move_with_the_content(store: Arc<dyn Store>) {
    let (first, second) = ("conf-quota-1", "conf-quota-2");
    let before = store.upload_usage(first).await.unwrap();
    let limits =
        UploadLimits { max_bytes_per_device: 10, max_items_per_device: 2, max_total_bytes: before.total_bytes + 15 };
    let upload = |device_id: &str, name: &str, bytes: usize| {
        let path = format!("up/{device_id}/{name}");
        let item = RepositoryItem {
            path: path.clone(),
            content_type: "application/octet-stream".to_owned(),
            blob: "items/stored-elsewhere".to_owned(),
            size: bytes as u64,
            sha256: "0".repeat(64),
            source: ContentSource::Device,
            device_id: Some(device_id.to_owned()),
            stored_at: 1,
        };
        let charge = UploadCharge { device_id: device_id.to_owned(), path, bytes: bytes as u64, limits };
        WriteBatch { contents: vec![item], upload: Some(charge), ..WriteBatch::default() }
    };
    let usage = |device_bytes, device_items, total| UploadUsage {
        device_bytes,
        device_items,
        total_bytes: before.total_bytes + total,
    };
    let refused = |result: Result<(), StoreError>| match result {
        Err(StoreError::QuotaExceeded { quota }) => quota,
        other => panic!("expected QuotaExceeded, got {other:?}"),
    };

    store.commit(upload(first, "a", 5)).await.unwrap();
    assert_eq!(store.upload_usage(first).await.unwrap(), usage(5, 1, 5));
    store.commit(upload(first, "a", 8)).await.unwrap();
    assert_eq!(store.upload_usage(first).await.unwrap(), usage(8, 1, 8), "a replacement counts the difference");
    assert_eq!(refused(store.commit(upload(first, "b", 3)).await), UploadQuotaKind::DeviceBytes);
    assert_eq!(store.get_content(&format!("up/{first}/b")).await.unwrap(), None, "nothing of it written");
    store.commit(upload(first, "b", 2)).await.unwrap();
    assert_eq!(refused(store.commit(upload(first, "c", 0)).await), UploadQuotaKind::DeviceItems);
    assert_eq!(store.upload_usage(first).await.unwrap(), usage(10, 2, 10));

    assert_eq!(refused(store.commit(upload(second, "a", 6)).await), UploadQuotaKind::TotalBytes);
    store.commit(upload(second, "a", 5)).await.unwrap();
    assert_eq!(
        store.upload_usage(second).await.unwrap(),
        UploadUsage { device_bytes: 5, device_items: 1, ..usage(0, 0, 15) }
    );

    // Operator writes release what they remove or replace.
    assert!(store.delete_content(&format!("up/{first}/a")).await.unwrap());
    assert_eq!(store.upload_usage(first).await.unwrap(), usage(2, 1, 7));
    let mut operator = upload(first, "b", 1).contents.remove(0);
    operator.source = ContentSource::Operator;
    operator.device_id = None;
    store.put_content(operator).await.unwrap();
    assert_eq!(store.upload_usage(first).await.unwrap(), usage(0, 0, 5));
    assert!(store.delete_content(&format!("up/{second}/a")).await.unwrap());
    assert_eq!(store.upload_usage(second).await.unwrap(), usage(0, 0, 0));
    store.delete_content(&format!("up/{first}/b")).await.unwrap();
}

/// Events wait in commit order (per outbox shard) until acknowledged; an id already waiting is not added twice.
/// The only check that leaves events committed: it expects the outbox empty at its start.
pub async fn outbox_keeps_order_until_acknowledged(store: Arc<dyn Store>) {
    assert_eq!(store.outbox_len().await.unwrap(), 0, "the outbox check needs an outbox nobody else writes");
    let first = event("conf-e-1", Topic::Results, "conf-outbox-1");
    let second = event("conf-e-2", Topic::Alerts, "conf-outbox-1");
    let third = event("conf-e-3", Topic::Sessions, "conf-outbox-2");
    let one = store.outbox_shard_of("conf-outbox-1");
    let two = store.outbox_shard_of("conf-outbox-2");
    assert!(one < store.outbox_shards() && two < store.outbox_shards(), "shards are numbered from 0");
    assert_eq!(store.outbox_shard_of("conf-outbox-1"), one, "a key always goes to the same shard");
    assert!(store.outbox(one, 10).await.unwrap().is_empty());
    store.commit(WriteBatch { events: vec![first.clone(), second.clone()], ..WriteBatch::default() }).await.unwrap();
    store.commit(WriteBatch { events: vec![third.clone()], ..WriteBatch::default() }).await.unwrap();
    assert_outbox(&store, &[first.clone(), second.clone(), third.clone()]).await;
    assert_eq!(store.outbox(one, 2).await.unwrap(), vec![first.clone(), second.clone()]);
    assert_eq!(store.outbox_len().await.unwrap(), 3);

    // A retried batch carries the same event id: one copy waits.
    store.commit(WriteBatch { events: vec![second.clone()], ..WriteBatch::default() }).await.unwrap();
    assert_eq!(store.outbox_len().await.unwrap(), 3);

    store.ack_outbox(one, &["conf-e-1".to_owned(), "conf-unknown".to_owned()]).await.unwrap();
    assert_outbox(&store, &[second.clone(), third.clone()]).await;
    assert_eq!(store.outbox_len().await.unwrap(), 2);

    // Acknowledging out of order and twice is harmless; later events still come after earlier ones.
    store.ack_outbox(two, &["conf-e-3".to_owned()]).await.unwrap();
    let fourth = event("conf-e-4", Topic::Notifications, "conf-outbox-1");
    store.commit(WriteBatch { events: vec![fourth.clone()], ..WriteBatch::default() }).await.unwrap();
    assert_outbox(&store, &[second, fourth]).await;
    store.ack_outbox(one, &["conf-e-2".to_owned(), "conf-e-4".to_owned()]).await.unwrap();
    store.ack_outbox(two, &["conf-e-3".to_owned()]).await.unwrap();
    store.ack_outbox(one, &[]).await.unwrap();
    assert!(store.outbox(one, 10).await.unwrap().is_empty());
    assert!(store.outbox(two, 10).await.unwrap().is_empty());
    assert_eq!(store.outbox_len().await.unwrap(), 0);

    // Once acknowledged, the same id may be committed again (at-least-once upstream).
    let again = event("conf-e-1", Topic::Results, "conf-outbox-1");
    store.commit(WriteBatch { events: vec![again.clone()], ..WriteBatch::default() }).await.unwrap();
    assert_eq!(store.outbox(one, 10).await.unwrap(), vec![again]);
    assert_eq!(store.outbox_lengths(&[one]).await.unwrap(), vec![1]);
    store.ack_outbox(one, &["conf-e-1".to_owned()]).await.unwrap();
    assert_eq!(store.outbox_len().await.unwrap(), 0);
}

/// Each shard that `expected` (in commit order) touches holds exactly its events, in that order.
async fn assert_outbox(store: &Arc<dyn Store>, expected: &[Event]) {
    let shards: BTreeSet<u32> = expected.iter().map(|event| store.outbox_shard_of(&event.key)).collect();
    let shard_list: Vec<u32> = shards.iter().copied().collect();
    let lengths = store.outbox_lengths(&shard_list).await.unwrap();
    for (shard, length) in shard_list.into_iter().zip(lengths) {
        let in_shard: Vec<Event> =
            expected.iter().filter(|event| store.outbox_shard_of(&event.key) == shard).cloned().collect();
        assert_eq!(store.outbox(shard, 100).await.unwrap(), in_shard, "outbox shard {shard}");
        assert_eq!(length, in_shard.len() as u64, "outbox_lengths of shard {shard}");
    }
}

/// One batch with every kind of write: all of it is visible after the commit.
pub async fn one_batch_writes_everything(store: Arc<dyn Store>) {
    let device_id = "conf-batch-1";
    store.enqueue_commands(device_id, numbered_gets(2), 10).await.unwrap();
    let mut sent = command(&store, device_id, 1).await;
    sent.state = CommandState::Sent;
    sent.attempts = 1;
    let mut registered = device(device_id);
    registered.last_session_id = Some("conf-batch-s".to_owned());
    let session = open_session("conf-batch-s", device_id, 50);
    let notification = notification_record("conf-batch-n", device_id, now_millis());
    let delivery = NotificationDelivery {
        device_id: device_id.to_owned(),
        request_id: "conf-batch-n".to_owned(),
        transport: "sms".to_owned(),
        delivered: true,
        status: "DELIVRD".to_owned(),
        message_id: "1".to_owned(),
        at: notification.requested_at + 1,
    };
    let batch = WriteBatch {
        devices: vec![registered.clone()],
        sessions: vec![session.clone()],
        ended_sessions: Vec::new(),
        commands: vec![sent.clone()],
        mirrors: vec![(device_id.to_owned(), mirror("batch"))],
        alerts: vec![alert(device_id, 1)],
        contents: vec![upload(device_id)],
        events: Vec::new(),
        notifications: vec![notification.clone()],
        deliveries: vec![delivery.clone()],
        scheduled: Vec::new(),
        upload: None,
        records: Vec::new(),
        enqueued: Vec::new(),
        fence: None,
    };
    store.commit(batch).await.unwrap();
    let notification = NotificationRecord { delivery: Some(delivery), ..notification };
    assert_eq!(store.get_notification("conf-batch-n").await.unwrap(), Some(notification));
    assert_eq!(store.get_device(device_id).await.unwrap(), Some(registered));
    assert_eq!(store.get_session(device_id, "conf-batch-s").await.unwrap(), Some(session));
    assert_eq!(command(&store, device_id, 1).await, sent);
    assert_eq!(ids(&store.queued_commands(device_id, 10).await.unwrap()), vec![2]);
    assert_eq!(store.pending_count(device_id).await.unwrap(), 2);
    assert_eq!(store.get_mirror(device_id).await.unwrap(), Some(mirror("batch")));
    assert_eq!(store.list_alerts(device_id, 10).await.unwrap(), vec![alert(device_id, 1)]);
    assert_eq!(store.get_content(&upload(device_id).path).await.unwrap(), Some(upload(device_id)));
    store.commit(WriteBatch::default()).await.unwrap();
}

/// A device upload to the Data Repository.
fn upload(device_id: &str) -> RepositoryItem {
    RepositoryItem {
        path: format!("up/{device_id}/tree.json"),
        content_type: "application/dmmo+json".to_owned(),
        blob: "items/stored-elsewhere".to_owned(),
        size: 66,
        sha256: "0".repeat(64),
        source: crate::model::ContentSource::Device,
        device_id: Some(device_id.to_owned()),
        stored_at: 77,
    }
}

/// Deleting a device removes its record, queue, sessions, mirror and alerts, and nothing of other devices.
/// Ids are never reused: a device registered again under the same id goes on numbering.
pub async fn delete_device_removes_everything_of_the_device(store: Arc<dyn Store>) {
    let doomed = "conf-delete-1";
    // A neighbour whose id extends the doomed one must survive: ranges are per device, not per prefix.
    let neighbour = "conf-delete-10";
    for device_id in [doomed, neighbour] {
        register(&store, device(device_id)).await;
        store.enqueue_commands(device_id, numbered_gets(3), 10).await.unwrap();
        let open = open_session(&format!("{device_id}-open"), device_id, 100);
        let ended = open_session(&format!("{device_id}-ended"), device_id, 50);
        store
            .commit(WriteBatch {
                sessions: vec![open],
                ended_sessions: vec![ended_session(&ended, 60, SessionOutcome::Ended)],
                mirrors: vec![(device_id.to_owned(), mirror(device_id))],
                alerts: vec![alert(device_id, 1), alert(device_id, 2)],
                ..WriteBatch::default()
            })
            .await
            .unwrap();
    }

    assert!(store.delete_device(doomed).await.unwrap());
    assert_eq!(store.get_device(doomed).await.unwrap(), None);
    assert!(store.list_commands(doomed, None, 10).await.unwrap().is_empty());
    assert!(store.queued_commands(doomed, 10).await.unwrap().is_empty());
    assert_eq!(store.get_command(doomed, 1).await.unwrap(), None);
    assert_eq!(store.pending_count(doomed).await.unwrap(), 0);
    assert_eq!(store.get_session(doomed, "conf-delete-1-open").await.unwrap(), None);
    assert!(!store.open_sessions().await.unwrap().iter().any(|session| session.device_id == doomed));
    assert!(store.list_sessions(doomed, 10).await.unwrap().is_empty());
    assert_eq!(store.get_mirror(doomed).await.unwrap(), None);
    assert!(store.list_alerts(doomed, 10).await.unwrap().is_empty());
    assert!(!store.delete_device(doomed).await.unwrap(), "already gone");

    assert!(store.get_device(neighbour).await.unwrap().is_some());
    assert_eq!(ids(&store.queued_commands(neighbour, 10).await.unwrap()), vec![1, 2, 3]);
    assert_eq!(store.pending_count(neighbour).await.unwrap(), 3);
    assert_eq!(store.list_sessions(neighbour, 10).await.unwrap().len(), 2);
    assert!(store.get_session(neighbour, "conf-delete-10-open").await.unwrap().is_some());
    assert!(store.get_mirror(neighbour).await.unwrap().is_some());
    assert_eq!(store.list_alerts(neighbour, 10).await.unwrap().len(), 2);

    register(&store, device(doomed)).await;
    assert_eq!(store.enqueue_commands(doomed, numbered_gets(1), 20).await.unwrap(), vec![4]);
    assert_eq!(store.next_alert_id(doomed).await.unwrap(), 3);
    assert_eq!(store.pending_count(doomed).await.unwrap(), 1);
}

/// 2,500 devices: paging in id order visits each once; filters on man, mod, fwv and tags match exactly.
pub async fn list_devices_filters_and_pages(store: Arc<dyn Store>) {
    const DEVICES: usize = 2_500;
    let run_tag = ("suite".to_owned(), "conformance-list".to_owned());
    let mut expected = Vec::new();
    for index in 0..DEVICES {
        let mut listed = device(&format!("conf-list-{index:05}"));
        listed.tags = BTreeMap::from([run_tag.clone(), ("bucket".to_owned(), format!("b{}", index % 10))]);
        listed.inventory.man = Some(if index % 2 == 0 { "ACME" } else { "Globex" }.to_owned());
        listed.inventory.model = Some(format!("M{}", index % 3));
        listed.inventory.fwv = Some(if index == 1_234 { "9.9.9" } else { "1.0.0" }.to_owned());
        expected.push(listed);
    }
    for chunk in expected.chunks(500) {
        store.commit(WriteBatch { devices: chunk.to_vec(), ..WriteBatch::default() }).await.unwrap();
    }

    let collect = |filter: DeviceFilter, limit: usize| {
        let store = store.clone();
        async move {
            let mut found: Vec<String> = Vec::new();
            let mut cursor: Option<String> = None;
            let mut pages = 0;
            loop {
                let page = store.list_devices(&filter, cursor.as_deref(), limit).await.unwrap();
                assert!(page.devices.len() <= limit, "a page holds at most limit devices");
                assert!(page.devices.iter().all(|device| filter.matches(device)));
                found.extend(page.devices.into_iter().map(|device| device.id));
                pages += 1;
                assert!(pages <= 10_000, "paging does not end");
                match page.next {
                    Some(next) => {
                        assert!(cursor.as_ref().is_none_or(|previous| next > *previous), "the cursor moves forward");
                        cursor = Some(next);
                    }
                    None => break,
                }
            }
            assert!(found.windows(2).all(|pair| pair[0] < pair[1]), "id order, each once");
            found
        }
    };
    let expected_ids = |predicate: &dyn Fn(usize) -> bool| -> Vec<String> {
        (0..DEVICES).filter(|index| predicate(*index)).map(|index| format!("conf-list-{index:05}")).collect()
    };
    let suite_filter = DeviceFilter { tags: vec![run_tag.clone()], ..DeviceFilter::default() };

    assert_eq!(collect(suite_filter.clone(), 100).await, expected_ids(&|_| true));
    assert_eq!(collect(suite_filter.clone(), 7).await, expected_ids(&|_| true));
    // Unfiltered paging sees every device, ours in order among whatever else the store holds.
    let everything = collect(DeviceFilter::default(), 333).await;
    let ours: Vec<String> = everything.into_iter().filter(|id| id.starts_with("conf-list-")).collect();
    assert_eq!(ours, expected_ids(&|_| true));

    let by_man = DeviceFilter { man: Some("Globex".to_owned()), ..suite_filter.clone() };
    assert_eq!(collect(by_man, 100).await, expected_ids(&|index| index % 2 == 1));
    let by_model_and_tag = DeviceFilter {
        model: Some("M2".to_owned()),
        tags: vec![run_tag.clone(), ("bucket".to_owned(), "b5".to_owned())],
        ..DeviceFilter::default()
    };
    assert_eq!(collect(by_model_and_tag, 50).await, expected_ids(&|index| index % 3 == 2 && index % 10 == 5));
    let rare = DeviceFilter { fwv: Some("9.9.9".to_owned()), ..suite_filter.clone() };
    assert_eq!(collect(rare, 10).await, vec!["conf-list-01234".to_owned()]);
    let none = DeviceFilter { man: Some("Initech".to_owned()), ..suite_filter };
    assert!(collect(none, 10).await.is_empty());

    // A page ends at the limit and its cursor is the last device of the page.
    let first_page =
        store.list_devices(&DeviceFilter { tags: vec![run_tag], ..DeviceFilter::default() }, None, 10).await.unwrap();
    assert_eq!(first_page.devices.len(), 10);
    assert_eq!(first_page.next.as_deref(), Some("conf-list-00009"));
}

// ---- Sessions, leases, fencing, membership --------------------------------------------------

/// A real ttl short enough to wait out in a test (see the module doc on time).
pub const SHORT_TTL: Millis = 300;
/// A ttl no check outlives.
pub const LONG_TTL: Millis = 60_000;
/// The outbox bound of the store given to [`outbox_refuses_commits_past_its_bound`].
pub const SMALL_OUTBOX_LIMIT: u64 = 3;

/// The options [`outbox_refuses_commits_past_its_bound`] needs its store opened with.
pub fn small_outbox_options() -> StoreOptions {
    StoreOptions { outbox_limit_per_shard: SMALL_OUTBOX_LIMIT, ..StoreOptions::default() }
}

/// The session history kept per device by the store given to [`session_history_keeps_the_newest_per_device`].
pub const SHORT_HISTORY: usize = 3;

/// The options [`session_history_keeps_the_newest_per_device`] needs its store opened with.
pub fn short_history_options() -> StoreOptions {
    StoreOptions { session_history_per_device: SHORT_HISTORY, ..StoreOptions::default() }
}

/// What `node` asks for at the wall clock's `now`, believing `live` alive.
pub fn lease_request(node: &str, live: &[&str], ttl: Millis) -> LeaseRequest {
    LeaseRequest {
        node_id: node.to_owned(),
        ttl,
        live_nodes: live.iter().map(|id| (*id).to_owned()).collect(),
        now: now_millis(),
    }
}

async fn load(store: &Arc<dyn Store>, device_id: &str, request: &LeaseRequest) -> SessionLoad {
    store.load_session(device_id, &[], 10, request).await.unwrap()
}

/// The snapshot of a load that must have been granted.
fn loaded(load: SessionLoad) -> SessionSnapshot {
    match load {
        SessionLoad::Loaded(snapshot) => *snapshot,
        other => panic!("expected the lease to be granted, got {other:?}"),
    }
}

async fn lease_of(store: &Arc<dyn Store>, device_id: &str, request: &LeaseRequest) -> Lease {
    loaded(load(store, device_id, request).await).lease
}

/// Sleeps past [`SHORT_TTL`] so a lease or node given it has expired by any clock.
async fn outlive_short_ttl() {
    tokio::time::sleep(std::time::Duration::from_millis(SHORT_TTL * 2)).await;
}

/// The snapshot holds the device, its mirror (default when none), the head of
/// its queue (at most `queue_limit`, queue order), the awaited records in the
/// order asked (missing ids skipped) and the next alert id.
pub async fn load_session_reads_what_a_step_needs(store: Arc<dyn Store>) {
    let device_id = "conf-load-1";
    let registered = device(device_id);
    register(&store, registered.clone()).await;
    store.enqueue_commands(device_id, numbered_gets(5), 10).await.unwrap();
    let mut sent = Vec::new();
    for id in [1, 2] {
        let mut record = command(&store, device_id, id).await;
        record.state = CommandState::Sent;
        record.session_id = Some("conf-load-s".to_owned());
        sent.push(record);
    }
    store.commit(WriteBatch { commands: sent.clone(), ..WriteBatch::default() }).await.unwrap();

    let request = lease_request("conf-load-node-a", &["conf-load-node-a"], LONG_TTL);
    let snapshot = loaded(store.load_session(device_id, &[2, 99, 1], 2, &request).await.unwrap());
    assert_eq!(snapshot.lease.device_id, device_id);
    assert_eq!(snapshot.lease.node_id, "conf-load-node-a");
    assert!(snapshot.lease.epoch >= 1);
    assert_eq!(snapshot.device, registered);
    assert_eq!(snapshot.mirror, MirrorRecord::default(), "no mirror yet: the default");
    assert_eq!(ids(&snapshot.queued), vec![3, 4], "the queue head, at most queue_limit");
    assert_eq!(snapshot.awaiting, vec![sent[1].clone(), sent[0].clone()], "in the order asked, 99 skipped");
    assert_eq!(snapshot.next_alert_id, 1);

    store
        .commit(WriteBatch {
            mirrors: vec![(device_id.to_owned(), mirror("loaded"))],
            alerts: vec![alert(device_id, 1), alert(device_id, 2)],
            ..WriteBatch::default()
        })
        .await
        .unwrap();
    let again = loaded(store.load_session(device_id, &[], 10, &request).await.unwrap());
    assert_eq!(again.lease, snapshot.lease, "the same node again: the same lease");
    assert_eq!(again.mirror, mirror("loaded"));
    assert_eq!(ids(&again.queued), vec![3, 4, 5]);
    assert!(again.awaiting.is_empty());
    assert_eq!(again.next_alert_id, 3);
}

/// An unknown device gets `UnknownDevice` and nothing is leased: once the device
/// is registered, another node gets its lease at once.
pub async fn unknown_device_is_not_leased(store: Arc<dyn Store>) {
    let device_id = "conf-unknown-1";
    let nodes = ["conf-unknown-node-a", "conf-unknown-node-b"];
    let first = store.load_session(device_id, &[1], 10, &lease_request(nodes[0], &nodes, LONG_TTL)).await.unwrap();
    assert_eq!(first, SessionLoad::UnknownDevice);
    register(&store, device(device_id)).await;
    let lease = lease_of(&store, device_id, &lease_request(nodes[1], &nodes, LONG_TTL)).await;
    assert_eq!(lease.node_id, nodes[1]);
    assert!(lease.epoch >= 1);
}

/// First grant: epoch >= 1. The holder again: the same epoch (renewal). Another
/// node while the holder is live: `LeaseHeld`. Another node that believes the
/// holder dead: granted, epoch + 1 (take-over), and the old holder now meets `LeaseHeld`.
pub async fn leases_are_granted_renewed_held_and_taken_over(store: Arc<dyn Store>) {
    let device_id = "conf-lease-1";
    let (a, b) = ("conf-lease-node-a", "conf-lease-node-b");
    register(&store, device(device_id)).await;

    let first = lease_of(&store, device_id, &lease_request(a, &[a, b], LONG_TTL)).await;
    assert_eq!((first.device_id.as_str(), first.node_id.as_str()), (device_id, a));
    assert!(first.epoch >= 1, "epochs start at 1: {first:?}");
    let renewed = lease_of(&store, device_id, &lease_request(a, &[a, b], LONG_TTL)).await;
    assert_eq!(renewed, first, "the holder again: same epoch");

    let held = load(&store, device_id, &lease_request(b, &[a, b], LONG_TTL)).await;
    assert_eq!(held, SessionLoad::LeaseHeld { node_id: a.to_owned(), epoch: first.epoch });
    // Refused loads change nothing: the holder still renews under its epoch.
    assert_eq!(lease_of(&store, device_id, &lease_request(a, &[a, b], LONG_TTL)).await, first);

    let taken = lease_of(&store, device_id, &lease_request(b, &[b], LONG_TTL)).await;
    assert_eq!((taken.node_id.as_str(), taken.epoch), (b, first.epoch + 1), "take-over from a node not live");
    let held = load(&store, device_id, &lease_request(a, &[a, b], LONG_TTL)).await;
    assert_eq!(held, SessionLoad::LeaseHeld { node_id: b.to_owned(), epoch: first.epoch + 1 });
    assert_eq!(lease_of(&store, device_id, &lease_request(b, &[a, b], LONG_TTL)).await, taken);

    // Leases are per device.
    let other = "conf-lease-2";
    register(&store, device(other)).await;
    assert_eq!(lease_of(&store, other, &lease_request(a, &[a, b], LONG_TTL)).await.node_id, a);
}

/// A lease not renewed within its ttl (the next load's `now` is past it, and
/// real time passed too) goes to another node, with epoch + 1, even while the
/// holder is believed live.
pub async fn lease_expires_after_its_ttl(store: Arc<dyn Store>) {
    let device_id = "conf-expiry-1";
    let (a, b) = ("conf-expiry-node-a", "conf-expiry-node-b");
    register(&store, device(device_id)).await;
    let first_request = lease_request(a, &[a, b], SHORT_TTL);
    let first = lease_of(&store, device_id, &first_request).await;
    assert!(matches!(
        load(&store, device_id, &lease_request(b, &[a, b], LONG_TTL)).await,
        SessionLoad::LeaseHeld { .. }
    ));

    outlive_short_ttl().await;
    let request = lease_request(b, &[a, b], LONG_TTL);
    assert!(request.now > first_request.now + SHORT_TTL, "now moved past the ttl");
    let taken = lease_of(&store, device_id, &request).await;
    assert_eq!((taken.node_id.as_str(), taken.epoch), (b, first.epoch + 1));
}

/// A session step's writes for [`stale_fence_writes_nothing`] and [`current_fence_applies_renews_and_releases`].
fn step_batch(device_id: &str, session: &SessionState, queued: CommandRecord, marker: &str) -> WriteBatch {
    let mut updated_device = device(device_id);
    updated_device.tags.insert("step".to_owned(), marker.to_owned());
    let mut next_session = session.clone();
    next_session.packages += 1;
    next_session.last_activity += 100;
    let mut sent = queued;
    sent.state = CommandState::Sent;
    sent.session_id = Some(session.id.clone());
    sent.attempts += 1;
    WriteBatch {
        devices: vec![updated_device],
        sessions: vec![next_session],
        commands: vec![sent],
        mirrors: vec![(device_id.to_owned(), mirror(marker))],
        alerts: vec![alert(device_id, 1)],
        contents: vec![upload(device_id)],
        ..WriteBatch::default()
    }
}

/// What a step can change, read through the trait.
async fn step_view(store: &Arc<dyn Store>, device_id: &str, session_id: &str) -> String {
    format!(
        "{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}",
        store.get_device(device_id).await.unwrap(),
        store.get_session(device_id, session_id).await.unwrap(),
        store.list_commands(device_id, None, 100).await.unwrap(),
        store.pending_count(device_id).await.unwrap(),
        store.get_mirror(device_id).await.unwrap(),
        store.list_alerts(device_id, 10).await.unwrap(),
        store.next_alert_id(device_id).await.unwrap(),
        store.get_content(&upload(device_id).path).await.unwrap(),
    )
}

/// A commit whose fence carries an epoch the lease has left (another node took
/// it over) fails with `Fenced` and writes nothing of its batch, events included.
pub async fn stale_fence_writes_nothing(store: Arc<dyn Store>) {
    let device_id = "conf-fence-1";
    let (a, b) = ("conf-fence-node-a", "conf-fence-node-b");
    register(&store, device(device_id)).await;
    store.enqueue_commands(device_id, numbered_gets(2), 10).await.unwrap();
    let session = open_session("conf-fence-s", device_id, 100);
    store
        .commit(WriteBatch {
            sessions: vec![session.clone()],
            mirrors: vec![(device_id.to_owned(), mirror("before"))],
            ..WriteBatch::default()
        })
        .await
        .unwrap();

    let stale = lease_of(&store, device_id, &lease_request(a, &[a, b], LONG_TTL)).await;
    let current = lease_of(&store, device_id, &lease_request(b, &[b], LONG_TTL)).await;
    assert_eq!(current.epoch, stale.epoch + 1);
    let shard = store.outbox_shard_of(device_id);
    let outbox_before = store.outbox_lengths(&[shard]).await.unwrap();
    let before = step_view(&store, device_id, &session.id).await;

    let mut batch = step_batch(device_id, &session, command(&store, device_id, 1).await, "stale");
    batch.events = vec![event("conf-fence-e-1", Topic::Results, device_id)];
    for release in [false, true] {
        batch.fence = Some(Fence::of(&stale, LONG_TTL, release));
        match store.commit(batch.clone()).await {
            Err(StoreError::Fenced { device_id: fenced }) => assert_eq!(fenced, device_id),
            other => panic!("a stale epoch must be fenced, got {other:?}"),
        }
        assert_eq!(step_view(&store, device_id, &session.id).await, before, "nothing of the batch written");
        assert_eq!(store.outbox_lengths(&[shard]).await.unwrap(), outbox_before, "no event written");
    }
    // The right epoch under another node's name is no better.
    batch.fence = Some(Fence { node_id: a.to_owned(), ..Fence::of(&current, LONG_TTL, false) });
    assert!(matches!(store.commit(batch).await, Err(StoreError::Fenced { .. })));
    assert_eq!(step_view(&store, device_id, &session.id).await, before);
    // The refused commits did not move the lease.
    let held = load(&store, device_id, &lease_request(a, &[a, b], LONG_TTL)).await;
    assert_eq!(held, SessionLoad::LeaseHeld { node_id: b.to_owned(), epoch: current.epoch });
}

/// A commit under the current epoch applies, and renews the lease for the
/// fence's ttl; with `release` the lease is dropped (the next node gets epoch + 1)
/// and the old fence no longer holds.
pub async fn current_fence_applies_renews_and_releases(store: Arc<dyn Store>) {
    let device_id = "conf-fence-2";
    let (a, b) = ("conf-renew-node-a", "conf-renew-node-b");
    register(&store, device(device_id)).await;
    store.enqueue_commands(device_id, numbered_gets(2), 10).await.unwrap();
    let session = open_session("conf-renew-s", device_id, 100);
    store.commit(WriteBatch { sessions: vec![session.clone()], ..WriteBatch::default() }).await.unwrap();

    // Granted for a short ttl; a commit half way through renews it for long.
    let lease = lease_of(&store, device_id, &lease_request(a, &[a, b], SHORT_TTL)).await;
    tokio::time::sleep(std::time::Duration::from_millis(SHORT_TTL / 2)).await;
    let mut batch = step_batch(device_id, &session, command(&store, device_id, 1).await, "applied");
    batch.fence = Some(Fence::of(&lease, LONG_TTL, false));
    store.commit(batch.clone()).await.unwrap();
    assert_eq!(store.get_session(device_id, &session.id).await.unwrap().as_ref(), batch.sessions.first());
    assert_eq!(store.get_device(device_id).await.unwrap().as_ref(), batch.devices.first());
    assert_eq!(command(&store, device_id, 1).await, batch.commands[0]);
    assert_eq!(ids(&store.queued_commands(device_id, 10).await.unwrap()), vec![2]);
    assert_eq!(store.get_mirror(device_id).await.unwrap(), Some(mirror("applied")));
    assert_eq!(store.next_alert_id(device_id).await.unwrap(), 2);

    // Past the first ttl, the lease still holds: the commit renewed it.
    outlive_short_ttl().await;
    let held = load(&store, device_id, &lease_request(b, &[a, b], LONG_TTL)).await;
    assert_eq!(held, SessionLoad::LeaseHeld { node_id: a.to_owned(), epoch: lease.epoch });

    // The session ends and releases the lease with its last commit.
    let mut last = WriteBatch {
        ended_sessions: vec![ended_session(&batch.sessions[0], 500, SessionOutcome::Ended)],
        ..WriteBatch::default()
    };
    last.fence = Some(Fence::of(&lease, LONG_TTL, true));
    store.commit(last.clone()).await.unwrap();
    assert_eq!(store.list_sessions(device_id, 10).await.unwrap()[0].outcome, SessionOutcome::Ended);
    let next = lease_of(&store, device_id, &lease_request(b, &[a, b], LONG_TTL)).await;
    assert_eq!((next.node_id.as_str(), next.epoch), (b, lease.epoch + 1), "released: the next node gets it");
    assert!(matches!(store.commit(last).await, Err(StoreError::Fenced { .. })), "the released fence is stale");
    // A fence with nothing else to write still checks and renews.
    let only_fence = WriteBatch { fence: Some(Fence::of(&next, LONG_TTL, false)), ..WriteBatch::default() };
    store.commit(only_fence).await.unwrap();
}

fn node(id: &str, internal_url: &str) -> NodeInfo {
    NodeInfo { id: id.to_owned(), internal_url: internal_url.to_owned() }
}

/// The nodes of this check among whatever else the store holds.
fn ours(nodes: &[NodeInfo]) -> Vec<NodeInfo> {
    assert!(nodes.windows(2).all(|pair| pair[0].id < pair[1].id), "ordered by id, each once: {nodes:?}");
    nodes.iter().filter(|node| node.id.starts_with("conf-member-")).cloned().collect()
}

/// `heartbeat` registers a node and returns every live node by id, itself
/// included; a node whose ttl passed (by the `now` given, and real time) is not
/// returned; `leave` removes a node at once; a later heartbeat brings it back.
pub async fn membership_follows_heartbeats_and_leaves(store: Arc<dyn Store>) {
    let a = node("conf-member-a", "http://127.0.0.1:1001");
    let b = node("conf-member-b", "http://127.0.0.1:1002");
    let short = node("conf-member-c", "http://127.0.0.1:1003");
    assert_eq!(ours(&store.heartbeat(&b, LONG_TTL, now_millis()).await.unwrap()), vec![b.clone()]);
    assert_eq!(ours(&store.heartbeat(&a, LONG_TTL, now_millis()).await.unwrap()), vec![a.clone(), b.clone()]);
    let with_short = store.heartbeat(&short, SHORT_TTL, now_millis()).await.unwrap();
    assert_eq!(ours(&with_short), vec![a.clone(), b.clone(), short.clone()]);

    outlive_short_ttl().await;
    assert_eq!(ours(&store.heartbeat(&a, LONG_TTL, now_millis()).await.unwrap()), vec![a.clone(), b.clone()]);

    store.leave(&b.id).await.unwrap();
    store.leave("conf-member-unknown").await.unwrap();
    assert_eq!(ours(&store.heartbeat(&a, LONG_TTL, now_millis()).await.unwrap()), vec![a.clone()]);

    // Back after leaving, and a heartbeat carries the node's current address.
    let moved_b = node("conf-member-b", "http://127.0.0.1:2002");
    assert_eq!(ours(&store.heartbeat(&moved_b, LONG_TTL, now_millis()).await.unwrap()), vec![a.clone(), moved_b]);
    store.leave(&a.id).await.unwrap();
    store.leave(&b.id).await.unwrap();
    assert_eq!(ours(&store.heartbeat(&short, SHORT_TTL, now_millis()).await.unwrap()), vec![short.clone()]);
    store.leave(&short.id).await.unwrap();
}

/// A store opened with [`small_outbox_options`] refuses a commit that would put
/// more than [`SMALL_OUTBOX_LIMIT`] events in a shard, with `OutboxFull { len }`
/// (the events waiting) and nothing written; commits without events still pass;
/// once events are acknowledged it accepts again.
pub async fn outbox_refuses_commits_past_its_bound(store: Arc<dyn Store>) {
    let key = "conf-bound-1";
    let shard = store.outbox_shard_of(key);
    let events: Vec<Event> =
        (1..=5).map(|index| event(&format!("conf-bound-e-{index}"), Topic::Results, key)).collect();
    store.commit(WriteBatch { events: events[..2].to_vec(), ..WriteBatch::default() }).await.unwrap();

    let over = WriteBatch {
        devices: vec![device(key)],
        mirrors: vec![(key.to_owned(), mirror("bound"))],
        events: events[2..4].to_vec(),
        ..WriteBatch::default()
    };
    match store.commit(over.clone()).await {
        Err(StoreError::OutboxFull { len }) => assert_eq!(len, 2),
        other => panic!("2 waiting + 2 new > {SMALL_OUTBOX_LIMIT} must be refused, got {other:?}"),
    }
    assert_eq!(store.get_device(key).await.unwrap(), None, "nothing of the batch written");
    assert_eq!(store.get_mirror(key).await.unwrap(), None);
    assert_eq!(store.outbox(shard, 10).await.unwrap(), events[..2].to_vec());

    // Up to the bound is fine; past it is not.
    store.commit(WriteBatch { events: events[2..3].to_vec(), ..WriteBatch::default() }).await.unwrap();
    match store.commit(WriteBatch { events: events[3..4].to_vec(), ..WriteBatch::default() }).await {
        Err(StoreError::OutboxFull { len }) => assert_eq!(len, SMALL_OUTBOX_LIMIT),
        other => panic!("a full shard must refuse, got {other:?}"),
    }
    // Writes without events are not held up by a full outbox.
    register(&store, device(key)).await;
    assert!(store.get_device(key).await.unwrap().is_some());

    store.ack_outbox(shard, &[events[0].id.clone(), events[1].id.clone()]).await.unwrap();
    store.commit(over).await.unwrap();
    assert_eq!(store.get_mirror(key).await.unwrap(), Some(mirror("bound")));
    assert_eq!(store.outbox(shard, 10).await.unwrap(), events[2..4].to_vec());
    assert_eq!(store.outbox_lengths(&[shard]).await.unwrap(), vec![2]);
    let ids: Vec<String> = events.iter().map(|event| event.id.clone()).collect();
    store.ack_outbox(shard, &ids).await.unwrap();
    assert_eq!(store.outbox_lengths(&[shard]).await.unwrap(), vec![0]);
}

/// A store opened with [`short_history_options`] keeps the newest [`SHORT_HISTORY`] ended sessions
/// of each device: the commit that ends one more deletes the oldest, whether it ends one session or
/// several; open sessions are listed besides them, the latest ended session's state stays readable,
/// and another device's history is its own.
pub async fn session_history_keeps_the_newest_per_device(store: Arc<dyn Store>) {
    let device_id = "conf-history-1";
    let neighbour = "conf-history-10";
    let started = |index: u64| 1_000 * index;
    let summary = |device_id: &str, index: u64| {
        let state = open_session(&format!("{device_id}-s-{index}"), device_id, started(index));
        ended_session(&state, started(index) + 500, SessionOutcome::Ended)
    };
    let neighbour_summary = summary(neighbour, 1);
    store
        .commit(WriteBatch { ended_sessions: vec![neighbour_summary.clone()], ..WriteBatch::default() })
        .await
        .unwrap();
    for index in 1..=4 {
        store
            .commit(WriteBatch { ended_sessions: vec![summary(device_id, index)], ..WriteBatch::default() })
            .await
            .unwrap();
    }
    let ids = |summaries: Vec<SessionSummary>| summaries.into_iter().map(|summary| summary.id).collect::<Vec<_>>();
    let expected = |indexes: &[u64]| indexes.iter().map(|index| format!("{device_id}-s-{index}")).collect::<Vec<_>>();
    assert_eq!(ids(store.list_sessions(device_id, 10).await.unwrap()), expected(&[4, 3, 2]), "the oldest went");

    // One batch ending two more (and carrying the last one's final state) leaves the newest three.
    let last = open_session(&format!("{device_id}-s-6"), device_id, started(6));
    let batch = WriteBatch {
        sessions: vec![last.clone()],
        ended_sessions: vec![summary(device_id, 5), summary(device_id, 6)],
        ..WriteBatch::default()
    };
    store.commit(batch).await.unwrap();
    assert_eq!(ids(store.list_sessions(device_id, 10).await.unwrap()), expected(&[6, 5, 4]));
    assert_eq!(store.get_session(device_id, &last.id).await.unwrap(), Some(last), "the latest ended state stays");

    // An open session is listed on top and is not counted against the history.
    let open = open_session(&format!("{device_id}-s-7"), device_id, started(7));
    store.commit(WriteBatch { sessions: vec![open], ..WriteBatch::default() }).await.unwrap();
    assert_eq!(ids(store.list_sessions(device_id, 10).await.unwrap()), expected(&[7, 6, 5, 4]));
    assert_eq!(store.list_sessions(neighbour, 10).await.unwrap(), vec![neighbour_summary], "another device's own");
}

// ---- Short-lived records ----------------------------------------------------------------------

/// `record_once`: new the first time, not again while the record lives (whatever the ttl of
/// the later calls), new again once `now` passes its expiry; keys are independent, and of
/// concurrent calls with one key exactly one is told new.
pub async fn record_once_is_new_once_until_it_expires(store: Arc<dyn Store>) {
    let now = now_millis();
    let ttl = 60_000;
    assert!(store.record_once("conf-once-a", ttl, now).await.unwrap());
    assert!(!store.record_once("conf-once-a", ttl, now).await.unwrap());
    assert!(!store.record_once("conf-once-a", 1, now + ttl - 1).await.unwrap());
    assert!(store.record_once("conf-once-b", ttl, now).await.unwrap(), "another key");
    assert!(store.record_once("conf-once-a:x", ttl, now).await.unwrap(), "a key extending another");
    // Expired at now + ttl: new again, recorded anew from then.
    assert!(store.record_once("conf-once-a", ttl, now + ttl).await.unwrap());
    assert!(!store.record_once("conf-once-a", ttl, now + ttl + 1).await.unwrap());

    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.record_once("conf-once-race", 60_000, now).await.unwrap() })
        })
        .collect();
    let mut new = 0;
    for task in tasks {
        new += usize::from(task.await.unwrap());
    }
    assert_eq!(new, 1, "exactly one of the concurrent calls is new");
}

/// `get_device_with_counts`: the device (or none) and each window's count, as the separate reads give them.
pub async fn device_and_counts_are_read_together(store: Arc<dyn Store>) {
    let window = 60_000;
    let now = now_millis();
    register(&store, device("conf-together")).await;
    store.count_in_window("conf-together-a", 2, window, now).await.unwrap();
    store.count_in_window("conf-together-b", 1, 30_000, now).await.unwrap();
    let windows = [("conf-together-a", window), ("conf-together-b", 30_000), ("conf-together-none", window)];
    let (found, counts) = store.get_device_with_counts("conf-together", &windows, now).await.unwrap();
    assert_eq!(found, store.get_device("conf-together").await.unwrap());
    assert!(found.is_some());
    assert_eq!(counts, vec![2, 1, 0]);
    let (missing, counts) = store.get_device_with_counts("conf-together-unknown", &windows[..1], now).await.unwrap();
    assert_eq!(missing, None);
    assert_eq!(counts, vec![2]);
    let (_, none) = store.get_device_with_counts("conf-together", &[], now).await.unwrap();
    assert!(none.is_empty());
}

/// `count_in_window`: hits add up within a window, `hits` = 0 reads, the next window starts
/// at 0, windows are aligned to multiples of their length, and concurrent hits all count.
pub async fn count_in_window_counts_per_fixed_window(store: Arc<dyn Store>) {
    let window = 60_000;
    let start = super::window_end(window, now_millis());
    assert_eq!(start % window, 0);
    assert_eq!(super::window_end(window, start), start + window);
    assert_eq!(super::window_end(window, start + window - 1), start + window);

    assert_eq!(store.count_in_window("conf-count-a", 0, window, start).await.unwrap(), 0);
    assert_eq!(store.count_in_window("conf-count-a", 1, window, start).await.unwrap(), 1);
    assert_eq!(store.count_in_window("conf-count-a", 2, window, start + 10).await.unwrap(), 3);
    assert_eq!(store.count_in_window("conf-count-a", 0, window, start + window - 1).await.unwrap(), 3);
    assert_eq!(store.count_in_window("conf-count-b", 0, window, start).await.unwrap(), 0, "another key");
    assert_eq!(store.count_in_window("conf-count-a", 0, 30_000, start).await.unwrap(), 0, "another window length");
    // The next window starts from nothing.
    assert_eq!(store.count_in_window("conf-count-a", 0, window, start + window).await.unwrap(), 0);
    assert_eq!(store.count_in_window("conf-count-a", 1, window, start + window).await.unwrap(), 1);
    assert_eq!(store.count_in_window("conf-count-a", 0, window, start + 2 * window - 1).await.unwrap(), 1);

    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.count_in_window("conf-count-race", 1, window, start).await.unwrap() })
        })
        .collect();
    let mut seen = BTreeSet::new();
    for task in tasks {
        seen.insert(task.await.unwrap());
    }
    assert_eq!(seen, (1..=20).collect::<BTreeSet<u64>>(), "each concurrent hit sees its own count");
    assert_eq!(store.count_in_window("conf-count-race", 0, window, start + 1).await.unwrap(), 20);
}

/// `next_sequence`: a counter starts at 1 and goes up by one per call, keys are apart (one extending another
/// too), concurrent calls each get a value of their own, and deleting a device does not reset a counter.
pub async fn next_sequence_counts_from_one_without_repeats(store: Arc<dyn Store>) {
    assert_eq!(store.next_sequence("conf-seq-a").await.unwrap(), 1);
    assert_eq!(store.next_sequence("conf-seq-a").await.unwrap(), 2);
    assert_eq!(store.next_sequence("conf-seq-b").await.unwrap(), 1, "another key");
    assert_eq!(store.next_sequence("conf-seq-a:x").await.unwrap(), 1, "a key extending another");
    assert_eq!(store.next_sequence("conf-seq-a").await.unwrap(), 3);

    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.next_sequence("conf-seq-race").await.unwrap() })
        })
        .collect();
    let mut seen = BTreeSet::new();
    for task in tasks {
        seen.insert(task.await.unwrap());
    }
    assert_eq!(seen, (1..=20).collect::<BTreeSet<u64>>(), "each concurrent call gets its own value");

    store.commit(WriteBatch { devices: vec![device("conf-seq-device")], ..WriteBatch::default() }).await.unwrap();
    let key = "notification-id:srv:conf-seq-device";
    assert_eq!(store.next_sequence(key).await.unwrap(), 1);
    assert!(store.delete_device("conf-seq-device").await.unwrap());
    assert_eq!(store.next_sequence(key).await.unwrap(), 2, "a counter outlives the device it is named after");
}

fn notification_record(request_id: &str, device_id: &str, requested_at: Millis) -> NotificationRecord {
    NotificationRecord {
        request_id: request_id.to_owned(),
        device_id: device_id.to_owned(),
        requested_at,
        requested_by: "operator".to_owned(),
        request_mos: true,
        outcome: None,
        ..NotificationRecord::default()
    }
}

/// Notification records: a request lands with its event in one batch, its outcome replaces it (also for
/// several devices in one batch, on a cluster several slots), an unknown request id is None, and a record past
/// its retention (by its own times, against the wall clock) is gone on both engines.
pub async fn notifications_keep_the_request_then_its_outcome(store: Arc<dyn Store>) {
    assert_eq!(store.get_notification("conf-notify-none").await.unwrap(), None);
    let now = now_millis();
    let requested = notification_record("conf-notify-r1", "conf-notify-1", now);
    let event = Event {
        id: "notify:conf-notify-1:conf-notify-r1".to_owned(),
        event_type: "notification.requested".to_owned(),
        schema_version: SCHEMA_VERSION,
        timestamp: now,
        topic: Topic::Notifications,
        key: "conf-notify-1".to_owned(),
        payload: json!({"request_id": "conf-notify-r1"}),
    };
    let batch =
        WriteBatch { events: vec![event.clone()], notifications: vec![requested.clone()], ..WriteBatch::default() };
    store.commit(batch).await.unwrap();
    let stored = store.get_notification("conf-notify-r1").await.unwrap().unwrap();
    assert_eq!((stored.state(), &stored), ("requested", &requested));
    let shard = store.outbox_shard_of(&event.key);
    assert!(store.outbox(shard, 10_000).await.unwrap().iter().any(|waiting| waiting.id == event.id));
    store.ack_outbox(shard, std::slice::from_ref(&event.id)).await.unwrap();

    let sent = NotificationRecord {
        outcome: Some(NotificationOutcome {
            state: NotificationState::Sent,
            at: now + 5,
            transport: Some("udp".to_owned()),
            notification_id: Some(7),
            reason: None,
            detail: None,
            collapsed_into: None,
        }),
        ..requested.clone()
    };
    let failed = NotificationRecord {
        outcome: Some(NotificationOutcome {
            state: NotificationState::Failed,
            at: now + 5,
            transport: None,
            notification_id: None,
            reason: Some("no_address".to_owned()),
            detail: Some("the device has no address".to_owned()),
            collapsed_into: None,
        }),
        ..notification_record("conf-notify-r2", "conf-notify-2", now)
    };
    store
        .commit(WriteBatch { notifications: vec![sent.clone(), failed.clone()], ..WriteBatch::default() })
        .await
        .unwrap();
    let stored = store.get_notification("conf-notify-r1").await.unwrap().unwrap();
    assert_eq!((stored.state(), &stored), ("sent", &sent), "the outcome replaces the request");
    let stored = store.get_notification("conf-notify-r2").await.unwrap().unwrap();
    assert_eq!((stored.state(), &stored), ("failed", &failed), "another device's record in the same batch");
    assert_eq!(store.get_notification("conf-notify-r").await.unwrap(), None, "ids are matched whole");

    let long_ago = now - NOTIFICATION_RETENTION_MILLIS - 1_000;
    let expired = notification_record("conf-notify-old", "conf-notify-1", long_ago);
    store.commit(WriteBatch { notifications: vec![expired], ..WriteBatch::default() }).await.unwrap();
    assert_eq!(store.get_notification("conf-notify-old").await.unwrap(), None, "past its retention");
    let fresh = notification_record("conf-notify-r3", "conf-notify-1", now);
    store.commit(WriteBatch { notifications: vec![fresh.clone()], ..WriteBatch::default() }).await.unwrap();
    assert_eq!(store.get_notification("conf-notify-old").await.unwrap(), None, "pruned, not back");
    assert_eq!(store.get_notification("conf-notify-r3").await.unwrap(), Some(fresh));
    assert_eq!(store.get_notification("conf-notify-r1").await.unwrap(), Some(sent), "a fresh record is kept");
}

/// Scheduled events wait out of the outbox until a release at or after their time moves them in, earliest
/// first, each once; scheduling an id again moves it to its new time; a release moves at most its limit.
pub async fn scheduled_events_enter_the_outbox_when_due(store: Arc<dyn Store>) {
    let key = "conf-scheduled-1";
    let shard = store.outbox_shard_of(key);
    let base: Millis = 1_000_000;
    let at = |id: &str, due_at: Millis| ScheduledEvent { due_at, event: event(id, Topic::Notifications, key) };
    let scheduled = vec![at("conf-s-late", base + 60_000), at("conf-s-b", base - 5), at("conf-s-a", base - 10)];
    let batch = WriteBatch { devices: vec![device(key)], scheduled: scheduled.clone(), ..WriteBatch::default() };
    store.commit(batch).await.unwrap();
    // Scheduled again before its time: the new time holds (was late, is now due).
    let moved = at("conf-s-moved", base + 90_000);
    store.commit(WriteBatch { scheduled: vec![moved.clone()], ..WriteBatch::default() }).await.unwrap();
    store.commit(WriteBatch { scheduled: vec![at("conf-s-moved", base - 1)], ..WriteBatch::default() }).await.unwrap();
    assert!(store.outbox(shard, 10).await.unwrap().is_empty(), "nothing enters the outbox before a release");

    assert_eq!(store.release_due_events(shard, base - 20, 10).await.unwrap(), 0, "nothing is due yet");
    assert_eq!(store.release_due_events(shard, base, 2).await.unwrap(), 2, "at most the limit moves");
    assert_eq!(store.release_due_events(shard, base, 10).await.unwrap(), 1);
    assert_eq!(store.release_due_events(shard, base, 10).await.unwrap(), 0, "each event moves once");
    let ids: Vec<String> = store.outbox(shard, 10).await.unwrap().into_iter().map(|event| event.id).collect();
    assert_eq!(ids, ["conf-s-a", "conf-s-b", "conf-s-moved"], "earliest first");

    assert_eq!(store.release_due_events(shard, base + 60_000, 10).await.unwrap(), 1);
    let released = store.outbox(shard, 10).await.unwrap();
    assert_eq!(released.last(), Some(&scheduled[0].event), "the event as scheduled");
    assert_eq!(
        store.release_due_events(shard, base + 100_000, 10).await.unwrap(),
        0,
        "the moved id left nothing behind"
    );
    let ids: Vec<String> = released.into_iter().map(|event| event.id).collect();
    store.ack_outbox(shard, &ids).await.unwrap();
    assert_eq!(store.release_due_events(store.outbox_shards(), base, 10).await.unwrap(), 0, "no such shard");
}

/// A device's latest notification is its newest request written with a `sent` outcome: not a request
/// still waiting, not a failure, and not an older request written again later.
pub async fn latest_notification_is_the_newest_sent_request(store: Arc<dyn Store>) {
    let device_id = "conf-latest-1";
    let now = now_millis();
    let sent = |request_id: &str, at: Millis| NotificationRecord {
        outcome: Some(NotificationOutcome {
            state: NotificationState::Sent,
            at,
            transport: Some("udp".to_owned()),
            notification_id: Some(1),
            reason: None,
            detail: None,
            collapsed_into: None,
        }),
        ..notification_record(request_id, device_id, now)
    };
    let write = |records: Vec<NotificationRecord>| {
        let store = store.clone();
        async move { store.commit(WriteBatch { notifications: records, ..WriteBatch::default() }).await.unwrap() }
    };
    let latest = || async { store.latest_notification(device_id).await.unwrap().map(|record| record.request_id) };
    assert_eq!(latest().await, None);
    write(vec![notification_record("conf-latest-r1", device_id, now)]).await;
    assert_eq!(latest().await, None, "a request not sent yet");
    write(vec![sent("conf-latest-r1", now + 10)]).await;
    assert_eq!(store.latest_notification(device_id).await.unwrap(), Some(sent("conf-latest-r1", now + 10)));
    write(vec![sent("conf-latest-r2", now + 20)]).await;
    assert_eq!(latest().await.as_deref(), Some("conf-latest-r2"));
    write(vec![sent("conf-latest-r1", now + 10)]).await;
    assert_eq!(latest().await.as_deref(), Some("conf-latest-r2"), "an older request written again");
    let failed = NotificationRecord {
        outcome: Some(NotificationOutcome {
            state: NotificationState::Failed,
            at: now + 30,
            transport: None,
            notification_id: None,
            reason: Some("no_transport".to_owned()),
            detail: Some("no address".to_owned()),
            collapsed_into: None,
        }),
        ..notification_record("conf-latest-r3", device_id, now)
    };
    write(vec![failed]).await;
    assert_eq!(latest().await.as_deref(), Some("conf-latest-r2"), "a failure is not a notification sent");
    assert_eq!(store.latest_notification("conf-latest-2").await.unwrap(), None, "another device");
}

/// A delivery report shows in its request's record (read by id and as the device's latest), a later write of the
/// record without one keeps it (the dispatcher's and the answer's writes race the receipt), a newer report
/// replaces it, and a report on a request the store has no record of shows nowhere.
pub async fn deliveries_join_their_records_and_outlive_later_writes(store: Arc<dyn Store>) {
    let device_id = "conf-delivery-1";
    let now = now_millis();
    let sent = NotificationRecord {
        outcome: Some(NotificationOutcome {
            state: NotificationState::Sent,
            at: now + 5,
            transport: Some("sms".to_owned()),
            notification_id: Some(9),
            reason: None,
            detail: None,
            collapsed_into: None,
        }),
        ..notification_record("conf-delivery-r1", device_id, now)
    };
    store.commit(WriteBatch { notifications: vec![sent.clone()], ..WriteBatch::default() }).await.unwrap();
    let report = |delivered: bool, status: &str, at: Millis| NotificationDelivery {
        device_id: device_id.to_owned(),
        request_id: "conf-delivery-r1".to_owned(),
        transport: "sms".to_owned(),
        delivered,
        status: status.to_owned(),
        message_id: "m-17".to_owned(),
        at,
    };
    let undelivered = report(false, "UNDELIV", now + 10);
    let event = event("conf-delivery-e1", Topic::Notifications, device_id);
    let batch =
        WriteBatch { deliveries: vec![undelivered.clone()], events: vec![event.clone()], ..WriteBatch::default() };
    store.commit(batch).await.unwrap();
    let expected = NotificationRecord { delivery: Some(undelivered), ..sent.clone() };
    assert_eq!(store.get_notification("conf-delivery-r1").await.unwrap().as_ref(), Some(&expected));
    assert_eq!(store.latest_notification(device_id).await.unwrap().as_ref(), Some(&expected), "the latest too");
    let shard = store.outbox_shard_of(device_id);
    assert!(store.outbox(shard, 10_000).await.unwrap().iter().any(|waiting| waiting.id == event.id), "with its event");
    store.ack_outbox(shard, std::slice::from_ref(&event.id)).await.unwrap();

    let answered = NotificationRecord {
        answered: Some(NotificationAnswer { session_id: "s1".to_owned(), at: now + 20 }),
        ..sent.clone()
    };
    store.commit(WriteBatch { notifications: vec![answered.clone()], ..WriteBatch::default() }).await.unwrap();
    let stored = store.get_notification("conf-delivery-r1").await.unwrap().unwrap();
    assert_eq!(stored.answered, answered.answered);
    assert_eq!(stored.delivery, expected.delivery, "a write without a delivery keeps it");

    let delivered = report(true, "DELIVRD", now + 30);
    store.commit(WriteBatch { deliveries: vec![delivered.clone()], ..WriteBatch::default() }).await.unwrap();
    let stored = store.get_notification("conf-delivery-r1").await.unwrap().unwrap();
    assert_eq!((stored.delivery, stored.answered), (Some(delivered), answered.answered), "a newer report replaces it");

    let stray = NotificationDelivery { request_id: "conf-delivery-none".to_owned(), ..report(true, "DELIVRD", now) };
    store.commit(WriteBatch { deliveries: vec![stray], ..WriteBatch::default() }).await.unwrap();
    assert_eq!(store.get_notification("conf-delivery-none").await.unwrap(), None, "no record, nothing to read");
}

/// Filtered listings and counts follow the inventory index: a device found by each of its fields and tags, moved
/// when a write changes them, gone when it is deleted; pages in id order with a cursor; a term no device has
/// finds nothing.
pub async fn the_inventory_index_follows_writes_and_deletes(store: Arc<dyn Store>) {
    let with = |id: &str, model: &str, fwv: &str, region: &str| {
        let mut device = device(id);
        device.inventory.man = Some("conf-index-man".to_owned());
        device.inventory.model = Some(model.to_owned());
        device.inventory.fwv = Some(fwv.to_owned());
        device.inventory.swv = Some("conf-index-swv".to_owned());
        device.inventory.dev_type = Some("conf-index-type".to_owned());
        device.tags.insert("conf-region".to_owned(), region.to_owned());
        device
    };
    let devices = vec![
        with("conf-index-a", "conf-X1", "1.2", "eu"),
        with("conf-index-b", "conf-X1", "1.3", "eu"),
        with("conf-index-c", "conf-X1", "1.2", "us"),
        with("conf-index-d", "conf-X2", "1.2", "eu"),
    ];
    store.commit(WriteBatch { devices: devices.clone(), ..WriteBatch::default() }).await.unwrap();
    let filter = |model: Option<&str>, fwv: Option<&str>, region: Option<&str>| DeviceFilter {
        model: model.map(str::to_owned),
        fwv: fwv.map(str::to_owned),
        tags: region.map(|region| ("conf-region".to_owned(), region.to_owned())).into_iter().collect(),
        ..DeviceFilter::default()
    };
    let listed = |filter: DeviceFilter| {
        let store = store.clone();
        async move {
            let mut ids = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let page = store.list_devices(&filter, after.as_deref(), 1).await.unwrap();
                ids.extend(page.devices.into_iter().map(|device| device.id));
                match page.next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
            let count = store.count_devices(&filter).await.unwrap();
            assert_eq!(count, ids.len() as u64, "count and listing agree for {filter:?}");
            ids
        }
    };
    assert_eq!(listed(filter(Some("conf-X1"), Some("1.2"), None)).await, ["conf-index-a", "conf-index-c"]);
    assert_eq!(listed(filter(Some("conf-X1"), None, None)).await, ["conf-index-a", "conf-index-b", "conf-index-c"]);
    assert_eq!(listed(filter(None, Some("1.2"), Some("eu"))).await, ["conf-index-a", "conf-index-d"]);
    let everything_here = DeviceFilter {
        man: Some("conf-index-man".to_owned()),
        swv: Some("conf-index-swv".to_owned()),
        dev_type: Some("conf-index-type".to_owned()),
        ..DeviceFilter::default()
    };
    assert_eq!(listed(everything_here.clone()).await.len(), 4, "Man, SwV and DevType are indexed too");
    assert!(listed(filter(Some("conf-X9"), None, None)).await.is_empty(), "a term no device has");
    assert!(listed(filter(Some("conf-X2"), Some("1.3"), None)).await.is_empty(), "terms that never meet");

    // An update moves the device: out of FwV 1.2 and region eu, into 1.3 and us.
    let updated = with("conf-index-a", "conf-X1", "1.3", "us");
    store.commit(WriteBatch { devices: vec![updated], ..WriteBatch::default() }).await.unwrap();
    assert_eq!(listed(filter(Some("conf-X1"), Some("1.2"), None)).await, ["conf-index-c"]);
    assert_eq!(listed(filter(None, Some("1.3"), None)).await, ["conf-index-a", "conf-index-b"]);
    assert_eq!(listed(filter(None, None, Some("eu"))).await, ["conf-index-b", "conf-index-d"]);
    // The same device written again changes nothing; a tag dropped leaves its term.
    let mut untagged = with("conf-index-b", "conf-X1", "1.3", "eu");
    store.commit(WriteBatch { devices: vec![untagged.clone()], ..WriteBatch::default() }).await.unwrap();
    assert_eq!(listed(filter(None, Some("1.3"), None)).await, ["conf-index-a", "conf-index-b"]);
    untagged.tags.remove("conf-region");
    store.commit(WriteBatch { devices: vec![untagged], ..WriteBatch::default() }).await.unwrap();
    assert_eq!(listed(filter(None, None, Some("eu"))).await, ["conf-index-d"]);

    assert!(store.delete_device("conf-index-c").await.unwrap());
    assert!(listed(filter(Some("conf-X1"), Some("1.2"), None)).await.is_empty(), "a deleted device is not found");
    assert_eq!(listed(everything_here).await.len(), 3);
}

/// `remember` keeps a value until its ttl by the caller's clock, replaces it when called again, keeps keys apart,
/// and `recall` of a key never remembered is None.
pub async fn remembered_values_live_until_their_ttl(store: Arc<dyn Store>) {
    let now = now_millis();
    assert_eq!(store.recall("conf-remember-none", now).await.unwrap(), None);
    store.remember("conf-remember-a", "request 1\nsegment 2", 60_000, now).await.unwrap();
    store.remember("conf-remember-b", "", 60_000, now).await.unwrap();
    assert_eq!(store.recall("conf-remember-a", now).await.unwrap().as_deref(), Some("request 1\nsegment 2"));
    assert_eq!(store.recall("conf-remember-a", now + 59_999).await.unwrap().as_deref(), Some("request 1\nsegment 2"));
    assert_eq!(store.recall("conf-remember-a", now + 60_000).await.unwrap(), None, "expired by the caller's clock");
    assert_eq!(store.recall("conf-remember-b", now).await.unwrap().as_deref(), Some(""), "an empty value is a value");
    assert_eq!(store.recall("conf-remember", now).await.unwrap(), None, "keys are matched whole");
    store.remember("conf-remember-a", "request 2", 120_000, now).await.unwrap();
    assert_eq!(store.recall("conf-remember-a", now + 90_000).await.unwrap().as_deref(), Some("request 2"), "replaced");
}

/// `take_rate_token`: a new bucket holds one second's worth, then waits say how long until the next token; it
/// refills at its rate up to one second's worth; keys are apart; calls from many tasks share one bucket.
pub async fn rate_tokens_are_shared_and_refill_at_their_rate(store: Arc<dyn Store>) {
    let start: Millis = 5_000_000;
    for _ in 0..4 {
        assert_eq!(store.take_rate_token("conf-rate-a", 4, start).await.unwrap(), 0, "a second's burst");
    }
    assert_eq!(store.take_rate_token("conf-rate-a", 4, start).await.unwrap(), 250, "empty: the next in 250 ms");
    assert_eq!(store.take_rate_token("conf-rate-a", 4, start + 100).await.unwrap(), 150, "a wait takes nothing");
    assert_eq!(store.take_rate_token("conf-rate-a", 4, start + 250).await.unwrap(), 0);
    assert_eq!(store.take_rate_token("conf-rate-b", 4, start + 250).await.unwrap(), 0, "another key");
    let mut taken = 0;
    while store.take_rate_token("conf-rate-a", 4, start + 60_000).await.unwrap() == 0 {
        taken += 1;
    }
    assert_eq!(taken, 4, "an idle minute saves one second's worth, no more");
    // Twenty callers at once on a bucket of 5: five tokens between them.
    let takes = (0..20).map(|_| {
        let store = store.clone();
        async move { store.take_rate_token("conf-rate-c", 5, start).await.unwrap() }
    });
    let waits = futures_util::future::join_all(takes).await;
    assert_eq!(waits.iter().filter(|wait| **wait == 0).count(), 5, "{waits:?}");
}

fn role_record(scope: &str, key: &str, labels: &[&str], value: serde_json::Value) -> crate::model::Record {
    crate::model::Record {
        scope: scope.to_owned(),
        collection: "conf-things".to_owned(),
        key: key.to_owned(),
        labels: labels.iter().map(|label| (*label).to_owned()).collect(),
        value,
        revision: 0,
    }
}

fn put(record: crate::model::Record, expected: Option<u64>) -> WriteBatch {
    WriteBatch { records: vec![crate::model::RecordWrite::put(record, expected)], ..WriteBatch::default() }
}

/// Several writes of one record in one batch: each checked against the revision the earlier ones leave, and
/// the record, its revision, its labels and the counts end as the last write left them (a put then a delete: gone;
/// a delete then a put: there, at revision 1).
pub async fn records_written_twice_in_one_batch_end_as_the_last_write(store: Arc<dyn Store>) {
    let scope = "conf-scope-twice";
    let record = |key: &str, labels: &[&str], n: u64| role_record(scope, key, labels, json!({"n": n}));
    let delete = |key: &str| crate::model::RecordWrite::Delete {
        scope: scope.to_owned(),
        collection: "conf-things".to_owned(),
        key: key.to_owned(),
    };
    store.commit(put(record("gone", &["x"], 1), Some(0))).await.unwrap();
    store.commit(put(record("back", &["x", "y"], 1), Some(0))).await.unwrap();
    let batch = WriteBatch {
        records: vec![
            crate::model::RecordWrite::put(record("moved", &["x", "y"], 1), Some(0)),
            crate::model::RecordWrite::put(record("moved", &["y", "z"], 2), Some(1)),
            crate::model::RecordWrite::put(record("moved", &["x", "z"], 3), Some(2)),
            crate::model::RecordWrite::put(record("gone", &["y"], 2), Some(1)),
            delete("gone"),
            delete("back"),
            crate::model::RecordWrite::put(record("back", &["z"], 2), Some(0)),
        ],
        ..WriteBatch::default()
    };
    store.commit(batch).await.unwrap();
    let moved = store.get_record(scope, "conf-things", "moved").await.unwrap().unwrap();
    assert_eq!((moved.revision, moved.value), (3, json!({"n": 3})));
    assert_eq!(moved.labels, ["x", "z"].iter().map(|label| (*label).to_owned()).collect());
    assert_eq!(store.get_record(scope, "conf-things", "gone").await.unwrap(), None);
    let back = store.get_record(scope, "conf-things", "back").await.unwrap().unwrap();
    assert_eq!((back.revision, back.value), (1, json!({"n": 2})));
    let labels = ["x".to_owned(), "y".to_owned(), "z".to_owned()];
    let counts = store.count_records(scope, "conf-things", &labels).await.unwrap();
    assert_eq!(counts, crate::model::RecordCounts { total: 2, labels: vec![1, 0, 2] });
    let with_x = store.list_records(scope, "conf-things", Some("x"), None, 10).await.unwrap();
    assert_eq!(with_x.iter().map(|record| record.key.as_str()).collect::<Vec<_>>(), ["moved"]);
    let with_y = store.list_records(scope, "conf-things", Some("y"), None, 10).await.unwrap();
    assert!(with_y.is_empty(), "{with_y:?}");
    // A stale expectation inside the batch refuses all of it.
    let stale = WriteBatch {
        records: vec![
            crate::model::RecordWrite::put(record("moved", &["y"], 4), Some(3)),
            crate::model::RecordWrite::put(record("moved", &["y"], 5), Some(3)),
        ],
        ..WriteBatch::default()
    };
    assert!(matches!(store.commit(stale).await, Err(StoreError::Conflict { .. })));
    assert_eq!(store.get_record(scope, "conf-things", "moved").await.unwrap().unwrap().revision, 3);
}

/// Records of roles: a revision that counts the writes; a put against a stale revision (or `Some(0)` on an
/// existing record) refused with `Conflict`, writing nothing; labels that move on replacement, page in key order
/// and count without a walk; deletes that take the labels along.
pub async fn records_keep_revisions_and_labels(store: Arc<dyn Store>) {
    let scope = "conf-scope-a";
    let keys: Vec<String> = ["k1", "k2", "k3"].iter().map(|key| (*key).to_owned()).collect();
    for key in &keys {
        store
            .commit(put(role_record(scope, key, &["state:pending", "wave:0"], json!({"n": 1})), Some(0)))
            .await
            .unwrap();
    }
    let first = store.get_record(scope, "conf-things", "k1").await.unwrap().unwrap();
    assert_eq!((first.revision, first.value.clone()), (1, json!({"n": 1})));
    assert!(first.labels.contains("state:pending"));
    // Some(0) on an existing record, and a stale revision: refused, nothing written.
    let again = store.commit(put(role_record(scope, "k1", &["state:done"], json!({"n": 9})), Some(0))).await;
    assert!(matches!(again, Err(StoreError::Conflict { ref key, .. }) if key == "k1"), "{again:?}");
    let stale = store.commit(put(role_record(scope, "k1", &["state:done"], json!({"n": 9})), Some(7))).await;
    assert!(matches!(stale, Err(StoreError::Conflict { .. })), "{stale:?}");
    assert_eq!(store.get_record(scope, "conf-things", "k1").await.unwrap().unwrap(), first);
    // Replaced at its revision: the revision grows, the record moves between labels.
    store.commit(put(role_record(scope, "k1", &["state:done", "wave:0"], json!({"n": 2})), Some(1))).await.unwrap();
    let replaced = store.get_record(scope, "conf-things", "k1").await.unwrap().unwrap();
    assert_eq!((replaced.revision, replaced.value), (2, json!({"n": 2})));
    let labels = ["state:pending".to_owned(), "state:done".to_owned(), "wave:0".to_owned(), "none".to_owned()];
    let counts = store.count_records(scope, "conf-things", &labels).await.unwrap();
    assert_eq!(counts, crate::model::RecordCounts { total: 3, labels: vec![2, 1, 3, 0] });
    let pending = store.list_records(scope, "conf-things", Some("state:pending"), None, 10).await.unwrap();
    assert_eq!(pending.iter().map(|record| record.key.as_str()).collect::<Vec<_>>(), ["k2", "k3"]);
    let page = store.list_records(scope, "conf-things", None, Some("k1"), 1).await.unwrap();
    assert_eq!(page.iter().map(|record| (record.key.as_str(), record.revision)).collect::<Vec<_>>(), [("k2", 1)]);
    let found = store.get_records(scope, "conf-things", &["k3".to_owned(), "nope".to_owned(), "k1".to_owned()]).await;
    let found = found.unwrap();
    assert_eq!(
        found.iter().map(|record| record.as_ref().map(|record| record.key.as_str())).collect::<Vec<_>>(),
        [Some("k3"), None, Some("k1")]
    );
    // Another scope is another set of records.
    assert_eq!(store.count_records("conf-scope-b", "conf-things", &labels).await.unwrap().total, 0);
    // A delete takes the labels along.
    let delete = crate::model::RecordWrite::Delete {
        scope: scope.to_owned(),
        collection: "conf-things".to_owned(),
        key: "k2".to_owned(),
    };
    store.commit(WriteBatch { records: vec![delete], ..WriteBatch::default() }).await.unwrap();
    assert_eq!(store.get_record(scope, "conf-things", "k2").await.unwrap(), None);
    let counts = store.count_records(scope, "conf-things", &labels).await.unwrap();
    assert_eq!(counts, crate::model::RecordCounts { total: 2, labels: vec![1, 1, 2, 0] });
    // Collection and label names never run into each other: `a:b` labelled `c` is not `a` labelled `b:c`.
    let mut joined = role_record(scope, "k", &["c"], json!({}));
    joined.collection = "conf-a:b".to_owned();
    store
        .commit(WriteBatch { records: vec![crate::model::RecordWrite::put(joined, None)], ..WriteBatch::default() })
        .await
        .unwrap();
    let other = store.count_records(scope, "conf-a", &["b:c".to_owned()]).await.unwrap();
    assert_eq!(other, crate::model::RecordCounts { total: 0, labels: vec![0] });
}

/// A batch of records in two scopes, commands queued for a device and events keyed by each scope lands whole;
/// the same batch against a stale revision writes none of it, queued commands and events included.
pub async fn records_commit_with_queued_commands_and_events_or_not_at_all(store: Arc<dyn Store>) {
    let device_id = "conf-rec-device";
    store.commit(WriteBatch { devices: vec![device(device_id)], ..WriteBatch::default() }).await.unwrap();
    let before = store.enqueue_commands(device_id, vec![get_command("urn:x//Before")], now_millis()).await.unwrap();
    let shards: Vec<u32> = (0..store.outbox_shards()).collect();
    let waiting = |store: Arc<dyn Store>| {
        let shards = shards.clone();
        async move { store.outbox_lengths(&shards).await.unwrap().iter().sum::<u64>() }
    };
    let outbox_before = waiting(store.clone()).await;
    let batch = |expected: u64| {
        let mut queued = get_command("urn:x//Campaign");
        queued.campaign_id = Some("conf-campaign".to_owned());
        WriteBatch {
            records: vec![
                crate::model::RecordWrite::put(
                    role_record("conf-campaign", device_id, &["state:notified"], json!({})),
                    Some(expected),
                ),
                crate::model::RecordWrite::put(role_record(device_id, "conf-campaign", &["active"], json!({})), None),
            ],
            enqueued: vec![crate::store::EnqueuedCommands {
                device_id: device_id.to_owned(),
                commands: vec![queued],
                now: now_millis(),
            }],
            events: vec![
                event("conf-rec-e1", crate::bus::Topic::Campaigns, "conf-campaign"),
                event("conf-rec-e2", crate::bus::Topic::Notifications, device_id),
            ],
            ..WriteBatch::default()
        }
    };
    let refused = store.commit(batch(3)).await;
    assert!(matches!(refused, Err(StoreError::Conflict { .. })), "{refused:?}");
    assert_eq!(store.get_record(device_id, "conf-things", "conf-campaign").await.unwrap(), None);
    assert_eq!(store.queued_commands(device_id, 10).await.unwrap().len(), 1, "nothing queued by the refused batch");
    assert_eq!(waiting(store.clone()).await, outbox_before, "no event of the refused batch");
    store.commit(batch(0)).await.unwrap();
    let queued = store.queued_commands(device_id, 10).await.unwrap();
    assert_eq!(queued.len(), 2);
    assert!(queued[1].id > before[0], "ids follow enqueue_commands' ids");
    assert_eq!(queued[1].campaign_id.as_deref(), Some("conf-campaign"));
    assert_eq!(store.get_record("conf-campaign", "conf-things", device_id).await.unwrap().unwrap().revision, 1);
    assert_eq!(store.get_record(device_id, "conf-things", "conf-campaign").await.unwrap().unwrap().revision, 1);
    assert_eq!(waiting(store.clone()).await, outbox_before + 2);
    // Leave the outbox as it was found (other checks of run_all read it).
    for (id, key) in [("conf-rec-e1", "conf-campaign"), ("conf-rec-e2", device_id)] {
        store.ack_outbox(store.outbox_shard_of(key), &[id.to_owned()]).await.unwrap();
    }
    assert_eq!(waiting(store.clone()).await, outbox_before);
}
