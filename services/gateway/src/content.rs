//! Repository content over HTTP, on both listeners: a request body streamed into the content engine under a size
//! limit and an idle deadline, and an item streamed out with its validators, conditional requests and one range.
//!
//! ```text
//! GET /repo/fw/v2.bin                          -> 200, ETag: "<sha256>", Accept-Ranges: bytes, Content-Length
//! GET ... Range: bytes=1048576-                -> 206, Content-Range: bytes 1048576-67108863/67108864
//! GET ... Range: bytes=1048576- If-Range: "<other etag>"   -> 200 (the item changed: all of it)
//! GET ... If-None-Match: "<sha256>"            -> 304
//! GET ... Range: bytes=99999999-               -> 416, Content-Range: bytes */67108864
//! HEAD ...                                     -> the headers GET would send, no body
//! ```
//!
//! A download holds one chunk of [`omadm_core::content::READ_CHUNK_BYTES`] at a time, whatever the item's size;
//! an interrupted firmware download resumes with a Range and If-Range, as HTTP clients do.

use std::ops::Range;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{BodySize, MessageBody};
use actix_web::http::header::{self, HeaderMap, HttpDate};
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder, web};
use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};
use omadm_core::content::{ContentEngine, ContentError, StoredBlob};
use omadm_core::metrics::metrics;
use omadm_core::model::RepositoryItem;

use crate::HttpError;

/// What a download request gets, decided from the item's validators and the request's conditional headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// 200 with every byte.
    Full,
    /// 206 with these bytes.
    Partial(Range<u64>),
    /// 304: the client's copy is current.
    NotModified,
    /// 416: the range names no byte of the item.
    Unsatisfiable,
}

impl Answer {
    /// The label of `omadm_repository_downloads_total{kind}`.
    fn label(&self) -> &'static str {
        match self {
            Answer::Full => "full",
            Answer::Partial(_) => "partial",
            Answer::NotModified => "not_modified",
            Answer::Unsatisfiable => "unsatisfiable",
        }
    }
}

/// The conditional headers of a download, as text (`None` when absent or not visible ASCII).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Conditions<'a> {
    pub if_none_match: Option<&'a str>,
    pub range: Option<&'a str>,
    pub if_range: Option<&'a str>,
}

impl<'a> Conditions<'a> {
    pub fn of(headers: &'a HeaderMap) -> Self {
        let text = |name: header::HeaderName| headers.get(name).and_then(|value| value.to_str().ok());
        Conditions {
            if_none_match: text(header::IF_NONE_MATCH),
            range: text(header::RANGE),
            if_range: text(header::IF_RANGE),
        }
    }
}

/// The answer to `conditions` for an item of `size` bytes with strong entity tag `etag` (quoted) and
/// `last_modified` (an IMF-fixdate), per RFC 9110 13.2.2: If-None-Match first; then Range, unless an If-Range
/// does not match exactly. A Range that does not parse, or asks for several ranges, is ignored (all bytes, as
/// the RFC allows); one that names no byte is 416.
pub(crate) fn answer(size: u64, etag: &str, last_modified: &str, conditions: &Conditions<'_>) -> Answer {
    if let Some(if_none_match) = conditions.if_none_match {
        let matches = if_none_match
            .split(',')
            .map(str::trim)
            .any(|candidate| candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate) == etag);
        if matches {
            return Answer::NotModified;
        }
    }
    let Some(range) = conditions.range else { return Answer::Full };
    if let Some(validator) = conditions.if_range
        && validator.trim() != etag
        && validator.trim() != last_modified
    {
        return Answer::Full;
    }
    let Ok(parsed) = http_range_header::parse_range_header(range) else { return Answer::Full };
    if parsed.len() != 1 {
        return Answer::Full;
    }
    match parsed.validate(size) {
        Ok(ranges) => match ranges.first() {
            Some(inclusive) => Answer::Partial(*inclusive.start()..inclusive.end().saturating_add(1)),
            // An empty item has no byte to name.
            None => Answer::Unsatisfiable,
        },
        Err(http_range_header::RangeUnsatisfiableError::Unsatisfiable) => Answer::Unsatisfiable,
        Err(_) => Answer::Full,
    }
}

/// The strong entity tag of an item: its SHA-256, quoted.
pub(crate) fn entity_tag(item: &RepositoryItem) -> String {
    format!("\"{}\"", item.sha256)
}

fn last_modified(item: &RepositoryItem) -> HttpDate {
    HttpDate::from(std::time::UNIX_EPOCH + Duration::from_millis(item.stored_at))
}

/// Answers a GET or HEAD of `item`: validators always, then the bytes the request's conditions ask for, streamed
/// from `content`. `extra` headers (the uploading device) go on every answer but 304.
pub(crate) async fn send_item(
    content: &ContentEngine,
    item: &RepositoryItem,
    request: &HttpRequest,
    extra: &[(&'static str, String)],
) -> Result<HttpResponse, HttpError> {
    let etag = entity_tag(item);
    let modified = last_modified(item);
    let answer = answer(item.size, &etag, &modified.to_string(), &Conditions::of(request.headers()));
    metrics().repository_downloads.with_label_values(&[answer.label()]).inc();
    let mut response = match &answer {
        Answer::Full => HttpResponse::Ok(),
        Answer::Partial(_) => HttpResponse::PartialContent(),
        Answer::NotModified => HttpResponse::NotModified(),
        Answer::Unsatisfiable => HttpResponse::RangeNotSatisfiable(),
    };
    response.insert_header((header::ETAG, etag.as_str()));
    response.insert_header((header::LAST_MODIFIED, modified));
    response.insert_header((header::ACCEPT_RANGES, "bytes"));
    let bytes = match answer {
        Answer::NotModified => return Ok(response.finish()),
        Answer::Unsatisfiable => {
            response.insert_header((header::CONTENT_RANGE, format!("bytes */{}", item.size)));
            return Err(unsatisfiable(response, item.size));
        }
        Answer::Full => 0..item.size,
        Answer::Partial(range) => {
            response.insert_header((
                header::CONTENT_RANGE,
                format!("bytes {}-{}/{}", range.start, range.end.saturating_sub(1), item.size),
            ));
            range
        }
    };
    response.insert_header((header::CONTENT_TYPE, item.content_type.as_str()));
    for (name, value) in extra {
        response.insert_header((*name, value.as_str()));
    }
    let length = bytes.end - bytes.start;
    if request.method() == Method::HEAD {
        return Ok(response.body(HeadBody(length)));
    }
    let stream = content.read(&item.blob, bytes).await.map_err(|error| content_failure("read", &error))?;
    Ok(response.no_chunking(length).streaming(Download::new(stream)))
}

/// 416 as an [`HttpError`] (so it has the JSON body of every error) with the headers set so far.
fn unsatisfiable(response: HttpResponseBuilder, size: u64) -> HttpError {
    let mut response = response;
    let built = response.finish();
    let mut error = HttpError::new(
        StatusCode::RANGE_NOT_SATISFIABLE,
        format!("the range names no byte of the content ({size} bytes)"),
    );
    for (name, value) in built.headers() {
        if let Ok(value) = value.to_str() {
            error = error.with_header(name.as_str(), value);
        }
    }
    error
}

/// The body of a HEAD answer: the length GET would send, and no bytes.
struct HeadBody(u64);

impl MessageBody for HeadBody {
    type Error = std::convert::Infallible;

    fn size(&self) -> BodySize {
        BodySize::Sized(self.0)
    }

    fn poll_next(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Bytes, Self::Error>>> {
        Poll::Ready(None)
    }
}

/// A download's bytes on their way out: counted, and the active-downloads gauge held until the stream ends or the
/// client goes away.
struct Download {
    stream: omadm_core::content::ContentStream,
}

impl Download {
    fn new(stream: omadm_core::content::ContentStream) -> Self {
        metrics().repository_downloads_active.inc();
        Download { stream }
    }
}

impl Drop for Download {
    fn drop(&mut self) {
        metrics().repository_downloads_active.dec();
    }
}

impl Stream for Download {
    type Item = Result<Bytes, ContentError>;

    fn poll_next(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let next = self.stream.poll_next_unpin(context);
        match &next {
            Poll::Ready(Some(Ok(chunk))) => {
                metrics().repository_bytes.with_label_values(&["download"]).inc_by(chunk.len() as u64);
            }
            Poll::Ready(Some(Err(error))) => {
                // The head is out: all that is left is to cut the connection, which the client sees as short.
                metrics().content_errors.with_label_values(&["read"]).inc();
                tracing::error!(%error, "a repository download failed half-way");
            }
            _ => {}
        }
        next
    }
}

/// Streams a request body into a new blob of `content`: 413 over `limit` (at once when Content-Length says so),
/// 408 when no byte arrives for `idle` (a large body may take as long as it needs while bytes keep coming), 400
/// when the connection breaks, 503 when the engine fails. Nothing is kept of a refused body.
pub(crate) async fn receive_body(
    content: &ContentEngine,
    request: &HttpRequest,
    payload: web::Payload,
    limit: u64,
    idle: Duration,
) -> Result<StoredBlob, HttpError> {
    let too_large =
        || HttpError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("the body is over the limit of {limit} bytes"));
    if crate::api::body::declared_length(request).is_some_and(|length| length > limit) {
        return Err(too_large());
    }
    let body = IdleDeadline { payload, idle, deadline: None };
    match content.write(body, limit).await {
        Ok(blob) => {
            metrics().repository_bytes.with_label_values(&["upload"]).inc_by(blob.size);
            Ok(blob)
        }
        Err(ContentError::TooLarge { .. }) => Err(too_large()),
        Err(ContentError::Body(reason)) if reason == IDLE_REASON => Err(HttpError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!("no byte of the body arrived for {} ms", idle.as_millis()),
        )),
        Err(ContentError::Body(reason)) => Err(HttpError::bad_request(format!("the body could not be read: {reason}"))),
        Err(other) => Err(content_failure("write", &other)),
    }
}

/// A content engine failure: 503 with Retry-After, counted by operation.
pub(crate) fn content_failure(operation: &'static str, error: &ContentError) -> HttpError {
    metrics().content_errors.with_label_values(&[operation]).inc();
    tracing::error!(%error, operation, "content engine failure");
    match error {
        ContentError::NotFound(_) => {
            HttpError::unavailable("the item's bytes are missing from the content engine; it is being repaired")
        }
        _ => HttpError::unavailable("the content engine is failing; retry later"),
    }
}

/// Drops the blob of an item that was replaced or deleted; a failure leaves an orphan blob, logged and counted.
pub(crate) async fn discard_blob(content: &ContentEngine, key: &str) {
    if let Err(error) = content.delete(key).await {
        metrics().content_errors.with_label_values(&["delete"]).inc();
        tracing::warn!(%error, key, "a replaced repository blob could not be deleted");
    }
}

const IDLE_REASON: &str = "no byte arrived within the body read timeout";

/// A request body that fails with [`IDLE_REASON`] when no chunk arrives for `idle`.
struct IdleDeadline {
    payload: web::Payload,
    idle: Duration,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Stream for IdleDeadline {
    type Item = Result<Bytes, String>;

    fn poll_next(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.payload.poll_next_unpin(context) {
            Poll::Ready(next) => {
                self.deadline = None;
                Poll::Ready(next.map(|chunk| chunk.map_err(|error| error.to_string())))
            }
            Poll::Pending => {
                let idle = self.idle;
                let deadline = self.deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                match deadline.as_mut().poll(context) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(IDLE_REASON.to_owned()))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TAG: &str = "\"abc\"";
    const DATE: &str = "Tue, 01 Dec 2026 10:00:00 GMT";

    fn with(range: Option<&'static str>, if_range: Option<&'static str>) -> Conditions<'static> {
        Conditions { if_none_match: None, range, if_range }
    }

    #[test]
    fn ranges_follow_rfc_9110() {
        assert_eq!(answer(100, TAG, DATE, &Conditions::default()), Answer::Full);
        assert_eq!(answer(100, TAG, DATE, &with(Some("bytes=10-19"), None)), Answer::Partial(10..20));
        assert_eq!(answer(100, TAG, DATE, &with(Some("bytes=90-"), None)), Answer::Partial(90..100));
        assert_eq!(answer(100, TAG, DATE, &with(Some("bytes=-5"), None)), Answer::Partial(95..100));
        assert_eq!(answer(100, TAG, DATE, &with(Some("bytes=50-5000"), None)), Answer::Partial(50..100));
        assert_eq!(answer(100, TAG, DATE, &with(Some("bytes=100-"), None)), Answer::Unsatisfiable);
        assert_eq!(answer(0, TAG, DATE, &with(Some("bytes=0-"), None)), Answer::Unsatisfiable);
        // Not understood, or several ranges: all bytes.
        for ignored in ["bytes=a-b", "items=0-1", "bytes=5-1", "bytes=0-1,5-6", ""] {
            assert_eq!(answer(100, TAG, DATE, &with(Some(ignored), None)), Answer::Full, "{ignored}");
        }
    }

    #[test]
    fn if_range_resumes_only_the_same_content() {
        assert_eq!(answer(100, TAG, DATE, &with(Some("bytes=10-"), Some(TAG))), Answer::Partial(10..100));
        assert_eq!(answer(100, TAG, DATE, &with(Some("bytes=10-"), Some(DATE))), Answer::Partial(10..100));
        assert_eq!(answer(100, TAG, DATE, &with(Some("bytes=10-"), Some("\"other\""))), Answer::Full);
        assert_eq!(answer(100, TAG, DATE, &with(Some("bytes=10-"), Some("W/\"abc\""))), Answer::Full, "weak");
        assert_eq!(answer(100, TAG, DATE, &with(None, Some("\"other\""))), Answer::Full);
    }

    #[test]
    fn if_none_match_compares_weakly_and_wins_over_range() {
        let matching = |value| Conditions { if_none_match: Some(value), range: Some("bytes=0-1"), if_range: None };
        assert_eq!(answer(100, TAG, DATE, &matching("\"abc\"")), Answer::NotModified);
        assert_eq!(answer(100, TAG, DATE, &matching("\"x\", W/\"abc\"")), Answer::NotModified);
        assert_eq!(answer(100, TAG, DATE, &matching("*")), Answer::NotModified);
        assert_eq!(answer(100, TAG, DATE, &matching("\"x\"")), Answer::Partial(0..2));
    }
}
