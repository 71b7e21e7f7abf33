//! Criterion benches of the session packages: emitting a Package#2 (server hot path) and parsing a Package#3.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use omadm_proto::command::Command;
use omadm_proto::package::{ParseLimits, RequestPackage, ResponsePackage};
use serde_json::json;

/// A Package#2 as a server sends in a busy session: CONT naming the session,
/// reads of DevInfo and the 6.1.3 tree, a firmware download, an upload of two
/// MOs, a DELETE and an EXEC reporting back by Generic Alert.
fn realistic_package2() -> RequestPackage {
    let wire = [
        json!(["CONT", "https://dm.example.com/dm20/session/8f14e45fceea167a5a36dedd4bea2543"]),
        json!(["GET", "urn:oma:mo:oma-dm-devinfo:1.2//DevID"]),
        json!(["GET", "urn:oma:mo:oma-dm-devinfo:1.2//?lv=2"]),
        json!(["GET", "urn:oma:mo:moid:1.0/(x)/Data/(y)/Value?nv=(x)/ID:GPS&nv=(y)/Date:12.2"]),
        json!(["GET", "urn:oma:mo:moid:1.0/*/Data/*/Value"]),
        json!(["HGET", "https://dm.example.com/repository/[DevID]/fumo", "urn:oma:mo:oma-fumo:1.0/fw/PkgURL"]),
        json!([
            "HPOST",
            "https://dm.example.com/repository/[DevID]/inventory",
            "urn:oma:mo:oma-dm-devinfo:1.2//",
            "urn:oma:mo:oma-sessioninfomo:1.0//"
        ]),
        json!(["DELETE", "urn:oma:mo:oma-scomo:1.0/SCOMO1/Download/Package1"]),
        json!(["EXEC", "urn:oma:mo:oma-fumo:1.0/fw/DownloadAndUpdate", "https://dm.example.com/alerts/[DevID]"]),
        json!(["SHOW", "https://ui.example.com/consent?uiid=1234"]),
        json!(["DEFAULT", "https://dm.example.com/defaults/scomo", "urn:oma:mo:oma-scomo:1.0"]),
    ];
    let commands: Vec<Command> = wire.iter().filter_map(|value| Command::from_json(value).ok()).collect();
    assert_eq!(commands.len(), wire.len(), "every bench command must parse");
    let mut package = RequestPackage::new(commands);
    package.alert_statuses = vec![omadm_proto::status::StatusCode::OK];
    package
}

/// The answer to a 24-command Package#2, with locations, a 404, a 304 and a
/// Generic Alert, in the lenient mixed forms clients send.
fn realistic_package3() -> Vec<u8> {
    let mut statuses = vec![json!([200])];
    for index in 0..20 {
        statuses.push(match index % 5 {
            0 => json!(200),
            1 => json!("200"),
            2 => json!([201, format!("urn:oma:mo:oma-scomo:1.0/pkg{index}/")]),
            3 => json!([304]),
            _ => json!([404, "no such node"]),
        });
    }
    statuses.extend([json!([202]), json!([507]), json!([1204, "vendor detail"])]);
    let package = json!({
        "Status": statuses,
        "Alert": {"Items": [{
            "AlertType": "urn:oma:at:fumo:1.0:DownloadAndUpdate",
            "MIMEType": "application/json",
            "SourceURI": "urn:oma:mo:oma-fumo:1.0/fw/DownloadAndUpdate",
            "Mark": "critical",
            "Data": {"Result": 200, "Version": "R12.4.1", "Duration": 312}
        }]}
    });
    serde_json::to_vec(&package).unwrap_or_default()
}

fn package2_serialize(criterion: &mut Criterion) {
    let package = realistic_package2();
    assert!(package.to_json_bytes().is_ok(), "the bench Package#2 must encode");
    criterion.bench_function("package2/serialize", |bencher| {
        bencher.iter(|| black_box(black_box(&package).to_json_bytes()));
    });
}

fn package3_parse(criterion: &mut Criterion) {
    let body = realistic_package3();
    let limits = ParseLimits::default();
    assert!(ResponsePackage::parse(&body, &limits).is_ok_and(|package| package.statuses.len() == 24));
    criterion.bench_function("package3/parse", |bencher| {
        bencher.iter(|| black_box(ResponsePackage::parse(black_box(&body), &limits)));
    });
}

criterion_group!(benches, package2_serialize, package3_parse);
criterion_main!(benches);
