//! What the dashboard keeps between its pages: the counts that read many rows, each for a
//! while on the runner's clock, shared by every open page of this daemon (the page updates
//! itself every `live::REFRESH_SECS`, and several may be open).
//!
//! - The funnel (leads per state and per follow-up step) reads every lead: measured on
//!   SQLite with 1,000,000 leads, about 0.3 s for the states and 0.35 s for the steps on
//!   an idle machine (1 s and 0.65 s under load). Kept for the refresh interval, and
//!   forgotten after a dashboard action, whose result the next page then shows.
//! - The calls of 14 days read each attempt of that time (the `attempts_started` range):
//!   700,000 attempts took 2 s on SQLite. Kept for `CALLS_SECS`: a chart of days is not
//!   worse for a minute's delay.
//! - The forecast runs the campaign's next 14 days: kept for a quarter of an hour.
//! - The reply rates read every kept attempt sent, sealed or ignored (with its lead):
//!   kept for `metrics::RATES_SECS`, for the page and `/metrics` alike, read by one
//!   request at a time (the others wait for its value).

use super::calls::Calls;
use super::funnel::Steps;
use crate::lead::LeadState;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// How long the calls chart is kept, in seconds.
pub const CALLS_SECS: i64 = 60;

/// Leads per state and the follow-up steps, read together.
#[derive(Debug, Clone)]
pub struct Funnel {
    pub states: BTreeMap<LeadState, u64>,
    pub steps: Steps,
}

/// A value and when it was read.
#[derive(Debug)]
pub struct Kept<T>(Mutex<Option<(DateTime<Utc>, T)>>);

impl<T> Default for Kept<T> {
    fn default() -> Self {
        Kept(Mutex::new(None))
    }
}

impl<T: Clone> Kept<T> {
    fn slot(&self) -> std::sync::MutexGuard<'_, Option<(DateTime<Utc>, T)>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The value if it was read less than `secs` before `now` (and not after it: a clock
    /// set back reads again).
    pub fn fresh(&self, now: DateTime<Utc>, secs: i64) -> Option<T> {
        match self.slot().as_ref() {
            Some((at, v)) if *at <= now && now - *at < chrono::Duration::seconds(secs) => {
                Some(v.clone())
            }
            _ => None,
        }
    }

    pub fn keep(&self, now: DateTime<Utc>, v: T) {
        *self.slot() = Some((now, v));
    }

    /// The value however old.
    pub fn any(&self) -> Option<T> {
        self.slot().as_ref().map(|(_, v)| v.clone())
    }

    pub fn forget(&self) {
        *self.slot() = None;
    }
}

/// The dashboard's kept counts (`AppState::dashboard`).
#[derive(Debug, Default)]
pub struct Cache {
    pub funnel: Kept<Funnel>,
    pub calls: Kept<Calls>,
    /// The forecast (see `forecast`), and whether one is being computed.
    pub forecast: Kept<super::forecast::Outcome>,
    pub forecasting: std::sync::atomic::AtomicBool,
    /// The reply rates and when they were read (`rates`).
    pub rates: tokio::sync::Mutex<Option<(DateTime<Utc>, Vec<crate::rates::StepCount>)>>,
}

impl Cache {
    /// The reply rates, read again when older than `metrics::RATES_SECS` at `now` (or
    /// from after it: a clock set back reads again).
    pub async fn rates(
        &self,
        store: &dyn crate::store::AdminStore,
        config: &crate::config::Config,
        now: DateTime<Utc>,
    ) -> Result<Vec<crate::rates::StepCount>, crate::store::StoreError> {
        let mut kept = self.rates.lock().await;
        if let Some((at, rows)) = kept.as_ref()
            && *at <= now
            && now - *at < chrono::Duration::seconds(crate::metrics::RATES_SECS)
        {
            return Ok(rows.clone());
        }
        let rows = crate::status::read_rates(store, config).await?;
        *kept = Some((now, rows.clone()));
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_for_its_time_then_read_again() {
        let k = Kept::default();
        let t = Utc::now();
        assert_eq!(k.fresh(t, 10), None);
        k.keep(t, 1);
        assert_eq!(k.fresh(t + chrono::Duration::seconds(9), 10), Some(1));
        assert_eq!(k.fresh(t + chrono::Duration::seconds(10), 10), None);
        assert_eq!(
            k.fresh(t - chrono::Duration::seconds(1), 10),
            None,
            "clock set back"
        );
        k.forget();
        assert_eq!(k.fresh(t, 10), None);
    }
}
