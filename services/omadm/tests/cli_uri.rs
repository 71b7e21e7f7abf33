//! `omadm uri parse|resolve` run as a process, against the docs/protocol-decisions.md tree of the 6.1.3 examples.

// Test helpers outside #[test] functions may unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::path::PathBuf;
use std::process::Command;

use serde_json::{Value, json};

fn notes_tree() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto/tests/fixtures/spec/addressing_tree.json")
}

struct Run {
    success: bool,
    stdout: String,
    stderr: String,
}

fn omadm(args: &[&str]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_omadm")).args(args).output().unwrap();
    Run {
        success: output.status.success(),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

fn resolve_ok(uri: &str) -> Value {
    resolve_ok_with(&[], uri)
}

fn resolve_ok_with(flags: &[&str], uri: &str) -> Value {
    let tree = notes_tree();
    let mut args = vec!["uri", "resolve", "--tree", tree.to_str().unwrap()];
    args.extend_from_slice(flags);
    args.push(uri);
    let run = omadm(&args);
    assert!(run.success, "{uri}: {}", run.stderr);
    serde_json::from_str(&run.stdout).unwrap()
}

/// (moid, miid, path, value) of each match, the fields every caller relies on.
fn matches(output: &Value) -> Vec<(String, String, String, Value)> {
    output
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            (
                item["moid"].as_str().unwrap().to_owned(),
                item["miid"].as_str().unwrap().to_owned(),
                item["path"].as_str().unwrap().to_owned(),
                item["value"].clone(),
            )
        })
        .collect()
}

fn expect_one_line_failure(run: &Run, starts_with: &str) {
    assert!(!run.success, "expected failure, got {}", run.stdout);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(run.stderr.starts_with(starts_with), "{}", run.stderr);
}

fn resolve_fails(tree: &str, uri: &str, reason: &str) {
    let run = omadm(&["uri", "resolve", "--tree", tree, uri]);
    expect_one_line_failure(&run, "omadm: error: ");
    assert!(run.stderr.contains(reason), "{uri}: {}", run.stderr);
}

fn temporary_file(name: &str, content: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("omadm-cli-uri-{}-{name}", std::process::id()));
    std::fs::write(&path, content).unwrap();
    path
}

#[test]
fn parse_prints_every_component_and_the_canonical_form() {
    let run = omadm(&[
        "uri",
        "parse",
        "urn:oma:mo:moid:1.0/(x)/Data/*/Value?lv=2&nv=(x)/ID:GPS&nv=(x)/Setting:0xA1&cv=abc&x-vendor=1&flag",
    ]);
    assert!(run.success, "{}", run.stderr);
    let parsed: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(
        parsed,
        json!({
            "moid": "urn:oma:mo:moid:1.0",
            "instance": {"kind": "x-name", "value": "x"},
            "path": [{"kind": "name", "value": "Data"}, {"kind": "wildcard"}, {"kind": "name", "value": "Value"}],
            "query": {
                "lv": 2,
                "nv": [
                    {"x-name": "x", "path": ["ID"], "value": "GPS"},
                    {"x-name": "x", "path": ["Setting"], "value": "0xA1"}
                ],
                "cv": "abc",
                "unknown": [{"name": "x-vendor", "value": "1"}, {"name": "flag", "value": null}]
            },
            "canonical": "urn:oma:mo:moid:1.0/(x)/Data/*/Value?lv=2&nv=(x)/ID:GPS&nv=(x)/Setting:0xA1&cv=abc&x-vendor=1&flag"
        })
    );
}

#[test]
fn parse_shows_sole_and_miid_instances_and_lenient_input_canonically() {
    let run = omadm(&["uri", "parse", "urn:oma:mo:oma-dm-devinfo:1.2//DevID"]);
    let parsed: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(parsed["instance"], json!({"kind": "sole"}));
    assert_eq!(parsed["query"], json!({"lv": null, "nv": [], "cv": null, "unknown": []}));
    let run = omadm(&["uri", "parse", "urn:oma:mo:moid:1.0/left"]);
    let parsed: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(parsed["instance"], json!({"kind": "miid", "value": "left"}));
    assert_eq!(parsed["path"], json!([]));
    assert_eq!(parsed["canonical"], "urn:oma:mo:moid:1.0/left/");
}

#[test]
fn parse_rejects_a_bad_uri_in_one_line() {
    let run = omadm(&["uri", "parse", "urn:oma:mo:moid:1.0/(x)/"]);
    expect_one_line_failure(&run, "omadm: error: invalid ClientURI \"urn:oma:mo:moid:1.0/(x)/\"");
    assert!(run.stderr.contains("x-name (x) has no nv field"), "{}", run.stderr);
}

#[test]
fn resolve_instance_root_honours_lv() {
    let output = resolve_ok("urn:oma:mo:moid:1.0/left/?lv=1");
    assert_eq!(
        matches(&output),
        [(
            "urn:oma:mo:moid:1.0".to_owned(),
            "left".to_owned(),
            String::new(),
            json!({"ID": "GPS", "Setting": "0xA1", "Data": {}})
        )]
    );
    let full = resolve_ok("urn:oma:mo:moid:1.0/right/Data");
    assert_eq!(matches(&full)[0].3, json!({"1": {"Date": "12.1", "Value": 21}, "2": {"Date": "12.3", "Value": 22}}));
}

#[test]
fn resolve_x_names_and_wildcards() {
    let two_x = resolve_ok("urn:oma:mo:moid:1.0/(x)/Data/(y)/Value?nv=(x)/ID:GPS&nv=(y)/Date:12.2");
    assert_eq!(
        matches(&two_x),
        [("urn:oma:mo:moid:1.0".to_owned(), "left".to_owned(), "Data/2/Value".to_owned(), json!(12))]
    );
    let settings = resolve_ok("urn:oma:mo:moid:1.0/*/Setting");
    let found: Vec<_> = matches(&settings).into_iter().map(|(_, miid, path, value)| (miid, path, value)).collect();
    assert_eq!(
        found,
        [
            ("left".to_owned(), "Setting".to_owned(), json!("0xA1")),
            ("right".to_owned(), "Setting".to_owned(), json!("0xB2"))
        ]
    );
    let values = resolve_ok("urn:oma:mo:moid:1.0/*/Data/*/Value");
    let found: Vec<_> =
        matches(&values).into_iter().map(|(_, miid, path, value)| format!("{miid}:{path}={value}")).collect();
    assert_eq!(
        found,
        ["left:Data/1/Value=11", "left:Data/2/Value=12", "right:Data/1/Value=21", "right:Data/2/Value=22"]
    );
}

#[test]
fn resolve_answers_304_for_a_current_cache_validator() {
    // Without --cache, each match has exactly the four documented keys and cv= is ignored.
    let plain = resolve_ok("urn:oma:mo:moid:1.0/left/ID?cv=whatever");
    let keys: Vec<&str> = plain[0].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["miid", "moid", "path", "value"]);

    let output = resolve_ok_with(&["--cache"], "urn:oma:mo:moid:1.0/left/ID");
    let cv = output[0]["cv"].as_str().unwrap().to_owned();
    assert_eq!(cv.len(), 22);
    assert_eq!(resolve_ok_with(&["--cache"], &format!("urn:oma:mo:moid:1.0/left/ID?cv={cv}")), json!({"status": 304}));
    // Without --cache the same URI still returns the data.
    assert_eq!(matches(&resolve_ok(&format!("urn:oma:mo:moid:1.0/left/ID?cv={cv}")))[0].3, json!("GPS"));
    // The validator is per instance: right's data is still sent.
    let other = resolve_ok_with(&["--cache"], &format!("urn:oma:mo:moid:1.0/right/ID?cv={cv}"));
    assert_eq!(matches(&other)[0].3, json!("Temperature"));
}

#[test]
fn resolve_failures_exit_non_zero_with_a_reason() {
    let tree = notes_tree();
    let tree = tree.to_str().unwrap();
    let cases = [
        ("urn:oma:mo:other:1.0/left/", "no MO instance of urn:oma:mo:other:1.0 in the tree (status 404 Not Found)"),
        ("urn:oma:mo:moid:1.0/middle/", "no MO instance \"middle\" of urn:oma:mo:moid:1.0 (status 404 Not Found)"),
        ("urn:oma:mo:moid:1.0//", "urn:oma:mo:moid:1.0 has 2 instances, so an empty mo-inst does not name one"),
        (
            "urn:oma:mo:moid:1.0/(x)/Data/*/Value?nv=(x)/ID:GPS&nv=(x)/Setting:0xB2",
            "no instance of urn:oma:mo:moid:1.0 satisfies every nv field of (x) (status 404 Not Found)",
        ),
        (
            "urn:oma:mo:moid:1.0/(x)/?nv=(x)/Data/1/Date:12.1",
            "2 instances of urn:oma:mo:moid:1.0 satisfy every nv field of (x)",
        ),
        ("urn:oma:mo:moid:1.0/left/Data/3", "node urn:oma:mo:moid:1.0/left/Data/3 not found (status 404 Not Found)"),
        (
            "urn:oma:mo:moid:1.0/right/Data/(y)?nv=(y)/Date:12.2",
            "no child of urn:oma:mo:moid:1.0/right/Data satisfies every nv field of (y) (status 404 Not Found)",
        ),
        ("urn:oma:mo:moid:1.0/left/ID/*", "wildcard below urn:oma:mo:moid:1.0/left/ID matches nothing"),
        ("not a uri", "invalid ClientURI"),
    ];
    for (uri, reason) in cases {
        resolve_fails(tree, uri, reason);
    }
}

#[test]
fn resolve_reports_an_ambiguous_x_name_node() {
    let tree = temporary_file(
        "twins.json",
        r#"[{"MOID": "urn:a:1", "MIID": "m", "MOData": {"List": {"a": {"Kind": "k"}, "b": {"Kind": "k"}}}}]"#,
    );
    resolve_fails(
        tree.to_str().unwrap(),
        "urn:a:1/m/List/(y)?nv=(y)/Kind:k",
        "2 children of urn:a:1/m/List satisfy every nv field of (y); it must name exactly one (status 400 Bad Request)",
    );
    std::fs::remove_file(tree).unwrap();
}

#[test]
fn bad_tree_files_exit_non_zero_with_a_reason() {
    let missing = std::env::temp_dir().join("omadm-cli-uri-no-such-file.json");
    resolve_fails(missing.to_str().unwrap(), "urn:a:1/m/", "cannot read tree file");

    let cases = [
        ("not-json.json", "{", "invalid tree file"),
        ("not-a-list.json", "42", "a tree must be a JSON array of dmmo+json documents, found a JSON number"),
        (
            "duplicate.json",
            r#"[{"MOID": "urn:a:1", "MIID": "m", "MOData": {}}, {"MOID": "urn:a:1", "MIID": "m", "MOData": {}}]"#,
            "document 1: MO instance \"m\" of urn:a:1 already exists",
        ),
        ("no-modata.json", r#"[{"MOID": "urn:a:1", "MIID": "m"}]"#, "document 0: document has no MOData"),
        (
            "array-leaf.json",
            r#"[{"MOID": "urn:a:1", "MIID": "m", "MOData": {"A": [1]}}]"#,
            "a JSON array cannot be a leaf value",
        ),
    ];
    for (name, content, reason) in cases {
        let path = temporary_file(name, content);
        resolve_fails(path.to_str().unwrap(), "urn:a:1/m/", reason);
        std::fs::remove_file(path).unwrap();
    }
}
