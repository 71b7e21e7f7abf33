//! The option values of Package#0 (spec 5.2.1.2): numbers, connection types and the SHA256-DIGEST layout.

use std::fmt;
use std::str::FromStr;

/// Option number of SERVER-ID: the server identifier as UTF-8 text, e.g. `10 05 "srv-1"`.
pub const SERVER_ID: u16 = 1;
/// Option number of PREFERRED-CON-TYPE: one byte per connection type, highest priority first.
pub const PREFERRED_CON_TYPE: u16 = 2;
/// Option number of NOTIFICATION-ID: a 2-byte big-endian counter, e.g. `10 02 00 2a` for 42.
pub const NOTIFICATION_ID: u16 = 3;
/// Option number of SHA256-DIGEST: 4-byte POSIX time then the 32-byte SHA-256 digest.
pub const SHA256_DIGEST: u16 = 4;
/// Option number of REQ-MOS: no value (`10 00`), asks for the MOS array in Package#1.
pub const REQ_MOS: u16 = 5;

/// The highest option number the specification defines; anything above is an unknown option.
pub const LAST_STANDARD_OPTION: u16 = REQ_MOS;

/// Byte length of the NOTIFICATION-ID value.
pub const NOTIFICATION_ID_LENGTH: usize = 2;
/// Byte length of the SHA256-DIGEST value: 4 bytes of time plus 32 bytes of hash.
pub const DIGEST_OPTION_LENGTH: usize = 4 + DIGEST_HASH_LENGTH;
/// Byte length of the SHA-256 hash inside SHA256-DIGEST.
pub const DIGEST_HASH_LENGTH: usize = 32;

/// The spec's name of a standard option number, for error messages; `None` for unknown numbers.
pub fn standard_option_name(number: u16) -> Option<&'static str> {
    match number {
        SERVER_ID => Some("SERVER-ID"),
        PREFERRED_CON_TYPE => Some("PREFERRED-CON-TYPE"),
        NOTIFICATION_ID => Some("NOTIFICATION-ID"),
        SHA256_DIGEST => Some("SHA256-DIGEST"),
        REQ_MOS => Some("REQ-MOS"),
        _ => None,
    }
}

/// One connection type of PREFERRED-CON-TYPE, written as one byte.
///
/// Names used in text (CLI, JSON): `any`, `mobile`, `wireless`, `wireline`;
/// parsing also accepts the spec's `ANY_AVAILABLE`, any case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectionType {
    /// 0x00: whatever is available now; only allowed as the last entry.
    AnyAvailable = 0,
    /// 0x01: a mobile (cellular) bearer.
    Mobile = 1,
    /// 0x02: a wireless (e.g. WLAN) bearer.
    Wireless = 2,
    /// 0x03: a wireline bearer.
    Wireline = 3,
}

impl ConnectionType {
    /// Every connection type, in wire-value order.
    pub const ALL: [ConnectionType; 4] =
        [ConnectionType::AnyAvailable, ConnectionType::Mobile, ConnectionType::Wireless, ConnectionType::Wireline];

    /// The wire byte, e.g. `0x01` for [`ConnectionType::Mobile`].
    pub fn to_byte(self) -> u8 {
        self as u8
    }

    /// The connection type of a wire byte; `None` for values the spec does not define.
    pub fn from_byte(byte: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.to_byte() == byte)
    }

    /// Short lowercase name: `any`, `mobile`, `wireless` or `wireline`.
    pub fn name(self) -> &'static str {
        match self {
            ConnectionType::AnyAvailable => "any",
            ConnectionType::Mobile => "mobile",
            ConnectionType::Wireless => "wireless",
            ConnectionType::Wireline => "wireline",
        }
    }
}

impl fmt::Display for ConnectionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ConnectionType {
    type Err = ConnectionTypeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let wanted = text.trim();
        if wanted.eq_ignore_ascii_case("any_available") {
            return Ok(ConnectionType::AnyAvailable);
        }
        Self::ALL
            .into_iter()
            .find(|kind| kind.name().eq_ignore_ascii_case(wanted))
            .ok_or_else(|| ConnectionTypeError::UnknownName(wanted.to_owned()))
    }
}

/// Why a PREFERRED-CON-TYPE list was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionTypeError {
    #[error("PREFERRED-CON-TYPE lists no connection type")]
    Empty,
    #[error("PREFERRED-CON-TYPE contains unknown connection type 0x{0:02x}; known are 0x00-0x03")]
    UnknownValue(u8),
    #[error("unknown connection type {0:?}; expected any, mobile, wireless or wireline")]
    UnknownName(String),
    #[error("PREFERRED-CON-TYPE lists {0} more than once")]
    Repeated(ConnectionType),
    #[error("PREFERRED-CON-TYPE has ANY_AVAILABLE before other types; it may only come last")]
    AnyAvailableNotLast,
}

/// A valid PREFERRED-CON-TYPE value: at least one type, none repeated,
/// ANY_AVAILABLE only in last place. Highest priority first.
///
/// Wire form of "mobile, then anything": `01 00`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PreferredConnectionTypes(Vec<ConnectionType>);

impl PreferredConnectionTypes {
    /// Checks the list rules and wraps the list.
    pub fn new(types: Vec<ConnectionType>) -> Result<Self, ConnectionTypeError> {
        if types.is_empty() {
            return Err(ConnectionTypeError::Empty);
        }
        for (index, kind) in types.iter().enumerate() {
            if types.get(..index).is_some_and(|earlier| earlier.contains(kind)) {
                return Err(ConnectionTypeError::Repeated(*kind));
            }
            if *kind == ConnectionType::AnyAvailable && index + 1 != types.len() {
                return Err(ConnectionTypeError::AnyAvailableNotLast);
            }
        }
        Ok(Self(types))
    }

    /// Reads the option value, one byte per type.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ConnectionTypeError> {
        let types = bytes
            .iter()
            .map(|byte| ConnectionType::from_byte(*byte).ok_or(ConnectionTypeError::UnknownValue(*byte)))
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(types)
    }

    /// The option value, one byte per type.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.0.iter().map(|kind| kind.to_byte()).collect()
    }

    /// The types, highest priority first.
    pub fn as_slice(&self) -> &[ConnectionType] {
        &self.0
    }
}

/// The SHA256-DIGEST option value: when the server sent the package, and the
/// digest over `secret || package with a zero hash`.
///
/// Wire form (36 bytes): `65 53 f1 00` (time 1700000000) then 32 hash bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha256Digest {
    /// POSIX time (seconds since 1970, UTC) at which the server signed the package.
    pub time: u32,
    /// The SHA-256 hash; all zero while the package is being signed.
    pub hash: [u8; DIGEST_HASH_LENGTH],
}

impl Sha256Digest {
    /// The option value: time big-endian, then the hash.
    pub fn to_bytes(&self) -> [u8; DIGEST_OPTION_LENGTH] {
        let mut bytes = [0u8; DIGEST_OPTION_LENGTH];
        let (time, hash) = bytes.split_at_mut(4);
        time.copy_from_slice(&self.time.to_be_bytes());
        hash.copy_from_slice(&self.hash);
        bytes
    }

    /// Reads an option value; `None` unless it is exactly 36 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let (time, hash) = bytes.split_first_chunk::<4>()?;
        let hash: [u8; DIGEST_HASH_LENGTH] = hash.try_into().ok()?;
        Some(Self { time: u32::from_be_bytes(*time), hash })
    }
}

/// An option whose number the spec does not define (above 5). Receivers skip
/// it; this crate keeps it so a decoded package re-encodes to the same options.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UnknownOption {
    /// The option number, 6 or more.
    pub number: u16,
    /// The raw value, at most 4095 bytes.
    pub value: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_type_bytes_and_names_round_trip() {
        for kind in ConnectionType::ALL {
            assert_eq!(ConnectionType::from_byte(kind.to_byte()), Some(kind));
            assert_eq!(kind.name().parse::<ConnectionType>(), Ok(kind));
        }
        assert_eq!(ConnectionType::from_byte(4), None);
        assert_eq!("ANY_AVAILABLE".parse::<ConnectionType>(), Ok(ConnectionType::AnyAvailable));
        assert_eq!(" Mobile ".parse::<ConnectionType>(), Ok(ConnectionType::Mobile));
        assert_eq!("lte".parse::<ConnectionType>(), Err(ConnectionTypeError::UnknownName("lte".into())));
    }

    #[test]
    fn preferred_types_enforce_the_list_rules() {
        use ConnectionType::*;
        assert_eq!(PreferredConnectionTypes::new(vec![]), Err(ConnectionTypeError::Empty));
        assert_eq!(PreferredConnectionTypes::new(vec![Mobile, Mobile]), Err(ConnectionTypeError::Repeated(Mobile)));
        assert_eq!(
            PreferredConnectionTypes::new(vec![AnyAvailable, Mobile]),
            Err(ConnectionTypeError::AnyAvailableNotLast)
        );
        assert_eq!(
            PreferredConnectionTypes::new(vec![Mobile, AnyAvailable, AnyAvailable]),
            Err(ConnectionTypeError::AnyAvailableNotLast)
        );
        let list = PreferredConnectionTypes::new(vec![Wireless, Mobile, AnyAvailable]).unwrap();
        assert_eq!(list.to_bytes(), vec![2, 1, 0]);
        assert_eq!(PreferredConnectionTypes::from_bytes(&[2, 1, 0]), Ok(list));
        assert_eq!(PreferredConnectionTypes::from_bytes(&[1, 9]), Err(ConnectionTypeError::UnknownValue(9)));
    }

    #[test]
    fn digest_value_layout_is_time_then_hash() {
        let digest = Sha256Digest { time: 1_700_000_000, hash: [0xab; 32] };
        let bytes = digest.to_bytes();
        assert_eq!(&bytes[..4], &[0x65, 0x53, 0xf1, 0x00]);
        assert!(bytes[4..].iter().all(|byte| *byte == 0xab));
        assert_eq!(Sha256Digest::from_bytes(&bytes), Some(digest));
        assert_eq!(Sha256Digest::from_bytes(&bytes[..35]), None);
        assert_eq!(Sha256Digest::from_bytes(&[0u8; 37]), None);
    }

    #[test]
    fn standard_names() {
        assert_eq!(standard_option_name(SHA256_DIGEST), Some("SHA256-DIGEST"));
        assert_eq!(standard_option_name(6), None);
        assert_eq!(standard_option_name(0), None);
    }
}
