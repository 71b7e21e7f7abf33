//! omadm-client: the device side of OMA DM 2.0, for device makers to embed and for omadm-devsim.
//!
//! A [`device::Device`] is a management tree (DevInfo, DMAcc, DMDAC, SessionInfo, ...), its credentials,
//! network identity and server account, plus the device maker's plug-ins (executable nodes for EXEC, a
//! browser for SHOW). [`session::run_session`] runs a DM session against the server over HTTP
//! ([`transport::Transport`]: Digest SHA-256/MD5 or Basic, plain HTTP in this build, retries and failover
//! between equivalent server URLs as [`retry`] decides); each DM command executes
//! in its own file under [`command`]; [`access`] applies the DMDAC rights of 11.3; [`notification`] receives
//! Package#0 over UDP (WAP Push) or a push message; [`push`] registers the device's push-service RegID with the
//! server (D.2.4); [`bootstrap`] provisions the DM account.
//!
//! ```no_run
//! # async fn example(devinfo: omadm_proto::mo::DevInfo) -> Result<(), Box<dyn std::error::Error>> {
//! use omadm_client::device::{Device, ServerAccount};
//! use omadm_client::session::{SessionRequest, run_session};
//! use omadm_client::transport::Transport;
//!
//! let account = ServerAccount { server_id: "dms1".into(), package1_url: "http://127.0.0.1:8080/dm".into() };
//! let mut device = Device::new(devinfo, "s3cret", account)?;
//! let transport = Transport::new(device.credentials.clone())?;
//! let report = run_session(&mut device, &transport, SessionRequest::default()).await?;
//! println!("{} packages, {} commands", report.packages, report.commands.len());
//! # Ok(()) }
//! ```
//!
//! The protocol itself (packages, URIs, tree, multipart) is omadm-proto's. Decisions: docs/client.md.

pub mod access;
pub mod bootstrap;
pub mod command;
pub mod device;
pub mod notification;
pub mod push;
pub mod retry;
pub mod session;
pub mod transport;
