//! ServerURI (6.2): property tests of substitution and of recovering values on the server side.

use omadm_proto::uri::{ServerUri, ServerUriParameter, ServerUriParams};
use proptest::prelude::*;

fn parameter() -> impl Strategy<Value = ServerUriParameter> {
    proptest::sample::select(ServerUriParameter::ALL.to_vec())
}

/// Literal path text that may need RFC 2396 encoding but never forms a bracket group.
fn literal() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._~:@!$&'()*+,;=%{}|^`<>\"é-]{1,8}"
}

/// A template whose parameters are each alone in their own path segment, so the
/// values can always be recovered without ambiguity.
fn separated_template() -> impl Strategy<Value = String> {
    (
        prop_oneof![Just("https"), Just("http"), Just("HTTPS")],
        "[a-z][a-z0-9-]{0,10}(\\.[a-z]{2,5}){1,2}",
        proptest::option::of(1..65535_u16),
        proptest::collection::vec(prop_oneof![literal().prop_map(Err), parameter().prop_map(Ok)], 0..6),
        proptest::option::of(("[a-z]{1,5}", parameter())),
    )
        .prop_map(|(scheme, host, port, segments, query)| {
            let mut template = format!("{scheme}://{host}");
            if let Some(port) = port {
                template.push_str(&format!(":{port}"));
            }
            for segment in segments {
                match segment {
                    Ok(parameter) => template.push_str(&format!("/[{}]", parameter.name())),
                    Err(literal) => template.push_str(&format!("/{}", literal.replace('%', "%25"))),
                }
            }
            if let Some((name, parameter)) = query {
                template.push_str(&format!("?{name}=[{}]", parameter.name()));
            }
            template
        })
}

fn value() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(prop_oneof![
        "[0-9]{2,3}",
        "IMEI:[0-9]{15}",
        any::<String>().prop_filter("not empty, not the unknown marker", |value| !value.is_empty() && value != "-1"),
    ])
}

prop_compose! {
    fn params()(dev_id in value(), mnc in value(), mcc in value(), cmnc in value(), cmcc in value(), sp_name in value()) -> ServerUriParams {
        ServerUriParams { dev_id, mnc, mcc, cmnc, cmcc, sp_name }
    }
}

fn tokens(alphabet: &'static [&'static str], count: std::ops::Range<usize>) -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::sample::select(alphabet), count).prop_map(|tokens| tokens.concat())
}

/// What the server can learn: the values of the parameters the template contains.
fn expected_recovery(uri: &ServerUri, params: &ServerUriParams) -> ServerUriParams {
    let mut expected = ServerUriParams::default();
    for parameter in uri.parameters() {
        expected.set(parameter, params.get(parameter).map(str::to_owned));
    }
    expected
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn substituted_values_are_recovered_from_absolute_and_origin_form(template in separated_template(), params in params()) {
        let uri = ServerUri::parse(&template).unwrap();
        let substituted = uri.substitute(&params);
        let expected = expected_recovery(&uri, &params);
        prop_assert_eq!(uri.match_substituted(&substituted), Some(expected.clone()), "{} -> {}", template, substituted);
        let path_start = substituted.find("://").map(|scheme_end| scheme_end + 3).and_then(|authority| {
            substituted.get(authority..).map(|rest| authority + rest.find(['/', '?']).unwrap_or(rest.len()))
        });
        let origin_form = match substituted.get(path_start.unwrap()..).unwrap() {
            "" => "/".to_owned(),
            rest if rest.starts_with('?') => format!("/{rest}"),
            rest => rest.to_owned(),
        };
        prop_assert_eq!(uri.match_substituted(&origin_form), Some(expected), "{}", origin_form);
    }

    #[test]
    fn substituted_uri_is_a_uri_without_parameters(template in separated_template(), params in params()) {
        let substituted = ServerUri::parse(&template).unwrap().substitute(&params);
        let allowed = |c: char| c.is_ascii_alphanumeric() || "-_.!~*'();/?:@&=+$,%#".contains(c);
        prop_assert!(substituted.chars().all(allowed), "{}", substituted);
        let reparsed = ServerUri::parse(&substituted);
        prop_assert!(reparsed.is_ok(), "{} gave {:?}", substituted, reparsed);
        prop_assert!(reparsed.unwrap().parameters().is_empty());
    }

    #[test]
    fn substitution_is_stable_once_encoded(template in separated_template(), params in params()) {
        let once = ServerUri::parse(&template).unwrap().substitute(&params);
        let twice = ServerUri::parse(&once).unwrap().substitute(&ServerUriParams::default());
        prop_assert_eq!(twice, once);
    }

    #[test]
    fn arbitrary_text_never_panics(template in any::<String>(), actual in any::<String>()) {
        if let Ok(uri) = ServerUri::parse(&template) {
            let _ = uri.substitute(&ServerUriParams::default());
            let _ = uri.match_substituted(&actual);
        }
    }

    #[test]
    fn token_soup_templates_match_their_own_substitution(
        host in tokens(&["h", "[SPName]", "[::1]", ":8", "@", "[", "]"], 1..4),
        rest in tokens(&["/", "[DevID]", "[mcc]", "[MNC]", "-1", "-", "a", "?", "#", "%", "%4", "%41", "&", "=", "[", "]", "é", "{"], 0..12),
        actual in tokens(&["/", "-1", "-", "a", "?", "#", "%", "%41", "%2F", "&", "="], 0..12),
    ) {
        let template = format!("https://{host}{rest}");
        if let Ok(uri) = ServerUri::parse(&template) {
            let substituted = uri.substitute(&ServerUriParams::default());
            prop_assert!(uri.match_substituted(&substituted).is_some(), "{} -> {}", template, substituted);
            let _ = uri.match_substituted(&actual);
        }
    }
}

#[test]
fn spec_just_in_time_configuration_examples() {
    let device = ServerUriParams {
        mcc: Some("240".into()),
        mnc: Some("07".into()),
        cmcc: Some("238".into()),
        cmnc: Some("20".into()),
        ..Default::default()
    };
    let mms = ServerUri::parse("https://prov.sonymobile.com/Settings/[MCC]/[MNC]/MMS").unwrap();
    assert_eq!(mms.substitute(&device), "https://prov.sonymobile.com/Settings/240/07/MMS");
    let rcs = ServerUri::parse("https://rcsprov.gsma.org/Settings/[CMCC]/[CMNC]/RCS").unwrap();
    assert_eq!(rcs.substitute(&device), "https://rcsprov.gsma.org/Settings/238/20/RCS");
    let recovered = rcs.match_substituted("/Settings/238/20/RCS").unwrap();
    assert_eq!((recovered.cmcc.as_deref(), recovered.cmnc.as_deref(), recovered.mcc), (Some("238"), Some("20"), None));
}

#[test]
fn bootstrap_request_carries_mcc_mnc_and_dev_id() {
    // Section 8.2: the bootstrap request carries MNC, MCC and DevID when available.
    let bootstrap = ServerUri::parse("https://bootstrap.example.com/bs?devid=[DevID]&mcc=[MCC]&mnc=[MNC]").unwrap();
    let device =
        ServerUriParams { dev_id: Some("UUID:0f8fad5b-d9cb-469f-a165-70867728950e".into()), ..Default::default() };
    let substituted = bootstrap.substitute(&device);
    assert_eq!(
        substituted,
        "https://bootstrap.example.com/bs?devid=UUID%3A0f8fad5b-d9cb-469f-a165-70867728950e&mcc=-1&mnc=-1"
    );
    assert_eq!(bootstrap.match_substituted(&substituted), Some(device));
}
