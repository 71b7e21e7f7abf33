//! `omadm notification` end to end: the built binary, its output and its failures, and a cross-check
//! against an independent Python encoder written from the spec text (tests/independent_encoder.py).

// Helpers outside #[test] functions unwrap too: in this file a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::ffi::OsStr;
use std::fmt::Debug;
use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::{Value, json};

const SECRET: &str = "s3cr3t";
const TIME: u32 = 1_700_000_000;

/// Arguments as `&str` or `String`, printable in assertion messages.
trait Argument: AsRef<OsStr> + Debug {}
impl<T: AsRef<OsStr> + Debug> Argument for T {}

fn omadm(arguments: &[impl Argument]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_omadm")).args(arguments).output().unwrap()
}

/// Runs omadm, asserts success and an empty stderr, returns stdout trimmed.
fn success(arguments: &[impl Argument]) -> String {
    let output = omadm(arguments);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "omadm {arguments:?} failed: {stderr}");
    assert!(stderr.is_empty(), "unexpected stderr: {stderr}");
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

fn success_json(arguments: &[impl Argument]) -> Value {
    serde_json::from_str(&success(arguments)).unwrap()
}

/// Runs omadm, asserts failure with one line on stderr and nothing on stdout; returns that line.
fn failure(arguments: &[impl Argument]) -> String {
    let output = omadm(arguments);
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(!output.status.success(), "omadm {arguments:?} should fail");
    assert!(output.stdout.is_empty(), "stdout not empty: {}", String::from_utf8_lossy(&output.stdout));
    assert_eq!(stderr.lines().count(), 1, "stderr is not one line: {stderr:?}");
    assert!(stderr.starts_with("omadm: error: "), "{stderr}");
    stderr.trim().to_owned()
}

/// A signed notification carrying every option, from our encoder.
fn signed_hex() -> String {
    let time = TIME.to_string();
    success(&[
        "notification",
        "encode",
        "--server-id",
        "com.example.dm",
        "--con-type",
        "wireless,mobile,any",
        "--notification-id",
        "513",
        "--req-mos",
        "--option",
        "9:cafe",
        "--secret",
        SECRET,
        "--time",
        &time,
    ])
}

fn python(arguments: &[&str]) -> Output {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/independent_encoder.py");
    Command::new("python3").arg(script).args(arguments).output().unwrap()
}

#[test]
fn encode_prints_the_exact_package_in_lowercase_hex() {
    assert_eq!(success(&["notification", "encode", "--server-id", "srv", "--req-mos"]), "210010037372764000");
    assert_eq!(success(&["notification", "encode"]), "2000");
    assert_eq!(
        success(&["notification", "encode", "--notification-id", "65535", "--con-type", "wireline"]),
        "21002001031002ffff"
    );
}

#[test]
fn decode_prints_every_field() {
    let decoded = success_json(&["notification", "decode", &signed_hex(), "--secret", SECRET]);
    let hash = decoded["options"]["digest"]["hash"].as_str().unwrap().to_owned();
    assert_eq!(hash.len(), 64);
    assert_eq!(
        decoded,
        json!({
            "version": 2,
            "options": {
                "server_id": "com.example.dm",
                "preferred_con_types": ["wireless", "mobile", "any"],
                "notification_id": 513,
                "digest": {"time": TIME, "hash": hash},
                "req_mos": true,
                "unknown": [{"number": 9, "value": "cafe"}],
            },
            "digest_valid": true,
        })
    );
}

#[test]
fn digest_valid_is_null_without_a_secret_or_without_a_digest() {
    let signed = success_json(&["notification", "decode", &signed_hex()]);
    assert_eq!(signed["digest_valid"], Value::Null);
    assert_eq!(signed["options"]["digest"]["time"], json!(TIME));
    let unsigned = success_json(&["notification", "decode", "210010037372764000", "--secret", SECRET]);
    assert_eq!(unsigned["digest_valid"], Value::Null);
    assert_eq!(unsigned["options"]["digest"], Value::Null);
    assert_eq!(unsigned["options"]["server_id"], json!("srv"));
    assert_eq!(unsigned["options"]["preferred_con_types"], Value::Null);
    assert_eq!(unsigned["options"]["notification_id"], Value::Null);
}

#[test]
fn age_is_checked_against_now() {
    let package = signed_hex();
    let decode_at = |now: u32| {
        let now = now.to_string();
        ["notification", "decode", &package, "--secret", SECRET, "--max-age", "60", "--now", &now].map(str::to_owned)
    };
    let fresh = success_json(&decode_at(TIME + 60));
    assert_eq!(fresh["digest_valid"], json!(true));
    let still_fine_early = success_json(&decode_at(TIME - 60));
    assert_eq!(still_fine_early["digest_valid"], json!(true));
    let too_old = failure(&decode_at(TIME + 61));
    assert!(too_old.contains("too old"), "{too_old}");
    let future = failure(&decode_at(TIME - 61));
    assert!(future.contains("after now"), "{future}");
}

#[test]
fn hex_input_may_have_a_prefix_and_whitespace() {
    let decoded = success_json(&["notification", "decode", "0x21 00 10 03\n73 72 76 40 00"]);
    assert_eq!(decoded["options"]["server_id"], json!("srv"));
    assert_eq!(decoded["options"]["req_mos"], json!(true));
}

#[test]
fn wsp_and_base64_round_trip() {
    let pdu = success(&["notification", "encode", "--server-id", "srv", "--wsp", "--tid", "1"]);
    assert_eq!(pdu, "010603d8af8720801003737276");
    let decoded = success_json(&["notification", "decode", &pdu, "--wsp"]);
    assert_eq!(decoded["options"]["server_id"], json!("srv"));

    let base64 = success(&["notification", "encode", "--server-id", "srv", "--req-mos", "--base64"]);
    assert_eq!(base64, "IQAQA3NydkAA");
    let decoded = success_json(&["notification", "decode", &base64, "--base64"]);
    assert_eq!(decoded["options"]["req_mos"], json!(true));
    let decoded = success_json(&["notification", "decode", r#"{"SMS": "IQAQA3NydkAA"}"#, "--base64"]);
    assert_eq!(decoded["options"]["server_id"], json!("srv"));

    let both = success(&["notification", "encode", "--server-id", "srv", "--wsp", "--base64", "--secret", SECRET]);
    let decoded = success_json(&["notification", "decode", &both, "--wsp", "--base64", "--secret", SECRET]);
    assert_eq!(decoded["digest_valid"], json!(true));
}

#[test]
fn every_failure_is_one_line_on_stderr() {
    let package = signed_hex();
    // (arguments after "notification", words the one-line reason must contain)
    let cases: &[(&[&str], &[&str])] = &[
        (&["decode", &package, "--secret", "wrong"], &["notification rejected", "does not match"]),
        (&["decode", "3000"], &["malformed notification", "version is 3"]),
        (&["decode", "2080100573"], &["malformed notification", "claims 5 value byte(s)"]),
        (&["decode", "200000"], &["malformed notification", "follow the 0 option(s)"]),
        (&["decode", "20801001ff"], &["malformed notification", "UTF-8"]),
        (&["decode", "zz"], &["invalid hex input"]),
        (&["decode", "010603c4af872000", "--wsp"], &["invalid WAP Push PDU", "0x44"]),
        (&["decode", "I*Q", "--base64"], &["invalid base64 input"]),
        (&["decode", "2000", "--max-age", "5"], &["--max-age needs --secret"]),
        (&["decode"], &["required"]),
        (&["encode", "--con-type", "any,mobile"], &["invalid --con-type", "ANY_AVAILABLE"]),
        (&["encode", "--con-type", "mobile,mobile"], &["invalid --con-type", "more than once"]),
        (&["encode", "--con-type", "lte"], &["lte"]),
        (&["encode", "--option", "30:00"], &["cannot encode", "option 30"]),
        (&["encode", "--option", "3:0001"], &["cannot encode", "standard option"]),
        (&["encode", "--option", "9"], &["NUMBER:HEX"]),
        (&["encode", "--time", "5"], &["--time", "needs --secret"]),
        (&["encode", "--tid", "3"], &["needs --wsp"]),
        (&["encode", "--notification-id", "65536"], &["65536"]),
    ];
    for (arguments, expected_words) in cases {
        let reason = failure(&[&["notification"], *arguments].concat());
        for word in *expected_words {
            assert!(reason.contains(word), "{arguments:?}: {reason:?} lacks {word:?}");
        }
    }
}

/// The arguments both encoders share for the cross-check notification; the
/// connection-type flag differs (ours takes names, the script byte values).
fn cross_check_arguments<'a>(con_type_flag: &'a str, con_types: &'a str, time: &'a str) -> Vec<&'a str> {
    vec![
        "--server-id",
        "dm.example.org",
        con_type_flag,
        con_types,
        "--notification-id",
        "4660",
        "--req-mos",
        "--option",
        "12:0102ff",
        "--secret",
        SECRET,
        "--time",
        time,
    ]
}

#[test]
fn independent_encoder_output_decodes_and_verifies() {
    let time = TIME.to_string();
    let python_arguments = [vec!["encode"], cross_check_arguments("--con-types", "1,2,0", &time)].concat();
    let output = python(&python_arguments);
    assert!(output.status.success(), "python: {}", String::from_utf8_lossy(&output.stderr));
    let package = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    let now = (TIME + 5).to_string();
    let decoded =
        success_json(&["notification", "decode", &package, "--secret", SECRET, "--now", &now, "--max-age", "30"]);
    assert_eq!(decoded["version"], json!(2));
    assert_eq!(decoded["options"]["server_id"], json!("dm.example.org"));
    assert_eq!(decoded["options"]["preferred_con_types"], json!(["mobile", "wireless", "any"]));
    assert_eq!(decoded["options"]["notification_id"], json!(4660));
    assert_eq!(decoded["options"]["req_mos"], json!(true));
    assert_eq!(decoded["options"]["unknown"], json!([{"number": 12, "value": "0102ff"}]));
    assert_eq!(decoded["options"]["digest"]["time"], json!(TIME));
    assert_eq!(decoded["digest_valid"], json!(true));
    // The same notification from our encoder is byte for byte the same package.
    let our_arguments =
        [vec!["notification", "encode"], cross_check_arguments("--con-type", "mobile,wireless,any", &time)].concat();
    let ours = success(&our_arguments);
    assert_eq!(ours, package);
    // And the wrong secret makes our verifier refuse it.
    let refused = failure(&["notification", "decode", &package, "--secret", "other"]);
    assert!(refused.contains("does not match"), "{refused}");
}

#[test]
fn our_encoder_output_verifies_in_the_independent_script() {
    let package = signed_hex();
    let output = python(&["verify", &package, "--secret", SECRET]);
    assert!(output.status.success(), "python: {}", String::from_utf8_lossy(&output.stderr));
    let fields: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(fields["server_id"], json!("com.example.dm"));
    assert_eq!(fields["preferred_con_types"], json!(["wireless", "mobile", "any"]));
    assert_eq!(fields["notification_id"], json!(513));
    assert_eq!(fields["req_mos"], json!(true));
    assert_eq!(fields["unknown"], json!([{"number": 9, "value": "cafe"}]));
    assert_eq!(fields["digest"]["time"], json!(TIME));
    // The script is not a rubber stamp: a wrong secret or a changed byte fails it.
    let wrong_secret = python(&["verify", &package, "--secret", "other"]);
    assert!(!wrong_secret.status.success());
    let mut tampered = package.clone();
    tampered.replace_range(8..10, "78"); // "com" -> "xom" inside SERVER-ID
    assert_ne!(tampered, package);
    let tampered_output = python(&["verify", &tampered, "--secret", SECRET]);
    assert!(!tampered_output.status.success());
}
