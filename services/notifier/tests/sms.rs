//! The SMS transport end to end: the embedded store and JSONL bus, the notifier bound to the test kit's SMSC
//! (an SMPP 3.4 server on a loopback port, real TCP), and every recorded submit_sm put back together with the
//! proto reassembler into a WSP push whose Package#0 verifies with the device's secret.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use omadm_core::clock::now_millis;
use omadm_core::model::{Device, NotificationOutcome, NotificationRecord, NotificationState, NotifyTransport};
use omadm_core::store::{Store, WriteBatch};
use omadm_notifier::plan::Destination;
use omadm_notifier::{Dispatch, Notifier, NotifierSettings, SmppBind, SmppSettings, SmppTransport, Transport as _};
use omadm_proto::notification::{MAX_SMS_OCTETS, Notification, SmsReassembler, parse_segment, unwrap_push, verify};
use omadm_runtime::ops::Readiness;
use omadm_testkit::smsc::{SmscOptions, Submitted, TestSmsc};
use support::*;

/// A SERVER-ID long enough that every Package#0 needs two SMS: concatenation is exercised on every device.
fn long_server_id() -> String {
    format!("{SERVER_ID}/{}", "x".repeat(100))
}

/// Notifier settings with the SMSC at `port` (or none), `tps` submits per second, and `server_id`.
fn sms_settings(port: Option<u16>, tps: u32, server_id: &str) -> NotifierSettings {
    let smpp = port.map(|port| SmppSettings {
        host: "127.0.0.1".to_owned(),
        port,
        system_id: "omadm".to_owned(),
        password: "pw".to_owned(),
        system_type: "DM".to_owned(),
        source_addr: "OMADM".to_owned(),
        tps,
        bind: SmppBind::Transceiver,
    });
    NotifierSettings { server_id: server_id.to_owned(), smpp, ..settings(0) }
}

/// Registers a device reachable by SMS only, signed with `secret`.
async fn register_phone(store: &dyn Store, id: &str, msisdn: &str, secret: &str) {
    let now = now_millis();
    let mut device = Device::new(id, omadm_core::auth::credentials_for(id, "omadm", "password"), now);
    device.msisdn = Some(msisdn.to_owned());
    device.auth_secret = Some(secret.to_owned());
    device.inventory.updated_at = Some(now);
    store.commit(WriteBatch { devices: vec![device], ..WriteBatch::default() }).await.unwrap();
}

fn msisdn(index: usize) -> String {
    format!("+4917000{index:05}")
}

/// The number [`msisdn`] gave the device `IMEI:{index}`.
fn msisdn_of(device_id: &str) -> String {
    msisdn(device_id.trim_start_matches("IMEI:").parse().unwrap())
}

/// How many delivery reports (`notification.delivered` or `.undelivered`) are among a request's events.
fn reports(events: Option<&Vec<omadm_core::bus::Event>>) -> usize {
    events.map_or(0, |events| events.iter().filter(|event| event.event_type.ends_with("delivered")).count())
}

/// A notifier on the world's store and bus.
async fn start_notifier(world: &Embedded, settings: NotifierSettings) -> Notifier {
    Notifier::start(world.store.clone(), world.bus.clone(), settings, Arc::new(Readiness::new())).await.unwrap()
}

/// The recorded submits put back together per destination (segments fed last first), each push's Package#0.
fn packages_by_destination(submits: &[Submitted]) -> BTreeMap<String, Vec<Vec<u8>>> {
    let mut reassembler = SmsReassembler::default();
    let mut packages: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    for submit in submits.iter().rev() {
        if let Some(pdu) = reassembler.accept(&submit.destination_addr, &submit.short_message, 0).unwrap() {
            let package = unwrap_push(&pdu).unwrap().to_vec();
            packages.entry(format!("+{}", submit.destination_addr)).or_default().push(package);
        }
    }
    assert_eq!(reassembler.pending(), 0, "every segment found its message");
    packages
}

fn posix_now() -> u32 {
    u32::try_from(now_millis() / 1000).unwrap()
}

async fn wait_for_submits(smsc: &TestSmsc, count: usize) {
    let deadline = Instant::now() + PATIENCE;
    while smsc.submits().len() < count {
        assert!(Instant::now() < deadline, "{} of {count} submits", smsc.submits().len());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_phones_get_verified_pushes_through_the_smsc_despite_a_refused_bind_and_throttling() {
    let smsc = TestSmsc::start(SmscOptions { refuse_binds: 1, throttle_submits: 2, ..SmscOptions::default() });
    let world = embedded().await;
    let store = &*world.store;
    let server_id = long_server_id();
    let mut requests = Vec::new();
    for index in 0..100 {
        let id = format!("IMEI:{index}");
        register_phone(store, &id, &msisdn(index), &format!("secret {index}")).await;
        requests.push(request(store, &id, false).await);
    }
    let notifier = start_notifier(&world, sms_settings(Some(smsc.port()), 1000, &server_id)).await;
    let mut observer = Observer::start(&world.bus).await;
    observer.wait_for(&requests).await;

    let mut sent_ids = BTreeMap::new();
    for (index, request_id) in requests.iter().enumerate() {
        let sent = observer.outcome(request_id);
        assert_eq!(sent.event_type, "notification.sent", "{:?}", sent.payload);
        assert_eq!(sent.payload["transport"], "sms");
        sent_ids.insert(msisdn(index), sent.payload["notification_id"].as_u64().unwrap());
    }
    let submits = smsc.submits();
    assert_eq!(submits.len(), 200, "two segments per device");
    for submit in &submits {
        assert_eq!((submit.esm_class, submit.data_coding, submit.registered_delivery), (0x40, 0x04, 1));
        assert_eq!((submit.dest_addr_ton, submit.dest_addr_npi), (1, 1), "international, ISDN");
        assert_eq!(submit.source_addr, "OMADM");
        assert!(submit.short_message.len() <= MAX_SMS_OCTETS);
        let segment = parse_segment(&submit.short_message).unwrap();
        assert_eq!(segment.ports.map(|ports| (ports.destination, ports.source)), Some((2948, 9200)));
        assert!(segment.concatenation.is_some());
    }
    let packages = packages_by_destination(&submits);
    assert_eq!(packages.len(), 100);
    for index in 0..100 {
        let number = msisdn(index);
        let received = &packages[&number];
        assert_eq!(received.len(), 1, "{number}: one push");
        let secret = format!("secret {index}");
        let notification = verify(&received[0], Some(secret.as_bytes()), posix_now(), Some(60)).unwrap();
        assert_eq!(notification.server_id.as_deref(), Some(server_id.as_str()));
        assert_eq!(notification.notification_id.map(u64::from), Some(sent_ids[&number]));
        assert!(verify(&received[0], Some(b"another device's secret"), posix_now(), None).is_err());
    }
    // The refused bind and the throttled submits were retried: one bind failed, one held, two submits waited.
    let binds = smsc.binds();
    assert_eq!(binds.iter().map(|bind| bind.accepted).collect::<Vec<_>>(), [false, true]);
    assert_eq!(
        (binds[1].system_id.as_str(), binds[1].password.as_str(), binds[1].system_type.as_str()),
        ("omadm", "pw", "DM")
    );
    assert_eq!(binds[1].interface_version, 0x34, "SMPP 3.4");
    assert!(binds[1].transceiver, "bound as transceiver, for the receipts");
    assert_eq!(smsc.throttled(), 2);
    let metrics = omadm_notifier::metrics::metrics();
    assert!(metrics.sms_submits.with_label_values(&["throttled"]).get() >= 2);
    assert!(metrics.smpp_binds.with_label_values(&["refused"]).get() >= 1);

    // Both segments' receipts came back on the bind; the last one's says delivered: one report per request.
    observer.wait_until(|outcomes| requests.iter().all(|id| reports(outcomes.get(id)) == 1)).await;
    for request_id in &requests {
        let report =
            observer.outcomes[request_id].iter().find(|event| event.event_type.ends_with("delivered")).unwrap();
        assert_eq!(report.event_type, "notification.delivered", "{:?}", report.payload);
        let record = store.get_notification(request_id).await.unwrap().unwrap();
        let delivery = record.delivery.as_ref().unwrap();
        assert_eq!(
            (delivery.delivered, delivery.status.as_str(), delivery.transport.as_str()),
            (true, "DELIVRD", "sms")
        );
        let last_segment = submits
            .iter()
            .rfind(|submit| format!("+{}", submit.destination_addr) == msisdn_of(&record.device_id))
            .unwrap();
        assert_eq!(delivery.message_id, last_segment.message_id, "the last segment's receipt decides");
        assert_eq!(record.state(), "sent", "a receipt does not change the outcome");
    }
    let deadline = Instant::now() + PATIENCE;
    while smsc.receipt_answers().len() < 200 {
        assert!(Instant::now() < deadline, "{} of 200 receipts answered", smsc.receipt_answers().len());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(smsc.receipt_answers().iter().all(|(_, status)| *status == 0), "every receipt answered ESME_ROK");
    assert!(metrics.sms_receipts.with_label_values(&["earlier_segment"]).get() >= 100);
    notifier.stop().await;
    world.relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_bind_is_bound_again_and_the_rate_limit_holds() {
    let invalid = msisdn(99);
    let options = SmscOptions { invalid_destinations: vec![invalid[1..].to_owned()], ..SmscOptions::default() };
    let smsc = TestSmsc::start(options);
    let world = embedded().await;
    let store = &*world.store;
    for index in 0..10 {
        register_phone(store, &format!("IMEI:{index}"), &msisdn(index), "s").await;
    }
    // Five submits per second, short packages (one SMS each).
    let notifier = start_notifier(&world, sms_settings(Some(smsc.port()), 5, SERVER_ID)).await;
    let mut observer = Observer::start(&world.bus).await;
    let first = request(store, "IMEI:0", false).await;
    observer.wait_for(std::slice::from_ref(&first)).await;
    assert_eq!(smsc.binds().len(), 1);

    // The SMSC drops the connection: the next send binds again and is delivered.
    smsc.drop_connections();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let mut requests = Vec::new();
    for index in 1..10 {
        requests.push(request(store, &format!("IMEI:{index}"), false).await);
    }
    observer.wait_for(&requests).await;
    wait_for_submits(&smsc, 10).await;
    for request_id in &requests {
        assert_eq!(observer.outcome(request_id).event_type, "notification.sent");
    }
    assert_eq!(smsc.binds().iter().filter(|bind| bind.accepted).count(), 2, "bound again after the drop");
    // Ten submits at five per second, a full bucket of five to start: at least the last four waited for tokens.
    assert!(started.elapsed() >= Duration::from_millis(700), "{:?}", started.elapsed());
    let packages = packages_by_destination(&smsc.submits());
    assert_eq!(packages.len(), 10);
    // A number the SMSC refuses is not tried again: the status is about the message, not the SMSC.
    register_phone(store, "IMEI:99", &invalid, "s").await;
    let refused = request(store, "IMEI:99", false).await;
    observer.wait_for(std::slice::from_ref(&refused)).await;
    let failed = observer.outcome(&refused);
    assert_eq!(failed.payload["reason"], "transport_rejected", "final: no attempt would change it");
    assert!(failed.payload["detail"].as_str().unwrap().contains("Rinvdstadr"), "{}", failed.payload["detail"]);
    assert_eq!(smsc.invalid_destinations(), 1, "one try");
    for received in packages.values() {
        let notification = Notification::decode(&received[0]).unwrap();
        assert_eq!(notification.server_id.as_deref(), Some(SERVER_ID));
    }
    notifier.stop().await;
    world.relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_smsc_or_with_one_that_refuses_every_bind_the_request_fails_with_a_reason() {
    let world = embedded().await;
    let store = &*world.store;
    register_phone(store, "IMEI:1", "+491701234567", "s").await;
    let mut observer = Observer::start(&world.bus).await;

    let no_smsc = start_notifier(&world, sms_settings(None, 1, SERVER_ID)).await;
    let unreachable = request(store, "IMEI:1", false).await;
    observer.wait_for(std::slice::from_ref(&unreachable)).await;
    let failed = observer.outcome(&unreachable);
    assert_eq!(
        (failed.event_type.as_str(), failed.payload["reason"].as_str()),
        ("notification.failed", Some("no_transport"))
    );
    no_smsc.stop().await;

    let smsc = TestSmsc::start(SmscOptions { refuse_binds: usize::MAX, ..SmscOptions::default() });
    let refusing = start_notifier(&world, sms_settings(Some(smsc.port()), 100, SERVER_ID)).await;
    let refused = request(store, "IMEI:1", false).await;
    observer.wait_for(std::slice::from_ref(&refused)).await;
    let failed = observer.outcome(&refused);
    assert_eq!(failed.event_type, "notification.failed");
    assert_eq!(
        (failed.payload["reason"].as_str(), failed.payload["transport"].as_str()),
        (Some("transport_error"), Some("sms"))
    );
    assert!(failed.payload["detail"].as_str().unwrap().contains("Rbindfail"), "{}", failed.payload["detail"]);
    assert_eq!(smsc.binds().len(), 5, "five tries, then the send fails");
    // The SMSC is now known unavailable: the next request fails at once, without binding again.
    let cooling = request(store, "IMEI:1", false).await;
    observer.wait_for(std::slice::from_ref(&cooling)).await;
    let failed = observer.outcome(&cooling);
    assert_eq!(failed.payload["reason"], "transport_error");
    assert!(failed.payload["detail"].as_str().unwrap().contains("unavailable"), "{}", failed.payload["detail"]);
    assert_eq!(smsc.binds().len(), 5, "no bind during the cool-down");
    assert!(smsc.submits().is_empty());
    refusing.stop().await;
    world.relay.stop().await;
}

/// A device whose operator put SMS first: with an SMSC that refuses every bind, its Package#0 goes out over UDP,
/// the next transport of its order, as one `notification.sent` (transport udp) with one NOTIFICATION-ID.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sms_first_device_falls_back_to_udp_when_the_smsc_refuses() {
    let world = embedded().await;
    let store = &*world.store;
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut device = Device::new("IMEI:both", omadm_core::auth::credentials_for("IMEI:both", "omadm", "pw"), 1);
    device.msisdn = Some("+491701234567".to_owned());
    device.notify_address = Some(socket.local_addr().unwrap());
    device.notify_order = vec![NotifyTransport::Sms, NotifyTransport::Udp];
    device.auth_secret = Some("both secret".to_owned());
    store.commit(WriteBatch { devices: vec![device], ..WriteBatch::default() }).await.unwrap();
    let smsc = TestSmsc::start(SmscOptions { refuse_binds: usize::MAX, ..SmscOptions::default() });
    let fallbacks_before = omadm_notifier::metrics::metrics().notification_fallbacks.with_label_values(&["udp"]).get();
    let notifier = start_notifier(&world, sms_settings(Some(smsc.port()), 100, SERVER_ID)).await;
    let mut observer = Observer::start(&world.bus).await;
    let requested = request(store, "IMEI:both", false).await;
    observer.wait_for(std::slice::from_ref(&requested)).await;
    let sent = observer.outcome(&requested);
    assert_eq!((sent.event_type.as_str(), sent.payload["transport"].as_str()), ("notification.sent", Some("udp")));
    assert!(!smsc.binds().is_empty(), "SMS was tried first");
    assert!(smsc.submits().is_empty());
    let mut buffer = [0u8; 1500];
    let (length, _) =
        tokio::time::timeout(Duration::from_secs(10), socket.recv_from(&mut buffer)).await.unwrap().unwrap();
    let package = unwrap_push(&buffer[..length]).unwrap();
    let verified = verify(package, Some(b"both secret"), posix_now(), Some(60)).unwrap();
    assert_eq!(u64::from(verified.notification_id.unwrap()), sent.payload["notification_id"].as_u64().unwrap());
    assert_eq!(
        omadm_notifier::metrics::metrics().notification_fallbacks.with_label_values(&["udp"]).get(),
        fallbacks_before + 1
    );
    notifier.stop().await;
    world.relay.stop().await;
}

/// A receipt reaches its request whichever replica's bind the SMSC hands it to (another replica of the account
/// is bound first, and the SMSC routes every receipt to the other bind), an undeliverable number's receipt says
/// so, and a transmitter bind reads none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_reach_their_request_through_any_replicas_bind() {
    let undeliverable = msisdn(1);
    let options = SmscOptions {
        undeliverable: vec![undeliverable[1..].to_owned()],
        receipts_elsewhere: true,
        ..SmscOptions::default()
    };
    let smsc = TestSmsc::start(options);
    let world = embedded().await;
    let store = &*world.store;
    for index in 0..3 {
        register_phone(store, &format!("IMEI:{index}"), &msisdn(index), "s").await;
    }
    // The other replica: the same account and store, bound before the notifier, its one push to a phone of its own
    // (its record written as a dispatcher writes it, so the notifier has nothing to dispatch for it).
    let settings = sms_settings(Some(smsc.port()), 100, SERVER_ID).smpp.unwrap();
    let other = SmppTransport::new(settings, world.store.clone());
    let other_request = "0".repeat(32);
    let other_record = NotificationRecord {
        request_id: other_request.clone(),
        device_id: "IMEI:9".to_owned(),
        requested_at: now_millis(),
        requested_by: "test".to_owned(),
        outcome: Some(NotificationOutcome {
            state: NotificationState::Sent,
            at: now_millis(),
            transport: Some("sms".to_owned()),
            notification_id: Some(9),
            reason: None,
            detail: None,
            collapsed_into: None,
        }),
        ..NotificationRecord::default()
    };
    store.commit(WriteBatch { notifications: vec![other_record], ..WriteBatch::default() }).await.unwrap();
    let destination = Destination::Sms { msisdn: msisdn(9) };
    let dispatch = Dispatch { device_id: "IMEI:9", request_id: &other_request, notification_id: 9 };
    other.send(&destination, &[0x20, 0x00], &dispatch).await.unwrap();

    let notifier = start_notifier(&world, sms_settings(Some(smsc.port()), 100, SERVER_ID)).await;
    let mut observer = Observer::start(&world.bus).await;
    let mut requests = Vec::new();
    for index in 0..3 {
        requests.push(request(store, &format!("IMEI:{index}"), false).await);
    }
    observer.wait_until(|outcomes| requests.iter().all(|id| reports(outcomes.get(id)) == 1)).await;
    for (index, request_id) in requests.iter().enumerate() {
        let expected = if index == 1 { "notification.undelivered" } else { "notification.delivered" };
        let report =
            observer.outcomes[request_id].iter().find(|event| event.event_type.ends_with("delivered")).unwrap();
        assert_eq!(report.event_type, expected, "{:?}", report.payload);
        let delivery = store.get_notification(request_id).await.unwrap().unwrap().delivery.unwrap();
        assert_eq!(delivery.status, if index == 1 { "UNDELIV" } else { "DELIVRD" });
    }
    // The other replica's receipt came on its own bind (the only one then); the notifier's three all went to the
    // other replica's (connection 1), which filed them under the notifier's requests.
    let sent = smsc.receipts_sent();
    let on_first = sent.iter().filter(|(connection, _)| *connection == 1).count();
    assert_eq!((sent.len(), on_first), (4, 4), "{sent:?}");
    let record = store.get_notification(&other_request).await.unwrap().unwrap();
    assert_eq!(record.delivery.map(|delivery| delivery.delivered), Some(true));
    notifier.stop().await;

    // A transmitter bind gets no receipts.
    let transmitter =
        SmppSettings { bind: SmppBind::Transmitter, ..sms_settings(Some(smsc.port()), 100, SERVER_ID).smpp.unwrap() };
    let quiet_smsc = TestSmsc::start(SmscOptions::default());
    let transmitter = SmppSettings { port: quiet_smsc.port(), ..transmitter };
    let lone = SmppTransport::new(transmitter, world.store.clone());
    let dispatch = Dispatch { device_id: "IMEI:0", request_id: &requests[0], notification_id: 10 };
    lone.send(&Destination::Sms { msisdn: msisdn(0) }, &[0x20, 0x00], &dispatch).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(quiet_smsc.binds().iter().map(|bind| bind.transceiver).collect::<Vec<_>>(), [false]);
    assert!(quiet_smsc.receipts_sent().is_empty(), "no receipt on a transmitter bind");
    world.relay.stop().await;
}
