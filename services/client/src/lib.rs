//! omadm-client: the device side of OMA DM 2.0, for device makers to embed and for omadm-devsim.
//!
//! A [`device`] is a management tree (DevInfo, DMAcc, DMDAC, SessionInfo, ...),
//! its credentials and identity; [`session`] runs a DM session against a server
//! over HTTP; each DM command executes in its own file under [`command`];
//! [`notification`] receives Package#0 over UDP (WAP Push) or a push message;
//! [`bootstrap`] provisions the DM account.
//!
//! The protocol itself (packages, URIs, tree, multipart) is omadm-proto's.

pub mod notification;
