//! Every event a session produces matches docs/events.md: its catalogue row (topic, key, id scheme) and the JSON Schemas of its envelope and payload.
//!
//! The schemas and their validator live in `support/event_schemas.rs`, shared
//! with the Kafka bus tests.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod session_support;
mod support {
    pub mod event_schemas;
}

use std::collections::BTreeMap;

use omadm_core::bus::Event;
use omadm_core::model::NotificationDelivery;
use omadm_core::session::events::{
    ContentUploaded, NotificationAnswered, NotificationCollapsed, NotificationFailed, NotificationRequested,
    NotificationSent, PushRegistered, PushUnregistered, content_uploaded, notification_answered,
    notification_collapsed, notification_delivery, notification_failed, notification_requested, notification_retry,
    notification_sent, push_registered, push_unregistered,
};
use serde_json::json;
use session_support::*;
use support::event_schemas::*;

fn check_event(documented: &Documented, event: &Event) {
    check_documented(documented, event);
    assert_eq!(event.key, DEVICE_ID);
    assert_eq!(event.payload["device_id"], json!(DEVICE_ID));
}

#[test]
fn every_event_of_a_session_matches_its_documented_schema() {
    let documented = documented();
    let events = events_of_sessions();
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for event in &events {
        check_event(&documented, event);
        *seen.entry(event.event_type.as_str()).or_default() += 1;
    }
    assert_eq!(
        seen,
        BTreeMap::from([("alert.received", 2), ("command.result", 5), ("session.ended", 2), ("session.started", 2)])
    );
    let expired = events.iter().find(|event| event.payload["state"] == json!("expired")).unwrap();
    assert!(expired.payload.get("status").is_none());
    let with_data = events.iter().find(|event| event.payload.get("data").is_some()).unwrap();
    assert_eq!(with_data.payload["data"]["content_type"], json!("application/dmmo+json"));
}

#[test]
fn the_edge_events_match_their_documented_schemas() {
    let documented = documented();
    let upload = content_uploaded(ContentUploaded {
        device_id: DEVICE_ID.to_owned(),
        path: "uploads/IMEI%3A493005100592800/devinfo".to_owned(),
        method: "PUT".to_owned(),
        content_type: "application/dmmo+json".to_owned(),
        size: 312,
        stored_at: START,
    });
    check_event(&documented, &upload);
    assert_eq!(upload.id, format!("upload:{DEVICE_ID}:uploads/IMEI%3A493005100592800/devinfo:{START}"));
    let notify = notification_requested(NotificationRequested {
        device_id: DEVICE_ID.to_owned(),
        request_id: "r-1".to_owned(),
        requested_at: START,
        requested_by: "operator".to_owned(),
        request_mos: true,
        preferred_con_types: vec!["wireless".to_owned(), "any".to_owned()],
        attempt: 1,
    });
    check_event(&documented, &notify);
    assert_eq!(notify.id, format!("notify:{DEVICE_ID}:r-1"));
    assert!(notify.payload.get("attempt").is_none(), "the first attempt is left out");
    let retry = notification_retry(
        NotificationRequested {
            device_id: DEVICE_ID.to_owned(),
            request_id: "r-1".to_owned(),
            requested_at: START,
            requested_by: "operator".to_owned(),
            request_mos: false,
            preferred_con_types: Vec::new(),
            attempt: 2,
        },
        START + 10_000,
    );
    check_event(&documented, &retry);
    assert_eq!(
        (retry.id.as_str(), retry.timestamp),
        (format!("notify:{DEVICE_ID}:r-1:attempt:2").as_str(), START + 10_000)
    );
    let sent = notification_sent(NotificationSent {
        device_id: DEVICE_ID.to_owned(),
        request_id: "r-1".to_owned(),
        transport: "udp".to_owned(),
        notification_id: 65_535,
        signed: true,
        request_mos: false,
        sent_at: START,
        attempt: 2,
    });
    check_event(&documented, &sent);
    assert_eq!(sent.id, format!("notification:{DEVICE_ID}:r-1:sent"));
    for transport in [None, Some("udp".to_owned())] {
        let failed = notification_failed(NotificationFailed {
            device_id: DEVICE_ID.to_owned(),
            request_id: "r-2".to_owned(),
            transport,
            reason: "no_transport".to_owned(),
            detail: "the device has no notify address".to_owned(),
            failed_at: START,
            attempt: 1,
            retry_at: None,
        });
        check_event(&documented, &failed);
        assert_eq!(failed.id, format!("notification:{DEVICE_ID}:r-2:failed"));
    }
    // A failed attempt that is tried again has an id of its own; the request's outcome keeps the plain one.
    let attempt_failed = notification_failed(NotificationFailed {
        device_id: DEVICE_ID.to_owned(),
        request_id: "r-2".to_owned(),
        transport: Some("sms".to_owned()),
        reason: "transport_error".to_owned(),
        detail: "the SMSC did not answer".to_owned(),
        failed_at: START,
        attempt: 3,
        retry_at: Some(START + 40_000),
    });
    check_event(&documented, &attempt_failed);
    assert_eq!(attempt_failed.id, format!("notification:{DEVICE_ID}:r-2:attempt:3:failed"));
    let answered = notification_answered(NotificationAnswered {
        device_id: DEVICE_ID.to_owned(),
        request_id: "r-1".to_owned(),
        session_id: "s-9".to_owned(),
        transport: "udp".to_owned(),
        notification_id: 65_535,
        sent_at: START,
        answered_at: START + 800,
    });
    check_event(&documented, &answered);
    for (delivered, status) in [(true, "DELIVRD"), (false, "EXPIRED")] {
        let report = notification_delivery(NotificationDelivery {
            device_id: DEVICE_ID.to_owned(),
            request_id: "r-1".to_owned(),
            transport: "sms".to_owned(),
            delivered,
            status: status.to_owned(),
            message_id: "4711".to_owned(),
            at: START + 300,
        });
        check_event(&documented, &report);
        let suffix = if delivered { "delivered" } else { "undelivered" };
        assert_eq!(report.id, format!("notification:{DEVICE_ID}:r-1:{suffix}"));
    }
    assert_eq!(answered.id, format!("notification:{DEVICE_ID}:r-1:answered"));
    let collapsed = notification_collapsed(NotificationCollapsed {
        device_id: DEVICE_ID.to_owned(),
        request_id: "r-3".to_owned(),
        collapsed_into: "r-1".to_owned(),
        collapsed_at: START,
    });
    check_event(&documented, &collapsed);
    assert_eq!(collapsed.id, format!("notification:{DEVICE_ID}:r-3:collapsed"));
    let registered =
        push_registered(PushRegistered { device_id: DEVICE_ID.to_owned(), replaced: true, registered_at: START });
    check_event(&documented, &registered);
    assert_eq!(registered.id, format!("push:{DEVICE_ID}:registered:{START}"));
    for by in ["device", "push_gateway"] {
        let unregistered = push_unregistered(PushUnregistered {
            device_id: DEVICE_ID.to_owned(),
            by: by.to_owned(),
            unregistered_at: START + 1,
        });
        check_event(&documented, &unregistered);
        assert_eq!(unregistered.id, format!("push:{DEVICE_ID}:unregistered:{}", START + 1));
    }
}

#[test]
fn every_documented_type_has_a_schema_and_a_catalogue_row() {
    let documented = documented();
    let envelope_types: Vec<String> = documented.schemas["Envelope"]["properties"]["type"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|name| name.as_str().unwrap().to_owned())
        .collect();
    let catalogue_types: Vec<String> = documented.catalogue.keys().cloned().collect();
    let mut schema_types: Vec<String> = documented.schemas.keys().filter(|name| *name != "Envelope").cloned().collect();
    schema_types.sort();
    let mut envelope_sorted = envelope_types.clone();
    envelope_sorted.sort();
    assert_eq!(catalogue_types, schema_types);
    assert_eq!(envelope_sorted, schema_types);
}

#[test]
fn the_validator_rejects_what_breaks_a_schema() {
    let documented = documented();
    let schema = &documented.schemas["command.result"];
    let good = json!({"device_id": "d", "command_id": 1, "attempt": 1, "command": ["END"], "origin": "operator", "state": "done", "status": 200});
    assert!(errors_of(schema, &good).is_empty());
    let broken = [
        json!({"command_id": 1, "attempt": 1, "command": ["END"], "origin": "operator", "state": "done"}),
        json!({"device_id": "d", "command_id": "1", "attempt": 1, "command": ["END"], "origin": "operator", "state": "done"}),
        json!({"device_id": "d", "command_id": 1, "attempt": 1, "command": [], "origin": "operator", "state": "done"}),
        json!({"device_id": "d", "command_id": 1, "attempt": 1, "command": ["END"], "origin": "operator", "state": "sent"}),
        json!({"device_id": "d", "command_id": 1, "attempt": 1, "command": ["END"], "origin": "operator", "state": "done", "colour": 1}),
        json!({"device_id": "d", "command_id": 0, "attempt": 1, "command": ["END"], "origin": "operator", "state": "done"}),
        json!({"device_id": "", "command_id": 1, "attempt": 1, "command": ["END"], "origin": "operator", "state": "done"}),
        json!({"device_id": "d", "command_id": 1, "attempt": 1, "command": ["END"], "origin": "operator", "state": "done", "status": 2000}),
        json!({"device_id": "d", "command_id": 1, "attempt": 1, "command": ["END"], "origin": "operator", "state": "done", "data": {"value": 1}}),
    ];
    for value in broken {
        assert!(!errors_of(schema, &value).is_empty(), "{value} must be refused");
    }
    assert!(!errors_of(&documented.schemas["Envelope"], &json!({"id": "x"})).is_empty());
    assert!(id_matches("result:{device id}:{command id}:{attempt}", "result:IMEI:1:7:2"));
    assert!(!id_matches("result:{device id}:{command id}:{attempt}", "alert:IMEI:1:7"));
    assert!(!id_matches("session:{session id}:started", "session:s1:ended"));
}

#[test]
fn the_campaign_events_match_their_documented_schemas() {
    use omadm_core::campaign::events::{
        campaign_created, campaign_device_changed, campaign_rate_changed, campaign_state_changed,
    };
    use omadm_core::campaign::{Campaign, CampaignDevice, CampaignSpec, CampaignState, DeviceState, Progress};
    let documented = documented();
    let body = json!({"name": "fw-1.3", "target": {"filter": {"mod": "X1", "fwv": "1.2"}},
        "action": {"firmware": {"url": "fw/x1-1.3.bin", "version": "1.3"}}, "policy": {"waves": ["5%", "100%"]}});
    let spec = CampaignSpec::from_json(&serde_json::to_vec(&body).unwrap()).unwrap();
    let mut campaign = Campaign {
        id: "cmp-0123456789ab".to_owned(),
        spec,
        state: CampaignState::Running,
        reason: None,
        descriptor_url: None,
        follow_up_of: Some("cmp-00000000000a".to_owned()),
        rollback_descriptor_url: None,
        created_at: START,
        updated_at: START,
        progress: Progress::default(),
    };
    let created = campaign_created(&campaign);
    check_documented(&documented, &created);
    assert_eq!(created.key, campaign.id);
    campaign.state = CampaignState::Paused;
    campaign.reason = Some("failure_threshold".to_owned());
    let changed = campaign_state_changed(&campaign, CampaignState::Running, 7, START + 1);
    check_documented(&documented, &changed);
    assert_eq!(changed.id, "campaign:cmp-0123456789ab:state:7");
    let mut device = CampaignDevice::new(DEVICE_ID, 1, START);
    let joined = campaign_device_changed(&campaign.id, &device, None, 0, START);
    check_documented(&documented, &joined);
    assert!(joined.payload.get("from").is_none());
    device.state = DeviceState::Failed;
    device.attempt = 1;
    device.result_code = Some(410);
    device.reason = Some("result_code".to_owned());
    let failed = campaign_device_changed(&campaign.id, &device, Some(DeviceState::Executing), 4, START + 2);
    check_documented(&documented, &failed);
    assert_eq!(failed.key, campaign.id);
    assert_eq!(failed.id, format!("campaign:cmp-0123456789ab:device:{DEVICE_ID}:4"));
    campaign.progress.rate_per_minute = 300;
    campaign.progress.backoff_share = 0.5;
    let slower = campaign_rate_changed(&campaign, 600, "failures", 9, START + 3);
    check_documented(&documented, &slower);
    assert_eq!((slower.id.as_str(), slower.key.as_str()), ("campaign:cmp-0123456789ab:rate:9", "cmp-0123456789ab"));
    assert_eq!((&slower.payload["from"], &slower.payload["to"]), (&json!(600), &json!(300)));
}
