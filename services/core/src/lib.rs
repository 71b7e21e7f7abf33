//! omadm-core: the domain of the omadm server, independent of HTTP, Redis and Kafka.
//!
//! - [`model`]: devices, queued commands, sessions, alerts and repository content as stored.
//! - [`store`]: the `Store` trait (state) and its engines, chosen by URL.
//! - [`content`]: the repository's content engine (a directory, S3 or memory, chosen by URL): items' bytes, streamed.
//! - [`bus`]: the `Bus` trait (events for Kafka topics) and its engines.
//! - [`cluster`]: node membership, rendezvous ownership of devices, leases and fencing, pure.
//! - [`session`]: the DM session state machine, pure: state + event + now -> next state + effects;
//!   and its driver over the Store (`session::driver`).
//! - [`usecase`]: what the operator API (and the campaigns role) does to a device: queue commands, request a notification.
//! - [`locks`]: per-device locks of one process.
//! - [`auth`]: device credentials (stored hashed) and HTTP Basic/Digest verification, pure.
//! - [`metrics`]: Prometheus metrics of every path, with bounded labels.
//! - [`clock`]: the one place that reads the wall clock, so logic code takes `now` as an argument.

pub mod access;
pub mod auth;
pub mod bus;
pub mod campaign;
pub mod clock;
pub mod cluster;
pub mod content;
pub mod locks;
pub mod metrics;
pub mod model;
pub mod session;
pub mod store;
pub mod usecase;
