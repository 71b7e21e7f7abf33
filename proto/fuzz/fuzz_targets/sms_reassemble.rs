//! Fuzz target: WAP Push SMS segments (user data with a header) never panic the segment reader or the
//! reassembler, its memory stays within its bounds, and a PDU framed by `sms_segments` comes back whole.
#![no_main]

use libfuzzer_sys::fuzz_target;
use omadm_proto::notification::{ConcatReference, ReassemblyLimits, SmsReassembler, parse_segment, sms_segments};

fuzz_target!(|data: &[u8]| {
    let limits = ReassemblyLimits { max_pending: 8, max_segments: 32, timeout_ms: 1_000 };
    let mut reassembler = SmsReassembler::new(limits);
    // The input as a run of segments: a length octet, then that many octets, from one of two senders.
    let mut rest = data;
    let mut now = 0u64;
    while let Some((&length, after)) = rest.split_first() {
        let (segment, after) = after.split_at(usize::from(length).min(after.len()));
        rest = after;
        let _ = parse_segment(segment);
        let sender = if length % 2 == 0 { "a" } else { "b" };
        let _ = reassembler.accept(sender, segment, now);
        assert!(reassembler.pending() <= 8, "more messages pending than the bound");
        now += u64::from(length);
    }
    if let Ok(segments) = sms_segments(data, ConcatReference::Bits8(data.len() as u8)) {
        let mut whole = SmsReassembler::new(ReassemblyLimits { max_segments: 255, ..limits });
        let mut out = None;
        for segment in segments.iter().rev() {
            if let Some(pdu) = whole.accept("c", segment, 0).expect("a framed segment must be accepted") {
                out = Some(pdu);
            }
        }
        assert_eq!(out.as_deref(), Some(data), "segments of the input reassemble into the input");
    }
});
