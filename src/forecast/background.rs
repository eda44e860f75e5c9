//! The forecast off the caller's runtime: for the daemon's dashboard, whose process serves
//! requests and runs jobs while a forecast runs its simulated ones.
//!
//! The forecast runs on a thread of its own with a current-thread runtime, so every task
//! it spawns (its daemon's runs, the simulator, the client's connections) stays on that
//! thread, where a thread-local metrics recorder and tracing subscriber that drop
//! everything are set: the simulated calls count in no metric and log no line of the real
//! daemon's. It opens its own read-only connection to the campaign's database.
//!
//! `Guest` is the daemon's forecast: one at a time, on a budget, and cancelled and waited
//! for (within a bound) when the daemon stops, so its thread never outlives the stop and
//! its scratch folder is removed.

use super::{Budget, Forecast, ForecastError, Options, Progress, forecast_with};
use crate::config::Config;
use std::sync::{Arc, Mutex};
use std::time::Duration;

static QUIET: metrics::NoopRecorder = metrics::NoopRecorder;

type Outcome = tokio::sync::oneshot::Receiver<Result<Forecast, ForecastError>>;

/// Starts the forecast of `config` over the database at `url` on a thread of its own,
/// within `budget`, reporting to `progress` (whose `cancel` stops it). The receiver gets
/// its result; the thread ends once its runtime, scratch files and simulator are gone.
pub fn spawn(
    url: String,
    config: Config,
    opts: Options,
    budget: Budget,
    progress: Arc<Progress>,
) -> std::io::Result<(std::thread::JoinHandle<()>, Outcome)> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let work = move || {
        let _metrics = metrics::set_default_local_recorder(&QUIET);
        let _logs = tracing::subscriber::set_default(tracing::subscriber::NoSubscriber::default());
        let result = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => {
                let result = rt.block_on(async {
                    let source = crate::store::open_read_only(&url).await?;
                    forecast_with(&*source, &config, &opts, budget, &progress).await
                });
                // The runs and the simulator still spawned on it end here, before the
                // result is sent: whoever waits for it knows the forecast is over.
                drop(rt);
                result
            }
            Err(e) => Err(ForecastError::Setup(format!("a runtime: {e}"))),
        };
        let _ = tx.send(result);
    };
    let thread = std::thread::Builder::new()
        .name("forecast".into())
        .spawn(work)?;
    Ok((thread, rx))
}

/// Starts the forecast of `config` over the database at `url`, without a budget; the
/// receiver gets its result, or why there is none (closed: the thread could not start or
/// died).
pub fn in_background(url: String, config: Config, opts: Options) -> Outcome {
    match spawn(url, config, opts, Budget::UNLIMITED, Arc::default()) {
        Ok((_, rx)) => rx,
        Err(e) => {
            tracing::error!(error = %e, "could not start the forecast's thread");
            // The sender is dropped: the receiver reports it closed.
            tokio::sync::oneshot::channel().1
        }
    }
}

struct Running {
    progress: Arc<Progress>,
    thread: std::thread::JoinHandle<()>,
}

/// A daemon's forecasts: at most one runs at a time, and none after `stop`.
#[derive(Default)]
pub struct Guest {
    slot: Mutex<(Option<Running>, bool)>,
    started: std::sync::atomic::AtomicU64,
}

impl Guest {
    fn slot(&self) -> std::sync::MutexGuard<'_, (Option<Running>, bool)> {
        self.slot.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a forecast unless one is running (see `running`) or the guest was stopped;
    /// `None` then.
    pub fn start(
        &self,
        url: String,
        config: Config,
        opts: Options,
        budget: Budget,
    ) -> Option<Outcome> {
        let mut slot = self.slot();
        if slot.1 || slot.0.as_ref().is_some_and(|r| !r.thread.is_finished()) {
            return None;
        }
        let progress = Arc::new(Progress::default());
        match spawn(url, config, opts, budget, progress.clone()) {
            Ok((thread, rx)) => {
                slot.0 = Some(Running { progress, thread });
                self.started
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Some(rx)
            }
            Err(e) => {
                tracing::error!(error = %e, "could not start the forecast's thread");
                None
            }
        }
    }

    /// The forecast running now, if one is.
    pub fn running(&self) -> Option<Arc<Progress>> {
        self.slot()
            .0
            .as_ref()
            .filter(|r| !r.thread.is_finished())
            .map(|r| r.progress.clone())
    }

    /// Forecasts started so far.
    pub fn started(&self) -> u64 {
        self.started.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Cancels the forecast running, if any, starts no other, and waits up to `bound` for
    /// its thread to end (its scratch folder removed). Returns whether it ended in time.
    pub async fn stop(&self, bound: Duration) -> bool {
        let running = {
            let mut slot = self.slot();
            slot.1 = true;
            slot.0.take()
        };
        let Some(running) = running else { return true };
        running.progress.cancel.cancel();
        let joined = tokio::task::spawn_blocking(move || running.thread.join());
        match tokio::time::timeout(bound, joined).await {
            Ok(_) => true,
            Err(_) => {
                tracing::warn!(
                    ?bound,
                    "the dashboard's forecast did not stop in time; its scratch folder is removed at the next start"
                );
                false
            }
        }
    }
}
