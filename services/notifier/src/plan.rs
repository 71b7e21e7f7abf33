//! The notifier's decisions, without I/O or clock: what Package#0 a request gives, where it goes, and whether
//! it joins a request already in flight for the device.
//!
//! ```text
//! request + device record + now -> plan()  -> Plan {destination, options, secret} | Refusal (reason, detail)
//! plan + NOTIFICATION-ID + now  -> package() -> signed Package#0 bytes (SHA256-DIGEST when the device has a secret)
//! device + request + now        -> InFlight::admit() -> Send | AlreadySent | Collapse {into}
//! refusal + attempt + now       -> RetryPolicy::next_attempt_at() -> Some(when) | None (the failure is final)
//! ```
//!
//! OMA DM 2.0's Package#0 has no UI-mode or initiator field (DM 1.2's had); its options are SERVER-ID,
//! PREFERRED-CON-TYPE, NOTIFICATION-ID, SHA256-DIGEST and REQ-MOS (5.2.1.2), and those are what a plan sets.

use std::collections::HashMap;
use std::net::SocketAddr;

use omadm_core::bus::Event;
use omadm_core::clock::Millis;
use omadm_core::model::{Device, NotifyTransport};
use omadm_core::session::events::{NOTIFICATION_REQUESTED, NOTIFICATION_RETRY, NotificationRequested};
use omadm_proto::notification::{ConnectionType, Notification, PreferredConnectionTypes, WAP_PUSH_PORT};

/// What every plan of one notifier shares (from its settings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageRules {
    /// SERVER-ID: this server's DMAcc ServerID.
    pub server_id: String,
    /// REQ-MOS is set when the device's inventory was last read longer ago than this (or never).
    pub inventory_max_age: Millis,
    /// The transports this notifier has, by [`Destination::transport`] name: a device is sent through the first
    /// of its [`destinations`] that one of them takes.
    pub transports: Vec<&'static str>,
}

/// Where a Package#0 goes, and so which transport takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// Through the push gateway to the RegID the device registered (Appendix D.2); the device id goes along so
    /// that a RegID the gateway no longer knows can be cleared from its record.
    Push { device_id: String, registration_id: String },
    /// Connectionless WAP Push over UDP (Appendix D.1).
    Udp(SocketAddr),
    /// WAP Push over SMS through the SMSC (SMPP 3.4) to this E.164 number (`+491701234567`).
    Sms { msisdn: String },
}

impl Destination {
    /// The transport's name, as in metrics and `notification.sent`.
    pub fn transport(&self) -> &'static str {
        match self {
            Destination::Push { .. } => "push",
            Destination::Udp(_) => "udp",
            Destination::Sms { .. } => "sms",
        }
    }
}

/// Every place `device` can be reached, in the order they are tried: the operator's `"notify"` order when it set
/// one (only the transports it names), else push first (only a device that registered a RegID has it), then UDP
/// (no cost, no SMSC between), then SMS. A transport the device has no address for is left out.
pub fn destinations(device: &Device) -> Vec<Destination> {
    NotifyTransport::effective_order(&device.notify_order)
        .into_iter()
        .filter_map(|transport| match transport {
            NotifyTransport::Push => device.push_registration.as_ref().map(|registration| Destination::Push {
                device_id: device.id.clone(),
                registration_id: registration.registration_id.clone(),
            }),
            NotifyTransport::Udp => device.notify_address.map(|mut address| {
                if address.port() == 0 {
                    address.set_port(WAP_PUSH_PORT);
                }
                Destination::Udp(address)
            }),
            NotifyTransport::Sms => device.msisdn.clone().map(|msisdn| Destination::Sms { msisdn }),
        })
        .collect()
}

/// A request the notifier can send, before its NOTIFICATION-ID is drawn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The first destination a configured transport takes.
    pub destination: Destination,
    /// The ones after it that a configured transport takes, tried in turn when a send fails.
    pub fallbacks: Vec<Destination>,
    /// Every option but NOTIFICATION-ID and SHA256-DIGEST, which [`Plan::package`] adds.
    pub notification: Notification,
    /// The device's AuthSecret; `None` (or empty) sends the package unsigned.
    pub secret: Option<String>,
}

/// Why a request gets no Package#0: the `reason` of `notification.failed` and the detail for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no device {0:?} in the store")]
    UnknownDevice(String),
    #[error("the device has no push RegID, notify address or MSISDN that a configured transport can reach")]
    NoTransport,
    #[error("{0}")]
    InvalidRequest(String),
    /// Every transport tried failed the send, and at least one failure may pass (no bind, no answer, throttled).
    #[error("{0}")]
    Transport(String),
    /// Every transport tried refused the message itself (an SMSC refusing the number): another try would not help.
    #[error("{0}")]
    TransportRejected(String),
}

impl Refusal {
    /// The `reason` field of `notification.failed` (docs/events.md).
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::UnknownDevice(_) => "unknown_device",
            Refusal::NoTransport => "no_transport",
            Refusal::InvalidRequest(_) => "invalid_request",
            Refusal::Transport(_) => "transport_error",
            Refusal::TransportRejected(_) => "transport_rejected",
        }
    }

    /// Whether trying the request again later may succeed: only a transport failure that may pass.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Refusal::Transport(_))
    }
}

/// When a request whose attempt failed is tried again: exponential backoff from `first_delay`, doubling per
/// attempt up to `max_delay`, for at most `max_attempts` attempts in all. Each delay is spread by up to a fifth
/// either way, by the request id, so that a fleet whose sends failed together does not retry together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per request, the first included (1: never retry).
    pub max_attempts: u32,
    pub first_delay: Millis,
    pub max_delay: Millis,
}

impl RetryPolicy {
    /// When attempt `attempt + 1` is due after attempt `attempt` failed at `now` with `refusal`; `None` when
    /// the failure is the request's outcome (not retryable, or no attempts left).
    pub fn next_attempt_at(&self, request_id: &str, attempt: u32, refusal: &Refusal, now: Millis) -> Option<Millis> {
        if !refusal.is_retryable() || attempt >= self.max_attempts {
            return None;
        }
        let doublings = attempt.saturating_sub(1).min(32);
        let delay = self.first_delay.saturating_mul(1u64 << doublings).min(self.max_delay);
        // A fixed spread per (request, attempt): FNV-1a, in [-delay/5, +delay/5].
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in request_id.bytes().chain(attempt.to_be_bytes()) {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
        let spread = delay / 5;
        let offset = if spread == 0 { 0 } else { hash % (2 * spread + 1) };
        Some(now.saturating_add(delay - spread + offset))
    }
}

/// Reads a `notification.requested` (or the notifier's own `notification.retry`) event; anything else on the
/// topic is `None` (not for the notifier).
pub fn read_request(event: &Event) -> Option<Result<NotificationRequested, Refusal>> {
    if event.event_type != NOTIFICATION_REQUESTED && event.event_type != NOTIFICATION_RETRY {
        return None;
    }
    Some(
        serde_json::from_value::<NotificationRequested>(event.payload.clone())
            .map_err(|error| Refusal::InvalidRequest(format!("unreadable {}: {error}", event.event_type)))
            .and_then(|request| {
                if request.device_id.is_empty() || request.request_id.is_empty() {
                    Err(Refusal::InvalidRequest("notification.requested without a device or request id".to_owned()))
                } else {
                    Ok(request)
                }
            }),
    )
}

/// The Package#0 options for `request` to `device` at `now`, and where it goes.
///
/// PREFERRED-CON-TYPE is the request's, else the device's, else left out. REQ-MOS is set when the request asks
/// for it, or when the device's inventory was never read or is older than `rules.inventory_max_age`.
pub fn plan(
    request: &NotificationRequested,
    device: Option<&Device>,
    rules: &PackageRules,
    now: Millis,
) -> Result<Plan, Refusal> {
    let device = device.ok_or_else(|| Refusal::UnknownDevice(request.device_id.clone()))?;
    let names =
        if request.preferred_con_types.is_empty() { &device.preferred_con_types } else { &request.preferred_con_types };
    let preferred_connection_types = connection_types(names)?;
    let mut usable =
        destinations(device).into_iter().filter(|destination| rules.transports.contains(&destination.transport()));
    let destination = usable.next().ok_or(Refusal::NoTransport)?;
    let fallbacks = usable.collect();
    let inventory_stale = match device.inventory.updated_at {
        None => true,
        Some(read_at) => now.saturating_sub(read_at) > rules.inventory_max_age,
    };
    let notification = Notification {
        server_id: Some(rules.server_id.clone()),
        preferred_connection_types,
        notification_id: None,
        digest: None,
        request_mos: request.request_mos || inventory_stale,
        unknown_options: Vec::new(),
    };
    let secret = device.auth_secret.clone().filter(|secret| !secret.is_empty());
    Ok(Plan { destination, fallbacks, notification, secret })
}

fn connection_types(names: &[String]) -> Result<Option<PreferredConnectionTypes>, Refusal> {
    if names.is_empty() {
        return Ok(None);
    }
    let invalid = |error: omadm_proto::notification::ConnectionTypeError| {
        Refusal::InvalidRequest(format!("invalid preferred_con_types: {error}"))
    };
    let types =
        names.iter().map(|name| name.parse::<ConnectionType>()).collect::<Result<Vec<_>, _>>().map_err(invalid)?;
    PreferredConnectionTypes::new(types).map(Some).map_err(invalid)
}

/// The NOTIFICATION-ID of the `sequence`th notification to one device: its counter's low 16 bits.
///
/// The counter is per (SERVER-ID, device), so one device's ids repeat only after 65,536 notifications to that
/// device: far past any duplicate memory a client keeps (omadm-client remembers the last 64 per server).
pub fn notification_id(sequence: u64) -> u16 {
    (sequence & 0xffff) as u16
}

/// The Store counter a device's NOTIFICATION-IDs are drawn from.
pub fn notification_id_counter(server_id: &str, device_id: &str) -> String {
    format!("notification-id:{server_id}:{device_id}")
}

/// SHA256-DIGEST's time: POSIX seconds, which fit 32 bits until 2106.
pub fn posix_seconds(now: Millis) -> u32 {
    u32::try_from(now / 1000).unwrap_or(u32::MAX)
}

impl Plan {
    /// The Package#0 bytes with `notification_id`, signed at `now` when the device has a secret.
    pub fn package(&self, notification_id: u16, now: Millis) -> Result<Vec<u8>, Refusal> {
        let notification = Notification { notification_id: Some(notification_id), ..self.notification.clone() };
        let encoded = match &self.secret {
            Some(secret) => notification.encode_signed(secret.as_bytes(), posix_seconds(now)),
            None => notification.encode(),
        };
        encoded.map_err(|error| Refusal::InvalidRequest(format!("cannot encode the Package#0: {error}")))
    }
}

/// What to do with a request, given the device's notification in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Nothing in flight: send.
    Send,
    /// This very request was sent already (the bus handed it over again): its outcome stands, nothing is sent.
    AlreadySent { notification_id: u16, sent_at: Millis },
    /// Another request of the device is in flight: this one joins it.
    Collapse { into: String },
}

/// The last Package#0 sent to each device within the window: requests for a device that already has one in
/// flight collapse into it.
///
/// Held by the consumer that owns the device's partition (all of one device's requests land in one partition),
/// so one replica sees every request of a device; after a rebalance or restart the memory starts empty, which
/// can send a spare Package#0, never lose one.
#[derive(Debug)]
pub struct InFlight {
    window: Millis,
    by_device: HashMap<String, Sent>,
    /// When entries older than the window were last dropped.
    pruned_at: Millis,
}

#[derive(Debug, Clone)]
struct Sent {
    request_id: String,
    notification_id: u16,
    sent_at: Millis,
    /// The device's last session when the notification left: a later one answered it.
    last_session: Option<String>,
}

impl InFlight {
    /// A notification counts as in flight for `window` ms after it was sent; 0 turns collapsing off.
    pub fn new(window: Millis) -> Self {
        InFlight { window, by_device: HashMap::new(), pruned_at: 0 }
    }

    /// What to do with `request_id` for `device_id`, whose last session is `last_session`: a notification sent
    /// within the window collapses it, unless the device has had a session since (that one was answered, and
    /// this request asks for another session: a campaign's read-back after an update, say).
    pub fn admit(&mut self, device_id: &str, request_id: &str, last_session: Option<&str>, now: Millis) -> Admission {
        self.prune(now);
        match self.by_device.get(device_id) {
            Some(sent) if sent.request_id != request_id && sent.last_session.as_deref() != last_session => {
                self.by_device.remove(device_id);
                Admission::Send
            }
            Some(sent) if now.saturating_sub(sent.sent_at) < self.window => {
                if sent.request_id == request_id {
                    Admission::AlreadySent { notification_id: sent.notification_id, sent_at: sent.sent_at }
                } else {
                    Admission::Collapse { into: sent.request_id.clone() }
                }
            }
            _ => Admission::Send,
        }
    }

    /// Remembers that `request_id`'s Package#0 left for `device_id` at `sent_at`, when its last session was
    /// `last_session`.
    pub fn sent(
        &mut self,
        device_id: &str,
        request_id: &str,
        notification_id: u16,
        last_session: Option<&str>,
        sent_at: Millis,
    ) {
        if self.window == 0 {
            return;
        }
        let last_session = last_session.map(str::to_owned);
        let sent = Sent { request_id: request_id.to_owned(), notification_id, sent_at, last_session };
        self.by_device.insert(device_id.to_owned(), sent);
    }

    /// Devices with a notification in flight (remembered, not yet pruned).
    pub fn len(&self) -> usize {
        self.by_device.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_device.is_empty()
    }

    /// Drops what left the window, at most once per window, so memory follows the devices notified lately.
    fn prune(&mut self, now: Millis) {
        if now.saturating_sub(self.pruned_at) < self.window {
            return;
        }
        let window = self.window;
        self.by_device.retain(|_, sent| now.saturating_sub(sent.sent_at) < window);
        self.pruned_at = now;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use omadm_core::session::events::notification_requested;
    use omadm_proto::notification::{self, verify};

    use super::*;

    const NOW: Millis = 1_700_000_000_000;
    const DAY: Millis = 86_400_000;

    fn rules() -> PackageRules {
        PackageRules { server_id: "dms.example.com".to_owned(), inventory_max_age: DAY, transports: vec!["udp"] }
    }

    fn request(types: &[&str], request_mos: bool) -> NotificationRequested {
        NotificationRequested {
            device_id: "IMEI:1".to_owned(),
            request_id: "r1".to_owned(),
            requested_at: NOW,
            requested_by: "operator".to_owned(),
            request_mos,
            preferred_con_types: types.iter().map(|name| (*name).to_owned()).collect(),
            attempt: 1,
        }
    }

    fn device() -> Device {
        let mut device = Device::new("IMEI:1", omadm_core::auth::credentials_for("IMEI:1", "omadm", "p"), 0);
        device.notify_address = Some("127.0.0.1:40000".parse().unwrap());
        device.auth_secret = Some("s3cret".to_owned());
        device.inventory.updated_at = Some(NOW - 1000);
        device
    }

    #[test]
    fn a_signed_package_carries_every_option_and_verifies_with_the_device_secret() {
        let plan = plan(&request(&[], false), Some(&device()), &rules(), NOW).unwrap();
        assert_eq!(plan.destination, Destination::Udp("127.0.0.1:40000".parse().unwrap()));
        assert_eq!(plan.destination.transport(), "udp");
        let package = plan.package(7, NOW).unwrap();
        let decoded = verify(&package, Some(b"s3cret"), posix_seconds(NOW), Some(60)).unwrap();
        assert_eq!(decoded.server_id.as_deref(), Some("dms.example.com"));
        assert_eq!(decoded.notification_id, Some(7));
        assert_eq!(decoded.digest.unwrap().time, 1_700_000_000, "the time field is now");
        assert!(!decoded.request_mos, "fresh inventory and not asked");
        assert_eq!(decoded.preferred_connection_types, None);
        assert!(verify(&package, Some(b"other"), posix_seconds(NOW), None).is_err(), "signed with that secret");
    }

    #[test]
    fn without_a_secret_the_package_is_unsigned() {
        for secret in [None, Some(String::new())] {
            let device = Device { auth_secret: secret, ..device() };
            let package = plan(&request(&[], false), Some(&device), &rules(), NOW).unwrap().package(1, NOW).unwrap();
            let decoded = Notification::decode(&package).unwrap();
            assert_eq!((decoded.digest, decoded.notification_id), (None, Some(1)));
        }
    }

    #[test]
    fn req_mos_when_asked_or_when_the_inventory_is_missing_or_old() {
        let fresh = device();
        let never_read = Device { inventory: Default::default(), ..device() };
        let mut old = device();
        old.inventory.updated_at = Some(NOW - DAY - 1);
        let mut just_in_age = device();
        just_in_age.inventory.updated_at = Some(NOW - DAY);
        for (device, asked, expected) in [
            (&fresh, false, false),
            (&fresh, true, true),
            (&never_read, false, true),
            (&old, false, true),
            (&just_in_age, false, false),
        ] {
            let plan = plan(&request(&[], asked), Some(device), &rules(), NOW).unwrap();
            assert_eq!(
                plan.notification.request_mos, expected,
                "asked {asked}, read at {:?}",
                device.inventory.updated_at
            );
        }
    }

    #[test]
    fn preferred_connection_types_come_from_the_request_else_the_device() {
        let mut device = device();
        device.preferred_con_types = vec!["wireline".to_owned()];
        let types = |plan: Plan| plan.notification.preferred_connection_types.map(|types| types.as_slice().to_vec());
        let from_request = plan(&request(&["mobile", "any"], false), Some(&device), &rules(), NOW).unwrap();
        assert_eq!(types(from_request), Some(vec![ConnectionType::Mobile, ConnectionType::AnyAvailable]));
        let from_device = plan(&request(&[], false), Some(&device), &rules(), NOW).unwrap();
        assert_eq!(types(from_device), Some(vec![ConnectionType::Wireline]));
        for bad in [&["carrier-pigeon"][..], &["any", "mobile"], &["mobile", "mobile"]] {
            let refused = plan(&request(bad, false), Some(&device), &rules(), NOW).unwrap_err();
            assert_eq!(refused.reason(), "invalid_request", "{bad:?}");
        }
    }

    #[test]
    fn unknown_devices_and_devices_without_an_address_are_refused() {
        assert_eq!(plan(&request(&[], false), None, &rules(), NOW).unwrap_err().reason(), "unknown_device");
        let silent = Device { notify_address: None, ..device() };
        assert_eq!(plan(&request(&[], false), Some(&silent), &rules(), NOW).unwrap_err(), Refusal::NoTransport);
        let portless = Device { notify_address: Some("10.0.0.9:0".parse().unwrap()), ..device() };
        let planned = plan(&request(&[], false), Some(&portless), &rules(), NOW).unwrap();
        assert_eq!(
            planned.destination,
            Destination::Udp(format!("10.0.0.9:{}", notification::WAP_PUSH_PORT).parse().unwrap())
        );
    }

    #[test]
    fn udp_goes_first_then_sms_and_only_through_a_configured_transport() {
        let both = Device { msisdn: Some("+491701234567".to_owned()), ..device() };
        let sms = Destination::Sms { msisdn: "+491701234567".to_owned() };
        assert_eq!(destinations(&both), vec![Destination::Udp("127.0.0.1:40000".parse().unwrap()), sms.clone()]);
        let phone_only = Device { notify_address: None, ..both.clone() };
        assert_eq!(destinations(&phone_only), vec![sms.clone()]);
        let with_smsc = PackageRules { transports: vec!["udp", "sms"], ..rules() };
        let planned = plan(&request(&[], false), Some(&both), &with_smsc, NOW).unwrap();
        assert_eq!(planned.destination.transport(), "udp", "both: UDP first");
        let planned = plan(&request(&[], false), Some(&phone_only), &with_smsc, NOW).unwrap();
        assert_eq!((planned.destination.transport(), planned.destination), ("sms", sms));
        // No SMSC configured: a phone-only device has no transport, one with both still goes over UDP.
        let refused = plan(&request(&[], false), Some(&phone_only), &rules(), NOW).unwrap_err();
        assert_eq!((refused.reason(), refused), ("no_transport", Refusal::NoTransport));
        assert_eq!(plan(&request(&[], false), Some(&both), &rules(), NOW).unwrap().destination.transport(), "udp");
        let udp_less = PackageRules { transports: vec!["sms"], ..rules() };
        assert_eq!(plan(&request(&[], false), Some(&both), &udp_less, NOW).unwrap().destination.transport(), "sms");
    }

    #[test]
    fn the_operators_order_decides_and_the_rest_are_fallbacks() {
        let udp = Destination::Udp("127.0.0.1:40000".parse().unwrap());
        let sms = Destination::Sms { msisdn: "+491701234567".to_owned() };
        let both = Device { msisdn: Some("+491701234567".to_owned()), ..device() };
        let with_smsc = PackageRules { transports: vec!["udp", "sms"], ..rules() };
        let default_order = plan(&request(&[], false), Some(&both), &with_smsc, NOW).unwrap();
        assert_eq!((default_order.destination, default_order.fallbacks), (udp.clone(), vec![sms.clone()]));

        let sms_first = Device { notify_order: vec![NotifyTransport::Sms, NotifyTransport::Udp], ..both.clone() };
        assert_eq!(destinations(&sms_first), vec![sms.clone(), udp.clone()]);
        let planned = plan(&request(&[], false), Some(&sms_first), &with_smsc, NOW).unwrap();
        assert_eq!((planned.destination, planned.fallbacks), (sms.clone(), vec![udp.clone()]));
        // Without an SMSC the listed SMS is skipped, not a failure.
        let planned = plan(&request(&[], false), Some(&sms_first), &rules(), NOW).unwrap();
        assert_eq!((planned.destination, planned.fallbacks), (udp.clone(), Vec::new()));

        // Only what the operator lists; repeats count once.
        let sms_only = Device { notify_order: vec![NotifyTransport::Sms, NotifyTransport::Sms], ..both.clone() };
        assert_eq!(destinations(&sms_only), vec![sms]);
        let refused = plan(&request(&[], false), Some(&sms_only), &rules(), NOW).unwrap_err();
        assert_eq!(refused, Refusal::NoTransport, "UDP is not listed, SMS has no SMSC");
        let udp_listed_without_address =
            Device { notify_order: vec![NotifyTransport::Udp], notify_address: None, ..both };
        assert_eq!(destinations(&udp_listed_without_address), Vec::new());
    }

    #[test]
    fn push_goes_first_for_a_registered_device_and_only_with_a_push_gateway() {
        let udp = Destination::Udp("127.0.0.1:40000".parse().unwrap());
        let sms = Destination::Sms { msisdn: "+491701234567".to_owned() };
        let push = Destination::Push { device_id: "IMEI:1".to_owned(), registration_id: "tok:1".to_owned() };
        let registration =
            omadm_core::model::PushRegistration { registration_id: "tok:1".to_owned(), registered_at: 1 };
        let all =
            Device { msisdn: Some("+491701234567".to_owned()), push_registration: Some(registration), ..device() };
        assert_eq!(destinations(&all), vec![push.clone(), udp.clone(), sms.clone()], "the default order");
        let every = PackageRules { transports: vec!["udp", "sms", "push"], ..rules() };
        let planned = plan(&request(&[], false), Some(&all), &every, NOW).unwrap();
        assert_eq!((planned.destination, planned.fallbacks), (push.clone(), vec![udp.clone(), sms.clone()]));
        // No push gateway configured: the RegID is skipped, UDP goes first.
        let no_gateway = PackageRules { transports: vec!["udp", "sms"], ..rules() };
        let planned = plan(&request(&[], false), Some(&all), &no_gateway, NOW).unwrap();
        assert_eq!((planned.destination, planned.fallbacks), (udp.clone(), vec![sms.clone()]));
        // Unregistered (no RegID): push is left out of the default order.
        let unregistered = Device { push_registration: None, ..all.clone() };
        assert_eq!(destinations(&unregistered), vec![udp.clone(), sms.clone()]);
        // The operator's order puts push last, or leaves it out.
        let push_last = Device { notify_order: vec![NotifyTransport::Udp, NotifyTransport::Push], ..all.clone() };
        assert_eq!(destinations(&push_last), vec![udp, push.clone()]);
        let push_only = Device { notify_order: vec![NotifyTransport::Push], ..unregistered };
        assert_eq!(plan(&request(&[], false), Some(&push_only), &every, NOW).unwrap_err(), Refusal::NoTransport);
        assert_eq!(push.transport(), "push");
    }

    #[test]
    fn only_well_formed_requests_are_read() {
        let event = notification_requested(request(&["wireless"], true));
        assert_eq!(read_request(&event).unwrap().unwrap(), request(&["wireless"], true));
        let mut other = event.clone();
        other.event_type = "notification.sent".to_owned();
        assert!(read_request(&other).is_none(), "outcome events share the topic and are not requests");
        let mut broken = event.clone();
        broken.payload = serde_json::json!({"device_id": 7});
        assert_eq!(read_request(&broken).unwrap().unwrap_err().reason(), "invalid_request");
        let mut empty = event;
        empty.payload["request_id"] = serde_json::json!("");
        assert_eq!(read_request(&empty).unwrap().unwrap_err().reason(), "invalid_request");
    }

    #[test]
    fn notification_ids_wrap_after_two_bytes_and_never_repeat_within_65536_of_one_device() {
        assert_eq!(notification_id(1), 1);
        assert_eq!(notification_id(65_535), 65_535);
        assert_eq!(notification_id(65_536), 0);
        assert_eq!(notification_id(65_537), 1);
        // Any 65,536 consecutive draws of one device's counter give distinct ids.
        let start = 65_000u64;
        let ids: std::collections::HashSet<u16> = (start..start + 65_536).map(notification_id).collect();
        assert_eq!(ids.len(), 65_536);
        assert_eq!(notification_id_counter("srv", "IMEI:1"), "notification-id:srv:IMEI:1");
    }

    #[test]
    fn requests_within_the_window_collapse_into_the_one_in_flight() {
        let mut in_flight = InFlight::new(60_000);
        let before = Some("s1");
        assert_eq!(in_flight.admit("d1", "r1", before, NOW), Admission::Send);
        in_flight.sent("d1", "r1", 9, before, NOW);
        assert_eq!(in_flight.admit("d1", "r2", before, NOW + 59_999), Admission::Collapse { into: "r1".to_owned() });
        assert_eq!(
            in_flight.admit("d1", "r1", before, NOW + 10),
            Admission::AlreadySent { notification_id: 9, sent_at: NOW },
            "the same request handled again is not sent twice"
        );
        assert_eq!(in_flight.admit("d2", "r3", None, NOW + 10), Admission::Send, "another device");
        assert_eq!(in_flight.admit("d1", "r4", before, NOW + 60_000), Admission::Send, "the window has passed");
        assert!(in_flight.is_empty(), "entries out of the window are dropped");
        let mut off = InFlight::new(0);
        off.sent("d1", "r1", 1, None, NOW);
        assert_eq!(off.admit("d1", "r2", None, NOW), Admission::Send);
    }

    #[test]
    fn a_notification_answered_by_a_session_no_longer_collapses_the_next_request() {
        let mut in_flight = InFlight::new(60_000);
        in_flight.sent("d1", "r1", 9, None, NOW);
        assert_eq!(in_flight.admit("d1", "r2", None, NOW + 5), Admission::Collapse { into: "r1".to_owned() });
        // The device opened a session since (its first ever, here): r1 was answered, r3 asks for another.
        assert_eq!(in_flight.admit("d1", "r3", Some("s7"), NOW + 10), Admission::Send);
        in_flight.sent("d1", "r3", 10, Some("s7"), NOW + 10);
        assert_eq!(in_flight.admit("d1", "r4", Some("s7"), NOW + 20), Admission::Collapse { into: "r3".to_owned() });
        assert_eq!(
            in_flight.admit("d1", "r3", Some("s8"), NOW + 30),
            Admission::AlreadySent { notification_id: 10, sent_at: NOW + 10 },
            "the same request handled again is still not sent twice"
        );
    }

    #[test]
    fn failed_attempts_back_off_exponentially_within_a_spread_up_to_the_cap() {
        let policy = RetryPolicy { max_attempts: 6, first_delay: 10_000, max_delay: 60_000 };
        let failed = Refusal::Transport("the SMSC did not answer".to_owned());
        let delays: Vec<Millis> =
            (1..6).map(|attempt| policy.next_attempt_at("r1", attempt, &failed, NOW).unwrap() - NOW).collect();
        for (delay, nominal) in delays.iter().zip([10_000u64, 20_000, 40_000, 60_000, 60_000]) {
            assert!((nominal - nominal / 5..=nominal + nominal / 5).contains(delay), "{delay} vs {nominal}");
        }
        assert_eq!(policy.next_attempt_at("r1", 6, &failed, NOW), None, "no attempts left");
        assert_eq!(policy.next_attempt_at("r1", 2, &failed, NOW), policy.next_attempt_at("r1", 2, &failed, NOW));
        // The spread tells requests apart: a fleet that failed together does not retry in one instant.
        let spread: std::collections::HashSet<Millis> =
            (0..100).filter_map(|index| policy.next_attempt_at(&format!("r{index}"), 1, &failed, NOW)).collect();
        assert!(spread.len() > 90, "{} distinct times of 100", spread.len());
        for refusal in [
            Refusal::TransportRejected("ESME_RINVDSTADR".to_owned()),
            Refusal::NoTransport,
            Refusal::UnknownDevice("IMEI:1".to_owned()),
            Refusal::InvalidRequest("unreadable".to_owned()),
        ] {
            assert_eq!(policy.next_attempt_at("r1", 1, &refusal, NOW), None, "{refusal:?} is final");
        }
        let never = RetryPolicy { max_attempts: 1, ..policy };
        assert_eq!(never.next_attempt_at("r1", 1, &failed, NOW), None);
    }

    #[test]
    fn the_notifiers_own_retries_are_read_as_requests() {
        let retry = omadm_core::session::events::notification_retry(
            NotificationRequested { attempt: 3, ..request(&[], false) },
            NOW + 40_000,
        );
        assert_eq!(read_request(&retry), Some(Ok(NotificationRequested { attempt: 3, ..request(&[], false) })));
        let mut other = retry.clone();
        other.event_type = "notification.sent".to_owned();
        assert_eq!(read_request(&other), None);
    }
}
