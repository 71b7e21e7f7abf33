//! Data the tests put in a Store or hand to a device: a sample DevInfo, a registered device, queued commands,
//! repository content.
//!
//! ```text
//! omadm_testkit::fixtures::register(&*store, "IMEI:1", "s3cret").await;
//! omadm_testkit::fixtures::enqueue(&*store, "IMEI:1", json!([["GET", "./DevInfo/Mod"]])).await;
//! omadm_testkit::fixtures::publish(&*store, &content, "fw/v2.bin", "application/octet-stream", b"...", None).await;
//! let devinfo = DevInfo { firmware_version: "2.0".into(), ..omadm_testkit::fixtures::devinfo("IMEI:1") };
//! ```

use omadm_core::auth::{DEFAULT_REALM, credentials_for};
use omadm_core::clock;
use omadm_core::content::ContentEngine;
use omadm_core::model::{CommandOrigin, ContentSource, Device, NewCommand, RepositoryItem};
use omadm_core::store::{Store, WriteBatch};
use omadm_proto::command::Command;
use omadm_proto::mo::DevInfo;

/// The DevInfo of an `Example` `X1` meter on firmware 1.0.0, software 5.1, hardware rev B.
pub fn devinfo(device_id: &str) -> DevInfo {
    DevInfo {
        device_id: device_id.to_owned(),
        manufacturer: "Example".into(),
        model: "X1".into(),
        dm_client_version: "2.0".into(),
        language: "en-US".into(),
        device_type: "meter".into(),
        oem: "Example OEM".into(),
        firmware_version: "1.0.0".into(),
        software_version: "5.1".into(),
        hardware_version: "rev B".into(),
        bearer: None,
        extensions: None,
    }
}

/// Registers `device_id` with `password` in the default realm, as the operator API would.
pub async fn register(store: &dyn Store, device_id: &str, password: &str) {
    let device = Device::new(device_id, credentials_for(device_id, DEFAULT_REALM, password), clock::now_millis());
    store.commit(WriteBatch { devices: vec![device], ..WriteBatch::default() }).await.unwrap();
}

/// Queues `commands`, given in the Package#2 array form (`[["GET", uri], ...]`), as operator commands; returns
/// their ids.
pub async fn enqueue(store: &dyn Store, device_id: &str, commands: serde_json::Value) -> Vec<u64> {
    let commands = commands
        .as_array()
        .unwrap()
        .iter()
        .map(|command| NewCommand {
            command: Command::from_json(command).unwrap(),
            origin: CommandOrigin::Operator,
            campaign_id: None,
        })
        .collect();
    store.enqueue_commands(device_id, commands, clock::now_millis()).await.unwrap()
}

/// Stores `body` at repository `path`: its bytes in `content`, its record in `store`; a device upload of
/// `uploader` when given, operator content otherwise.
pub async fn publish(
    store: &dyn Store,
    content: &ContentEngine,
    path: &str,
    content_type: &str,
    body: &[u8],
    uploader: Option<&str>,
) -> RepositoryItem {
    let chunks = futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::copy_from_slice(body))]);
    let blob = content.write(chunks, u64::MAX).await.expect("content engine write");
    let item = RepositoryItem {
        path: path.to_owned(),
        content_type: content_type.to_owned(),
        blob: blob.key,
        size: blob.size,
        sha256: blob.sha256,
        source: if uploader.is_some() { ContentSource::Device } else { ContentSource::Operator },
        device_id: uploader.map(str::to_owned),
        stored_at: clock::now_millis(),
    };
    store.put_content(item.clone()).await.expect("store put_content");
    item
}

/// Every byte of a repository item, read back from `content`.
pub async fn content_bytes(content: &ContentEngine, item: &RepositoryItem) -> Vec<u8> {
    use futures_util::TryStreamExt as _;
    let stream = content.read(&item.blob, 0..item.size).await.expect("content engine read");
    let chunks: Vec<bytes::Bytes> = stream.try_collect().await.expect("content engine stream");
    chunks.concat()
}

/// Device number `index` of a synthetic fleet: `IMEI:` and 15 digits, maker ACME, half on model X1 (even
/// numbers) and half on X2, every tenth on FwV 1.2 and the rest on 1.1, tagged by region (eu, us, apac in turn).
pub fn fleet_device(index: usize, credentials: &omadm_core::model::Credentials) -> Device {
    let mut device = Device::new(format!("IMEI:{index:015}"), credentials.clone(), 0);
    device.inventory.man = Some("ACME".to_owned());
    device.inventory.model = Some(if index % 2 == 0 { "X1" } else { "X2" }.to_owned());
    device.inventory.fwv = Some(if index % 10 == 0 { "1.2" } else { "1.1" }.to_owned());
    device.tags.insert("region".to_owned(), ["eu", "us", "apac"][index % 3].to_owned());
    device
}

/// Registers `devices` [`fleet_device`]s in commits of `batch`, all with one password hash (registration speed
/// is not what a benchmark on such a fleet measures).
pub async fn register_fleet(store: &dyn Store, devices: usize, batch: usize) {
    let credentials = credentials_for("device", DEFAULT_REALM, "password");
    for first in (0..devices).step_by(batch.max(1)) {
        let page = (first..(first + batch).min(devices)).map(|index| fleet_device(index, &credentials)).collect();
        store.commit(WriteBatch { devices: page, ..WriteBatch::default() }).await.unwrap();
    }
}

/// Lists every device `filter` matches, `page` at a time: how many, and how long the walk took.
pub async fn walk_devices(
    store: &dyn Store,
    filter: &omadm_core::model::DeviceFilter,
    page: usize,
) -> (usize, std::time::Duration) {
    let started = std::time::Instant::now();
    let mut listed = 0;
    let mut after: Option<String> = None;
    loop {
        let found = store.list_devices(filter, after.as_deref(), page).await.unwrap();
        listed += found.devices.len();
        match found.next {
            Some(next) => after = Some(next),
            None => return (listed, started.elapsed()),
        }
    }
}
