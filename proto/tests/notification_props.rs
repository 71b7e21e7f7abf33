//! Property tests of Package#0: encode/decode, sign/verify, WAP Push and base64 round trips, and panic-free decoding.

use omadm_proto::notification::{
    self, ConnectionType, DecodeError, Notification, PreferredConnectionTypes, Sha256Digest, UnknownOption, VerifyError,
};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::subsequence;

/// A valid preference list: some of mobile/wireless/wireline in any order, optionally ANY_AVAILABLE last.
fn connection_types() -> impl Strategy<Value = PreferredConnectionTypes> {
    let specific = vec![ConnectionType::Mobile, ConnectionType::Wireless, ConnectionType::Wireline];
    // The only invalid draw is the empty list, which the filter drops.
    (subsequence(specific, 0..=3).prop_shuffle(), any::<bool>()).prop_filter_map(
        "at least one type",
        |(mut types, any_last)| {
            if any_last {
                types.push(ConnectionType::AnyAvailable);
            }
            PreferredConnectionTypes::new(types).ok()
        },
    )
}

/// Unknown options numbered from 6 up to 90: the first at most 15 and each next
/// 1-15 above the previous, so every gap fits the 4-bit delta whatever
/// standard options are present.
fn unknown_options() -> impl Strategy<Value = Vec<UnknownOption>> {
    (1u16..=10, vec((1u16..=15, vec(any::<u8>(), 0..64)), 0..6)).prop_map(|(first_delta, options)| {
        let mut number = 5;
        options
            .into_iter()
            .enumerate()
            .map(|(index, (delta, value))| {
                number += if index == 0 { first_delta } else { delta };
                UnknownOption { number, value }
            })
            .collect()
    })
}

fn digest() -> impl Strategy<Value = Sha256Digest> {
    (any::<u32>(), any::<[u8; 32]>()).prop_map(|(time, hash)| Sha256Digest { time, hash })
}

prop_compose! {
    fn notifications()(
        server_id in proptest::option::of(".{0,40}"),
        preferred_connection_types in proptest::option::of(connection_types()),
        notification_id in proptest::option::of(any::<u16>()),
        digest in proptest::option::of(digest()),
        request_mos in any::<bool>(),
        unknown_options in unknown_options(),
    ) -> Notification {
        Notification { server_id, preferred_connection_types, notification_id, digest, request_mos, unknown_options }
    }
}

proptest! {
    #[test]
    fn encode_then_decode_gives_the_same_notification(notification in notifications()) {
        let bytes = notification.encode().unwrap();
        let decoded = Notification::decode(&bytes).unwrap();
        prop_assert_eq!(&decoded, &notification);
        // And re-encoding is byte-identical: encoding is canonical.
        prop_assert_eq!(decoded.encode().unwrap(), bytes);
    }

    #[test]
    fn sign_then_verify_succeeds_and_a_wrong_secret_fails(
        notification in notifications(),
        secret in vec(any::<u8>(), 1..64),
        time in any::<u32>(),
        age in 0u32..1000,
    ) {
        let package = notification.encode_signed(&secret, time).unwrap();
        let now = time.saturating_add(age);
        let verified = notification::verify(&package, Some(&secret), now, Some(1000)).unwrap();
        prop_assert_eq!(verified.digest.map(|digest| digest.time), Some(time));
        let expected_without_digest = Notification { digest: None, ..notification };
        prop_assert_eq!(Notification { digest: None, ..verified }, expected_without_digest);
        let mut wrong_secret = secret.clone();
        wrong_secret.push(0);
        prop_assert_eq!(
            notification::verify(&package, Some(&wrong_secret), now, None),
            Err(VerifyError::WrongDigest)
        );
    }

    #[test]
    fn flipping_any_bit_of_a_signed_package_is_detected(
        notification in notifications(),
        position in any::<proptest::sample::Index>(),
        bit in 0u8..8,
    ) {
        let mut package = notification.encode_signed(b"secret", 1_700_000_000).unwrap();
        let index = position.index(package.len());
        package[index] ^= 1 << bit;
        prop_assert!(notification::verify(&package, Some(b"secret"), 1_700_000_000, None).is_err());
    }

    #[test]
    fn wsp_wrap_then_unwrap_gives_the_package(package in vec(any::<u8>(), 0..300), transaction_id in any::<u8>()) {
        let pdu = notification::wrap_push(&package, transaction_id);
        prop_assert_eq!(pdu.len(), package.len() + 6);
        prop_assert_eq!(notification::unwrap_push(&pdu).unwrap(), &package[..]);
    }

    #[test]
    fn base64_round_trips_bare_and_as_push_message(package in vec(any::<u8>(), 0..300)) {
        let text = notification::encode_base64(&package);
        prop_assert_eq!(notification::decode_base64(&text).unwrap(), package.clone());
        let message = notification::to_push_message(&package);
        prop_assert_eq!(notification::from_push_message(&message).unwrap(), package.clone());
        prop_assert_eq!(notification::from_push_text(&message.to_string()).unwrap(), package.clone());
        prop_assert_eq!(notification::from_push_text(&text).unwrap(), package);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..200)) {
        if let Ok(decoded) = Notification::decode(&bytes) {
            let reencoded = decoded.encode().unwrap();
            prop_assert_eq!(Notification::decode(&reencoded).unwrap(), decoded);
        }
        let _ = notification::verify(&bytes, Some(b"secret"), 0, Some(10));
        if let Ok(body) = notification::unwrap_push(&bytes) {
            prop_assert!(body.len() < bytes.len());
        }
    }

    #[test]
    fn arbitrary_options_after_a_valid_header_never_panic(
        count in 0u8..32,
        reserved in 0u8..128,
        options in vec(any::<u8>(), 0..120),
    ) {
        let mut bytes = vec![0x20 | (count >> 1), ((count & 1) << 7) | reserved];
        bytes.extend(options);
        match Notification::decode(&bytes) {
            Ok(decoded) => {
                let reencoded = decoded.encode().unwrap();
                prop_assert_eq!(Notification::decode(&reencoded).unwrap(), decoded);
            }
            Err(DecodeError::UnsupportedVersion(version)) => prop_assert!(false, "version {} from a version-2 header", version),
            Err(_) => {}
        }
    }
}
