//! Every default of the campaign file, defined once: the parser fills in what a file
//! leaves out from here (directly, or through the `Default` impls built on these), and
//! the test `config_defaults` (tests/it/) pins the values the example `jobs.toml` states
//! to these, so its comments cannot drift from the code.

use std::num::NonZeroU32;
use std::time::Duration;

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A count's default, checked non-zero when the crate is compiled.
const fn count(n: u32) -> NonZeroU32 {
    match NonZeroU32::new(n) {
        Some(n) => n,
        None => panic!("a count's default must not be zero"),
    }
}

const MINUTE: u64 = 60;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;

// [fluidtalk] and [database]: the client's and the store's own defaults.
pub use crate::fluidtalk::{DEFAULT_BASE_URL as BASE_URL, DEFAULT_TIMEOUT as API_TIMEOUT};
pub use crate::store::DEFAULT_DATABASE_URL as DATABASE_URL;

// [limits]
/// `concurrency`: API calls in flight, all jobs together.
pub const CONCURRENCY: NonZeroU32 = count(8);
/// `per_second`: sustained API calls per second, all jobs together.
pub const PER_SECOND: f64 = 5.0;

// [backoff]
pub const OUT_OF_TOKENS: Duration = secs(15 * MINUTE);
pub const OUT_OF_TOKENS_MAX: Duration = secs(6 * HOUR);
pub const RETRY_BASE: Duration = secs(30);
pub const RETRY_MAX: Duration = secs(HOUR);
pub const MAX_ATTEMPTS: u32 = 5;

// [retention]
pub const RETENTION_RUNS: Duration = secs(30 * DAY);
pub const RETENTION_OUTBOX: Duration = secs(30 * DAY);
pub const RETENTION_EVENTS: Duration = secs(30 * DAY);
pub const RETENTION_ATTEMPTS: Duration = secs(365 * DAY);

// [forecast]
/// `max_calls`: simulated API calls.
pub const FORECAST_CALLS: u64 = 50_000;
/// `max_time`: wall time.
pub const FORECAST_TIME: Duration = secs(60);

// [http]
pub const HTTP_HEADER_TIMEOUT: Duration = secs(10);
pub const HTTP_IDLE_TIMEOUT: Duration = secs(60);
pub const HTTP_KEEP_ALIVE_INTERVAL: Duration = secs(20);
pub const HTTP_KEEP_ALIVE_TIMEOUT: Duration = secs(20);
pub const HTTP_MAX_CONNECTIONS: u32 = 1024;
pub const HTTP_MAX_CONNECTIONS_PER_CLIENT: u32 = 64;
pub const HTTP_AUTH_FAILURES_PER_MINUTE: u32 = 5;

// [delivery] (`webhook_url` has none: the table requires it)
/// `secret_env`: the environment variable that holds the webhook's signing secret.
pub const DELIVERY_SECRET_ENV: &str = "FLUIDTALK_WEBHOOK_SECRET";
pub const DELIVERY_TIMEOUT: Duration = secs(10);
pub const DELIVERY_RETRY_BASE: Duration = secs(1);
pub const DELIVERY_RETRY_MAX: Duration = secs(10 * MINUTE);
pub const DELIVERY_MAX_AGE: Duration = secs(DAY);
/// `concurrency`: POSTs in flight.
pub const DELIVERY_CONCURRENCY: NonZeroU32 = count(8);

// [[job]]
/// `batch_size`: leads claimed per batch.
pub const BATCH_SIZE: u32 = 50;
