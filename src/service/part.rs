//! The one shape every part of the service has: `run(self, stop)`.

use crate::daemon::Daemon;
use crate::delivery::Deliverer;
use crate::http::Server;
use crate::metrics::Gauges;
use crate::runner::Recovery;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// A part of the service: it runs until `stop` is cancelled, then winds down (finishing
/// what it has under way) and returns how it ended. Each part's own module defines its
/// `run(self, stop)`; this trait lets the service start them all alike. The bounds on a
/// part's wind-down are the service's (`Graces`).
pub trait Part: Send + 'static {
    /// How the part ended.
    type Ended: Send + 'static;

    fn run(self, stop: CancellationToken) -> impl Future<Output = Self::Ended> + Send + 'static;
}

/// The scheduler: every job on its schedule, each heartbeat also following the pauses,
/// publishing the runner's row and starting the hourly prune (`[retention]`). Ends with
/// whether every run ended within its grace.
impl Part for Arc<Daemon> {
    type Ended = Result<bool, tokio_cron_scheduler::JobSchedulerError>;

    fn run(self, stop: CancellationToken) -> impl Future<Output = Self::Ended> + Send + 'static {
        Daemon::run(self, stop)
    }
}

/// The HTTP API, the dashboard and its background forecast.
impl Part for Server {
    type Ended = std::io::Result<()>;

    fn run(self, stop: CancellationToken) -> impl Future<Output = Self::Ended> + Send + 'static {
        Server::run(self, stop)
    }
}

/// The outbox's webhook delivery (`[delivery]`).
impl Part for Arc<Deliverer> {
    type Ended = ();

    fn run(self, stop: CancellationToken) -> impl Future<Output = Self::Ended> + Send + 'static {
        Deliverer::run(self, stop)
    }
}

/// The metrics' gauges, read from the database.
impl Part for Gauges {
    type Ended = ();

    fn run(self, stop: CancellationToken) -> impl Future<Output = Self::Ended> + Send + 'static {
        Gauges::run(self, stop)
    }
}

/// The recovery of calls dead processes left in flight.
impl Part for Recovery {
    type Ended = ();

    fn run(self, stop: CancellationToken) -> impl Future<Output = Self::Ended> + Send + 'static {
        Recovery::run(self, stop)
    }
}
