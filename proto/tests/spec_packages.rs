//! The package examples of the specification (7.2, 7.3, 7.4, 7.6, Appendix E), as fixed in tests/fixtures/spec, parse to what they say.

use omadm_proto::command::Command;
use omadm_proto::multipart::{GetResultPart, MultipartError, MultipartLimits, decode_response, encode_response};
use omadm_proto::package::media::{DMMO_JSON, RESPONSE_JSON};
use omadm_proto::package::{
    Alert, AlertItem, CommandStatus, InitiationPackage, Mark, ParseLimits, RequestPackage, ResponsePackage,
};
use omadm_proto::status::StatusCode;
use serde_json::{Value, json};

const PACKAGE1: &[u8] = include_bytes!("fixtures/spec/package1_7_2.json");
const PACKAGE2: &[u8] = include_bytes!("fixtures/spec/package2_7_3.json");
const PACKAGE3: &[u8] = include_bytes!("fixtures/spec/package3_7_4.json");
const GENERIC_ALERT: &[u8] = include_bytes!("fixtures/spec/generic_alert_7_6.json");
const PACKAGE2_APPENDIX_E: &[u8] = include_bytes!("fixtures/spec/package2_appendix_e.json");
const MULTIPART_APPENDIX_E: &[u8] = include_bytes!("fixtures/spec/package3_appendix_e_multipart.txt");
const MULTIPART_CONTENT_TYPE: &str = "multipart/form-data; boundary=simple_boundary";

const SCOMO_SOURCE: &str = "urn:oma:mo:oma-scomo:1.0/SCOMO1/Download/Package1/Operations/DownloadInstall";

fn limits() -> ParseLimits {
    ParseLimits::default()
}

/// The alert item every example of the draft carries, source URI trimmed.
fn spec_alert() -> Alert {
    Alert::new(vec![AlertItem {
        alert_type: "urn:oma:at:scomo:1.0:OperationComplete".to_owned(),
        mime_type: Some("text/plain".to_owned()),
        source_uri: Some(SCOMO_SOURCE.to_owned()),
        mark: Some(Mark::Warning),
        data: Some(json!({})),
    }])
}

fn commands(values: &[Value]) -> Result<Vec<Command>, omadm_proto::command::CommandError> {
    values.iter().map(Command::from_json).collect()
}

#[test]
fn package1_of_7_2_lists_two_mos_and_one_alert() {
    let package = InitiationPackage::parse(PACKAGE1, &limits()).unwrap();
    let objects = package.supported_objects.as_deref().unwrap();
    let summary: Vec<(Option<&str>, &str, &[String])> =
        objects.iter().map(|object| (object.ddf.as_deref(), object.moid.as_str(), object.miids.as_slice())).collect();
    let miid1 = ["miid1".to_owned()];
    assert_eq!(
        summary,
        [
            (Some("http://www.vendor.com/DDF/devinfo1.0.ddf"), "urn:oma:mo:oma-dm-devinfo:1.0", &miid1[..]),
            (
                Some("http://www.vendor.com/DDF/oma-sessioninfomo1.0.ddf"),
                "urn:oma:mo:oma-sessioninfomo:1.0",
                &miid1[..]
            ),
        ]
    );
    assert_eq!(package.alert, Some(spec_alert()));
    let reparsed = InitiationPackage::parse(&package.to_json_bytes().unwrap(), &limits());
    assert_eq!(reparsed, Ok(package));
}

#[test]
fn package2_of_7_3_holds_hpost_hget_get() {
    let package = RequestPackage::parse(PACKAGE2, &limits()).unwrap();
    let names: Vec<&str> = package.commands.iter().map(Command::name).collect();
    assert_eq!(names, ["HPOST", "HGET", "GET"]);
    let Some(Command::Hpost(hpost)) = package.commands.first() else { panic!("HPOST first") };
    assert_eq!(hpost.server_uri().as_str(), "https://DMcontent.DMserver.operator.com/[DevID]");
    assert_eq!(hpost.client_uris().len(), 2);
    let Some(Command::Hget(hget)) = package.commands.get(1) else { panic!("HGET second") };
    assert_eq!(hget.client_uri(), None);
    assert!(package.alert_statuses.is_empty());
    let emitted: Value = serde_json::from_slice(&package.to_json_bytes().unwrap()).unwrap();
    let original: Value = serde_json::from_slice(PACKAGE2).unwrap();
    assert_eq!(emitted, original, "the example is already in canonical form");
}

#[test]
fn package3_of_7_4_answers_the_package2_of_7_3() {
    let package = ResponsePackage::parse(PACKAGE3, &limits()).unwrap();
    assert_eq!(
        package.statuses,
        [
            CommandStatus::new(StatusCode::OK),
            CommandStatus::with_location(StatusCode::OK, "urn:oma:mo:oma-mo:1.0/miid1/"),
            CommandStatus::new(StatusCode::OK),
        ]
    );
    assert_eq!(package.alert, Some(spec_alert()));
    // 7.4 sends the GET's 200 as plain JSON, which Appendix E forbids: the
    // check against the Package#2 catches the missing GET data.
    let request = RequestPackage::parse(PACKAGE2, &limits()).unwrap();
    let response = decode_response(RESPONSE_JSON, PACKAGE3, &MultipartLimits::default()).unwrap();
    assert_eq!(
        response.check_against_request(&request.commands),
        Err(MultipartError::MissingGetResult { position: 3 })
    );
}

#[test]
fn generic_alert_of_7_6_parses_as_a_message() {
    let alert = Alert::parse_message(GENERIC_ALERT, &limits()).unwrap();
    assert_eq!(alert, spec_alert());
    assert_eq!(Alert::parse_message(&alert.to_message_bytes().unwrap(), &limits()), Ok(alert));
}

#[test]
fn multipart_package3_of_appendix_e_parses_with_its_three_get_results() {
    let request = RequestPackage::parse(PACKAGE2_APPENDIX_E, &limits()).unwrap();
    let names: Vec<&str> = request.commands.iter().map(Command::name).collect();
    assert_eq!(names, ["GET", "GET", "GET", "HPUT", "GET", "HGET"]);

    let response = decode_response(MULTIPART_CONTENT_TYPE, MULTIPART_APPENDIX_E, &MultipartLimits::default()).unwrap();
    let codes: Vec<u16> = response.package.statuses.iter().map(|status| status.code.as_u16()).collect();
    assert_eq!(codes, [200, 200, 200, 200, 404, 200]);
    let positions: Vec<(usize, &str)> =
        response.parts.iter().map(|part| (part.position, part.content_type.as_str())).collect();
    assert_eq!(positions, [(1, "text/plain"), (2, DMMO_JSON), (3, DMMO_JSON)]);
    assert_eq!(response.part_for(1).map(|part| part.body.as_ref()), Some(&b"IMEI:493005100592800"[..]));
    let mo: Value = serde_json::from_slice(&response.part_for(3).unwrap().body).unwrap();
    assert_eq!(mo["MOData"]["SessionInfoMO"], json!({"CBT": 1, "ROAMING": 0}));
    assert_eq!(response.check_against_request(&request.commands), Ok(()));

    // Built again, the body parses to the same statuses and parts.
    let rebuilt = encode_response(&response.package, &response.parts, "simple_boundary").unwrap();
    assert_eq!(rebuilt.content_type, MULTIPART_CONTENT_TYPE);
    let reparsed = decode_response(&rebuilt.content_type, &rebuilt.body, &MultipartLimits::default());
    assert_eq!(reparsed, Ok(response));
}

#[test]
fn a_part_naming_a_command_that_is_not_a_get_is_refused() {
    let request = RequestPackage::parse(PACKAGE2_APPENDIX_E, &limits()).unwrap();
    let response = decode_response(MULTIPART_CONTENT_TYPE, MULTIPART_APPENDIX_E, &MultipartLimits::default()).unwrap();
    let mut with_hput_part = response.clone();
    with_hput_part.parts.push(GetResultPart::new(4, "text/plain", "not a GET result"));
    let error = with_hput_part.check_against_request(&request.commands);
    assert_eq!(error, Err(MultipartError::PartNotForGet { position: 4, command: "HPUT" }));
    assert_eq!(error.map_err(|error| u16::from(error.status_code())), Err(400));
    // The server's own list of commands for the check, written as the spec writes them.
    let spec_commands = commands(&[
        json!(["GET", "urn:oma:mo:oma-dm-devinfo:1.2//DevID"]),
        json!(["GET", "urn:oma:mo:oma-dm-devinfo:1.2//DevID"]),
        json!(["GET", "urn:oma:mo:oma-sessioninfomo:1.0//"]),
        json!(["HPUT", "http://www.data.com/MOData", "urn:oma:mo:oma-moid:1.0//"]),
        json!(["GET", "urn:oma:mo:invalid-moid:1.0//"]),
        json!(["HGET", "http://www.dms1.com/", "urn:oma:mo:oma-dm-dmacc:2.0/dms1/AuthNoti/AuthSecret"]),
    ]);
    assert_eq!(spec_commands, Ok(request.commands));
}
