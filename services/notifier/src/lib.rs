//! omadm-notifier: the role that wakes devices. It consumes `notification.requested` from the notifications
//! topic, builds and signs each device's Package#0 (5.2.1), sends it through a push gateway (Appendix D.2), as
//! connectionless WAP Push over UDP or SMS (Appendix D.1; SMS through an SMSC over SMPP 3.4) and records
//! `notification.sent`, `.failed` or `.collapsed`, then `.delivered` or `.undelivered` where the SMSC reports it
//! (docs/events.md, docs/notifier.md).
//!
//! - [`plan`]: the decisions, pure: options, signature, destination, dedup of requests in flight.
//! - [`transport`]: the [`Transport`] trait and [`UdpTransport`].
//! - [`sms`]: [`SmppTransport`], WAP Push over SMS through the SMSC, and its submit rate limit.
//! - [`receipts`]: the SMSC's delivery receipts filed under their requests (`notification.delivered`).
//! - [`push`]: [`PushTransport`], Package#0 through a push gateway over HTTP (D.2, FCM HTTP v1 by default).
//! - [`role`]: [`Notifier`], the consumer loop and its handler.
//! - [`answers`]: the sessions topic's consumer that closes a sent notification as answered by the device's
//!   next session (`notification.answered`).
//! - [`settings`]: [`NotifierArgs`] (flags, variables, TOML) and [`NotifierSettings`].
//!
//! Wiring, under the role runtime's shutdown order:
//!
//! ```text
//! let settings = NotifierSettings::resolve(&layer(&args.notifier, &file.notifier)?)?;
//! let notifier = Notifier::start(store.clone(), bus.clone(), settings, readiness.clone()).await?;
//! stop.add(Phase::StopConsumers, "notifier", notifier.stop());
//! ```

pub mod answers;
pub mod metrics;
pub mod plan;
pub mod push;
pub mod rate;
pub mod receipts;
pub mod role;
pub mod settings;
pub mod sms;
pub mod transport;

pub use push::PushTransport;
pub use role::Notifier;
pub use settings::{CONSUMER_GROUP, NotifierArgs, NotifierSettings, PushSettings, SmppBind, SmppSettings};
pub use sms::SmppTransport;
pub use transport::{Dispatch, Transport, TransportError, UdpTransport};

/// Why the notifier cannot start.
#[derive(Debug, thiserror::Error)]
pub enum NotifierError {
    #[error("invalid notifier settings: {0}")]
    Settings(String),
    #[error("notifier transport: {0}")]
    Transport(String),
    #[error("notifier cannot join its consumer group: {0}")]
    Bus(omadm_core::bus::BusError),
}
