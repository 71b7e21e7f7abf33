//! Packages #1, #2 and #3 (5.2.2-5.2.4, 7.2-7.4): the JSON documents of a DM session, and the Generic Alert they carry.
//!
//! ```text
//! Package#1  client -> server  {"MOS": [...], "Alert": {"Items": [...]}}
//! Package#2  server -> client  {"CMD": [["GET", "urn:oma:mo:oma-dm-devinfo:1.2//DevID"], ["END"]]}
//! Package#3  client -> server  {"Status": [[200], [201, "urn:oma:mo:oma-mo:1.0/miid1/"]]}
//! ```
//!
//! Every parser takes the raw body and [`ParseLimits`]: a body over
//! `max_bytes` or nested deeper than `max_depth` is refused before it is
//! parsed. Unknown top-level fields are ignored (a peer may add its own);
//! known fields of the wrong type are errors. Emission is canonical: the
//! keys the examples use (`"CMD"`, `"MIID"`), statuses as arrays with a
//! numeric code, absent optional parts left out.

mod alert;
mod initiation;
pub mod media;
mod request;
mod response;

use crate::status::StatusCode;
use serde_json::{Map, Value};

pub use alert::{Alert, AlertError, AlertItem, Mark};
pub use initiation::{InitiationPackage, SupportedObject, SupportedObjectError};
pub use request::{LenientRequestPackage, RequestPackage};
pub use response::{CommandStatus, ResponsePackage};

use crate::command::{CommandError, json_kind};
use crate::status::StatusCodeError;

/// Package#1, by its number in 5.2.
pub type Package1 = InitiationPackage;
/// Package#2, by its number in 5.2.
pub type Package2 = RequestPackage;
/// Package#3, by its number in 5.2.
pub type Package3 = ResponsePackage;

/// Bounds on what a parser reads, so a hostile peer cannot make it allocate
/// or recurse without limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseLimits {
    /// Largest body accepted, in bytes. Default 1 MiB: MO data travels in
    /// multipart parts or over HTTP, so a package itself stays small.
    pub max_bytes: usize,
    /// Deepest nesting of JSON arrays and objects accepted. Default 32: a
    /// package needs 4 levels; Generic Alert `Data` gets the rest.
    pub max_depth: usize,
}

impl ParseLimits {
    /// 1 MiB, 32 levels.
    pub const DEFAULT: ParseLimits = ParseLimits { max_bytes: 1 << 20, max_depth: 32 };
}

impl std::default::Default for ParseLimits {
    fn default() -> Self {
        ParseLimits::DEFAULT
    }
}

/// Why a package was refused. Positions are 1-based, as Appendix E counts commands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PackageError {
    #[error("package is {size} bytes, over the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("package JSON is nested deeper than the limit of {limit} levels")]
    TooDeep { limit: usize },
    #[error("package is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("a package must be a JSON object, found {found}")]
    NotAnObject { found: &'static str },
    #[error("package has no {0:?} field, which it requires")]
    MissingField(&'static str),
    #[error("package field {field:?} must be {expected}, found {found}")]
    WrongFieldType { field: &'static str, expected: &'static str, found: &'static str },
    #[error("Package#2 has both \"CMD\" and \"Cmd\": send only one")]
    BothCommandKeys,
    #[error("command {position} of the Package#2: {source}")]
    Command { position: usize, source: CommandError },
    #[error("status {position} of the Package#3 is an empty array: expected [code, extra...]")]
    EmptyStatus { position: usize },
    #[error("status {position} of the Package#3: {source}")]
    Status { position: usize, source: StatusCodeError },
    #[error("AlertStatus {position} of the Package#2: {source}")]
    AlertStatus { position: usize, source: StatusCodeError },
    #[error("MOS item {position} of the Package#1: {source}")]
    SupportedObject { position: usize, source: SupportedObjectError },
    #[error("Generic Alert: {0}")]
    Alert(#[from] AlertError),
    #[error("cannot encode the package as JSON: {0}")]
    Encode(String),
}

impl PackageError {
    /// The status a recipient answers the whole package with: the command's
    /// own status for a bad command (400 or 501), 500 when we could not encode
    /// our own package, 400 (malformed) otherwise.
    pub fn status_code(&self) -> StatusCode {
        match self {
            PackageError::Command { source, .. } => source.status_code(),
            PackageError::Encode(_) => StatusCode::INTERNAL_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// Size and depth checks, then the JSON parse, then the top-level object.
pub(crate) fn read_object(bytes: &[u8], limits: &ParseLimits) -> Result<Map<String, Value>, PackageError> {
    let value = read_json(bytes, limits)?;
    match value {
        Value::Object(object) => Ok(object),
        other => Err(PackageError::NotAnObject { found: json_kind(&other) }),
    }
}

/// Size and depth checks, then the JSON parse.
pub(crate) fn read_json(bytes: &[u8], limits: &ParseLimits) -> Result<Value, PackageError> {
    if bytes.len() > limits.max_bytes {
        return Err(PackageError::TooLarge { size: bytes.len(), limit: limits.max_bytes });
    }
    if nesting_exceeds(bytes, limits.max_depth) {
        return Err(PackageError::TooDeep { limit: limits.max_depth });
    }
    serde_json::from_slice(bytes).map_err(|error| PackageError::InvalidJson(error.to_string()))
}

/// The top-level object of an already parsed package.
pub(crate) fn expect_object(value: &Value) -> Result<&Map<String, Value>, PackageError> {
    value.as_object().ok_or(PackageError::NotAnObject { found: json_kind(value) })
}

/// Serializes one of our own packages.
pub(crate) fn encode<T: serde::Serialize>(package: &T) -> Result<Vec<u8>, PackageError> {
    serde_json::to_vec(package).map_err(|error| PackageError::Encode(error.to_string()))
}

/// Scans for `[`/`{` outside strings before parsing, so the parser never
/// recurses past `limit` (serde_json's own limit is 128 and not configurable).
/// Malformed JSON may be miscounted here; the parser rejects it anyway.
fn nesting_exceeds(bytes: &[u8], limit: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in bytes {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_is_counted_outside_strings_only() {
        assert!(!nesting_exceeds(br#"{"a": [[1]]}"#, 3));
        assert!(nesting_exceeds(br#"{"a": [[[1]]]}"#, 3));
        assert!(!nesting_exceeds(br#"{"a": "[[[[[[\"[[["}"#, 1));
        assert!(!nesting_exceeds(br#"[1], [2], [3]"#, 1));
    }

    #[test]
    fn limits_are_checked_before_parsing() {
        let limits = ParseLimits { max_bytes: 8, max_depth: 2 };
        assert_eq!(read_json(b"[1,2,3,4,5]", &limits), Err(PackageError::TooLarge { size: 11, limit: 8 }));
        assert_eq!(read_json(b"[[[1]]]", &limits), Err(PackageError::TooDeep { limit: 2 }));
        assert_eq!(read_json(b"[[1]]", &limits), Ok(serde_json::json!([[1]])));
        assert!(matches!(read_json(b"[1,", &limits), Err(PackageError::InvalidJson(_))));
        assert_eq!(read_object(b"[]", &limits), Err(PackageError::NotAnObject { found: "an array" }));
        assert_eq!(ParseLimits::default(), ParseLimits { max_bytes: 1_048_576, max_depth: 32 });
    }

    #[test]
    fn status_codes_of_package_errors() {
        let unknown = PackageError::Command { position: 2, source: CommandError::UnknownCommand("X".to_owned()) };
        assert_eq!(unknown.status_code(), 501);
        assert_eq!(PackageError::BothCommandKeys.status_code(), 400);
        assert_eq!(PackageError::Encode("x".to_owned()).status_code(), 500);
    }
}
