//! A phone's side of WAP Push over SMS: the short messages an SMSC delivered (or a test SMSC recorded), put back
//! into Package#0 the way a device's WDP and WSP layers do (omadm_proto's reassembler and `unwrap_push`).
//!
//! ```text
//! [(from "491701234567", 0b 05 04 0b 84 23 f0 00 03 34 02 02 ...), (same, ... 02 01 ...)]
//!     -> SmsInbox::receive x2 -> Some(Package#0 bytes) -> omadm_proto::notification::verify(.., secret, ..)
//! ```

use omadm_proto::notification::{ReassemblyLimits, SmsError, SmsReassembler, WspError, unwrap_push};

/// Why received short messages give no Package#0.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SmsInboxError {
    #[error("not a WAP Push SMS segment: {0}")]
    Segment(#[from] SmsError),
    #[error("the reassembled message is not a DM notification push: {0}")]
    Push(#[from] WspError),
}

/// Short messages in, Package#0 out; bounded like a phone's reassembly memory.
#[derive(Debug, Default)]
pub struct SmsInbox {
    reassembler: SmsReassembler,
}

impl SmsInbox {
    pub fn new(limits: ReassemblyLimits) -> SmsInbox {
        SmsInbox { reassembler: SmsReassembler::new(limits) }
    }

    /// One short message's user data (UDHI set) from `sender` at `now` (ms); the Package#0 once its push is
    /// complete.
    pub fn receive(&mut self, sender: &str, user_data: &[u8], now: u64) -> Result<Option<Vec<u8>>, SmsInboxError> {
        let Some(pdu) = self.reassembler.accept(sender, user_data, now)? else { return Ok(None) };
        Ok(Some(unwrap_push(&pdu)?.to_vec()))
    }
}

/// Every Package#0 in `messages` (sender, user data), in the order they complete; the first malformed message
/// is the error.
pub fn packages_from_sms<'a>(
    messages: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> Result<Vec<Vec<u8>>, SmsInboxError> {
    let mut inbox = SmsInbox::default();
    let mut packages = Vec::new();
    for (sender, user_data) in messages {
        packages.extend(inbox.receive(sender, user_data, 0)?);
    }
    Ok(packages)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use omadm_proto::notification::{ConcatReference, Notification, sms_segments, verify, wrap_push};

    use super::*;

    #[test]
    fn segments_in_any_order_give_back_the_signed_package() {
        let notification = Notification {
            server_id: Some(format!("dms.example.com/{}", "x".repeat(120))),
            notification_id: Some(0x1234),
            ..Notification::default()
        };
        let package = notification.encode_signed(b"secret", 1_700_000_000).unwrap();
        let segments = sms_segments(&wrap_push(&package, 0x34), ConcatReference::Bits8(0x34)).unwrap();
        assert!(segments.len() >= 2);
        let packages = packages_from_sms(segments.iter().rev().map(|segment| ("491701234567", segment.as_slice())));
        let packages = packages.unwrap();
        assert_eq!(packages, vec![package.clone()]);
        let verified = verify(&packages[0], Some(b"secret"), 1_700_000_010, Some(60)).unwrap();
        assert_eq!(verified.notification_id, Some(0x1234));
    }

    #[test]
    fn what_is_not_a_dm_push_is_an_error() {
        let text = sms_segments(b"\x01\x06\x03\xc4\xaf\x87hello", ConcatReference::Bits8(1)).unwrap();
        let wrong = packages_from_sms([("1", text[0].as_slice())]).unwrap_err();
        assert!(matches!(wrong, SmsInboxError::Push(WspError::WrongContentType(_))), "{wrong}");
        let broken = packages_from_sms([("1", &[0x05, 0x05][..])]).unwrap_err();
        assert!(matches!(broken, SmsInboxError::Segment(SmsError::HeaderPastEnd { .. })), "{broken}");
    }
}
