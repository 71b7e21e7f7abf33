//! Fuzz target: multipart Package#3 parsing never panics, with a fixed and with a fuzzed boundary, and what parses can be built again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use omadm_proto::multipart::{MultipartLimits, MultipartResponse, decode_response, derive_boundary, encode_response};

fuzz_target!(|data: &[u8]| {
    let limits = MultipartLimits::default();
    if let Ok(response) = decode_response("multipart/form-data; boundary=simple_boundary", data, &limits) {
        check_rebuild(&response, &limits);
    }
    // Fuzzed boundary: the first byte gives its length, the next bytes are the boundary, the rest is the body.
    if let Some((&length, rest)) = data.split_first() {
        let split = usize::from(length % 72).min(rest.len());
        let (boundary, body) = rest.split_at(split);
        if let Ok(boundary) = std::str::from_utf8(boundary) {
            for content_type in [
                format!("multipart/form-data; boundary={boundary}"),
                format!("multipart/form-data; boundary=\"{boundary}\""),
            ] {
                if let Ok(response) = decode_response(&content_type, body, &limits) {
                    check_rebuild(&response, &limits);
                }
            }
        }
    }
});

/// A parsed body, built again, parses to the same statuses and parts.
fn check_rebuild(response: &MultipartResponse, limits: &MultipartLimits) {
    let Ok(encoded) = encode_response(&response.package, &response.parts, &derive_boundary(&response.parts)) else {
        // Only possible when a part holds the derived boundary, which it cannot by chance.
        panic!("a parsed multipart response must build again");
    };
    let again = decode_response(&encoded.content_type, &encoded.body, limits).expect("a built body must parse");
    assert_eq!(again.parts, response.parts);
    let codes = |response: &MultipartResponse| response.package.statuses.iter().map(|s| s.code).collect::<Vec<_>>();
    assert_eq!(codes(&again), codes(response));
}
