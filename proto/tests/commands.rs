//! The ten DM commands: wire round trips, the wildcard policy per command, and answers for any malformed command.

#[path = "packages_strategies.rs"]
mod strategies;

use omadm_proto::command::{Command, CommandError, CommandName};
use proptest::prelude::*;
use serde_json::{Value, json};
use strategies::{client_uri, command, json_value, server_uri};

proptest! {
    #[test]
    fn commands_round_trip_through_their_json_array(command in command()) {
        let wire = command.to_json();
        prop_assert_eq!(wire.get(0).and_then(Value::as_str), Some(command.name()));
        prop_assert_eq!(Command::from_json(&wire), Ok(command.clone()));
        let text = serde_json::to_string(&command).unwrap();
        prop_assert_eq!(serde_json::from_str::<Command>(&text).ok(), Some(command));
    }

    #[test]
    fn names_are_accepted_in_any_case(command in command(), lower_mask in any::<u16>()) {
        let mut wire = command.to_json();
        let name: String = command
            .name()
            .chars()
            .enumerate()
            .map(|(index, c)| if lower_mask >> (index % 16) & 1 == 1 { c.to_ascii_lowercase() } else { c })
            .collect();
        if let Some(first) = wire.as_array_mut().and_then(|elements| elements.first_mut()) {
            *first = Value::String(name);
        }
        prop_assert_eq!(Command::from_json(&wire), Ok(command));
    }

    /// Whatever arrives, the answer is a command or an error with status 400 or 501.
    #[test]
    fn any_json_parses_or_gets_400_or_501(name in "[A-Za-z]{0,8}", parameters in proptest::collection::vec(json_value(), 0..4)) {
        let known = CommandName::from_wire(&name).is_some();
        let wire = Value::Array(std::iter::once(Value::String(name)).chain(parameters).collect());
        match Command::from_json(&wire) {
            Ok(command) => prop_assert!(known, "{} parsed as {}", wire, command.name()),
            Err(error) => {
                let expected = if known { 400 } else { 501 };
                prop_assert_eq!(error.status_code(), expected, "{}", error);
            }
        }
    }

    #[test]
    fn any_value_never_panics(value in json_value()) {
        let _ = Command::from_json(&value);
    }

    /// GET, HPUT and HPOST accept wildcards; HGET, DELETE and EXEC refuse them with 400.
    #[test]
    fn wildcard_policy(client in client_uri(), server in server_uri()) {
        let client_text = client.to_string();
        let server_text = server.to_string();
        let accepting = [
            json!(["GET", client_text]),
            json!(["HPUT", server_text, client_text]),
            json!(["HPOST", server_text, client_text]),
        ];
        for wire in accepting {
            prop_assert!(Command::from_json(&wire).is_ok(), "{}", wire);
        }
        let single_target = [
            json!(["HGET", server_text, client_text]),
            json!(["DELETE", client_text]),
            json!(["EXEC", client_text]),
        ];
        for wire in single_target {
            match Command::from_json(&wire) {
                Ok(_) => prop_assert!(!client.has_wildcard(), "{}", wire),
                Err(error) => {
                    prop_assert!(client.has_wildcard(), "{}: {}", wire, error);
                    let is_wildcard_error = matches!(error, CommandError::WildcardNotAllowed { .. });
                    prop_assert!(is_wildcard_error, "{}", error);
                    prop_assert_eq!(error.status_code(), 400);
                }
            }
        }
    }
}

#[test]
fn parameter_counts_follow_5_4() {
    let server = "https://dms.example.com/x";
    let client = "urn:oma:mo:oma-dm-devinfo:1.2//DevID";
    let moid = "urn:oma:mo:oma-dm-devinfo:1.2";
    // (wire, accepted)
    let cases = [
        (json!(["HGET", server]), true),
        (json!(["HGET", server, client]), true),
        (json!(["HGET", server, client, client]), false),
        (json!(["HPUT", server]), true),
        (json!(["HPUT", server, client, client, client]), true),
        (json!(["HPOST"]), false),
        (json!(["DELETE", client]), true),
        (json!(["DELETE"]), false),
        (json!(["EXEC", client]), true),
        (json!(["EXEC", client, server]), true),
        (json!(["EXEC", client, server, server]), false),
        (json!(["GET", client]), true),
        (json!(["GET", client, client]), false),
        (json!(["SHOW", server]), true),
        (json!(["SHOW"]), false),
        (json!(["CONT", server]), true),
        (json!(["CONT", server, server]), false),
        (json!(["END"]), true),
        (json!(["END", server]), false),
        (json!(["DEFAULT", server, moid]), true),
        (json!(["DEFAULT", server]), false),
        (json!(["DEFAULT", server, moid, moid]), false),
    ];
    for (wire, accepted) in cases {
        let result = Command::from_json(&wire);
        assert_eq!(result.is_ok(), accepted, "{wire}: {result:?}");
        if let Err(error) = result {
            assert!(matches!(error, CommandError::WrongParameterCount { .. }), "{wire}: {error}");
            assert_eq!(error.status_code(), 400);
        }
    }
}

#[test]
fn error_messages_say_what_is_wrong() {
    let message = |wire: Value| Command::from_json(&wire).err().map(|error| error.to_string()).unwrap_or_default();
    assert_eq!(
        message(json!(["REBOOT"])),
        "unknown command \"REBOOT\": expected HGET, HPUT, HPOST, DELETE, EXEC, GET, SHOW, CONT, END or DEFAULT"
    );
    assert_eq!(message(json!(["DELETE"])), "DELETE takes one ClientURI, found 0 parameter(s)");
    assert_eq!(message(json!(["SHOW", 1])), "SHOW parameter 1 must be a string, found a number");
    assert_eq!(
        message(json!(["DELETE", "urn:oma:mo:moid:1.0/*/"])),
        "DELETE does not accept a wildcard ClientURI (urn:oma:mo:moid:1.0/*/): it must name exactly one node"
    );
    assert!(
        message(json!(["DEFAULT", "https://a/", "devinfo"]))
            .starts_with("DEFAULT parameter 2: invalid MOID \"devinfo\"")
    );
}
