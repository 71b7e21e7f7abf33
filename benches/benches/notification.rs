//! Criterion benches of Package#0: building and signing a notification, and verifying and decoding a received one.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use omadm_proto::notification::{self, ConnectionType, Notification, PreferredConnectionTypes, UnknownOption};

const SECRET: &[u8] = b"AuthSecret-of-the-account";
const TIME: u32 = 1_700_000_000;

/// A notification as a server sends it: every standard option and one vendor option.
fn typical_notification() -> Notification {
    Notification {
        server_id: Some("com.example.dm.server".into()),
        preferred_connection_types: PreferredConnectionTypes::new(vec![
            ConnectionType::Wireless,
            ConnectionType::Mobile,
            ConnectionType::AnyAvailable,
        ])
        .ok(),
        notification_id: Some(4711),
        digest: None,
        request_mos: true,
        unknown_options: vec![UnknownOption { number: 9, value: vec![0xca, 0xfe] }],
    }
}

fn encode_sign(criterion: &mut Criterion) {
    let notification = typical_notification();
    criterion.bench_function("notification/encode_sign", |bencher| {
        bencher.iter(|| black_box(&notification).encode_signed(black_box(SECRET), black_box(TIME)))
    });
}

fn verify_decode(criterion: &mut Criterion) {
    let Ok(package) = typical_notification().encode_signed(SECRET, TIME) else {
        eprintln!("the bench notification does not encode; nothing to measure");
        return;
    };
    criterion.bench_function("notification/verify_decode", |bencher| {
        bencher.iter(|| notification::verify(black_box(&package), Some(SECRET), black_box(TIME + 30), Some(300)))
    });
}

criterion_group!(benches, encode_sign, verify_decode);
criterion_main!(benches);
