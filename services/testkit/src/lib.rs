//! What omadm's test crates share: their own servers on free loopback ports, spawned binaries, config defaults.
//!
//! Each module is one concept. The plain ones need nothing but std and
//! tempfile; `store`, `fixtures` and `config::session` need the `core` feature
//! (omadm-core), `config::gateway` and `edge` the `gateway` feature (omadm-gateway),
//! `smsc` the `smsc` feature (rusmpp), `push` the `push` feature (actix-web), `http` the `http` feature
//! (reqwest), so a crate's tests compile only what they use. Every helper fails by panicking
//! with what was missing: in a test, a failed set-up step is a failed test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

pub mod config;
#[cfg(feature = "gateway")]
pub mod edge;
#[cfg(feature = "core")]
pub mod fixtures;
#[cfg(feature = "http")]
pub mod http;
pub mod kafka;
pub mod ports;
pub mod postgres;
pub mod process;
#[cfg(feature = "push")]
pub mod push;
pub mod redis;
pub mod redis_cluster;
pub mod s3;
#[cfg(feature = "smsc")]
pub mod smsc;
#[cfg(feature = "core")]
pub mod store;
pub mod wait;
