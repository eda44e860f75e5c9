//! The forecast off the caller's runtime: for the daemon's dashboard, whose process serves
//! requests and runs jobs while a forecast runs its simulated ones.
//!
//! The forecast runs on a thread of its own with a current-thread runtime, so every task
//! it spawns (its daemon's runs, the simulator, the client's connections) stays on that
//! thread, where a thread-local metrics recorder and tracing subscriber that drop
//! everything are set: the simulated calls count in no metric and log no line of the real
//! daemon's. It opens its own read-only connection to the campaign's database.

use super::{Forecast, ForecastError, Options, forecast};
use crate::config::Config;

static QUIET: metrics::NoopRecorder = metrics::NoopRecorder;

/// Starts the forecast of `config` over the database at `url`; the receiver gets its
/// result, or why there is none (closed: the thread could not start or died).
pub fn in_background(
    url: String,
    config: Config,
    opts: Options,
) -> tokio::sync::oneshot::Receiver<Result<Forecast, ForecastError>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let work = move || {
        let _metrics = metrics::set_default_local_recorder(&QUIET);
        let _logs = tracing::subscriber::set_default(tracing::subscriber::NoSubscriber::default());
        let result = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt.block_on(async {
                let source = crate::store::open_read_only(&url).await?;
                forecast(&*source, &config, &opts).await
            }),
            Err(e) => Err(ForecastError::Setup(format!("a runtime: {e}"))),
        };
        let _ = tx.send(result);
    };
    if let Err(e) = std::thread::Builder::new()
        .name("forecast".into())
        .spawn(work)
    {
        // The sender went with the closure: the receiver reports it closed.
        tracing::error!(error = %e, "could not start the forecast's thread");
    }
    rx
}
