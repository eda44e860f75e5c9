//! The `Deliverer`: claims deliverable messages, POSTs each one signed, and records the
//! result under its lease (delivered, failed with its next try, or parked).
//!
//! Each decision about time (what is due, back-off, `max_age`, the signature's timestamp)
//! asks the injected clock, so tests move time instead of waiting; only the idle wait
//! between empty passes is real time.

use super::backoff::{Next, Retry};
use super::signer::{IDEMPOTENCY_HEADER, SIGNATURE_HEADER, Signer, TIMESTAMP_HEADER};
use crate::clock::Clock;
use crate::config::{Delivery, WebhookUrl};
use crate::store::{DeliveryItem, DeliveryStore, Held, Lease, StoreError};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long a daemon waits between passes that found nothing to deliver.
const IDLE_WAIT: Duration = Duration::from_secs(1);

/// What the webhook receives: one outbox message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Payload<'a> {
    pub id: i64,
    pub target: &'a str,
    /// The persona's account to send from: the lead's, else the campaign's default.
    pub own_username: Option<&'a str>,
    pub action: &'a str,
    pub text: &'a str,
    pub session_id: Option<&'a str>,
    pub created_at: DateTime<Utc>,
}

/// Why delivery could not start.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Secret(#[from] super::SecretError),
    #[error("cannot make the webhook's HTTP client: {0}")]
    Client(String),
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassReport {
    pub claimed: usize,
    pub delivered: usize,
    pub failed: usize,
    pub parked: usize,
    /// Tries whose result could not be written (the message goes out again after its
    /// lease runs out).
    pub lost: usize,
}

/// How one try ended.
enum Tried {
    Delivered,
    Failed(String),
}

/// What a try came to once recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Delivered,
    /// Tried again later.
    Failed,
    Parked,
    /// The result could not be written, or the message was no longer this daemon's.
    Lost,
}

impl Outcome {
    /// The `result` label of `fluidtalk_runner_webhook_deliveries_total`.
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Failed => "failed",
            Outcome::Parked => "parked",
            Outcome::Lost => "lost",
        }
    }
}

/// Delivers the outbox to one webhook.
pub struct Deliverer {
    store: Arc<dyn DeliveryStore>,
    clock: Arc<dyn Clock>,
    http: reqwest::Client,
    url: WebhookUrl,
    signer: Signer,
    retry: Retry,
    timeout: Duration,
    concurrency: NonZeroU32,
    /// This daemon's lease token.
    lease_token: String,
    /// The campaign's sender, for leads that name none.
    default_sender: Option<String>,
    idle_wait: Duration,
}

impl std::fmt::Debug for Deliverer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deliverer")
            .field("url", &self.url)
            .field("signer", &self.signer)
            .field("retry", &self.retry)
            .field("lease_token", &self.lease_token)
            .finish_non_exhaustive()
    }
}

impl Deliverer {
    /// A deliverer for `settings`, signing with `signer`, leasing as `runner_id`.
    pub fn new(
        settings: &Delivery,
        signer: Signer,
        store: Arc<dyn DeliveryStore>,
        clock: Arc<dyn Clock>,
        runner_id: &str,
    ) -> Result<Deliverer, SetupError> {
        crate::fluidtalk::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .user_agent(concat!("fluidtalk-runner/", env!("CARGO_PKG_VERSION")))
            // A redirected POST would arrive as a GET, unsigned for its new URL: a 3xx
            // is a failed try like any other non-2xx.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| SetupError::Client(e.without_url().to_string()))?;
        Ok(Deliverer {
            store,
            clock,
            http,
            url: settings.webhook_url.clone(),
            signer,
            retry: Retry {
                base: settings.retry_base,
                max: settings.retry_max,
                max_age: settings.max_age,
            },
            timeout: settings.timeout,
            concurrency: settings.concurrency,
            lease_token: format!("{runner_id}/delivery"),
            default_sender: None,
            idle_wait: IDLE_WAIT,
        })
    }

    /// The deliverer `config`'s `[delivery]` asks for, signing with the secret from the
    /// environment variable it names; `None` when the file sets no webhook.
    pub fn from_config(
        config: &crate::config::Config,
        store: Arc<dyn DeliveryStore>,
        clock: Arc<dyn Clock>,
        runner_id: &str,
    ) -> Result<Option<Deliverer>, SetupError> {
        let Some(settings) = &config.delivery else {
            return Ok(None);
        };
        let signer = Signer::from_env(&settings.secret_env)?;
        Ok(Some(
            Deliverer::new(settings, signer, store, clock, runner_id)?
                .with_default_sender(config.fluidtalk.own_username.clone()),
        ))
    }

    /// Names the campaign's default sender (`[fluidtalk] own_username`).
    pub fn with_default_sender(mut self, sender: Option<String>) -> Self {
        self.default_sender = sender.filter(|s| !s.trim().is_empty());
        self
    }

    /// Sets the real-time wait between passes that found nothing (tests shorten it).
    pub fn with_idle_wait(mut self, wait: Duration) -> Self {
        self.idle_wait = wait;
        self
    }

    /// Makes passes until `stop` is cancelled. A pass under way when it is finishes: its
    /// POSTs end (within the timeout) and their results are recorded.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        tracing::info!(webhook = %self.url, "delivering the outbox");
        while !stop.is_cancelled() {
            let busy = match self.pass().await {
                Ok(report) => report.claimed > 0,
                Err(e) => {
                    tracing::warn!(error = %e, "could not claim messages to deliver; trying again");
                    false
                }
            };
            if !busy {
                tokio::select! {
                    () = stop.cancelled() => {}
                    () = tokio::time::sleep(self.idle_wait) => {}
                }
            }
        }
        tracing::info!("delivery stopped");
    }

    /// Claims up to `concurrency` deliverable messages (at most one per target), POSTs them
    /// at once, and records each result. `claimed == 0`: nothing was due.
    pub async fn pass(self: &Arc<Self>) -> Result<PassReport, StoreError> {
        let now = self.clock.now();
        // The lease outlasts the POST (and the writes after it) by far: another daemon
        // must never take a message whose try is still going.
        let lease = self.timeout.saturating_mul(2) + Duration::from_secs(60);
        let items = self
            .store
            .claim_deliveries(
                self.concurrency.get(),
                Lease {
                    lease_token: &self.lease_token,
                    now,
                    until: crate::clock::later(now, lease),
                },
            )
            .await?;
        let mut report = PassReport {
            claimed: items.len(),
            ..PassReport::default()
        };
        // Spawned tasks, not futures of this pass: a dropped `JoinHandle` detaches its task
        // (a `JoinSet` would abort them), so a POST under way is finished and recorded even
        // if the pass's caller goes away.
        let tries: Vec<_> = items
            .into_iter()
            .map(|item| {
                let me = self.clone();
                tokio::spawn(async move { me.deliver(item).await })
            })
            .collect();
        for done in tries {
            match done.await {
                Ok(Outcome::Delivered) => report.delivered += 1,
                Ok(Outcome::Failed) => report.failed += 1,
                Ok(Outcome::Parked) => report.parked += 1,
                Ok(Outcome::Lost) => report.lost += 1,
                Err(e) => {
                    tracing::error!(error = %e, "a delivery task failed");
                    report.lost += 1;
                }
            }
        }
        Ok(report)
    }

    /// Tries `item` once and records how it went.
    async fn deliver(&self, item: DeliveryItem) -> Outcome {
        let tried = self.post(&item).await;
        let now = self.clock.now();
        let held = Held {
            id: item.id,
            lease_token: &self.lease_token,
        };
        let (result, written) = match &tried {
            Tried::Delivered => (Outcome::Delivered, self.store.delivered(held, now).await),
            Tried::Failed(error) => {
                let jitter = rand::random::<f64>();
                match self
                    .retry
                    .after_failure(item.tries, item.first_try_at, now, jitter)
                {
                    Next::RetryAt(at) => {
                        tracing::info!(outbox = item.id, target = %item.target, tries = item.tries + 1, next = %at, %error, "webhook delivery failed; trying again later");
                        (
                            Outcome::Failed,
                            self.store.delivery_failed(held, error, at).await,
                        )
                    }
                    Next::Park => {
                        tracing::warn!(outbox = item.id, target = %item.target, tries = item.tries + 1, %error, "webhook delivery gave up after [delivery] max_age: parked (outbox list --parked; outbox redeliver ID)");
                        (
                            Outcome::Parked,
                            self.store.park_delivery(held, error, now).await,
                        )
                    }
                }
            }
        };
        let result = match written {
            Ok(true) => result,
            Ok(false) => {
                // Acked by hand meanwhile, or the lease was lost: what holds now stands.
                tracing::info!(
                    outbox = item.id,
                    "the delivery's result was not recorded: the message is no longer held by this daemon"
                );
                Outcome::Lost
            }
            Err(e) => {
                tracing::error!(outbox = item.id, error = %e, "could not record the delivery's result; the message goes out again once its lease runs out");
                Outcome::Lost
            }
        };
        crate::metrics::webhook_delivery(result.as_str());
        result
    }

    /// POSTs `item`, signed.
    async fn post(&self, item: &DeliveryItem) -> Tried {
        let payload = Payload {
            id: item.id,
            target: &item.target,
            own_username: item
                .own_username
                .as_deref()
                .or(self.default_sender.as_deref()),
            action: &item.action,
            text: &item.message,
            session_id: item.session_id.as_deref(),
            created_at: item.created_at,
        };
        let body = match serde_json::to_vec(&payload) {
            Ok(b) => b,
            Err(e) => return Tried::Failed(format!("cannot encode the message: {e}")),
        };
        let timestamp = self.clock.now().timestamp();
        let sent = self
            .http
            .post(self.url.as_str())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(SIGNATURE_HEADER, self.signer.sign(timestamp, &body))
            .header(IDEMPOTENCY_HEADER, format!("outbox-{}", item.id))
            .body(body)
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => Tried::Delivered,
            Ok(r) => Tried::Failed(format!("the webhook answered HTTP {}", r.status().as_u16())),
            // The URL may hold a token: never in the error.
            Err(e) if e.is_timeout() => Tried::Failed(format!(
                "the webhook did not answer within {}",
                humantime::format_duration(self.timeout)
            )),
            Err(e) if e.is_connect() => Tried::Failed(format!(
                "cannot connect to the webhook: {}",
                chain(&e.without_url())
            )),
            Err(e) => Tried::Failed(format!("the POST failed: {}", chain(&e.without_url()))),
        }
    }
}

/// An error and its causes, `: `-separated (reqwest's own text names only the step).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}
