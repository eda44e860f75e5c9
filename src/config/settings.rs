//! Each component's settings, built once from the campaign file: what the runner takes
//! besides its jobs (`RunnerSettings`). The HTTP service takes `HttpSettings`, webhook
//! delivery `Delivery`, the dashboard's forecast `ForecastSettings` and pruning
//! `Retention`: each is already its own table's typed value.

use super::{Backoff, Config};
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

/// What the runner takes from the campaign besides its jobs: `[limits]`, `[backoff]` and
/// `[fluidtalk]`'s call settings.
#[derive(Debug, Clone, PartialEq)]
pub struct RunnerSettings {
    /// API calls in flight, all jobs together (`[limits] concurrency`).
    pub concurrency: NonZeroU32,
    /// Sustained API calls per second, all jobs together (`[limits] per_second`).
    pub per_second: f64,
    /// One API call's time (`[fluidtalk] timeout`).
    pub timeout: Duration,
    /// The sender for leads that name none.
    pub own_username: Option<String>,
    /// The only folder local profile images are read from; `None`: they are refused.
    pub image_dir: Option<PathBuf>,
    pub backoff: Backoff,
}

impl RunnerSettings {
    /// `concurrency` as a number of slots (never zero).
    pub fn slots(&self) -> usize {
        self.concurrency.get() as usize
    }
}

impl From<&Config> for RunnerSettings {
    fn from(config: &Config) -> Self {
        RunnerSettings {
            concurrency: config.limits.concurrency,
            per_second: config.limits.per_second,
            timeout: config.fluidtalk.timeout,
            own_username: config.fluidtalk.own_username.clone(),
            image_dir: config.fluidtalk.image_dir.clone(),
            backoff: config.backoff,
        }
    }
}
