//! Fuzz target: ClientURI and ServerURI parsing never panic; a parsed ClientURI prints back to text that parses
//! to the same value; a ServerURI's substitution is a parameter-free ServerURI that matches its template.
#![no_main]

use libfuzzer_sys::fuzz_target;
use omadm_proto::uri::{ClientUri, ServerUri, ServerUriParams};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(uri) = ClientUri::parse(text) {
        let printed = uri.to_string();
        let reparsed = ClientUri::parse(&printed).expect("printed ClientURI must parse");
        assert_eq!(reparsed, uri, "round trip changed {text:?} -> {printed:?}");
    }

    // The same bytes as a ServerURI template, and as a URI a device sent for a fixed template.
    if let Ok(template) = ServerUri::parse(text) {
        let device = ServerUriParams {
            dev_id: Some("IMEI:493005100592800".into()),
            mcc: Some("240".into()),
            sp_name: Some("Tele Två/x?y".into()),
            ..ServerUriParams::default()
        };
        let substituted = template.substitute(&device);
        let reparsed = ServerUri::parse(&substituted).expect("a substituted ServerURI must parse");
        assert!(reparsed.parameters().is_empty(), "{text:?} -> {substituted:?} still has parameters");
        // Many adjacent parameters may exhaust the matching budget; a few never should.
        if text.matches('[').count() <= 4 {
            assert!(template.match_substituted(&substituted).is_some(), "{text:?} does not match {substituted:?}");
        }
    }
    if let Ok(fixed) = ServerUri::parse("https://dm.example.com/cfg/[MCC]-[MNC]/[DevID]?sp=[SPName]") {
        let _ = fixed.match_substituted(text);
    }
});
