//! `fluidtalk-runner forecast [--days 14] [--from TIME] [--zone ZONE] [--json]` and the
//! assumptions (`--reply-rate`, `--ignore-rate`, `--seal-rate`, `--seed`, `--tokens`): the
//! days ahead, one row per day. Reads the database only; no API call, no key. No budget
//! (the dashboard's `[forecast]` budget does not apply here); on a terminal it shows its
//! progress on stderr.

use super::common::{parse_rate, parse_time};
use crate::config::Config;
use crate::exit::{Exit, ExitWith, Failure};
use crate::forecast::{Assumptions, Budget, Day, Forecast, ForecastError, Options, Progress};
use anyhow::anyhow;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use clap::Args;

#[derive(Debug, Args)]
pub struct ForecastArgs {
    /// Calendar days to forecast (1 to 366), the first being today's (or --from's).
    #[arg(long, default_value_t = 14, value_parser = clap::value_parser!(u32).range(1..=366))]
    days: u32,
    /// Start here instead of now (RFC 3339; now or later: a past start is refused).
    #[arg(long, value_parser = parse_time)]
    from: Option<DateTime<Utc>>,
    /// The time zone days are counted in (default: the first job's).
    #[arg(long, value_parser = parse_zone)]
    zone: Option<Tz>,
    /// Share of answered calls the lead replies to (0 to 1): a reply restarts its quiet
    /// time and follow-up count, as `leads replied` does.
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    reply_rate: f64,
    /// Share of calls answered `ignored` (another account owns the lead), 0 to 1.
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    ignore_rate: f64,
    /// Share of calls that find the conversation sealed (400), 0 to 1.
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    seal_rate: f64,
    /// The seed the per-call draws come from: the same seed, the same draws.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Tokens left for new conversations (default: unlimited); past them the API answers
    /// 402 and the forecast shows the pause that follows.
    #[arg(long)]
    tokens: Option<u64>,
    /// Print a JSON array, one object per day.
    #[arg(long)]
    json: bool,
}

/// How often the progress bar is redrawn.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// A progress bar on stderr (whole days simulated of `days`, their rate, the time left,
/// the calls so far) while the forecast runs, if stderr is a terminal and not `-q`; hidden
/// otherwise, so a pipe or a log gets only the result.
fn show_progress(progress: std::sync::Arc<Progress>, days: u64) -> indicatif::ProgressBar {
    let bar = if super::out::progress_shown() {
        indicatif::ProgressBar::new(days)
    } else {
        indicatif::ProgressBar::hidden()
    };
    if bar.is_hidden() {
        return bar;
    }
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} forecast [{bar:20}] {pos}/{len} days, {per_sec}, ETA {eta}, {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message("copying the leads");
    let shown = bar.clone();
    tokio::spawn(async move {
        while !shown.is_finished() {
            let (done, total) = progress.seconds();
            if total > 0 {
                // Whole days done of the days asked (a day in the zone may be 23 or 25 h).
                let whole = u128::from(done) * u128::from(days) / u128::from(total);
                shown.set_position(u64::try_from(whole).unwrap_or(days).min(days));
                shown.set_message(format!("{} simulated calls", progress.calls()));
            }
            shown.tick();
            tokio::time::sleep(PROGRESS_EVERY).await;
        }
    });
    bar
}

/// How far before now `--from` may be (a time just written down, `$(date -Is)`).
const FROM_SLACK: chrono::Duration = chrono::Duration::minutes(1);

/// `--from` as given, unless it is in the past: the forecast works from the leads as they
/// are now (those created since would be counted as if they had existed, those worked
/// since as already worked), so a past start would report days that never were.
fn refuse_the_past(from: DateTime<Utc>, now: DateTime<Utc>) -> Result<DateTime<Utc>, Failure> {
    if from < now - FROM_SLACK {
        return Err(anyhow!(
            "--from {} is in the past (now is {}): a forecast starts now or later, from the leads as they are now; for what a run would have done then, use `run --dry-run --at`",
            from.to_rfc3339(),
            now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ))
        .exit_with(Exit::Usage);
    }
    Ok(from)
}

fn parse_zone(s: &str) -> Result<Tz, String> {
    s.parse::<Tz>()
        .map_err(|_| format!("{s:?} is not an IANA time zone (e.g. Europe/Berlin, UTC)"))
}

pub async fn run(config: &Config, args: ForecastArgs) -> Result<(), Failure> {
    if config.jobs.is_empty() {
        return Err(anyhow!(
            "{}: no [[job]] is defined: nothing to forecast",
            config.path.display()
        ))
        .exit_with(Exit::Config);
    }
    let now = crate::clock::from_env()
        .map_err(|e| anyhow!(e))
        .exit_with(Exit::Usage)?
        .now();
    let from = match args.from {
        Some(t) => refuse_the_past(t, now)?,
        None => now,
    };
    let zone = args
        .zone
        .or_else(|| config.jobs.first().map(|j| j.timezone))
        .unwrap_or(Tz::UTC);
    let opts = Options {
        from,
        days: args.days,
        zone,
        assumptions: Assumptions {
            reply_rate: args.reply_rate,
            ignore_rate: args.ignore_rate,
            seal_rate: args.seal_rate,
            seed: args.seed,
            tokens: args.tokens,
        },
    };
    // Scratch folders of earlier forecasts killed before they could remove them.
    crate::forecast::clean_stale_scratch();
    // On a runtime of its own (one thread, so concurrent runs interleave the same way
    // each time), over its own read-only connection.
    let progress = std::sync::Arc::new(Progress::default());
    let (_thread, rx) = crate::forecast::spawn(
        config.database_url(),
        config.clone(),
        opts,
        Budget::UNLIMITED,
        progress.clone(),
    )
    .map_err(|e| anyhow!("could not start the forecast's thread: {e}"))
    .exit_with(Exit::Failure)?;
    let shown = show_progress(progress.clone(), u64::from(args.days));
    // SIGTERM or Ctrl-C cancels the forecast; its thread removes the scratch copy before
    // it answers (`ForecastError::Cancelled`, exit 7).
    let signal = super::signals::shutdown_signal();
    let cancel = progress.cancel.clone();
    let on_signal = tokio::spawn(async move {
        signal.await;
        cancel.cancel();
    });
    let result = rx.await;
    on_signal.abort();
    shown.finish_and_clear();
    if let Ok(Err(ForecastError::Cancelled)) = result {
        return Err(anyhow!(
            "stopped before the forecast was done; its scratch copy is removed"
        ))
        .exit_with(Exit::Stopped);
    }
    let f = result
        .map_err(|_| anyhow!("the forecast's thread ended without a result"))
        .exit_with(Exit::Failure)?
        .map_err(|e| match e {
            ForecastError::Store(e) => super::store_access::store_failure(e),
            e => Failure {
                exit: Exit::Failure,
                error: e.into(),
            },
        })?;
    if args.json {
        let text = serde_json::to_string_pretty(&f.days).exit_with(Exit::Failure)?;
        return super::out::line(&text);
    }
    super::out::line(&table(&f))
}

/// The forecast as a table, with its assumptions and what to read from it.
pub fn table(f: &Forecast) -> String {
    let a = &f.assumptions;
    let zone: Tz = f.zone.parse().unwrap_or(Tz::UTC);
    let local = |t: DateTime<Utc>| t.with_timezone(&zone).format("%Y-%m-%d %H:%M").to_string();
    let mut out = format!(
        "Forecast from {} ({}), {} day(s), over {} lead(s).\n\
         Assumptions: of calls, {}% replied to, {}% ignored, {}% sealed (seed {}); tokens {}.\n\n",
        local(f.from),
        f.zone,
        f.days.len(),
        f.leads,
        a.reply_rate * 100.0,
        a.ignore_rate * 100.0,
        a.seal_rate * 100.0,
        a.seed,
        a.tokens.map_or("unlimited".into(), |t| t.to_string()),
    );
    let header = [
        "date",
        "openers",
        "follow-ups (by step)",
        "events",
        "tokens",
        "402s",
        "exhausted",
        "due at end",
        "bottleneck",
    ];
    let rows: Vec<[String; 9]> = f
        .days
        .iter()
        .map(|d| {
            [
                d.date.to_string(),
                d.openers.to_string(),
                follow_ups(d),
                d.events.to_string(),
                d.tokens.to_string(),
                d.out_of_tokens.to_string(),
                d.exhausted.to_string(),
                d.due_at_end.to_string(),
                d.bottleneck.clone().unwrap_or_default(),
            ]
        })
        .collect();
    // Each column as wide as its widest cell; text left, numbers right.
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            rows.iter()
                .map(|r| r[c].chars().count())
                .chain([header[c].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[&str]| {
        let mut l = String::new();
        for (c, cell) in cells.iter().enumerate() {
            let w = widths[c];
            let text = if matches!(c, 0 | 2 | 8) {
                format!("{cell:<w$}")
            } else {
                format!("{cell:>w$}")
            };
            l.push_str(&text);
            l.push_str("  ");
        }
        l.trim_end().to_string() + "\n"
    };
    out.push_str(&line(&header));
    for r in &rows {
        let cells: Vec<&str> = r.iter().map(String::as_str).collect();
        out.push_str(&line(&cells));
    }
    out.push('\n');
    out.push_str(&by_sender(f));
    match f.first_out_of_tokens() {
        Some(t) => {
            let date = t.with_timezone(&zone).date_naive();
            let until = f
                .days
                .iter()
                .find(|d| d.date == date)
                .and_then(|d| d.paused_until);
            out.push_str(&format!(
                "Tokens run out at {} ({}): new conversations get 402 and pause; each further \
                 402 doubles the pause, from [backoff] out_of_tokens up to out_of_tokens_max{}.\n",
                local(t),
                f.zone,
                until.map_or(String::new(), |u| format!(
                    " (that day's last pause ends {})",
                    local(u)
                ))
            ));
        }
        None => out.push_str("Tokens do not run out in this period.\n"),
    }
    match f.first_bottleneck() {
        Some((date, why)) => out.push_str(&format!("First bottleneck: {date}: {why}.\n")),
        None => out.push_str("No cap, window or pause leaves due leads waiting at a day's end.\n"),
    }
    out.push_str(&format!(
        "Simulated {} call(s) in {} step(s) of the virtual clock.\n",
        f.calls, f.steps
    ));
    out
}

/// Each sender's calls per day (openers + follow-ups + events), when calls had senders.
fn by_sender(f: &Forecast) -> String {
    let senders: std::collections::BTreeSet<&String> =
        f.days.iter().flat_map(|d| d.by_sender.keys()).collect();
    if senders.is_empty() {
        return String::new();
    }
    let mut out = String::from("By sender (openers / follow-ups / events a day):\n");
    for s in senders {
        let days: Vec<String> = f
            .days
            .iter()
            .map(|d| {
                d.by_sender.get(s).map_or("0/0/0".into(), |n| {
                    format!("{}/{}/{}", n.openers, n.follow_ups, n.events)
                })
            })
            .collect();
        out.push_str(&format!("  {s}: {}\n", days.join("  ")));
    }
    out.push('\n');
    out
}

/// A day's follow-ups: the total, then each step's count.
fn follow_ups(d: &Day) -> String {
    if d.follow_ups.is_empty() {
        return "0".into();
    }
    let steps: Vec<String> = d
        .follow_ups
        .iter()
        .map(|(step, n)| format!("#{step}: {n}"))
        .collect();
    format!("{} ({})", d.follow_ups_total(), steps.join(", "))
}
