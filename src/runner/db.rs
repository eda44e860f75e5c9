//! The runner's way to the database: every store call is tried again, with back-off, while
//! the database is unreachable, for up to `DB_OUTAGE_BUDGET`.
//!
//! Every operation passed here must be safe to repeat: reads, claims by lease token,
//! attempts recorded under a token (a retried insert first looks for its own earlier
//! write), results that only finish what is still in flight, leases given back by token.

use crate::clock::Clock;
use crate::store::StoreError;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long a runner keeps trying while the database is unreachable (restarting, its
/// connections dropped, SQLite's file locked) before it gives up on the job's run.
pub const DB_OUTAGE_BUDGET: Duration = Duration::from_secs(120);

/// How long one database operation of the runner may take before it counts as unreachable.
const DB_STATEMENT_LIMIT: Duration = Duration::from_secs(60);

/// Whether a stop ends the waiting for the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnStop {
    /// A read or a claim: after a stop there is no point waiting for it.
    GiveUp,
    /// Answers held only in memory, or leases to give back: keep trying even then.
    KeepTrying,
}

/// Runs store operations for one runner, riding out outages.
#[derive(Clone)]
pub struct Db {
    pub clock: Arc<dyn Clock>,
    pub stop: CancellationToken,
}

impl Db {
    /// Runs `op`, backing off and trying again while the error is transient (see
    /// `StoreError::is_transient`), for up to `DB_OUTAGE_BUDGET`.
    pub async fn run<T, F, Fut>(
        &self,
        what: &str,
        on_stop: OnStop,
        mut op: F,
    ) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        use backon::BackoffBuilder;
        let mut delays = backon::ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(10))
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
            .build();
        let give_up =
            self.clock.now() + chrono::Duration::seconds(DB_OUTAGE_BUDGET.as_secs() as i64);
        let mut failures = 0u32;
        loop {
            // A server that stops answering (a host gone without closing its sockets)
            // counts as unreachable too, not as a wait without end; and no try runs past
            // the budget (the leases are sized for it).
            let left = (give_up - self.clock.now())
                .to_std()
                .unwrap_or_default()
                .max(Duration::from_secs(1));
            let limit = DB_STATEMENT_LIMIT.min(left);
            let tried = tokio::time::timeout(limit, op())
                .await
                .unwrap_or(Err(StoreError::Unresponsive(limit)));
            match tried {
                Ok(v) => {
                    if failures > 0 {
                        tracing::info!(what, failures, "the database is back");
                    }
                    return Ok(v);
                }
                Err(e)
                    if e.is_transient()
                        && self.clock.now() < give_up
                        && !(on_stop == OnStop::GiveUp && self.stop.is_cancelled()) =>
                {
                    failures += 1;
                    let wait = delays.next().unwrap_or(Duration::from_secs(10));
                    tracing::warn!(what, error = %e, ?wait, failures, "the database is unreachable; backing off and trying again");
                    self.clock.sleep(wait).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}
