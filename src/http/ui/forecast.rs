//! The dashboard's forecast of the next 14 days: `forecast::in_background` over the
//! campaign's database with the command's default assumptions (every call answered, no
//! replies, unlimited tokens), kept for `KEEP_SECS` on the runner's clock. One forecast
//! runs at a time; a page waits for it up to `WAIT`, then shows the last one (or says it
//! is being computed) and the page's next update shows the new one.

use super::chart::{Day, Series};
use crate::forecast::{Assumptions, Forecast, Options};
use crate::http::AppState;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use maud::{Markup, html};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// How long a forecast is shown before the next is computed, in seconds.
pub const KEEP_SECS: i64 = 15 * 60;
/// How long a page waits for a forecast being computed.
const WAIT: Duration = Duration::from_secs(5);
/// Days forecast, today included.
pub const DAYS: u32 = 14;

/// A forecast, or why there is none, and the instant it starts from.
pub type Outcome = Arc<(DateTime<Utc>, Result<Forecast, String>)>;

/// What the page shows.
pub enum Shown {
    Ready(Outcome),
    Computing,
    /// The server was started without the database's URL (see `AppState::database_url`).
    Unavailable,
}

/// The forecast to show now, starting a new one if the last is older than `KEEP_SECS`.
pub async fn current(state: &AppState) -> Shown {
    let now = state.clock.now();
    let cache = &state.dashboard;
    if let Some(f) = cache.forecast.fresh(now, KEEP_SECS) {
        return Shown::Ready(f);
    }
    let Some(url) = state.database_url.clone() else {
        return Shown::Unavailable;
    };
    if !cache.forecasting.swap(true, Ordering::SeqCst) {
        let zone = state.config.jobs.first().map_or(Tz::UTC, |j| j.timezone);
        let opts = Options {
            from: now,
            days: DAYS,
            zone,
            assumptions: Assumptions::default(),
        };
        let rx = crate::forecast::in_background(url, (*state.config).clone(), opts);
        let kept = cache.clone();
        let clock = state.clock.clone();
        let done = tokio::spawn(async move {
            let result = match rx.await {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(_) => Err("the forecast's thread ended without a result".into()),
            };
            if let Err(e) = &result {
                tracing::warn!(error = %e, "the dashboard's forecast failed");
            }
            // Kept from when it is ready: a forecast that took long is not stale at once.
            kept.forecast.keep(clock.now(), Arc::new((now, result)));
            kept.forecasting.store(false, Ordering::SeqCst);
        });
        // A small campaign's forecast is ready at once; a big one shows on a later update.
        let _ = tokio::time::timeout(WAIT, done).await;
    }
    match cache.forecast.any() {
        Some(f) => Shown::Ready(f),
        None => Shown::Computing,
    }
}

fn series() -> [Series<'static>; 3] {
    [
        Series {
            key: "openers",
            label: "openers",
            colour: "#2e7d32",
        },
        Series {
            key: "follow_ups",
            label: "follow-ups",
            colour: "#1e88e5",
        },
        Series {
            key: "events",
            label: "events",
            colour: "#ef6c00",
        },
    ]
}

/// The forecast's section of the page.
pub fn section(shown: &Shown) -> Markup {
    html! {
        section aria-labelledby="forecast" {
            h2 #forecast { "Forecast" }
            @match shown {
                Shown::Unavailable => p { "This server was started without the database's URL: no forecast." }
                Shown::Computing => p.muted { "The forecast is being computed; the page shows it when it is ready." }
                Shown::Ready(outcome) => {
                    @match &outcome.1 {
                        Err(e) => p.muted { "The forecast could not be computed: " (e) }
                        Ok(f) => (chart(f, outcome.0))
                    }
                }
            }
        }
    }
}

fn chart(f: &Forecast, at: DateTime<Utc>) -> Markup {
    let days: Vec<Day> = f
        .days
        .iter()
        .map(|d| Day {
            key: d.date.to_string(),
            label: d.date.format("%a %d").to_string(),
            values: vec![d.openers, d.follow_ups_total(), d.events],
        })
        .collect();
    let title = format!(
        "Forecast: calls per day, the next {} days ({})",
        f.days.len(),
        f.zone
    );
    let tokens: u64 = f.days.iter().map(|d| d.tokens).sum();
    let last = f.days.last();
    html! {
        (super::chart::stacked_bars("forecast-chart", &title, &days, &series()))
        p {
            (tokens) " new conversations (tokens) in " (f.days.len()) " days; "
            @if let Some(d) = last { (d.due_at_end) " lead(s) still due at the end of " (d.date) ". " }
            @match f.first_bottleneck() {
                Some((date, why)) => { "First bottleneck: " (date) ", " (why) "." }
                None => { "No cap, window or pause leaves due leads waiting." }
            }
        }
        p.muted {
            "Simulated by the runner's own planner and policy over a copy of the " (f.leads)
            " leads, assuming every call is answered, no lead replies and tokens do not run out. "
            "Computed " (at.format("%Y-%m-%d %H:%M UTC")) ", again after 15 minutes. "
            code { "fluidtalk-runner forecast --help" } " takes other assumptions."
        }
    }
}
