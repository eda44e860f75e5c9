//! Prometheus metrics: the process's one recorder (`install`), what each metric means
//! (described once there), the runner's and delivery's counters, and the gauges read from
//! the database (`refresh_gauges`, every `GAUGES_EVERY` in the daemon: `Gauges`).
//!
//! Counters and histograms are recorded where things happen (`api_call`, `job_run`,
//! `webhook_delivery`); the gauges describe the shared database, so any daemon can refresh
//! them (every daemon on one database reports the same values). The HTTP server renders
//! `install()`'s handle at `/metrics` and records `HTTP_REQUESTS` itself.

use crate::lead::LeadState;
use crate::store::{AdminStore, PauseScope, StoreError};
use chrono::{DateTime, Utc};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Duration;

/// API calls by `action` (opener, follow_up, event) and `outcome` (`ok` or the error kind).
pub const API_CALLS: &str = "fluidtalk_runner_api_calls_total";
/// API call latency, by `action`.
pub const API_CALL_SECONDS: &str = "fluidtalk_runner_api_call_seconds";
/// Leads by `state`.
pub const LEADS: &str = "fluidtalk_runner_leads";
/// Account pauses in force, by `scope` (1 or 0).
pub const PAUSES_ACTIVE: &str = "fluidtalk_runner_pauses_active";
/// Undelivered outbox messages by `status` (`pending`, `parked`).
pub const OUTBOX_MESSAGES: &str = "fluidtalk_runner_outbox_messages";
/// Webhook deliveries by `result` (`delivered`, `failed`, `parked`, `lost`).
pub const WEBHOOK_DELIVERIES: &str = "fluidtalk_runner_webhook_deliveries_total";
/// Job runs by `job` and `result` (`ok`, `failed`).
pub const JOB_RUNS: &str = "fluidtalk_runner_job_runs_total";
/// Job run duration, by `job`.
pub const JOB_RUN_SECONDS: &str = "fluidtalk_runner_job_run_seconds";
/// Whether this process's last writes to its database succeeded (1) or met an outage (0):
/// a full disk, a read-only server, an I/O error, the database unreachable.
pub const STORAGE_AVAILABLE: &str = "fluidtalk_runner_storage_available";
/// Rows removed by retention, by `table` (`ticks`, `job_runs`, `outbox`, `events`,
/// `attempts`, `prunes`).
pub const PRUNED_ROWS: &str = "fluidtalk_runner_pruned_rows_total";
/// HTTP requests by `route` and `status` (recorded by the HTTP server).
pub const HTTP_REQUESTS: &str = "fluidtalk_runner_http_requests_total";
/// HTTP connections closed at once by `reason`: `per_client` (over
/// `[http] max_connections_per_client`) or `total` (over `max_connections`).
pub const HTTP_CONNECTIONS_REFUSED: &str = "fluidtalk_runner_http_connections_refused_total";
/// HTTP connections closed for taking too long, by `reason`: `no_request` (none within
/// `header_timeout`), `idle` (none for `idle_timeout`), `stalled` (headers not finished
/// in time, or an HTTP/2 ping not answered), `tls_handshake`.
pub const HTTP_CONNECTIONS_TIMED_OUT: &str = "fluidtalk_runner_http_connections_timed_out_total";
/// HTTP connections open now.
pub const HTTP_CONNECTIONS_OPEN: &str = "fluidtalk_runner_http_connections_open";
/// Wrong tokens by `via` (`bearer`, `login`) and `result` (`refused`: 401; `throttled`:
/// 429, a wrong token one too many or any try while the address waits).
pub const HTTP_AUTH_FAILURES: &str = "fluidtalk_runner_http_auth_failures_total";

/// Reply rates (`crate::rates`), by `job`, `step` and `sender`: gauges read from the
/// attempts the database keeps (retention prunes them, so they may go down), appended to
/// `/metrics` by the HTTP server from a value at most `RATES_SECS` old. Steps sent
/// (answered sent or continued).
pub const STEPS_SENT: &str = "fluidtalk_runner_steps_sent";
/// Sent steps a reply was credited to.
pub const STEPS_REPLIED: &str = "fluidtalk_runner_steps_replied";
/// Steps refused because the conversation is sealed.
pub const STEPS_SEALED: &str = "fluidtalk_runner_steps_sealed";
/// Steps answered ignored.
pub const STEPS_IGNORED: &str = "fluidtalk_runner_steps_ignored";
/// Replied / sent.
pub const REPLY_RATE: &str = "fluidtalk_runner_reply_rate";
/// The reply rate's 95% Wilson interval, lower bound.
pub const REPLY_RATE_LOW: &str = "fluidtalk_runner_reply_rate_low";
/// The reply rate's 95% Wilson interval, upper bound.
pub const REPLY_RATE_HIGH: &str = "fluidtalk_runner_reply_rate_high";
/// How old, in seconds, the reply rates on `/metrics` and the dashboard may be: reading
/// them reads every kept attempt of the four statuses (docs/BENCHMARKS.md).
pub const RATES_SECS: i64 = 60;

/// API latency buckets: the API answers in tenths of a second to tens of seconds (an
/// opener with an image), and times out at `[fluidtalk] timeout`.
const API_BUCKETS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0];
/// Job run buckets: a run takes seconds to hours.
const JOB_BUCKETS: &[f64] = &[1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 4.0 * 3600.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's Prometheus recorder, installed on the first call (tests start several
/// daemons in one process: each gets a clone of the one handle). Should another recorder
/// already be installed, metrics go to it and this handle renders nothing.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(API_CALL_SECONDS.into()), API_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full(JOB_RUN_SECONDS.into()), JOB_BUCKETS)
                });
            let handle = match builder {
                Ok(b) => {
                    let recorder = b.build_recorder();
                    let handle = recorder.handle();
                    if let Err(e) = ::metrics::set_global_recorder(recorder) {
                        tracing::warn!(error = %e, "another metrics recorder is installed: /metrics will be empty");
                    }
                    handle
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics buckets refused; histograms are summaries");
                    PrometheusBuilder::new().install_recorder().unwrap_or_else(|e| {
                        tracing::warn!(error = %e, "another metrics recorder is installed: /metrics will be empty");
                        PrometheusBuilder::new().build_recorder().handle()
                    })
                }
            };
            describe();
            handle
        })
        .clone()
}

fn describe() {
    use ::metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        API_CALLS,
        "FluidTalk API calls by action and outcome (ok or the error kind)."
    );
    describe_histogram!(
        API_CALL_SECONDS,
        Unit::Seconds,
        "FluidTalk API call latency by action."
    );
    describe_gauge!(LEADS, "Leads in the database by state.");
    describe_gauge!(
        PAUSES_ACTIVE,
        "Account pauses in force by scope (1 in force, 0 not)."
    );
    describe_gauge!(
        OUTBOX_MESSAGES,
        "Undelivered outbox messages by status (pending, parked)."
    );
    describe_counter!(
        WEBHOOK_DELIVERIES,
        "Webhook delivery tries by result (delivered, failed, parked, lost)."
    );
    describe_counter!(JOB_RUNS, "Job runs by job and result (ok, failed).");
    describe_histogram!(JOB_RUN_SECONDS, Unit::Seconds, "Job run duration by job.");
    describe_counter!(
        PRUNED_ROWS,
        "Rows removed by retention ([retention]), by table."
    );
    describe_counter!(HTTP_REQUESTS, "HTTP requests served by route and status.");
    describe_gauge!(
        STORAGE_AVAILABLE,
        "1 while this process's writes to its database succeed, 0 during a storage outage \
         (disk full, read-only, I/O error, unreachable): no call starts, answers are held."
    );
    describe_counter!(
        HTTP_CONNECTIONS_REFUSED,
        "HTTP connections closed at once, by reason (per_client: over [http] max_connections_per_client; total: over max_connections)."
    );
    describe_counter!(
        HTTP_CONNECTIONS_TIMED_OUT,
        "HTTP connections closed for taking too long, by reason (no_request, idle, stalled, tls_handshake)."
    );
    describe_gauge!(HTTP_CONNECTIONS_OPEN, "HTTP connections open.");
    describe_counter!(
        HTTP_AUTH_FAILURES,
        "Wrong bearer tokens and dashboard logins, by via (bearer, login) and result (refused: 401; throttled: 429, also any try while the address waits)."
    );
    storage_available(true);
}

/// Whether writes to the database work (see `STORAGE_AVAILABLE`).
pub fn storage_available(yes: bool) {
    ::metrics::gauge!(STORAGE_AVAILABLE).set(if yes { 1.0 } else { 0.0 });
}

/// One API call of `action` ended with `outcome` (`ok` or an error kind) after `took`.
pub fn api_call(action: &'static str, outcome: &'static str, took: Duration) {
    ::metrics::counter!(API_CALLS, "action" => action, "outcome" => outcome).increment(1);
    ::metrics::histogram!(API_CALL_SECONDS, "action" => action).record(took.as_secs_f64());
}

/// A run of `job` ended (`ok` or not) after `took`.
pub fn job_run(job: &str, ok: bool, took: Duration) {
    let result = if ok { "ok" } else { "failed" };
    ::metrics::counter!(JOB_RUNS, "job" => job.to_string(), "result" => result).increment(1);
    ::metrics::histogram!(JOB_RUN_SECONDS, "job" => job.to_string()).record(took.as_secs_f64());
}

/// Retention removed `rows` rows of `table`.
pub fn pruned(table: &'static str, rows: u64) {
    ::metrics::counter!(PRUNED_ROWS, "table" => table).increment(rows);
}

/// A webhook delivery try ended with `result`.
pub fn webhook_delivery(result: &'static str) {
    ::metrics::counter!(WEBHOOK_DELIVERIES, "result" => result).increment(1);
}

/// Sets the gauges from the database at `now`: leads by state, pauses in force, and the
/// outbox's pending and parked messages.
pub async fn refresh_gauges(store: &dyn AdminStore, now: DateTime<Utc>) -> Result<(), StoreError> {
    let counts = store.count_by_state().await?;
    for state in LeadState::ALL {
        let n = counts.get(&state).copied().unwrap_or(0);
        ::metrics::gauge!(LEADS, "state" => state.as_str()).set(n as f64);
    }
    let pauses = store.pauses().await?;
    for scope in [
        PauseScope::NewConversations,
        PauseScope::FollowUps,
        PauseScope::All,
    ] {
        let on = pauses.iter().any(|p| p.scope == scope && p.until > now);
        ::metrics::gauge!(PAUSES_ACTIVE, "scope" => scope.as_str()).set(if on { 1.0 } else { 0.0 });
    }
    let outbox = store.outbox_counts().await?;
    ::metrics::gauge!(OUTBOX_MESSAGES, "status" => "pending").set(outbox.pending as f64);
    ::metrics::gauge!(OUTBOX_MESSAGES, "status" => "parked").set(outbox.parked as f64);
    Ok(())
}

/// How often the daemon reads the gauges (leads by state, pauses, outbox) from the database.
pub const GAUGES_EVERY: Duration = Duration::from_secs(15);

/// The daemon's gauges: read from the database now and then every `GAUGES_EVERY` (real
/// time).
pub struct Gauges {
    store: std::sync::Arc<dyn AdminStore>,
    clock: std::sync::Arc<dyn crate::clock::Clock>,
}

impl Gauges {
    pub fn new(
        store: std::sync::Arc<dyn AdminStore>,
        clock: std::sync::Arc<dyn crate::clock::Clock>,
    ) -> Gauges {
        Gauges { store, clock }
    }

    /// Refreshes the gauges now and then every `GAUGES_EVERY` until `stop`.
    pub async fn run(self, stop: tokio_util::sync::CancellationToken) {
        loop {
            if let Err(e) = refresh_gauges(&*self.store, self.clock.now()).await {
                tracing::warn!(error = %e, "could not read the database for the metrics' gauges");
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(GAUGES_EVERY) => {}
            }
        }
    }
}

/// The `outcome` label of an API call's answer.
pub fn outcome<T>(answer: &Result<T, crate::fluidtalk::Error>) -> &'static str {
    match answer {
        Ok(_) => "ok",
        Err(e) => e.kind().as_str(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_labels_are_the_error_kinds_serialized_names() {
        use crate::fluidtalk::ErrorKind as K;
        for kind in [
            K::Unauthorized,
            K::OutOfTokens,
            K::Sealed,
            K::NoConversation,
            K::RateLimited,
            K::Server,
            K::Gateway,
            K::Connect,
            K::Timeout,
            K::Network,
            K::Decode,
            K::LocalFile,
            K::Other,
            K::Setup,
        ] {
            let name = serde_json::to_value(kind).expect("serializes");
            assert_eq!(Some(kind.as_str()), name.as_str(), "{kind:?}");
        }
        assert_eq!(outcome::<()>(&Ok(())), "ok");
    }
}
