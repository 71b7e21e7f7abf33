//! Criterion benches of Package#0: building and signing a notification against a bare SHA-256 over the same
//! bytes (the baseline, in the same run), verifying and decoding a received one, and sending it as WAP Push
//! over loopback UDP.
//!
//! After criterion's own lines the bench prints `encode_sign / sha256 baseline: N.NN` from a timed loop of
//! both in the same process (not in `--test` mode): the share of the signing cost that is not the hash.

use std::hint::black_box;
use std::net::UdpSocket;
use std::time::Instant;

use criterion::{Criterion, criterion_group};
use omadm_proto::notification::{self, ConnectionType, Notification, PreferredConnectionTypes, UnknownOption};
use sha2::{Digest as _, Sha256};

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

/// The signed package's bytes, or `None` (said on stderr) when the bench notification does not encode.
fn signed_package() -> Option<Vec<u8>> {
    match typical_notification().encode_signed(SECRET, TIME) {
        Ok(package) => Some(package),
        Err(error) => {
            eprintln!("the bench notification does not encode ({error}); nothing to measure");
            None
        }
    }
}

/// What signing cannot go below: one SHA-256 over the secret and the package's bytes.
fn sha256_of(package: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(SECRET);
    hasher.update(package);
    hasher.finalize().into()
}

fn encode_sign(criterion: &mut Criterion) {
    let notification = typical_notification();
    criterion.bench_function("notification/encode_sign", |bencher| {
        bencher.iter(|| black_box(&notification).encode_signed(black_box(SECRET), black_box(TIME)))
    });
    let Some(package) = signed_package() else { return };
    criterion.bench_function("notification/sha256_baseline", |bencher| bencher.iter(|| sha256_of(black_box(&package))));
}

fn verify_decode(criterion: &mut Criterion) {
    let Some(package) = signed_package() else { return };
    criterion.bench_function("notification/verify_decode", |bencher| {
        bencher.iter(|| notification::verify(black_box(&package), Some(SECRET), black_box(TIME + 30), Some(300)))
    });
}

/// One WAP Push datagram (WSP header + signed package) to a socket on loopback, as the notifier sends it.
fn udp_send(criterion: &mut Criterion) {
    let Some(package) = signed_package() else { return };
    let sockets = UdpSocket::bind("127.0.0.1:0").and_then(|sender| Ok((sender, UdpSocket::bind("127.0.0.1:0")?)));
    let Ok((sender, receiver)) = sockets else {
        eprintln!("no loopback UDP sockets; udp_send not measured");
        return;
    };
    let Ok(target) = receiver.local_addr() else { return };
    // The receiver never reads: a full receive buffer drops datagrams, the send itself is what is measured.
    criterion.bench_function("notification/udp_send", |bencher| {
        bencher.iter(|| sender.send_to(&notification::wrap_push(black_box(&package), 1), target))
    });
}

/// Times `iterations` of `work` and returns nanoseconds per iteration.
fn nanos_per_iteration(iterations: u32, mut work: impl FnMut()) -> f64 {
    let started = Instant::now();
    for _ in 0..iterations {
        work();
    }
    started.elapsed().as_nanos() as f64 / f64::from(iterations)
}

/// The ratio of signing to the bare hash, measured here in one process, interleaved to share the machine's state.
fn print_ratio() {
    let Some(package) = signed_package() else { return };
    let notification = typical_notification();
    let (mut sign, mut hash) = (0.0, 0.0);
    for _ in 0..5 {
        sign += nanos_per_iteration(200_000, || {
            let _ = black_box(black_box(&notification).encode_signed(SECRET, TIME));
        });
        hash += nanos_per_iteration(200_000, || {
            black_box(sha256_of(black_box(&package)));
        });
    }
    println!(
        "notification/encode_sign {:.0} ns, sha256 baseline {:.0} ns: encode_sign / sha256 baseline = {:.2} \
         (Package#0 built and signed at {:.0}% of bare SHA-256's rate)",
        sign / 5.0,
        hash / 5.0,
        sign / hash,
        100.0 * hash / sign
    );
}

criterion_group!(benches, encode_sign, verify_decode, udp_send);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    // `cargo bench -- --test` (the test command) only proves the benches run.
    if !std::env::args().any(|argument| argument == "--test") {
        print_ratio();
    }
}
