//! Package#0, the DM Notification (spec 5.2.1, 7.1, 9.1, Appendix D): the binary package, its
//! SHA256-DIGEST signature, and its WAP Push (over UDP, or SMS segments), and push-service (base64 "SMS") transports.
//!
//! A server builds a [`Notification`], signs it with the account's AuthSecret
//! and the current time, and hands the bytes to a transport:
//!
//! ```
//! use omadm_proto::notification::{self, ConnectionType, Notification, PreferredConnectionTypes};
//!
//! let notification = Notification {
//!     server_id: Some("com.example.dm".into()),
//!     preferred_connection_types: Some(PreferredConnectionTypes::new(vec![ConnectionType::Mobile])?),
//!     notification_id: Some(1),
//!     ..Notification::default()
//! };
//! let package = notification.encode_signed(b"secret", 1_700_000_000)?;
//! let push_pdu = notification::wrap_push(&package, 0);
//!
//! // The client side:
//! let received = notification::unwrap_push(&push_pdu)?;
//! let verified = notification::verify(received, Some(b"secret"), 1_700_000_030, Some(300))?;
//! assert_eq!(verified.server_id.as_deref(), Some("com.example.dm"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Errors carry no DM status code: Package#0 has no reply, a client that
//! rejects one simply ignores it (5.2.1.2).

mod digest;
pub mod option;
mod package;
mod push;
mod sms;
mod wsp;

pub use digest::{VerifyError, verify};
pub use option::{ConnectionType, ConnectionTypeError, PreferredConnectionTypes, Sha256Digest, UnknownOption};
pub use package::{
    DecodeError, EncodeError, HEADER_LENGTH, MAX_OPTION_DELTA, MAX_OPTION_VALUE_LENGTH, MAX_OPTIONS, Notification,
    VERSION,
};
pub use push::{
    PUSH_MESSAGE_KEY, PushError, decode_base64, encode_base64, from_push_message, from_push_text, to_push_message,
};
pub use sms::{
    ConcatReference, Concatenation, IEI_CONCAT_8, IEI_CONCAT_16, IEI_PORTS_8, IEI_PORTS_16, MAX_SEGMENTS,
    MAX_SMS_OCTETS, Ports, ReassemblyLimits, Segment, SmsError, SmsReassembler, WAP_PUSH_SOURCE_PORT, parse_segment,
    sms_segments,
};
pub use wsp::{
    APPLICATION_ID, APPLICATION_ID_URI, CONTENT_TYPE_CODE, CONTENT_TYPE_TEXT, MAX_PUSH_HEADER_LENGTH, PDU_TYPE_PUSH,
    WAP_PUSH_PORT, WspError, unwrap_push, wrap_push,
};
