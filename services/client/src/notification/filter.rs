//! The pure decision on a received Package#0: which account it is for, whether its signature holds, whether it is a repeat.
//!
//! No I/O and no clock: the caller passes the package bytes and `now`, and
//! gets back an [`AcceptedNotification`] or a typed [`DropReason`]. Package#0
//! has no reply, so a dropped notification is simply ignored (5.2.1.2).

use std::collections::{HashMap, VecDeque};

use omadm_proto::notification::{self, ConnectionType, DecodeError, Notification, PushError, VerifyError, WspError};

/// Seconds a signature may be old (or ahead, as clock skew) before it is dropped, unless configured otherwise.
pub const DEFAULT_MAX_AGE_SECONDS: u32 = 24 * 60 * 60;
/// NOTIFICATION-IDs remembered per server for duplicate detection, unless configured otherwise.
pub const DEFAULT_REMEMBERED_IDS_PER_SERVER: usize = 64;

/// One DM account of the device as far as notifications care: its ServerID and its `AuthNoti/AuthSecret`.
/// Its `Debug` output hides the secret, so logging an inbox or a filter never leaks it.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerAccount {
    pub server_id: String,
    /// `None` (or an empty string, which the spec treats alike) when no AuthSecret is provisioned.
    pub auth_secret: Option<String>,
}

impl std::fmt::Debug for ServerAccount {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ServerAccount")
            .field("server_id", &self.server_id)
            .field("auth_secret", &self.auth_secret.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl ServerAccount {
    pub fn new(server_id: impl Into<String>, auth_secret: Option<String>) -> Self {
        Self { server_id: server_id.into(), auth_secret }
    }

    /// The secret when one is provisioned; an empty secret counts as none.
    fn provisioned_secret(&self) -> Option<&str> {
        self.auth_secret.as_deref().filter(|secret| !secret.is_empty())
    }
}

/// The device's freshness and duplicate policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotificationPolicy {
    /// Drop a signed notification older than this (spec: MAY), or dated further than this ahead of `now`.
    /// `None` turns the time check off.
    pub max_age_seconds: Option<u32>,
    /// How many NOTIFICATION-IDs are remembered per server; older ones are forgotten first.
    pub remembered_ids_per_server: usize,
}

impl Default for NotificationPolicy {
    fn default() -> Self {
        Self {
            max_age_seconds: Some(DEFAULT_MAX_AGE_SECONDS),
            remembered_ids_per_server: DEFAULT_REMEMBERED_IDS_PER_SERVER,
        }
    }
}

/// A notification that passed every check: the rest of the client starts a session with `server_id` from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedNotification {
    /// The account's ServerID (taken from the account when the package names no server).
    pub server_id: String,
    pub notification_id: Option<u16>,
    /// REQ-MOS: Package#1 must carry the supported MOs.
    pub request_mos: bool,
    /// PREFERRED-CON-TYPE in priority order; empty when the server expressed no preference.
    pub preferred_connection_types: Vec<ConnectionType>,
    /// The SHA256-DIGEST time when the notification was signed.
    pub signed_at: Option<u32>,
}

/// Why a received notification was ignored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DropReason {
    #[error("datagram is not a DM notification WAP Push: {0}")]
    NotAWapPush(#[from] WspError),
    #[error("push message carries no Package#0: {0}")]
    NotAPushMessage(#[from] PushError),
    #[error("malformed Package#0: {0}")]
    Malformed(#[from] DecodeError),
    #[error("notification is from server {server_id:?}, for which the device has no account")]
    UnknownServer { server_id: String },
    #[error("notification names no server and the device has {account_count} accounts, not exactly one")]
    NoServerId { account_count: usize },
    #[error("notification from {server_id:?} is signed but the account has no AuthSecret")]
    MissingSecret { server_id: String },
    #[error("notification from {server_id:?} is unsigned but the account has an AuthSecret")]
    Unsigned { server_id: String },
    #[error("notification from {server_id:?} has a wrong SHA256-DIGEST")]
    WrongDigest { server_id: String },
    #[error("notification from {server_id:?} is too old: signed at {signed_at}, now {now}, maximum age {max_age} s")]
    TooOld { server_id: String, signed_at: u32, now: u32, max_age: u32 },
    #[error("notification from {server_id:?} is signed at {signed_at}, more than {max_age} s after now ({now})")]
    FromTheFuture { server_id: String, signed_at: u32, now: u32, max_age: u32 },
    #[error("notification {notification_id} from {server_id:?} was already received")]
    Duplicate { server_id: String, notification_id: u16 },
    #[error("nobody takes accepted notifications any more (the receiving channel is closed)")]
    ReceiverClosed,
}

/// The kind of a [`DropReason`], without its data: a bounded label for counters and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropKind {
    NotAWapPush,
    NotAPushMessage,
    Malformed,
    UnknownServer,
    NoServerId,
    MissingSecret,
    Unsigned,
    WrongDigest,
    TooOld,
    FromTheFuture,
    Duplicate,
    ReceiverClosed,
}

impl DropKind {
    /// Every kind, in the order of [`DropKind::index`].
    pub const ALL: [DropKind; 12] = [
        DropKind::NotAWapPush,
        DropKind::NotAPushMessage,
        DropKind::Malformed,
        DropKind::UnknownServer,
        DropKind::NoServerId,
        DropKind::MissingSecret,
        DropKind::Unsigned,
        DropKind::WrongDigest,
        DropKind::TooOld,
        DropKind::FromTheFuture,
        DropKind::Duplicate,
        DropKind::ReceiverClosed,
    ];

    /// Position in [`DropKind::ALL`], for counter arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// snake_case name for logs and reports.
    pub fn name(self) -> &'static str {
        match self {
            DropKind::NotAWapPush => "not_a_wap_push",
            DropKind::NotAPushMessage => "not_a_push_message",
            DropKind::Malformed => "malformed",
            DropKind::UnknownServer => "unknown_server",
            DropKind::NoServerId => "no_server_id",
            DropKind::MissingSecret => "missing_secret",
            DropKind::Unsigned => "unsigned",
            DropKind::WrongDigest => "wrong_digest",
            DropKind::TooOld => "too_old",
            DropKind::FromTheFuture => "from_the_future",
            DropKind::Duplicate => "duplicate",
            DropKind::ReceiverClosed => "receiver_closed",
        }
    }
}

impl DropReason {
    pub fn kind(&self) -> DropKind {
        match self {
            DropReason::NotAWapPush(_) => DropKind::NotAWapPush,
            DropReason::NotAPushMessage(_) => DropKind::NotAPushMessage,
            DropReason::Malformed(_) => DropKind::Malformed,
            DropReason::UnknownServer { .. } => DropKind::UnknownServer,
            DropReason::NoServerId { .. } => DropKind::NoServerId,
            DropReason::MissingSecret { .. } => DropKind::MissingSecret,
            DropReason::Unsigned { .. } => DropKind::Unsigned,
            DropReason::WrongDigest { .. } => DropKind::WrongDigest,
            DropReason::TooOld { .. } => DropKind::TooOld,
            DropReason::FromTheFuture { .. } => DropKind::FromTheFuture,
            DropReason::Duplicate { .. } => DropKind::Duplicate,
            DropReason::ReceiverClosed => DropKind::ReceiverClosed,
        }
    }
}

/// The last NOTIFICATION-IDs accepted from one server, oldest first.
#[derive(Debug, Default)]
struct RecentIds(VecDeque<u16>);

impl RecentIds {
    fn contains(&self, notification_id: u16) -> bool {
        self.0.contains(&notification_id)
    }

    fn remember(&mut self, notification_id: u16, capacity: usize) {
        if capacity == 0 {
            return;
        }
        while self.0.len() >= capacity {
            self.0.pop_front();
        }
        self.0.push_back(notification_id);
    }
}

/// The device's accounts, policy and duplicate memory; decides on each received Package#0.
///
/// Memory is bounded: at most `remembered_ids_per_server` ids for each account.
#[derive(Debug)]
pub struct NotificationFilter {
    accounts: Vec<ServerAccount>,
    policy: NotificationPolicy,
    recent_ids_by_server: HashMap<String, RecentIds>,
}

impl NotificationFilter {
    pub fn new(accounts: Vec<ServerAccount>, policy: NotificationPolicy) -> Self {
        Self { accounts, policy, recent_ids_by_server: HashMap::new() }
    }

    pub fn accounts(&self) -> &[ServerAccount] {
        &self.accounts
    }

    pub fn policy(&self) -> NotificationPolicy {
        self.policy
    }

    /// Replaces the accounts (after a bootstrap or a DMAcc change); the duplicate memory of
    /// servers still present is kept, that of removed servers forgotten.
    pub fn replace_accounts(&mut self, accounts: Vec<ServerAccount>) {
        self.recent_ids_by_server.retain(|server_id, _| accounts.iter().any(|account| &account.server_id == server_id));
        self.accounts = accounts;
    }

    /// Decides on a WSP Push PDU (Appendix D.1) as received in a UDP datagram.
    pub fn receive_wap_push(&mut self, pdu: &[u8], now: u32) -> Result<AcceptedNotification, DropReason> {
        let package = notification::unwrap_push(pdu)?;
        self.receive_package(package, now)
    }

    /// Decides on push-message text (Appendix D.2.5): `{"SMS": "<base64>"}` or the bare base64.
    pub fn receive_push_text(&mut self, text: &str, now: u32) -> Result<AcceptedNotification, DropReason> {
        let package = notification::from_push_text(text)?;
        self.receive_package(&package, now)
    }

    /// Decides on a parsed push message (Appendix D.2.5).
    pub fn receive_push_message(
        &mut self,
        message: &serde_json::Value,
        now: u32,
    ) -> Result<AcceptedNotification, DropReason> {
        let package = notification::from_push_message(message)?;
        self.receive_package(&package, now)
    }

    /// Decides on the Package#0 bytes: decode, find the account, verify the
    /// signature, drop repeats. Only an accepted notification is remembered, so
    /// forged packages cannot push genuine ids out of the duplicate memory.
    pub fn receive_package(&mut self, package: &[u8], now: u32) -> Result<AcceptedNotification, DropReason> {
        let decoded = Notification::decode(package)?;
        let account = self.account_for(decoded.server_id.as_deref())?;
        let server_id = account.server_id.clone();
        let verified = match account.provisioned_secret() {
            Some(secret) => notification::verify(package, Some(secret.as_bytes()), now, self.policy.max_age_seconds)
                .map_err(|error| drop_reason_for_verify_error(error, &server_id))?,
            // 5.2.1.2: without a secret a signed notification MUST be ignored.
            None if decoded.digest.is_some() => return Err(DropReason::MissingSecret { server_id }),
            // Nothing provisioned to check against: the account accepts unsigned notifications.
            None => decoded,
        };
        if let Some(notification_id) = verified.notification_id {
            let capacity = self.policy.remembered_ids_per_server;
            let recent = self.recent_ids_by_server.entry(server_id.clone()).or_default();
            if recent.contains(notification_id) {
                return Err(DropReason::Duplicate { server_id, notification_id });
            }
            recent.remember(notification_id, capacity);
        }
        Ok(AcceptedNotification {
            server_id,
            notification_id: verified.notification_id,
            request_mos: verified.request_mos,
            preferred_connection_types: verified
                .preferred_connection_types
                .map(|types| types.as_slice().to_vec())
                .unwrap_or_default(),
            signed_at: verified.digest.map(|digest| digest.time),
        })
    }

    /// The account named by SERVER-ID, or the only account when the package names none.
    fn account_for(&self, server_id: Option<&str>) -> Result<&ServerAccount, DropReason> {
        match server_id {
            Some(server_id) => self
                .accounts
                .iter()
                .find(|account| account.server_id == server_id)
                .ok_or_else(|| DropReason::UnknownServer { server_id: server_id.to_owned() }),
            None => match self.accounts.as_slice() {
                [only] => Ok(only),
                accounts => Err(DropReason::NoServerId { account_count: accounts.len() }),
            },
        }
    }
}

fn drop_reason_for_verify_error(error: VerifyError, server_id: &str) -> DropReason {
    let server_id = server_id.to_owned();
    match error {
        VerifyError::Malformed(error) => DropReason::Malformed(error),
        VerifyError::NoDigest => DropReason::Unsigned { server_id },
        VerifyError::MissingSecret => DropReason::MissingSecret { server_id },
        VerifyError::WrongDigest => DropReason::WrongDigest { server_id },
        VerifyError::TooOld { signed_at, now, max_age } => DropReason::TooOld { server_id, signed_at, now, max_age },
        VerifyError::FromTheFuture { signed_at, now, max_age } => {
            DropReason::FromTheFuture { server_id, signed_at, now, max_age }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use omadm_proto::notification::PreferredConnectionTypes;

    const SERVER: &str = "com.example.dm";
    const OTHER_SERVER: &str = "org.example.other";
    const SECRET: &str = "AuthSecret";
    const NOW: u32 = 1_700_000_000;

    fn signed_account() -> ServerAccount {
        ServerAccount::new(SERVER, Some(SECRET.into()))
    }

    fn notification(server_id: Option<&str>, notification_id: Option<u16>) -> Notification {
        Notification {
            server_id: server_id.map(str::to_owned),
            notification_id,
            request_mos: true,
            preferred_connection_types: Some(
                PreferredConnectionTypes::new(vec![ConnectionType::Wireless, ConnectionType::AnyAvailable]).unwrap(),
            ),
            ..Notification::default()
        }
    }

    fn signed(notification: &Notification, secret: &str, time: u32) -> Vec<u8> {
        notification.encode_signed(secret.as_bytes(), time).unwrap()
    }

    fn filter(accounts: Vec<ServerAccount>) -> NotificationFilter {
        NotificationFilter::new(accounts, NotificationPolicy::default())
    }

    #[test]
    fn a_valid_signed_notification_is_accepted_with_its_fields() {
        let mut filter = filter(vec![signed_account()]);
        let package = signed(&notification(Some(SERVER), Some(7)), SECRET, NOW - 5);
        let accepted = filter.receive_package(&package, NOW).unwrap();
        assert_eq!(
            accepted,
            AcceptedNotification {
                server_id: SERVER.into(),
                notification_id: Some(7),
                request_mos: true,
                preferred_connection_types: vec![ConnectionType::Wireless, ConnectionType::AnyAvailable],
                signed_at: Some(NOW - 5),
            }
        );
    }

    #[test]
    fn the_account_with_the_named_server_id_verifies_among_several() {
        let mut filter = filter(vec![ServerAccount::new(OTHER_SERVER, Some("other secret".into())), signed_account()]);
        let package = signed(&notification(Some(SERVER), Some(1)), SECRET, NOW);
        assert_eq!(filter.receive_package(&package, NOW).unwrap().server_id, SERVER);
        let with_the_other_secret = signed(&notification(Some(SERVER), Some(2)), "other secret", NOW);
        assert_eq!(
            filter.receive_package(&with_the_other_secret, NOW),
            Err(DropReason::WrongDigest { server_id: SERVER.into() })
        );
    }

    #[test]
    fn without_server_id_the_only_account_is_used() {
        let mut filter = filter(vec![signed_account()]);
        let package = signed(&notification(None, Some(3)), SECRET, NOW);
        assert_eq!(filter.receive_package(&package, NOW).unwrap().server_id, SERVER);
    }

    #[test]
    fn without_server_id_and_several_accounts_it_is_dropped() {
        let mut filter = filter(vec![signed_account(), ServerAccount::new(OTHER_SERVER, None)]);
        let package = signed(&notification(None, Some(3)), SECRET, NOW);
        assert_eq!(filter.receive_package(&package, NOW), Err(DropReason::NoServerId { account_count: 2 }));
        let mut without_accounts = self::filter(vec![]);
        assert_eq!(without_accounts.receive_package(&package, NOW), Err(DropReason::NoServerId { account_count: 0 }));
    }

    #[test]
    fn an_unknown_server_is_dropped() {
        let mut filter = filter(vec![signed_account()]);
        let package = signed(&notification(Some("evil.example"), Some(1)), SECRET, NOW);
        assert_eq!(
            filter.receive_package(&package, NOW),
            Err(DropReason::UnknownServer { server_id: "evil.example".into() })
        );
    }

    #[test]
    fn unsigned_is_accepted_only_when_no_secret_is_provisioned() {
        let package = notification(Some(SERVER), Some(1)).encode().unwrap();
        let mut without_secret = filter(vec![ServerAccount::new(SERVER, None)]);
        let accepted = without_secret.receive_package(&package, NOW).unwrap();
        assert_eq!((accepted.server_id.as_str(), accepted.signed_at), (SERVER, None));
        let mut with_empty_secret = filter(vec![ServerAccount::new(SERVER, Some(String::new()))]);
        assert!(with_empty_secret.receive_package(&package, NOW).is_ok());
        let mut with_secret = filter(vec![signed_account()]);
        assert_eq!(with_secret.receive_package(&package, NOW), Err(DropReason::Unsigned { server_id: SERVER.into() }));
    }

    #[test]
    fn signed_without_a_provisioned_secret_is_dropped() {
        let package = signed(&notification(Some(SERVER), Some(1)), SECRET, NOW);
        for secret in [None, Some(String::new())] {
            let mut filter = filter(vec![ServerAccount::new(SERVER, secret)]);
            assert_eq!(
                filter.receive_package(&package, NOW),
                Err(DropReason::MissingSecret { server_id: SERVER.into() })
            );
        }
    }

    #[test]
    fn a_wrong_digest_or_a_tampered_package_is_dropped() {
        let mut filter = filter(vec![signed_account()]);
        let wrong_secret = signed(&notification(Some(SERVER), Some(1)), "not the secret", NOW);
        assert_eq!(
            filter.receive_package(&wrong_secret, NOW),
            Err(DropReason::WrongDigest { server_id: SERVER.into() })
        );
        let mut tampered = signed(&notification(Some(SERVER), Some(1)), SECRET, NOW);
        // Header 2, SERVER-ID 2+14, PREFERRED-CON-TYPE 2+2, then NOTIFICATION-ID's option header 2 and
        // value 00 01: byte 25 turns id 1 into id 0, a well-formed package the digest no longer covers.
        assert_eq!(tampered[24..26], [0, 1]);
        tampered[25] = 0;
        assert_eq!(filter.receive_package(&tampered, NOW), Err(DropReason::WrongDigest { server_id: SERVER.into() }));
        // Neither attempt used up id 1: the genuine notification still goes through.
        let genuine = signed(&notification(Some(SERVER), Some(1)), SECRET, NOW);
        assert!(filter.receive_package(&genuine, NOW).is_ok());
    }

    #[test]
    fn too_old_and_future_signatures_are_dropped_by_policy() {
        let policy = NotificationPolicy { max_age_seconds: Some(300), ..NotificationPolicy::default() };
        let mut filter = NotificationFilter::new(vec![signed_account()], policy);
        let at_the_limit = signed(&notification(Some(SERVER), Some(1)), SECRET, NOW - 300);
        assert!(filter.receive_package(&at_the_limit, NOW).is_ok());
        let too_old = signed(&notification(Some(SERVER), Some(2)), SECRET, NOW - 301);
        assert_eq!(
            filter.receive_package(&too_old, NOW),
            Err(DropReason::TooOld { server_id: SERVER.into(), signed_at: NOW - 301, now: NOW, max_age: 300 })
        );
        let skewed = signed(&notification(Some(SERVER), Some(3)), SECRET, NOW + 300);
        assert!(filter.receive_package(&skewed, NOW).is_ok());
        let future = signed(&notification(Some(SERVER), Some(4)), SECRET, NOW + 301);
        assert_eq!(
            filter.receive_package(&future, NOW),
            Err(DropReason::FromTheFuture { server_id: SERVER.into(), signed_at: NOW + 301, now: NOW, max_age: 300 })
        );
    }

    #[test]
    fn without_a_max_age_old_signatures_are_accepted() {
        let policy = NotificationPolicy { max_age_seconds: None, ..NotificationPolicy::default() };
        let mut filter = NotificationFilter::new(vec![signed_account()], policy);
        let ancient = signed(&notification(Some(SERVER), Some(1)), SECRET, 1);
        assert!(filter.receive_package(&ancient, NOW).is_ok());
        assert_eq!(NotificationPolicy::default().max_age_seconds, Some(DEFAULT_MAX_AGE_SECONDS));
    }

    #[test]
    fn a_repeated_notification_id_is_dropped_per_server() {
        let mut filter = filter(vec![signed_account(), ServerAccount::new(OTHER_SERVER, None)]);
        let first = signed(&notification(Some(SERVER), Some(9)), SECRET, NOW);
        assert!(filter.receive_package(&first, NOW).is_ok());
        // A re-signed copy (another time) with the same id is still a repeat.
        let again = signed(&notification(Some(SERVER), Some(9)), SECRET, NOW + 1);
        assert_eq!(
            filter.receive_package(&again, NOW + 1),
            Err(DropReason::Duplicate { server_id: SERVER.into(), notification_id: 9 })
        );
        // The same id from another server is another notification.
        let other = notification(Some(OTHER_SERVER), Some(9)).encode().unwrap();
        assert!(filter.receive_package(&other, NOW).is_ok());
        // Without NOTIFICATION-ID there is nothing to compare: each is accepted.
        let without_id = signed(&notification(Some(SERVER), None), SECRET, NOW);
        assert!(filter.receive_package(&without_id, NOW).is_ok());
        assert!(filter.receive_package(&without_id, NOW).is_ok());
    }

    #[test]
    fn the_duplicate_memory_is_bounded_and_forgets_the_oldest() {
        let policy = NotificationPolicy { remembered_ids_per_server: 3, ..NotificationPolicy::default() };
        let mut filter = NotificationFilter::new(vec![signed_account()], policy);
        for id in 1..=4 {
            let package = signed(&notification(Some(SERVER), Some(id)), SECRET, NOW);
            assert!(filter.receive_package(&package, NOW).is_ok());
        }
        let remembered = signed(&notification(Some(SERVER), Some(4)), SECRET, NOW);
        assert_eq!(filter.receive_package(&remembered, NOW).unwrap_err().kind(), DropKind::Duplicate);
        let forgotten = signed(&notification(Some(SERVER), Some(1)), SECRET, NOW);
        assert!(filter.receive_package(&forgotten, NOW).is_ok());
        assert!(filter.recent_ids_by_server.get(SERVER).unwrap().0.len() <= 3);
    }

    #[test]
    fn replacing_accounts_applies_to_later_notifications() {
        let mut filter = filter(vec![signed_account()]);
        let package = signed(&notification(Some(OTHER_SERVER), Some(1)), "new secret", NOW);
        assert_eq!(filter.receive_package(&package, NOW).unwrap_err().kind(), DropKind::UnknownServer);
        filter.replace_accounts(vec![ServerAccount::new(OTHER_SERVER, Some("new secret".into()))]);
        assert!(filter.receive_package(&package, NOW).is_ok());
        assert_eq!(filter.accounts().len(), 1);
        assert!(!filter.recent_ids_by_server.contains_key(SERVER));
    }

    #[test]
    fn malformed_bytes_are_dropped_as_malformed() {
        let mut filter = filter(vec![signed_account()]);
        for garbage in [&b""[..], &b"\x21"[..], &b"\x10\x00"[..], &b"\x21\x00\x10\x05srv"[..]] {
            assert_eq!(filter.receive_package(garbage, NOW).unwrap_err().kind(), DropKind::Malformed, "{garbage:?}");
        }
    }

    #[test]
    fn transports_unwrap_before_the_checks() {
        let mut filter = filter(vec![signed_account()]);
        let package = signed(&notification(Some(SERVER), Some(1)), SECRET, NOW);
        let pdu = notification::wrap_push(&package, 0x2a);
        assert!(filter.receive_wap_push(&pdu, NOW).is_ok());
        assert_eq!(filter.receive_wap_push(&package, NOW).unwrap_err().kind(), DropKind::NotAWapPush);

        let second = signed(&notification(Some(SERVER), Some(2)), SECRET, NOW);
        let message = notification::to_push_message(&second);
        assert!(filter.receive_push_message(&message, NOW).is_ok());
        let third = signed(&notification(Some(SERVER), Some(3)), SECRET, NOW);
        assert!(filter.receive_push_text(&notification::encode_base64(&third), NOW).is_ok());
        assert_eq!(
            filter.receive_push_message(&serde_json::json!({"sms": "IQA="}), NOW).unwrap_err().kind(),
            DropKind::NotAPushMessage
        );
        assert_eq!(filter.receive_push_text("{not json", NOW).unwrap_err().kind(), DropKind::NotAPushMessage);
        // Duplicates are per (SERVER-ID, NOTIFICATION-ID) whatever the transport.
        assert_eq!(
            filter.receive_push_text(&notification::encode_base64(&package), NOW).unwrap_err().kind(),
            DropKind::Duplicate
        );
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let shown = format!("{:?}", filter(vec![signed_account()]));
        assert!(shown.contains(SERVER) && shown.contains("<redacted>"), "{shown}");
        assert!(!shown.contains(SECRET), "{shown}");
    }

    #[test]
    fn every_drop_kind_has_a_distinct_index_and_name() {
        for (position, kind) in DropKind::ALL.iter().enumerate() {
            assert_eq!(kind.index(), position);
        }
        let names: std::collections::HashSet<_> = DropKind::ALL.iter().map(|kind| kind.name()).collect();
        assert_eq!(names.len(), DropKind::ALL.len());
    }
}
