//! A registered device: credentials, tags, inventory and what it told us in its last sessions.

use std::collections::BTreeMap;

use omadm_proto::package::SupportedObject;
use serde::{Deserialize, Serialize};

use crate::clock::Millis;

/// Longest DevID accepted, in bytes (real ones, IMEI:, MEID:, MAC: or vendor serials, are far shorter).
pub const MAX_DEVICE_ID_BYTES: usize = 256;

/// The device-id rule as one sentence, for error messages and the API document.
pub const DEVICE_ID_RULE: &str = "a device id is 1 to 256 visible ASCII characters (no spaces or control characters)";

/// The same rule as a regular expression (the OpenAPI `pattern` of `{devid}`).
pub const DEVICE_ID_PATTERN: &str = "^[!-~]{1,256}$";

/// Why a device id is refused: the one rule the operator API and the device edge (`OMADM-DevID`) share.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceIdError {
    #[error("empty device id: {DEVICE_ID_RULE}")]
    Empty,
    #[error("device id of {0} bytes: {DEVICE_ID_RULE}")]
    TooLong(usize),
    #[error("device id {0:?} has a character that is not visible ASCII: {DEVICE_ID_RULE}")]
    NotVisibleAscii(String),
}

/// Checks a DevID: 1 to [`MAX_DEVICE_ID_BYTES`] visible ASCII characters (`!` to `~`), the form the
/// `OMADM-DevID` header can carry, so the API never registers a device that could not connect.
pub fn check_device_id(device_id: &str) -> Result<(), DeviceIdError> {
    if device_id.is_empty() {
        return Err(DeviceIdError::Empty);
    }
    if device_id.len() > MAX_DEVICE_ID_BYTES {
        return Err(DeviceIdError::TooLong(device_id.len()));
    }
    if !device_id.bytes().all(|byte| byte.is_ascii_graphic()) {
        return Err(DeviceIdError::NotVisibleAscii(device_id.to_owned()));
    }
    Ok(())
}

/// The MSISDN rule as one sentence: E.164 in international form, as the SMSC takes it.
pub const MSISDN_RULE: &str = "an MSISDN is E.164 in international form: '+' then 6 to 15 digits, e.g. +491701234567";

/// The same rule as a regular expression (the OpenAPI `pattern` of `msisdn`).
pub const MSISDN_PATTERN: &str = "^\\+[0-9]{6,15}$";

/// Why an MSISDN is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MSISDN {0:?}: {MSISDN_RULE}")]
pub struct MsisdnError(pub String);

/// Checks an MSISDN: `+` then 6 to 15 digits (E.164 allows 15 at most; 6 keeps out short codes), so the SMS
/// transport can address it with TON international, NPI ISDN.
pub fn check_msisdn(msisdn: &str) -> Result<(), MsisdnError> {
    let digits = msisdn.strip_prefix('+').unwrap_or_default();
    if !(6..=15).contains(&digits.len()) || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(MsisdnError(msisdn.to_owned()));
    }
    Ok(())
}

/// A device known to the server, keyed by its DevID (the `OMADM-DevID` header).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Device {
    /// DevInfo/DevID, e.g. `IMEI:493005100592800`.
    pub id: String,
    /// HTTP authentication secrets, stored hashed.
    pub credentials: Credentials,
    /// DMAcc AuthNoti/AuthSecret used to sign this device's Package#0. A shared
    /// secret the server must be able to use, so it is kept as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_secret: Option<String>,
    /// Operator labels, e.g. {"region": "eu", "fleet": "meters"}.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// DevInfo and SessionInfo values, refreshed by the server itself.
    #[serde(default)]
    pub inventory: Inventory,
    /// The MOS array of the last Package#1 that carried one.
    #[serde(default)]
    pub supported_objects: Vec<SupportedObject>,
    /// Where the device receives Package#0 as connectionless WAP Push over UDP
    /// (Appendix D.1: IP devices listen on port 2948), as it registered it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_address: Option<std::net::SocketAddr>,
    /// The device's phone number (E.164, `+491701234567`): Package#0 goes to it as WAP Push over SMS when the
    /// device has no notify address and an SMSC is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msisdn: Option<String>,
    /// The device's registration with the push service (Appendix D.2.4): the RegID it POSTed to the RegURL of
    /// its bootstrap's Push/GCM, and when. Set and cleared by the device edge (and cleared by the notifier when
    /// the push gateway says the RegID is no longer registered); the operator API only shows whether one is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_registration: Option<PushRegistration>,
    /// The operator's order of the ways to reach the device with a Package#0 (`"notify": ["sms", "udp"]`); the
    /// notifier tries them in turn and falls back to the next when one fails. Empty: push, then UDP, then SMS.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify_order: Vec<NotifyTransport>,
    /// PREFERRED-CON-TYPE of this device's Package#0 when the request names none, highest priority first:
    /// `mobile`, `wireless`, `wireline`, `any` (last only). Empty: no preference is sent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preferred_con_types: Vec<String>,
    /// The most recent session, ended or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_session_id: Option<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// Longest RegID the device edge accepts, in bytes (FCM registration tokens are about 160; the bound keeps a
/// device from storing kilobytes in its record).
pub const MAX_PUSH_REGISTRATION_ID_BYTES: usize = 4096;

/// The RegID rule as one sentence, for error messages.
pub const PUSH_REGISTRATION_ID_RULE: &str = "a RegId is 1 to 4096 visible ASCII characters";

/// Why a RegID is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid RegId of {length} bytes: {PUSH_REGISTRATION_ID_RULE}")]
pub struct PushRegistrationIdError {
    pub length: usize,
}

/// Checks a RegID: 1 to [`MAX_PUSH_REGISTRATION_ID_BYTES`] visible ASCII characters (FCM tokens are letters,
/// digits, `-`, `_` and `:`), so it can go into a push gateway's request as it is.
pub fn check_push_registration_id(registration_id: &str) -> Result<(), PushRegistrationIdError> {
    let length = registration_id.len();
    if length == 0 || length > MAX_PUSH_REGISTRATION_ID_BYTES || !registration_id.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(PushRegistrationIdError { length });
    }
    Ok(())
}

/// A device's registration with the push service (D.2.4), as the device edge stored it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushRegistration {
    /// The RegID (an FCM registration token): the push gateway's address of the device.
    pub registration_id: String,
    /// When the device registered it.
    pub registered_at: Millis,
}

/// A way a Package#0 reaches a device: through the push service to its RegID, WAP Push over UDP to its notify
/// address, or over SMS to its MSISDN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum NotifyTransport {
    Push,
    Udp,
    Sms,
}

impl NotifyTransport {
    /// The order the notifier tries when the operator set none: push first (an Android fleet wakes on it, at
    /// no cost, and only a device that registered a RegID has it), then UDP (no cost, no SMSC between), then SMS.
    pub const DEFAULT_ORDER: [NotifyTransport; 3] = [NotifyTransport::Push, NotifyTransport::Udp, NotifyTransport::Sms];

    /// The name in the API, events and metrics.
    pub fn name(self) -> &'static str {
        match self {
            NotifyTransport::Push => "push",
            NotifyTransport::Udp => "udp",
            NotifyTransport::Sms => "sms",
        }
    }

    /// `order` without repeats (the first of each kept), or the default order when it is empty.
    pub fn effective_order(order: &[NotifyTransport]) -> Vec<NotifyTransport> {
        let mut effective: Vec<NotifyTransport> = Vec::with_capacity(Self::DEFAULT_ORDER.len());
        for transport in if order.is_empty() { &Self::DEFAULT_ORDER[..] } else { order } {
            if !effective.contains(transport) {
                effective.push(*transport);
            }
        }
        effective
    }
}

/// Per-device HTTP authentication material (5.1.2). Digest (RFC 7616) needs
/// H(A1) = H(username:realm:password) per algorithm; Basic is checked against
/// the SHA-256 one. The password itself is never stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    /// The realm H(A1) was computed for.
    pub realm: String,
    /// Hex MD5(username:realm:password), for Digest with algorithm=MD5.
    pub ha1_md5: String,
    /// Hex SHA-256(username:realm:password), for Digest SHA-256 and for Basic.
    pub ha1_sha256: String,
}

/// What the server knows of the device's identity, from DevInfo and SessionInfo GETs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub man: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dmv: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lang: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dev_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oem: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fwv: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swv: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hwv: Option<String>,
    /// SessionInfo CBT as a name: `mobile`, `wireless`, `wireline` or `unknown`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer: Option<String>,
    /// SessionInfo ROAMING: `true`, `false`, or absent when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roaming: Option<bool>,
    /// When DevInfo was last read; `None` until the first inventory GET answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<Millis>,
}

/// Filters of `GET /api/v1/devices`: every given field must match exactly.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceFilter {
    pub man: Option<String>,
    pub model: Option<String>,
    pub fwv: Option<String>,
    pub swv: Option<String>,
    pub dev_type: Option<String>,
    /// (key, value) tags that must all be present.
    pub tags: Vec<(String, String)>,
}

/// One page of devices in id order; `next` is the cursor for the following page.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DevicePage {
    pub devices: Vec<Device>,
    pub next: Option<String>,
}

impl Device {
    /// A device just registered: its credentials and nothing learned yet.
    pub fn new(id: impl Into<String>, credentials: Credentials, now: Millis) -> Self {
        Device {
            id: id.into(),
            credentials,
            auth_secret: None,
            tags: BTreeMap::new(),
            inventory: Inventory::default(),
            supported_objects: Vec::new(),
            notify_address: None,
            msisdn: None,
            push_registration: None,
            notify_order: Vec::new(),
            preferred_con_types: Vec::new(),
            last_session_id: None,
            created_at: now,
            updated_at: now,
        }
    }
}

impl DeviceFilter {
    /// True when `device` satisfies every given field.
    pub fn matches(&self, device: &Device) -> bool {
        let field = |wanted: &Option<String>, actual: &Option<String>| wanted.is_none() || wanted == actual;
        field(&self.man, &device.inventory.man)
            && field(&self.model, &device.inventory.model)
            && field(&self.fwv, &device.inventory.fwv)
            && field(&self.swv, &device.inventory.swv)
            && field(&self.dev_type, &device.inventory.dev_type)
            && self.tags.iter().all(|(key, value)| device.tags.get(key) == Some(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_ids_are_visible_ascii_of_bounded_length() {
        for good in ["IMEI:493005100592800", "MAC:00-11-22", "a", "x/y", &"d".repeat(MAX_DEVICE_ID_BYTES)] {
            assert_eq!(check_device_id(good), Ok(()), "{good:?}");
        }
        assert_eq!(check_device_id(""), Err(DeviceIdError::Empty));
        assert_eq!(check_device_id(&"d".repeat(257)), Err(DeviceIdError::TooLong(257)));
        for bad in ["dévice", "dev 1", "\u{1F4F1}", "dev\t1", "dev\u{7f}"] {
            assert!(matches!(check_device_id(bad), Err(DeviceIdError::NotVisibleAscii(_))), "{bad:?}");
        }
        assert!(check_device_id("dev 1").unwrap_err().to_string().contains(DEVICE_ID_RULE));
    }

    #[test]
    fn msisdns_are_plus_and_6_to_15_digits() {
        for good in ["+491701234567", "+123456", "+123456789012345"] {
            assert_eq!(check_msisdn(good), Ok(()), "{good:?}");
        }
        for bad in ["491701234567", "+12345", "+1234567890123456", "+49 170 1234567", "+49-170", "", "+", "++491701"] {
            assert_eq!(check_msisdn(bad), Err(MsisdnError(bad.to_owned())), "{bad:?}");
        }
        assert!(check_msisdn("0170").unwrap_err().to_string().contains(MSISDN_RULE));
    }

    #[test]
    fn registration_ids_are_visible_ascii_of_bounded_length() {
        let token = "cZ3f-9Qk:APA91bH_x7";
        assert_eq!(check_push_registration_id(token), Ok(()));
        assert_eq!(check_push_registration_id(&"t".repeat(MAX_PUSH_REGISTRATION_ID_BYTES)), Ok(()));
        for bad in [String::new(), "t".repeat(MAX_PUSH_REGISTRATION_ID_BYTES + 1), "a b".to_owned(), "é".to_owned()] {
            assert_eq!(check_push_registration_id(&bad), Err(PushRegistrationIdError { length: bad.len() }), "{bad:?}");
        }
    }

    #[test]
    fn push_goes_first_by_default_and_an_order_keeps_its_first_of_each() {
        use NotifyTransport::*;
        assert_eq!(NotifyTransport::effective_order(&[]), vec![Push, Udp, Sms]);
        assert_eq!(NotifyTransport::effective_order(&[Sms, Push, Sms]), vec![Sms, Push]);
        let names: Vec<&str> = NotifyTransport::DEFAULT_ORDER.iter().map(|transport| transport.name()).collect();
        assert_eq!(names, ["push", "udp", "sms"]);
        assert_eq!(serde_json::to_string(&Push).unwrap(), "\"push\"");
    }

    #[test]
    fn the_pattern_says_what_the_check_does() {
        // The pattern's class [!-~] is exactly the bytes is_ascii_graphic accepts.
        let graphic: Vec<u8> = (0u8..=127).filter(u8::is_ascii_graphic).collect();
        assert_eq!(graphic.first(), Some(&b'!'));
        assert_eq!(graphic.last(), Some(&b'~'));
        assert_eq!(graphic.len(), usize::from(b'~' - b'!') + 1);
        assert!(DEVICE_ID_PATTERN.contains(&MAX_DEVICE_ID_BYTES.to_string()));
    }
}
