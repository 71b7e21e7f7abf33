//! Status codes (Appendix C): the numbers a client answers each DM command with, and a server each Generic Alert item.
//!
//! On the wire a status code is a JSON number (`200`); a string of digits
//! (`"200"`) is accepted too, because the Package#3 schema of 7.4 says
//! "string" while every example uses numbers.
//!
//! Acceptance is lenient, emission strict: [`StatusCode::new`] takes any
//! three-digit code from 200 to 599 and any application code from 1000 to
//! 1999, so a peer using a code this crate does not name is still understood
//! (by its class). [`StatusCode::is_standard`] tells whether the code is one of
//! Appendix C's or one of 401/406/407/412 that 5.3 allows for alert answers;
//! code that emits statuses uses the named constants. Codes 100-199 and 600-999
//! have no meaning in DM and are refused, like everything outside those ranges.

use std::fmt;
use std::str::FromStr;

/// A DM status code such as `200` or `404`, or an application code `1000`-`1999`.
///
/// ```text
/// "Status": [[200], [404], [201, "urn:oma:mo:oma-mo:1.0/miid1/"]]
///             ^^^    ^^^    ^^^
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StatusCode(u16);

/// The class of a status code, from its first digit (Appendix C).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusClass {
    /// 2xx: the command was performed.
    Successful,
    /// 3xx: nothing was sent because the data did not change (304).
    Redirection,
    /// 4xx: the command was wrong or not allowed.
    OriginatorException,
    /// 5xx: the recipient could not perform a valid command.
    RecipientException,
    /// 1000-1999: application specific, with the grouping Appendix C recommends.
    Application(ApplicationClass),
}

/// The recommended grouping inside the application range 1000-1999 (Appendix C).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApplicationClass {
    /// 12xx.
    Successful,
    /// 13xx.
    Redirection,
    /// 14xx.
    OriginatorException,
    /// 15xx.
    RecipientException,
    /// 10xx, 11xx, 16xx-19xx: the application gave no grouping.
    Unclassified,
}

/// Why a value is not a status code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatusCodeError {
    #[error("status code {0} is out of range: expected 200-599 or an application code 1000-1999")]
    OutOfRange(u64),
    #[error("status code {0:?} is not a number: expected digits such as \"200\"")]
    NotANumber(String),
}

impl StatusCode {
    /// 200 OK: the command completed (HGET with a ClientURI answers this).
    pub const OK: StatusCode = StatusCode(200);
    /// 201 Created: HGET without ClientURI stored the data where the client chose.
    pub const CREATED: StatusCode = StatusCode(201);
    /// 202 Accepted for processing.
    pub const ACCEPTED: StatusCode = StatusCode(202);
    /// 204 No Content: done, nothing to return (GET of an empty target).
    pub const NO_CONTENT: StatusCode = StatusCode(204);
    /// 304 Not Modified: the cache validator (`cv=`) still matches.
    pub const NOT_MODIFIED: StatusCode = StatusCode(304);
    /// 400 Bad Request: malformed command.
    pub const BAD_REQUEST: StatusCode = StatusCode(400);
    /// 401 Unauthorized (allowed for Generic Alert answers, 5.3).
    pub const UNAUTHORIZED: StatusCode = StatusCode(401);
    /// 403 Forbidden: the sender lacks access rights.
    pub const FORBIDDEN: StatusCode = StatusCode(403);
    /// 404 Not Found: the ClientURI names nothing.
    pub const NOT_FOUND: StatusCode = StatusCode(404);
    /// 405 Command Not Allowed on that node (e.g. EXEC on a non-executable node).
    pub const COMMAND_NOT_ALLOWED: StatusCode = StatusCode(405);
    /// 406 Optional Feature Not Supported (allowed for Generic Alert answers, 5.3).
    pub const OPTIONAL_FEATURE_NOT_SUPPORTED: StatusCode = StatusCode(406);
    /// 407 Authentication Required (allowed for Generic Alert answers, 5.3).
    pub const AUTHENTICATION_REQUIRED: StatusCode = StatusCode(407);
    /// 412 Incomplete Command (allowed for Generic Alert answers, 5.3).
    pub const INCOMPLETE_COMMAND: StatusCode = StatusCode(412);
    /// 415 Unsupported Media Type.
    pub const UNSUPPORTED_MEDIA_TYPE: StatusCode = StatusCode(415);
    /// 500 Internal Error.
    pub const INTERNAL_ERROR: StatusCode = StatusCode(500);
    /// 501 Not Implemented: the recipient does not know the command.
    pub const NOT_IMPLEMENTED: StatusCode = StatusCode(501);
    /// 503 Service Unavailable: try again later.
    pub const SERVICE_UNAVAILABLE: StatusCode = StatusCode(503);
    /// 506 Device Full.
    pub const DEVICE_FULL: StatusCode = StatusCode(506);
    /// 507 User Rejected.
    pub const USER_REJECTED: StatusCode = StatusCode(507);

    /// Every code this crate names, in numeric order.
    pub const STANDARD: [StatusCode; 19] = [
        Self::OK,
        Self::CREATED,
        Self::ACCEPTED,
        Self::NO_CONTENT,
        Self::NOT_MODIFIED,
        Self::BAD_REQUEST,
        Self::UNAUTHORIZED,
        Self::FORBIDDEN,
        Self::NOT_FOUND,
        Self::COMMAND_NOT_ALLOWED,
        Self::OPTIONAL_FEATURE_NOT_SUPPORTED,
        Self::AUTHENTICATION_REQUIRED,
        Self::INCOMPLETE_COMMAND,
        Self::UNSUPPORTED_MEDIA_TYPE,
        Self::INTERNAL_ERROR,
        Self::NOT_IMPLEMENTED,
        Self::SERVICE_UNAVAILABLE,
        Self::DEVICE_FULL,
        Self::USER_REJECTED,
    ];

    /// Accepts 200-599 and 1000-1999; see the module documentation.
    pub fn new(code: u16) -> Result<Self, StatusCodeError> {
        Self::from_wide(u64::from(code))
    }

    /// The number as sent on the wire.
    pub const fn as_u16(self) -> u16 {
        self.0
    }

    /// Parses `"200"` (surrounding ASCII whitespace tolerated).
    pub fn parse(text: &str) -> Result<Self, StatusCodeError> {
        let digits = text.trim_ascii();
        if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
            return Err(StatusCodeError::NotANumber(text.to_owned()));
        }
        // All digits: the only parse failure left is overflow, which is out of range too.
        let value = digits.parse::<u64>().map_err(|_| StatusCodeError::OutOfRange(u64::MAX))?;
        Self::from_wide(value)
    }

    /// Reads a status code from a JSON number or string of digits.
    pub fn from_json(value: &serde_json::Value) -> Result<Self, StatusCodeError> {
        match value {
            serde_json::Value::Number(number) => match number.as_u64() {
                Some(code) => Self::from_wide(code),
                None => Err(StatusCodeError::NotANumber(number.to_string())),
            },
            serde_json::Value::String(text) => Self::parse(text),
            other => Err(StatusCodeError::NotANumber(other.to_string())),
        }
    }

    fn from_wide(code: u64) -> Result<Self, StatusCodeError> {
        match u16::try_from(code) {
            Ok(narrow @ (200..=599 | 1000..=1999)) => Ok(StatusCode(narrow)),
            _ => Err(StatusCodeError::OutOfRange(code)),
        }
    }

    /// The class from the first digit, or the application sub-class for 1000-1999.
    pub fn class(self) -> StatusClass {
        match self.0 {
            200..=299 => StatusClass::Successful,
            300..=399 => StatusClass::Redirection,
            400..=499 => StatusClass::OriginatorException,
            500..=599 => StatusClass::RecipientException,
            1200..=1299 => StatusClass::Application(ApplicationClass::Successful),
            1300..=1399 => StatusClass::Application(ApplicationClass::Redirection),
            1400..=1499 => StatusClass::Application(ApplicationClass::OriginatorException),
            1500..=1599 => StatusClass::Application(ApplicationClass::RecipientException),
            _ => StatusClass::Application(ApplicationClass::Unclassified),
        }
    }

    /// True for 2xx: the command was performed.
    pub fn is_success(self) -> bool {
        self.class() == StatusClass::Successful
    }

    /// True for an application code (1000-1999).
    pub fn is_application(self) -> bool {
        matches!(self.class(), StatusClass::Application(_))
    }

    /// True when the code is one of [`StatusCode::STANDARD`].
    pub fn is_standard(self) -> bool {
        self.reason_phrase().is_some()
    }

    /// The reason phrase of Appendix C; for 401/406/407/412, which Appendix C
    /// does not list, the phrase OMA DM 1.2 gave them. `None` for other codes.
    pub fn reason_phrase(self) -> Option<&'static str> {
        let phrase = match self.0 {
            200 => "OK",
            201 => "Created",
            202 => "Accepted",
            204 => "No Content",
            304 => "Not Modified",
            400 => "Bad Request",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Command Not Allowed",
            406 => "Optional Feature Not Supported",
            407 => "Authentication Required",
            412 => "Incomplete Command",
            415 => "Unsupported Media Type",
            500 => "Internal Error",
            501 => "Not Implemented",
            503 => "Service Unavailable",
            506 => "Device Full",
            507 => "User Rejected",
            _ => return None,
        };
        Some(phrase)
    }
}

impl fmt::Display for StatusCode {
    /// `404 Not Found`, or just the number when the code has no phrase.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason_phrase() {
            Some(phrase) => write!(f, "{} {phrase}", self.0),
            None => write!(f, "{}", self.0),
        }
    }
}

impl FromStr for StatusCode {
    type Err = StatusCodeError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        StatusCode::parse(text)
    }
}

impl TryFrom<u16> for StatusCode {
    type Error = StatusCodeError;
    fn try_from(code: u16) -> Result<Self, Self::Error> {
        StatusCode::new(code)
    }
}

/// Lets callers and tests compare with a plain number: `status == 404`.
impl PartialEq<u16> for StatusCode {
    fn eq(&self, other: &u16) -> bool {
        self.0 == *other
    }
}

impl From<StatusCode> for u16 {
    fn from(code: StatusCode) -> u16 {
        code.0
    }
}

impl serde::Serialize for StatusCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u16(self.0)
    }
}

impl<'de> serde::Deserialize<'de> for StatusCode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StatusCodeVisitor;
        impl serde::de::Visitor<'_> for StatusCodeVisitor {
            type Value = StatusCode;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a status code as a number or a string of digits")
            }
            fn visit_u64<E: serde::de::Error>(self, code: u64) -> Result<StatusCode, E> {
                StatusCode::from_wide(code).map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, code: i64) -> Result<StatusCode, E> {
                let wide = u64::try_from(code).map_err(|_| E::custom(StatusCodeError::NotANumber(code.to_string())))?;
                StatusCode::from_wide(wide).map_err(E::custom)
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<StatusCode, E> {
                StatusCode::parse(text).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(StatusCodeVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_dm_ranges_and_refuses_the_rest() {
        for code in [200, 299, 304, 404, 599, 1000, 1234, 1999] {
            assert_eq!(StatusCode::new(code).map(StatusCode::as_u16), Ok(code));
        }
        for code in [0, 99, 100, 199, 600, 999, 2000, u16::MAX] {
            assert_eq!(StatusCode::new(code), Err(StatusCodeError::OutOfRange(u64::from(code))));
        }
    }

    #[test]
    fn classes_follow_the_first_digit_and_the_application_grouping() {
        assert_eq!(StatusCode::OK.class(), StatusClass::Successful);
        assert_eq!(StatusCode::NOT_MODIFIED.class(), StatusClass::Redirection);
        assert_eq!(StatusCode::NOT_FOUND.class(), StatusClass::OriginatorException);
        assert_eq!(StatusCode::USER_REJECTED.class(), StatusClass::RecipientException);
        let application = |code| StatusCode::new(code).map(StatusCode::class);
        assert_eq!(application(1250), Ok(StatusClass::Application(ApplicationClass::Successful)));
        assert_eq!(application(1301), Ok(StatusClass::Application(ApplicationClass::Redirection)));
        assert_eq!(application(1404), Ok(StatusClass::Application(ApplicationClass::OriginatorException)));
        assert_eq!(application(1599), Ok(StatusClass::Application(ApplicationClass::RecipientException)));
        assert_eq!(application(1000), Ok(StatusClass::Application(ApplicationClass::Unclassified)));
        assert_eq!(application(1600), Ok(StatusClass::Application(ApplicationClass::Unclassified)));
        assert!(StatusCode::ACCEPTED.is_success());
        assert!(!StatusCode::NOT_MODIFIED.is_success());
    }

    #[test]
    fn standard_codes_have_phrases_and_others_do_not() {
        assert_eq!(StatusCode::STANDARD.len(), 19);
        assert!(StatusCode::STANDARD.iter().all(|code| code.is_standard()));
        assert!(StatusCode::STANDARD.windows(2).all(|pair| pair.first() < pair.get(1)));
        assert_eq!(StatusCode::COMMAND_NOT_ALLOWED.reason_phrase(), Some("Command Not Allowed"));
        assert_eq!(StatusCode::new(299).map(StatusCode::is_standard), Ok(false));
        assert_eq!(StatusCode::new(1200).map(StatusCode::is_standard), Ok(false));
        assert_eq!(StatusCode::NOT_FOUND.to_string(), "404 Not Found");
        assert_eq!(StatusCode::new(1201).map(|code| code.to_string()), Ok("1201".to_owned()));
    }

    #[test]
    fn parses_digit_strings_leniently() {
        assert_eq!("200".parse::<StatusCode>(), Ok(StatusCode::OK));
        assert_eq!(StatusCode::parse(" 404 "), Ok(StatusCode::NOT_FOUND));
        assert_eq!(StatusCode::parse("2O0"), Err(StatusCodeError::NotANumber("2O0".to_owned())));
        assert_eq!(StatusCode::parse("-1"), Err(StatusCodeError::NotANumber("-1".to_owned())));
        assert_eq!(StatusCode::parse(""), Err(StatusCodeError::NotANumber(String::new())));
        assert_eq!(StatusCode::parse("99999999999999999999999"), Err(StatusCodeError::OutOfRange(u64::MAX)));
        assert_eq!(StatusCode::parse("100"), Err(StatusCodeError::OutOfRange(100)));
    }

    #[test]
    fn serde_emits_numbers_and_accepts_numbers_or_strings() {
        assert_eq!(serde_json::to_string(&StatusCode::NOT_FOUND).ok(), Some("404".to_owned()));
        let from_number: Result<StatusCode, _> = serde_json::from_str("201");
        let from_string: Result<StatusCode, _> = serde_json::from_str("\"201\"");
        assert_eq!(from_number.ok(), Some(StatusCode::CREATED));
        assert_eq!(from_string.ok(), Some(StatusCode::CREATED));
        for bad in ["-200", "200.5", "\"abc\"", "null", "[200]", "700"] {
            assert!(serde_json::from_str::<StatusCode>(bad).is_err(), "{bad} must be refused");
        }
        assert_eq!(StatusCode::from_json(&serde_json::json!("507")), Ok(StatusCode::USER_REJECTED));
        assert_eq!(StatusCode::from_json(&serde_json::json!(2.0)), Err(StatusCodeError::NotANumber("2.0".to_owned())));
    }
}
