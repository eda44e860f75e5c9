//! The dashboard's forecast of the next 14 days: `forecast::in_background` over the
//! campaign's database with the command's default assumptions (every call answered, no
//! replies, unlimited tokens), kept for `KEEP_SECS` on the runner's clock. One forecast
//! runs at a time (`AppState::forecasts`, a `forecast::Guest`): a page waits for it up to
//! `WAIT`, then shows the last one (or how far the running one has got) and the page's
//! next update shows the new one. It runs on `[forecast]`'s budget; past it the page says
//! so and names the command that computes the whole forecast, and shows no numbers.

use super::chart::{DayBar, Series};
use crate::forecast::{Assumptions, Budget, Forecast, ForecastError, Options};
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
pub type Outcome = Arc<(DateTime<Utc>, Result<Forecast, Failed>)>;

/// Why the page shows no forecast.
#[derive(Debug)]
pub enum Failed {
    /// Past `[forecast]`'s budget: the whole text to show.
    OverBudget(String),
    Other(String),
}

/// The command that computes the whole forecast the dashboard shows.
pub fn command() -> String {
    format!("fluidtalk-runner forecast --days {DAYS}")
}

/// How far the running forecast has got: virtual seconds done and in all, calls simulated.
pub struct Computing {
    pub seconds: (u64, u64),
    pub calls: u64,
}

/// What the page shows.
pub enum Shown {
    Ready(Outcome),
    Computing(Option<Computing>),
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
        let budget = Budget::of(&state.config);
        match state
            .forecasts
            .start(url, (*state.config).clone(), opts, budget)
        {
            Some(rx) => {
                let kept = cache.clone();
                let clock = state.clock.clone();
                let done = tokio::spawn(async move {
                    let result = match rx.await {
                        Ok(Ok(f)) => Ok(f),
                        Ok(Err(ForecastError::Cancelled)) | Err(_) => {
                            // Stopping: nothing to keep, nothing to start again.
                            kept.forecasting.store(false, Ordering::SeqCst);
                            return;
                        }
                        Ok(Err(e @ ForecastError::OverBudget { .. })) => {
                            tracing::info!(error = %e, "the dashboard's forecast went past its budget");
                            Err(Failed::OverBudget(over_budget(&e)))
                        }
                        Ok(Err(e)) => {
                            tracing::warn!(error = %e, "the dashboard's forecast failed");
                            Err(Failed::Other(e.to_string()))
                        }
                    };
                    // Kept from when it is ready: a forecast that took long is not stale
                    // at once.
                    kept.forecast.keep(clock.now(), Arc::new((now, result)));
                    kept.forecasting.store(false, Ordering::SeqCst);
                });
                // A small campaign's forecast is ready at once; a big one shows on a
                // later update.
                let _ = tokio::time::timeout(WAIT, done).await;
            }
            // One is running already (or the server is stopping): its state is shown.
            None => cache.forecasting.store(false, Ordering::SeqCst),
        }
    }
    match cache.forecast.any() {
        Some(f) => Shown::Ready(f),
        None => Shown::Computing(state.forecasts.running().map(|p| Computing {
            seconds: p.seconds(),
            calls: p.calls(),
        })),
    }
}

/// The page's text for a forecast past its budget: what stopped it and the command.
fn over_budget(e: &ForecastError) -> String {
    let ForecastError::OverBudget {
        calls,
        elapsed,
        budget,
    } = e
    else {
        return e.to_string();
    };
    format!(
        "This campaign's forecast is larger than the dashboard's budget ({}): it was stopped \
         after {calls} simulated calls in {:.0} s, so no numbers are shown rather than part of \
         them. Run `{}` for the whole forecast; the budget is set in the campaign file's \
         [forecast] section.",
        crate::forecast::describe(budget),
        elapsed.as_secs_f64(),
        command()
    )
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
                Shown::Computing(progress) => p.muted {
                    "The forecast is being computed; the page shows it when it is ready."
                    @if let Some(c) = progress {
                        @let (done, total) = c.seconds;
                        " " (done * 100 / total.max(1)) "% of the " (DAYS) " days simulated, "
                        (c.calls) " calls so far."
                    }
                }
                Shown::Ready(outcome) => {
                    @match &outcome.1 {
                        Err(Failed::OverBudget(text)) => p #forecast-over-budget { (text) }
                        Err(Failed::Other(e)) => p.muted { "The forecast could not be computed: " (e) }
                        Ok(f) => (chart(f, outcome.0))
                    }
                }
            }
        }
    }
}

fn chart(f: &Forecast, at: DateTime<Utc>) -> Markup {
    let days: Vec<DayBar> = f
        .days
        .iter()
        .map(|d| DayBar {
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
