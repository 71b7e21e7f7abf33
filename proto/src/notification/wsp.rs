//! Connectionless WAP Push carriage of Package#0 (Appendix D.1, WSP encoding per WAP-230-WSP 8.2.4 and 8.4).
//!
//! The push PDU this crate emits is always six bytes of framing, then the package:
//!
//! ```text
//! 01          TID (transaction id, caller's choice)
//! 06          PDU type: Push
//! 03          HeadersLen (uintvar): content type + headers = 3 bytes
//! d8          Content-Type: short-integer 0x58 = application/vnd.syncml.dm.notification
//! af 87       X-WAP-Application-Id (field 0x2f) = short-integer 0x07 (x-wap-application:syncml.dm)
//! 21 00 ...   the Package#0 bytes
//! ```
//!
//! e.g. `01 06 03 d8 af 87 20 80 10 03 73 72 76` carries the package with
//! SERVER-ID "srv". Over IP this travels in a UDP datagram to port 2948.
//!
//! Unwrapping is lenient about encodings WSP allows (content type as text or in
//! the general form with parameters, application id as a long integer or its
//! URI, other headers, header code-page shifts) but insists on a Push PDU, the
//! DM notification content type, application id 7, and push headers of at most
//! 48 bytes (D.1; "push header" read as the HeadersLen field: content type plus
//! header fields).

/// UDP port for connectionless WAP Push (IANA `wap-push`), where IP devices listen.
pub const WAP_PUSH_PORT: u16 = 2948;
/// WSP PDU type of Push.
pub const PDU_TYPE_PUSH: u8 = 0x06;
/// WINA well-known content type code of `application/vnd.syncml.dm.notification`.
pub const CONTENT_TYPE_CODE: u8 = 0x58;
/// The content type's text form, accepted in place of the code.
pub const CONTENT_TYPE_TEXT: &str = "application/vnd.syncml.dm.notification";
/// WINA push application id of the DM client (`x-wap-application:syncml.dm`).
pub const APPLICATION_ID: u8 = 0x07;
/// The application id's URI form, accepted in place of the code.
pub const APPLICATION_ID_URI: &str = "x-wap-application:syncml.dm";
/// Largest push header (content type plus header fields) that Appendix D.1 allows.
pub const MAX_PUSH_HEADER_LENGTH: usize = 48;

/// Well-known header field X-WAP-Application-Id in the default code page.
const FIELD_APPLICATION_ID: u8 = 0x2f;
/// High bit that marks a one-byte short-integer.
const SHORT_INTEGER_FLAG: u8 = 0x80;
/// Value prefix 31: a uintvar length follows.
const LENGTH_QUOTE: u8 = 31;
/// Field-name prefix 127: a code-page number follows.
const SHIFT_DELIMITER: u8 = 0x7f;
/// Text prefix 127 for text whose first character has the high bit set.
const TEXT_QUOTE: u8 = 0x7f;
/// Header field names are interpreted in code page 1 unless shifted.
const DEFAULT_CODE_PAGE: u8 = 1;

/// Why bytes are not a WAP Push carrying a DM notification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WspError {
    #[error("push PDU is cut short: {0}")]
    Truncated(&'static str),
    #[error("WSP PDU type is 0x{0:02x}; a DM notification comes as a Push PDU (0x06)")]
    NotAPush(u8),
    #[error("malformed uintvar in the {0}")]
    InvalidUintvar(&'static str),
    #[error("push headers are {length} bytes; Appendix D.1 allows at most 48")]
    HeadersTooLong { length: usize },
    #[error("push headers claim {length} bytes but only {available} follow")]
    HeadersPastEnd { length: usize, available: usize },
    #[error("content type is {0}; a DM notification is 0x58 (application/vnd.syncml.dm.notification)")]
    WrongContentType(String),
    #[error("push has no X-WAP-Application-Id header; a DM notification needs application id 0x07")]
    MissingApplicationId,
    #[error("X-WAP-Application-Id is {0}; a DM notification needs 0x07 (x-wap-application:syncml.dm)")]
    WrongApplicationId(String),
    #[error("malformed push header: {0}")]
    MalformedHeader(&'static str),
}

/// Wraps a Package#0 in a connectionless WSP Push PDU (see the module example).
pub fn wrap_push(package: &[u8], transaction_id: u8) -> Vec<u8> {
    let mut pdu = Vec::with_capacity(6 + package.len());
    pdu.extend_from_slice(&[
        transaction_id,
        PDU_TYPE_PUSH,
        3,
        SHORT_INTEGER_FLAG | CONTENT_TYPE_CODE,
        SHORT_INTEGER_FLAG | FIELD_APPLICATION_ID,
        SHORT_INTEGER_FLAG | APPLICATION_ID,
    ]);
    pdu.extend_from_slice(package);
    pdu
}

/// Checks a connectionless WSP Push PDU and returns the Package#0 it carries
/// (the bytes after the headers, not yet decoded).
pub fn unwrap_push(pdu: &[u8]) -> Result<&[u8], WspError> {
    let (_transaction_id, rest) = pdu.split_first().ok_or(WspError::Truncated("no transaction id"))?;
    let (pdu_type, rest) = rest.split_first().ok_or(WspError::Truncated("no PDU type"))?;
    if *pdu_type != PDU_TYPE_PUSH {
        return Err(WspError::NotAPush(*pdu_type));
    }
    let (headers_length, rest) = read_uintvar(rest, "headers length")?;
    let headers_length = usize::try_from(headers_length).unwrap_or(usize::MAX);
    if headers_length > MAX_PUSH_HEADER_LENGTH {
        return Err(WspError::HeadersTooLong { length: headers_length });
    }
    let (headers, body) = rest
        .split_at_checked(headers_length)
        .ok_or(WspError::HeadersPastEnd { length: headers_length, available: rest.len() })?;
    let fields = check_content_type(headers)?;
    check_application_id(fields)?;
    Ok(body)
}

/// Reads a WSP uintvar: 7 bits per byte, high bit set on all but the last, at most 5 bytes (32 bits).
fn read_uintvar<'a>(bytes: &'a [u8], what: &'static str) -> Result<(u32, &'a [u8]), WspError> {
    let mut value: u32 = 0;
    let mut rest = bytes;
    for _ in 0..5 {
        let (byte, after) = rest.split_first().ok_or(WspError::Truncated(what))?;
        if value > (u32::MAX >> 7) {
            return Err(WspError::InvalidUintvar(what));
        }
        value = (value << 7) | u32::from(byte & 0x7f);
        rest = after;
        if byte & 0x80 == 0 {
            return Ok((value, rest));
        }
    }
    Err(WspError::InvalidUintvar(what))
}

/// Splits a NUL-terminated text string; returns the text (without NUL) and what follows.
fn read_text<'a>(bytes: &'a [u8], what: &'static str) -> Result<(&'a [u8], &'a [u8]), WspError> {
    let end = bytes.iter().position(|byte| *byte == 0).ok_or(WspError::Truncated(what))?;
    let (text, rest) = bytes.split_at(end);
    Ok((text, rest.get(1..).unwrap_or_default()))
}

/// Strips the WSP quote that precedes text starting with a high-bit character.
fn unquote(text: &[u8]) -> &[u8] {
    match text.split_first() {
        Some((&TEXT_QUOTE, rest)) => rest,
        _ => text,
    }
}

/// Reads one encoded header value (WSP 8.4.1.2) and returns it whole, prefix
/// included, with the bytes after it.
fn read_value<'a>(bytes: &'a [u8], what: &'static str) -> Result<(&'a [u8], &'a [u8]), WspError> {
    let first = *bytes.first().ok_or(WspError::Truncated(what))?;
    let total = match first {
        0..=30 => 1 + usize::from(first),
        LENGTH_QUOTE => {
            let after_quote = bytes.get(1..).unwrap_or_default();
            let (length, after_length) = read_uintvar(after_quote, what)?;
            let prefix = bytes.len() - after_length.len();
            prefix.saturating_add(usize::try_from(length).unwrap_or(usize::MAX))
        }
        32..=127 => bytes.iter().position(|byte| *byte == 0).ok_or(WspError::Truncated(what))? + 1,
        _ => 1,
    };
    bytes.split_at_checked(total).ok_or(WspError::Truncated(what))
}

/// The length-prefixed data of a general-form value (prefix 0-31), or `None` for other forms.
fn general_form_data(value: &[u8]) -> Option<&[u8]> {
    let (first, rest) = value.split_first()?;
    match *first {
        0..=30 => Some(rest),
        LENGTH_QUOTE => read_uintvar(rest, "value length").ok().map(|(_, data)| data),
        _ => None,
    }
}

/// Reads a WSP Integer-value at the start of `bytes`: a short-integer or a
/// long-integer (length 1-30 then big-endian bytes). `None` when it is not an
/// integer or does not fit 64 bits.
fn read_integer(bytes: &[u8]) -> Option<u64> {
    let (first, rest) = bytes.split_first()?;
    if first & SHORT_INTEGER_FLAG != 0 {
        return Some(u64::from(first & 0x7f));
    }
    if !(1..=30).contains(first) {
        return None;
    }
    let digits = rest.get(..usize::from(*first))?;
    let significant = digits.iter().skip_while(|byte| **byte == 0).count();
    if significant > 8 {
        return None;
    }
    Some(digits.iter().fold(0u64, |value, byte| (value << 8) | u64::from(*byte)))
}

/// Checks that the headers start with the DM notification content type and returns the header fields after it.
fn check_content_type(headers: &[u8]) -> Result<&[u8], WspError> {
    if headers.is_empty() {
        return Err(WspError::Truncated("no content type"));
    }
    let (value, fields) = read_value(headers, "content type")?;
    // The general form wraps the media type (and parameters, ignored) in a length.
    let media = general_form_data(value).unwrap_or(value);
    let first = *media.first().ok_or(WspError::WrongContentType("empty".into()))?;
    if (32..SHORT_INTEGER_FLAG).contains(&first) {
        let (text, _) = read_text(media, "content type")?;
        let text = unquote(text);
        if text.eq_ignore_ascii_case(CONTENT_TYPE_TEXT.as_bytes()) {
            return Ok(fields);
        }
        return Err(WspError::WrongContentType(format!("{:?}", String::from_utf8_lossy(text))));
    }
    if read_integer(media) == Some(u64::from(CONTENT_TYPE_CODE)) {
        return Ok(fields);
    }
    Err(WspError::WrongContentType(describe_integer(media)))
}

/// Walks the header fields after the content type and checks the first X-WAP-Application-Id.
fn check_application_id(mut fields: &[u8]) -> Result<(), WspError> {
    let mut code_page = DEFAULT_CODE_PAGE;
    while let Some((&first, after_first)) = fields.split_first() {
        match first {
            SHIFT_DELIMITER => {
                let (page, rest) = after_first.split_first().ok_or(WspError::Truncated("code page shift"))?;
                code_page = *page;
                fields = rest;
            }
            1..=31 => {
                code_page = first;
                fields = after_first;
            }
            0 => {
                return Err(WspError::MalformedHeader("header field name starts with a NUL byte"));
            }
            0x80..=0xff => {
                let (value, rest) = read_value(after_first, "header value")?;
                if code_page == DEFAULT_CODE_PAGE && first & 0x7f == FIELD_APPLICATION_ID {
                    return check_application_id_value(value);
                }
                fields = rest;
            }
            _ => {
                let (name, after_name) = read_text(fields, "header name")?;
                let (value, rest) = read_value(after_name, "header value")?;
                if name.eq_ignore_ascii_case(b"X-WAP-Application-Id") {
                    return check_application_id_value(value);
                }
                fields = rest;
            }
        }
    }
    Err(WspError::MissingApplicationId)
}

/// Application-id-value = Uri-value | App-assigned-code (an Integer-value).
fn check_application_id_value(value: &[u8]) -> Result<(), WspError> {
    let first = *value.first().ok_or(WspError::MalformedHeader("empty X-WAP-Application-Id"))?;
    if (32..SHORT_INTEGER_FLAG).contains(&first) {
        let (text, _) = read_text(value, "application id")?;
        let text = unquote(text);
        if text.eq_ignore_ascii_case(APPLICATION_ID_URI.as_bytes()) {
            return Ok(());
        }
        return Err(WspError::WrongApplicationId(format!("{:?}", String::from_utf8_lossy(text))));
    }
    if read_integer(value) == Some(u64::from(APPLICATION_ID)) {
        return Ok(());
    }
    Err(WspError::WrongApplicationId(describe_integer(value)))
}

/// Human form of an integer value for error messages: `0x44`, or the raw bytes when it is no integer.
fn describe_integer(value: &[u8]) -> String {
    match read_integer(value) {
        Some(number) => format!("0x{number:02x}"),
        None => format!("the bytes {}", value.iter().map(|byte| format!("{byte:02x}")).collect::<Vec<_>>().join(" ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PACKAGE: &[u8] = &[0x20, 0x80, 0x10, 0x03, b's', b'r', b'v'];

    fn pdu(headers: &[u8]) -> Vec<u8> {
        let mut pdu = vec![0x01, PDU_TYPE_PUSH, headers.len() as u8];
        pdu.extend_from_slice(headers);
        pdu.extend_from_slice(PACKAGE);
        pdu
    }

    #[test]
    fn wrap_writes_the_documented_bytes() {
        let wrapped = wrap_push(PACKAGE, 0x01);
        assert_eq!(hex::encode(&wrapped), "010603d8af87208010037372 76".replace(' ', ""));
        assert_eq!(unwrap_push(&wrapped), Ok(PACKAGE));
    }

    #[test]
    fn textual_and_general_forms_are_accepted() {
        let mut text_type = b"application/vnd.syncml.dm.notification\0".to_vec();
        text_type.extend([0xaf, 0x87]);
        assert_eq!(unwrap_push(&pdu(&text_type)), Ok(PACKAGE));

        let mut upper = b"Application/VND.SyncML.DM.Notification\0".to_vec();
        upper.extend([0xaf, 0x87]);
        assert_eq!(unwrap_push(&pdu(&upper)), Ok(PACKAGE));

        // General form: length 3, media 0xd8, a charset parameter (0x81 = utf-8 code 0xea) ignored.
        assert_eq!(unwrap_push(&pdu(&[0x03, 0xd8, 0x81, 0xea, 0xaf, 0x87])), Ok(PACKAGE));
        // Media as a long integer (length 1, 0x58), application id as a long integer.
        assert_eq!(unwrap_push(&pdu(&[0x02, 0x01, 0x58, 0xaf, 0x01, 0x07])), Ok(PACKAGE));
        // Application id as its URI, after an unrelated well-known header and an application header.
        let mut headers = vec![0xd8, 0x8d, 0x85];
        headers.extend(b"X-Extra\0yes\0");
        headers.push(0xaf);
        headers.extend(b"x-wap-application:syncml.dm\0");
        assert_eq!(unwrap_push(&pdu(&headers)), Ok(PACKAGE));
        // Application id as a textual application header.
        let mut named = vec![0xd8];
        named.extend(b"X-WAP-Application-Id\0");
        named.push(0x87);
        assert_eq!(unwrap_push(&pdu(&named)), Ok(PACKAGE));
    }

    #[test]
    fn long_uintvar_header_length() {
        // HeadersLen 3 written in two bytes (0x80 0x03) is still 3.
        let mut long_form = vec![0x01, PDU_TYPE_PUSH, 0x80, 0x03, 0xd8, 0xaf, 0x87];
        long_form.extend_from_slice(PACKAGE);
        assert_eq!(unwrap_push(&long_form), Ok(PACKAGE));
    }

    #[test]
    fn wrong_pushes_are_refused_with_reasons() {
        assert_eq!(unwrap_push(&[]), Err(WspError::Truncated("no transaction id")));
        assert_eq!(unwrap_push(&[0x01]), Err(WspError::Truncated("no PDU type")));
        assert_eq!(unwrap_push(&[0x01, 0x07, 0x03]), Err(WspError::NotAPush(0x07)));
        assert_eq!(unwrap_push(&[0x01, 0x06]), Err(WspError::Truncated("headers length")));
        assert_eq!(
            unwrap_push(&[0x01, 0x06, 0xff, 0xff, 0xff, 0xff, 0x7f]),
            Err(WspError::InvalidUintvar("headers length"))
        );
        assert_eq!(
            unwrap_push(&[0x01, 0x06, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]),
            Err(WspError::InvalidUintvar("headers length"))
        );
        // 48 bytes: content type, 21 two-byte headers, one three-byte header, then the application id.
        let mut at_limit = vec![0xd8];
        for _ in 0..21 {
            at_limit.extend([0x8d, 0x85]);
        }
        at_limit.extend([0x8d, 0x01, 0x05, 0xaf, 0x87]);
        assert_eq!(at_limit.len(), 48);
        assert_eq!(unwrap_push(&pdu(&at_limit)), Ok(PACKAGE));
        let mut too_long = at_limit.clone();
        too_long.insert(1, 0x80);
        too_long.insert(1, 0x8d);
        too_long.pop();
        assert_eq!(unwrap_push(&pdu(&too_long)), Err(WspError::HeadersTooLong { length: 49 }));
        assert_eq!(
            unwrap_push(&[0x01, 0x06, 0x05, 0xd8, 0xaf]),
            Err(WspError::HeadersPastEnd { length: 5, available: 2 })
        );
        assert_eq!(unwrap_push(&pdu(&[0xc4, 0xaf, 0x87])), Err(WspError::WrongContentType("0x44".into())));
        assert_eq!(
            unwrap_push(&pdu(b"text/plain\0\xaf\x87")),
            Err(WspError::WrongContentType("\"text/plain\"".into()))
        );
        assert_eq!(unwrap_push(&pdu(&[0xd8])), Err(WspError::MissingApplicationId));
        assert_eq!(unwrap_push(&pdu(&[0xd8, 0x8d, 0x85])), Err(WspError::MissingApplicationId));
        assert_eq!(unwrap_push(&pdu(&[0xd8, 0x8d, 0x05])), Err(WspError::Truncated("header value")));
        assert_eq!(unwrap_push(&pdu(&[0xd8, 0xaf, 0x84])), Err(WspError::WrongApplicationId("0x04".into())));
        // 0x2f in another code page is not the application id.
        assert_eq!(unwrap_push(&pdu(&[0xd8, 0x7f, 0x02, 0xaf, 0x87])), Err(WspError::MissingApplicationId));
        assert_eq!(unwrap_push(&pdu(&[])), Err(WspError::Truncated("no content type")));
        assert_eq!(
            unwrap_push(&pdu(&[0xd8, 0x00])),
            Err(WspError::MalformedHeader("header field name starts with a NUL byte"))
        );
    }

    #[test]
    fn unwrap_returns_the_body_even_when_empty() {
        assert_eq!(unwrap_push(&[0x00, 0x06, 0x03, 0xd8, 0xaf, 0x87]), Ok(&[][..]));
    }
}
