//! Fuzz target: Package#1/#2/#3 and Generic Alert parsing never panics, and whatever parses is emitted as a package that parses back to it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use omadm_proto::package::{Alert, InitiationPackage, ParseLimits, RequestPackage, ResponsePackage};

/// Emission may be longer than the input (e.g. `1E2` is printed `100.0`), so re-parsing gets room.
const REPARSE: ParseLimits = ParseLimits { max_bytes: usize::MAX, max_depth: ParseLimits::DEFAULT.max_depth };

fuzz_target!(|data: &[u8]| {
    let limits = ParseLimits::default();

    // Package#2 holds only strings and integers: the round trip is exact.
    if let Ok(package) = RequestPackage::parse(data, &limits) {
        let bytes = package.to_json_bytes().expect("a parsed Package#2 must encode");
        let reparsed = RequestPackage::parse(&bytes, &REPARSE).expect("an emitted Package#2 must parse");
        assert_eq!(reparsed, package);
    }
    if let Ok(lenient) = RequestPackage::parse_lenient(data, &limits) {
        let strict = RequestPackage::parse(data, &limits);
        let all_good = lenient.commands.iter().all(Result::is_ok);
        assert_eq!(strict.is_ok(), all_good, "strict and lenient parses disagree");
    }

    // Packages #1 and #3 may carry floats (alert Data, status extras), which
    // serde_json reads with best-effort precision: a float can move by one ULP
    // on the first trip, so the check is that a second trip changes nothing.
    if let Ok(package) = InitiationPackage::parse(data, &limits) {
        let once = InitiationPackage::parse(&package.to_json_bytes().expect("encode"), &REPARSE).expect("reparse");
        let twice = InitiationPackage::parse(&once.to_json_bytes().expect("encode"), &REPARSE).expect("reparse");
        assert_eq!(twice, once);
        assert_eq!(once.supported_objects, package.supported_objects);
    }
    if let Ok(package) = ResponsePackage::parse(data, &limits) {
        let once = ResponsePackage::parse(&package.to_json_bytes().expect("encode"), &REPARSE).expect("reparse");
        let twice = ResponsePackage::parse(&once.to_json_bytes().expect("encode"), &REPARSE).expect("reparse");
        assert_eq!(twice, once);
        let codes = |package: &ResponsePackage| package.statuses.iter().map(|status| status.code).collect::<Vec<_>>();
        assert_eq!(codes(&once), codes(&package));
    }
    if let Ok(alert) = Alert::parse_message(data, &limits) {
        let once = Alert::parse_message(&alert.to_message_bytes().expect("encode"), &REPARSE).expect("reparse");
        assert_eq!(once.items.len(), alert.items.len());
    }
});
