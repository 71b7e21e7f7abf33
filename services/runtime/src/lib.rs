//! omadm-runtime: what every role of the `omadm` binary shares (gateway today, campaigns and notifier next).
//!
//! - [`settings`]: one settings struct per role, declared once for clap and TOML, layered flags over file.
//! - [`logging`]: tracing on stderr, text or one JSON object per line.
//! - [`ops`]: the operations listener (`/metrics`, `/healthz`, `/readyz`) and the readiness a role reports into.
//! - [`shutdown`]: the stop signals and the one order every role stops in.
//! - [`consumer`]: a loop over `Bus::subscribe` that commits a batch only after its handler succeeded.
//!
//! A role is its handler plus a few lines of wiring:
//!
//! ```text
//! let mut stop = ShutdownPlan::new();
//! let consumer = ConsumerLoop::spawn(bus.clone(), "campaigns", &[Topic::Results], handler, ConsumerOptions::default());
//! stop.add(Phase::StopConsumers, "results consumer", consumer.stop());
//! let signals = StopSignals::install()?;          // before the role says it runs
//! let signal = signals.wait().await;
//! stop.run().await;
//! ```

pub mod consumer;
pub mod logging;
pub mod ops;
pub mod settings;
pub mod shutdown;
