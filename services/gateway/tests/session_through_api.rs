//! The operator's view of a whole DM session: everything goes in through the operator API (device,
//! repository content, commands), a device runs its session over real HTTP (Package#1 with an alert,
//! CONT, multipart GET results, HGET from /repo, HPUT to /repo, EXEC, END), and the operator API then
//! shows every result, the inventory, the alerts, the session and the mirror.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod device_support;

use device_support::{AuthMode, SimulatedDevice, TestServer};
use omadm_proto::package::{Alert, AlertItem, InitiationPackage};
use serde_json::{Value, json};

const DEVICE: &str = "IMEI:490154203237518";
const PASSWORD: &str = "api-view-secret";
/// `base_config`'s operator token.
const TOKEN: &str = "admin";

async fn api(client: &reqwest::Client, method: reqwest::Method, url: String, body: Option<Value>) -> (u16, Value) {
    let mut request = client.request(method, url).bearer_auth(TOKEN);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

#[actix_rt::test]
async fn the_api_shows_every_result_of_a_session() {
    let server = TestServer::start_full_stack().await;
    let base = server.base.clone();
    let client = reqwest::Client::new();
    let get = reqwest::Method::GET;

    let (status, _) = api(
        &client,
        reqwest::Method::PUT,
        format!("{base}/api/v1/devices/{DEVICE}"),
        Some(json!({"password": PASSWORD})),
    )
    .await;
    assert_eq!(status, 201);
    let settings = r#"{"MOID": "urn:oma:mo:example-settings:1.0", "MIID": "", "MOData": {"Volume": 3}}"#;
    let published = client
        .put(format!("{base}/api/v1/repository/cfg/settings.json"))
        .bearer_auth(TOKEN)
        .header("Content-Type", "application/dmmo+json")
        .body(settings)
        .send()
        .await
        .unwrap();
    assert_eq!(published.status(), 201);
    let commands = json!({"commands": [
        ["GET", "urn:oma:mo:example-settings:1.0//Volume"],
        ["HGET", format!("{base}/repo/cfg/settings.json"), "urn:oma:mo:example-settings:1.0//"],
        ["HPUT", format!("{base}/repo/up/[DevID]/settings.json"), "urn:oma:mo:example-settings:1.0//"],
        ["EXEC", "urn:oma:mo:example-settings:1.0//Reboot"],
    ]});
    let (status, queued) =
        api(&client, reqwest::Method::POST, format!("{base}/api/v1/devices/{DEVICE}/commands"), Some(commands)).await;
    assert_eq!(status, 201, "{queued}");
    let ids: Vec<u64> = queued["ids"].as_array().unwrap().iter().map(|id| id.as_u64().unwrap()).collect();
    assert_eq!(ids.len(), 4);

    let mut alert = AlertItem::new("urn:oma:at:example:1.0:BatteryLow");
    alert.mime_type = Some("application/json".to_owned());
    alert.data = Some(json!({"level": 7}));
    let package1 = InitiationPackage { supported_objects: None, alert: Some(Alert::new(vec![alert])) };
    let device = SimulatedDevice::new(DEVICE, PASSWORD, AuthMode::DigestSha256);
    let transcript = device.run_session(&server, &package1).await;
    assert!(transcript.packages.len() >= 3, "{} packages", transcript.packages.len());

    // Every queued command: done, with its status and, for the GET, its data.
    let mut states = Vec::new();
    for id in &ids {
        let (status, record) =
            api(&client, get.clone(), format!("{base}/api/v1/devices/{DEVICE}/commands/{id}"), None).await;
        assert_eq!(status, 200, "{record}");
        states.push((
            record["command"][0].as_str().unwrap().to_owned(),
            record["state"].clone(),
            record["status"].clone(),
        ));
        if record["command"][0] == "GET" {
            assert_eq!(record["data"]["value"], json!("7"), "{record}");
        }
    }
    assert_eq!(
        states,
        vec![
            ("GET".to_owned(), json!("done"), json!(200)),
            ("HGET".to_owned(), json!("done"), json!(200)),
            ("HPUT".to_owned(), json!("done"), json!(200)),
            ("EXEC".to_owned(), json!("done"), json!(200)),
        ]
    );
    let (_, listed) = api(&client, get.clone(), format!("{base}/api/v1/devices/{DEVICE}/commands"), None).await;
    assert_eq!(listed["commands"].as_array().map(Vec::len), Some(4), "{listed}");

    // The device view: inventory from the server's own GETs, last session, nothing pending.
    let (_, view) = api(&client, get.clone(), format!("{base}/api/v1/devices/{DEVICE}"), None).await;
    assert_eq!(view["inventory"]["man"], "Example", "{view}");
    assert_eq!(view["inventory"]["fwv"], "1.0.3", "{view}");
    assert_eq!(view["last_session"]["outcome"], "ended", "{view}");
    assert_eq!(view["pending_commands"], 0, "{view}");

    // Alerts, sessions and the mirror.
    let (_, alerts) = api(&client, get.clone(), format!("{base}/api/v1/devices/{DEVICE}/alerts"), None).await;
    let alerts = alerts["alerts"].as_array().unwrap().clone();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["item"]["AlertType"], "urn:oma:at:example:1.0:BatteryLow");
    assert_eq!(alerts[0]["status"], 200);
    let (_, sessions) = api(&client, get.clone(), format!("{base}/api/v1/devices/{DEVICE}/sessions"), None).await;
    assert_eq!(sessions["sessions"].as_array().map(Vec::len), Some(1), "{sessions}");
    assert_eq!(sessions["sessions"][0]["outcome"], "ended");
    let (status, tree) = api(
        &client,
        get.clone(),
        format!("{base}/api/v1/devices/{DEVICE}/tree?uri=urn:oma:mo:oma-dm-devinfo:1.2//Man"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{tree}");
    assert_eq!(tree[0]["MOData"]["Man"], "Example", "{tree}");

    server.stop().await;
}
