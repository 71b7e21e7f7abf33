//! omadm-proto: the OMA DM 2.0 protocol as pure types, parsers and encoders.
//!
//! Sans-io by design: nothing here opens a socket, reads a file, spawns a task or
//! reads the clock. Callers pass the time in where the protocol needs it
//! (notification digests) and do their own I/O around these functions. Every
//! parser returns a typed error instead of panicking, whatever the input.
//!
//! Map of the crate, following the specification's own layout:
//! - [`notification`]: Package#0, its options, SHA256-DIGEST signing, WAP Push and base64 transports.
//! - [`package`]: Packages #1, #2 and #3 (JSON), Generic Alerts, media types.
//! - [`command`]: the ten DM commands, one file each.
//! - [`status`]: the status codes of Appendix C.
//! - [`uri`]: ClientURI (6.1) and ServerURI (6.2).
//! - [`tree`]: management tree, ClientURI resolution, MO serialization (dmmo+json), cache validators.
//! - [`multipart`]: Package#3 with GET results as multipart/form-data (Appendix E).
//! - [`mo`]: the standard management objects (DevInfo, DMAcc, DMDAC, SessionInfo, FUMO).

pub mod command;
pub mod mo;
pub mod multipart;
pub mod notification;
pub mod package;
pub mod status;
pub mod tree;
pub mod uri;
