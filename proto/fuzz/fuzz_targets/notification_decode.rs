//! PLACEHOLDER: fuzz target notification_decode, filled in by its own change.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = data;
});
