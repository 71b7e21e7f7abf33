//! Criterion benches of Appendix E: parsing a multipart Package#3 that carries several GET results.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use omadm_proto::multipart::{GetResultPart, MultipartLimits, decode_response, derive_boundary, encode_response};
use omadm_proto::package::{CommandStatus, ResponsePackage};
use omadm_proto::status::StatusCode;
use serde_json::json;

/// A Package#3 answering CONT plus eight GETs (one 404): leaves as text/plain
/// and MO subtrees as dmmo+json of a few hundred bytes to a few kilobytes.
fn realistic_body() -> (String, Vec<u8>) {
    let mut statuses = vec![CommandStatus::new(StatusCode::OK)];
    let mut parts = Vec::new();
    for index in 0..8usize {
        let position = index + 2;
        if index == 5 {
            statuses.push(CommandStatus::new(StatusCode::NOT_FOUND));
            continue;
        }
        statuses.push(CommandStatus::new(StatusCode::OK));
        if index % 3 == 0 {
            parts.push(GetResultPart::new(position, "text/plain", format!("IMEI:49300510059280{index}")));
        } else {
            let data: serde_json::Map<String, serde_json::Value> = (0..index * 8)
                .map(|entry| (format!("Entry{entry}"), json!({"Date": format!("12.{entry}"), "Value": entry * 17})))
                .collect();
            let mo = json!({
                "DDF": "http://www.vendor.com/DDF/moid1.0.ddf",
                "ClientURI": format!("urn:oma:mo:moid:1.0/left/Data?lv={index}"),
                "MOData": {"Data": data}
            });
            parts.push(GetResultPart::new(position, "application/dmmo+json", mo.to_string()));
        }
    }
    let package = ResponsePackage::new(statuses);
    let boundary = derive_boundary(&parts);
    match encode_response(&package, &parts, &boundary) {
        Ok(encoded) => (encoded.content_type, encoded.body),
        Err(error) => (format!("cannot build the bench body: {error}"), Vec::new()),
    }
}

fn multipart_parse(criterion: &mut Criterion) {
    let (content_type, body) = realistic_body();
    let limits = MultipartLimits::default();
    let parsed = decode_response(&content_type, &body, &limits);
    assert!(parsed.is_ok_and(|response| response.parts.len() == 7), "the bench body must parse");
    criterion.bench_function("multipart/parse", |bencher| {
        bencher.iter(|| black_box(decode_response(black_box(&content_type), black_box(&body), &limits)));
    });
}

criterion_group!(benches, multipart_parse);
criterion_main!(benches);
