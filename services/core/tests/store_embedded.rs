//! The embedded store against the Store conformance suite, plus what only a file-backed engine promises.

// Test helpers outside #[test] functions report failures by panicking too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::sync::Arc;

use omadm_core::bus::Topic;
use omadm_core::cluster::{Fence, Lease, LeaseRequest, NodeInfo};
use omadm_core::model::DeviceFilter;
use omadm_core::store::conformance;
use omadm_core::store::{EmbeddedStore, SessionLoad, Store, StoreError, StoreOptions, WriteBatch};
use tempfile::TempDir;

async fn fresh_store() -> (Arc<dyn Store>, TempDir) {
    fresh_store_with(StoreOptions::default()).await
}

async fn fresh_store_with(options: StoreOptions) -> (Arc<dyn Store>, TempDir) {
    let directory = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open_with(directory.path(), &options).await.unwrap();
    (Arc::new(store), directory)
}

omadm_core::store_conformance_tests!(fresh_store, fresh_store_with);

/// Every check on one shared store: the checks do not depend on a store of their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_suite_on_one_store() {
    let (store, _directory) = fresh_store().await;
    conformance::run_all(store).await;
}

/// Everything the suite writes, read back through the trait.
async fn snapshot(store: &Arc<dyn Store>) -> String {
    let mut lines = Vec::new();
    for device_id in ["conf-dev-1", "conf-queue-1", "conf-states-1", "conf-batch-1", "conf-delete-1", "conf-delete-10"]
    {
        lines.push(format!("{:?}", store.get_device(device_id).await.unwrap()));
        lines.push(format!("{:?}", store.list_commands(device_id, None, 1_000).await.unwrap()));
        lines.push(format!("{:?}", store.queued_commands(device_id, 1_000).await.unwrap()));
        lines.push(format!("{:?}", store.pending_count(device_id).await.unwrap()));
        lines.push(format!("{:?}", store.list_sessions(device_id, 100).await.unwrap()));
        lines.push(format!("{:?}", store.get_mirror(device_id).await.unwrap()));
        lines.push(format!("{:?}", store.list_alerts(device_id, 100).await.unwrap()));
        lines.push(format!("{:?}", store.next_alert_id(device_id).await.unwrap()));
    }
    let mut open = store.open_sessions().await.unwrap();
    open.sort_by(|left, right| left.id.cmp(&right.id));
    lines.push(format!("{open:?}"));
    lines.push(format!("{:?}", store.list_devices(&DeviceFilter::default(), None, 5_000).await.unwrap()));
    lines.push(format!("{:?}", store.outbox(0, 100).await.unwrap()));
    lines.join("\n")
}

/// Dropping the store and opening the directory again shows every write, and numbering goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_after_drop_keeps_everything() {
    let directory = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(directory.path()).await.unwrap());
    conformance::run_all(store.clone()).await;
    let pending_event = conformance::event("reopen-e-1", omadm_core::bus::Topic::Results, "conf-dev-1");
    store.commit(WriteBatch { events: vec![pending_event.clone()], ..WriteBatch::default() }).await.unwrap();
    let item = omadm_core::model::RepositoryItem {
        path: "reopen/item".to_owned(),
        content_type: "text/plain".to_owned(),
        blob: "items/stored-elsewhere".to_owned(),
        size: 4,
        sha256: "0".repeat(64),
        source: omadm_core::model::ContentSource::Operator,
        device_id: None,
        stored_at: 1,
    };
    store.put_content(item.clone()).await.unwrap();
    let before = snapshot(&store).await;
    assert!(before.contains("conf-list-02499") && before.contains("reopen-e-1"), "the snapshot covers the data");
    drop(store);

    let reopened: Arc<dyn Store> = Arc::new(EmbeddedStore::open(directory.path()).await.unwrap());
    assert_eq!(snapshot(&reopened).await, before);
    assert_eq!(reopened.get_content("reopen/item").await.unwrap(), Some(item));
    assert_eq!(reopened.outbox(0, 10).await.unwrap(), vec![pending_event]);
    let next_ids = reopened.enqueue_commands("conf-queue-1", vec![conformance::get_command("urn:x//A")], 1).await;
    assert_eq!(next_ids.unwrap(), vec![6]);
}

/// A data dir is open in one place at a time: a second open is refused, not shared.
#[tokio::test]
async fn second_open_of_the_same_directory_is_refused() {
    let directory = tempfile::tempdir().unwrap();
    let first = EmbeddedStore::open(directory.path()).await.unwrap();
    let second = EmbeddedStore::open(directory.path()).await;
    assert!(matches!(second, Err(StoreError::Unavailable(_))), "{:?}", second.err());
    assert!(first.path().ends_with("store.redb"));
    drop(first);
    EmbeddedStore::open(directory.path()).await.unwrap();
}

/// A record that is not the expected JSON is reported as corrupt (never a panic) and counted.
#[tokio::test]
async fn corrupt_record_is_a_typed_error() {
    let directory = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(directory.path()).await.unwrap();
    store.commit(WriteBatch { devices: vec![conformance::device("fine")], ..WriteBatch::default() }).await.unwrap();
    let database_path = store.path().to_owned();
    drop(store);

    // Damage one record behind the store's back, through redb itself.
    {
        let database = redb::Database::create(&database_path).unwrap();
        let transaction = database.begin_write().unwrap();
        {
            let devices: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("devices");
            let mut table = transaction.open_table(devices).unwrap();
            table.insert("broken", b"{not json".as_slice()).unwrap();
        }
        transaction.commit().unwrap();
    }

    let errors_before = omadm_core::metrics::metrics().store_errors.with_label_values(&["get_device"]).get();
    let store = EmbeddedStore::open(directory.path()).await.unwrap();
    assert!(matches!(store.get_device("broken").await, Err(StoreError::Corrupt(_))));
    assert!(store.get_device("fine").await.unwrap().is_some(), "other records still read");
    assert!(matches!(store.list_devices(&DeviceFilter::default(), None, 10).await, Err(StoreError::Corrupt(_))));
    let errors_after = omadm_core::metrics::metrics().store_errors.with_label_values(&["get_device"]).get();
    assert_eq!(errors_after, errors_before + 1);
}

/// A filter is answered from the inventory index: a rare term at once, without reading the registry; a filter
/// whose terms are each common but rare together walks its rarest term and returns short pages with a cursor
/// instead of reading that term's devices at once.
#[tokio::test]
async fn list_devices_walks_the_rarest_term_and_bounds_the_records_one_call_reads() {
    let directory = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(directory.path()).await.unwrap().with_list_scan_budget(10);
    let devices = (0..50)
        .map(|index| {
            let mut device = conformance::device(&format!("scan-{index:02}"));
            device.inventory.fwv = Some(if index == 37 { "rare" } else { "common" }.to_owned());
            // 25..49 are sensors; 0..24 and 37 run swv "x": only 37 is both.
            device.inventory.dev_type = Some(if index >= 25 { "sensor" } else { "meter" }.to_owned());
            device.inventory.swv = Some(if index < 25 || index == 37 { "x" } else { "y" }.to_owned());
            device
        })
        .collect();
    store.commit(WriteBatch { devices, ..WriteBatch::default() }).await.unwrap();

    let rare = DeviceFilter { fwv: Some("rare".to_owned()), ..DeviceFilter::default() };
    let page = store.list_devices(&rare, None, 5).await.unwrap();
    assert_eq!(page.devices.iter().map(|device| device.id.as_str()).collect::<Vec<_>>(), ["scan-37"]);
    assert_eq!(page.next, None, "one term, one device: the index has it");
    assert_eq!(store.count_devices(&rare).await.unwrap(), 1);

    let both =
        DeviceFilter { dev_type: Some("sensor".to_owned()), swv: Some("x".to_owned()), ..DeviceFilter::default() };
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = store.list_devices(&both, cursor.as_deref(), 5).await.unwrap();
        pages.push((page.devices.iter().map(|device| device.id.clone()).collect::<Vec<_>>(), page.next.clone()));
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let expected: Vec<(Vec<String>, Option<String>)> = vec![
        (vec![], Some("scan-34".to_owned())),
        (vec!["scan-37".to_owned()], Some("scan-44".to_owned())),
        (vec![], None),
    ];
    assert_eq!(pages, expected, "the 25 sensors walked ten at a time");
    assert_eq!(store.count_devices(&both).await.unwrap(), 1);

    // Without a filter the budget is never the limit that matters: full pages.
    let page = store.list_devices(&DeviceFilter::default(), None, 10).await.unwrap();
    assert_eq!(page.devices.len(), 10);
    assert_eq!(page.next.as_deref(), Some("scan-09"));
    assert_eq!(store.count_devices(&DeviceFilter::default()).await.unwrap(), 50);
}

/// A store written before the inventory index existed gets it built when it is opened.
#[tokio::test]
async fn a_store_without_an_index_gets_it_built_when_opened() {
    let directory = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(directory.path()).await.unwrap();
    let mut device = conformance::device("old-1");
    device.inventory.fwv = Some("0.9".to_owned());
    store.commit(WriteBatch { devices: vec![device], ..WriteBatch::default() }).await.unwrap();
    drop(store);
    // As a build without the index left it: its tables empty, no version.
    {
        let database = redb::Database::create(directory.path().join("store.redb")).unwrap();
        let transaction = database.begin_write().unwrap();
        transaction.delete_table(redb::TableDefinition::<(&str, &str), ()>::new("device_terms")).unwrap();
        transaction.delete_table(redb::TableDefinition::<&str, u64>::new("term_counts")).unwrap();
        transaction.delete_table(redb::TableDefinition::<&str, &[u8]>::new("terms_of_device")).unwrap();
        transaction
            .open_table(redb::TableDefinition::<&str, u64>::new("meta"))
            .unwrap()
            .remove("index_version")
            .unwrap();
        transaction.commit().unwrap();
    }
    let store = EmbeddedStore::open(directory.path()).await.unwrap();
    let filter = DeviceFilter { fwv: Some("0.9".to_owned()), ..DeviceFilter::default() };
    let page = store.list_devices(&filter, None, 10).await.unwrap();
    assert_eq!(page.devices.iter().map(|device| device.id.as_str()).collect::<Vec<_>>(), ["old-1"]);
    assert_eq!(store.count_devices(&filter).await.unwrap(), 1);
}

/// Writes submitted together share a transaction; one that fails (here: it meets a corrupt
/// record) fails alone, and every other write of its group is still applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_write_fails_alone_among_concurrent_writes() {
    let directory = tempfile::tempdir().unwrap();
    let database_path = directory.path().join("store.redb");
    EmbeddedStore::open(directory.path()).await.unwrap();
    {
        let database = redb::Database::create(&database_path).unwrap();
        let transaction = database.begin_write().unwrap();
        {
            let commands: redb::TableDefinition<(&str, u64), &[u8]> = redb::TableDefinition::new("commands");
            transaction.open_table(commands).unwrap().insert(("damaged", 1), b"garbage".as_slice()).unwrap();
        }
        transaction.commit().unwrap();
    }
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(directory.path()).await.unwrap());
    let mut damaged_update = None;
    store.enqueue_commands("healthy", vec![conformance::get_command("urn:x//A")], 1).await.unwrap();
    if let Some(mut record) = store.get_command("healthy", 1).await.unwrap() {
        record.device_id = "damaged".to_owned();
        damaged_update = Some(record);
    }
    let damaged_update = damaged_update.unwrap();

    let mut tasks = Vec::new();
    for index in 0..64 {
        let store = store.clone();
        let damaged_update = damaged_update.clone();
        tasks.push(tokio::spawn(async move {
            if index == 32 {
                store.commit(WriteBatch { commands: vec![damaged_update], ..WriteBatch::default() }).await
            } else {
                let device = conformance::device(&format!("group-{index:02}"));
                store.commit(WriteBatch { devices: vec![device], ..WriteBatch::default() }).await
            }
        }));
    }
    for (index, task) in tasks.into_iter().enumerate() {
        let result = task.await.unwrap();
        if index == 32 {
            assert!(matches!(result, Err(StoreError::Corrupt(_))), "{result:?}");
        } else {
            result.unwrap();
            assert!(store.get_device(&format!("group-{index:02}")).await.unwrap().is_some());
        }
    }
}

fn lease_request(node: &str, live: &[&str], now: u64) -> LeaseRequest {
    LeaseRequest {
        node_id: node.to_owned(),
        ttl: conformance::LONG_TTL,
        live_nodes: live.iter().map(|id| (*id).to_owned()).collect(),
        now,
    }
}

async fn granted(store: &Arc<dyn Store>, device_id: &str, request: &LeaseRequest) -> Lease {
    match store.load_session(device_id, &[], 10, request).await.unwrap() {
        SessionLoad::Loaded(snapshot) => snapshot.lease,
        other => panic!("expected a grant, got {other:?}"),
    }
}

/// Commits turned down (stale fence, full outbox) among concurrent commits fail
/// alone and write nothing; every other commit of their groups is applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_commits_fail_alone_among_concurrent_commits() {
    let directory = tempfile::tempdir().unwrap();
    let options = StoreOptions { outbox_limit_per_shard: 5, ..StoreOptions::default() };
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open_with(directory.path(), &options).await.unwrap());
    let events: Vec<_> =
        (0..5).map(|index| conformance::event(&format!("full-{index}"), Topic::Results, "k")).collect();
    store.commit(WriteBatch { events, ..WriteBatch::default() }).await.unwrap();
    store.commit(WriteBatch { devices: vec![conformance::device("leased")], ..WriteBatch::default() }).await.unwrap();
    let stale = granted(&store, "leased", &lease_request("a", &["a"], 1)).await;
    let current = granted(&store, "leased", &lease_request("b", &["b"], 1)).await;

    let mut tasks = Vec::new();
    for index in 0..90 {
        let store = store.clone();
        let (stale, current) = (stale.clone(), current.clone());
        tasks.push(tokio::spawn(async move {
            let mut batch = WriteBatch {
                devices: vec![conformance::device(&format!("group-{index:02}"))],
                ..WriteBatch::default()
            };
            match index % 3 {
                0 => batch.fence = Some(Fence::of(&stale, 1_000, false)),
                1 => batch.events = vec![conformance::event(&format!("over-{index}"), Topic::Results, "k")],
                _ => batch.fence = Some(Fence::of(&current, 1_000, false)),
            }
            store.commit(batch).await
        }));
    }
    for (index, task) in tasks.into_iter().enumerate() {
        let result = task.await.unwrap();
        let written = store.get_device(&format!("group-{index:02}")).await.unwrap().is_some();
        match index % 3 {
            0 => assert!(matches!(result, Err(StoreError::Fenced { .. })), "{index}: {result:?}"),
            1 => assert!(matches!(result, Err(StoreError::OutboxFull { len: 5 })), "{index}: {result:?}"),
            _ => result.unwrap(),
        }
        assert_eq!(written, index % 3 == 2, "device of commit {index}");
    }
    assert_eq!(store.outbox_len().await.unwrap(), 5);
}

/// Leases, epochs and registered nodes are in the file: a reopened store keeps the
/// holder, its fence, and numbers the next epoch after every one granted before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_epochs_and_nodes_survive_reopen() {
    let directory = tempfile::tempdir().unwrap();
    let now = omadm_core::clock::now_millis();
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(directory.path()).await.unwrap());
    store.commit(WriteBatch { devices: vec![conformance::device("kept")], ..WriteBatch::default() }).await.unwrap();
    granted(&store, "kept", &lease_request("a", &["a"], now)).await;
    let lease = granted(&store, "kept", &lease_request("b", &["b"], now)).await;
    let node = NodeInfo { id: "b".to_owned(), internal_url: "http://127.0.0.1:9".to_owned() };
    store.heartbeat(&node, conformance::LONG_TTL, now).await.unwrap();
    drop(store);

    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(directory.path()).await.unwrap());
    let held = store.load_session("kept", &[], 10, &lease_request("a", &["a", "b"], now)).await.unwrap();
    assert_eq!(held, SessionLoad::LeaseHeld { node_id: "b".to_owned(), epoch: lease.epoch });
    let other = NodeInfo { id: "c".to_owned(), internal_url: "http://127.0.0.1:10".to_owned() };
    assert_eq!(store.heartbeat(&other, conformance::LONG_TTL, now).await.unwrap(), vec![node, other]);
    let release = WriteBatch { fence: Some(Fence::of(&lease, 1_000, true)), ..WriteBatch::default() };
    store.commit(release).await.unwrap();
    drop(store);

    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(directory.path()).await.unwrap());
    assert_eq!(granted(&store, "kept", &lease_request("a", &["a", "b"], now)).await.epoch, lease.epoch + 1);
}

/// Deleting a device drops its lease but not its epoch: the old holder's fence never holds again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_device_keeps_its_epoch() {
    let (store, _directory) = fresh_store().await;
    store.commit(WriteBatch { devices: vec![conformance::device("gone")], ..WriteBatch::default() }).await.unwrap();
    let lease = granted(&store, "gone", &lease_request("a", &["a"], 1)).await;
    assert!(store.delete_device("gone").await.unwrap());
    store.commit(WriteBatch { devices: vec![conformance::device("gone")], ..WriteBatch::default() }).await.unwrap();
    let old_fence = WriteBatch { fence: Some(Fence::of(&lease, 1_000, false)), ..WriteBatch::default() };
    assert!(matches!(store.commit(old_fence).await, Err(StoreError::Fenced { .. })));
    assert_eq!(granted(&store, "gone", &lease_request("a", &["a"], 1)).await.epoch, lease.epoch + 1);
}

/// This engine fences by holder and epoch: a lease that lapsed while nobody took
/// it over still lets its holder commit (no other node can have written), and
/// that commit renews it from the wall clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lapsed_lease_nobody_took_still_admits_its_holder() {
    let (store, _directory) = fresh_store().await;
    store.commit(WriteBatch { devices: vec![conformance::device("lapsed")], ..WriteBatch::default() }).await.unwrap();
    let request = LeaseRequest { ttl: 10, ..lease_request("a", &["a"], 1_000) };
    let lease = granted(&store, "lapsed", &request).await;
    let step = WriteBatch { fence: Some(Fence::of(&lease, conformance::LONG_TTL, false)), ..WriteBatch::default() };
    store.commit(step).await.unwrap();
    let now = omadm_core::clock::now_millis();
    let held = store.load_session("lapsed", &[], 10, &lease_request("b", &["a", "b"], now)).await.unwrap();
    assert_eq!(held, SessionLoad::LeaseHeld { node_id: "a".to_owned(), epoch: lease.epoch });
}
