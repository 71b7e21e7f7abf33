//! Generic Alerts of a Package#1 or #3 (5.3, 7.6): one record and one status per item, answered in the next Package#2's AlertStatus.
//!
//! ```text
//! Package#3  "Alert": {"Items": [{"AlertType": "...", "MIMEType": "text/plain"}, {"AlertType": "...", "MIMEType": "image/png"}]}
//! Package#2  "AlertStatus": [200, 415]        (image/png not in supported_alert_mime_types)
//! ```
//!
//! An item is answered 200 once it is recorded: the record and its
//! `alert.received` event are committed with the step, before the Package#2
//! carrying the status leaves, so the server's own processing is complete.
//! What consumers of the alerts topic do later is theirs, so 202 (accepted,
//! processing deferred) is never used. An item without MIMEType carries no
//! typed data and is never unsupported.

use omadm_proto::package::Alert;
use omadm_proto::package::media::is_media_type;
use omadm_proto::status::StatusCode;

use super::SessionConfig;
use super::events::alert_received;
use crate::bus::Event;
use crate::clock::Millis;
use crate::model::AlertRecord;

/// The alerts of one package, recorded, with their statuses in item order.
#[derive(Debug, Default)]
pub(super) struct AnsweredAlerts {
    pub(super) records: Vec<AlertRecord>,
    pub(super) statuses: Vec<StatusCode>,
    pub(super) events: Vec<Event>,
}

/// 415 when the item's MIMEType is not among the supported ones (an empty list supports all), else 200.
pub(super) fn alert_status(config: &SessionConfig, mime_type: Option<&str>) -> StatusCode {
    let supported = match mime_type {
        None => true,
        Some(mime_type) => {
            config.supported_alert_mime_types.is_empty()
                || config.supported_alert_mime_types.iter().any(|supported| is_media_type(mime_type, supported))
        }
    };
    if supported { StatusCode::OK } else { StatusCode::UNSUPPORTED_MEDIA_TYPE }
}

/// Records every item of `alert`, ids from `first_id` on.
pub(super) fn answer_alerts(
    config: &SessionConfig,
    device_id: &str,
    session_id: &str,
    alert: Option<&Alert>,
    first_id: u64,
    now: Millis,
) -> AnsweredAlerts {
    let mut answered = AnsweredAlerts::default();
    let Some(alert) = alert else { return answered };
    for (offset, item) in (0u64..).zip(&alert.items) {
        let status = alert_status(config, item.mime_type.as_deref());
        let record = AlertRecord {
            id: first_id.saturating_add(offset),
            device_id: device_id.to_owned(),
            session_id: session_id.to_owned(),
            received_at: now,
            item: item.clone(),
            status: status.as_u16(),
        };
        answered.events.push(alert_received(&record));
        answered.statuses.push(status);
        answered.records.push(record);
    }
    answered
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(types: &[&str]) -> SessionConfig {
        SessionConfig {
            supported_alert_mime_types: types.iter().map(|text| (*text).to_owned()).collect(),
            ..SessionConfig::example()
        }
    }

    #[test]
    fn mime_types_compare_by_essence_and_an_empty_list_supports_all() {
        let listed = config(&["text/plain", "application/json"]);
        assert_eq!(alert_status(&listed, Some("TEXT/Plain; charset=utf-8")), StatusCode::OK);
        assert_eq!(alert_status(&listed, Some("application/json")), StatusCode::OK);
        assert_eq!(alert_status(&listed, Some("image/png")), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(alert_status(&listed, Some("text/plainish")), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(alert_status(&listed, None), StatusCode::OK);
        assert_eq!(alert_status(&config(&[]), Some("image/png")), StatusCode::OK);
    }

    #[test]
    fn no_alert_records_nothing() {
        let answered = answer_alerts(&config(&[]), "d", "s", None, 1, 0);
        assert!(answered.records.is_empty() && answered.statuses.is_empty() && answered.events.is_empty());
    }
}
