//! Appendix E multipart Package#3: build/parse round trips, and no panic on any body or Content-Type.

#[path = "packages_strategies.rs"]
mod strategies;

use omadm_proto::multipart::{
    MultipartError, MultipartLimits, MultipartResponse, decode_response, derive_boundary, encode_response,
};
use omadm_proto::package::media::RESPONSE_JSON;
use proptest::prelude::*;
use strategies::{response_package, response_with_parts};

fn limits() -> MultipartLimits {
    MultipartLimits::default()
}

/// Boundaries RFC 2046 allows, including ones that need quoting in the header.
fn boundary() -> impl Strategy<Value = String> {
    "[A-Za-z0-9'()+_,./:=?-][A-Za-z0-9'()+_,./:=? -]{0,60}[A-Za-z0-9'()+_,./:=?-]"
}

proptest! {
    #[test]
    fn build_then_parse_gives_the_same_package_and_parts((package, parts) in response_with_parts()) {
        let encoded = encode_response(&package, &parts, &derive_boundary(&parts)).unwrap();
        prop_assert!(encoded.content_type.starts_with("multipart/form-data; boundary=omadm-"));
        let decoded = decode_response(&encoded.content_type, &encoded.body, &limits());
        prop_assert_eq!(decoded, Ok(MultipartResponse { package, parts }));
    }

    #[test]
    fn any_valid_boundary_round_trips((package, parts) in response_with_parts(), boundary in boundary()) {
        // A random boundary may occur in random content: then building must refuse it.
        match encode_response(&package, &parts, &boundary) {
            Ok(encoded) => {
                let decoded = decode_response(&encoded.content_type, &encoded.body, &limits());
                prop_assert_eq!(decoded, Ok(MultipartResponse { package, parts }));
            }
            Err(error) => prop_assert_eq!(error, omadm_proto::multipart::MultipartError::BoundaryInContent),
        }
    }

    #[test]
    fn without_parts_the_body_is_the_plain_package(package in response_package()) {
        let encoded = encode_response(&package, &[], "unused").unwrap();
        prop_assert_eq!(encoded.content_type.as_str(), RESPONSE_JSON);
        let decoded = decode_response(&encoded.content_type, &encoded.body, &limits());
        prop_assert_eq!(decoded, Ok(MultipartResponse { package, parts: Vec::new() }));
    }

    #[test]
    fn arbitrary_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..600), boundary in "[ -~]{0,12}") {
        let _ = decode_response("multipart/form-data; boundary=simple_boundary", &body, &limits());
        let _ = decode_response(&format!("multipart/form-data; boundary=\"{boundary}\""), &body, &limits());
        let _ = decode_response(&format!("multipart/form-data; boundary={boundary}"), &body, &limits());
    }

    /// Damaged versions of a valid body reach deeper into the parser than random bytes do.
    #[test]
    fn damaged_bodies_never_panic(
        (package, parts) in response_with_parts(),
        cut in any::<prop::sample::Index>(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
    ) {
        // A short boundary reaches more parser paths; the rare content that contains it cannot be encoded with it.
        let encoded = match encode_response(&package, &parts, "B") {
            Err(MultipartError::BoundaryInContent) => return Ok(()),
            other => other.unwrap(),
        };
        let truncated = encoded.body.get(..cut.index(encoded.body.len() + 1)).unwrap_or_default();
        let _ = decode_response(&encoded.content_type, truncated, &limits());
        let mut flipped = encoded.body.clone();
        for (at, byte) in flips {
            let index = at.index(flipped.len());
            if let Some(slot) = flipped.get_mut(index) {
                *slot = byte;
            }
        }
        let _ = decode_response(&encoded.content_type, &flipped, &limits());
    }

    #[test]
    fn arbitrary_content_types_never_panic(content_type in ".{0,80}", body in proptest::collection::vec(any::<u8>(), 0..64)) {
        if let Err(error) = decode_response(&content_type, &body, &limits()) {
            prop_assert!([400u16, 415].contains(&u16::from(error.status_code())), "{}", error);
        }
    }
}
