//! Fuzz target: Package#0 decoding, WAP Push unwrapping and digest verification never panic, and whatever
//! decodes re-encodes to bytes that decode to the same notification.
#![no_main]

use libfuzzer_sys::fuzz_target;
use omadm_proto::notification::{self, Notification};

fuzz_target!(|data: &[u8]| {
    if let Ok(decoded) = Notification::decode(data) {
        let reencoded = decoded.encode().expect("a decoded notification must encode");
        let again = Notification::decode(&reencoded).expect("a re-encoded notification must decode");
        assert_eq!(again, decoded, "round trip changed the notification");
    }
    if let Ok(body) = notification::unwrap_push(data) {
        assert!(body.len() + 3 <= data.len(), "the push body cannot include the PDU framing");
        let _ = Notification::decode(body);
    }
    let verified = notification::verify(data, Some(b"secret"), 1_700_000_000, Some(300));
    if let Ok(verified) = verified {
        assert!(verified.digest.is_some(), "verification succeeded without a digest");
    }
    let _ = notification::from_push_text(&String::from_utf8_lossy(data));
});
