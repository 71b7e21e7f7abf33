//! What the notifier's end-to-end tests share: the embedded backends, devices that listen on real UDP sockets, requests through the
//! core use case, and an observer group that reads the outcome events off the bus.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use omadm_core::bus::relay::OutboxRelay;
use omadm_core::bus::{Bus, BusOptions, Event, Subscription, Topic};
use omadm_core::clock::now_millis;
use omadm_core::model::Device;
use omadm_core::store::{Store, WriteBatch};
use omadm_core::usecase::notify::{NotificationRequest, request_notification};
use omadm_notifier::{NotifierArgs, NotifierSettings};
use omadm_proto::notification::{Notification, unwrap_push, verify};
use tokio::net::UdpSocket;

pub const SERVER_ID: &str = "dms.test";

/// The embedded mode's backends in a temp dir, with the outbox relay `omadm serve` runs.
pub struct Embedded {
    pub store: Arc<dyn Store>,
    pub bus: Arc<dyn Bus>,
    pub relay: OutboxRelay,
    _directory: tempfile::TempDir,
}

pub async fn embedded() -> Embedded {
    let directory = tempfile::tempdir().unwrap();
    let store = omadm_core::store::open(directory.path().join("store").to_str().unwrap()).await.unwrap();
    let bus = omadm_core::bus::open_with(directory.path().join("events").to_str().unwrap(), &BusOptions::default())
        .await
        .unwrap();
    let relay = OutboxRelay::spawn(store.clone(), bus.clone());
    Embedded { store, bus, relay, _directory: directory }
}
/// How long a test waits for something that should happen within a second or two.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// A device that listens for WAP Push on a UDP socket of its own.
pub struct ListeningDevice {
    pub id: String,
    pub secret: Option<String>,
    pub socket: UdpSocket,
}

/// A received Package#0: who sent it (the notifier's socket) and what it said, verified.
#[derive(Debug, Clone)]
pub struct Received {
    pub from: SocketAddr,
    pub notification: Notification,
}

impl ListeningDevice {
    /// Registers `id` in `store` with a notify address on a fresh loopback socket, `secret` as its AuthSecret
    /// and an inventory read just now.
    pub async fn register(store: &dyn Store, id: &str, secret: Option<&str>) -> ListeningDevice {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let now = now_millis();
        let mut device = Device::new(id, omadm_core::auth::credentials_for(id, "omadm", "password"), now);
        device.notify_address = Some(socket.local_addr().unwrap());
        device.auth_secret = secret.map(str::to_owned);
        device.inventory.updated_at = Some(now);
        store.commit(WriteBatch { devices: vec![device], ..WriteBatch::default() }).await.unwrap();
        ListeningDevice { id: id.to_owned(), secret: secret.map(str::to_owned), socket }
    }

    /// The next datagram, unwrapped (WSP) and decoded; verified with the device's secret (at most a minute old).
    pub async fn receive(&self, within: Duration) -> Option<Received> {
        let mut buffer = [0u8; 1500];
        let (length, from) = tokio::time::timeout(within, self.socket.recv_from(&mut buffer)).await.ok()?.unwrap();
        let package = unwrap_push(&buffer[..length]).unwrap();
        let notification = match &self.secret {
            Some(secret) => verify(package, Some(secret.as_bytes()), posix_now(), Some(60)).unwrap(),
            None => Notification::decode(package).unwrap(),
        };
        assert_eq!(notification.server_id.as_deref(), Some(SERVER_ID));
        Some(Received { from, notification })
    }

    /// Every datagram that arrives within `quiet` of the previous one.
    pub async fn receive_all(&self, quiet: Duration) -> Vec<Received> {
        let mut received = Vec::new();
        while let Some(one) = self.receive(quiet).await {
            received.push(one);
        }
        received
    }
}

fn posix_now() -> u32 {
    u32::try_from(now_millis() / 1000).unwrap()
}

/// Asks for a Package#0 for `device_id` the way the operator API does; returns the request id.
pub async fn request(store: &dyn Store, device_id: &str, request_mos: bool) -> String {
    let request = NotificationRequest {
        device_id,
        request_mos,
        requested_by: "operator",
        preferred_con_types: &[],
        nonce: rand_nonce(),
    };
    request_notification(store, request, now_millis()).await.unwrap().request_id
}

fn rand_nonce() -> u128 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(1);
    (u128::from(std::process::id()) << 96)
        | (u128::from(now_millis()) << 32)
        | u128::from(COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// Notifier settings for a test: this server id, datagrams from loopback, `dedup_window` seconds, one attempt
/// per request (a failure is the outcome at once; `tests/retries.rs` tries again).
pub fn settings(dedup_window: u64) -> NotifierSettings {
    NotifierSettings::resolve(&NotifierArgs {
        server_id: Some(SERVER_ID.to_owned()),
        dedup_window: Some(dedup_window),
        udp_bind: Some("127.0.0.1:0".parse().unwrap()),
        batch_size: Some(100),
        max_attempts: Some(1),
        ..NotifierArgs::default()
    })
    .unwrap()
}

/// Reads the notifications topic in a group of its own and keeps the outcome events by request id.
pub struct Observer {
    subscription: Box<dyn Subscription>,
    /// request id -> the outcome events seen for it, in arrival order.
    pub outcomes: BTreeMap<String, Vec<Event>>,
    /// Events of the topic that belong to no request (`push.registered`, `push.unregistered`), in arrival order.
    pub others: Vec<Event>,
}

impl Observer {
    pub async fn start(bus: &Arc<dyn Bus>) -> Observer {
        let subscription = bus.subscribe("test-observer", &[Topic::Notifications]).await.unwrap();
        Observer { subscription, outcomes: BTreeMap::new(), others: Vec::new() }
    }

    /// Reads until `done` holds for what was seen; panics after [`PATIENCE`].
    pub async fn wait_until(&mut self, done: impl Fn(&BTreeMap<String, Vec<Event>>) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !done(&self.outcomes) {
            assert!(Instant::now() < deadline, "outcomes so far: {:#?}", self.summary());
            let batch = self.subscription.next_batch(100, Duration::from_millis(200)).await.unwrap();
            for delivery in batch {
                let event = delivery.event;
                if event.event_type == "notification.requested" || event.event_type == "notification.retry" {
                    continue;
                }
                // The topic carries the device edge's push.registered / push.unregistered too: no request id.
                let Some(request_id) = event.payload["request_id"].as_str().map(str::to_owned) else {
                    self.others.push(event);
                    continue;
                };
                self.outcomes.entry(request_id).or_default().push(event);
            }
        }
    }

    /// Waits for an outcome of every request in `request_ids`.
    pub async fn wait_for(&mut self, request_ids: &[String]) {
        self.wait_until(|outcomes| request_ids.iter().all(|id| outcomes.contains_key(id))).await;
    }

    /// The type of the first outcome of `request_id`.
    pub fn outcome(&self, request_id: &str) -> &Event {
        &self.outcomes[request_id][0]
    }

    pub fn summary(&self) -> BTreeMap<String, Vec<String>> {
        self.outcomes
            .iter()
            .map(|(id, events)| (id.clone(), events.iter().map(|event| event.event_type.clone()).collect()))
            .collect()
    }
}
