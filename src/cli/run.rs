//! `fluidtalk-runner run [JOB...] [--dry-run] [--at TIME] [--json]`: the named jobs (all
//! when none are named), once, now.

use super::common::{campaign_client, parse_time};
use super::store_access::store_failure;
use crate::clock::{Clock, ManualClock};
use crate::config::{Config, Job};
use crate::exit::{Exit, ExitWith, Failure};
use crate::plan::{self, Preview};
use crate::runner::{RunError, Runner, Summary};
use crate::store;
use anyhow::anyhow;
use chrono::{DateTime, Utc};
use clap::Args;
use std::fmt::Write as _;
use std::ops::ControlFlow;
use std::sync::Arc;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Jobs to run, by name (default: all, in file order).
    jobs: Vec<String>,
    /// Print the plan instead of acting: no API call, no database write, no key needed.
    #[arg(long)]
    dry_run: bool,
    /// Preview another instant (RFC 3339; dry runs only).
    #[arg(long, value_parser = parse_time, requires = "dry_run")]
    at: Option<DateTime<Utc>>,
    /// Print the plan or the summary as JSON.
    #[arg(long)]
    json: bool,
}

/// The jobs named on the command line, or all.
pub fn select_jobs<'a>(config: &'a Config, names: &[String]) -> Result<Vec<&'a Job>, Failure> {
    if config.jobs.is_empty() {
        return Err(anyhow!(
            "{}: no [[job]] is defined: nothing to run",
            config.path.display()
        ))
        .exit_with(Exit::Config);
    }
    if names.is_empty() {
        return Ok(config.jobs.iter().collect());
    }
    names
        .iter()
        .map(|n| {
            config.jobs.iter().find(|j| &j.name == n).ok_or_else(|| {
                let known: Vec<&str> = config.jobs.iter().map(|j| j.name.as_str()).collect();
                anyhow!(
                    "no job named {n:?} in {} (jobs: {})",
                    config.path.display(),
                    known.join(", ")
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .exit_with(Exit::Config)
}

pub async fn run(config: &Config, args: RunArgs) -> Result<(), Failure> {
    let jobs = select_jobs(config, &args.jobs)?;
    if args.dry_run {
        // The runner's clock (FLUIDTALK_CLOCK_OFFSET moves it), unless --at names an instant.
        let at = match args.at {
            Some(at) => at,
            None => crate::clock::from_env()
                .map_err(|e| anyhow!(e))
                .exit_with(Exit::Usage)?
                .now(),
        };
        return dry_run(config, &jobs, at, args.at.is_some(), args.json).await;
    }
    // Signals first: a stop that comes while the store opens still ends the run cleanly.
    let stop = tokio_util::sync::CancellationToken::new();
    super::signals::stop_on_signals(stop.clone());
    let clock = crate::clock::from_env()
        .map_err(|e| anyhow!(e))
        .exit_with(Exit::Usage)?;
    let client = campaign_client(config)?;
    let store = super::store_access::open_store(config).await?;
    let runner =
        Runner::new(store, client, Arc::new(config.clone()), clock, runner_id()).stopped_by(stop);
    let per_job = run_jobs(&runner, &jobs, args.json).await?;
    let mut total = Summary::default();
    for (_, s) in &per_job {
        total.add(s);
    }
    if args.json {
        let mut jobs = serde_json::Map::new();
        for (name, s) in &per_job {
            jobs.insert(name.clone(), serde_json::to_value(s).unwrap_or_default());
        }
        let value = serde_json::json!({ "jobs": jobs, "total": total });
        let text = serde_json::to_string_pretty(&value).exit_with(Exit::Failure)?;
        super::out::line(&text)?;
    }
    if runner.stop_token().is_cancelled() {
        return Err(anyhow!(
            "stopped before the work was done: answers received were recorded; leads not reached stay due"
        ))
        .exit_with(Exit::Stopped);
    }
    if total.api_unreachable() {
        return Err(anyhow!(
            "no call reached the API: every one of the {} call(s) tried failed to connect to {} \
             (refused, no route or no DNS answer); their leads stay due and are tried again \
             after back-off",
            total.calls,
            config.base_url()
        ))
        .exit_with(Exit::Api);
    }
    Ok(())
}

pub use crate::runner::runner_id;

/// A terminal's progress bar for one job's run: calls recorded of the calls the planner
/// plans now (counted page by page, read only, memory flat), their rate and the time left.
/// A run may make a few more or fewer (leads arriving or taken by another runner).
async fn progress_bar(runner: &Runner, job: &Job) -> indicatif::ProgressBar {
    let planned = plan::preview_each(&*runner.store, job, runner.clock.now(), &mut |_| {
        ControlFlow::Continue(())
    })
    .await
    .unwrap_or(0);
    let bar = indicatif::ProgressBar::new(planned);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} {prefix}: {pos}/{len} calls recorded, {per_sec}, ETA {eta}",
    ) {
        bar.set_style(style);
    }
    bar.set_prefix(job.name.clone());
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

/// Runs each job once, with a progress bar on a terminal; prints a summary per job, unless
/// `json` (the caller prints them all as JSON, and no bar). A stop ends the loop after the
/// job it came in.
pub async fn run_jobs(
    runner: &Runner,
    jobs: &[&Job],
    json: bool,
) -> Result<Vec<(String, Summary)>, Failure> {
    let mut per_job = Vec::new();
    for job in jobs {
        if runner.stop_token().is_cancelled() {
            break;
        }
        let bar = if super::out::progress_shown() && !json {
            Some(progress_bar(runner, job).await)
        } else {
            None
        };
        let tick = bar.clone();
        let result = runner
            .run_job_reporting(job, None, &move || {
                if let Some(bar) = &tick {
                    bar.inc(1);
                }
            })
            .await;
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        match result {
            Ok(s) => {
                if !json {
                    super::out::line(&format!("{}: {}", job.name, s.describe()))?;
                }
                per_job.push((job.name.clone(), s));
            }
            Err(RunError::Unauthorized { until }) => {
                return Err(anyhow!(
                    "the API refused the key (401/403): fix FLUIDTALK_API_KEY; every runner pauses calls until {until} (once it is fixed, `fluidtalk-runner pause clear` lifts the pause now)"
                ))
                .exit_with(Exit::Unauthorized);
            }
            Err(RunError::Store(e)) => return Err(store_failure(e)),
            Err(e @ RunError::Internal(_)) => {
                return Err(anyhow!("{e}")).exit_with(Exit::Failure);
            }
        }
    }
    Ok(per_job)
}

/// The plan of `jobs` at `at` (`at_named`: given by `--at`, so leads created after it
/// are counted and said to be left out), with why calls are not made.
async fn dry_run(
    config: &Config,
    jobs: &[&Job],
    at: DateTime<Utc>,
    at_named: bool,
    json: bool,
) -> Result<(), Failure> {
    let store = store::open_read_only(&config.database_url())
        .await
        .map_err(store_failure)?;
    let clock = ManualClock::new(at);
    // Calls are printed as they are planned (the first at once, then in chunks of
    // `CHUNK` bytes): memory stays flat whatever the number of leads. JSON is one array,
    // written as it goes.
    const CHUNK: usize = 64 * 1024;
    let mut out = Chunked::default();
    let mut written = 0u64;
    // Held leads shown (they are not calls).
    let mut held = 0u64;
    if json {
        out.push("[")?;
    }
    // Leads that did not exist at `--at` (the same for every job).
    let unborn = if at_named {
        store.count_created_after(at).await.map_err(store_failure)?
    } else {
        0
    };
    for job in jobs {
        if !json {
            out.push(&format!(
                "{} at {}:\n",
                job.name,
                at.format("%Y-%m-%d %H:%M:%S UTC")
            ))?;
        }
        let mut notes = Vec::new();
        let mut cursor = plan::dry_cursor();
        let planned = plan::preview_with(&*store, job, clock.now(), &mut cursor, &mut |p| {
            match p {
                Preview::Call(c) if json => {
                    let item = serde_json::to_string_pretty(&c)
                        .unwrap_or_default()
                        .replace('\n', "\n  ");
                    let sep = if written + held == 0 { "\n  " } else { ",\n  " };
                    out.buf.push_str(sep);
                    out.buf.push_str(&item);
                    written += 1;
                }
                Preview::Call(c) => {
                    // Formatted into the buffer itself: no String a line.
                    let _ = writeln!(
                        out.buf,
                        "  {:<9} {:<24} step {:<4} {}{}",
                        c.action.as_str(),
                        c.target,
                        c.step,
                        c.sender
                            .as_deref()
                            .map_or(String::new(), |s| format!("from {s}: ")),
                        c.reason
                    );
                    written += 1;
                }
                Preview::Note(n) => notes.push(n),
                // Not a call: an element with `"held"` (and no `action`) says which
                // calendar holds the lead.
                Preview::Held(h) if json => {
                    let item = serde_json::to_string_pretty(&h)
                        .unwrap_or_default()
                        .replace('\n', "\n  ");
                    let sep = if written + held == 0 { "\n  " } else { ",\n  " };
                    out.buf.push_str(sep);
                    out.buf.push_str(&item);
                    held += 1;
                }
                Preview::Held(h) => {
                    let _ = writeln!(out.buf, "  {:<9} {:<24} {}", "held", h.target, h.reason);
                    held += 1;
                }
            }
            out.flush_if(written + held == 1 || out.buf.len() >= CHUNK)
        })
        .await
        .map_err(store_failure)?;
        out.done()?;
        let mut reasons = Vec::new();
        if unborn > 0 {
            reasons.push(crate::why::not_created_yet(unborn, at));
        }
        reasons.extend(
            crate::why::of_preview(&*store, job, at, &cursor, planned)
                .await
                .map_err(store_failure)?,
        );
        if json {
            // Not a call: an element with `"reasons"` (and no `action`) says why the job
            // plans no more.
            if !reasons.is_empty() {
                let item = serde_json::json!({ "job": job.name, "reasons": reasons });
                let item = serde_json::to_string_pretty(&item)
                    .unwrap_or_default()
                    .replace('\n', "\n  ");
                let sep = if written + held == 0 { "\n  " } else { ",\n  " };
                out.push(&format!("{sep}{item}"))?;
                held += 1;
            }
        } else {
            for n in &notes {
                out.push(&format!("  note: {n}\n"))?;
            }
            for r in &reasons {
                out.push(&format!("  why: {}\n", r.text))?;
            }
            out.push(&format!(
                "{}: {planned} call(s) at {}\n",
                job.name,
                at.format("%Y-%m-%d %H:%M:%S UTC")
            ))?;
        }
    }
    if json {
        out.push(if written + held == 0 { "]\n" } else { "\n]\n" })?;
    }
    Ok(())
}

/// Standard output written in chunks; the first failure (a closed pipe) stops the planner
/// and is returned by `done`.
#[derive(Default)]
struct Chunked {
    buf: String,
    failed: Option<Failure>,
}

impl Chunked {
    /// Writes what is buffered, if `now`; breaks once writing has failed.
    fn flush_if(&mut self, now: bool) -> ControlFlow<()> {
        if self.failed.is_none() && now && !self.buf.is_empty() {
            if let Err(e) = super::out::text(&self.buf) {
                self.failed = Some(e);
            }
            self.buf.clear();
        }
        if self.failed.is_some() {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }

    /// Writes what is buffered; the first failure, if any.
    fn done(&mut self) -> Result<(), Failure> {
        let _ = self.flush_if(true);
        self.failed.take().map_or(Ok(()), Err)
    }

    /// Writes `text` now.
    fn push(&mut self, text: &str) -> Result<(), Failure> {
        self.buf.push_str(text);
        self.done()
    }
}
