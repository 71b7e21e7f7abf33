//! The Data Repository's bytes over real HTTP, on a directory engine with the embedded store and on an
//! S3-compatible server (moto) with the Redis store: streamed in and out, ETag and Last-Modified, one byte range
//! (a resumed firmware download), If-Range and If-None-Match, HEAD, the bytes of replaced and deleted items
//! dropped from the engine, and a body over the limit refused with nothing left behind.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod api_support;

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use api_support::{TOKEN, TestServer, expect_error};
use futures_util::StreamExt as _;
use omadm_testkit::redis::RedisServer;
use omadm_testkit::s3::S3Server;
use reqwest::Method;
use sha2::{Digest as _, Sha256};

/// Over one S3 part (5 MiB) and a hundred read chunks, not a multiple of either.
const ITEM_BYTES: usize = (6 << 20) + 12_345;
/// The repository limit of these servers.
const LIMIT: u64 = 7 << 20;
const PATH: &str = "fw/image.bin";

fn item_body(seed: usize) -> Vec<u8> {
    (0..ITEM_BYTES).map(|index| ((index * 31 + seed) % 251) as u8).collect()
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response.headers().get(name).unwrap_or_else(|| panic!("no {name} header")).to_str().unwrap()
}

async fn get(server: &TestServer, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = server.client.get(server.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

async fn publish(server: &TestServer, body: Vec<u8>) -> (u16, serde_json::Value) {
    let response = server
        .api(Method::PUT, &format!("/api/v1/repository/{PATH}"))
        .header("Content-Type", "application/octet-stream")
        .body(body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

/// Sends a chunked PUT of `total` bytes without Content-Length (the server learns the size only by reading) and
/// returns the status line; write errors after the server answered and closed are expected.
fn chunked_put(base: &str, path: &str, total: usize) -> String {
    let mut stream = std::net::TcpStream::connect(base.trim_start_matches("http://")).unwrap();
    let head = format!(
        "PUT {path} HTTP/1.1\r\nHost: omadm\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).unwrap();
    let chunk = vec![b'x'; 256 * 1024];
    let mut sent = 0;
    while sent < total {
        let frame = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
        if stream.write_all(&frame).is_err() {
            break;
        }
        sent += chunk.len();
    }
    let _ = stream.write_all(b"0\r\n\r\n");
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).lines().next().unwrap_or_default().to_owned()
}

/// Everything these checks need of an engine: how many blobs it holds.
#[allow(clippy::unused_async)]
async fn blobs(engine: &Engine) -> usize {
    match engine {
        Engine::Directory(root) => count_files(&root.join("items")),
        // A short blocking exchange with moto, a process of its own: nothing this thread runs waits for it.
        Engine::S3(s3) => s3.object_count("firmware/items"),
    }
}

enum Engine {
    Directory(PathBuf),
    S3(S3Server),
}

fn count_files(directory: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(directory) else { return 0 };
    entries.map(|entry| entry.unwrap().path()).map(|path| if path.is_dir() { count_files(&path) } else { 1 }).sum()
}

async fn content_round_trip(server: &TestServer, engine: &Engine) {
    let body = item_body(0);
    let sha256 = hex::encode(Sha256::digest(&body));
    let (status, view) = publish(server, body.clone()).await;
    assert_eq!(status, 201, "{view}");
    assert_eq!((view["size"].as_u64(), view["sha256"].as_str()), (Some(ITEM_BYTES as u64), Some(sha256.as_str())));
    assert_eq!(blobs(engine).await, 1);
    let etag = format!("\"{sha256}\"");
    let size = ITEM_BYTES.to_string();

    // A device's download: all of it, with validators.
    let full = get(server, "/repo/fw/image.bin", &[]).await;
    assert_eq!(full.status(), 200);
    assert_eq!(header(&full, "etag"), etag);
    assert_eq!(header(&full, "accept-ranges"), "bytes");
    assert_eq!(header(&full, "content-length"), size);
    let last_modified = header(&full, "last-modified").to_owned();
    assert!(full.bytes().await.unwrap() == body, "the bytes come back as stored");

    // It broke off at 5 MB: the rest, if the item is still the same.
    let resumed = get(server, "/repo/fw/image.bin", &[("Range", "bytes=5000000-"), ("If-Range", &etag)]).await;
    assert_eq!(resumed.status(), 206);
    assert_eq!(header(&resumed, "content-range"), format!("bytes 5000000-{}/{ITEM_BYTES}", ITEM_BYTES - 1));
    assert!(resumed.bytes().await.unwrap() == body[5_000_000..]);
    let by_date = get(server, "/repo/fw/image.bin", &[("Range", "bytes=0-9"), ("If-Range", &last_modified)]).await;
    assert_eq!(by_date.status(), 206);
    assert!(by_date.bytes().await.unwrap() == body[..10]);
    let changed = get(server, "/repo/fw/image.bin", &[("Range", "bytes=5000000-"), ("If-Range", "\"other\"")]).await;
    assert_eq!((changed.status().as_u16(), header(&changed, "content-length")), (200, size.as_str()));
    drop(changed);
    let tail = get(server, "/repo/fw/image.bin", &[("Range", "bytes=-100")]).await;
    assert_eq!(tail.status(), 206);
    assert!(tail.bytes().await.unwrap() == body[ITEM_BYTES - 100..]);
    let beyond = get(server, "/repo/fw/image.bin", &[("Range", &format!("bytes={ITEM_BYTES}-"))]).await;
    assert_eq!(header(&beyond, "content-range"), format!("bytes */{ITEM_BYTES}"));
    expect_error(beyond, 416).await;
    let current = get(server, "/repo/fw/image.bin", &[("If-None-Match", &etag)]).await;
    assert_eq!(current.status(), 304);
    assert!(current.bytes().await.unwrap().is_empty());

    // HEAD: the headers, no bytes, on both listeners' routes.
    for path in ["/repo/fw/image.bin", "/api/v1/repository/fw/image.bin"] {
        let head = server.client.head(server.url(path)).bearer_auth(TOKEN).send().await.unwrap();
        assert_eq!(head.status(), 200, "{path}");
        assert_eq!((header(&head, "content-length"), header(&head, "etag")), (size.as_str(), etag.as_str()));
        assert!(head.bytes().await.unwrap().is_empty());
    }
    let ranged = server.api(Method::GET, "/api/v1/repository/fw/image.bin").header("Range", "bytes=10-19").send();
    let ranged = ranged.await.unwrap();
    assert_eq!(ranged.status(), 206);
    assert!(ranged.bytes().await.unwrap() == body[10..20]);

    // Replaced while a download is half-way: that download finishes with the bytes it started on, the old blob
    // goes, and new downloads get the new bytes.
    let mut in_flight = get(server, "/repo/fw/image.bin", &[]).await.bytes_stream();
    let mut started = in_flight.next().await.unwrap().unwrap().to_vec();
    let replacement = item_body(7);
    let (status, _) = publish(server, replacement.clone()).await;
    assert_eq!(status, 200);
    if matches!(engine, Engine::Directory(_)) {
        // A directory keeps an open file's bytes until it is closed; an S3 GET has its own copy in flight.
        while let Some(chunk) = in_flight.next().await {
            started.extend_from_slice(&chunk.unwrap());
        }
        assert!(started == body, "the download in flight completed with the old bytes");
    }
    drop(in_flight);
    assert_eq!(blobs(engine).await, 1, "the replaced blob is gone");
    assert!(get(server, "/repo/fw/image.bin", &[]).await.bytes().await.unwrap() == replacement);

    // Over the limit, with no Content-Length to refuse it early: 413 once the limit passes, nothing kept.
    let base = server.base.clone();
    let status_line = tokio::task::spawn_blocking(move || {
        chunked_put(&base, "/api/v1/repository/fw/too-large.bin", (LIMIT + (1 << 20)) as usize)
    })
    .await
    .unwrap();
    assert!(status_line.starts_with("HTTP/1.1 413"), "{status_line:?}");
    assert_eq!(blobs(engine).await, 1, "the refused body left no blob");
    expect_error(server.api(Method::GET, "/api/v1/repository/fw/too-large.bin").send().await.unwrap(), 404).await;

    // A body that stops arriving: 408 once no byte came for the body read timeout (1 s here), nothing kept.
    let base = server.base.clone();
    let stalled = tokio::task::spawn_blocking(move || {
        let head = format!(
            "PUT /api/v1/repository/fw/stalled.bin HTTP/1.1\r\nHost: omadm\r\nAuthorization: Bearer {TOKEN}\r\n\
             Content-Length: 1000\r\n\r\nonly the start"
        );
        api_support::raw_exchange(&base, &[(head.as_bytes(), Duration::ZERO)], Duration::from_secs(5))
    })
    .await
    .unwrap();
    assert!(stalled.starts_with("HTTP/1.1 408"), "{stalled:?}");
    assert_eq!(blobs(engine).await, 1, "the stalled body left no blob");

    let deleted = server.api(Method::DELETE, "/api/v1/repository/fw/image.bin").send().await.unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(blobs(engine).await, 0, "a deleted item's bytes are gone");
    expect_error(get(server, "/repo/fw/image.bin", &[]).await, 404).await;
}

fn with_limit(config: &mut omadm_gateway::GatewayConfig) {
    config.max_repository_bytes = LIMIT;
}

#[actix_rt::test]
async fn repository_content_streams_from_a_directory_with_the_embedded_store() {
    let content = tempfile::tempdir().unwrap();
    let url = format!("file://{}", content.path().display());
    let server = TestServer::start_custom(TestServer::options(), None, Some(&url), with_limit).await;
    content_round_trip(&server, &Engine::Directory(content.path().to_owned())).await;
}

#[actix_rt::test]
async fn repository_content_streams_from_s3_with_the_redis_store() {
    let redis = RedisServer::start();
    let s3 = S3Server::start();
    let url = s3.content_url("firmware");
    let server = TestServer::start_custom(TestServer::options(), Some(&redis.url()), Some(&url), with_limit).await;
    content_round_trip(&server, &Engine::S3(s3)).await;
}
