//! The Package#0 binary format (spec 7.1): the 2-byte header, option framing, and the typed [`Notification`].
//!
//! ```text
//! header  = VER(4 bits) = 2 | OC(5 bits) = option count | RESERVED(7 bits) = 0
//! option  = delta(4 bits) | length(12 bits) | value(length bytes)
//! ```
//!
//! A notification with SERVER-ID "srv" and REQ-MOS encodes as
//! `21 00 10 03 73 72 76 40 00`: header (VER 2, OC 2), option 1 of length 3,
//! then option 5 (delta 4) of length 0.

use std::str::Utf8Error;

use super::option::{
    self, ConnectionTypeError, DIGEST_OPTION_LENGTH, NOTIFICATION_ID_LENGTH, PreferredConnectionTypes, Sha256Digest,
    UnknownOption,
};

/// The only Package#0 version this crate speaks (spec 5.2.1.1).
pub const VERSION: u8 = 2;
/// Byte length of the header.
pub const HEADER_LENGTH: usize = 2;
/// Byte length of one option's delta+length prefix.
pub const OPTION_HEADER_LENGTH: usize = 2;
/// OC is 5 bits wide.
pub const MAX_OPTIONS: usize = 31;
/// Option length is 12 bits wide.
pub const MAX_OPTION_VALUE_LENGTH: usize = 0x0fff;
/// Option delta is 4 bits wide, so consecutive option numbers may differ by at most this.
pub const MAX_OPTION_DELTA: u16 = 0x0f;

/// A decoded (or to-be-encoded) Package#0. Absent options are `None`/`false`/empty.
///
/// Encoding writes the options in ascending number order, standard and unknown
/// options interleaved by number.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Notification {
    /// SERVER-ID (option 1): the DMAcc ServerID of the server asking for a session.
    pub server_id: Option<String>,
    /// PREFERRED-CON-TYPE (option 2): bearers to use, highest priority first.
    pub preferred_connection_types: Option<PreferredConnectionTypes>,
    /// NOTIFICATION-ID (option 3): lets the client drop repeats of (SERVER-ID, NOTIFICATION-ID).
    pub notification_id: Option<u16>,
    /// SHA256-DIGEST (option 4): sending time and digest. Use
    /// [`Notification::encode_signed`] rather than filling the hash in by hand.
    pub digest: Option<Sha256Digest>,
    /// REQ-MOS (option 5): the client must send its MOS array in Package#1.
    pub request_mos: bool,
    /// Options numbered above 5, kept as received; each number at most once.
    pub unknown_options: Vec<UnknownOption>,
}

/// Why bytes are not a Package#0. A client ignores such a notification; there
/// is no package to answer it with, so these errors carry no status code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("package is {length} byte(s) long; the Package#0 header needs 2")]
    TruncatedHeader { length: usize },
    #[error("package version is {0}; only version 2 is supported")]
    UnsupportedVersion(u8),
    #[error("header announces {declared} option(s) but the package ends after {found}")]
    MissingOptions { declared: usize, found: usize },
    #[error("option #{index} is cut short: its 2-byte delta/length prefix has only 1 byte")]
    TruncatedOptionHeader { index: usize },
    #[error("option #{index} has delta 0 (after option {previous}): option numbers must strictly increase")]
    ZeroOptionDelta { index: usize, previous: u16 },
    #[error("option {number} claims {length} value byte(s) but only {available} remain")]
    ValuePastEnd { number: u16, length: usize, available: usize },
    #[error("{count} byte(s) follow the {declared} option(s) the header announces")]
    TrailingBytes { count: usize, declared: usize },
    #[error("{name} (option {number}) must be {expected} byte(s) long, not {found}")]
    InvalidOptionLength { name: &'static str, number: u16, expected: usize, found: usize },
    #[error("SERVER-ID is not valid UTF-8: {0}")]
    InvalidServerId(Utf8Error),
    #[error(transparent)]
    InvalidConnectionTypes(#[from] ConnectionTypeError),
}

/// Why a [`Notification`] cannot be written as Package#0.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("{count} options do not fit: the 5-bit option count allows at most 31")]
    TooManyOptions { count: usize },
    #[error("option {number} value is {length} bytes; the 12-bit length allows at most 4095")]
    ValueTooLong { number: u16, length: usize },
    #[error("option {number} cannot follow option {previous}: a 4-bit delta can skip at most 15 numbers")]
    OptionGapTooLarge { previous: u16, number: u16 },
    #[error("unknown option number 0 is not allowed: option numbers start at 1")]
    UnknownOptionZero,
    #[error("unknown option uses number {0}, which belongs to a standard option; set the typed field instead")]
    UnknownOptionUsesStandardNumber(u16),
    #[error("unknown option {0} appears more than once; option numbers must be unique")]
    DuplicateUnknownOption(u16),
    #[error("the signing secret is empty; SHA256-DIGEST needs the account's AuthSecret")]
    EmptySecret,
}

/// One option as framed on the wire, with where its value sits in the package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawOption<'a> {
    pub number: u16,
    pub value: &'a [u8],
    /// Byte offset of `value` inside the package.
    pub value_offset: usize,
}

/// Splits a package into its options, checking the header and framing only.
///
/// Delta 0 is rejected everywhere: for the first option it would mean option
/// number 0, which the spec does not define, and later it would repeat a number.
pub(crate) fn read_raw_options(package: &[u8]) -> Result<Vec<RawOption<'_>>, DecodeError> {
    let Some((header, mut rest)) = package.split_first_chunk::<HEADER_LENGTH>() else {
        return Err(DecodeError::TruncatedHeader { length: package.len() });
    };
    let version = header[0] >> 4;
    if version != VERSION {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    // OC straddles the two bytes: low 4 bits of the first, top bit of the second. RESERVED is ignored.
    let declared = usize::from(((header[0] & 0x0f) << 1) | (header[1] >> 7));
    let mut options = Vec::with_capacity(declared);
    let mut number: u16 = 0;
    for index in 0..declared {
        let Some((prefix, after_prefix)) = rest.split_first_chunk::<OPTION_HEADER_LENGTH>() else {
            if rest.is_empty() {
                return Err(DecodeError::MissingOptions { declared, found: index });
            }
            return Err(DecodeError::TruncatedOptionHeader { index });
        };
        let delta = u16::from(prefix[0] >> 4);
        if delta == 0 {
            return Err(DecodeError::ZeroOptionDelta { index, previous: number });
        }
        number += delta;
        let length = (usize::from(prefix[0] & 0x0f) << 8) | usize::from(prefix[1]);
        let Some((value, after_value)) = after_prefix.split_at_checked(length) else {
            return Err(DecodeError::ValuePastEnd { number, length, available: after_prefix.len() });
        };
        let value_offset = package.len() - after_prefix.len();
        options.push(RawOption { number, value, value_offset });
        rest = after_value;
    }
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes { count: rest.len(), declared });
    }
    Ok(options)
}

fn expect_length(raw: &RawOption<'_>, expected: usize) -> Result<(), DecodeError> {
    if raw.value.len() == expected {
        return Ok(());
    }
    Err(DecodeError::InvalidOptionLength {
        name: option::standard_option_name(raw.number).unwrap_or("option"),
        number: raw.number,
        expected,
        found: raw.value.len(),
    })
}

impl Notification {
    /// Decodes a Package#0. Lenient where the spec allows: RESERVED bits and the
    /// contents of unknown options are not checked; SERVER-ID need only be UTF-8
    /// (Net-Unicode normalisation is not enforced).
    pub fn decode(package: &[u8]) -> Result<Self, DecodeError> {
        Self::from_raw_options(&read_raw_options(package)?)
    }

    /// Interprets framed options (see [`read_raw_options`]).
    pub(crate) fn from_raw_options(options: &[RawOption<'_>]) -> Result<Self, DecodeError> {
        let mut notification = Notification::default();
        for raw in options {
            match raw.number {
                option::SERVER_ID => {
                    let text = std::str::from_utf8(raw.value).map_err(DecodeError::InvalidServerId)?;
                    notification.server_id = Some(text.to_owned());
                }
                option::PREFERRED_CON_TYPE => {
                    notification.preferred_connection_types = Some(PreferredConnectionTypes::from_bytes(raw.value)?);
                }
                option::NOTIFICATION_ID => {
                    expect_length(raw, NOTIFICATION_ID_LENGTH)?;
                    let bytes = raw.value.first_chunk::<NOTIFICATION_ID_LENGTH>().copied().unwrap_or_default();
                    notification.notification_id = Some(u16::from_be_bytes(bytes));
                }
                option::SHA256_DIGEST => {
                    expect_length(raw, DIGEST_OPTION_LENGTH)?;
                    notification.digest = Sha256Digest::from_bytes(raw.value);
                }
                option::REQ_MOS => {
                    expect_length(raw, 0)?;
                    notification.request_mos = true;
                }
                number => notification.unknown_options.push(UnknownOption { number, value: raw.value.to_vec() }),
            }
        }
        Ok(notification)
    }

    /// Encodes the notification as Package#0, options in ascending number order.
    ///
    /// Refuses what the format cannot carry: more than 31 options, a value over
    /// 4095 bytes, or consecutive option numbers more than 15 apart (including a
    /// first option above 15): there is no filler option to bridge such a gap
    /// without changing the package's content.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        self.encode_locating_digest().map(|(package, _)| package)
    }

    /// [`Notification::encode`], also returning the byte offset of the
    /// SHA256-DIGEST value when the notification has one, so signing can write
    /// the hash in place.
    pub(crate) fn encode_locating_digest(&self) -> Result<(Vec<u8>, Option<usize>), EncodeError> {
        let options = self.options_in_order()?;
        if options.len() > MAX_OPTIONS {
            return Err(EncodeError::TooManyOptions { count: options.len() });
        }
        let value_bytes: usize = options.iter().map(|(_, value)| value.len()).sum();
        let mut package = Vec::with_capacity(HEADER_LENGTH + options.len() * OPTION_HEADER_LENGTH + value_bytes);
        // Fits: checked against MAX_OPTIONS (5 bits) above.
        let count = options.len() as u8;
        package.push((VERSION << 4) | (count >> 1));
        package.push((count & 1) << 7);
        let mut previous: u16 = 0;
        let mut digest_offset = None;
        for (number, value) in &options {
            let delta = number - previous;
            if delta > MAX_OPTION_DELTA {
                return Err(EncodeError::OptionGapTooLarge { previous, number: *number });
            }
            if value.len() > MAX_OPTION_VALUE_LENGTH {
                return Err(EncodeError::ValueTooLong { number: *number, length: value.len() });
            }
            let length = value.len() as u16;
            package.push(((delta as u8) << 4) | (length >> 8) as u8);
            package.push((length & 0xff) as u8);
            if *number == option::SHA256_DIGEST {
                digest_offset = Some(package.len());
            }
            package.extend_from_slice(value);
            previous = *number;
        }
        Ok((package, digest_offset))
    }

    /// (number, value) of every present option, sorted, after checking the unknown options.
    fn options_in_order(&self) -> Result<Vec<(u16, Vec<u8>)>, EncodeError> {
        let mut options: Vec<(u16, Vec<u8>)> = Vec::with_capacity(5 + self.unknown_options.len());
        if let Some(server_id) = &self.server_id {
            options.push((option::SERVER_ID, server_id.as_bytes().to_vec()));
        }
        if let Some(types) = &self.preferred_connection_types {
            options.push((option::PREFERRED_CON_TYPE, types.to_bytes()));
        }
        if let Some(id) = self.notification_id {
            options.push((option::NOTIFICATION_ID, id.to_be_bytes().to_vec()));
        }
        if let Some(digest) = &self.digest {
            options.push((option::SHA256_DIGEST, digest.to_bytes().to_vec()));
        }
        if self.request_mos {
            options.push((option::REQ_MOS, Vec::new()));
        }
        for unknown in &self.unknown_options {
            if unknown.number == 0 {
                return Err(EncodeError::UnknownOptionZero);
            }
            if unknown.number <= option::LAST_STANDARD_OPTION {
                return Err(EncodeError::UnknownOptionUsesStandardNumber(unknown.number));
            }
            if options.iter().any(|(number, _)| *number == unknown.number) {
                return Err(EncodeError::DuplicateUnknownOption(unknown.number));
            }
            options.push((unknown.number, unknown.value.clone()));
        }
        options.sort_by_key(|(number, _)| *number);
        Ok(options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notification::option::ConnectionType;

    fn unknown(number: u16, value: &[u8]) -> UnknownOption {
        UnknownOption { number, value: value.to_vec() }
    }

    #[test]
    fn module_doc_example_encodes_exactly() {
        let notification = Notification { server_id: Some("srv".into()), request_mos: true, ..Notification::default() };
        let bytes = notification.encode().unwrap();
        assert_eq!(hex::encode(&bytes), "21001003737276 4000".replace(' ', ""));
        assert_eq!(Notification::decode(&bytes).unwrap(), notification);
    }

    #[test]
    fn empty_notification_is_just_the_header() {
        let bytes = Notification::default().encode().unwrap();
        assert_eq!(bytes, vec![0x20, 0x00]);
        assert_eq!(Notification::decode(&bytes).unwrap(), Notification::default());
    }

    #[test]
    fn full_notification_round_trips_with_exact_bytes() {
        let notification = Notification {
            server_id: Some("é".into()),
            preferred_connection_types: Some(
                PreferredConnectionTypes::new(vec![ConnectionType::Mobile, ConnectionType::AnyAvailable]).unwrap(),
            ),
            notification_id: Some(0x1234),
            digest: Some(Sha256Digest { time: 1, hash: [7; 32] }),
            request_mos: true,
            unknown_options: vec![unknown(20, b"z"), unknown(9, &[])],
        };
        let bytes = notification.encode().unwrap();
        let mut expected = vec![0x23, 0x80]; // VER 2, OC 7
        expected.extend([0x10, 0x02, 0xc3, 0xa9]); // 1: "é"
        expected.extend([0x10, 0x02, 0x01, 0x00]); // 2: mobile, any
        expected.extend([0x10, 0x02, 0x12, 0x34]); // 3
        expected.extend([0x10, 0x24, 0x00, 0x00, 0x00, 0x01]); // 4: time 1
        expected.extend([7u8; 32]);
        expected.extend([0x10, 0x00]); // 5
        expected.extend([0x40, 0x00]); // 9
        expected.extend([0xb0, 0x01, b'z']); // 20
        assert_eq!(bytes, expected);
        let decoded = Notification::decode(&bytes).unwrap();
        // Unknown options come back in wire (ascending) order.
        assert_eq!(decoded.unknown_options, vec![unknown(9, &[]), unknown(20, b"z")]);
        assert_eq!(decoded.server_id.as_deref(), Some("é"));
        assert_eq!(decoded.notification_id, Some(0x1234));
    }

    #[test]
    fn reserved_bits_are_ignored_on_receipt() {
        assert_eq!(Notification::decode(&[0x20, 0x7f]).unwrap(), Notification::default());
        // OC = 1 with all reserved bits set.
        let decoded = Notification::decode(&[0x20, 0xff, 0x50, 0x00]).unwrap();
        assert!(decoded.request_mos);
    }

    #[test]
    fn decode_errors_are_distinct() {
        assert_eq!(Notification::decode(&[]), Err(DecodeError::TruncatedHeader { length: 0 }));
        assert_eq!(Notification::decode(&[0x20]), Err(DecodeError::TruncatedHeader { length: 1 }));
        assert_eq!(Notification::decode(&[0x10, 0x00]), Err(DecodeError::UnsupportedVersion(1)));
        assert_eq!(
            Notification::decode(&[0x21, 0x00, 0x50, 0x00]),
            Err(DecodeError::MissingOptions { declared: 2, found: 1 })
        );
        assert_eq!(Notification::decode(&[0x20, 0x80, 0x50]), Err(DecodeError::TruncatedOptionHeader { index: 0 }));
        assert_eq!(
            Notification::decode(&[0x21, 0x00, 0x50, 0x00, 0x00, 0x00]),
            Err(DecodeError::ZeroOptionDelta { index: 1, previous: 5 })
        );
        assert_eq!(
            Notification::decode(&[0x20, 0x80, 0x00, 0x00]),
            Err(DecodeError::ZeroOptionDelta { index: 0, previous: 0 })
        );
        assert_eq!(
            Notification::decode(&[0x20, 0x80, 0x10, 0x05, b'a']),
            Err(DecodeError::ValuePastEnd { number: 1, length: 5, available: 1 })
        );
        assert_eq!(
            Notification::decode(&[0x20, 0x80, 0x50, 0x00, 0xaa]),
            Err(DecodeError::TrailingBytes { count: 1, declared: 1 })
        );
        assert_eq!(
            Notification::decode(&[0x20, 0x80, 0x30, 0x01, 0x05]),
            Err(DecodeError::InvalidOptionLength { name: "NOTIFICATION-ID", number: 3, expected: 2, found: 1 })
        );
        assert_eq!(
            Notification::decode(&[0x20, 0x80, 0x40, 0x02, 0x00, 0x00]),
            Err(DecodeError::InvalidOptionLength { name: "SHA256-DIGEST", number: 4, expected: 36, found: 2 })
        );
        assert_eq!(
            Notification::decode(&[0x20, 0x80, 0x50, 0x01, 0x00]),
            Err(DecodeError::InvalidOptionLength { name: "REQ-MOS", number: 5, expected: 0, found: 1 })
        );
        assert!(matches!(Notification::decode(&[0x20, 0x80, 0x10, 0x01, 0xff]), Err(DecodeError::InvalidServerId(_))));
        assert_eq!(
            Notification::decode(&[0x20, 0x80, 0x20, 0x02, 0x00, 0x01]),
            Err(DecodeError::InvalidConnectionTypes(ConnectionTypeError::AnyAvailableNotLast))
        );
        assert_eq!(
            Notification::decode(&[0x20, 0x80, 0x20, 0x00]),
            Err(DecodeError::InvalidConnectionTypes(ConnectionTypeError::Empty))
        );
    }

    #[test]
    fn error_messages_name_the_problem() {
        let message = DecodeError::ZeroOptionDelta { index: 1, previous: 5 }.to_string();
        assert!(message.contains("strictly increase"), "{message}");
        let message = EncodeError::OptionGapTooLarge { previous: 5, number: 21 }.to_string();
        assert!(message.contains("option 21") && message.contains("15"), "{message}");
    }

    #[test]
    fn largest_values_are_accepted_and_one_more_refused() {
        let mut notification = Notification { unknown_options: vec![unknown(6, &[1; 4095])], ..Default::default() };
        let bytes = notification.encode().unwrap();
        assert_eq!(&bytes[..4], &[0x20, 0x80, 0x6f, 0xff]);
        assert_eq!(Notification::decode(&bytes).unwrap(), notification);
        notification.unknown_options = vec![unknown(6, &[1; 4096])];
        assert_eq!(notification.encode(), Err(EncodeError::ValueTooLong { number: 6, length: 4096 }));
        let long_server_id = Notification { server_id: Some("x".repeat(4096)), ..Default::default() };
        assert_eq!(long_server_id.encode(), Err(EncodeError::ValueTooLong { number: 1, length: 4096 }));
    }

    #[test]
    fn thirty_one_options_fit_and_thirty_two_do_not() {
        let mut notification = Notification {
            server_id: Some("s".into()),
            request_mos: true,
            unknown_options: (6..35).map(|number| unknown(number, &[number as u8])).collect(),
            ..Default::default()
        };
        let bytes = notification.encode().unwrap();
        assert_eq!(&bytes[..2], &[0x2f, 0x80]); // OC = 31
        assert_eq!(Notification::decode(&bytes).unwrap(), notification);
        notification.notification_id = Some(1);
        assert_eq!(notification.encode(), Err(EncodeError::TooManyOptions { count: 32 }));
    }

    #[test]
    fn gaps_wider_than_a_delta_are_refused() {
        let encode = |request_mos: bool, unknown_number: u16| {
            let options = vec![unknown(unknown_number, &[])];
            Notification { request_mos, unknown_options: options, ..Default::default() }.encode()
        };
        let gap = |previous, number| Err(EncodeError::OptionGapTooLarge { previous, number });
        assert_eq!(encode(true, 20), Ok(vec![0x21, 0x00, 0x50, 0x00, 0xf0, 0x00]));
        assert_eq!(encode(true, 21), gap(5, 21));
        assert_eq!(encode(false, 15), Ok(vec![0x20, 0x80, 0xf0, 0x00]));
        assert_eq!(encode(false, 16), gap(0, 16));
    }

    #[test]
    fn unknown_options_may_not_shadow_or_repeat() {
        let zero = Notification { unknown_options: vec![unknown(0, &[])], ..Default::default() };
        assert_eq!(zero.encode(), Err(EncodeError::UnknownOptionZero));
        let standard = Notification { unknown_options: vec![unknown(3, &[0, 1])], ..Default::default() };
        assert_eq!(standard.encode(), Err(EncodeError::UnknownOptionUsesStandardNumber(3)));
        let repeated = Notification { unknown_options: vec![unknown(7, &[]), unknown(7, &[1])], ..Default::default() };
        assert_eq!(repeated.encode(), Err(EncodeError::DuplicateUnknownOption(7)));
    }

    #[test]
    fn raw_options_report_value_offsets() {
        let bytes = [0x21, 0x00, 0x10, 0x01, b'a', 0x20, 0x01, 0x01];
        let options = read_raw_options(&bytes).unwrap();
        assert_eq!(
            options,
            vec![
                RawOption { number: 1, value: b"a", value_offset: 4 },
                RawOption { number: 3, value: &[0x01], value_offset: 7 },
            ]
        );
    }
}
