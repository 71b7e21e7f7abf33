//! Fuzz target: ClientURI parsing never panics, and whatever parses prints back to text that parses to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use omadm_proto::uri::ClientUri;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(uri) = ClientUri::parse(text) {
        let printed = uri.to_string();
        let reparsed = ClientUri::parse(&printed).expect("printed ClientURI must parse");
        assert_eq!(reparsed, uri, "round trip changed {text:?} -> {printed:?}");
    }
});
