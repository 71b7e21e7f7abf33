//! SHA256-DIGEST signing and verification of Package#0 (spec 5.2.1.2, steps 1-3).
//!
//! ```text
//! digest = SHA-256( server_secret || package_with_zero_digest )
//! ```
//!
//! The secret is the account's `AuthNoti/AuthSecret`; the time is the POSIX
//! time the server signed at, passed in by the caller (this crate has no clock).

use sha2::{Digest, Sha256};

use super::option::{self, DIGEST_HASH_LENGTH, Sha256Digest};
use super::package::{DecodeError, EncodeError, Notification, read_raw_options};

/// Byte length of the time field that precedes the hash inside the option value.
const DIGEST_TIME_LENGTH: usize = 4;

/// Why a received Package#0 failed verification. The spec (5.2.1.2) says a
/// client MUST ignore the notification for a missing secret or a wrong digest,
/// and MAY ignore it when it is too old.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("malformed notification: {0}")]
    Malformed(#[from] DecodeError),
    #[error("notification carries no SHA256-DIGEST option")]
    NoDigest,
    #[error("notification is signed but no AuthSecret is provisioned for its server")]
    MissingSecret,
    #[error("SHA256-DIGEST does not match the package and the secret")]
    WrongDigest,
    #[error("notification is too old: signed at {signed_at}, now is {now}, maximum age is {max_age} s")]
    TooOld { signed_at: u32, now: u32, max_age: u32 },
    #[error("notification is signed at {signed_at}, more than {max_age} s after now ({now})")]
    FromTheFuture { signed_at: u32, now: u32, max_age: u32 },
}

impl Notification {
    /// Encodes the notification signed with SHA256-DIGEST, replacing any digest
    /// it carries: step 1 writes `time` and a zero hash, step 2 hashes
    /// `secret || package`, step 3 writes that hash over the zeros.
    ///
    /// An empty secret is refused: the spec treats it as no secret at all.
    pub fn encode_signed(&self, secret: &[u8], time: u32) -> Result<Vec<u8>, EncodeError> {
        if secret.is_empty() {
            return Err(EncodeError::EmptySecret);
        }
        let unsigned =
            Notification { digest: Some(Sha256Digest { time, hash: [0; DIGEST_HASH_LENGTH] }), ..self.clone() };
        let (mut package, digest_offset) = unsigned.encode_locating_digest()?;
        // Always Some: the digest option was set just above.
        if let Some(offset) = digest_offset {
            let range = hash_range_at(offset);
            let hash = digest_with_zero_hash(secret, &package, range.clone());
            if let Some(slot) = package.get_mut(range) {
                slot.copy_from_slice(&hash);
            }
        }
        Ok(package)
    }
}

/// Verifies a received Package#0 and decodes it.
///
/// Works on the received bytes, not on a re-encoding: the hash is recomputed
/// over the package exactly as received with the 32 hash bytes taken as zero,
/// so unknown options, reserved bits and every byte the server sent are covered.
/// The comparison takes the same time whichever byte differs.
///
/// `max_age` is the client's freshness policy; `None` skips the time checks.
/// With a policy, a time more than `max_age` seconds in the future is refused
/// as well, so that a signature dated far ahead cannot be replayed forever;
/// up to `max_age` ahead is tolerated as clock skew.
pub fn verify(
    package: &[u8],
    secret: Option<&[u8]>,
    now: u32,
    max_age: Option<u32>,
) -> Result<Notification, VerifyError> {
    let options = read_raw_options(package)?;
    let notification = Notification::from_raw_options(&options)?;
    let digest_value = options.iter().find(|raw| raw.number == option::SHA256_DIGEST);
    let (Some(digest), Some(digest_value)) = (notification.digest, digest_value) else {
        return Err(VerifyError::NoDigest);
    };
    let range = hash_range_at(digest_value.value_offset);
    let secret = secret.filter(|secret| !secret.is_empty()).ok_or(VerifyError::MissingSecret)?;
    let expected = digest_with_zero_hash(secret, package, range);
    if !constant_time_equal(&expected, &digest.hash) {
        return Err(VerifyError::WrongDigest);
    }
    if let Some(max_age) = max_age {
        let signed_at = digest.time;
        if now > signed_at && now - signed_at > max_age {
            return Err(VerifyError::TooOld { signed_at, now, max_age });
        }
        if signed_at > now && signed_at - now > max_age {
            return Err(VerifyError::FromTheFuture { signed_at, now, max_age });
        }
    }
    Ok(notification)
}

/// The hash bytes of a SHA256-DIGEST value that starts at `value_offset`.
fn hash_range_at(value_offset: usize) -> std::ops::Range<usize> {
    let start = value_offset + DIGEST_TIME_LENGTH;
    start..start + DIGEST_HASH_LENGTH
}

/// SHA-256 over `secret || package`, reading the bytes in `zeroed` as zero.
fn digest_with_zero_hash(secret: &[u8], package: &[u8], zeroed: std::ops::Range<usize>) -> [u8; DIGEST_HASH_LENGTH] {
    let before = package.get(..zeroed.start).unwrap_or_default();
    let after = package.get(zeroed.end..).unwrap_or_default();
    let mut hasher = Sha256::new();
    hasher.update(secret);
    hasher.update(before);
    hasher.update([0u8; DIGEST_HASH_LENGTH]);
    hasher.update(after);
    hasher.finalize().into()
}

/// Compares two hashes without stopping at the first difference, so the time
/// taken does not tell an attacker how many leading bytes were right.
fn constant_time_equal(left: &[u8; DIGEST_HASH_LENGTH], right: &[u8; DIGEST_HASH_LENGTH]) -> bool {
    let difference = left.iter().zip(right).fold(0u8, |accumulated, (a, b)| accumulated | (a ^ b));
    std::hint::black_box(difference) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notification::option::UnknownOption;

    const SECRET: &[u8] = b"AuthSecret";
    const TIME: u32 = 1_700_000_000;

    fn sample() -> Notification {
        Notification {
            server_id: Some("com.example.dm".into()),
            notification_id: Some(7),
            request_mos: true,
            unknown_options: vec![UnknownOption { number: 12, value: vec![1, 2, 3] }],
            ..Notification::default()
        }
    }

    #[test]
    fn signing_follows_steps_one_to_three() {
        let package = sample().encode_signed(SECRET, TIME).unwrap();
        // Step 1 by hand: the same package with a zero hash.
        let zeroed =
            Notification { digest: Some(Sha256Digest { time: TIME, hash: [0; 32] }), ..sample() }.encode().unwrap();
        // Step 2 by hand.
        let mut hasher = Sha256::new();
        hasher.update(SECRET);
        hasher.update(&zeroed);
        let expected: [u8; 32] = hasher.finalize().into();
        // Step 3: only the hash bytes differ.
        let decoded = Notification::decode(&package).unwrap();
        assert_eq!(decoded.digest, Some(Sha256Digest { time: TIME, hash: expected }));
        assert_eq!(package.len(), zeroed.len());
        let differing: Vec<usize> = (0..package.len()).filter(|&index| package[index] != zeroed[index]).collect();
        assert!(differing.iter().all(|index| (28..60).contains(index)), "{differing:?}");
    }

    #[test]
    fn signed_package_verifies() {
        let package = sample().encode_signed(SECRET, TIME).unwrap();
        let verified = verify(&package, Some(SECRET), TIME + 10, Some(60)).unwrap();
        assert_eq!(verified.server_id.as_deref(), Some("com.example.dm"));
        assert_eq!(verified.digest.map(|digest| digest.time), Some(TIME));
        assert_eq!(verify(&package, Some(SECRET), 0, None).unwrap(), verified);
    }

    #[test]
    fn signing_replaces_an_existing_digest() {
        let stale = Notification { digest: Some(Sha256Digest { time: 5, hash: [9; 32] }), ..sample() };
        let package = stale.encode_signed(SECRET, TIME).unwrap();
        assert_eq!(verify(&package, Some(SECRET), TIME, Some(0)).unwrap().digest.map(|d| d.time), Some(TIME));
    }

    #[test]
    fn verification_errors_are_distinct() {
        let package = sample().encode_signed(SECRET, TIME).unwrap();
        assert_eq!(verify(&package, None, TIME, None), Err(VerifyError::MissingSecret));
        assert_eq!(verify(&package, Some(b""), TIME, None), Err(VerifyError::MissingSecret));
        assert_eq!(verify(&package, Some(b"other"), TIME, None), Err(VerifyError::WrongDigest));
        let unsigned = sample().encode().unwrap();
        assert_eq!(verify(&unsigned, Some(SECRET), TIME, None), Err(VerifyError::NoDigest));
        assert_eq!(
            verify(&[0x30, 0x00], Some(SECRET), TIME, None),
            Err(VerifyError::Malformed(DecodeError::UnsupportedVersion(3)))
        );
    }

    #[test]
    fn any_changed_byte_breaks_the_digest() {
        let package = sample().encode_signed(SECRET, TIME).unwrap();
        for index in 0..package.len() {
            let mut tampered = package.clone();
            tampered[index] ^= 0x01;
            assert!(verify(&tampered, Some(SECRET), TIME, None).is_err(), "byte {index} not covered");
        }
        // The RESERVED bits do not change the decoded value but are covered by the digest.
        let mut reserved = package.clone();
        reserved[1] |= 0x01;
        assert_eq!(Notification::decode(&reserved).unwrap(), Notification::decode(&package).unwrap());
        assert_eq!(verify(&reserved, Some(SECRET), TIME, None), Err(VerifyError::WrongDigest));
    }

    #[test]
    fn age_limits() {
        let package = sample().encode_signed(SECRET, TIME).unwrap();
        assert!(verify(&package, Some(SECRET), TIME + 300, Some(300)).is_ok());
        assert_eq!(
            verify(&package, Some(SECRET), TIME + 301, Some(300)),
            Err(VerifyError::TooOld { signed_at: TIME, now: TIME + 301, max_age: 300 })
        );
        assert!(verify(&package, Some(SECRET), TIME - 300, Some(300)).is_ok());
        assert_eq!(
            verify(&package, Some(SECRET), TIME - 301, Some(300)),
            Err(VerifyError::FromTheFuture { signed_at: TIME, now: TIME - 301, max_age: 300 })
        );
        // Without a policy, any time passes.
        assert!(verify(&package, Some(SECRET), u32::MAX, None).is_ok());
    }

    #[test]
    fn empty_secret_cannot_sign() {
        assert_eq!(sample().encode_signed(b"", TIME), Err(EncodeError::EmptySecret));
    }

    #[test]
    fn encode_errors_pass_through_signing() {
        let too_far = Notification { unknown_options: vec![UnknownOption { number: 40, value: vec![] }], ..sample() };
        assert_eq!(
            too_far.encode_signed(SECRET, TIME),
            Err(EncodeError::OptionGapTooLarge { previous: 5, number: 40 })
        );
    }

    #[test]
    fn constant_time_compare_detects_any_difference() {
        let base = [0x5a; 32];
        assert!(constant_time_equal(&base, &base));
        for index in 0..32 {
            let mut other = base;
            other[index] ^= 0x80;
            assert!(!constant_time_equal(&base, &other));
        }
    }
}
