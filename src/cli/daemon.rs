//! `fluidtalk-runner daemon [--dry-run]`: every job on its schedule until SIGTERM/Ctrl-C,
//! with the outbox's webhook delivery (if `[delivery]` is set) and the metrics' gauges.

use super::store_access::{open_store, store_failure};
use crate::config::Config;
use crate::daemon::Daemon;
use crate::delivery::Deliverer;
use crate::exit::{Exit, ExitWith, Failure};
use crate::runner::Runner;
use anyhow::anyhow;
use clap::Args;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How often the metrics' gauges (leads by state, pauses, outbox) are read from the database.
const GAUGES_EVERY: Duration = Duration::from_secs(15);

#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Log each tick's plan instead of acting (no key needed, nothing written).
    #[arg(long)]
    dry_run: bool,
}

pub async fn run(config: &Config, args: DaemonArgs) -> Result<(), Failure> {
    if config.jobs.is_empty() {
        return Err(anyhow!(
            "{}: no [[job]] is defined: nothing to run",
            config.path.display()
        ))
        .exit_with(Exit::Config);
    }
    let runner_id = crate::runner::runner_id();
    let clock = crate::clock::from_env()
        .map_err(|e| anyhow!(e))
        .exit_with(Exit::Usage)?;
    let (store, runner) = if args.dry_run {
        let store = crate::store::open_read_only(&config.database_url())
            .await
            .map_err(store_failure)?;
        (store, None)
    } else {
        let client = super::run::campaign_client(config)?;
        let store = open_store(config).await?;
        let d = Runner::new(
            store.clone(),
            client,
            Arc::new(config.clone()),
            clock.clone(),
            runner_id.clone(),
        );
        (store, Some(d))
    };
    // A webhook without its secret is a start-up error, before anything runs.
    let deliverer = if args.dry_run {
        if config.delivery.is_some() {
            tracing::info!("dry run: the outbox is not delivered to the webhook");
        }
        None
    } else {
        Deliverer::from_config(config, store.clone(), clock.clone(), &runner_id)
            .exit_with(Exit::Config)?
    };
    tracing::info!(runner = %runner_id, jobs = config.jobs.len(), dry_run = args.dry_run, "daemon starting");
    // Delivery and the metrics' gauges run beside the schedules and stop with them. The
    // signal handler is installed now: a SIGTERM during start-up stops cleanly too.
    let stop = CancellationToken::new();
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            super::signals::shutdown_signal().await;
            stop.cancel();
        });
    }
    let background = TaskTracker::new();
    crate::metrics::install();
    background.spawn(crate::metrics::refresh_every(
        store.clone(),
        clock.clone(),
        GAUGES_EVERY,
        stop.clone(),
    ));
    if let Some(d) = deliverer {
        background.spawn(Arc::new(d).run(stop.clone()));
    }
    let daemon = Arc::new(Daemon::new(config, store, runner, clock, runner_id));
    // Calls in flight may take the full API timeout; then their results are recorded.
    let grace = config.fluidtalk.timeout + Duration::from_secs(10);
    let ended = daemon
        .serve(stop.clone().cancelled_owned(), grace)
        .await
        .map_err(|e| anyhow!("the scheduler failed: {e}"))
        .exit_with(Exit::Failure)?;
    // Deliveries in flight end within the webhook's timeout and are recorded.
    background.close();
    let delivery_grace = config
        .delivery
        .as_ref()
        .map_or(Duration::ZERO, |d| d.timeout)
        + Duration::from_secs(10);
    if tokio::time::timeout(delivery_grace, background.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "a webhook delivery was still going when the daemon stopped; it goes out again once its lease runs out"
        );
    }
    if !ended {
        return Err(anyhow!(
            "stopped with a run still going after the {grace:?} grace period: its calls in flight go to review once their leases run out"
        ))
        .exit_with(Exit::Stopped);
    }
    tracing::info!("daemon stopped");
    Ok(())
}
