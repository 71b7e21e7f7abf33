//! SMSC delivery receipts (SMPP 3.4 Appendix B, and the receipted_message_id and message_state TLVs) read back
//! into notification outcomes: `notification.delivered` or `notification.undelivered`, and the record's
//! `delivery`.
//!
//! ```text
//! submit_sm_resp message_id "4711" for segment 2 of 2 of request R
//!     -> Store::remember("sms-receipt:{account}:4711", "R 2 2", 48 h)   any replica's bind may get the receipt
//! deliver_sm esm_class 0x04, receipted_message_id "4711" | text "id:4711 sub:001 ... stat:DELIVRD err:000"
//!     -> Receipt { message_id "4711", status "DELIVRD" }                   pure: Receipt::read
//!     -> recall -> R, segment 2 of 2 -> get_notification(R), once it has its `sent` outcome
//!     -> WriteBatch { deliveries: [delivered], events: [notification.delivered] }
//!     -> deliver_sm_resp OK  (ESME_RX_T_APPN when the store failed: the SMSC delivers the receipt again)
//! ```
//!
//! The last segment's receipt says delivered: only with it can the device put the push together. A failed
//! receipt for any segment says undelivered, and stays so. Intermediate states (ENROUTE, ACCEPTD) change nothing.
//! An undelivered Package#0 is not sent again: the request's outcome stays `sent`, and the device's next session
//! still answers it.

use std::sync::Arc;
use std::time::Duration;

use omadm_core::clock::{Millis, now_millis};
use omadm_core::model::NotificationDelivery;
use omadm_core::session::events::notification_delivery;
use omadm_core::store::{Store, StoreError, WriteBatch};

use crate::metrics::metrics;

/// How long a submitted segment waits for its receipt: SMSCs keep an undelivered message for a day or two
/// (its validity period), and report on it when it expires.
pub const RECEIPT_WAIT: Millis = 48 * 60 * 60 * 1000;
/// A receipt can overtake the write that files its message id (the SMSC answers the submit, then reports at
/// once): it looks the id up this many times, [`RECALL_PAUSE`] apart, before it counts as unmatched.
const RECALL_TRIES: u32 = 10;
const RECALL_PAUSE: Duration = Duration::from_millis(200);
/// The dispatcher stores a batch's outcomes once the whole batch is out, so a receipt often comes before its
/// request's `sent`: the report waits for it (this many reads, [`OUTCOME_PAUSE`] apart), so that the topic has
/// `notification.sent` before `.delivered`. Past that it is filed anyway: nothing is lost, only the order.
const OUTCOME_TRIES: u32 = 60;
const OUTCOME_PAUSE: Duration = Duration::from_millis(500);

/// One delivery receipt: the SMSC's id of the message it reports on, and its state word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub message_id: String,
    /// DELIVRD, EXPIRED, DELETED, UNDELIV, ACCEPTD, UNKNOWN, REJECTD, ENROUTE, SKIPPED or SCHEDULED.
    pub status: String,
}

/// esm_class message types of a receipt (SMPP 3.4 5.2.12, bits 5-2): SMSC delivery receipt, intermediate
/// delivery notification.
const RECEIPT_TYPES: [u8; 2] = [0x04, 0x20];

impl Receipt {
    /// The receipt a deliver_sm carries, or None when it is not one (a mobile-originated message) or names no
    /// message or state. The TLVs, when present, win over the text.
    pub fn read(
        esm_class: u8,
        short_message: &[u8],
        receipted_message_id: Option<&str>,
        message_state: Option<u8>,
    ) -> Option<Receipt> {
        if !RECEIPT_TYPES.contains(&(esm_class & 0x3c)) {
            return None;
        }
        let text = String::from_utf8_lossy(short_message);
        let message_id =
            receipted_message_id.map(str::to_owned).or_else(|| text_field(&text, "id:")).filter(|id| !id.is_empty())?;
        let status = message_state
            .and_then(state_word)
            .map(str::to_owned)
            .or_else(|| text_field(&text, "stat:").map(|word| word.to_ascii_uppercase()))
            .filter(|word| !word.is_empty())?;
        Some(Receipt { message_id, status })
    }

    /// Some(true) for a message delivered, Some(false) for one that never will be, None while it is on its way.
    pub fn delivered(&self) -> Option<bool> {
        match self.status.as_str() {
            "DELIVRD" => Some(true),
            "EXPIRED" | "DELETED" | "UNDELIV" | "UNKNOWN" | "REJECTD" | "SKIPPED" => Some(false),
            _ => None,
        }
    }
}

/// The message_state TLV's value (SMPP 3.4 5.2.28) as the receipt text's word.
fn state_word(state: u8) -> Option<&'static str> {
    Some(match state {
        0 => "SCHEDULED",
        1 => "ENROUTE",
        2 => "DELIVRD",
        3 => "EXPIRED",
        4 => "DELETED",
        5 => "UNDELIV",
        6 => "ACCEPTD",
        7 => "UNKNOWN",
        8 => "REJECTD",
        9 => "SKIPPED",
        _ => return None,
    })
}

/// The value after `key` (`id:`, `stat:`) in a receipt text, up to the next space; the key starts the text or
/// follows a space, so `id:` does not match inside `submit date:`... or another field.
fn text_field(text: &str, key: &str) -> Option<String> {
    let mut from = 0;
    while let Some(found) = text.get(from..).and_then(|rest| rest.find(key)) {
        let start = from + found;
        let at_boundary = start == 0 || text[..start].ends_with(char::is_whitespace);
        if at_boundary {
            let value = &text[start + key.len()..];
            let end = value.find(char::is_whitespace).unwrap_or(value.len());
            return Some(value[..end].to_owned());
        }
        from = start + key.len();
    }
    None
}

/// What one receipt made of its request, as `omadm_sms_receipts_total` counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filed {
    /// `notification.delivered` and the record's delivery.
    Delivered,
    /// `notification.undelivered` and the record's delivery.
    Undelivered,
    /// An intermediate state: nothing to record.
    Pending,
    /// Delivered, but not the last segment: the last one's receipt decides.
    EarlierSegment,
    /// The record already says so (an SMSC sending a receipt again), or already says undelivered.
    Duplicate,
    /// No submit of this account is known by that message id (sent by another system, or too long ago).
    Unmatched,
    /// The request's record is gone (past its retention).
    NoRecord,
}

impl Filed {
    pub fn label(self) -> &'static str {
        match self {
            Filed::Delivered => "delivered",
            Filed::Undelivered => "undelivered",
            Filed::Pending => "pending",
            Filed::EarlierSegment => "earlier_segment",
            Filed::Duplicate => "duplicate",
            Filed::Unmatched => "unmatched",
            Filed::NoRecord => "no_record",
        }
    }
}

/// The segment a message id was submitted as: its request, and its place among the push's segments.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Submitted {
    request_id: String,
    segment: usize,
    segments: usize,
}

impl Submitted {
    fn encode(&self) -> String {
        format!("{} {} {}", self.request_id, self.segment, self.segments)
    }

    fn decode(text: &str) -> Option<Submitted> {
        let mut parts = text.split(' ');
        let request_id = parts.next()?.to_owned();
        let segment = parts.next()?.parse().ok()?;
        let segments = parts.next()?.parse().ok()?;
        Some(Submitted { request_id, segment, segments })
    }
}

/// The message ids of one SMSC account's submits, kept in the Store so that whichever replica's bind gets a
/// receipt files it under its request.
#[derive(Clone)]
pub struct ReceiptBook {
    store: Arc<dyn Store>,
    /// `system_id@host:port`: message ids are the SMSC's, unique within its account at best.
    account: String,
}

impl ReceiptBook {
    pub fn new(store: Arc<dyn Store>, account: String) -> ReceiptBook {
        ReceiptBook { store, account }
    }

    fn key(&self, message_id: &str) -> String {
        format!("sms-receipt:{}:{message_id}", self.account)
    }

    /// Files `message_id` as segment `segment` (from 1) of `segments` of `request_id`, for [`RECEIPT_WAIT`].
    pub async fn expect(
        &self,
        message_id: &str,
        request_id: &str,
        segment: usize,
        segments: usize,
    ) -> Result<(), StoreError> {
        let submitted = Submitted { request_id: request_id.to_owned(), segment, segments };
        self.store.remember(&self.key(message_id), &submitted.encode(), RECEIPT_WAIT, now_millis()).await
    }

    /// Records what `receipt` says of its request, once; counted in `omadm_sms_receipts_total`.
    pub async fn file(&self, receipt: &Receipt) -> Result<Filed, StoreError> {
        let filed = self.file_uncounted(receipt).await;
        let label = filed.as_ref().map_or("error", |filed| filed.label());
        metrics().sms_receipts.with_label_values(&[label]).inc();
        filed
    }

    async fn file_uncounted(&self, receipt: &Receipt) -> Result<Filed, StoreError> {
        let Some(delivered) = receipt.delivered() else { return Ok(Filed::Pending) };
        let key = self.key(&receipt.message_id);
        let mut submitted = None;
        for attempt in 1..=RECALL_TRIES {
            submitted = self.store.recall(&key, now_millis()).await?;
            if submitted.is_some() || attempt == RECALL_TRIES {
                break;
            }
            tokio::time::sleep(RECALL_PAUSE).await;
        }
        let Some(submitted) = submitted.as_deref().and_then(Submitted::decode) else { return Ok(Filed::Unmatched) };
        if delivered && submitted.segment < submitted.segments {
            return Ok(Filed::EarlierSegment);
        }
        let mut stored = None;
        for attempt in 1..=OUTCOME_TRIES {
            stored = self.store.get_notification(&submitted.request_id).await?;
            match &stored {
                None => return Ok(Filed::NoRecord),
                Some(record) if record.outcome.is_some() || attempt == OUTCOME_TRIES => break,
                Some(_) => tokio::time::sleep(OUTCOME_PAUSE).await,
            }
        }
        let Some(record) = stored else { return Ok(Filed::NoRecord) };
        if record.delivery.as_ref().is_some_and(|known| !known.delivered || known.delivered == delivered) {
            return Ok(Filed::Duplicate);
        }
        let delivery = NotificationDelivery {
            device_id: record.device_id.clone(),
            request_id: record.request_id.clone(),
            transport: "sms".to_owned(),
            delivered,
            status: receipt.status.clone(),
            message_id: receipt.message_id.clone(),
            at: now_millis(),
        };
        tracing::info!(
            device_id = %delivery.device_id,
            request_id = %delivery.request_id,
            message_id = %delivery.message_id,
            status = %delivery.status,
            "SMS delivery receipt"
        );
        let event = notification_delivery(delivery.clone());
        self.store
            .commit(WriteBatch { deliveries: vec![delivery], events: vec![event], ..WriteBatch::default() })
            .await?;
        Ok(if delivered { Filed::Delivered } else { Filed::Undelivered })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const TEXT: &[u8] =
        b"id:0A1B2C sub:001 dlvrd:001 submit date:2612031200 done date:2612031201 stat:DELIVRD err:000 text:";

    #[test]
    fn a_receipt_is_read_from_its_text() {
        let receipt = Receipt::read(0x04, TEXT, None, None).unwrap();
        assert_eq!(receipt, Receipt { message_id: "0A1B2C".to_owned(), status: "DELIVRD".to_owned() });
        assert_eq!(receipt.delivered(), Some(true));
        let undelivered = b"id:7 sub:001 dlvrd:000 submit date:2612031200 done date:2612031300 stat:undeliv err:001";
        let receipt = Receipt::read(0x04, undelivered, None, None).unwrap();
        assert_eq!((receipt.status.as_str(), receipt.delivered()), ("UNDELIV", Some(false)), "the word in any case");
        assert_eq!(Receipt::read(0x20, b"id:7 stat:ENROUTE", None, None).unwrap().delivered(), None, "intermediate");
    }

    #[test]
    fn the_tlvs_win_over_the_text() {
        let receipt = Receipt::read(0x04, TEXT, Some("ff01"), Some(3)).unwrap();
        assert_eq!(receipt, Receipt { message_id: "ff01".to_owned(), status: "EXPIRED".to_owned() });
        assert_eq!(receipt.delivered(), Some(false));
        let receipt = Receipt::read(0x04, b"", Some("9"), Some(2)).unwrap();
        assert_eq!((receipt.message_id.as_str(), receipt.delivered()), ("9", Some(true)), "TLVs alone do");
    }

    #[test]
    fn what_is_not_a_receipt_is_none() {
        assert_eq!(Receipt::read(0x00, TEXT, None, None), None, "a mobile-originated message");
        assert_eq!(Receipt::read(0x40, TEXT, None, None), None, "UDHI alone: user data, not a receipt");
        assert_eq!(Receipt::read(0x04, b"sub:001 stat:DELIVRD", None, None), None, "no id");
        assert_eq!(Receipt::read(0x04, b"id:5 sub:001", None, None), None, "no state");
        assert_eq!(Receipt::read(0x04, b"id: stat:DELIVRD", None, None), None, "an empty id");
        assert_eq!(Receipt::read(0x04, &[0xff, 0xfe, 0x00], None, None), None, "bytes that are no text");
        assert_eq!(Receipt::read(0x04, b"id:5", None, Some(200)).map(|receipt| receipt.status), None, "no such state");
    }

    #[test]
    fn fields_start_at_a_word_boundary() {
        assert_eq!(text_field("xid:1 id:2", "id:").as_deref(), Some("2"));
        assert_eq!(text_field("id:3", "id:").as_deref(), Some("3"));
        assert_eq!(text_field("nothing here", "id:"), None);
    }

    #[test]
    fn a_submitted_segment_round_trips_through_its_stored_form() {
        let submitted = Submitted { request_id: "0123abcd".to_owned(), segment: 2, segments: 3 };
        assert_eq!(Submitted::decode(&submitted.encode()), Some(submitted));
        assert_eq!(Submitted::decode("r 1"), None);
        assert_eq!(Submitted::decode("r x 2"), None);
    }
}
