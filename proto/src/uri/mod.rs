//! Addressing (spec 6): ClientURI names nodes in the device, ServerURI names resources on the server side.

use crate::status::StatusCode;

mod client;
mod server;

pub use client::{ClientUri, InstanceSelector, NodeSelector, NodeValue, Query};
pub use server::{ServerUri, ServerUriParameter, ServerUriParams};

/// Why a ClientURI or ServerURI was rejected. A device answers a command
/// carrying such a URI with 400 Bad Request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UriError {
    #[error("empty URI")]
    Empty,
    #[error("character {0:?} is not allowed in a URI")]
    InvalidCharacter(char),
    #[error("ClientURI has no MOID before the first \"/\"")]
    MissingMoid,
    #[error("invalid MOID {0:?}: expected a URN such as urn:oma:mo:oma-dm-devinfo:1.2")]
    InvalidMoid(String),
    #[error("ClientURI has no \"/\" after the MOID")]
    MissingInstance,
    #[error("invalid mo-inst {0:?}: expected a MIID, (x), \"\" or *")]
    InvalidInstance(String),
    #[error("invalid node name {0:?}: expected unreserved characters, (x) or *")]
    InvalidNodeName(String),
    #[error("empty node name in the path")]
    EmptyNodeName,
    #[error("x-name ({0}) is used twice")]
    DuplicateXName(char),
    #[error("x-name ({0}) has no nv field to resolve it")]
    XNameWithoutNodeValue(char),
    #[error("nv field names ({0}), which the address does not use")]
    NodeValueWithoutXName(char),
    #[error("invalid nv field {0:?}: expected (x)/path:value")]
    InvalidNodeValue(String),
    #[error("invalid lv field {0:?}: expected a positive integer")]
    InvalidLevel(String),
    #[error("query field {0} appears more than once")]
    DuplicateField(&'static str),
    #[error("query field {0} has no value")]
    MissingFieldValue(String),
    #[error("invalid percent-encoding in {0:?}")]
    InvalidPercentEncoding(String),
    #[error("invalid ServerURI {0:?}: {1}")]
    InvalidServerUri(String, &'static str),
    #[error("ServerURI scheme {0:?} is not supported: expected http or https")]
    UnsupportedServerUriScheme(String),
    #[error("ServerURI parameter [{0}] is unknown: expected DevID, MNC, MCC, CMNC, CMCC or SPName")]
    UnknownServerUriParameter(String),
    #[error("ServerURI has an unbalanced \"[\" or \"]\" at byte {0}")]
    UnbalancedServerUriBracket(usize),
}

impl UriError {
    /// The status a device answers a command carrying such a URI with: 400 Bad Request,
    /// since every variant is malformed syntax (Appendix C). An address that parses
    /// but resolves to nothing is the tree's 404, not an error of this type.
    pub fn status_code(&self) -> StatusCode {
        StatusCode::BAD_REQUEST
    }
}

/// RFC 3986 `unreserved = ALPHA / DIGIT / "-" / "." / "_" / "~"`.
fn is_unreserved(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~')
}

/// True when `text` starts with two hex digits, as what follows "%" in a valid escape.
fn starts_with_hex_pair(text: &str) -> bool {
    let mut bytes = text.bytes();
    matches!((bytes.next(), bytes.next()), (Some(high), Some(low)) if high.is_ascii_hexdigit() && low.is_ascii_hexdigit())
}

/// Appends `c` as percent-encoded UTF-8 bytes: `é` becomes `%C3%A9`.
fn push_percent_encoded(out: &mut String, c: char) {
    let mut buffer = [0_u8; 4];
    for byte in c.encode_utf8(&mut buffer).bytes() {
        out.push_str(&format!("%{byte:02X}"));
    }
}
