//! Packages #1, #2 and #3: emit/parse round trips, the lenient wire forms, limits, and no panic on any input.

#[path = "packages_strategies.rs"]
mod strategies;

use omadm_proto::command::{Command, CommandError};
use omadm_proto::package::{Alert, InitiationPackage, PackageError, ParseLimits, RequestPackage, ResponsePackage};
use proptest::prelude::*;
use serde_json::{Value, json};
use strategies::{command_status, initiation_package, json_value, request_package, response_package};

fn limits() -> ParseLimits {
    ParseLimits::default()
}

proptest! {
    #[test]
    fn package1_round_trips(package in initiation_package()) {
        let bytes = package.to_json_bytes().unwrap();
        prop_assert_eq!(InitiationPackage::parse(&bytes, &limits()), Ok(package));
    }

    #[test]
    fn package2_round_trips_strictly_and_leniently(package in request_package()) {
        let bytes = package.to_json_bytes().unwrap();
        let lenient = RequestPackage::parse_lenient(&bytes, &limits()).unwrap();
        prop_assert_eq!(&lenient.alert_statuses, &package.alert_statuses);
        let lenient_commands: Vec<Result<Command, CommandError>> = package.commands.iter().cloned().map(Ok).collect();
        prop_assert_eq!(&lenient.commands, &lenient_commands);
        prop_assert_eq!(lenient.ends_session(), package.ends_session());
        prop_assert_eq!(RequestPackage::parse(&bytes, &limits()), Ok(package));
    }

    #[test]
    fn package2_emits_cmd_and_alert_status_only_when_there_are_some(package in request_package()) {
        let value: Value = serde_json::from_slice(&package.to_json_bytes().unwrap()).unwrap();
        let object = value.as_object().unwrap();
        prop_assert!(object.contains_key("CMD"));
        prop_assert!(!object.contains_key("Cmd"));
        prop_assert_eq!(object.contains_key("AlertStatus"), !package.alert_statuses.is_empty());
    }

    #[test]
    fn package3_round_trips(package in response_package()) {
        let bytes = package.to_json_bytes().unwrap();
        prop_assert_eq!(ResponsePackage::parse(&bytes, &limits()), Ok(package));
    }

    /// A bare number, a digit string and a one-element array all read as the same status.
    #[test]
    fn package3_status_forms_are_equivalent(status in command_status()) {
        let code = status.code.as_u16();
        let canonical = ResponsePackage::new(vec![omadm_proto::package::CommandStatus::new(status.code)]);
        for form in [json!(code), json!(code.to_string()), json!([code]), json!([code.to_string()])] {
            prop_assert_eq!(ResponsePackage::from_json(&json!({"Status": [form]})), Ok(canonical.clone()));
        }
    }

    #[test]
    fn parsers_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = InitiationPackage::parse(&bytes, &limits());
        let _ = RequestPackage::parse(&bytes, &limits());
        let _ = RequestPackage::parse_lenient(&bytes, &limits());
        let _ = ResponsePackage::parse(&bytes, &limits());
        let _ = Alert::parse_message(&bytes, &limits());
    }

    /// Structured garbage reaches deeper than random bytes: well-formed JSON of every shape under the known keys.
    #[test]
    fn parsers_never_panic_on_arbitrary_json(
        mos in json_value(), alert in json_value(), cmd in json_value(), status in json_value(), extra in json_value()
    ) {
        let package = json!({"MOS": mos, "Alert": alert, "CMD": cmd, "AlertStatus": extra, "Status": status});
        let _ = InitiationPackage::from_json(&package);
        let _ = RequestPackage::from_json(&package);
        let _ = ResponsePackage::from_json(&package);
        let _ = Alert::from_json(&alert);
        let package = json!({"Cmd": [cmd, ["GET", extra]], "Status": [status, [200, alert]]});
        let _ = RequestPackage::from_json(&package);
        let _ = ResponsePackage::from_json(&package);
    }

    #[test]
    fn errors_of_any_input_carry_a_package_status(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        if let Err(error) = RequestPackage::parse(&bytes, &limits()) {
            prop_assert!([400u16, 501].contains(&u16::from(error.status_code())), "{error}");
        }
    }
}

#[test]
fn unknown_top_level_fields_are_ignored() {
    let package = ResponsePackage::from_json(&json!({"Status": [200], "Vendor": {"x": [1, 2]}, "Alert": null}));
    assert_eq!(package.map(|package| package.statuses.len()), Ok(1));
    let package = RequestPackage::from_json(&json!({"CMD": [["END"]], "SessionHint": "x"}));
    assert_eq!(package.map(|package| package.commands), Ok(vec![Command::End]));
    let package = InitiationPackage::from_json(&json!({"DevDetail": {}}));
    assert_eq!(package, Ok(InitiationPackage::default()));
}

#[test]
fn deep_nesting_and_large_bodies_are_refused_before_parsing() {
    let deep = format!("{{\"Status\": [200, [200, {}{}]]}}", "[".repeat(40), "]".repeat(40));
    assert_eq!(ResponsePackage::parse(deep.as_bytes(), &limits()), Err(PackageError::TooDeep { limit: 32 }));
    let shallow_enough = ParseLimits { max_depth: 64, ..limits() };
    assert!(ResponsePackage::parse(deep.as_bytes(), &shallow_enough).is_ok());
    // Deeper than serde_json's own recursion limit (128): still a typed error, never a stack overflow.
    let very_deep = format!("{{\"CMD\": {}{}}}", "[".repeat(100_000), "]".repeat(100_000));
    let unlimited = ParseLimits { max_depth: usize::MAX, max_bytes: usize::MAX };
    assert!(matches!(RequestPackage::parse(very_deep.as_bytes(), &unlimited), Err(PackageError::InvalidJson(_))));

    let body = br#"{"Status": [200, 200, 200]}"#;
    let tight = ParseLimits { max_bytes: 10, ..limits() };
    assert_eq!(ResponsePackage::parse(body, &tight), Err(PackageError::TooLarge { size: body.len(), limit: 10 }));
}

#[test]
fn serde_reads_packages_through_the_same_checks() {
    let package: Result<RequestPackage, _> =
        serde_json::from_str(r#"{"Cmd": [["GET", "urn:oma:mo:oma-dm-devinfo:1.2//DevID"]]}"#);
    assert_eq!(package.map(|package| package.commands.len()).ok(), Some(1));
    let refused: Result<RequestPackage, _> = serde_json::from_str(r#"{"CMD": [["GET"]]}"#);
    let message = refused.err().map(|error| error.to_string()).unwrap_or_default();
    assert!(message.contains("GET takes one ClientURI, found 0"), "{message}");
    let package: Result<ResponsePackage, _> = serde_json::from_str(r#"{"Status": ["404"]}"#);
    assert_eq!(package.map(|package| package.statuses.len()).ok(), Some(1));
    let package: Result<InitiationPackage, _> = serde_json::from_str(r#"{"MOS": [{"MOID": "urn:a:1", "MIIDS": "x"}]}"#);
    assert_eq!(package.ok().and_then(|package| package.supported_objects).map(|objects| objects.len()), Some(1));
}
