//! Operations endpoints and graceful stop over real HTTP: /healthz, /readyz, /metrics exposition.

mod api_support;

use std::time::Duration;

use api_support::{TOKEN, TestServer, expect_error, raw_exchange};

#[actix_rt::test]
async fn health_and_readiness() {
    let server = TestServer::start().await;
    let health = server.client.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready = server.client.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);

    assert_eq!(server.client.get(server.ops_url("/readyz")).send().await.unwrap().status(), 200);
    // Another role of the process (the notifier in `omadm serve`) raises what stops it serving: both listeners
    // say so until it clears.
    server.server().readiness().raise("notifier", "outcomes cannot be stored");
    for url in [server.url("/readyz"), server.ops_url("/readyz")] {
        let reason = expect_error(server.client.get(url).send().await.unwrap(), 503).await;
        assert_eq!(reason, "notifier: outcomes cannot be stored");
    }
    server.server().readiness().clear("notifier");
    assert_eq!(server.client.get(server.url("/readyz")).send().await.unwrap().status(), 200);
    server.server().readiness().begin_shutdown();
    // The ops listener shares the node's readiness: both say it drains.
    expect_error(server.client.get(server.ops_url("/readyz")).send().await.unwrap(), 503).await;
    let draining = server.client.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(draining.headers().get("retry-after").unwrap(), "5");
    let reason = expect_error(draining, 503).await;
    assert_eq!(reason, "shutting down");
    // Liveness is not readiness: the process still runs.
    assert_eq!(server.client.get(server.url("/healthz")).send().await.unwrap().status(), 200);
}

/// `name{label="value",...} number` or `name number`, as the text format 0.0.4 writes samples.
fn is_sample_line(line: &str) -> bool {
    let (series, value) = match line.rsplit_once(' ') {
        Some(parts) => parts,
        None => return false,
    };
    let value_ok = value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value);
    let name_end = series.find('{').unwrap_or(series.len());
    let name = &series[..name_end];
    let name_ok = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    let labels_ok = name_end == series.len() || (series.ends_with('}') && series[name_end..].contains('='));
    value_ok && name_ok && labels_ok
}

#[actix_rt::test]
async fn metrics_exposition_parses() {
    let server = TestServer::start().await;
    // Traffic so the HTTP families have samples.
    let _ = server.client.get(server.url("/healthz")).send().await.unwrap();
    let _ = server.client.get(server.url("/api/v1/devices")).bearer_auth(TOKEN).send().await.unwrap();
    // Not where devices connect: which ids exist, how many sessions run, is for operators only.
    let on_device_port = server.client.get(server.url("/metrics")).send().await.unwrap();
    assert_eq!(on_device_port.status(), 404);
    let response = server.client.get(server.ops_url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers().get("content-type").unwrap(), "text/plain; version=0.0.4; charset=utf-8");
    let text = response.text().await.unwrap();
    let mut samples = 0;
    for line in text.lines().filter(|line| !line.is_empty()) {
        if line.starts_with('#') {
            assert!(line.starts_with("# HELP ") || line.starts_with("# TYPE "), "{line}");
        } else {
            assert!(is_sample_line(line), "not a sample line: {line}");
            samples += 1;
        }
    }
    assert!(samples > 10, "{text}");
    for family in ["omadm_sessions_active", "omadm_http_request_duration_seconds_bucket", "omadm_http_responses_total"]
    {
        assert!(text.contains(family), "{family} missing from {text}");
    }
    assert!(text.contains("endpoint=\"/healthz\""), "{text}");
}

#[test]
fn sample_line_check_refuses_garbage() {
    assert!(is_sample_line("omadm_sessions_active 0"));
    assert!(is_sample_line("omadm_http_responses_total{endpoint=\"/healthz\",method=\"GET\",status=\"2xx\"} 3"));
    assert!(is_sample_line("x_bucket{le=\"+Inf\"} 1"));
    assert!(!is_sample_line("omadm_sessions_active"));
    assert!(!is_sample_line("9bad 1"));
    assert!(!is_sample_line("name{oops 1"));
    assert!(!is_sample_line("name one"));
}

#[actix_rt::test]
async fn graceful_stop_finishes_requests_in_flight_then_refuses_connections() {
    let mut server = TestServer::start().await;
    let base = server.base.clone();
    let head = format!(
        "PUT /api/v1/repository/in-flight HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: text/plain\r\nContent-Length: 10\r\nConnection: close\r\n\r\nhello"
    );
    // The request is in flight (head and half the body sent) when the stop begins.
    let in_flight = tokio::task::spawn_blocking(move || {
        raw_exchange(
            &base,
            &[(head.as_bytes(), Duration::from_millis(600)), (b"world", Duration::ZERO)],
            Duration::from_secs(5),
        )
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.stop().await;
    let answer = in_flight.await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer:?}");
    let stored = server.state.store.get_content("in-flight").await.unwrap().unwrap();
    assert_eq!(omadm_testkit::fixtures::content_bytes(&server.state.content, &stored).await, b"helloworld");

    // The listener is closed.
    let refused = reqwest::Client::new().get(format!("{}/healthz", server.base)).send().await;
    assert!(refused.is_err(), "{refused:?}");
}

#[actix_rt::test]
async fn shutdown_drains_the_outbox_to_the_bus() {
    use omadm_core::bus::relay::{OutboxRelay, RelayConfig};
    let mut server = TestServer::start().await;
    // A relay that never polls on its own: only the shutdown's drain can move the event.
    let config = RelayConfig { poll_interval: Duration::from_secs(3600), ..RelayConfig::default() };
    let relay = OutboxRelay::spawn_with(server.state.store.clone(), server.state.bus.clone(), config);
    server.register("IMEI:1", serde_json::json!({})).await;
    let accepted = server
        .client
        .post(server.url("/api/v1/devices/IMEI:1/notify"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 202);
    let id = accepted.json::<serde_json::Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.state.store.outbox_len().await.unwrap(), 1, "published before the shutdown");

    server.shutdown(relay).await;
    assert_eq!(server.state.store.outbox_len().await.unwrap(), 0);
    let lines = std::fs::read_to_string(server.events_dir().join("omadm.notifications.jsonl")).unwrap();
    assert!(lines.lines().any(|line| line.contains(&id)), "{lines}");
}
