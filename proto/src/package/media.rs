//! The media types (Content-Type values) of the DM packages and of MO data (7.2-7.5, Appendix D and E).

/// Package#1, DM session initiation (7.2).
pub const INITIATION_JSON: &str = "application/vnd.oma.dm.initiation+json";
/// Package#2, DM commands (7.3).
pub const REQUEST_JSON: &str = "application/vnd.oma.dm.request+json";
/// Package#3, statuses (7.4).
pub const RESPONSE_JSON: &str = "application/vnd.oma.dm.response+json";
/// Management Object serialization (7.5).
pub const DMMO_JSON: &str = "application/dmmo+json";
/// Package#0, DM notification (Appendix D).
pub const NOTIFICATION: &str = "application/vnd.syncml.dm.notification";
/// A Package#3 that carries GET results (Appendix E); always sent with a `boundary` parameter.
pub const MULTIPART_FORM_DATA: &str = "multipart/form-data";

/// True when a Content-Type header value names `media_type`, ignoring ASCII
/// case, surrounding spaces and parameters, as RFC 9110 8.3.1 allows:
///
/// ```text
/// "Application/VND.oma.dm.response+json; charset=utf-8"  matches  RESPONSE_JSON
/// ```
pub fn is_media_type(content_type: &str, media_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default();
    essence.trim().eq_ignore_ascii_case(media_type)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_essence_only() {
        assert!(is_media_type(RESPONSE_JSON, RESPONSE_JSON));
        assert!(is_media_type(" Application/VND.oma.dm.response+JSON ; charset=utf-8", RESPONSE_JSON));
        assert!(is_media_type("multipart/form-data; boundary=simple_boundary", MULTIPART_FORM_DATA));
        assert!(!is_media_type(REQUEST_JSON, RESPONSE_JSON));
        assert!(!is_media_type("application/vnd.oma.dm.response+json2", RESPONSE_JSON));
        assert!(!is_media_type("", DMMO_JSON));
    }
}
