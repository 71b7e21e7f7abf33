//! Criterion benches of addressing: ClientURI parsing and printing, ServerURI substitution.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use omadm_proto::uri::{ClientUri, ServerUri, ServerUriParams};

/// ClientURIs as a server sends them in a typical Package#2: plain leaves, the
/// 6.1.3 examples with x-names and wildcards, and a cached read with lv and cv.
const CLIENT_URIS: [&str; 6] = [
    "urn:oma:mo:oma-dm-devinfo:1.2//DevID",
    "urn:oma:mo:oma-dm-dmacc:2.0/dms1/AuthNoti/AuthSecret",
    "urn:oma:mo:moid:1.0/(x)/Data/(y)/Value?nv=(x)/ID:GPS&nv=(y)/Date:12.2",
    "urn:oma:mo:moid:1.0/*/Data/*/Value",
    "urn:oma:mo:oma-fumo:1.0/(x)/State?nv=(x)/PkgName:Firmware%20R12&lv=1",
    "urn:oma:mo:oma-sessioninfomo:1.0//?lv=2&cv=W/%22a1b2c3%22",
];

const SERVER_URI: &str =
    "https://dm.example.com/repository/[DevID]/cfg/[MCC]/[MNC]?cmcc=[CMCC]&cmnc=[CMNC]&sp=[SPName]";

fn client_parse(criterion: &mut Criterion) {
    criterion.bench_function("uri/client_parse", |bencher| {
        bencher.iter(|| {
            for text in CLIENT_URIS {
                let _ = black_box(ClientUri::parse(black_box(text)));
            }
        });
    });
}

fn client_print(criterion: &mut Criterion) {
    let parsed: Vec<ClientUri> = CLIENT_URIS.iter().filter_map(|text| ClientUri::parse(text).ok()).collect();
    assert_eq!(parsed.len(), CLIENT_URIS.len(), "every bench ClientURI must parse");
    criterion.bench_function("uri/client_print", |bencher| {
        bencher.iter(|| {
            for uri in &parsed {
                black_box(black_box(uri).to_string());
            }
        });
    });
}

fn server_substitute(criterion: &mut Criterion) {
    let template = ServerUri::parse(SERVER_URI);
    assert!(template.is_ok(), "the bench ServerURI must parse: {template:?}");
    let Ok(template) = template else { return };
    let device = ServerUriParams {
        dev_id: Some("IMEI:493005100592800".into()),
        mnc: Some("01".into()),
        mcc: Some("240".into()),
        cmnc: None,
        cmcc: None,
        sp_name: Some("Example Telecom".into()),
    };
    criterion.bench_function("uri/server_substitute", |bencher| {
        bencher.iter(|| black_box(black_box(&template).substitute(black_box(&device))));
    });
}

criterion_group!(benches, client_parse, client_print, server_substitute);
criterion_main!(benches);
