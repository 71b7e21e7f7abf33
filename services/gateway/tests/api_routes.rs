//! The operator API over real HTTP: every route with its success and its bad input, on the embedded store.

mod api_support;

use omadm_testkit::http::JsonAnswer as _;
use std::time::Duration;

use api_support::{MAX_BODY_BYTES, MAX_REPOSITORY_BYTES, SERVER_ID, TOKEN, TestServer, expect_error, raw_exchange};
use omadm_core::bus::Topic;
use omadm_core::model::{AlertRecord, MirrorRecord, SessionOutcome, SessionSummary};
use omadm_core::store::WriteBatch;
use omadm_gateway::api::{ROUTES, openapi_document};
use reqwest::Method;
use serde_json::{Value, json};

#[actix_rt::test]
async fn tokens_are_required_and_checked() {
    let server = TestServer::start().await;
    let url = server.url("/api/v1/devices");
    let missing = server.client.get(&url).send().await.unwrap();
    let challenge = missing.headers().get("www-authenticate").unwrap().to_str().unwrap().to_owned();
    assert!(challenge.starts_with("Bearer"), "{challenge}");
    expect_error(missing, 401).await;

    let wrong = server.client.get(&url).bearer_auth("not-the-token").send().await.unwrap();
    assert!(wrong.headers().get("www-authenticate").unwrap().to_str().unwrap().contains("invalid_token"));
    expect_error(wrong, 401).await;

    let basic = server.client.get(&url).basic_auth("admin", Some(TOKEN)).send().await.unwrap();
    expect_error(basic, 401).await;

    // Unknown routes below the prefix are behind the token too: nothing is revealed.
    expect_error(server.client.get(server.url("/api/v1/nope")).send().await.unwrap(), 401).await;
    let ok = server.client.get(&url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(ok.status(), 200);
}

#[actix_rt::test]
async fn openapi_document_lists_every_registered_route() {
    let server = TestServer::start().await;
    // Served without a token.
    let response = server.client.get(server.url("/api/v1/openapi.json")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let served: Value = response.json().await.unwrap();
    assert_eq!(&served, openapi_document());
    assert!(served["openapi"].as_str().unwrap().starts_with("3."));
    assert_eq!(served["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");

    let paths = served["paths"].as_object().unwrap();
    for route in ROUTES {
        let path = route.openapi_path();
        let operation = &paths.get(&path).unwrap_or_else(|| panic!("{path} missing from the document"))
            [route.method.to_ascii_lowercase()];
        assert!(operation.is_object(), "{} {path} missing from the document", route.method);
        assert!(operation["responses"].as_object().is_some_and(|responses| !responses.is_empty()));

        // And the table is what the server routes: the request reaches a handler (no 404 "no such
        // route", no 405), whatever the handler then says about the unknown device.
        let concrete = path.replace("{devid}", "IMEI:none").replace("{id}", "1").replace("{path}", "a/b");
        let response =
            server.api(Method::from_bytes(route.method.as_bytes()).unwrap(), &concrete).send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        assert!(status != 405 && !text.contains("no such route"), "{} {concrete}: {status} {text}", route.method);
    }
    let documented: usize = paths.values().map(|item| item.as_object().unwrap().len()).sum();
    assert_eq!(documented, ROUTES.len() + 1, "the document has operations the server does not route");
    assert!(paths["/api/v1/openapi.json"]["get"].is_object());

    // Schemas of bodies are there too.
    let schemas = served["components"]["schemas"].as_object().unwrap();
    for schema in ["DeviceRegistration", "DeviceView", "CommandsRequest", "CommandView", "ErrorBody", "NotifyRequest"] {
        assert!(schemas.contains_key(schema), "{schema} missing");
    }
}

#[actix_rt::test]
async fn device_registration_read_list_and_delete() {
    let server = TestServer::start().await;
    let created = server
        .api(Method::PUT, "/api/v1/devices/IMEI:1")
        .json(
            &json!({"password": "s3cret-pw", "auth_secret": "notify-key", "tags": {"fleet": "meters", "region": "eu"}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    assert_eq!(created.headers().get("location").unwrap(), "/api/v1/devices/IMEI:1");
    let text = created.text().await.unwrap();
    for secret in ["s3cret-pw", "notify-key", "ha1", "credentials"] {
        assert!(!text.contains(secret), "{secret} leaked in {text}");
    }
    let device: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(device["id"], "IMEI:1");
    assert_eq!(device["tags"]["fleet"], "meters");
    assert_eq!(device["has_auth_secret"], true);
    assert_eq!(device["pending_commands"], 0);
    assert_eq!(device["last_session"], Value::Null);
    assert!(device["inventory"].as_object().unwrap().contains_key("fwv"));

    assert_eq!(device["notify_address"], Value::Null);
    assert_eq!(device["msisdn"], Value::Null);
    assert_eq!(device["push_registered_at"], Value::Null, "no RegID registered");
    assert_eq!(device["notify"], json!(["push", "udp", "sms"]), "the default order");

    // Update: new tags, notification address and MSISDN, secret kept.
    let updated = server.api(Method::PUT, "/api/v1/devices/IMEI:1").json(&json!({
        "password": "other", "tags": {"fleet": "cars"}, "notify_address": "127.0.0.9:2948", "msisdn": "+491701234567"
    }));
    let updated = updated.send().await.unwrap();
    assert_eq!(updated.status(), 200);
    let device: Value = updated.json().await.unwrap();
    assert_eq!(device["tags"], json!({"fleet": "cars"}));
    assert_eq!(device["has_auth_secret"], true);
    assert_eq!(device["notify_address"], "127.0.0.9:2948");
    assert_eq!(device["msisdn"], "+491701234567");
    // The password changed: the stored hash is the new one.
    let stored = server.state.store.get_device("IMEI:1").await.unwrap().unwrap();
    assert_eq!(stored.credentials, omadm_core::auth::credentials_for("IMEI:1", "omadm", "other"));

    let fetched: Value = server.api(Method::GET, "/api/v1/devices/IMEI:1").json_answer().await;
    assert_eq!(fetched["tags"], json!({"fleet": "cars"}));
    assert_eq!(fetched["msisdn"], "+491701234567", "GET shows the MSISDN");

    // The operator's transport order: kept without repeats, shown, stored; `[]` is the default again.
    let ordered = server
        .api(Method::PUT, "/api/v1/devices/IMEI:1")
        .json(&json!({"password": "other", "notify": ["sms", "udp", "sms"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(ordered.json::<Value>().await.unwrap()["notify"], json!(["sms", "udp"]));
    let stored = server.state.store.get_device("IMEI:1").await.unwrap().unwrap();
    assert_eq!(stored.notify_order, [omadm_core::model::NotifyTransport::Sms, omadm_core::model::NotifyTransport::Udp]);
    let kept = server.api(Method::PUT, "/api/v1/devices/IMEI:1").json(&json!({"password": "other"})).send();
    assert_eq!(kept.await.unwrap().json::<Value>().await.unwrap()["notify"], json!(["sms", "udp"]), "left out: kept");
    let reset = server.api(Method::PUT, "/api/v1/devices/IMEI:1").json(&json!({"password": "other", "notify": []}));
    assert_eq!(reset.json_answer::<Value>().await["notify"], json!(["push", "udp", "sms"]));
    assert!(server.state.store.get_device("IMEI:1").await.unwrap().unwrap().notify_order.is_empty());

    server.register("IMEI:2", json!({"fleet": "meters"})).await;
    server.register("IMEI:3", json!({"fleet": "meters"})).await;

    // Paging in id order.
    let first: Value = server.api(Method::GET, "/api/v1/devices?limit=2").json_answer().await;
    let ids: Vec<&str> = first["devices"].as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["IMEI:1", "IMEI:2"]);
    let next = first["next"].as_str().unwrap();
    let second: Value =
        server.api(Method::GET, "/api/v1/devices").query(&[("limit", "2"), ("after", next)]).json_answer().await;
    let ids: Vec<&str> = second["devices"].as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["IMEI:3"]);
    assert_eq!(second["next"], Value::Null);

    // Tag filter.
    let meters: Value = server.api(Method::GET, "/api/v1/devices?tag=fleet:meters").json_answer().await;
    let ids: Vec<&str> = meters["devices"].as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["IMEI:2", "IMEI:3"]);
    let none: Value = server.api(Method::GET, "/api/v1/devices?man=Nobody").json_answer().await;
    assert_eq!(none["devices"], json!([]));

    // Delete.
    let deleted = server.api(Method::DELETE, "/api/v1/devices/IMEI:2").send().await.unwrap();
    assert_eq!(deleted.status(), 204);
    expect_error(server.api(Method::GET, "/api/v1/devices/IMEI:2").send().await.unwrap(), 404).await;
    expect_error(server.api(Method::DELETE, "/api/v1/devices/IMEI:2").send().await.unwrap(), 404).await;
}

#[actix_rt::test]
async fn device_bad_input() {
    let server = TestServer::start().await;
    let put = || server.api(Method::PUT, "/api/v1/devices/IMEI:9");
    let json_type = ("content-type", "application/json");

    let reason =
        expect_error(put().header(json_type.0, json_type.1).body("{\"password\": ").send().await.unwrap(), 400).await;
    assert!(reason.contains("invalid JSON"), "{reason}");
    let reason = expect_error(put().json(&json!({"password": "pw", "admin": true})).send().await.unwrap(), 400).await;
    assert!(reason.contains("unknown field"), "{reason}");
    expect_error(put().json(&json!({"tags": {}})).send().await.unwrap(), 400).await;
    expect_error(put().json(&json!({"password": ""})).send().await.unwrap(), 400).await;
    expect_error(put().json(&json!({"password": "pw", "tags": {"a:b": "c"}})).send().await.unwrap(), 400).await;
    let reason =
        expect_error(put().json(&json!({"password": "pw", "notify_address": "nowhere"})).send().await.unwrap(), 400)
            .await;
    assert!(reason.contains("notify_address") || reason.contains("socket address"), "{reason}");
    let reason =
        expect_error(put().json(&json!({"password": "pw", "notify": ["pigeon"]})).send().await.unwrap(), 400).await;
    assert!(reason.contains("notify") || reason.contains("pigeon"), "{reason}");
    for msisdn in ["491701234567", "+12345", "+49 170 1234567", "+1234567890123456"] {
        let reason =
            expect_error(put().json(&json!({"password": "pw", "msisdn": msisdn})).send().await.unwrap(), 400).await;
        assert!(reason.contains("MSISDN"), "{reason}");
    }
    expect_error(put().header("content-type", "text/plain").body("{\"password\": \"pw\"}").send().await.unwrap(), 415)
        .await;
    expect_error(put().header(json_type.0, json_type.1).send().await.unwrap(), 400).await;
    // A missing body is a 400 with its JSON error whatever the Content-Type (none here), as the document says.
    let reason = expect_error(put().send().await.unwrap(), 400).await;
    assert!(reason.contains("missing body"), "{reason}");
    let commands = server.api(Method::POST, "/api/v1/devices/IMEI:9/commands").send().await.unwrap();
    assert!(expect_error(commands, 400).await.contains("missing body"));
    // Lengths are characters, as the document's maxLength counts them: 1024 two-byte characters are a password.
    let long_password = put().json(&json!({"password": "é".repeat(1024)})).send().await.unwrap();
    assert_eq!(long_password.status(), 201);
    expect_error(put().json(&json!({"password": "é".repeat(1025)})).send().await.unwrap(), 400).await;
    let wide_tag = json!({"password": "pw", "tags": {"é".repeat(128): "ü".repeat(512)}});
    assert_eq!(put().json(&wide_tag).send().await.unwrap().status(), 200);
    expect_error(put().json(&json!({"password": "pw", "tags": {"é".repeat(129): "v"}})).send().await.unwrap(), 400)
        .await;
    let deleted = server.api(Method::DELETE, "/api/v1/devices/IMEI:9").send().await.unwrap();
    assert_eq!(deleted.status(), 204);

    // Deep nesting is a 400, never a stack overflow.
    let deep = format!("{{\"password\": \"pw\", \"tags\": {}{}}}", "[".repeat(5000), "]".repeat(5000));
    expect_error(put().header(json_type.0, json_type.1).body(deep).send().await.unwrap(), 400).await;

    // Over the body limit.
    let huge = json!({"password": "x".repeat(MAX_BODY_BYTES + 1)});
    expect_error(put().json(&huge).send().await.unwrap(), 413).await;

    // Nothing of the above registered the device.
    expect_error(server.api(Method::GET, "/api/v1/devices/IMEI:9").send().await.unwrap(), 404).await;

    for query in ["limit=0", "limit=1001", "limit=x", "colour=red", "tag=novalue"] {
        let response = server.api(Method::GET, &format!("/api/v1/devices?{query}")).send().await.unwrap();
        expect_error(response, 400).await;
    }
    // Wrong method on a known path: 405 with Allow.
    let patch = server.api(Method::PATCH, "/api/v1/devices/IMEI:9").send().await.unwrap();
    let allow = patch.headers().get("allow").unwrap().to_str().unwrap().to_owned();
    assert_eq!(allow, "PUT, GET, DELETE");
    expect_error(patch, 405).await;
    // Unknown route, and a route outside the API.
    expect_error(server.api(Method::GET, "/api/v1/nope").send().await.unwrap(), 404).await;
    expect_error(server.client.get(server.url("/definitely/not/here")).send().await.unwrap(), 404).await;
}

#[actix_rt::test]
async fn commands_are_validated_queued_and_followed() {
    let server = TestServer::start().await;
    server.register("IMEI:1", json!({})).await;
    let post = |body: Value| server.api(Method::POST, "/api/v1/devices/IMEI:1/commands").json(&body).send();

    let queued = post(json!({"commands": [
        ["GET", "urn:oma:mo:oma-dm-devinfo:1.2//FwV"],
        ["HGET", "http://127.0.0.1/repo/fw.bin", "urn:oma:mo:oma-fumo:1.0/fw/Package"],
    ]}))
    .await
    .unwrap();
    assert_eq!(queued.status(), 201);
    let queued: Value = queued.json().await.unwrap();
    assert_eq!(queued, json!({"ids": [1, 2]}));

    let command: Value = server.api(Method::GET, "/api/v1/devices/IMEI:1/commands/2").json_answer().await;
    assert_eq!(command["id"], 2);
    assert_eq!(
        command["command"],
        json!(["HGET", "http://127.0.0.1/repo/fw.bin", "urn:oma:mo:oma-fumo:1.0/fw/Package"])
    );
    assert_eq!(command["state"], "queued");
    assert_eq!(command["status"], Value::Null);
    assert_eq!(command["extra"], json!([]));
    assert_eq!(command["data"], Value::Null);
    assert_eq!(command["origin"], "operator");

    let device: Value = server.api(Method::GET, "/api/v1/devices/IMEI:1").json_answer().await;
    assert_eq!(device["pending_commands"], 2);

    let page: Value = server.api(Method::GET, "/api/v1/devices/IMEI:1/commands?limit=1").json_answer().await;
    assert_eq!(page["commands"].as_array().unwrap().len(), 1);
    assert_eq!(page["next"], 1);
    let rest: Value = server.api(Method::GET, "/api/v1/devices/IMEI:1/commands?after=1").json_answer().await;
    assert_eq!(rest["commands"][0]["id"], 2);
    assert_eq!(rest["next"], Value::Null);

    // Bad commands: the position and the reason, and nothing queued.
    let reason = expect_error(
        post(json!({"commands": [["GET", "urn:oma:mo:oma-dm-devinfo:1.2//FwV"], ["GET", "no-moid"]]})).await.unwrap(),
        400,
    )
    .await;
    assert!(reason.starts_with("commands[1]: "), "{reason}");
    let reason = expect_error(post(json!({"commands": [["FROB"]]})).await.unwrap(), 400).await;
    assert!(reason.contains("commands[0]") && reason.contains("unknown command"), "{reason}");
    let reason =
        expect_error(post(json!({"commands": [["CONT", "http://127.0.0.1/dm/s/x"]]})).await.unwrap(), 400).await;
    assert!(reason.contains("CONT cannot be queued"), "{reason}");
    expect_error(post(json!({"commands": [["END"]]})).await.unwrap(), 400).await;
    expect_error(post(json!({"commands": []})).await.unwrap(), 400).await;
    expect_error(post(json!({"commands": [["GET", "urn:a:1//x"]], "priority": 1})).await.unwrap(), 400).await;
    expect_error(post(json!({"commands": "GET"})).await.unwrap(), 400).await;
    // Commands are free-form JSON until omadm-proto reads them: nesting stops at serde_json's recursion limit.
    let deep = format!("{{\"commands\": [{}{}]}}", "[".repeat(5000), "]".repeat(5000));
    let deep = server
        .api(Method::POST, "/api/v1/devices/IMEI:1/commands")
        .header("content-type", "application/json")
        .body(deep)
        .send()
        .await
        .unwrap();
    let reason = expect_error(deep, 400).await;
    assert!(reason.contains("recursion limit"), "{reason}");
    let all: Value = server.api(Method::GET, "/api/v1/devices/IMEI:1/commands").json_answer().await;
    assert_eq!(all["commands"].as_array().unwrap().len(), 2);

    // Unknown device, unknown or malformed command id.
    let unknown = server
        .api(Method::POST, "/api/v1/devices/IMEI:404/commands")
        .json(&json!({"commands": [["GET", "urn:oma:mo:oma-dm-devinfo:1.2//FwV"]]}))
        .send()
        .await
        .unwrap();
    expect_error(unknown, 404).await;
    expect_error(server.api(Method::GET, "/api/v1/devices/IMEI:1/commands/99").send().await.unwrap(), 404).await;
    expect_error(server.api(Method::GET, "/api/v1/devices/IMEI:404/commands/1").send().await.unwrap(), 404).await;
    expect_error(server.api(Method::GET, "/api/v1/devices/IMEI:1/commands/one").send().await.unwrap(), 400).await;
    expect_error(server.api(Method::GET, "/api/v1/devices/IMEI:404/commands").send().await.unwrap(), 404).await;
    expect_error(server.api(Method::GET, "/api/v1/devices/IMEI:1/commands?after=x").send().await.unwrap(), 400).await;
}

/// A DevInfo instance as a device would report it, plus a DMDAC instance that gives us Read only on FUMO `fw`.
fn mirror_with_devinfo_and_dmdac() -> MirrorRecord {
    MirrorRecord {
        tree: json!([
            {"MOID": "urn:oma:mo:oma-dm-devinfo:1.2", "MIID": "", "MOData": {"DevID": "IMEI:1", "Man": "Acme", "FwV": "1.2"}},
            {"MOID": "urn:oma:mo:oma-dm-dmdac:1.0", "MIID": "fumo", "MOData": {
                "MOID": "urn:oma:mo:oma-fumo:1.0",
                "1": {"MIID": "fw", "MAID": format!("serverid:{SERVER_ID}"), "AccessRights": 1}
            }},
            {"MOID": "urn:oma:mo:oma-fumo:1.0", "MIID": "fw", "MOData": {"State": 10}}
        ]),
        validators: Default::default(),
        updated_at: 1,
    }
}

#[actix_rt::test]
async fn commands_the_device_would_refuse_are_forbidden() {
    let server = TestServer::start().await;
    server.register("IMEI:1", json!({})).await;
    let batch =
        WriteBatch { mirrors: vec![("IMEI:1".to_owned(), mirror_with_devinfo_and_dmdac())], ..WriteBatch::default() };
    server.state.store.commit(batch).await.unwrap();
    let post = |body: Value| server.api(Method::POST, "/api/v1/devices/IMEI:1/commands").json(&body).send();

    let read = post(json!({"commands": [["GET", "urn:oma:mo:oma-fumo:1.0/fw/State"]]})).await.unwrap();
    assert_eq!(read.status(), 201);
    let reason = expect_error(
        post(json!({"commands": [["GET", "urn:oma:mo:oma-fumo:1.0/fw/State"], ["EXEC", "urn:oma:mo:oma-fumo:1.0/fw/Update"]]}))
            .await
            .unwrap(),
        403,
    )
    .await;
    assert!(reason.starts_with("commands[1]: ") && reason.contains("EXEC"), "{reason}");
    // All or nothing: the GET before the refused EXEC was not queued either.
    let all: Value = server.api(Method::GET, "/api/v1/devices/IMEI:1/commands").json_answer().await;
    assert_eq!(all["commands"].as_array().unwrap().len(), 1);
}

#[actix_rt::test]
async fn mirror_alerts_and_sessions_are_readable() {
    let server = TestServer::start().await;
    server.register("IMEI:1", json!({})).await;
    let tree = |uri: &str| server.api(Method::GET, "/api/v1/devices/IMEI:1/tree").query(&[("uri", uri)]).send();

    // Nothing mirrored yet: the URI names nothing.
    expect_error(tree("urn:oma:mo:oma-dm-devinfo:1.2//FwV").await.unwrap(), 404).await;

    let alert_item: omadm_proto::package::AlertItem = serde_json::from_value(json!({
        "AlertType": "urn:oma:at:fumo:1.0:DownloadComplete", "MIMEType": "text/plain", "Data": "ok"
    }))
    .unwrap();
    let batch = WriteBatch {
        mirrors: vec![("IMEI:1".to_owned(), mirror_with_devinfo_and_dmdac())],
        alerts: vec![AlertRecord {
            id: 1,
            device_id: "IMEI:1".to_owned(),
            session_id: "s1".to_owned(),
            received_at: 5,
            item: alert_item,
            status: 200,
        }],
        ended_sessions: vec![SessionSummary {
            id: "s1".to_owned(),
            device_id: "IMEI:1".to_owned(),
            started_at: 1,
            ended_at: Some(9),
            outcome: SessionOutcome::Ended,
            packages: 3,
            commands_answered: 2,
        }],
        ..WriteBatch::default()
    };
    server.state.store.commit(batch).await.unwrap();

    let response = tree("urn:oma:mo:oma-dm-devinfo:1.2//FwV").await.unwrap();
    assert_eq!(response.status(), 200);
    let nodes: Value = response.json().await.unwrap();
    assert_eq!(nodes.as_array().unwrap().len(), 1);
    assert_eq!(nodes[0]["MOID"], "urn:oma:mo:oma-dm-devinfo:1.2");
    assert_eq!(nodes[0]["MOData"], json!({"FwV": "1.2"}));
    let whole: Value = tree("urn:oma:mo:oma-dm-devinfo:1.2//").await.unwrap().json().await.unwrap();
    assert_eq!(whole[0]["MOData"]["Man"], "Acme");

    expect_error(tree("urn:oma:mo:oma-dm-devinfo:1.2//Nope").await.unwrap(), 404).await;
    expect_error(tree("not a uri").await.unwrap(), 400).await;
    expect_error(server.api(Method::GET, "/api/v1/devices/IMEI:1/tree").send().await.unwrap(), 400).await;
    let unknown = server
        .api(Method::GET, "/api/v1/devices/IMEI:404/tree")
        .query(&[("uri", "urn:oma:mo:oma-dm-devinfo:1.2//FwV")])
        .send()
        .await
        .unwrap();
    expect_error(unknown, 404).await;

    let alerts: Value = server.api(Method::GET, "/api/v1/devices/IMEI:1/alerts").json_answer().await;
    assert_eq!(alerts["alerts"][0]["item"]["AlertType"], "urn:oma:at:fumo:1.0:DownloadComplete");
    assert_eq!(alerts["alerts"][0]["status"], 200);
    let sessions: Value = server.api(Method::GET, "/api/v1/devices/IMEI:1/sessions?limit=5").json_answer().await;
    assert_eq!(sessions["sessions"][0]["id"], "s1");
    assert_eq!(sessions["sessions"][0]["outcome"], "ended");
    let device: Value = server.api(Method::GET, "/api/v1/devices/IMEI:1").json_answer().await;
    assert_eq!(device["last_session"]["id"], "s1");

    expect_error(server.api(Method::GET, "/api/v1/devices/IMEI:1/alerts?limit=0").send().await.unwrap(), 400).await;
    expect_error(server.api(Method::GET, "/api/v1/devices/IMEI:404/alerts").send().await.unwrap(), 404).await;
    expect_error(server.api(Method::GET, "/api/v1/devices/IMEI:404/sessions").send().await.unwrap(), 404).await;
}

#[actix_rt::test]
async fn repository_content_any_media_type_with_a_size_limit() {
    let server = TestServer::start().await;
    let path = "/api/v1/repository/firmware/v2.bin";
    let body: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    let stored =
        server.api(Method::PUT, path).header("content-type", "application/octet-stream").body(body.clone()).send();
    let stored = stored.await.unwrap();
    assert_eq!(stored.status(), 201);
    let view: Value = stored.json().await.unwrap();
    assert_eq!(view["size"], 10_000);
    assert_eq!(view["source"], "operator");

    let read = server.api(Method::GET, path).send().await.unwrap();
    assert_eq!(read.status(), 200);
    assert_eq!(read.headers().get("content-type").unwrap(), "application/octet-stream");
    assert_eq!(read.bytes().await.unwrap().to_vec(), body);

    let replaced = server
        .api(Method::PUT, path)
        .header("content-type", "application/vnd.example+json")
        .body("{\"v\": 3}")
        .send()
        .await
        .unwrap();
    assert_eq!(replaced.status(), 200);
    let read = server.api(Method::GET, path).send().await.unwrap();
    assert_eq!(read.headers().get("content-type").unwrap(), "application/vnd.example+json");

    // Bigger than the repository limit (which is bigger than the general body limit).
    let big = vec![b'x'; MAX_BODY_BYTES + 1];
    assert!(big.len() < MAX_REPOSITORY_BYTES);
    assert_eq!(server.api(Method::PUT, "/api/v1/repository/big").body(big).send().await.unwrap().status(), 201);
    let too_big = vec![b'x'; MAX_REPOSITORY_BYTES + 1];
    expect_error(server.api(Method::PUT, "/api/v1/repository/huge").body(too_big).send().await.unwrap(), 413).await;
    expect_error(server.api(Method::GET, "/api/v1/repository/huge").send().await.unwrap(), 404).await;

    expect_error(server.api(Method::PUT, "/api/v1/repository/a//b").body("x").send().await.unwrap(), 400).await;
    assert_eq!(server.api(Method::DELETE, path).send().await.unwrap().status(), 204);
    expect_error(server.api(Method::GET, path).send().await.unwrap(), 404).await;
    expect_error(server.api(Method::DELETE, path).send().await.unwrap(), 404).await;
}

#[actix_rt::test]
async fn notify_queues_an_event_through_the_outbox() {
    let server = TestServer::start().await;
    server.register("IMEI:1", json!({})).await;
    let accepted =
        server.api(Method::POST, "/api/v1/devices/IMEI:1/notify").json(&json!({"req_mos": true})).send().await.unwrap();
    assert_eq!(accepted.status(), 202);
    let accepted: Value = accepted.json().await.unwrap();
    let id = accepted["id"].as_str().unwrap().to_owned();
    // No body at all means the defaults.
    let bare = server.api(Method::POST, "/api/v1/devices/IMEI:1/notify").send().await.unwrap();
    assert_eq!(bare.status(), 202);

    let outbox = server.state.store.outbox(0, 10).await.unwrap();
    let event = outbox.iter().find(|event| event.id == id).expect("the event is in the outbox");
    assert_eq!(event.event_type, "notification.requested");
    assert_eq!(event.topic, Topic::Notifications);
    assert_eq!(event.key, "IMEI:1");
    assert_eq!(event.payload["request_mos"], true);
    assert_eq!(outbox.len(), 2);

    let notify = |device: &str| server.api(Method::POST, &format!("/api/v1/devices/{device}/notify"));
    expect_error(notify("IMEI:404").json(&json!({})).send().await.unwrap(), 404).await;
    expect_error(notify("IMEI:1").json(&json!({"req_mos": "yes"})).send().await.unwrap(), 400).await;
    expect_error(notify("IMEI:1").json(&json!({"urgent": true})).send().await.unwrap(), 400).await;
    assert_eq!(server.state.store.outbox(0, 10).await.unwrap().len(), 2);
}

#[actix_rt::test]
async fn slow_clients_get_408_and_the_server_keeps_serving() {
    let server = TestServer::start().await;
    let base = server.base.clone();
    // Headers that never finish: client_request_timeout (1 s in the tests).
    let slow_head = tokio::task::spawn_blocking(move || {
        raw_exchange(&base, &[(b"GET /healthz HTTP/1.1\r\nHost: x\r\n", Duration::ZERO)], Duration::from_secs(4))
    });
    // A body that stops halfway: the API's body deadline (1 s in the tests).
    let base = server.base.clone();
    let head = format!(
        "PUT /api/v1/devices/IMEI:slow HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"password\":"
    );
    let slow_body = tokio::task::spawn_blocking(move || {
        raw_exchange(&base, &[(head.as_bytes(), Duration::ZERO)], Duration::from_secs(4))
    });
    let slow_head = slow_head.await.unwrap();
    assert!(slow_head.starts_with("HTTP/1.1 408"), "{slow_head:?}");
    let slow_body = slow_body.await.unwrap();
    assert!(slow_body.starts_with("HTTP/1.1 408"), "{slow_body:?}");
    assert!(slow_body.contains("{\"error\":"), "{slow_body:?}");

    let healthy = server.client.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(healthy.status(), 200);
    expect_error(server.api(Method::GET, "/api/v1/devices/IMEI:slow").send().await.unwrap(), 404).await;
}

#[actix_rt::test]
async fn http_metrics_use_route_patterns_never_ids() {
    let server = TestServer::start().await;
    server.register("IMEI:metric-label-check", json!({})).await;
    let _ = server.api(Method::GET, "/api/v1/devices/IMEI:metric-label-check").send().await.unwrap();
    let text = server.client.get(server.ops_url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(
        text.lines().any(|line| line.starts_with("omadm_http_responses_total{")
            && line.contains("endpoint=\"/api/v1/devices/{devid}\"")
            && line.contains("method=\"PUT\"")
            && line.contains("status=\"2xx\"")),
        "{text}"
    );
    assert!(text.contains("omadm_http_request_duration_seconds_bucket{endpoint=\"/api/v1/devices/{devid}\""));
    assert!(!text.contains("metric-label-check"), "a device id became a label value");
}
