//! Management tree benches: ClientURI resolution on a 10,000-node tree, and dmmo+json serialization.

// Bench inputs are fixed: if building them fails the bench itself is wrong.
#![allow(clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use omadm_benches::{GENERATED_ENTRIES, GENERATED_INSTANCES, GENERATED_MOID, generated_tree_10k};
use omadm_proto::tree::DmmoDocument;
use omadm_proto::uri::ClientUri;

fn resolve_10k(criterion: &mut Criterion) {
    let tree = generated_tree_10k().expect("generated tree");
    let cases = [
        ("exact_path", format!("{GENERATED_MOID}/inst7/Data/250/Value"), 1),
        ("x_name_nv", format!("{GENERATED_MOID}/(x)/Data/(y)/Value?nv=(x)/ID:sensor-7&nv=(y)/Date:2024.250"), 1),
        ("wildcards", format!("{GENERATED_MOID}/*/Data/*/Value"), GENERATED_INSTANCES * GENERATED_ENTRIES),
    ];
    let mut group = criterion.benchmark_group("tree/resolve_10k");
    for (name, text, expected) in cases {
        let uri = ClientUri::parse(&text).expect("bench ClientURI");
        let found = tree.resolve(&uri).expect("bench ClientURI resolves").len();
        assert_eq!(found, expected, "{text}");
        group.bench_function(name, |bencher| bencher.iter(|| tree.resolve(black_box(&uri)).map(|nodes| nodes.len())));
    }
    group.finish();
}

fn serialize_instance(criterion: &mut Criterion) {
    let tree = generated_tree_10k().expect("generated tree");
    let instance = tree.instance(GENERATED_MOID, "inst7").expect("instance inst7");
    criterion.bench_function("tree/serialize_instance", |bencher| {
        bencher.iter(|| serde_json::to_vec(&DmmoDocument::from_instance(black_box(instance))).map(|bytes| bytes.len()))
    });
}

criterion_group!(benches, resolve_10k, serialize_instance);
criterion_main!(benches);
