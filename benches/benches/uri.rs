//! PLACEHOLDER: uri benches, filled in by their own change.

use criterion::{Criterion, criterion_group, criterion_main};

fn placeholder(_criterion: &mut Criterion) {}

criterion_group!(benches, placeholder);
criterion_main!(benches);
