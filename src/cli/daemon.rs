//! `fluidtalk-runner daemon [--dry-run] [--http ADDR]`: every job on its schedule until
//! SIGTERM/Ctrl-C, with the HTTP API (`[http] listen` or `--http`), the outbox's webhook
//! delivery (`[delivery]`) and the metrics' gauges beside them (`crate::service`).

use super::store_access::{open_store, store_failure};
use crate::config::{Config, ConfigPath};
use crate::exit::{Exit, ExitWith, Failure};
use crate::service::{Ended, Options, ServiceError, Setup, Stop};
use anyhow::anyhow;
use clap::Args;
use std::net::SocketAddr;

#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Log each tick's plan instead of acting (no key needed, nothing written).
    #[arg(long)]
    dry_run: bool,
    /// Serve the HTTP API on this address (overrides `[http] listen`), e.g. 127.0.0.1:8080;
    /// port 0 picks a free port (logged). Needs FLUIDTALK_RUNNER_TOKEN.
    #[arg(long, value_name = "ADDR")]
    http: Option<SocketAddr>,
}

/// The API's base URL as logged: without a user, password or query, which could be
/// credentials.
fn shown_base_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.as_str().trim_end_matches('/').to_string()
        }
        Err(_) => "(not a URL)".to_string(),
    }
}

/// The exit code of a service that could not start or failed.
fn service_failure(e: ServiceError) -> Failure {
    let exit = match e {
        ServiceError::DryRunServes => Exit::Usage,
        ServiceError::NothingToRun(_)
        | ServiceError::Token(_)
        | ServiceError::Tls(_)
        | ServiceError::Bind { .. }
        | ServiceError::Delivery(_) => Exit::Config,
        ServiceError::Scheduler(_) => Exit::Failure,
    };
    Failure {
        exit,
        error: anyhow::Error::new(e),
    }
}

pub async fn run(config: &Config, path: ConfigPath, args: DaemonArgs) -> Result<(), Failure> {
    // The signal handlers are installed now: a SIGTERM during start-up stops cleanly too,
    // and a SIGHUP then is a reload once the daemon runs (never the default, which kills).
    let stop = Stop::new();
    super::signals::ask_on_signal(stop.clone());
    let reloads = super::signals::reload_on_hangup(path);
    let opts = Options {
        dry_run: args.dry_run,
        http: args.http,
    };
    let setup = Setup::check(config, &opts).map_err(service_failure)?;
    let clock = crate::clock::from_env()
        .map_err(|e| anyhow!(e))
        .exit_with(Exit::Usage)?;
    let (store, client) = if setup.dry_run() {
        let store = crate::store::open_read_only(&config.database_url())
            .await
            .map_err(store_failure)?;
        (store, None)
    } else {
        let client = super::common::campaign_client(config)?;
        (open_store(config).await?, Some(client))
    };
    let service = setup
        .build(config, store, client, clock)
        .await
        .map_err(service_failure)?
        .reloading(reloads);
    // Where to look: the dashboard (from the address bound, so port 0 shows the port
    // picked) and the API the calls go to.
    let dashboard = service.dashboard_url().unwrap_or_else(|| "off".to_string());
    tracing::info!(runner = %service.runner_id(), jobs = config.jobs.len(), dry_run = args.dry_run, http = %service.listen().map_or_else(|| "off".to_string(), |a| a.to_string()), %dashboard, api = %shown_base_url(&config.base_url()), "daemon starting");
    match service.run(stop).await.map_err(service_failure)? {
        Ended::Clean => {}
        Ended::DatabaseGone(error) => return Err(anyhow!(error)).exit_with(Exit::DatabaseMoved),
        Ended::Overran(grace) => {
            return Err(anyhow!(
                "stopped with a run still going after the {grace:?} grace period: its calls in flight go to review once their leases run out"
            ))
            .exit_with(Exit::Stopped);
        }
    }
    tracing::info!("daemon stopped");
    Ok(())
}
