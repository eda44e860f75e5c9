//! `fluidtalk-runner daemon [--dry-run] [--http ADDR]`: every job on its schedule until
//! SIGTERM/Ctrl-C, with the HTTP API (`[http] listen` or `--http`), the outbox's webhook
//! delivery (`[delivery]`) and the metrics' gauges beside them.

use super::store_access::{open_store, store_failure};
use crate::config::Config;
use crate::daemon::Daemon;
use crate::delivery::Deliverer;
use crate::exit::{Exit, ExitWith, Failure};
use crate::runner::Runner;
use anyhow::anyhow;
use clap::Args;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How often the metrics' gauges (leads by state, pauses, outbox) are read from the database.
const GAUGES_EVERY: Duration = Duration::from_secs(15);
/// How often calls left in flight by dead processes are looked for, besides each job run.
const RECOVER_EVERY: Duration = Duration::from_secs(60);

/// Runs the runner's recovery every `every` until `stop`.
async fn recover_every(runner: Runner, every: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let mut summary = crate::runner::Summary::default();
        if let Err(e) = runner.recover(&mut summary).await {
            tracing::warn!(error = %e, "could not look for calls left in flight; trying again later");
        }
    }
}

/// Files the daemon needs open besides its HTTP connections: the database's pool, the
/// webhook's and the API's connections, logs, the forecast's scratch copy.
const OTHER_FILES: u64 = 256;

/// Raises the open-files limit to what `[http] max_connections` needs (as far as the hard
/// limit allows; a soft limit of 1,024 is common), so the connection cap is what refuses
/// connections, not `accept` failing; warns when even the hard limit is too low.
fn open_files_for(max_connections: u32) {
    let want = u64::from(max_connections) + OTHER_FILES;
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return;
    }
    if limit.rlim_cur >= want {
        return;
    }
    let raised = libc::rlimit {
        rlim_cur: want.min(limit.rlim_max),
        rlim_max: limit.rlim_max,
    };
    // SAFETY: as above.
    let ok = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0;
    if !ok || raised.rlim_cur < want {
        tracing::warn!(
            open_files = if ok { raised.rlim_cur } else { limit.rlim_cur },
            needed = want,
            "the open-files limit is below [http] max_connections plus the daemon's own files: raise it (systemd: LimitNOFILE) or lower max_connections"
        );
    }
}

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

pub async fn run(config: &Config, args: DaemonArgs) -> Result<(), Failure> {
    // The signal handler is installed now: a SIGTERM during start-up stops cleanly too.
    let stop = CancellationToken::new();
    let stop_seen = Arc::new(std::sync::OnceLock::new());
    {
        let (stop, seen) = (stop.clone(), stop_seen.clone());
        // Called here, not in the task: the handlers are installed before anything else
        // happens, whenever the task first runs.
        let signal = super::signals::shutdown_signal();
        tokio::spawn(async move {
            signal.await;
            let _ = seen.set(std::time::Instant::now());
            stop.cancel();
        });
    }
    if args.dry_run && args.http.is_some() {
        return Err(anyhow!(
            "--dry-run touches nothing, so it serves no HTTP API: drop --http, or --dry-run"
        ))
        .exit_with(Exit::Usage);
    }
    // A dry run previews the schedules of a campaign file that also sets `[http] listen`.
    let listen = if args.dry_run {
        if config.http.listen.is_some() {
            tracing::info!("dry run: the HTTP API ([http] listen) is not served");
        }
        None
    } else {
        args.http.or(config.http.listen)
    };
    if config.jobs.is_empty() && listen.is_none() && config.delivery.is_none() {
        return Err(anyhow!(
            "{}: no [[job]], [http] or [delivery] is defined: nothing to run",
            config.path.display()
        ))
        .exit_with(Exit::Config);
    }
    // Checked before anything opens: a server without its lock must not start, nor one
    // whose certificate cannot serve HTTPS.
    let token = listen
        .map(|_| crate::http::Token::from_env())
        .transpose()
        .map_err(|e| anyhow!(e))
        .exit_with(Exit::Config)?;
    let tls = match (&listen, &config.http.tls) {
        (Some(_), Some(files)) => Some(
            crate::http::Tls::load(files)
                .map_err(|e| anyhow!("{}: {e}", config.path.display()))
                .exit_with(Exit::Config)?,
        ),
        _ => None,
    };
    if listen.is_some() {
        open_files_for(config.http.max_connections);
    }
    // Scratch folders of forecasts whose process was killed before it could remove them.
    crate::forecast::clean_stale_scratch();
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
        let client = super::common::campaign_client(config)?;
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
    let metrics = crate::metrics::install();
    let mut server = None;
    let mut relays = None;
    if let (Some(addr), Some(token), Some(runner)) = (listen, token, &runner) {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow!("cannot serve the HTTP API on {addr}: {e}"))
            .exit_with(Exit::Config)?;
        let state = crate::http::AppState::new(
            runner.clone(),
            token,
            Some(Arc::new(move || metrics.render())),
        )
        .with_database_url(config.database_url());
        relays = Some(state.tasks.clone());
        server = Some(tokio::spawn(crate::http::serve_with(
            listener,
            state,
            tls,
            stop.clone(),
        )));
    }
    tracing::info!(runner = %runner_id, jobs = config.jobs.len(), dry_run = args.dry_run, http = %listen.map_or_else(|| "off".to_string(), |a| a.to_string()), "daemon starting");
    // Delivery and the metrics' gauges run beside the schedules and stop with them.
    let background = TaskTracker::new();
    background.spawn(crate::metrics::refresh_every(
        store.clone(),
        clock.clone(),
        GAUGES_EVERY,
        stop.clone(),
    ));
    if let Some(d) = deliverer {
        background.spawn(Arc::new(d).run(stop.clone()));
    }
    if let Some(r) = &runner {
        // Calls a dead process left in flight (a job's or the relay's) are settled even
        // when no job fires for a long time.
        background.spawn(recover_every(r.clone(), RECOVER_EVERY, stop.clone()));
    }
    let daemon =
        Arc::new(Daemon::new(config, store, runner, clock, runner_id).stop_on_fatal(stop.clone()));
    // Calls in flight may take the full API timeout; then their results are recorded.
    let grace = config.fluidtalk.timeout + Duration::from_secs(10);
    let ended = daemon
        .clone()
        .serve(stop.clone().cancelled_owned(), grace)
        .await
        .map_err(|e| anyhow!("the scheduler failed: {e}"))
        .exit_with(Exit::Failure)?;
    // Everything else began stopping with the runs: what is left of the grace bounds the
    // waits below, which run together, so a stop stays within systemd's TimeoutStopSec.
    let since_stop = stop_seen.get().map_or(Duration::ZERO, |t| t.elapsed());
    let left = grace.saturating_sub(since_stop) + Duration::from_secs(5);
    let server_ended = async {
        let Some(server) = server else { return };
        // Requests being answered finish.
        match tokio::time::timeout(left, server).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::error!(error = %e, "the HTTP API failed"),
            Ok(Err(e)) => tracing::error!(error = %e, "the HTTP API's task failed"),
            Err(_) => {
                tracing::warn!("the HTTP API still had requests going after the grace period")
            }
        }
    };
    let relays_ended = async {
        let Some(relays) = relays else { return true };
        // Relayed calls whose caller hung up run on: their answers are recorded first.
        relays.close();
        let ended = tokio::time::timeout(left, relays.wait()).await.is_ok();
        if !ended {
            tracing::warn!(
                "an inbound call was still going after the grace period; its lead goes to review once its lease runs out"
            );
        }
        ended
    };
    // Deliveries in flight end within the webhook's timeout and are recorded.
    let delivery_grace = config
        .delivery
        .as_ref()
        .map_or(Duration::ZERO, |d| d.timeout)
        + Duration::from_secs(10);
    let background_ended = async {
        background.close();
        if tokio::time::timeout(left.max(delivery_grace), background.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "a webhook delivery was still going when the daemon stopped; it goes out again once its lease runs out"
            );
        }
    };
    let ((), relays_ended, ()) = tokio::join!(server_ended, relays_ended, background_ended);
    if let Some(error) = daemon.fatal() {
        return Err(anyhow!(error)).exit_with(Exit::DatabaseMoved);
    }
    if !ended || !relays_ended {
        return Err(anyhow!(
            "stopped with a run still going after the {grace:?} grace period: its calls in flight go to review once their leases run out"
        ))
        .exit_with(Exit::Stopped);
    }
    tracing::info!("daemon stopped");
    Ok(())
}
