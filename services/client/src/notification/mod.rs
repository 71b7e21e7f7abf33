//! Package#0 reception: a UDP WAP Push listener and a push-message entry point feeding one verification and duplicate filter.
//!
//! ```text
//! UDP datagram --unwrap WSP Push (D.1)--+
//!                                       +--> NotificationFilter --accepted--> mpsc channel --> sessions
//! {"SMS": base64} --decode (D.2.5)------+          |
//!                                                  +--dropped--> tracing + NotificationCounters
//! ```
//!
//! [`NotificationFilter`] is the pure core: it finds the account a notification
//! is for (SERVER-ID, or the only account when absent), checks SHA256-DIGEST with
//! that account's AuthSecret (a signed notification without a secret, an unsigned
//! one when a secret is provisioned, a wrong digest and, by policy, a stale or
//! future time are dropped), and drops a repeat of (SERVER-ID, NOTIFICATION-ID)
//! from a bounded memory. [`NotificationInbox`] shares one filter between the
//! transports and hands every accepted notification to the rest of the client:
//!
//! ```no_run
//! use omadm_client::notification::{NotificationInbox, NotificationPolicy, ServerAccount};
//!
//! # async fn example() -> std::io::Result<()> {
//! let accounts = vec![ServerAccount::new("com.example.dm", Some("secret".into()))];
//! let (inbox, mut accepted) = NotificationInbox::new("device-1", accounts, NotificationPolicy::default(), 16);
//! let listener = inbox.listen_udp("127.0.0.1:2948".parse().map_err(std::io::Error::other)?).await?;
//! while let Some(notification) = accepted.recv().await {
//!     // start a session with notification.server_id, sending MOs when notification.request_mos
//! #   break;
//! }
//! listener.stop().await;
//! # Ok(())
//! # }
//! ```

mod filter;
mod listener;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::mpsc;

pub use filter::{
    AcceptedNotification, DEFAULT_MAX_AGE_SECONDS, DEFAULT_REMEMBERED_IDS_PER_SERVER, DropKind, DropReason,
    NotificationFilter, NotificationPolicy, ServerAccount,
};
pub use listener::{DEFAULT_NOTIFICATION_PORT, UdpNotificationListener};

/// Reads the wall clock as POSIX seconds, the time base of SHA256-DIGEST.
pub type Clock = fn() -> u32;

/// The system clock in POSIX seconds (0 before 1970, saturating after 2106).
pub fn system_clock() -> u32 {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0);
    u32::try_from(seconds).unwrap_or(u32::MAX)
}

/// How many notifications were accepted and, by kind, dropped.
#[derive(Debug, Default)]
pub struct NotificationCounters {
    accepted: AtomicU64,
    dropped: [AtomicU64; DropKind::ALL.len()],
}

/// A point-in-time copy of [`NotificationCounters`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotificationCounts {
    pub accepted: u64,
    /// Drops per kind; kinds never seen are absent.
    pub dropped: std::collections::BTreeMap<DropKind, u64>,
}

impl NotificationCounts {
    pub fn dropped(&self, kind: DropKind) -> u64 {
        self.dropped.get(&kind).copied().unwrap_or(0)
    }
}

impl NotificationCounters {
    fn count_accepted(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
    }

    fn count_dropped(&self, kind: DropKind) {
        if let Some(counter) = self.dropped.get(kind.index()) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn snapshot(&self) -> NotificationCounts {
        let dropped = DropKind::ALL
            .iter()
            .zip(&self.dropped)
            .map(|(kind, counter)| (*kind, counter.load(Ordering::Relaxed)))
            .filter(|(_, count)| *count > 0)
            .collect();
        NotificationCounts { accepted: self.accepted.load(Ordering::Relaxed), dropped }
    }
}

/// Where a notification came from, for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationSource {
    Udp(std::net::SocketAddr),
    PushMessage,
}

/// The device's notification entry: one filter shared by every transport, the
/// channel of accepted notifications, and the counters. Cheap to clone.
#[derive(Debug, Clone)]
pub struct NotificationInbox {
    device_id: Arc<str>,
    filter: Arc<Mutex<NotificationFilter>>,
    accepted_sender: mpsc::Sender<AcceptedNotification>,
    counters: Arc<NotificationCounters>,
    clock: Clock,
}

impl NotificationInbox {
    /// An inbox and the receiving end of its accepted notifications (`capacity` of them may wait).
    pub fn new(
        device_id: &str,
        accounts: Vec<ServerAccount>,
        policy: NotificationPolicy,
        capacity: usize,
    ) -> (Self, mpsc::Receiver<AcceptedNotification>) {
        let (accepted_sender, accepted_receiver) = mpsc::channel(capacity.max(1));
        let inbox = Self {
            device_id: Arc::from(device_id),
            filter: Arc::new(Mutex::new(NotificationFilter::new(accounts, policy))),
            accepted_sender,
            counters: Arc::new(NotificationCounters::default()),
            clock: system_clock,
        };
        (inbox, accepted_receiver)
    }

    /// Uses another clock for signature ages (a simulator's or a test's).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    pub fn device_id(&self) -> &str {
        &self.device_id
    }

    pub fn counts(&self) -> NotificationCounts {
        self.counters.snapshot()
    }

    /// Replaces the accounts the filter checks against (after bootstrap or a DMAcc change).
    pub fn replace_accounts(&self, accounts: Vec<ServerAccount>) {
        self.lock_filter().replace_accounts(accounts);
    }

    /// Push-message entry point (D.2.5): `message` is `{"SMS": "<base64>"}` (or has it under "data").
    pub async fn deliver_push_message(&self, message: &serde_json::Value) -> Result<AcceptedNotification, DropReason> {
        let now = (self.clock)();
        let decision = self.lock_filter().receive_push_message(message, now);
        self.conclude(decision, NotificationSource::PushMessage).await
    }

    /// Push-message entry point for the raw text: a JSON object as above or the bare base64.
    pub async fn deliver_push_text(&self, text: &str) -> Result<AcceptedNotification, DropReason> {
        let now = (self.clock)();
        let decision = self.lock_filter().receive_push_text(text, now);
        self.conclude(decision, NotificationSource::PushMessage).await
    }

    /// WAP Push entry point: one connectionless WSP Push PDU, as a UDP datagram carries it.
    pub async fn deliver_wap_push(
        &self,
        pdu: &[u8],
        source: NotificationSource,
    ) -> Result<AcceptedNotification, DropReason> {
        let now = (self.clock)();
        let decision = self.lock_filter().receive_wap_push(pdu, now);
        self.conclude(decision, source).await
    }

    /// Binds a UDP socket at `bind_address` (port 0 picks one) and feeds every datagram to this inbox.
    pub async fn listen_udp(&self, bind_address: std::net::SocketAddr) -> std::io::Result<UdpNotificationListener> {
        UdpNotificationListener::bind(self.clone(), bind_address).await
    }

    /// The filter's lock is held only for one synchronous decision; a poisoned
    /// lock still holds consistent data (each decision updates it last), so it is used as is.
    fn lock_filter(&self) -> std::sync::MutexGuard<'_, NotificationFilter> {
        self.filter.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Logs and counts the decision; hands an accepted notification to the channel.
    async fn conclude(
        &self,
        decision: Result<AcceptedNotification, DropReason>,
        source: NotificationSource,
    ) -> Result<AcceptedNotification, DropReason> {
        let outcome = match decision {
            Ok(accepted) => match self.accepted_sender.send(accepted.clone()).await {
                Ok(()) => Ok(accepted),
                Err(_) => Err(DropReason::ReceiverClosed),
            },
            Err(reason) => Err(reason),
        };
        let span = tracing::info_span!("notification", device_id = %self.device_id, ?source);
        let _entered = span.enter();
        match &outcome {
            Ok(accepted) => {
                self.counters.count_accepted();
                tracing::info!(
                    server_id = %accepted.server_id,
                    notification_id = ?accepted.notification_id,
                    request_mos = accepted.request_mos,
                    "notification accepted"
                );
            }
            Err(reason) => {
                self.counters.count_dropped(reason.kind());
                tracing::warn!(reason = reason.kind().name(), "notification dropped: {reason}");
            }
        }
        outcome
    }
}
