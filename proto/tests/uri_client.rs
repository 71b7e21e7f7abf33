//! ClientURI (6.1): property tests over generated valid addresses and arbitrary text, plus grammar edge cases.

use omadm_proto::uri::{ClientUri, InstanceSelector, NodeSelector, NodeValue, Query, UriError};
use proptest::prelude::*;

fn real_name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._~-]{1,12}"
}

fn moid() -> impl Strategy<Value = String> {
    ("[a-z][a-z0-9-]{0,15}", 1..4_u8, 0..10_u8)
        .prop_map(|(name, major, minor)| format!("urn:oma:mo:{name}:{major}.{minor}"))
}

/// A segment before x-name letters are assigned, so that letters can be made unique.
#[derive(Debug, Clone)]
enum Slot {
    Name(String),
    XName,
    Wildcard,
}

fn slot() -> impl Strategy<Value = Slot> {
    prop_oneof![4 => real_name().prop_map(Slot::Name), 1 => Just(Slot::XName), 1 => Just(Slot::Wildcard)]
}

#[derive(Debug, Clone)]
enum InstanceSlot {
    Miid(String),
    XName,
    Sole,
    Wildcard,
}

fn instance_slot() -> impl Strategy<Value = InstanceSlot> {
    prop_oneof![
        real_name().prop_map(InstanceSlot::Miid),
        Just(InstanceSlot::XName),
        Just(InstanceSlot::Sole),
        Just(InstanceSlot::Wildcard),
    ]
}

/// Any text at all for nv and cv values: they are percent-encoded when printed.
fn any_value() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), "[ -~]{0,16}", "[a-zA-Z0-9:?&=%+/#]{0,12}"]
}

fn unknown_field() -> impl Strategy<Value = (String, Option<String>)> {
    (
        "[a-z][a-z0-9_-]{0,8}".prop_filter("not a known field", |name| !matches!(name.as_str(), "lv" | "nv" | "cv")),
        proptest::option::of("([A-Za-z0-9._~!$'()*+,;=:@/?-]|%[0-9A-F]{2}){0,12}"),
    )
}

prop_compose! {
    fn client_uri()(
        moid in moid(),
        instance in instance_slot(),
        path in proptest::collection::vec(slot(), 0..6),
        letters in Just(('a'..='z').chain('A'..='Z').collect::<Vec<char>>()).prop_shuffle(),
        node_value_paths in proptest::collection::vec(proptest::collection::vec(real_name(), 0..3), 18),
        node_value_values in proptest::collection::vec(any_value(), 18),
        extra_per_x_name in proptest::collection::vec(0..3_usize, 6),
        level in proptest::option::of(1..u32::MAX),
        cache_validator in proptest::option::of(any_value()),
        unknown in proptest::collection::vec(unknown_field(), 0..3),
    ) -> ClientUri {
        let mut letters = letters.into_iter();
        let mut used = Vec::new();
        let mut next_letter = || {
            let letter = letters.next().unwrap_or('\0'); // 52 letters, at most 6 used; '\0' would fail parsing loudly
            used.push(letter);
            letter
        };
        let instance = match instance {
            InstanceSlot::Miid(miid) => InstanceSelector::Miid(miid),
            InstanceSlot::XName => InstanceSelector::XName(next_letter()),
            InstanceSlot::Sole => InstanceSelector::Sole,
            InstanceSlot::Wildcard => InstanceSelector::Wildcard,
        };
        let path = path
            .into_iter()
            .map(|slot| match slot {
                Slot::Name(name) => NodeSelector::Name(name),
                Slot::XName => NodeSelector::XName(next_letter()),
                Slot::Wildcard => NodeSelector::Wildcard,
            })
            .collect();
        // At most 6 x-names (instance + 5 path segments) with at most 3 nv each: 18 paths and values.
        let mut node_values = Vec::new();
        let mut paths = node_value_paths.into_iter();
        let mut values = node_value_values.into_iter();
        for (letter, extra) in used.iter().zip(extra_per_x_name) {
            for _ in 0..=extra {
                let (Some(path), Some(value)) = (paths.next(), values.next()) else { break };
                node_values.push(NodeValue { x_name: *letter, path, value });
            }
        }
        let query = Query { level, node_values, cache_validator, unknown };
        ClientUri { moid, instance, path, query }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn printed_uri_parses_to_the_same_value(uri in client_uri()) {
        let printed = uri.to_string();
        let reparsed = ClientUri::parse(&printed);
        prop_assert_eq!(reparsed.as_ref(), Ok(&uri), "printed as {}", printed);
    }

    #[test]
    fn printed_uri_holds_only_rfc3986_characters_even_for_raw_unknown_fields(
        mut uri in client_uri(),
        raw_unknown in proptest::collection::vec(
            (
                any::<String>().prop_filter("a field name", |name| !matches!(name.as_str(), "" | "lv" | "nv" | "cv")),
                proptest::option::of(any::<String>()),
            ),
            0..3,
        ),
    ) {
        uri.query.unknown = raw_unknown;
        let printed = uri.to_string();
        let allowed = |c: char| c.is_ascii_alphanumeric() || "-._~:/?@!$&'()*+,;=%".contains(c);
        prop_assert!(printed.chars().all(allowed), "{}", printed);
        let reparsed = ClientUri::parse(&printed);
        prop_assert!(reparsed.is_ok(), "{} gave {:?}", printed, reparsed);
        prop_assert_eq!(reparsed.map(|uri| uri.to_string()), Ok(printed));
    }

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        let _ = ClientUri::parse(&text);
    }

    #[test]
    fn uri_like_text_parses_idempotently(text in "(urn:oma:mo:m:1.0|urn:a:1|x)(/[a-z(*)?:=&%2F0-9]{0,6}){0,4}(\\?[a-z(*)/?:=&%0-9]{0,16})?") {
        if let Ok(uri) = ClientUri::parse(&text) {
            let printed = uri.to_string();
            prop_assert_eq!(ClientUri::parse(&printed), Ok(uri), "{} printed as {}", text, printed);
        }
    }
}

#[test]
fn node_values_are_percent_decoded_and_split_at_the_first_colon() {
    let uri = ClientUri::parse("urn:oma:mo:moid:1.0/(x)/?nv=(x)/ID:Temp%20C%3A1:2%2B3+4").unwrap();
    assert_eq!(
        uri.query.node_values,
        vec![NodeValue { x_name: 'x', path: vec!["ID".into()], value: "Temp C:1:2+3+4".into() }]
    );
    // "+" is a literal plus in a URI query, never a space.
    assert_eq!(uri.to_string(), "urn:oma:mo:moid:1.0/(x)/?nv=(x)/ID:Temp%20C:1:2%2B3%2B4");
}

#[test]
fn several_node_values_for_one_x_name_are_all_kept_in_order() {
    let uri =
        ClientUri::parse("urn:oma:mo:moid:1.0/(x)/Data/(y)/Value?nv=(x)/ID:GPS&nv=(y)/Date:12.2&nv=(x)/Setting:0xA1")
            .unwrap();
    let for_x: Vec<&str> = uri.node_values_for('x').map(|nv| nv.value.as_str()).collect();
    assert_eq!(for_x, ["GPS", "0xA1"]);
    assert_eq!(uri.node_values_for('y').count(), 1);
    assert_eq!(uri.x_names(), ['x', 'y']);
}

#[test]
fn node_value_may_name_the_x_named_node_itself() {
    let uri = ClientUri::parse("urn:oma:mo:moid:1.0/left/Data/(x)?nv=(x):12.1").unwrap();
    assert_eq!(uri.query.node_values, vec![NodeValue { x_name: 'x', path: vec![], value: "12.1".into() }]);
    assert_eq!(uri.to_string(), "urn:oma:mo:moid:1.0/left/Data/(x)?nv=(x):12.1");
}

#[test]
fn node_value_paths_reach_several_levels_down() {
    let uri = ClientUri::parse("urn:oma:mo:moid:1.0/(x)/?nv=(x)/Data/1/Date:12.1").unwrap();
    let node_value = uri.query.node_values.first().unwrap();
    assert_eq!(node_value.path, ["Data", "1", "Date"]);
}

#[test]
fn unknown_fields_are_kept_in_order_and_printed_back() {
    let text = "urn:oma:mo:moid:1.0/left/?x-vendor=a%20b&flag&lv=2&empty=&x-other=1=2";
    let uri = ClientUri::parse(text).unwrap();
    assert_eq!(
        uri.query.unknown,
        vec![
            ("x-vendor".to_owned(), Some("a%20b".to_owned())),
            ("flag".to_owned(), None),
            ("empty".to_owned(), Some(String::new())),
            ("x-other".to_owned(), Some("1=2".to_owned())),
        ]
    );
    assert_eq!(uri.query.level, Some(2));
    assert_eq!(uri.to_string(), "urn:oma:mo:moid:1.0/left/?lv=2&x-vendor=a%20b&flag&empty=&x-other=1=2");
}

#[test]
fn unknown_fields_with_characters_a_uri_cannot_hold_are_encoded() {
    let uri = ClientUri::parse("urn:oma:mo:moid:1.0/left/?x=<b>&y=\"é\"&z=100%&w=%41").unwrap();
    assert_eq!(
        uri.query.unknown,
        vec![
            ("x".to_owned(), Some("%3Cb%3E".to_owned())),
            ("y".to_owned(), Some("%22%C3%A9%22".to_owned())),
            ("z".to_owned(), Some("100%25".to_owned())),
            ("w".to_owned(), Some("%41".to_owned())),
        ]
    );
    assert_eq!(uri.to_string(), "urn:oma:mo:moid:1.0/left/?x=%3Cb%3E&y=%22%C3%A9%22&z=100%25&w=%41");
}

#[test]
fn empty_query_and_empty_fields_are_ignored() {
    let bare = ClientUri::parse("urn:oma:mo:moid:1.0/left/").unwrap();
    for text in ["urn:oma:mo:moid:1.0/left/?", "urn:oma:mo:moid:1.0/left/?&", "urn:oma:mo:moid:1.0/left/?&&"] {
        let uri = ClientUri::parse(text).unwrap();
        assert_eq!(uri, bare, "{text}");
        assert!(uri.query.is_empty());
        assert_eq!(uri.to_string(), "urn:oma:mo:moid:1.0/left/");
    }
    let with_gaps = ClientUri::parse("urn:oma:mo:moid:1.0/left/?&lv=1&&cv=7&").unwrap();
    assert_eq!((with_gaps.query.level, with_gaps.query.cache_validator.as_deref()), (Some(1), Some("7")));
}

#[test]
fn question_marks_inside_the_query_belong_to_values() {
    let uri = ClientUri::parse("urn:oma:mo:moid:1.0/(x)/ID?nv=(x)/ID:what?&cv=a?b&q=c?d").unwrap();
    assert_eq!(uri.query.node_values.first().map(|nv| nv.value.as_str()), Some("what?"));
    assert_eq!(uri.query.cache_validator.as_deref(), Some("a?b"));
    assert_eq!(uri.query.unknown, vec![("q".to_owned(), Some("c?d".to_owned()))]);
    assert_eq!(uri.path, vec![NodeSelector::Name("ID".into())]);
    assert_eq!(ClientUri::parse(&uri.to_string()), Ok(uri));
}

#[test]
fn non_ascii_node_values_round_trip_through_percent_encoding() {
    let uri = ClientUri::parse("urn:oma:mo:moid:1.0/(x)/?nv=(x)/Name:Zürich").unwrap();
    assert_eq!(uri.query.node_values.first().map(|nv| nv.value.as_str()), Some("Zürich"));
    assert_eq!(uri.to_string(), "urn:oma:mo:moid:1.0/(x)/?nv=(x)/Name:Z%C3%BCrich");
}

#[test]
fn grammar_violations_are_rejected() {
    let cases: &[(&str, UriError)] = &[
        ("urn:a:1/(x)/?nv=(x)/ID%41:1", UriError::InvalidNodeValue("(x)/ID%41:1".into())),
        ("urn:a:1/(x)/?nv=x/ID:1", UriError::InvalidNodeValue("x/ID:1".into())),
        ("urn:a:1/(x)/?nv=(x)/*:1", UriError::InvalidNodeValue("(x)/*:1".into())),
        ("urn:a:1/(x)/?nv=(x)//ID:1", UriError::InvalidNodeValue("(x)//ID:1".into())),
        ("urn:a:1/(x)/?nv=(1)/ID:1", UriError::InvalidNodeValue("(1)/ID:1".into())),
        ("urn:a:1/(x)/?nv", UriError::MissingFieldValue("nv".into())),
        ("urn:a:1/left/?lv=", UriError::InvalidLevel(String::new())),
        ("urn:a:1/left/?lv=99999999999", UriError::InvalidLevel("99999999999".into())),
        ("urn:a:1/left/?cv=1&cv=2", UriError::DuplicateField("cv")),
        ("urn:a:1/left/#frag", UriError::InvalidCharacter('#')),
        ("urn:a%zz:1/left/", UriError::InvalidMoid("urn:a%zz:1".into())),
        ("urn:a:1%4/left/", UriError::InvalidMoid("urn:a:1%4".into())),
        ("urn:a:1/left/na%41me", UriError::InvalidNodeName("na%41me".into())),
        ("urn:a:1/(é)/", UriError::InvalidInstance("(é)".into())),
        ("urn:a:1/left/(y)?nv=(x)/ID:1", UriError::XNameWithoutNodeValue('y')),
    ];
    for (text, expected) in cases {
        assert_eq!(ClientUri::parse(text).as_ref(), Err(expected), "{text}");
        assert_eq!(expected.status_code(), 400);
    }
}

#[test]
fn spec_examples_of_6_1_3_parse_and_print_back() {
    for text in [
        "urn:oma:mo:moid:1.0/left/",
        "urn:oma:mo:moid:1.0//",
        "urn:oma:mo:moid:1.0/(x)/?nv=(x)/ID:Temperature",
        "urn:oma:mo:moid:1.0/(x)/Data/1/Value?nv=(x)/ID:GPS",
        "urn:oma:mo:moid:1.0/right/Data/(x)/Value?nv=(x)/Date:12.1",
        "urn:oma:mo:moid:1.0/(x)/Data/(y)/Value?nv=(x)/ID:GPS&nv=(y)/Date:12.2",
        "urn:oma:mo:moid:1.0/*/Setting",
        "urn:oma:mo:moid:1.0/(x)/Data/*/Value?nv=(x)/ID:GPS",
        "urn:oma:mo:moid:1.0/(x)/Data/*/Value?nv=(x)/ID:GPS&nv=(x)/Setting:0xB2",
        "urn:oma:mo:moid:1.0/*/Data/*/Value",
    ] {
        let uri = ClientUri::parse(text).unwrap();
        assert_eq!(uri.to_string(), text);
    }
    assert!(ClientUri::parse("urn:oma:mo:moid:1.0/*/Data/*/Value").unwrap().has_wildcard());
    assert_eq!(ClientUri::parse("urn:oma:mo:x%2Dy:1.0//").unwrap().moid, "urn:oma:mo:x%2Dy:1.0");
    assert!(!ClientUri::parse("urn:oma:mo:moid:1.0/(x)/Data/1/Value?nv=(x)/ID:GPS").unwrap().has_wildcard());
}
