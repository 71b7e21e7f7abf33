//! omadm-devsim: plays a fleet of OMA DM 2.0 devices (built on omadm-client) against a DM server and reports.
//!
//! [`cli::Args`] are the flags; [`profile`] turns flags or a profile file into device specs; [`schedule`] decides
//! when a device runs its next session; [`report`] collects counts and latency histograms into the final JSON;
//! [`fumo`] is the simulated firmware update; [`register`] registers devices through the operator API;
//! [`sim`] is the async shell running it all with bounded concurrency; [`sms`] decodes WAP Push SMS (as an SMSC
//! delivered them) back into Package#0. Decisions: docs/devsim.md.

pub mod cli;
pub mod fumo;
pub mod profile;
pub mod register;
pub mod report;
pub mod schedule;
pub mod sim;
pub mod sms;
