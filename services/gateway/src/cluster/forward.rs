//! Forwarding a device request to the node that owns it, over that node's internal listener, and relaying its answer.
//!
//! ```text
//! device ──POST /dm/s/{sid}──> node B ──POST {A internal}/dm/s/{sid}──> node A (owner)
//!                                        + OMADM-Forwarded-By: B
//!                                        + OMADM-Forward-Hops: 1
//!                                        + OMADM-Internal-Token: <shared secret>
//! device <── status, Content-Type, WWW-Authenticate, Retry-After, body ── B <── A
//! ```
//!
//! The method, path and query, body and every end-to-end header go as
//! received (so `Authorization` and `OMADM-DevID` verify on the owner as they
//! would here). A request is forwarded at most [`MAX_HOPS`] times: once to the
//! rendezvous owner, and once more to the node the Store says holds the
//! device's lease.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use bytes::Bytes;
use omadm_core::cluster::NodeInfo;
use omadm_core::metrics::metrics;

use super::ClusterConfig;

/// Names the node that forwarded the request (for logs and loops).
pub const FORWARDED_BY_HEADER: &str = "OMADM-Forwarded-By";
/// How many times the request has been forwarded so far.
pub const FORWARD_HOPS_HEADER: &str = "OMADM-Forward-Hops";
/// The cluster's shared secret; the internal listener refuses device requests without it.
pub const INTERNAL_TOKEN_HEADER: &str = "OMADM-Internal-Token";
/// Set on the internal listener's refusal of a bad token, so the forwarder tells it from a device-level 403.
pub const INTERNAL_REFUSED_HEADER: &str = "OMADM-Internal-Refused";
/// The device's own address, as the first node saw it, so the owner's per-address throttle counts the device
/// rather than the forwarding node. Believed only on the internal listener (whose callers hold the token).
pub const CLIENT_ADDRESS_HEADER: &str = "OMADM-Client-Address";
/// A request goes at most this many hops: rendezvous owner, then lease holder.
pub const MAX_HOPS: u32 = 2;

/// Headers of the owner's answer that reach the device.
const RELAYED_RESPONSE_HEADERS: [&str; 4] = ["content-type", "www-authenticate", "retry-after", "allow"];

/// Headers that belong to one connection, not to the request (RFC 9110 7.6.1), and ours.
const NOT_FORWARDED: [&str; 13] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "host",
    "content-length",
    "omadm-forwarded-by",
    "omadm-forward-hops",
    "omadm-internal-token",
    "omadm-client-address",
];

/// Why a request could not be handed to its owner.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForwardError {
    /// Connection refused, reset or timed out: the owner counts as gone.
    #[error("node {node_id} unreachable: {reason}")]
    Unreachable { node_id: String, reason: String },
    /// The owner's internal listener refused our token: the cluster is misconfigured.
    #[error("node {node_id} refused the internal token")]
    Refused { node_id: String },
}

/// The HTTP client of forwarded requests, shared by every worker of the node.
pub struct Forwarder {
    client: reqwest::Client,
    token: String,
    node_id: String,
}

impl Forwarder {
    pub(crate) fn new(config: &ClusterConfig) -> Forwarder {
        let client = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(config.forward_timeout.min(std::time::Duration::from_secs(2)))
            .timeout(config.forward_timeout)
            .pool_idle_timeout(std::time::Duration::from_secs(30))
            .build()
            .unwrap_or_else(|error| {
                // Only a TLS backend can fail to initialise, and this client has none.
                tracing::error!(%error, "cannot build the forwarding client; using the default one");
                reqwest::Client::new()
            });
        Forwarder { client, token: config.internal_token.clone(), node_id: config.node_id.clone() }
    }

    /// Sends `request` (whose body was read as `body`) to `target`'s internal listener as hop number `hop`,
    /// and turns its answer into ours.
    pub async fn forward(
        &self,
        target: &NodeInfo,
        request: &HttpRequest,
        body: Bytes,
        hop: u32,
    ) -> Result<HttpResponse, ForwardError> {
        let path_and_query = request.uri().path_and_query().map(|target| target.as_str()).unwrap_or("/");
        let url = format!("{}{path_and_query}", target.internal_url.trim_end_matches('/'));
        let method = reqwest::Method::from_bytes(request.method().as_str().as_bytes())
            .map_err(|error| unreachable_error(target, error.to_string()))?;
        let mut outgoing = self.client.request(method, &url);
        for (name, value) in request.headers() {
            if NOT_FORWARDED.contains(&name.as_str()) {
                continue;
            }
            outgoing = outgoing.header(name.as_str(), value.as_bytes());
        }
        outgoing = outgoing
            .header(FORWARDED_BY_HEADER, self.node_id.as_str())
            .header(FORWARD_HOPS_HEADER, hop.to_string())
            .header(INTERNAL_TOKEN_HEADER, self.token.as_str());
        if let Some(address) = client_address(request) {
            outgoing = outgoing.header(CLIENT_ADDRESS_HEADER, address.to_string());
        }
        let outgoing = outgoing.body(body);
        let answer = outgoing.send().await.map_err(|error| unreachable_error(target, error.to_string()))?;
        if answer.headers().contains_key(INTERNAL_REFUSED_HEADER) {
            metrics().forwards.with_label_values(&["refused"]).inc();
            tracing::error!(node_id = %target.id, "the peer refused our internal token: check --internal-token");
            return Err(ForwardError::Refused { node_id: target.id.clone() });
        }
        let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        let mut relayed = HttpResponse::build(status);
        for name in RELAYED_RESPONSE_HEADERS {
            for value in answer.headers().get_all(name) {
                if let Ok(value) = value.to_str() {
                    relayed.append_header((name, value));
                }
            }
        }
        let body = answer.bytes().await.map_err(|error| unreachable_error(target, error.to_string()))?;
        metrics().forwards.with_label_values(&["relayed"]).inc();
        tracing::debug!(node_id = %target.id, hop, status = status.as_u16(), "request relayed from its owner");
        Ok(relayed.body(body))
    }
}

fn unreachable_error(target: &NodeInfo, reason: String) -> ForwardError {
    metrics().forwards.with_label_values(&["owner_unreachable"]).inc();
    ForwardError::Unreachable { node_id: target.id.clone(), reason }
}

/// Marks a request that came in over the internal listener with a valid token (app data of that listener).
#[derive(Debug, Clone, Copy)]
pub struct InternalListener;

/// How many hops `request` has made: 0 unless it came in over the internal listener.
pub fn hops_of(request: &HttpRequest) -> u32 {
    if request.app_data::<InternalListener>().is_none() {
        return 0;
    }
    request
        .headers()
        .get(FORWARD_HOPS_HEADER)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.trim().parse::<u32>().ok())
        .unwrap_or(1)
}

/// The address of the device that sent `request`: the TCP peer, or for a request forwarded by a peer
/// (internal listener) the address the first node gave in [`CLIENT_ADDRESS_HEADER`].
pub fn client_address(request: &HttpRequest) -> Option<std::net::IpAddr> {
    if request.app_data::<InternalListener>().is_some() {
        return request
            .headers()
            .get(CLIENT_ADDRESS_HEADER)
            .and_then(|value| value.to_str().ok())
            .and_then(|text| text.trim().parse().ok());
    }
    request.peer_addr().map(|address| address.ip())
}

/// Whether `given` is the cluster's token, compared in constant time.
pub fn token_matches(expected: &str, given: Option<&[u8]>) -> bool {
    let Some(given) = given else { return false };
    let expected = expected.as_bytes();
    if expected.is_empty() || expected.len() != given.len() {
        return false;
    }
    expected.iter().zip(given).fold(0u8, |difference, (left, right)| difference | (left ^ right)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_must_match_exactly_and_never_be_empty() {
        assert!(token_matches("s3cret-token", Some(b"s3cret-token")));
        assert!(!token_matches("s3cret-token", Some(b"s3cret-tokem")));
        assert!(!token_matches("s3cret-token", Some(b"s3cret")));
        assert!(!token_matches("s3cret-token", None));
        assert!(!token_matches("", Some(b"")));
    }

    #[test]
    fn hops_count_only_on_the_internal_listener() {
        let public =
            actix_web::test::TestRequest::default().insert_header((FORWARD_HOPS_HEADER, "1")).to_http_request();
        assert_eq!(hops_of(&public), 0);
        let internal = actix_web::test::TestRequest::default()
            .app_data(InternalListener)
            .insert_header((FORWARD_HOPS_HEADER, "2"))
            .to_http_request();
        assert_eq!(hops_of(&internal), 2);
        let unnumbered = actix_web::test::TestRequest::default().app_data(InternalListener).to_http_request();
        assert_eq!(hops_of(&unnumbered), 1);
    }
}
