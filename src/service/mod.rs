//! The daemon as a library: its parts assembled, started alike and stopped together.
//!
//! `Setup::check` decides what the daemon serves from the campaign file and the command
//! line's `Options`, checking all that can fail before the database opens (a server
//! without its token, a certificate that cannot serve HTTPS); `Setup::build` makes the parts
//! over the opened store; `Service::run` runs them until its `Stop` and then waits for each
//! within its grace (`Graces`, computed once, from the campaign file).
//!
//! Every part has one shape, `run(self, stop: CancellationToken)` (`Part`): the scheduler
//! (`daemon::Daemon`, whose heartbeat also prunes hourly, `[retention]`), the HTTP server
//! (`http::Server`, with the dashboard's background forecast, `forecast::Guest`), the
//! webhook's delivery (`delivery::Deliverer`), the metrics' gauges (`metrics::Gauges`) and
//! the recovery of calls left in flight (`runner::Recovery`). The command line parses
//! flags, opens the store, and maps `Ended` and `ServiceError` to exit codes.

mod files;
mod graces;
mod part;
pub mod reload;

pub use graces::{Graces, Stop};
pub use part::Part;

use crate::clock::Clock;
use crate::config::Config;
use crate::daemon::Daemon;
use crate::delivery::{Deliverer, SetupError};
use crate::fluidtalk::Client;
use crate::http::{AppState, Server, Tls, Token};
use crate::metrics::Gauges;
use crate::runner::{Recovery, Runner};
use crate::store::Store;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::task::TaskTracker;

/// What the command line asks of the daemon.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Log each tick's plan instead of acting: no HTTP API, no delivery, nothing written.
    pub dry_run: bool,
    /// Serve the HTTP API here, overriding `[http] listen`.
    pub http: Option<SocketAddr>,
}

/// Why the service could not start, or failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// `--dry-run` with `--http`: a command-line mistake.
    #[error("--dry-run touches nothing, so it serves no HTTP API: drop --http, or --dry-run")]
    DryRunServes,
    /// The campaign file (this one) defines no job, HTTP API or delivery.
    #[error("{}: no [[job]], [http] or [delivery] is defined: nothing to run", .0.display())]
    NothingToRun(PathBuf),
    /// The HTTP API's token is missing or unusable.
    #[error(transparent)]
    Token(#[from] crate::http::TokenError),
    /// The certificate cannot serve HTTPS.
    #[error("{0}")]
    Tls(String),
    /// The HTTP API's address cannot be bound.
    #[error("cannot serve the HTTP API on {addr}: {error}")]
    Bind {
        addr: SocketAddr,
        error: std::io::Error,
    },
    /// The webhook cannot be delivered to (its secret, its URL).
    #[error(transparent)]
    Delivery(#[from] SetupError),
    /// The scheduler itself failed.
    #[error("the scheduler failed: {0}")]
    Scheduler(String),
}

/// How the service stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// Every part stopped within its grace.
    Clean,
    /// The database file was deleted, replaced or moved: everything stopped at once.
    DatabaseGone(String),
    /// A run, or a relayed call, was still going after the runs' grace (this one).
    Overran(Duration),
}

/// What the daemon serves, checked before the database opens.
pub struct Setup {
    dry_run: bool,
    listen: Option<SocketAddr>,
    token: Option<Token>,
    tls: Option<Tls>,
}

impl Setup {
    /// What `config` and `opts` ask the daemon to serve, with the HTTP API's token and
    /// certificate read; raises the open-files limit for the HTTP connections, and removes
    /// the scratch folders of forecasts whose process was killed.
    pub fn check(config: &Config, opts: &Options) -> Result<Setup, ServiceError> {
        if opts.dry_run && opts.http.is_some() {
            return Err(ServiceError::DryRunServes);
        }
        // A dry run previews the schedules of a campaign file that also sets `[http] listen`.
        let listen = if opts.dry_run {
            if config.http.listen.is_some() {
                tracing::info!("dry run: the HTTP API ([http] listen) is not served");
            }
            None
        } else {
            opts.http.or(config.http.listen)
        };
        if config.jobs.is_empty() && listen.is_none() && config.delivery.is_none() {
            return Err(ServiceError::NothingToRun(config.path.clone()));
        }
        // Checked before anything opens: a server without its lock must not start, nor one
        // whose certificate cannot serve HTTPS.
        let token = listen
            .map(|_| Token::from_env())
            .transpose()
            .map_err(ServiceError::Token)?;
        let tls = match (&listen, &config.http.tls) {
            (Some(_), Some(files)) => Some(
                Tls::load(files)
                    .map_err(|e| ServiceError::Tls(format!("{}: {e}", config.path.display())))?,
            ),
            _ => None,
        };
        if listen.is_some() {
            files::open_files_for(config.http.max_connections);
        }
        // Scratch folders of forecasts whose process was killed before it could remove them.
        crate::forecast::clean_stale_scratch();
        Ok(Setup {
            dry_run: opts.dry_run,
            listen,
            token,
            tls,
        })
    }

    /// Whether this is a dry run.
    pub fn dry_run(&self) -> bool {
        self.dry_run
    }

    /// Makes every part over `store`: the runner calls through `client` (`None` for a dry
    /// run, which only logs plans); the webhook's secret is read and the HTTP API's address
    /// bound. Nothing runs yet.
    pub async fn build(
        self,
        config: &Config,
        store: Arc<dyn Store>,
        client: Option<Client>,
        clock: Arc<dyn Clock>,
    ) -> Result<Service, ServiceError> {
        let runner_id = crate::runner::runner_id();
        let runner = client.map(|client| {
            Runner::new(
                store.clone(),
                client,
                Arc::new(config.clone()),
                clock.clone(),
                runner_id.clone(),
            )
        });
        // A webhook without its secret is a start-up error, before anything runs.
        let deliverer = if self.dry_run {
            if config.delivery.is_some() {
                tracing::info!("dry run: the outbox is not delivered to the webhook");
            }
            None
        } else {
            Deliverer::from_config(config, store.clone(), clock.clone(), &runner_id)?
        };
        let metrics = crate::metrics::install();
        let mut server = None;
        if let (Some(addr), Some(token), Some(runner)) = (self.listen, self.token, &runner) {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|error| ServiceError::Bind { addr, error })?;
            let state = AppState::new(
                store.clone(),
                runner.clone(),
                token,
                Some(Arc::new(move || metrics.render())),
            )
            .with_database_url(config.database_url());
            server = Some(Server::new(listener, state, self.tls));
        }
        Ok(Service {
            config: Arc::new(config.clone()),
            reloads: None,
            graces: Graces::of(config),
            listen: self.listen,
            gauges: Gauges::new(store.clone(), clock.clone()),
            recovery: runner.clone().map(Recovery::new),
            deliverer,
            server,
            scheduler: Daemon::new(config, store, runner, clock, runner_id.clone()),
            runner_id,
        })
    }
}

/// The daemon's parts, built and not yet running.
pub struct Service {
    /// The campaign file as the daemon started with it.
    config: Arc<Config>,
    /// Newer campaign files, checked (SIGHUP): the jobs are taken up (`reload`).
    reloads: Option<tokio::sync::watch::Receiver<Option<Arc<Config>>>>,
    graces: Graces,
    runner_id: String,
    listen: Option<SocketAddr>,
    scheduler: Daemon,
    server: Option<Server>,
    deliverer: Option<Deliverer>,
    gauges: Gauges,
    recovery: Option<Recovery>,
}

impl Service {
    /// The id this process's attempts, leases and heartbeat are recorded under.
    pub fn runner_id(&self) -> &str {
        &self.runner_id
    }

    /// Where the HTTP API is served, if it is.
    pub fn listen(&self) -> Option<SocketAddr> {
        self.listen
    }

    /// Takes up each campaign file `reloads` hands over (`cli::signals::reload_on_hangup`)
    /// while running: its jobs replace the scheduler's; a change to a setting that needs a
    /// restart is logged and ignored (`reload`).
    pub fn reloading(mut self, reloads: tokio::sync::watch::Receiver<Option<Arc<Config>>>) -> Self {
        self.reloads = Some(reloads);
        self
    }

    /// The dashboard's URL (`http::Server::dashboard_url`), if the HTTP API is served.
    pub fn dashboard_url(&self) -> Option<String> {
        self.server.as_ref().and_then(Server::dashboard_url)
    }

    /// Starts every part and runs until `stop` (or a fatal error, which stops it too);
    /// then waits for each part within its grace (`Graces`) and says how it ended.
    pub async fn run(self, stop: Stop) -> Result<Ended, ServiceError> {
        let Service {
            config,
            reloads,
            graces,
            scheduler,
            server,
            deliverer,
            gauges,
            recovery,
            ..
        } = self;
        let token = stop.token();
        // Relayed calls run in tasks of their own: a stop waits for them too.
        let relays = server.as_ref().map(Server::relays);
        let server = server.map(|s| tokio::spawn(Part::run(s, token.clone())));
        // Delivery, the metrics' gauges and recovery run beside the schedules and stop with
        // them.
        let background = TaskTracker::new();
        background.spawn(Part::run(gauges, token.clone()));
        if let Some(d) = deliverer {
            background.spawn(Part::run(Arc::new(d), token.clone()));
        }
        if let Some(r) = recovery {
            background.spawn(Part::run(r, token.clone()));
        }
        let scheduler = Arc::new(
            scheduler
                .stop_on_fatal(token.clone())
                .with_grace(graces.runs),
        );
        if let Some(mut reloads) = reloads {
            let (scheduler, token) = (scheduler.clone(), token.clone());
            // Beside the schedules; it ends as the stop begins (a reload then is moot).
            background.spawn(async move {
                loop {
                    tokio::select! {
                        () = token.cancelled() => break,
                        changed = reloads.changed() => if changed.is_err() { break },
                    }
                    let new = reloads.borrow_and_update().clone();
                    if let Some(new) = new {
                        reload::apply(&scheduler, &config, &new);
                    }
                }
            });
        }
        let ended = Part::run(scheduler.clone(), token)
            .await
            .map_err(|e| ServiceError::Scheduler(e.to_string()))?;
        // Everything else began stopping with the runs: what is left of the grace bounds the
        // waits below, which run together.
        let since_stop = stop.since_asked();
        let left = graces.after_runs(since_stop);
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
        let background_ended = async {
            background.close();
            // Deliveries in flight end within the webhook's timeout and are recorded.
            if tokio::time::timeout(graces.background(since_stop), background.wait())
                .await
                .is_err()
            {
                tracing::warn!(
                    "a webhook delivery was still going when the daemon stopped; it goes out again once its lease runs out"
                );
            }
        };
        let ((), relays_ended, ()) = tokio::join!(server_ended, relays_ended, background_ended);
        if let Some(error) = scheduler.fatal() {
            return Ok(Ended::DatabaseGone(error));
        }
        if !ended || !relays_ended {
            return Ok(Ended::Overran(graces.runs));
        }
        Ok(Ended::Clean)
    }
}
