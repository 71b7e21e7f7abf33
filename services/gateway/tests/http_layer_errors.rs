//! The errors actix-http answers by itself, before any handler runs (a request it cannot parse, a head too large,
//! a head that does not arrive in time), carry the same JSON error body as every other error, on the public and
//! the ops listener, over raw TCP (vendor/README.md has the patch that makes it so).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod api_support;

use std::time::Duration;

use api_support::{TestServer, raw_exchange};

/// The status and the parsed JSON body of one raw HTTP answer; fails the test unless the body is a JSON error
/// of exactly the announced length.
fn json_error(answer: &str) -> (u16, String) {
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no complete answer: {answer:?}"));
    let mut lines = head.lines();
    let status: u16 = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let header = |name: &str| {
        head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim().to_owned())
        })
    };
    assert_eq!(header("content-type").as_deref(), Some("application/json"), "{answer:?}");
    assert_eq!(header("content-length").unwrap().parse::<usize>().unwrap(), body.len(), "{answer:?}");
    let json: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body:?}"));
    let reason = json["error"].as_str().unwrap_or_else(|| panic!("no error string: {json}"));
    assert!(!reason.is_empty());
    (status, reason.to_owned())
}

fn exchange(base: &str, request: &[u8]) -> String {
    raw_exchange(base, &[(request, Duration::ZERO)], Duration::from_secs(3))
}

/// Requests actix-http refuses while parsing: each answered 400 or 431 with the JSON body, then the connection
/// closes.
fn unparsable_requests_get_json_errors(base: &str, path: &str) {
    let bad_length = format!("POST {path} HTTP/1.1\r\nHost: omadm\r\nContent-Length: abc\r\n\r\n");
    let (status, reason) = json_error(&exchange(base, bad_length.as_bytes()));
    assert_eq!(status, 400);
    assert!(reason.contains("Content-Length"), "{reason}");

    // Content-Length and Transfer-Encoding together: the request-smuggling shape (RFC 9112 6.1).
    let smuggling = format!(
        "POST {path} HTTP/1.1\r\nHost: omadm\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    );
    assert_eq!(json_error(&exchange(base, smuggling.as_bytes())).0, 400);

    let bad_header = format!("GET {path} HTTP/1.1\r\nHost: omadm\r\nBad Header: x\r\n\r\n");
    assert_eq!(json_error(&exchange(base, bad_header.as_bytes())).0, 400);

    // actix-http reads a head up to 128 KiB.
    let oversized = format!("GET {path} HTTP/1.1\r\nHost: omadm\r\nX-Padding: {}\r\n\r\n", "a".repeat(160 * 1024));
    let (status, reason) = json_error(&exchange(base, oversized.as_bytes()));
    assert_eq!(status, 431);
    assert!(reason.contains("head"), "{reason}");
}

#[actix_rt::test]
async fn the_public_and_the_ops_listener_answer_http_layer_errors_in_json() {
    let server = TestServer::start().await;
    let (base, ops_base) = (server.base.clone(), server.ops_base.clone());
    tokio::task::spawn_blocking(move || {
        unparsable_requests_get_json_errors(&base, "/dm");
        unparsable_requests_get_json_errors(&base, "/api/v1/devices");
        unparsable_requests_get_json_errors(&ops_base, "/metrics");

        // A head that stops half-way: 408 once the client request timeout (1 s here) has passed.
        let partial: &[u8] = b"POST /dm HTTP/1.1\r\nHost: omadm\r\n";
        let answer = raw_exchange(&base, &[(partial, Duration::ZERO)], Duration::from_secs(4));
        let (status, reason) = json_error(&answer);
        assert_eq!(status, 408);
        assert!(reason.contains("in time"), "{reason}");
    })
    .await
    .unwrap();

    // The server is still there and its own errors keep their bodies.
    let response = server.client.get(server.url("/api/v1/devices")).send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert!(response.text().await.unwrap().contains("\"error\""));
}
