//! The runner's way to the database: every store call is tried again, with back-off, while
//! the database is in an outage (unreachable, restarting, its disk full, switched
//! read-only, its file locked), and the process's view of whether storage works.
//!
//! Every operation passed here must be safe to repeat: reads, claims by lease token,
//! attempts recorded under a token (a retried insert first looks for its own earlier
//! write), results that only finish what is still in flight, leases given back by token.
//!
//! **Answers are never dropped for an outage.** Reads, claims and records in flight give
//! up after `DB_OUTAGE_BUDGET` (nothing was called for them: the job's run ends and the
//! leads stay due). Answers received from the API exist only in memory until written:
//! they are tried again for as long as the outage lasts (`OnStop::Hold`), and each holds
//! its call slot meanwhile, so a runner holds at most `concurrency` of them and starts no
//! call while they wait. Only a stop bounds that wait (then by the budget), and a crash.

use crate::clock::Clock;
use crate::store::StoreError;
use chrono::{DateTime, Utc};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long a runner keeps trying reads, claims and records in flight while the database
/// is in an outage before it gives up on the job's run (answers: see `OnStop::Hold`).
pub const DB_OUTAGE_BUDGET: Duration = Duration::from_secs(120);

/// How long one database operation of the runner may take before it counts as unreachable.
const DB_STATEMENT_LIMIT: Duration = Duration::from_secs(60);

/// How long to keep trying, and whether a stop ends the waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnStop {
    /// A read or a claim: up to the budget; after a stop there is no point waiting.
    GiveUp,
    /// Bookkeeping (a run's end, recovery): up to the budget, a stop or not.
    KeepTrying,
    /// Answers held only in memory: for as long as the outage lasts; after a stop, up to
    /// the budget from the stop (the process is ending: what is still held then goes to
    /// review once its lease runs out, at most `concurrency` leads).
    Hold,
}

/// Whether the process can write to its database, as its last writes found it: shared by
/// the runner, `/readyz`, `/v1/status` and the `fluidtalk_runner_storage_available` gauge.
#[derive(Debug, Default)]
pub struct StorageHealth {
    outage: Mutex<Option<Outage>>,
}

/// A storage outage in progress.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Outage {
    /// When the first failed write of this outage was seen.
    pub since: DateTime<Utc>,
    /// The last error, as the database gave it.
    pub error: String,
    /// Answers received from the API that wait to be written.
    pub answers_held: u64,
}

impl StorageHealth {
    /// The outage in progress, if any.
    pub fn outage(&self) -> Option<Outage> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Outage>> {
        self.outage.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A store call failed with an outage error at `now`.
    pub fn failed(&self, now: DateTime<Utc>, error: &StoreError, holding: usize) {
        let mut outage = self.lock();
        match outage.as_mut() {
            Some(o) => {
                o.error = error.to_string();
                o.answers_held = o.answers_held.max(holding as u64);
            }
            None => {
                tracing::error!(error = %error, answers_held = holding, "STORAGE UNAVAILABLE: no new call starts until the database takes writes again; answers received are held and written then");
                *outage = Some(Outage {
                    since: now,
                    error: error.to_string(),
                    answers_held: holding as u64,
                });
                crate::metrics::storage_available(false);
            }
        }
    }

    /// A write succeeded: any outage is over.
    pub fn wrote(&self, now: DateTime<Utc>) {
        let mut outage = self.lock();
        if let Some(o) = outage.take() {
            let lasted = (now - o.since).to_std().unwrap_or_default();
            tracing::warn!(lasted = %humantime::format_duration(Duration::from_secs(lasted.as_secs())), "storage available again: writes succeed");
            crate::metrics::storage_available(true);
        }
    }
}

/// Whether a store call writes: only a write that succeeds ends an outage (reads go on
/// working on a full disk or a read-only server).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// Runs store operations for one runner, riding out outages.
#[derive(Clone)]
pub struct Db {
    pub clock: Arc<dyn Clock>,
    pub stop: CancellationToken,
    pub health: Arc<StorageHealth>,
}

impl Db {
    /// Reads with `op`, backing off and trying again while the error is transient, for up
    /// to `DB_OUTAGE_BUDGET` (a stop ends the wait).
    pub async fn read<T, F, Fut>(&self, what: &str, op: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        self.attempt(what, Access::Read, OnStop::GiveUp, 0, op)
            .await
    }

    /// Writes with `op`, backing off and trying again while the error is transient (see
    /// `StoreError::is_transient`), for as long as `on_stop` says.
    pub async fn run<T, F, Fut>(&self, what: &str, on_stop: OnStop, op: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        self.attempt(what, Access::Write, on_stop, 0, op).await
    }

    /// Writes `holding` answers with `op` (`OnStop::Hold`): the outage's report counts them.
    pub async fn hold<T, F, Fut>(&self, what: &str, holding: usize, op: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        self.attempt(what, Access::Write, OnStop::Hold, holding, op)
            .await
    }

    /// Writes with `op` once, bounded like every try: for a write that has a fallback
    /// (the caller writes the same thing the long way on an error), so an error here is
    /// neither retried nor reported as an outage.
    pub async fn once<T>(
        &self,
        op: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let v = tokio::time::timeout(DB_STATEMENT_LIMIT, op)
            .await
            .unwrap_or(Err(StoreError::Unresponsive(DB_STATEMENT_LIMIT)))?;
        self.health.wrote(self.clock.now());
        Ok(v)
    }

    async fn attempt<T, F, Fut>(
        &self,
        what: &str,
        access: Access,
        on_stop: OnStop,
        holding: usize,
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
        let budget = chrono::Duration::seconds(DB_OUTAGE_BUDGET.as_secs() as i64);
        let mut give_up = self.clock.now() + budget;
        let mut stopped_at: Option<DateTime<Utc>> = None;
        let mut failures = 0u32;
        loop {
            let now = self.clock.now();
            if on_stop == OnStop::Hold {
                // Held answers wait out any outage; a stop starts the budget's count.
                give_up = match (stopped_at, self.stop.is_cancelled()) {
                    (Some(at), _) => at + budget,
                    (None, true) => *stopped_at.insert(now) + budget,
                    (None, false) => DateTime::<Utc>::MAX_UTC,
                };
            }
            // A server that stops answering (a host gone without closing its sockets)
            // counts as unreachable too, not as a wait without end; and no try runs past
            // the budget (the leases are sized for it).
            let left = (give_up - now)
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
                    if access == Access::Write {
                        self.health.wrote(self.clock.now());
                    }
                    return Ok(v);
                }
                Err(e) if e.is_transient() => {
                    self.health.failed(self.clock.now(), &e, holding);
                    let now = self.clock.now();
                    if now >= give_up || (on_stop == OnStop::GiveUp && self.stop.is_cancelled()) {
                        return Err(e);
                    }
                    failures += 1;
                    let wait = delays.next().unwrap_or(Duration::from_secs(10));
                    if holding > 0 {
                        tracing::warn!(what, error = %e, ?wait, failures, answers_held = holding, "the database takes no writes; holding the answers and trying again");
                    } else {
                        tracing::warn!(what, error = %e, ?wait, failures, "the database is unreachable; backing off and trying again");
                    }
                    // A stop cuts a held write's back-off short: its budget starts now.
                    tokio::select! {
                        () = self.clock.sleep(wait) => {}
                        () = self.stop.cancelled(), if on_stop == OnStop::Hold && stopped_at.is_none() => {}
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
}
