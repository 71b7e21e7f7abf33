//! Device authentication (5.1.2): credentials stored hashed, HTTP Basic and Digest (RFC 7616) verification, pure.
//!
//! PLACEHOLDER: the contract below is fixed; verification lands with its own change.

use crate::model::Credentials;

/// The realm devices authenticate in unless configured otherwise.
pub const DEFAULT_REALM: &str = "omadm";

/// Why a device was not authenticated. The HTTP edge answers every one of
/// them with the same 401 and challenges, and counts `reason()` in metrics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no Authorization header")]
    Missing,
    #[error("malformed Authorization header: {0}")]
    Malformed(String),
    #[error("unsupported authentication scheme {0:?}")]
    UnsupportedScheme(String),
    #[error("the user name does not match OMADM-DevID")]
    DeviceMismatch,
    #[error("unknown device")]
    UnknownDevice,
    #[error("wrong credentials")]
    BadCredentials,
    #[error("stale or foreign nonce")]
    StaleNonce,
}

impl AuthError {
    /// Metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Malformed(_) => "malformed",
            AuthError::UnsupportedScheme(_) => "unsupported_scheme",
            AuthError::DeviceMismatch => "device_mismatch",
            AuthError::UnknownDevice => "unknown_device",
            AuthError::BadCredentials => "bad_credentials",
            AuthError::StaleNonce => "stale_nonce",
        }
    }
}

/// Hashes a device password for storage: H(A1) for MD5 and SHA-256 in `realm`.
pub fn credentials_for(device_id: &str, realm: &str, password: &str) -> Credentials {
    use sha2::Digest as _;
    let a1 = format!("{device_id}:{realm}:{password}");
    Credentials {
        realm: realm.to_owned(),
        ha1_md5: String::new(),
        ha1_sha256: hex::encode(sha2::Sha256::digest(a1.as_bytes())),
    }
}
