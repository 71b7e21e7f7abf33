//! Appendix E: a Package#3 whose GETs returned data travels as `multipart/form-data`, one part per GET result.
//!
//! ```text
//! Content-Type: multipart/form-data; boundary=simple_boundary
//!
//! --simple_boundary
//! Content-Disposition: form-data
//! Content-Type: application/vnd.oma.dm.response+json
//!
//! {"Status":[[200],[404],[200]]}
//! --simple_boundary
//! Content-Disposition: form-data; name="1"
//! Content-Type: text/plain
//!
//! IMEI:493005100592800
//! --simple_boundary
//! Content-Disposition: form-data; name="3"
//! Content-Type: application/dmmo+json
//!
//! {"ClientURI": "urn:oma:mo:oma-sessioninfomo:1.0//", "MOData": {...}}
//! --simple_boundary--
//! ```
//!
//! (Lines end in CRLF on the wire, as RFC 2046 requires.) The first part is
//! the Package#3; every other part is named by the 1-based position of its
//! GET in the Package#2 and holds that GET's data. Without any GET data the
//! Package#3 is sent plain ([`encode_response`] and [`decode_response`]
//! handle both forms).
//!
//! Decisions where Appendix E is silent:
//! - The boundary is the caller's ([`derive_boundary`] makes a deterministic
//!   one): this crate has no random source.
//! - The first part is the Package#3 when its Content-Type is the Package#3
//!   media type or absent; its name, if any, is ignored.
//! - A GET part without Content-Type is `text/plain` (RFC 7578 4.4).
//! - Part names are decimal digits; leading zeros are tolerated, so `"01"`
//!   and `"1"` are the same (duplicate) part.
//! - A part is refused when its status is not exactly 200 (Appendix E embeds
//!   data "for the GET command with the status code 200 OK").
//!
//! Parsing uses the `multer` crate, driven to completion over the in-memory
//! body with `futures_executor::block_on`: no async runtime is involved.

use std::convert::Infallible;
use std::fmt::Write as _;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::command::Command;
use crate::package::media::{MULTIPART_FORM_DATA, RESPONSE_JSON, is_media_type};
use crate::package::{PackageError, ParseLimits, ResponsePackage};
use crate::status::StatusCode;

/// The data one successful GET returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetResultPart {
    /// 1-based position of the GET in the Package#2; the part's `name`.
    pub position: usize,
    /// The part's Content-Type: a leaf's own media type, or `application/dmmo+json`.
    pub content_type: String,
    /// The data, as sent.
    pub body: Bytes,
}

/// A Package#3 with the GET results that came with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultipartResponse {
    /// The statuses and alerts.
    pub package: ResponsePackage,
    /// The GET results, in the order of the body.
    pub parts: Vec<GetResultPart>,
}

/// An HTTP body and the Content-Type header value to send it with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedBody {
    /// E.g. `multipart/form-data; boundary=omadm-3f1c...`.
    pub content_type: String,
    pub body: Vec<u8>,
}

/// Bounds on what [`decode_response`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MultipartLimits {
    /// Whole body. Default 16 MiB.
    pub max_body_bytes: u64,
    /// Any one part. Default 8 MiB.
    pub max_part_bytes: u64,
    /// The Package#3 part (its size and JSON depth). Default [`ParseLimits::DEFAULT`].
    pub package: ParseLimits,
}

impl MultipartLimits {
    /// 16 MiB body, 8 MiB per part, default package limits.
    pub const DEFAULT: MultipartLimits =
        MultipartLimits { max_body_bytes: 16 << 20, max_part_bytes: 8 << 20, package: ParseLimits::DEFAULT };
}

impl Default for MultipartLimits {
    fn default() -> Self {
        MultipartLimits::DEFAULT
    }
}

/// Why a multipart Package#3 was refused, or could not be built. Positions are 1-based.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MultipartError {
    #[error("Content-Type {0:?} is neither {RESPONSE_JSON} nor multipart/form-data")]
    UnsupportedContentType(String),
    #[error("Content-Type {0:?} has no usable boundary parameter")]
    MissingBoundary(String),
    #[error(
        "invalid boundary {0:?}: RFC 2046 allows 1-70 letters, digits and '()+_,-./:=? and space, not ending in a space"
    )]
    InvalidBoundary(String),
    #[error("the boundary occurs inside the content: choose another one")]
    BoundaryInContent,
    #[error("body is over the limit of {limit} bytes")]
    BodyTooLarge { limit: u64 },
    #[error("a part is over the limit of {limit} bytes")]
    PartTooLarge { limit: u64 },
    #[error("malformed multipart body: {0}")]
    Malformed(String),
    #[error("the multipart body has no part: the first part must be the Package#3")]
    NoPackagePart,
    #[error("the first part must be the Package#3 ({RESPONSE_JSON}), found Content-Type {0:?}")]
    FirstPartNotPackage(String),
    #[error("Package#3 part: {0}")]
    Package(PackageError),
    #[error("part {index} of the body has no name: GET results are named by their command position")]
    MissingPartName { index: usize },
    #[error("part name {0:?} is not a positive integer")]
    InvalidPartName(String),
    #[error("Content-Type of the part for command {position} is not a usable header value: {content_type:?}")]
    InvalidPartContentType { position: usize, content_type: String },
    #[error("two parts for command {position}")]
    DuplicatePart { position: usize },
    #[error("part for command {position}, but the Package#3 has only {statuses} statuses")]
    PartBeyondStatuses { position: usize, statuses: usize },
    #[error("part for command {position}, whose status is {code}: only a 200 GET carries data")]
    PartForNon200Status { position: usize, code: u16 },
    #[error("part for command {position}, which is {command}, not GET")]
    PartNotForGet { position: usize, command: &'static str },
    #[error("GET at position {position} answered 200 but no part carries its data")]
    MissingGetResult { position: usize },
    #[error("the Package#3 has {statuses} statuses for the {commands} commands of the Package#2")]
    StatusCountMismatch { statuses: usize, commands: usize },
}

impl MultipartError {
    /// The status a server answers a refused Package#3 with: 415 for a body
    /// that is not a Package#3 at all, 500 when building our own body failed,
    /// the package's status for a bad Package#3 part, 400 otherwise.
    pub fn status_code(&self) -> StatusCode {
        match self {
            MultipartError::UnsupportedContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            MultipartError::InvalidBoundary(_) | MultipartError::BoundaryInContent => StatusCode::INTERNAL_ERROR,
            MultipartError::Package(error) => error.status_code(),
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

impl GetResultPart {
    /// The data of the GET at 1-based `position`.
    pub fn new(position: usize, content_type: impl Into<String>, body: impl Into<Bytes>) -> Self {
        GetResultPart { position, content_type: content_type.into(), body: body.into() }
    }
}

/// A boundary derived from the parts' content: the same parts give the same
/// boundary, and content that contains it is as unlikely as a SHA-256
/// collision. [`encode_response`] still checks.
pub fn derive_boundary(parts: &[GetResultPart]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.position.to_be_bytes());
        hasher.update(part.content_type.as_bytes());
        hasher.update((part.body.len() as u64).to_be_bytes());
        hasher.update(&part.body);
    }
    let digest = hasher.finalize();
    let mut boundary = String::from("omadm-");
    for byte in digest.iter().take(16) {
        // Writing to a String cannot fail.
        let _ = write!(boundary, "{byte:02x}");
    }
    boundary
}

/// The HTTP body of a Package#3: plain JSON when `parts` is empty, otherwise
/// multipart/form-data with `boundary` (Appendix E). Every part must name a
/// distinct status 200 of `package`.
pub fn encode_response(
    package: &ResponsePackage,
    parts: &[GetResultPart],
    boundary: &str,
) -> Result<EncodedBody, MultipartError> {
    let package_json = package.to_json_bytes().map_err(MultipartError::Package)?;
    if parts.is_empty() {
        return Ok(EncodedBody { content_type: RESPONSE_JSON.to_owned(), body: package_json });
    }
    check_boundary(boundary)?;
    let mut seen = vec![false; package.statuses.len()];
    for part in parts {
        check_part_position(package, &mut seen, part.position)?;
        if !is_header_value(&part.content_type) {
            return Err(MultipartError::InvalidPartContentType {
                position: part.position,
                content_type: part.content_type.clone(),
            });
        }
    }
    let delimiter = format!("--{boundary}");
    let contents = std::iter::once(package_json.as_slice()).chain(parts.iter().map(|part| part.body.as_ref()));
    if contents.clone().any(|content| contains(content, delimiter.as_bytes())) {
        return Err(MultipartError::BoundaryInContent);
    }

    let mut body = Vec::with_capacity(contents.map(<[u8]>::len).sum::<usize>() + 160 * (parts.len() + 1));
    write_part_head(&mut body, &delimiter, None, RESPONSE_JSON);
    body.extend_from_slice(&package_json);
    for part in parts {
        body.extend_from_slice(b"\r\n");
        write_part_head(&mut body, &delimiter, Some(part.position), &part.content_type);
        body.extend_from_slice(&part.body);
    }
    body.extend_from_slice(b"\r\n");
    body.extend_from_slice(delimiter.as_bytes());
    body.extend_from_slice(b"--\r\n");
    Ok(EncodedBody { content_type: multipart_content_type(boundary), body })
}

fn write_part_head(body: &mut Vec<u8>, delimiter: &str, position: Option<usize>, content_type: &str) {
    let disposition = match position {
        Some(position) => format!("form-data; name=\"{position}\""),
        None => "form-data".to_owned(),
    };
    let head = format!("{delimiter}\r\nContent-Disposition: {disposition}\r\nContent-Type: {content_type}\r\n\r\n");
    body.extend_from_slice(head.as_bytes());
}

/// `multipart/form-data; boundary=...`, quoting the boundary when it holds
/// characters a bare header token may not (RFC 2045 5.1).
fn multipart_content_type(boundary: &str) -> String {
    let is_token = boundary.chars().all(|c| c.is_ascii_alphanumeric() || "'+_-.".contains(c));
    if is_token {
        format!("{MULTIPART_FORM_DATA}; boundary={boundary}")
    } else {
        format!("{MULTIPART_FORM_DATA}; boundary=\"{boundary}\"")
    }
}

fn check_boundary(boundary: &str) -> Result<(), MultipartError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "'()+_,-./:=? ".contains(c);
    let length_ok = (1..=70).contains(&boundary.len());
    if !length_ok || !boundary.chars().all(allowed) || boundary.ends_with(' ') {
        return Err(MultipartError::InvalidBoundary(boundary.to_owned()));
    }
    Ok(())
}

fn is_header_value(text: &str) -> bool {
    !text.trim().is_empty() && text.bytes().all(|byte| byte == b'\t' || (b' '..=b'~').contains(&byte))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|window| window == needle)
}

/// The checks a GET part's position must pass, when building and when
/// parsing: a status exists there, it is 200, and no other part took it.
fn check_part_position(package: &ResponsePackage, seen: &mut [bool], position: usize) -> Result<(), MultipartError> {
    let statuses = package.statuses.len();
    let status = package.status_at(position).ok_or(MultipartError::PartBeyondStatuses { position, statuses })?;
    if status.code != StatusCode::OK {
        return Err(MultipartError::PartForNon200Status { position, code: status.code.as_u16() });
    }
    match position.checked_sub(1).and_then(|index| seen.get_mut(index)) {
        Some(taken) if *taken => Err(MultipartError::DuplicatePart { position }),
        Some(taken) => {
            *taken = true;
            Ok(())
        }
        None => Err(MultipartError::PartBeyondStatuses { position, statuses }),
    }
}

/// Reads a Package#3 body given its Content-Type header: plain
/// `application/vnd.oma.dm.response+json`, or multipart/form-data with GET
/// results (Appendix E).
pub fn decode_response(
    content_type: &str,
    body: &[u8],
    limits: &MultipartLimits,
) -> Result<MultipartResponse, MultipartError> {
    if is_media_type(content_type, RESPONSE_JSON) {
        let package = ResponsePackage::parse(body, &limits.package).map_err(MultipartError::Package)?;
        return Ok(MultipartResponse { package, parts: Vec::new() });
    }
    if !is_media_type(content_type, MULTIPART_FORM_DATA) {
        return Err(MultipartError::UnsupportedContentType(content_type.to_owned()));
    }
    let boundary =
        multer::parse_boundary(content_type).map_err(|_| MultipartError::MissingBoundary(content_type.to_owned()))?;
    if boundary.is_empty() {
        return Err(MultipartError::MissingBoundary(content_type.to_owned()));
    }
    if body.len() as u64 > limits.max_body_bytes {
        return Err(MultipartError::BodyTooLarge { limit: limits.max_body_bytes });
    }
    futures_executor::block_on(read_parts(boundary, Bytes::copy_from_slice(body), limits))
}

async fn read_parts(
    boundary: String,
    body: Bytes,
    limits: &MultipartLimits,
) -> Result<MultipartResponse, MultipartError> {
    let stream = futures_util::stream::once(futures_util::future::ready(Ok::<Bytes, Infallible>(body)));
    let size_limit = multer::SizeLimit::new().whole_stream(limits.max_body_bytes).per_field(limits.max_part_bytes);
    let mut multipart =
        multer::Multipart::with_constraints(stream, boundary, multer::Constraints::new().size_limit(size_limit));

    let first = multipart.next_field().await.map_err(from_multer)?.ok_or(MultipartError::NoPackagePart)?;
    let first_type = header_text(&first, "content-type");
    if let Some(content_type) = first_type.filter(|content_type| !is_media_type(content_type, RESPONSE_JSON)) {
        return Err(MultipartError::FirstPartNotPackage(content_type.to_owned()));
    }
    let package_bytes = first.bytes().await.map_err(from_multer)?;
    let package = ResponsePackage::parse(&package_bytes, &limits.package).map_err(MultipartError::Package)?;

    let mut seen = vec![false; package.statuses.len()];
    let mut parts = Vec::new();
    // 1-based index of the part in the body, the Package#3 being 1.
    let mut index = 1;
    while let Some(field) = multipart.next_field().await.map_err(from_multer)? {
        index += 1;
        let name = field.name().ok_or(MultipartError::MissingPartName { index })?;
        let position = parse_part_name(name)?;
        check_part_position(&package, &mut seen, position)?;
        let content_type = match field.headers().get("content-type") {
            None => "text/plain".to_owned(),
            Some(value) => match value.to_str() {
                Ok(text) if is_header_value(text) => text.trim().to_owned(),
                _ => {
                    let content_type = String::from_utf8_lossy(value.as_bytes()).into_owned();
                    return Err(MultipartError::InvalidPartContentType { position, content_type });
                }
            },
        };
        let body = field.bytes().await.map_err(from_multer)?;
        parts.push(GetResultPart { position, content_type, body });
    }
    Ok(MultipartResponse { package, parts })
}

fn header_text<'f>(field: &'f multer::Field<'_>, name: &str) -> Option<&'f str> {
    field.headers().get(name).map(|value| value.to_str().unwrap_or("<not text>"))
}

fn parse_part_name(name: &str) -> Result<usize, MultipartError> {
    let invalid = || MultipartError::InvalidPartName(name.to_owned());
    if name.is_empty() || !name.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(invalid());
    }
    match name.parse::<usize>() {
        Ok(position) if position > 0 => Ok(position),
        _ => Err(invalid()),
    }
}

fn from_multer(error: multer::Error) -> MultipartError {
    match error {
        multer::Error::StreamSizeExceeded { limit } => MultipartError::BodyTooLarge { limit },
        multer::Error::FieldSizeExceeded { limit, .. } => MultipartError::PartTooLarge { limit },
        other => MultipartError::Malformed(other.to_string()),
    }
}

impl MultipartResponse {
    /// Checks the parts against the Package#2 they answer: the counts match,
    /// every part names a GET, and every GET answered 200 has its part.
    pub fn check_against_request(&self, commands: &[Command]) -> Result<(), MultipartError> {
        let statuses = self.package.statuses.len();
        if statuses != commands.len() {
            return Err(MultipartError::StatusCountMismatch { statuses, commands: commands.len() });
        }
        for part in &self.parts {
            let position = part.position;
            match position.checked_sub(1).and_then(|index| commands.get(index)) {
                Some(command) if command.is_get() => {}
                Some(command) => {
                    return Err(MultipartError::PartNotForGet { position, command: command.name() });
                }
                None => return Err(MultipartError::PartBeyondStatuses { position, statuses }),
            }
        }
        let answered_get =
            commands.iter().zip(&self.package.statuses).enumerate().find(|(index, (command, status))| {
                command.is_get()
                    && status.code == StatusCode::OK
                    && !self.parts.iter().any(|part| part.position == index + 1)
            });
        match answered_get {
            Some((index, _)) => Err(MultipartError::MissingGetResult { position: index + 1 }),
            None => Ok(()),
        }
    }

    /// The data returned for the GET at 1-based `position`.
    pub fn part_for(&self, position: usize) -> Option<&GetResultPart> {
        self.parts.iter().find(|part| part.position == position)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::package::CommandStatus;

    fn package(codes: &[StatusCode]) -> ResponsePackage {
        ResponsePackage::new(codes.iter().copied().map(CommandStatus::new).collect())
    }

    fn decode(content_type: &str, body: &[u8]) -> Result<MultipartResponse, MultipartError> {
        decode_response(content_type, body, &MultipartLimits::default())
    }

    #[test]
    fn builds_the_appendix_e_layout_with_crlf() {
        let package = package(&[StatusCode::OK, StatusCode::NOT_FOUND]);
        let parts = [GetResultPart::new(1, "text/plain", "IMEI:493005100592800")];
        let encoded = encode_response(&package, &parts, "simple_boundary").unwrap();
        assert_eq!(encoded.content_type, "multipart/form-data; boundary=simple_boundary");
        let expected = "--simple_boundary\r\n\
            Content-Disposition: form-data\r\n\
            Content-Type: application/vnd.oma.dm.response+json\r\n\r\n\
            {\"Status\":[[200],[404]]}\r\n\
            --simple_boundary\r\n\
            Content-Disposition: form-data; name=\"1\"\r\n\
            Content-Type: text/plain\r\n\r\n\
            IMEI:493005100592800\r\n\
            --simple_boundary--\r\n";
        assert_eq!(String::from_utf8(encoded.body.clone()).unwrap(), expected);
        let decoded = decode(&encoded.content_type, &encoded.body).unwrap();
        assert_eq!(decoded, MultipartResponse { package, parts: parts.to_vec() });
    }

    #[test]
    fn without_parts_the_package_goes_plain() {
        let package = package(&[StatusCode::NOT_FOUND, StatusCode::NOT_MODIFIED]);
        let encoded = encode_response(&package, &[], "unused").unwrap();
        assert_eq!(encoded.content_type, RESPONSE_JSON);
        assert_eq!(encoded.body, br#"{"Status":[[404],[304]]}"#);
        assert_eq!(decode(RESPONSE_JSON, &encoded.body), Ok(MultipartResponse { package, parts: vec![] }));
    }

    #[test]
    fn build_refuses_parts_the_package_does_not_allow() {
        let package = package(&[StatusCode::OK, StatusCode::NOT_FOUND]);
        let build = |parts: &[GetResultPart], boundary: &str| encode_response(&package, parts, boundary).err();
        let part = |position| GetResultPart::new(position, "text/plain", "x");
        assert_eq!(build(&[part(2)], "b"), Some(MultipartError::PartForNon200Status { position: 2, code: 404 }));
        assert_eq!(build(&[part(3)], "b"), Some(MultipartError::PartBeyondStatuses { position: 3, statuses: 2 }));
        assert_eq!(build(&[part(0)], "b"), Some(MultipartError::PartBeyondStatuses { position: 0, statuses: 2 }));
        assert_eq!(build(&[part(1), part(1)], "b"), Some(MultipartError::DuplicatePart { position: 1 }));
        assert_eq!(build(&[part(1)], ""), Some(MultipartError::InvalidBoundary(String::new())));
        assert_eq!(build(&[part(1)], "ends "), Some(MultipartError::InvalidBoundary("ends ".to_owned())));
        assert_eq!(build(&[part(1)], &"b".repeat(71)), Some(MultipartError::InvalidBoundary("b".repeat(71))));
        let clash = GetResultPart::new(1, "text/plain", "a\r\n--b\r\n");
        assert_eq!(build(&[clash], "b"), Some(MultipartError::BoundaryInContent));
        let bad_type = GetResultPart::new(1, "text/plain\r\nX: y", "x");
        assert!(matches!(build(&[bad_type], "b"), Some(MultipartError::InvalidPartContentType { position: 1, .. })));
        assert_eq!(build(&[part(1)], "b").map(|error| error.status_code()), None);
        assert_eq!(MultipartError::BoundaryInContent.status_code(), 500);
    }

    #[test]
    fn quotes_boundaries_that_are_not_tokens_and_parses_them_back() {
        let package = package(&[StatusCode::OK]);
        let parts = [GetResultPart::new(1, "application/dmmo+json", "{}")];
        let encoded = encode_response(&package, &parts, "a b:c").unwrap();
        assert_eq!(encoded.content_type, "multipart/form-data; boundary=\"a b:c\"");
        assert_eq!(decode(&encoded.content_type, &encoded.body).map(|response| response.parts), Ok(parts.to_vec()));
    }

    #[test]
    fn derived_boundaries_are_deterministic_and_content_dependent() {
        let one = [GetResultPart::new(1, "text/plain", "a")];
        let other = [GetResultPart::new(1, "text/plain", "b")];
        assert_eq!(derive_boundary(&one), derive_boundary(&one));
        assert_ne!(derive_boundary(&one), derive_boundary(&other));
        assert_eq!(derive_boundary(&one).len(), "omadm-".len() + 32);
        assert_eq!(check_boundary(&derive_boundary(&one)), Ok(()));
    }

    fn body(parts: &[(&str, &str)]) -> Vec<u8> {
        let mut body = String::new();
        for (headers, content) in parts {
            body.push_str(&format!("--B\r\n{headers}\r\n\r\n{content}\r\n"));
        }
        body.push_str("--B--\r\n");
        body.into_bytes()
    }

    const PACKAGE_HEAD: &str = "Content-Disposition: form-data\r\nContent-Type: application/vnd.oma.dm.response+json";
    const CONTENT_TYPE: &str = "multipart/form-data; boundary=B";

    #[test]
    fn parse_refuses_bad_headers_and_structure() {
        assert_eq!(decode("text/plain", b"x"), Err(MultipartError::UnsupportedContentType("text/plain".to_owned())));
        assert_eq!(decode("text/plain", b"x").map_err(|error| u16::from(error.status_code())), Err(415));
        assert_eq!(
            decode("multipart/form-data", b"x"),
            Err(MultipartError::MissingBoundary("multipart/form-data".to_owned()))
        );
        assert_eq!(decode(CONTENT_TYPE, b"--B--\r\n"), Err(MultipartError::NoPackagePart));
        assert!(matches!(decode(CONTENT_TYPE, b"no boundary here"), Err(MultipartError::Malformed(_))));
        let first_is_data = body(&[("Content-Disposition: form-data; name=\"1\"\r\nContent-Type: text/plain", "x")]);
        assert_eq!(
            decode(CONTENT_TYPE, &first_is_data),
            Err(MultipartError::FirstPartNotPackage("text/plain".to_owned()))
        );
        let bad_json = body(&[(PACKAGE_HEAD, "{\"Status\": 1}")]);
        assert!(matches!(
            decode(CONTENT_TYPE, &bad_json),
            Err(MultipartError::Package(PackageError::WrongFieldType { field: "Status", .. }))
        ));
    }

    #[test]
    fn parse_refuses_bad_part_names() {
        let statuses = r#"{"Status": [200, 404, 200]}"#;
        let with_part = |disposition: &str| {
            let head = format!("Content-Disposition: {disposition}\r\nContent-Type: text/plain");
            decode(CONTENT_TYPE, &body(&[(PACKAGE_HEAD, statuses), (&head, "x")]))
        };
        assert_eq!(with_part("form-data"), Err(MultipartError::MissingPartName { index: 2 }));
        assert_eq!(with_part("form-data; name=\"first\""), Err(MultipartError::InvalidPartName("first".to_owned())));
        assert_eq!(with_part("form-data; name=\"0\""), Err(MultipartError::InvalidPartName("0".to_owned())));
        assert_eq!(with_part("form-data; name=\"-1\""), Err(MultipartError::InvalidPartName("-1".to_owned())));
        assert_eq!(
            with_part("form-data; name=\"2\""),
            Err(MultipartError::PartForNon200Status { position: 2, code: 404 })
        );
        assert_eq!(
            with_part("form-data; name=\"4\""),
            Err(MultipartError::PartBeyondStatuses { position: 4, statuses: 3 })
        );
        let leading_zero = with_part("form-data; name=\"03\"").map(|response| response.parts);
        assert_eq!(leading_zero, Ok(vec![GetResultPart::new(3, "text/plain", "x")]));
        let twice = body(&[
            (PACKAGE_HEAD, statuses),
            ("Content-Disposition: form-data; name=\"1\"", "x"),
            ("Content-Disposition: form-data; name=\"01\"", "y"),
        ]);
        assert_eq!(decode(CONTENT_TYPE, &twice), Err(MultipartError::DuplicatePart { position: 1 }));
    }

    #[test]
    fn parse_defaults_part_type_and_tolerates_an_untyped_package_part() {
        let parsed = decode(
            CONTENT_TYPE,
            &body(&[
                ("Content-Disposition: form-data", r#"{"Status": [200]}"#),
                ("Content-Disposition: form-data; name=\"1\"", "IMEI:1"),
            ]),
        );
        assert_eq!(parsed.map(|response| response.parts), Ok(vec![GetResultPart::new(1, "text/plain", "IMEI:1")]));
    }

    #[test]
    fn parse_enforces_size_limits() {
        let encoded =
            encode_response(&package(&[StatusCode::OK]), &[GetResultPart::new(1, "text/plain", vec![b'x'; 100])], "B")
                .unwrap();
        let small_parts = MultipartLimits { max_part_bytes: 64, ..MultipartLimits::default() };
        assert_eq!(
            decode_response(&encoded.content_type, &encoded.body, &small_parts),
            Err(MultipartError::PartTooLarge { limit: 64 })
        );
        let small_body = MultipartLimits { max_body_bytes: 64, ..MultipartLimits::default() };
        assert_eq!(
            decode_response(&encoded.content_type, &encoded.body, &small_body),
            Err(MultipartError::BodyTooLarge { limit: 64 })
        );
    }

    #[test]
    fn checks_parts_against_the_commands_sent() {
        let commands: Vec<Command> = [
            serde_json::json!(["GET", "urn:oma:mo:oma-dm-devinfo:1.2//DevID"]),
            serde_json::json!(["HGET", "https://dms.example.com/mo"]),
            serde_json::json!(["GET", "urn:oma:mo:oma-sessioninfomo:1.0//"]),
        ]
        .iter()
        .map(|value| Command::from_json(value).unwrap())
        .collect();
        let response = |codes: &[StatusCode], positions: &[usize]| MultipartResponse {
            package: package(codes),
            parts: positions.iter().map(|&position| GetResultPart::new(position, "text/plain", "x")).collect(),
        };
        let ok = StatusCode::OK;
        assert_eq!(response(&[ok, ok, ok], &[1, 3]).check_against_request(&commands), Ok(()));
        assert_eq!(response(&[ok, ok, StatusCode::NOT_FOUND], &[1]).check_against_request(&commands), Ok(()));
        assert_eq!(
            response(&[ok, ok, ok], &[1, 2, 3]).check_against_request(&commands),
            Err(MultipartError::PartNotForGet { position: 2, command: "HGET" })
        );
        assert_eq!(
            response(&[ok, ok, ok], &[1]).check_against_request(&commands),
            Err(MultipartError::MissingGetResult { position: 3 })
        );
        assert_eq!(
            response(&[ok, ok], &[1]).check_against_request(&commands),
            Err(MultipartError::StatusCountMismatch { statuses: 2, commands: 3 })
        );
        assert_eq!(response(&[ok, ok, ok], &[1, 3]).part_for(3).map(|part| part.position), Some(3));
    }
}
