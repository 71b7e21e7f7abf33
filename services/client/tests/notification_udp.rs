//! Package#0 over real UDP on loopback: WSP-pushed notifications sent to the listener come out of the channel
//! exactly when they pass the filter; duplicates and garbage are dropped without stopping the listener.

// Test helpers outside #[test] functions unwrap too: a failure there is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::net::SocketAddr;
use std::time::Duration;

use omadm_client::notification::{
    AcceptedNotification, DropKind, NotificationCounts, NotificationInbox, NotificationPolicy, ServerAccount,
    UdpNotificationListener,
};
use omadm_proto::notification::{self, ConnectionType, Notification, PreferredConnectionTypes};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

const SERVER: &str = "com.example.dm";
const SECRET: &str = "AuthSecret";
const NOW: u32 = 1_700_000_000;
const WAIT: Duration = Duration::from_secs(5);

fn fixed_clock() -> u32 {
    NOW
}

fn inbox(accounts: Vec<ServerAccount>) -> (NotificationInbox, mpsc::Receiver<AcceptedNotification>) {
    let policy = NotificationPolicy { max_age_seconds: Some(600), ..NotificationPolicy::default() };
    let (inbox, accepted) = NotificationInbox::new("device-under-test", accounts, policy, 64);
    (inbox.with_clock(fixed_clock), accepted)
}

fn signed_account() -> ServerAccount {
    ServerAccount::new(SERVER, Some(SECRET.into()))
}

fn signed_package(notification_id: u16, request_mos: bool, secret: &str, time: u32) -> Vec<u8> {
    Notification {
        server_id: Some(SERVER.into()),
        notification_id: Some(notification_id),
        request_mos,
        preferred_connection_types: Some(PreferredConnectionTypes::new(vec![ConnectionType::Wireline]).unwrap()),
        ..Notification::default()
    }
    .encode_signed(secret.as_bytes(), time)
    .unwrap()
}

fn pushed(notification_id: u16) -> Vec<u8> {
    notification::wrap_push(&signed_package(notification_id, false, SECRET, NOW - 10), 1)
}

async fn sender() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").await.unwrap()
}

async fn next_accepted(accepted: &mut mpsc::Receiver<AcceptedNotification>) -> AcceptedNotification {
    tokio::time::timeout(WAIT, accepted.recv()).await.expect("an accepted notification in time").unwrap()
}

/// Waits until the counters satisfy `condition`: drops produce nothing on the channel to wait for.
async fn counts_reach(
    inbox: &NotificationInbox,
    condition: impl Fn(&NotificationCounts) -> bool,
) -> NotificationCounts {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let counts = inbox.counts();
        if condition(&counts) {
            return counts;
        }
        assert!(tokio::time::Instant::now() < deadline, "counts never reached the expected state: {counts:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn listen(inbox: &NotificationInbox) -> (UdpNotificationListener, SocketAddr) {
    let listener = inbox.listen_udp("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let address = listener.local_address();
    assert_ne!(address.port(), 0);
    (listener, address)
}

#[tokio::test]
async fn exactly_the_accepted_notifications_come_out_and_garbage_does_not_stop_the_listener() {
    let (inbox, mut accepted) = inbox(vec![signed_account()]);
    let (listener, address) = listen(&inbox).await;
    let socket = sender().await;

    let with_req_mos = notification::wrap_push(&signed_package(1, true, SECRET, NOW - 10), 9);
    let datagrams: Vec<(Vec<u8>, Option<DropKind>)> = vec![
        (with_req_mos.clone(), None),
        (with_req_mos, Some(DropKind::Duplicate)),
        (b"definitely not a push".to_vec(), Some(DropKind::NotAWapPush)),
        (vec![], Some(DropKind::NotAWapPush)),
        // A bare Package#0 without its WSP framing is not accepted over UDP.
        (signed_package(2, false, SECRET, NOW), Some(DropKind::NotAWapPush)),
        (notification::wrap_push(b"\x21\x00\x10", 2), Some(DropKind::Malformed)),
        (notification::wrap_push(&signed_package(3, false, "wrong secret", NOW), 3), Some(DropKind::WrongDigest)),
        (notification::wrap_push(&signed_package(4, false, SECRET, NOW - 601), 4), Some(DropKind::TooOld)),
        (notification::wrap_push(&signed_package(5, false, SECRET, NOW + 601), 5), Some(DropKind::FromTheFuture)),
        (pushed(6), None),
        (pushed(7), None),
        (pushed(6), Some(DropKind::Duplicate)),
        // The ids of dropped notifications were not used up.
        (pushed(3), None),
    ];
    for (datagram, _) in &datagrams {
        socket.send_to(datagram, address).await.unwrap();
    }

    let first = next_accepted(&mut accepted).await;
    assert_eq!(
        first,
        AcceptedNotification {
            server_id: SERVER.into(),
            notification_id: Some(1),
            request_mos: true,
            preferred_connection_types: vec![ConnectionType::Wireline],
            signed_at: Some(NOW - 10),
        }
    );
    for expected_id in [6, 7, 3] {
        assert_eq!(next_accepted(&mut accepted).await.notification_id, Some(expected_id));
    }
    let expected_drops = datagrams.iter().filter(|(_, drop)| drop.is_some()).count() as u64;
    let counts = counts_reach(&inbox, |counts| counts.dropped.values().sum::<u64>() == expected_drops).await;
    assert_eq!(counts.accepted, 4);
    for kind in [DropKind::NotAWapPush, DropKind::Duplicate] {
        let expected = datagrams.iter().filter(|(_, drop)| *drop == Some(kind)).count() as u64;
        assert_eq!(counts.dropped(kind), expected, "{kind:?}");
    }
    for kind in [DropKind::Malformed, DropKind::WrongDigest, DropKind::TooOld, DropKind::FromTheFuture] {
        assert_eq!(counts.dropped(kind), 1, "{kind:?}");
    }
    assert!(accepted.try_recv().is_err(), "nothing but the accepted ones comes out");

    // Still listening after all that garbage.
    socket.send_to(&pushed(8), address).await.unwrap();
    assert_eq!(next_accepted(&mut accepted).await.notification_id, Some(8));
    listener.stop().await;
}

#[tokio::test]
async fn the_push_message_entry_point_shares_the_duplicate_memory_with_udp() {
    let (inbox, mut accepted) = inbox(vec![signed_account()]);
    let (listener, address) = listen(&inbox).await;
    sender().await.send_to(&pushed(5), address).await.unwrap();
    assert_eq!(next_accepted(&mut accepted).await.notification_id, Some(5));

    let same_over_push = notification::to_push_message(&signed_package(5, false, SECRET, NOW));
    assert_eq!(inbox.deliver_push_message(&same_over_push).await.unwrap_err().kind(), DropKind::Duplicate);
    let fresh = notification::to_push_message(&signed_package(6, true, SECRET, NOW));
    let delivered = inbox.deliver_push_message(&fresh).await.unwrap();
    assert_eq!(next_accepted(&mut accepted).await, delivered);
    assert!(delivered.request_mos);
    let as_text = format!(
        "{{\"data\": {{\"SMS\": \"{}\"}}}}",
        notification::encode_base64(&signed_package(7, false, SECRET, NOW))
    );
    assert_eq!(inbox.deliver_push_text(&as_text).await.unwrap().notification_id, Some(7));
    assert_eq!(next_accepted(&mut accepted).await.notification_id, Some(7));
    assert_eq!(inbox.deliver_push_text("not base64 !").await.unwrap_err().kind(), DropKind::NotAPushMessage);
    // And a notification already taken over push is a repeat over UDP.
    sender().await.send_to(&pushed(6), address).await.unwrap();
    let counts = counts_reach(&inbox, |counts| counts.dropped(DropKind::Duplicate) == 2).await;
    assert_eq!(counts.accepted, 3);
    assert!(accepted.try_recv().is_err());
    listener.stop().await;
}

#[tokio::test]
async fn each_simulated_device_listens_on_its_own_loopback_address_at_one_port() {
    let (first_inbox, mut first_accepted) = inbox(vec![signed_account()]);
    let (second_inbox, mut second_accepted) = inbox(vec![signed_account()]);
    let first = first_inbox.listen_udp("127.0.0.2:0".parse().unwrap()).await.unwrap();
    let port = first.local_address().port();
    let second_address: SocketAddr = format!("127.0.0.3:{port}").parse().unwrap();
    let second = second_inbox.listen_udp(second_address).await.unwrap();

    let socket = sender().await;
    socket.send_to(&pushed(1), first.local_address()).await.unwrap();
    socket.send_to(&pushed(2), second_address).await.unwrap();
    assert_eq!(next_accepted(&mut first_accepted).await.notification_id, Some(1));
    assert_eq!(next_accepted(&mut second_accepted).await.notification_id, Some(2));
    assert!(first_accepted.try_recv().is_err());
    assert!(second_accepted.try_recv().is_err());
    first.stop().await;
    second.stop().await;
}

#[tokio::test]
async fn a_stopped_listener_releases_its_address_and_receives_nothing_more() {
    let (inbox, mut accepted) = inbox(vec![signed_account()]);
    let (listener, address) = listen(&inbox).await;
    listener.stop().await;

    sender().await.send_to(&pushed(1), address).await.unwrap();
    assert!(tokio::time::timeout(Duration::from_millis(200), accepted.recv()).await.is_err());
    assert_eq!(inbox.counts(), NotificationCounts::default());

    // The same address can be bound again at once, and the new listener receives.
    let restarted = inbox.listen_udp(address).await.unwrap();
    sender().await.send_to(&pushed(1), address).await.unwrap();
    assert_eq!(next_accepted(&mut accepted).await.notification_id, Some(1));
    restarted.stop().await;
}

#[tokio::test]
async fn the_listener_ends_when_nobody_takes_notifications() {
    let (inbox, accepted) = inbox(vec![signed_account()]);
    let (_listener, address) = listen(&inbox).await;
    drop(accepted);
    sender().await.send_to(&pushed(1), address).await.unwrap();
    counts_reach(&inbox, |counts| counts.dropped(DropKind::ReceiverClosed) == 1).await;
    // The listener let go of its socket: the address is free again.
    let deadline = tokio::time::Instant::now() + WAIT;
    while UdpSocket::bind(address).await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "the listener kept its socket");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
