//! `fluidtalk-runner daemon [--dry-run]`: every job on its schedule until SIGTERM/Ctrl-C.

use super::store_access::{open_store, store_failure};
use crate::config::Config;
use crate::daemon::Daemon;
use crate::exit::{Exit, ExitWith, Failure};
use crate::runner::Runner;
use anyhow::anyhow;
use clap::Args;
use std::sync::Arc;
use std::time::Duration;

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
    tracing::info!(runner = %runner_id, jobs = config.jobs.len(), dry_run = args.dry_run, "daemon starting");
    let daemon = Arc::new(Daemon::new(config, store, runner, clock, runner_id));
    // Calls in flight may take the full API timeout; then their results are recorded.
    let grace = config.fluidtalk.timeout + Duration::from_secs(10);
    let ended = daemon
        .serve(super::signals::shutdown_signal(), grace)
        .await
        .map_err(|e| anyhow!("the scheduler failed: {e}"))
        .exit_with(Exit::Failure)?;
    if !ended {
        return Err(anyhow!(
            "stopped with a run still going after the {grace:?} grace period: its calls in flight go to review once their leases run out"
        ))
        .exit_with(Exit::Stopped);
    }
    tracing::info!("daemon stopped");
    Ok(())
}
