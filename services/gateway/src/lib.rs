//! omadm-gateway: the HTTP edge of the server, thin shells around omadm-core.
//!
//! - [`device`]: `/dm` and `/dm/s/{sid}` (session actors), `/repo/{path}`, `/bootstrap`, `/push/gcm/...`.
//! - [`cluster`]: membership, ownership of devices and outbox shards, forwarding to the owner.
//! - `content`: repository content over HTTP (streamed bodies, ETag, Range, HEAD) for both listeners.
//! - [`api`]: the operator API under `/api/v1` with its OpenAPI document.
//! - [`ops`]: `/metrics`, `/healthz`, `/readyz`.
//! - [`node`]: one node's wiring (store, bus, cluster, relay, listeners) and its stop order, for the binary and the tests.
//! - [`path`]: strict percent-decoding of request paths (400 for invalid UTF-8).
//! - [`server`]: the actix-web servers (public, internal and ops listener): workers, limits, tracing, graceful shutdown.
//!
//! Handlers parse, call core (store, bus, session machine), and answer; no
//! protocol or domain logic lives here.

pub mod api;
pub mod cluster;
mod content;
pub mod device;
mod error;
pub mod logging;
pub mod node;
pub mod ops;
pub mod path;
pub mod server;
mod state;

pub use error::HttpError;
pub use state::{
    AppState, AuthThrottleConfig, BootstrapConfig, GatewayConfig, GcmOffer, SessionRateLimit, UploadQuotaConfig,
};
