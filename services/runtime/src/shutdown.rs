//! The stop signals and the one order every role stops in.
//!
//! ```text
//! SIGTERM -> StopAccepting (readiness 503, listeners close) -> Drain (requests in flight finish)
//!         -> StopConsumers -> LeaveCluster -> FlushBus (outbox relay drained to the bus) -> CloseStore
//! ```
//!
//! A role registers each step under its [`Phase`] as it starts the thing the step stops; [`ShutdownPlan::run`]
//! runs them by phase, in registration order within one phase, so the binary and the tests that start the same
//! wiring stop alike.

use std::future::Future;
use std::pin::Pin;

/// Where a stop step belongs; steps run in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Readiness turns 503 and listeners stop accepting connections.
    StopAccepting,
    /// Requests in flight finish (the HTTP servers' graceful stop).
    Drain,
    /// Bus consumers stop after the batch in hand, committed or not.
    StopConsumers,
    /// The node leaves the cluster, so peers take its devices over at once.
    LeaveCluster,
    /// Events committed with the state reach the bus (the outbox relay's drain), producers flush.
    FlushBus,
    /// The store closes last: every step before may still write.
    CloseStore,
}

type Step = Pin<Box<dyn Future<Output = ()>>>;

/// The stop steps of one process, run once in [`Phase`] order.
#[derive(Default)]
pub struct ShutdownPlan {
    steps: Vec<(Phase, &'static str, Step)>,
}

impl ShutdownPlan {
    pub fn new() -> Self {
        ShutdownPlan::default()
    }

    /// Registers `step` (not started until [`ShutdownPlan::run`]) under `phase`; `name` goes to the logs.
    pub fn add(&mut self, phase: Phase, name: &'static str, step: impl Future<Output = ()> + 'static) {
        self.steps.push((phase, name, Box::pin(step)));
    }

    /// The registered steps in the order [`ShutdownPlan::run`] runs them.
    pub fn order(&self) -> Vec<(Phase, &'static str)> {
        let mut order: Vec<(Phase, &'static str)> = self.steps.iter().map(|(phase, name, _)| (*phase, *name)).collect();
        order.sort_by_key(|(phase, _)| *phase);
        order
    }

    /// Runs every step, one after the other, phase by phase (a stable sort keeps registration order in a phase).
    pub async fn run(mut self) {
        self.steps.sort_by_key(|(phase, _, _)| *phase);
        for (phase, name, step) in self.steps {
            tracing::info!(?phase, step = name, "stopping");
            step.await;
        }
        tracing::info!("stopped");
    }
}

/// What asked the process to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopSignal {
    Terminate,
    Interrupt,
}

impl StopSignal {
    pub fn name(self) -> &'static str {
        match self {
            StopSignal::Terminate => "SIGTERM",
            StopSignal::Interrupt => "SIGINT",
        }
    }
}

/// SIGTERM and SIGINT, listened for from [`StopSignals::install`] on: a signal that arrives between the install
/// and [`StopSignals::wait`] (a supervisor that stops the role as soon as its banner is out) is not lost, and does
/// not kill the process before the stop order runs.
pub struct StopSignals {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
}

impl StopSignals {
    /// Starts listening; call it before the role announces that it runs.
    #[cfg(unix)]
    pub fn install() -> std::io::Result<StopSignals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(StopSignals { terminate: signal(SignalKind::terminate())?, interrupt: signal(SignalKind::interrupt())? })
    }

    #[cfg(not(unix))]
    pub fn install() -> std::io::Result<StopSignals> {
        Ok(StopSignals {})
    }

    /// Waits for SIGTERM or SIGINT (Ctrl-C) and says which.
    #[cfg(unix)]
    pub async fn wait(mut self) -> StopSignal {
        tokio::select! {
            _ = self.terminate.recv() => StopSignal::Terminate,
            _ = self.interrupt.recv() => StopSignal::Interrupt,
        }
    }

    /// Waits for Ctrl-C.
    #[cfg(not(unix))]
    pub async fn wait(self) -> StopSignal {
        let _ = tokio::signal::ctrl_c().await;
        StopSignal::Interrupt
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::*;

    #[tokio::test]
    async fn steps_run_by_phase_whatever_order_they_were_added_in() {
        let ran = Rc::new(RefCell::new(Vec::new()));
        let mut plan = ShutdownPlan::new();
        for (phase, name) in [
            (Phase::CloseStore, "store"),
            (Phase::FlushBus, "relay"),
            (Phase::Drain, "public"),
            (Phase::StopAccepting, "readiness"),
            (Phase::Drain, "internal"),
            (Phase::StopConsumers, "consumer"),
            (Phase::LeaveCluster, "membership"),
        ] {
            let ran = Rc::clone(&ran);
            plan.add(phase, name, async move { ran.borrow_mut().push(name) });
        }
        let expected = ["readiness", "public", "internal", "consumer", "membership", "relay", "store"];
        assert_eq!(plan.order().into_iter().map(|(_, name)| name).collect::<Vec<_>>(), expected);
        assert!(ran.borrow().is_empty(), "no step runs before the plan does");
        plan.run().await;
        assert_eq!(*ran.borrow(), expected);
    }
}
