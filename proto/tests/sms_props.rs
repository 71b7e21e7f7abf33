//! Property tests of WAP Push over SMS: segment, shuffle, duplicate, reassemble gives back the push PDU; every
//! segment fits one SMS; arbitrary bytes never panic the reassembler.

use omadm_proto::notification::{
    ConcatReference, MAX_SMS_OCTETS, ReassemblyLimits, SmsReassembler, parse_segment, sms_segments, wrap_push,
};
use proptest::collection::vec;
use proptest::prelude::*;

fn reference() -> impl Strategy<Value = ConcatReference> {
    prop_oneof![any::<u8>().prop_map(ConcatReference::Bits8), any::<u16>().prop_map(ConcatReference::Bits16)]
}

proptest! {
    #[test]
    fn segment_shuffle_reassemble_is_the_original(
        package in vec(any::<u8>(), 0..2_000),
        transaction_id in any::<u8>(),
        reference in reference(),
        order in any::<prop::sample::Index>(),
        duplicate in any::<prop::sample::Index>(),
    ) {
        let pdu = wrap_push(&package, transaction_id);
        let mut segments = sms_segments(&pdu, reference).unwrap();
        prop_assert!(segments.iter().all(|segment| segment.len() <= MAX_SMS_OCTETS));
        prop_assert_eq!(segments.len(), if pdu.len() <= 133 { 1 } else { pdu.len().div_ceil(140 - 1 - 6 - if matches!(reference, ConcatReference::Bits8(_)) { 5 } else { 6 }) });
        // A shuffle: rotate by a drawn amount, then repeat one segment but the last right after itself (a repeat
        // after the message completed would start a new one, as on a phone). A lone SMS has no reference to
        // tell a repeat by (the Package#0's NOTIFICATION-ID does that), so only segments repeat.
        let rotation = order.index(segments.len());
        segments.rotate_left(rotation);
        if segments.len() > 1 {
            let at = duplicate.index(segments.len() - 1);
            let repeated = segments[at].clone();
            segments.insert(at + 1, repeated);
        }
        let mut reassembler = SmsReassembler::new(ReassemblyLimits { max_segments: 255, ..ReassemblyLimits::default() });
        let mut complete = Vec::new();
        for segment in &segments {
            if let Some(pdu) = reassembler.accept("+491701234567", segment, 0).unwrap() {
                complete.push(pdu);
            }
        }
        prop_assert_eq!(complete, vec![pdu]);
        prop_assert_eq!(reassembler.pending(), 0);
    }

    #[test]
    fn arbitrary_segments_never_panic(segments in vec(vec(any::<u8>(), 0..160), 0..20), now in any::<u64>()) {
        let mut reassembler = SmsReassembler::new(ReassemblyLimits { max_pending: 4, max_segments: 8, timeout_ms: 10 });
        for segment in &segments {
            let _ = parse_segment(segment);
            let _ = reassembler.accept("x", segment, now);
            prop_assert!(reassembler.pending() <= 4);
        }
    }
}
