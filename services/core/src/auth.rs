//! Device authentication (5.1.2): credentials stored hashed, HTTP Basic and Digest (RFC 7616) verification, pure.
//!
//! What is stored per device is H(A1) = H(`devid:realm:password`) for MD5 and
//! SHA-256 ([`credentials_for`]), never the password. Digest needs exactly
//! that; Basic is checked by hashing the given password the same way.
//!
//! Nonces are stateless: `base64url(issued_at_millis_be || HMAC-SHA256(key, issued_at_millis_be))`.
//! Any node holding the key can check one without shared state; its age is
//! bounded by the caller's `max_age` ([`check_nonce`]).
//!
//! ```text
//! WWW-Authenticate: Digest realm="omadm", qop="auth", algorithm=SHA-256, nonce="AAABjW...", charset=UTF-8
//! Authorization: Digest username="IMEI:493005100592800", realm="omadm", nonce="AAABjW...", uri="/dm",
//!                response="6629fae4...", algorithm=SHA-256, qop=auth, nc=00000001, cnonce="0a4f113b"
//! Authorization: Basic SU1FSTo0OTMwMDUxMDA1OTI4MDA6c2VjcmV0
//! ```
//!
//! Decisions:
//! - Header parsing is ours (RFC 7235 auth-params, a few dozen lines): the
//!   `digest_auth` and `http-auth` crates are client-side, and both compute
//!   from the password, which a server that stores only H(A1) does not have.
//! - Digest requires `qop=auth` (RFC 7616 makes qop mandatory; the RFC 2069
//!   form without it is refused). `auth-int`, `userhash=true` and `username*`
//!   are refused: we never offer them.
//! - `MD5-sess` and `SHA-256-sess` are accepted (H(A1) of the session is
//!   derived from the stored H(A1)) but not offered in challenges.
//! - Basic: DevIDs such as `IMEI:4930...` contain ":", which RFC 7617 does
//!   not allow in a user-id. When the caller knows the device id (the
//!   `OMADM-DevID` header), the user-pass is split after that id; otherwise
//!   at the first ":" as RFC 7617 says.
//! - A Digest answer whose response is right but whose nonce is old or not
//!   ours is [`AuthError::StaleNonce`] (the client retries with a fresh
//!   nonce, `stale=true`); a wrong response is [`AuthError::BadCredentials`]
//!   whatever the nonce, so `stale=true` never tells a guesser anything.
//! - Every comparison of secrets is constant-time (`subtle`, `hmac::verify_slice`).
//! - Replays: a right Digest answer is accepted once. The edge records its
//!   [`replay_guard`] (username, nonce, nc, cnonce) in the Store for the nonce's
//!   remaining lifetime and refuses it as [`AuthError::Replayed`] when it was
//!   there already. Basic has no nonce and is replayable by design (use TLS).
//! - Guessing: failed guesses are counted per device id and per source address
//!   in fixed windows ([`ThrottleLimit`], [`ThrottleScope`]); past the limit
//!   the edge answers 429 until the window ends.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use md5::Md5;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

use crate::clock::Millis;
use crate::model::Credentials;

/// The realm devices authenticate in unless configured otherwise.
pub const DEFAULT_REALM: &str = "omadm";

/// Why a device was not authenticated. The HTTP edge answers every one of
/// them with the same 401 and challenges, and counts `reason()` in metrics.
///
/// There is no "unknown device": a device id nobody registered fails as
/// [`AuthError::BadCredentials`], after the same work, so neither the answer,
/// its timing nor the metrics tell which ids exist.
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
    /// Wrong password, or no such device.
    #[error("wrong credentials")]
    BadCredentials,
    #[error("stale or foreign nonce")]
    StaleNonce,
    /// A right Digest answer whose (nonce, nc, cnonce) was accepted once already.
    #[error("replayed Digest answer")]
    Replayed,
}

impl AuthError {
    /// Metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Malformed(_) => "malformed",
            AuthError::UnsupportedScheme(_) => "unsupported_scheme",
            AuthError::DeviceMismatch => "device_mismatch",
            AuthError::BadCredentials => "bad_credentials",
            AuthError::StaleNonce => "stale_nonce",
            AuthError::Replayed => "replayed",
        }
    }

    /// Whether this failure counts against the throttles: a guess (wrong credentials) or a replay.
    /// A missing header (a Digest client's first request), a stale nonce or a malformed header is not a guess.
    pub fn counts_as_guess(&self) -> bool {
        matches!(self, AuthError::BadCredentials | AuthError::Replayed)
    }
}

/// Hashes a device password for storage: H(A1) for MD5 and SHA-256 in `realm`.
pub fn credentials_for(device_id: &str, realm: &str, password: &str) -> Credentials {
    let a1 = format!("{device_id}:{realm}:{password}");
    Credentials {
        realm: realm.to_owned(),
        ha1_md5: hex::encode(Md5::digest(a1.as_bytes())),
        ha1_sha256: hex::encode(Sha256::digest(a1.as_bytes())),
    }
}

/// The Digest algorithms of RFC 7616 3.3 that the server verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestAlgorithm {
    Md5,
    Md5Sess,
    Sha256,
    Sha256Sess,
}

impl DigestAlgorithm {
    /// Reads the `algorithm` parameter; absent means MD5 (RFC 7616 3.4).
    pub fn from_parameter(value: Option<&str>) -> Result<Self, AuthError> {
        let Some(value) = value else { return Ok(DigestAlgorithm::Md5) };
        match value.to_ascii_uppercase().as_str() {
            "MD5" => Ok(DigestAlgorithm::Md5),
            "MD5-SESS" => Ok(DigestAlgorithm::Md5Sess),
            "SHA-256" => Ok(DigestAlgorithm::Sha256),
            "SHA-256-SESS" => Ok(DigestAlgorithm::Sha256Sess),
            _ => Err(AuthError::Malformed(format!("unsupported Digest algorithm {value:?}"))),
        }
    }

    /// The name as RFC 7616 writes it.
    pub fn name(self) -> &'static str {
        match self {
            DigestAlgorithm::Md5 => "MD5",
            DigestAlgorithm::Md5Sess => "MD5-sess",
            DigestAlgorithm::Sha256 => "SHA-256",
            DigestAlgorithm::Sha256Sess => "SHA-256-sess",
        }
    }

    fn is_session_variant(self) -> bool {
        matches!(self, DigestAlgorithm::Md5Sess | DigestAlgorithm::Sha256Sess)
    }

    /// Lower-case hex of H(data).
    fn hash_hex(self, data: &[u8]) -> String {
        match self {
            DigestAlgorithm::Md5 | DigestAlgorithm::Md5Sess => hex::encode(Md5::digest(data)),
            DigestAlgorithm::Sha256 | DigestAlgorithm::Sha256Sess => hex::encode(Sha256::digest(data)),
        }
    }

    /// The stored H(A1) this algorithm starts from.
    fn stored_ha1(self, credentials: &Credentials) -> &str {
        match self {
            DigestAlgorithm::Md5 | DigestAlgorithm::Md5Sess => &credentials.ha1_md5,
            DigestAlgorithm::Sha256 | DigestAlgorithm::Sha256Sess => &credentials.ha1_sha256,
        }
    }
}

/// The parameters of an `Authorization: Digest ...` header (RFC 7616 3.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestResponse {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    /// The `uri` parameter: the request target the client signed.
    pub uri: String,
    /// Lower-case hex.
    pub response: String,
    pub algorithm: DigestAlgorithm,
    /// Always `auth`: other values are refused when parsing.
    pub qop: String,
    /// Nonce count, 8 hex digits.
    pub nc: String,
    pub cnonce: String,
    pub opaque: Option<String>,
}

/// A parsed `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authorization {
    /// The decoded `user-id:password` of RFC 7617, not yet split (see [`Authorization::basic_password`]).
    Basic {
        user_pass: String,
    },
    Digest(DigestResponse),
}

impl Authorization {
    /// Parses an `Authorization` header value of scheme Basic or Digest.
    pub fn parse(header: &str) -> Result<Self, AuthError> {
        let header = header.trim();
        let (scheme, rest) = match header.find([' ', '\t']) {
            Some(index) => (header.get(..index).unwrap_or_default(), header.get(index..).unwrap_or_default().trim()),
            None => (header, ""),
        };
        if scheme.eq_ignore_ascii_case("Basic") {
            let bytes =
                STANDARD.decode(rest).map_err(|_| AuthError::Malformed("Basic credentials are not base64".into()))?;
            let user_pass =
                String::from_utf8(bytes).map_err(|_| AuthError::Malformed("Basic credentials are not UTF-8".into()))?;
            return Ok(Authorization::Basic { user_pass });
        }
        if scheme.eq_ignore_ascii_case("Digest") {
            return parse_digest(rest).map(Authorization::Digest);
        }
        if scheme.is_empty() {
            return Err(AuthError::Malformed("empty Authorization header".into()));
        }
        Err(AuthError::UnsupportedScheme(scheme.chars().take(32).collect()))
    }

    /// The user name as the client gave it: Digest `username`, or the Basic
    /// user-id before the first ":" (which a DevID with ":" does not survive:
    /// prefer [`Authorization::claims_device`]).
    pub fn username(&self) -> &str {
        match self {
            Authorization::Basic { user_pass } => user_pass.split(':').next().unwrap_or_default(),
            Authorization::Digest(digest) => &digest.username,
        }
    }

    /// True when these credentials are for `device_id`.
    pub fn claims_device(&self, device_id: &str) -> bool {
        match self {
            Authorization::Basic { .. } => self.basic_password(device_id).is_some(),
            Authorization::Digest(digest) => digest.username == device_id,
        }
    }

    /// For Basic: the password after `device_id:`, or `None` when the
    /// user-pass does not start with that id.
    pub fn basic_password(&self, device_id: &str) -> Option<&str> {
        match self {
            Authorization::Basic { user_pass } => {
                user_pass.strip_prefix(device_id).and_then(|rest| rest.strip_prefix(':'))
            }
            Authorization::Digest(_) => None,
        }
    }
}

/// What the verification needs to know of the request and of the server.
#[derive(Debug, Clone, Copy)]
pub struct VerifyRequest<'a> {
    /// The HTTP method, e.g. `POST` (Digest A2).
    pub method: &'a str,
    /// The request target as received (`/dm` or `/bootstrap?DevID=...`); the Digest `uri` must name it.
    pub request_uri: &'a str,
    /// The HMAC key of nonces.
    pub nonce_key: &'a [u8],
    pub now: Millis,
    /// Nonces older than this are stale.
    pub nonce_max_age: Millis,
}

/// Checks `authorization` against the stored credentials of `device_id`.
/// The caller has already loaded the device; for an unknown one it verifies
/// against a decoy and answers [`AuthError::BadCredentials`] whatever this says.
pub fn verify(
    authorization: &Authorization,
    device_id: &str,
    credentials: &Credentials,
    request: &VerifyRequest<'_>,
) -> Result<(), AuthError> {
    match authorization {
        Authorization::Basic { .. } => {
            let password = authorization.basic_password(device_id).ok_or(AuthError::DeviceMismatch)?;
            let a1 = format!("{device_id}:{}:{password}", credentials.realm);
            let given = hex::encode(Sha256::digest(a1.as_bytes()));
            if constant_time_equal(&given, &credentials.ha1_sha256) { Ok(()) } else { Err(AuthError::BadCredentials) }
        }
        Authorization::Digest(digest) => {
            if digest.username != device_id {
                return Err(AuthError::DeviceMismatch);
            }
            if !uri_names_request(&digest.uri, request.request_uri) {
                return Err(AuthError::Malformed("the Digest uri does not name this request".into()));
            }
            if digest.realm != credentials.realm || !digest_response_matches(digest, credentials, request.method) {
                return Err(AuthError::BadCredentials);
            }
            check_nonce(request.nonce_key, &digest.nonce, request.now, request.nonce_max_age)
        }
    }
}

/// True when `digest.response` = KD(H(A1), nonce:nc:cnonce:qop:H(A2)) with
/// H(A2) = H(method:uri) (RFC 7616 3.4.1-3.4.3), in constant time.
pub fn digest_response_matches(digest: &DigestResponse, credentials: &Credentials, method: &str) -> bool {
    let algorithm = digest.algorithm;
    let stored_ha1 = algorithm.stored_ha1(credentials);
    if stored_ha1.is_empty() {
        return false;
    }
    let ha1 = if algorithm.is_session_variant() {
        algorithm.hash_hex(format!("{stored_ha1}:{}:{}", digest.nonce, digest.cnonce).as_bytes())
    } else {
        stored_ha1.to_ascii_lowercase()
    };
    let ha2 = algorithm.hash_hex(format!("{method}:{}", digest.uri).as_bytes());
    let expected = algorithm
        .hash_hex(format!("{ha1}:{}:{}:{}:{}:{ha2}", digest.nonce, digest.nc, digest.cnonce, digest.qop).as_bytes());
    constant_time_equal(&expected, &digest.response.to_ascii_lowercase())
}

/// A fresh nonce: `base64url(issued_at || HMAC-SHA256(key, issued_at))`, issued_at as 8 big-endian bytes.
pub fn issue_nonce(key: &[u8], now: Millis) -> String {
    let issued_at = now.to_be_bytes();
    let mut token = Vec::with_capacity(40);
    token.extend_from_slice(&issued_at);
    token.extend_from_slice(&nonce_mac(key, &issued_at).finalize().into_bytes());
    URL_SAFE_NO_PAD.encode(token)
}

/// Accepts a nonce this server issued (with `key`) at most `max_age` ago;
/// anything else is [`AuthError::StaleNonce`].
pub fn check_nonce(key: &[u8], nonce: &str, now: Millis, max_age: Millis) -> Result<(), AuthError> {
    let issued = nonce_issued_at(key, nonce)?;
    // A nonce from the future comes from a node whose clock is ahead: fine
    // within max_age, like an old one.
    if now.abs_diff(issued) > max_age {
        return Err(AuthError::StaleNonce);
    }
    Ok(())
}

/// When a nonce this server issued (with `key`) was issued; anything else is [`AuthError::StaleNonce`].
fn nonce_issued_at(key: &[u8], nonce: &str) -> Result<Millis, AuthError> {
    let token = URL_SAFE_NO_PAD.decode(nonce).map_err(|_| AuthError::StaleNonce)?;
    if token.len() != 40 {
        return Err(AuthError::StaleNonce);
    }
    let (issued_at, mac) = token.split_at(8);
    nonce_mac(key, issued_at).verify_slice(mac).map_err(|_| AuthError::StaleNonce)?;
    let mut issued_bytes = [0u8; 8];
    issued_bytes.copy_from_slice(issued_at);
    Ok(Millis::from_be_bytes(issued_bytes))
}

/// What the replay cache records for an accepted Digest answer: `key` for `ttl` ms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayGuard {
    /// `digest:` + hex SHA-256 of (username, nonce, nc, cnonce): bounded in length whatever the client sent.
    pub key: String,
    /// The nonce's remaining lifetime: once the nonce is stale, a replay fails on it anyway.
    pub ttl: Millis,
}

/// The replay-cache entry of a Digest answer that [`verify`] accepted; `None` for Basic, which
/// has no nonce (and is replayable by design: keep it behind TLS).
pub fn replay_guard(authorization: &Authorization, request: &VerifyRequest<'_>) -> Option<ReplayGuard> {
    let Authorization::Digest(digest) = authorization else { return None };
    let issued = nonce_issued_at(request.nonce_key, &digest.nonce).ok()?;
    let expires_at = issued.saturating_add(request.nonce_max_age);
    let mut hash = Sha256::new();
    for part in [&digest.username, &digest.nonce, &digest.nc, &digest.cnonce] {
        // Length-prefixed, so no two tuples hash the same bytes.
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part.as_bytes());
    }
    Some(ReplayGuard {
        key: format!("digest:{}", hex::encode(hash.finalize())),
        ttl: expires_at.saturating_sub(request.now).max(1),
    })
}

/// Who a throttle counts failed authentications of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThrottleScope {
    /// One device id (registered or not).
    Device,
    /// One source address (an IPv6 /64).
    Address,
    /// One source address, for wrong operator API tokens.
    ApiToken,
}

impl ThrottleScope {
    /// Metric label (`omadm_auth_throttled_total{scope}`).
    pub fn label(self) -> &'static str {
        match self {
            ThrottleScope::Device => "device",
            ThrottleScope::Address => "address",
            ThrottleScope::ApiToken => "api_token",
        }
    }

    /// The Store key the failures of `subject` are counted under (`Store::count_in_window`).
    pub fn key(self, subject: &str) -> String {
        format!("auth-failures:{}:{subject}", self.label())
    }
}

/// The subject of the address throttles: an IPv4 address, or the /64 of an IPv6 one (one
/// subscriber usually holds a whole /64). IPv4-mapped IPv6 addresses count as IPv4.
pub fn address_subject(address: std::net::IpAddr) -> String {
    match address {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let segments = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", segments[0], segments[1], segments[2], segments[3])
            }
        },
    }
}

/// A fixed-window throttle: at most `max_failures` counted failures per `window` ms; the
/// requests after them are refused until the window ends, then everything starts over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleLimit {
    pub max_failures: u64,
    pub window: Millis,
}

impl ThrottleLimit {
    /// True when a window that counted `failures` so far refuses further attempts.
    pub fn exceeded_by(self, failures: u64) -> bool {
        failures >= self.max_failures
    }

    /// The `Retry-After` seconds of a refusal at `now`: until the window ends, rounded up, at least 1.
    pub fn retry_after_seconds(self, now: Millis) -> u64 {
        crate::store::retry_after_seconds(self.window, now)
    }
}

/// Counts authentication failures between log lines: the first failure after a quiet
/// interval is logged at once, later ones only as one summary line per interval, so a flood
/// of bad logins writes a bounded number of lines. Pure; the caller keeps it behind a lock.
#[derive(Debug, Clone)]
pub struct FailureTally {
    interval: Millis,
    last_line_at: Option<Millis>,
    counts: std::collections::BTreeMap<&'static str, u64>,
}

/// One summary line's content: failures since the previous line, by reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureSummary {
    pub total: u64,
    /// `reason=count` pairs separated by spaces, in reason order (`bad_credentials=3 missing=1`).
    pub by_reason: String,
}

impl FailureTally {
    pub fn new(interval: Millis) -> Self {
        FailureTally { interval, last_line_at: None, counts: std::collections::BTreeMap::new() }
    }

    /// Counts one failure of `reason` at `now`; returns the summary to log now, if a line is due.
    pub fn record(&mut self, reason: &'static str, now: Millis) -> Option<FailureSummary> {
        *self.counts.entry(reason).or_insert(0) += 1;
        let due = self.last_line_at.is_none_or(|last| now.saturating_sub(last) >= self.interval);
        if !due {
            return None;
        }
        self.last_line_at = Some(now);
        let counts = std::mem::take(&mut self.counts);
        let total = counts.values().sum();
        let by_reason = counts.iter().map(|(reason, count)| format!("{reason}={count}")).collect::<Vec<_>>().join(" ");
        Some(FailureSummary { total, by_reason })
    }
}

fn nonce_mac(key: &[u8], issued_at: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => Hmac::<Sha256>::new(&Default::default()),
    };
    mac.update(issued_at);
    mac
}

/// The `WWW-Authenticate` values of a 401, strongest first: Digest SHA-256,
/// Digest MD5 (older devices), Basic. `stale` marks a right answer to an old nonce.
pub fn challenges(realm: &str, key: &[u8], now: Millis, stale: bool) -> Vec<String> {
    let nonce = issue_nonce(key, now);
    let realm = quote(realm);
    let stale = if stale { ", stale=true" } else { "" };
    vec![
        format!("Digest realm={realm}, qop=\"auth\", algorithm=SHA-256, nonce=\"{nonce}\", charset=UTF-8{stale}"),
        format!("Digest realm={realm}, qop=\"auth\", algorithm=MD5, nonce=\"{nonce}\", charset=UTF-8{stale}"),
        format!("Basic realm={realm}, charset=\"UTF-8\""),
    ]
}

fn quote(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for character in text.chars() {
        if character == '"' || character == '\\' {
            quoted.push('\\');
        }
        quoted.push(character);
    }
    quoted.push('"');
    quoted
}

fn constant_time_equal(left: &str, right: &str) -> bool {
    left.len() == right.len() && bool::from(left.as_bytes().ct_eq(right.as_bytes()))
}

/// The Digest `uri` names the request when it is the same request target,
/// or an absolute URI whose path and query are (RFC 7616 3.4.6).
fn uri_names_request(digest_uri: &str, request_uri: &str) -> bool {
    if digest_uri == request_uri {
        return true;
    }
    let Some((_, after_scheme)) = digest_uri.split_once("://") else { return false };
    match after_scheme.find('/') {
        Some(index) => after_scheme.get(index..) == Some(request_uri),
        None => request_uri == "/",
    }
}

fn parse_digest(text: &str) -> Result<DigestResponse, AuthError> {
    let mut parameters = parse_auth_params(text)?;
    let mut take =
        |name: &str| parameters.iter().position(|(key, _)| key == name).map(|index| parameters.remove(index).1);
    let mut required = |name: &'static str| {
        take(name).ok_or_else(|| AuthError::Malformed(format!("Digest parameter {name} is missing")))
    };
    let username = required("username")?;
    let realm = required("realm")?;
    let nonce = required("nonce")?;
    let uri = required("uri")?;
    let response = required("response")?;
    let qop = required("qop")?;
    let nc = required("nc")?;
    let cnonce = required("cnonce")?;
    let algorithm = DigestAlgorithm::from_parameter(take("algorithm").as_deref())?;
    let opaque = take("opaque");
    if take("username*").is_some() {
        return Err(AuthError::Malformed("username* is not supported".into()));
    }
    if take("userhash").is_some_and(|userhash| userhash.eq_ignore_ascii_case("true")) {
        return Err(AuthError::Malformed("userhash is not supported".into()));
    }
    if !qop.eq_ignore_ascii_case("auth") {
        return Err(AuthError::Malformed(format!("unsupported qop {qop:?}: only auth")));
    }
    if nc.len() != 8 || !nc.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return Err(AuthError::Malformed("nc must be 8 hex digits".into()));
    }
    Ok(DigestResponse { username, realm, nonce, uri, response, algorithm, qop: "auth".to_owned(), nc, cnonce, opaque })
}

/// RFC 7235 `#auth-param`: `name=token` or `name="quoted string"`, separated
/// by commas and optional whitespace. Names are returned in lower case.
fn parse_auth_params(text: &str) -> Result<Vec<(String, String)>, AuthError> {
    let malformed = |reason: &str| AuthError::Malformed(reason.to_owned());
    let mut parameters: Vec<(String, String)> = Vec::new();
    let mut characters = text.chars().peekable();
    loop {
        while characters.next_if(|c| *c == ',' || c.is_ascii_whitespace()).is_some() {}
        if characters.peek().is_none() {
            break;
        }
        let mut name = String::new();
        while let Some(c) = characters.next_if(|c| is_token_char(*c)) {
            name.push(c.to_ascii_lowercase());
        }
        while characters.next_if(|c| c.is_ascii_whitespace()).is_some() {}
        if name.is_empty() || characters.next() != Some('=') {
            return Err(malformed("expected name=value parameters"));
        }
        while characters.next_if(|c| c.is_ascii_whitespace()).is_some() {}
        let mut value = String::new();
        if characters.next_if_eq(&'"').is_some() {
            loop {
                match characters.next() {
                    None => return Err(malformed("unterminated quoted string")),
                    Some('"') => break,
                    Some('\\') => value.push(characters.next().ok_or_else(|| malformed("dangling escape"))?),
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = characters.next_if(|c| is_token_char(*c)) {
                value.push(c);
            }
            if value.is_empty() {
                return Err(malformed("empty parameter value"));
            }
        }
        while characters.next_if(|c| c.is_ascii_whitespace()).is_some() {}
        if characters.peek().is_some_and(|c| *c != ',') {
            return Err(malformed("parameters must be separated by commas"));
        }
        if parameters.iter().any(|(existing, _)| *existing == name) {
            return Err(AuthError::Malformed(format!("parameter {name} given twice")));
        }
        parameters.push((name, value));
    }
    Ok(parameters)
}

/// RFC 9110 tchar.
fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MUFASA_REALM: &str = "http-auth@example.org";
    const KEY: &[u8] = b"nonce key of the tests";

    /// RFC 7616 3.9.1, with `algorithm` and `response` of the example for each algorithm.
    fn rfc_header(algorithm: &str, response: &str) -> String {
        format!(
            "Digest username=\"Mufasa\", realm=\"http-auth@example.org\", uri=\"/dir/index.html\", \
             algorithm={algorithm}, nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", nc=00000001, \
             cnonce=\"f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ\", qop=auth, response=\"{response}\", \
             opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\""
        )
    }

    fn digest_of(header: &str) -> DigestResponse {
        match Authorization::parse(header).unwrap() {
            Authorization::Digest(digest) => digest,
            other => panic!("not Digest: {other:?}"),
        }
    }

    #[test]
    fn rfc_7616_example_verifies_with_md5_and_sha256() {
        let credentials = credentials_for("Mufasa", MUFASA_REALM, "Circle of Life");
        let md5 = digest_of(&rfc_header("MD5", "8ca523f5e9506fed4657c9700eebdbec"));
        assert_eq!(md5.algorithm, DigestAlgorithm::Md5);
        assert_eq!(md5.opaque.as_deref(), Some("FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"));
        assert!(digest_response_matches(&md5, &credentials, "GET"));
        let sha256 =
            digest_of(&rfc_header("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"));
        assert_eq!(sha256.algorithm, DigestAlgorithm::Sha256);
        assert!(digest_response_matches(&sha256, &credentials, "GET"));

        // The same answers fail for another method, password or realm.
        assert!(!digest_response_matches(&md5, &credentials, "POST"));
        assert!(!digest_response_matches(&sha256, &credentials_for("Mufasa", MUFASA_REALM, "circle of life"), "GET"));
        assert!(!digest_response_matches(&sha256, &credentials_for("Mufasa", "omadm", "Circle of Life"), "GET"));
        // An MD5 answer is not checked against the SHA-256 hash.
        let mut crossed = md5.clone();
        crossed.algorithm = DigestAlgorithm::Sha256;
        assert!(!digest_response_matches(&crossed, &credentials, "GET"));
    }

    #[test]
    fn credentials_store_both_ha1_and_never_the_password() {
        let credentials = credentials_for("Mufasa", MUFASA_REALM, "Circle of Life");
        assert_eq!(credentials.ha1_md5.len(), 32);
        assert_eq!(credentials.ha1_sha256.len(), 64);
        // RFC 2617 3.5 gives H(A1) of its own example.
        let rfc_2617 = credentials_for("Mufasa", "testrealm@host.com", "Circle Of Life");
        assert_eq!(rfc_2617.ha1_md5, "939e7578ed9e3c518a452acee763bce9");
        assert_eq!(credentials.realm, MUFASA_REALM);
        assert!(!format!("{credentials:?}").contains("Circle"));
    }

    fn session_response(algorithm: DigestAlgorithm, credentials: &Credentials, nonce: &str, uri: &str) -> String {
        // Built the long way, independently of digest_response_matches.
        let hash = |data: String| algorithm.hash_hex(data.as_bytes());
        let stored = algorithm.stored_ha1(credentials).to_owned();
        let ha1 = if algorithm.is_session_variant() { hash(format!("{stored}:{nonce}:c0ffee")) } else { stored };
        let ha2 = hash(format!("POST:{uri}"));
        hash(format!("{ha1}:{nonce}:00000001:c0ffee:auth:{ha2}"))
    }

    fn digest_header(device: &str, realm: &str, nonce: &str, uri: &str, algorithm: &str, response: &str) -> String {
        format!(
            "Digest username=\"{device}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
             response=\"{response}\", algorithm={algorithm}, qop=auth, nc=00000001, cnonce=\"c0ffee\""
        )
    }

    fn request(now: Millis) -> VerifyRequest<'static> {
        VerifyRequest { method: "POST", request_uri: "/dm", nonce_key: KEY, now, nonce_max_age: 300_000 }
    }

    #[test]
    fn digest_verify_checks_response_then_nonce() {
        let device = "IMEI:493005100592800";
        let credentials = credentials_for(device, DEFAULT_REALM, "secret");
        let nonce = issue_nonce(KEY, 1_000_000);
        for algorithm in
            [DigestAlgorithm::Md5, DigestAlgorithm::Sha256, DigestAlgorithm::Md5Sess, DigestAlgorithm::Sha256Sess]
        {
            let response = session_response(algorithm, &credentials, &nonce, "/dm");
            let header = digest_header(device, DEFAULT_REALM, &nonce, "/dm", algorithm.name(), &response);
            let authorization = Authorization::parse(&header).unwrap();
            assert!(authorization.claims_device(device));
            assert_eq!(verify(&authorization, device, &credentials, &request(1_000_500)), Ok(()), "{algorithm:?}");
            // Right answer, old nonce: stale.
            assert_eq!(
                verify(&authorization, device, &credentials, &request(1_000_000 + 300_001)),
                Err(AuthError::StaleNonce)
            );
            // Another device's credentials, or another user name.
            let other = credentials_for(device, DEFAULT_REALM, "guess");
            assert_eq!(verify(&authorization, device, &other, &request(1_000_500)), Err(AuthError::BadCredentials));
            assert_eq!(
                verify(&authorization, "IMEI:1", &credentials, &request(1_000_500)),
                Err(AuthError::DeviceMismatch)
            );
        }

        // A right answer to a nonce we did not issue: stale (the client retries), never accepted.
        let foreign = issue_nonce(b"another key", 1_000_000);
        let response = session_response(DigestAlgorithm::Sha256, &credentials, &foreign, "/dm");
        let header = digest_header(device, DEFAULT_REALM, &foreign, "/dm", "SHA-256", &response);
        let authorization = Authorization::parse(&header).unwrap();
        assert_eq!(verify(&authorization, device, &credentials, &request(1_000_500)), Err(AuthError::StaleNonce));

        // A wrong answer to a stale nonce is bad credentials, not stale.
        let header = digest_header(device, DEFAULT_REALM, &foreign, "/dm", "SHA-256", &"0".repeat(64));
        let authorization = Authorization::parse(&header).unwrap();
        assert_eq!(verify(&authorization, device, &credentials, &request(1_000_500)), Err(AuthError::BadCredentials));

        // Signed for another request target.
        let response = session_response(DigestAlgorithm::Sha256, &credentials, &nonce, "/repo/x");
        let header = digest_header(device, DEFAULT_REALM, &nonce, "/repo/x", "SHA-256", &response);
        let authorization = Authorization::parse(&header).unwrap();
        assert!(matches!(
            verify(&authorization, device, &credentials, &request(1_000_500)),
            Err(AuthError::Malformed(_))
        ));

        // Another realm than the stored one.
        let response = session_response(DigestAlgorithm::Sha256, &credentials, &nonce, "/dm");
        let header = digest_header(device, "elsewhere", &nonce, "/dm", "SHA-256", &response);
        let authorization = Authorization::parse(&header).unwrap();
        assert_eq!(verify(&authorization, device, &credentials, &request(1_000_500)), Err(AuthError::BadCredentials));
    }

    #[test]
    fn absolute_digest_uri_names_the_same_target() {
        assert!(uri_names_request("/dm", "/dm"));
        assert!(uri_names_request("https://dm.example.com/dm/s/ab", "/dm/s/ab"));
        assert!(uri_names_request("http://dm.example.com", "/"));
        assert!(!uri_names_request("https://dm.example.com/dm", "/dm/s/ab"));
        assert!(!uri_names_request("/dm?x", "/dm"));
    }

    #[test]
    fn basic_splits_after_the_device_id_and_checks_the_sha256_ha1() {
        let device = "IMEI:493005100592800";
        let credentials = credentials_for(device, DEFAULT_REALM, "pa:ss");
        let header = format!("Basic {}", STANDARD.encode(format!("{device}:pa:ss")));
        let authorization = Authorization::parse(&header).unwrap();
        assert_eq!(authorization.username(), "IMEI");
        assert!(authorization.claims_device(device));
        assert_eq!(authorization.basic_password(device), Some("pa:ss"));
        assert_eq!(verify(&authorization, device, &credentials, &request(0)), Ok(()));

        let wrong = Authorization::parse(&format!("Basic {}", STANDARD.encode(format!("{device}:pass")))).unwrap();
        assert_eq!(verify(&wrong, device, &credentials, &request(0)), Err(AuthError::BadCredentials));
        assert!(!wrong.claims_device("IMEI:4930051005928"));
        assert_eq!(verify(&wrong, "IMEI:4930051005928", &credentials, &request(0)), Err(AuthError::DeviceMismatch));
        // Stored with an empty SHA-256 hash (never in practice): nothing verifies against it.
        let empty = Credentials { realm: DEFAULT_REALM.into(), ha1_md5: String::new(), ha1_sha256: String::new() };
        assert_eq!(verify(&authorization, device, &empty, &request(0)), Err(AuthError::BadCredentials));
    }

    #[test]
    fn nonces_are_ours_and_bounded_in_age() {
        let nonce = issue_nonce(KEY, 5_000);
        assert_eq!(check_nonce(KEY, &nonce, 5_000, 10), Ok(()));
        assert_eq!(check_nonce(KEY, &nonce, 5_010, 10), Ok(()));
        assert_eq!(check_nonce(KEY, &nonce, 5_011, 10), Err(AuthError::StaleNonce));
        assert_eq!(check_nonce(KEY, &nonce, 4_990, 10), Ok(()));
        assert_eq!(check_nonce(b"other", &nonce, 5_000, 10), Err(AuthError::StaleNonce));
        assert_eq!(check_nonce(KEY, "not base64 !", 5_000, 10), Err(AuthError::StaleNonce));
        assert_eq!(check_nonce(KEY, "AAAA", 5_000, 10), Err(AuthError::StaleNonce));
        // A forged timestamp with the old MAC fails.
        let mut token = URL_SAFE_NO_PAD.decode(&nonce).unwrap();
        token[7] ^= 1;
        assert_eq!(check_nonce(KEY, &URL_SAFE_NO_PAD.encode(token), 5_000, 10), Err(AuthError::StaleNonce));
        assert_ne!(issue_nonce(KEY, 5_000), issue_nonce(KEY, 5_001));
    }

    #[test]
    fn challenges_offer_sha256_then_md5_then_basic() {
        let values = challenges("omadm", KEY, 7_000, false);
        assert_eq!(values.len(), 3);
        assert!(values[0].starts_with("Digest realm=\"omadm\", qop=\"auth\", algorithm=SHA-256, nonce=\""));
        assert!(values[1].contains("algorithm=MD5"));
        assert_eq!(values[2], "Basic realm=\"omadm\", charset=\"UTF-8\"");
        assert!(!values[0].contains("stale"));
        let nonce = values[0].split("nonce=\"").nth(1).unwrap().split('"').next().unwrap();
        assert_eq!(check_nonce(KEY, nonce, 7_000, 1), Ok(()));
        let stale = challenges("a \"quoted\" realm", KEY, 7_000, true);
        assert!(stale[0].starts_with("Digest realm=\"a \\\"quoted\\\" realm\""));
        assert!(stale[0].ends_with(", stale=true") && stale[1].ends_with(", stale=true"));
    }

    #[test]
    fn malformed_headers_are_refused_with_a_reason() {
        let parse = Authorization::parse;
        assert_eq!(parse("Bearer abc"), Err(AuthError::UnsupportedScheme("Bearer".into())));
        assert!(matches!(parse(""), Err(AuthError::Malformed(_))));
        assert!(matches!(parse("Basic %%%"), Err(AuthError::Malformed(_))));
        assert!(
            matches!(parse("Digest username=\"a\""), Err(AuthError::Malformed(reason)) if reason.contains("realm"))
        );
        assert!(matches!(parse("Digest username=\"a"), Err(AuthError::Malformed(_))));
        assert!(matches!(parse("Digest username"), Err(AuthError::Malformed(_))));
        assert!(matches!(parse("Digest a=1 b=2"), Err(AuthError::Malformed(_))));
        assert!(matches!(parse("Digest a=1, a=2"), Err(AuthError::Malformed(_))));
        let base = "username=\"u\", realm=\"r\", nonce=\"n\", uri=\"/\", response=\"x\", cnonce=\"c\"";
        assert!(parse(&format!("Digest {base}, qop=auth, nc=00000001")).is_ok());
        assert!(parse(&format!("digest {base},qop=\"auth\",nc=00000001,,")).is_ok());
        assert!(matches!(parse(&format!("Digest {base}, nc=00000001")), Err(AuthError::Malformed(_))));
        assert!(matches!(parse(&format!("Digest {base}, qop=auth-int, nc=00000001")), Err(AuthError::Malformed(_))));
        assert!(matches!(parse(&format!("Digest {base}, qop=auth, nc=1")), Err(AuthError::Malformed(_))));
        assert!(matches!(
            parse(&format!("Digest {base}, qop=auth, nc=00000001, algorithm=SHA-512-256")),
            Err(AuthError::Malformed(_))
        ));
        assert!(matches!(
            parse(&format!("Digest {base}, qop=auth, nc=00000001, userhash=true")),
            Err(AuthError::Malformed(_))
        ));
        // Escapes in quoted strings.
        let escaped = digest_of(&format!("Digest {base}, qop=auth, nc=00000001, opaque=\"a\\\"b\\\\c\""));
        assert_eq!(escaped.opaque.as_deref(), Some("a\"b\\c"));
        assert_eq!(AuthError::StaleNonce.reason(), "stale_nonce");
    }

    #[test]
    fn replay_guard_names_the_answer_for_the_nonce_lifetime() {
        let device = "IMEI:493005100592800";
        let credentials = credentials_for(device, DEFAULT_REALM, "secret");
        let nonce = issue_nonce(KEY, 1_000_000);
        let response = session_response(DigestAlgorithm::Sha256, &credentials, &nonce, "/dm");
        let header = digest_header(device, DEFAULT_REALM, &nonce, "/dm", "SHA-256", &response);
        let authorization = Authorization::parse(&header).unwrap();
        let guard = replay_guard(&authorization, &request(1_000_500)).unwrap();
        assert!(guard.key.starts_with("digest:") && guard.key.len() == 7 + 64, "{}", guard.key);
        // Recorded until the nonce goes stale (issued + max age).
        assert_eq!(guard.ttl, 1_000_000 + 300_000 - 1_000_500);
        assert_eq!(replay_guard(&authorization, &request(1_000_000 + 300_000)).unwrap().ttl, 1);
        // The same answer at another time is the same entry; another nc or cnonce is another one.
        assert_eq!(replay_guard(&authorization, &request(1_200_000)).unwrap().key, guard.key);
        let next_nc = Authorization::parse(&header.replace("nc=00000001", "nc=00000002")).unwrap();
        assert_ne!(replay_guard(&next_nc, &request(1_000_500)).unwrap().key, guard.key);
        let other_cnonce = Authorization::parse(&header.replace("c0ffee", "c0ffef")).unwrap();
        assert_ne!(replay_guard(&other_cnonce, &request(1_000_500)).unwrap().key, guard.key);
        // Basic has no nonce: nothing to record.
        let basic = Authorization::parse(&format!("Basic {}", STANDARD.encode(format!("{device}:secret")))).unwrap();
        assert_eq!(replay_guard(&basic, &request(0)), None);
        assert_eq!(AuthError::Replayed.reason(), "replayed");
        assert!(AuthError::Replayed.counts_as_guess() && AuthError::BadCredentials.counts_as_guess());
        assert!(!AuthError::Missing.counts_as_guess() && !AuthError::StaleNonce.counts_as_guess());
    }

    #[test]
    fn throttles_refuse_after_the_limit_until_the_window_ends() {
        let limit = ThrottleLimit { max_failures: 3, window: 60_000 };
        assert!(!limit.exceeded_by(0) && !limit.exceeded_by(2));
        assert!(limit.exceeded_by(3) && limit.exceeded_by(4));
        assert_eq!(limit.retry_after_seconds(120_000), 60);
        assert_eq!(limit.retry_after_seconds(120_001), 60);
        assert_eq!(limit.retry_after_seconds(179_001), 1);
        assert_eq!(limit.retry_after_seconds(179_999), 1);
        assert_eq!(ThrottleScope::Device.key("IMEI:1"), "auth-failures:device:IMEI:1");
        assert_eq!(ThrottleScope::ApiToken.label(), "api_token");
        let v6: std::net::IpAddr = "2001:db8:1:2:3:4:5:6".parse().unwrap();
        assert_eq!(address_subject(v6), "2001:db8:1:2::/64");
        let mapped: std::net::IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(address_subject(mapped), "192.0.2.7");
        assert_eq!(address_subject("192.0.2.7".parse().unwrap()), "192.0.2.7");
    }

    #[test]
    fn failure_tally_logs_one_line_per_interval() {
        let mut tally = FailureTally::new(10_000);
        let first = tally.record("bad_credentials", 1_000).unwrap();
        assert_eq!(first, FailureSummary { total: 1, by_reason: "bad_credentials=1".into() });
        let mut lines = 0;
        for step in 1..=999 {
            let reason = if step % 3 == 0 { "missing" } else { "bad_credentials" };
            // 1,000 failures over 9.99 s: no line until the interval is over.
            if tally.record(reason, 1_000 + step * 10).is_some() {
                lines += 1;
            }
        }
        assert_eq!(lines, 0);
        let summary = tally.record("stale_nonce", 11_000).unwrap();
        assert_eq!(summary.total, 1_000);
        assert_eq!(summary.by_reason, "bad_credentials=666 missing=333 stale_nonce=1");
        assert_eq!(tally.record("missing", 11_001), None);
    }
}
