//! Push-service carriage of Package#0 (Appendix D.2.5): the package base64-encoded under the key "SMS".
//!
//! ```text
//! {"SMS": "IQAQA3NydkAA"}
//! ```
//!
//! carries the package `21 00 10 03 73 72 76 40 00`. This crate emits standard
//! base64 with padding; it accepts padding or none, the URL-safe alphabet, and
//! whitespace (line breaks) inside the text.

use base64::Engine;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};

/// The push-message key that carries the base64 package.
pub const PUSH_MESSAGE_KEY: &str = "SMS";

/// Standard alphabet, padding optional on decode.
const LENIENT_STANDARD: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
/// URL-safe alphabet, padding optional on decode.
const LENIENT_URL_SAFE: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a push message does not carry a base64 Package#0.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    #[error("push message is not JSON: {0}")]
    NotJson(String),
    #[error("push message has no string \"SMS\" field (looked at the top level and under \"data\")")]
    MissingSmsField,
    #[error("\"SMS\" value is not valid base64: {0}")]
    InvalidBase64(String),
}

/// The package as standard, padded base64: `IQAQA3NydkAA`.
pub fn encode_base64(package: &[u8]) -> String {
    STANDARD.encode(package)
}

/// Decodes base64 text leniently (see the module documentation).
pub fn decode_base64(text: &str) -> Result<Vec<u8>, PushError> {
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let engine = if compact.contains(['-', '_']) { &LENIENT_URL_SAFE } else { &LENIENT_STANDARD };
    engine.decode(compact.as_bytes()).map_err(|error| PushError::InvalidBase64(error.to_string()))
}

/// The push-message JSON object `{"SMS": "<base64>"}`.
pub fn to_push_message(package: &[u8]) -> serde_json::Value {
    serde_json::json!({ PUSH_MESSAGE_KEY: encode_base64(package) })
}

/// Reads the package out of a push message: the "SMS" field of a JSON object,
/// or of its "data" object (how push services such as GCM deliver payloads).
/// Other fields are ignored.
pub fn from_push_message(message: &serde_json::Value) -> Result<Vec<u8>, PushError> {
    let field = message
        .get(PUSH_MESSAGE_KEY)
        .or_else(|| message.get("data").and_then(|data| data.get(PUSH_MESSAGE_KEY)))
        .and_then(serde_json::Value::as_str)
        .ok_or(PushError::MissingSmsField)?;
    decode_base64(field)
}

/// Reads the package out of push-message text: a JSON object as in
/// [`from_push_message`], or the bare base64 string (quoted or not).
pub fn from_push_text(text: &str) -> Result<Vec<u8>, PushError> {
    let trimmed = text.trim();
    if trimmed.starts_with('{') || trimmed.starts_with('"') {
        let value: serde_json::Value =
            serde_json::from_str(trimmed).map_err(|error| PushError::NotJson(error.to_string()))?;
        if let Some(bare) = value.as_str() {
            return decode_base64(bare);
        }
        return from_push_message(&value);
    }
    decode_base64(trimmed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PACKAGE: &[u8] = &[0x21, 0x00, 0x10, 0x03, 0x73, 0x72, 0x76, 0x40, 0x00];

    #[test]
    fn documented_example() {
        assert_eq!(encode_base64(PACKAGE), "IQAQA3NydkAA");
        assert_eq!(to_push_message(PACKAGE).to_string(), r#"{"SMS":"IQAQA3NydkAA"}"#);
        assert_eq!(from_push_text(r#"{"SMS": "IQAQA3NydkAA"}"#).unwrap(), PACKAGE);
    }

    #[test]
    fn lenient_forms_are_accepted() {
        assert_eq!(decode_base64("IQAQ\nA3Nyd kAA").unwrap(), PACKAGE);
        assert_eq!(decode_base64("IAA").unwrap(), vec![0x20, 0x00]);
        assert_eq!(decode_base64("IAA=").unwrap(), vec![0x20, 0x00]);
        assert_eq!(decode_base64("-_8=").unwrap(), vec![0xfb, 0xff]);
        assert_eq!(decode_base64("+/8=").unwrap(), vec![0xfb, 0xff]);
        assert_eq!(from_push_text("\"IQAQA3NydkAA\"").unwrap(), PACKAGE);
        assert_eq!(from_push_text(" IQAQA3NydkAA\n").unwrap(), PACKAGE);
        assert_eq!(
            from_push_text(r#"{"to": "device", "data": {"SMS": "IQAQA3NydkAA", "other": 1}}"#).unwrap(),
            PACKAGE
        );
    }

    #[test]
    fn failures_are_typed() {
        assert!(matches!(decode_base64("IQ*A"), Err(PushError::InvalidBase64(_))));
        assert_eq!(from_push_text(r#"{"sms": "IQAQA3NydkAA"}"#), Err(PushError::MissingSmsField));
        assert_eq!(from_push_text(r#"{"SMS": 5}"#), Err(PushError::MissingSmsField));
        assert!(matches!(from_push_text("{not json"), Err(PushError::NotJson(_))));
    }
}
