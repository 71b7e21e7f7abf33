//! What the gateway logs about requests, bounded: capped field lengths, auth failures summarised per interval.
//!
//! A client controls its URL, `User-Agent`, `Host` and `OMADM-DevID`, and can
//! send as many failing requests as it likes; so every request field in a log
//! line is cut to a few hundred bytes ([`cap`]), and authentication failures
//! are not logged one by one but as one summary line per interval with counts
//! by reason ([`note_auth_failure`], [`omadm_core::auth::FailureTally`]).
//!
//! actix-http logs a connection whose request it could not parse (or that the
//! client broke off) as `ERROR actix_http::h1::dispatcher: stream error: ...`;
//! the client's fault, not the server's, and it cannot be relevelled at the
//! source. [`DEFAULT_FILTER`], the default filter of `omadm`, turns that target
//! off (`actix_http::h1::dispatcher=off`); the 400 answers are still counted in
//! `omadm_http_responses_total`. `RUST_LOG` overrides the whole filter.

use std::sync::Mutex;

use actix_web::dev::ServiceRequest;
use omadm_core::auth::FailureTally;
use omadm_core::clock::Millis;
use tracing::Span;

/// The default tracing filter of the `omadm` binary (`RUST_LOG` replaces it): INFO, without
/// tracing-actix-web's one line per 4xx/5xx and without actix-http's client parse errors.
pub use omadm_runtime::logging::DEFAULT_FILTER;

/// Longest request target kept in logs.
pub const MAX_LOGGED_TARGET: usize = 256;
/// Longest `User-Agent`, `Host` or device id kept in logs.
pub const MAX_LOGGED_HEADER: usize = 128;

/// `text` cut to at most `max` bytes (on a character boundary), with how much was cut.
pub fn cap(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let kept = text.get(..end).unwrap_or_default();
    std::borrow::Cow::Owned(format!("{kept}...(+{} bytes)", text.len() - end))
}

/// The root span of a request: tracing-actix-web's fields, each capped, the TCP peer as client
/// address (not a header the client writes), and the device's `OMADM-DevID` as `device_id`.
pub fn request_span(request: &ServiceRequest) -> Span {
    let header = |name: &str| request.headers().get(name).and_then(|value| value.to_str().ok()).unwrap_or("");
    let route = request.match_pattern().unwrap_or_else(|| "default".to_owned());
    let target = request.uri().path_and_query().map(|target| target.as_str()).unwrap_or("");
    let host = request.connection_info().host().to_owned();
    let client_ip = request.peer_addr().map(|address| address.ip().to_string()).unwrap_or_default();
    tracing::info_span!(
        "HTTP request",
        http.method = %cap(request.method().as_str(), 16),
        http.route = %cap(&route, MAX_LOGGED_TARGET),
        http.host = %cap(&host, MAX_LOGGED_HEADER),
        http.client_ip = %client_ip,
        http.user_agent = %cap(header("User-Agent"), MAX_LOGGED_HEADER),
        http.target = %cap(target, MAX_LOGGED_TARGET),
        http.status_code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
        exception.message = tracing::field::Empty,
        exception.details = tracing::field::Empty,
        device_id = %cap(header("OMADM-DevID"), MAX_LOGGED_HEADER),
        session_id = tracing::field::Empty,
    )
}

/// Failures since the last summary line, shared by every worker of the process.
static FAILURES: Mutex<Option<FailureTally>> = Mutex::new(None);

/// Counts one authentication failure (device or operator API) of `reason`, and writes the
/// summary line when one is due: the first failure after a quiet `interval`, then at most one
/// line per `interval` with the counts since the previous line.
pub fn note_auth_failure(reason: &'static str, interval: Millis, now: Millis) {
    tracing::debug!(reason, "authentication failed");
    let summary = {
        let mut guard = match FAILURES.lock() {
            Ok(guard) => guard,
            // A panic elsewhere while counting leaves counts that are still usable.
            Err(poisoned) => poisoned.into_inner(),
        };
        guard.get_or_insert_with(|| FailureTally::new(interval)).record(reason, now)
    };
    if let Some(summary) = summary {
        tracing::warn!(
            failures = summary.total,
            reasons = %summary.by_reason,
            interval_ms = interval,
            "authentication failures (one line per interval at most)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_keeps_short_text_and_cuts_long_text_on_a_character_boundary() {
        assert_eq!(cap("short", 10), "short");
        assert_eq!(cap(&"a".repeat(300), 4), "aaaa...(+296 bytes)");
        // "é" is two bytes: the cut falls before it, never inside.
        assert_eq!(cap("abcé", 4), "abc...(+2 bytes)");
    }
}
