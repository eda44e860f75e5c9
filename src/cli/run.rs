//! `fluidtalk-runner run [JOB...] [--dry-run] [--at TIME] [--json]`: the named jobs (all
//! when none are named), once, now.

use super::store_access::store_failure;
use crate::clock::{Clock, ManualClock};
use crate::config::{Config, Job, JobKind};
use crate::dispatch::{self, Dispatcher, RunError, Summary};
use crate::exit::{Exit, ExitWith, Failure};
use crate::fluidtalk::{Client, ClientConfig};
use crate::plan::{self, PlannedCall};
use crate::store::{self, Store};
use anyhow::anyhow;
use chrono::{DateTime, Utc};
use clap::Args;
use std::io::IsTerminal;
use std::sync::Arc;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Jobs to run, by name (default: all, in file order).
    jobs: Vec<String>,
    /// Print the plan instead of acting: no API call, no database write, no key needed.
    #[arg(long)]
    dry_run: bool,
    /// Preview another instant (RFC 3339; dry runs only).
    #[arg(long, value_parser = super::leads::parse_time, requires = "dry_run")]
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

/// A dry run's view of one job: the calls it would make and what else would happen.
#[derive(Debug, Default)]
pub struct JobPlan {
    pub calls: Vec<PlannedCall>,
    pub notes: Vec<String>,
}

/// What `job` would do at `now`, read only. The same planner serves the live run.
pub async fn plan_job(
    store: &dyn Store,
    job: &Job,
    now: DateTime<Utc>,
) -> Result<JobPlan, store::StoreError> {
    let mut out = JobPlan::default();
    let pauses = store.pauses().await?;
    if let Some(p) = dispatch::blocking_pause(&pauses, job, now) {
        out.notes.push(format!(
            "paused ({}) until {}: {}",
            p.scope.as_str(),
            p.until.format("%Y-%m-%d %H:%M UTC"),
            p.reason
        ));
        return Ok(out);
    }
    if let JobKind::FollowUp { max_follow_ups, .. } = &job.kind {
        let quiet = job.quiet_before(*max_follow_ups).unwrap_or_default();
        let cutoff = now - chrono::Duration::from_std(quiet).unwrap_or_default();
        let n = store.exhaust(*max_follow_ups, cutoff, now, true).await?;
        if n > 0 {
            out.notes.push(format!(
                "{n} lead(s) quiet after the last follow-up would become exhausted"
            ));
        }
    }
    let mut cursor = plan::dry_cursor();
    loop {
        let left = plan::remaining(store, job, now, &cursor).await?;
        let batch =
            plan::next_batch(store, job, now, left.min(job.batch_size), &mut cursor).await?;
        if batch.is_empty() {
            if left == 0 {
                out.notes
                    .push("stops at the daily cap or max_per_run".into());
            }
            break;
        }
        out.calls.extend(batch);
    }
    if cursor.outside_window > 0 {
        out.notes.push(format!(
            "{} due lead(s) outside their send window now",
            cursor.outside_window
        ));
    }
    Ok(out)
}

pub async fn run(config: &Config, args: RunArgs) -> Result<(), Failure> {
    let jobs = select_jobs(config, &args.jobs)?;
    if args.dry_run {
        return dry_run(config, &jobs, args.at.unwrap_or_else(Utc::now), args.json).await;
    }
    let clock = crate::clock::from_env()
        .map_err(|e| anyhow!(e))
        .exit_with(Exit::Usage)?;
    let client = campaign_client(config)?;
    let store = super::store_access::open_store(config).await?;
    let dispatcher = Dispatcher::new(store, client, Arc::new(config.clone()), clock, runner_id());
    let per_job = run_jobs(&dispatcher, &jobs, args.json).await?;
    if args.json {
        let mut total = Summary::default();
        let mut jobs = serde_json::Map::new();
        for (name, s) in &per_job {
            total.add(s);
            jobs.insert(name.clone(), serde_json::to_value(s).unwrap_or_default());
        }
        let value = serde_json::json!({ "jobs": jobs, "total": total });
        let text = serde_json::to_string_pretty(&value).exit_with(Exit::Failure)?;
        println!("{text}");
    }
    Ok(())
}

/// The API client a campaign uses: the key from `FLUIDTALK_API_KEY`, the base URL, timeout
/// and default sender from the campaign file (`FLUIDTALK_BASE_URL` overriding).
pub fn campaign_client(config: &Config) -> Result<Client, Failure> {
    let key = super::api::read_api_key().exit_with(Exit::Config)?;
    let mut client_config = ClientConfig::new(key);
    client_config.base_url = config.base_url();
    client_config.timeout = config.fluidtalk.timeout;
    client_config.own_username = config.fluidtalk.own_username.clone();
    Client::new(client_config).exit_with(Exit::Config)
}

/// A name for this process in leases and attempt rows: host and pid.
pub fn runner_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "runner".into());
    // A per-process random part: host and pid alone repeat across containers (every one
    // pid 1, hostnames set alike), and two runners must never share lease tokens.
    use std::hash::BuildHasher;
    let nonce = std::collections::hash_map::RandomState::new().hash_one(std::process::id()) as u16;
    format!("{host}-{}-{nonce:04x}", std::process::id())
}

/// Runs each job once, with a progress bar on a terminal; prints a summary per job.
pub async fn run_jobs(
    dispatcher: &Dispatcher,
    jobs: &[&Job],
    quiet: bool,
) -> Result<Vec<(String, Summary)>, Failure> {
    let mut per_job = Vec::new();
    for job in jobs {
        let bar = if std::io::stderr().is_terminal() && !quiet {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_message(format!("{}: calling", job.name));
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            Some(bar)
        } else {
            None
        };
        let mut d = dispatcher.shallow();
        d.progress = bar.clone();
        let result = d.run_job(job, None).await;
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        match result {
            Ok(s) => {
                if !quiet {
                    println!("{}: {}", job.name, describe(&s));
                }
                per_job.push((job.name.clone(), s));
            }
            Err(RunError::Unauthorized { until }) => {
                return Err(anyhow!(
                    "the API refused the key (401/403): fix FLUIDTALK_API_KEY; every runner pauses calls until {until}"
                ))
                .exit_with(Exit::Unauthorized);
            }
            Err(RunError::Store(e)) => return Err(store_failure(e)),
        }
    }
    Ok(per_job)
}

/// "sent 3, continued 1, ..." with the counts that are not zero.
pub fn describe(s: &Summary) -> String {
    let fields = [
        ("sent", s.sent),
        ("continued", s.continued),
        ("ignored", s.ignored),
        ("sealed", s.sealed),
        ("reopened", s.reopened),
        ("paused (402)", s.paused),
        ("retried", s.retried),
        ("failed", s.failed),
        ("to review", s.review),
        ("rate limited", s.rate_limited),
        ("unauthorized", s.unauthorized),
        ("cancelled", s.cancelled),
        ("exhausted", s.exhausted),
        ("events dropped", s.dropped),
        ("outside window", s.outside_window),
        ("recovered", s.recovered),
    ];
    let mut parts: Vec<String> = fields
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    if let Some(held) = &s.held {
        parts.push(held.clone());
    }
    if parts.is_empty() {
        "nothing due".into()
    } else {
        parts.join(", ")
    }
}

async fn dry_run(
    config: &Config,
    jobs: &[&Job],
    at: DateTime<Utc>,
    json: bool,
) -> Result<(), Failure> {
    let store = store::open_read_only(&config.database_url())
        .await
        .map_err(store_failure)?;
    let clock = ManualClock::new(at);
    let mut all = Vec::new();
    for job in jobs {
        let plan = plan_job(&*store, job, clock.now())
            .await
            .map_err(store_failure)?;
        if !json {
            println!(
                "{}: {} call(s) at {}",
                job.name,
                plan.calls.len(),
                at.format("%Y-%m-%d %H:%M:%S UTC")
            );
            for c in &plan.calls {
                println!(
                    "  {:<9} {:<24} step {:<4} {}",
                    c.action.as_str(),
                    c.target,
                    c.step,
                    c.reason
                );
            }
            for n in &plan.notes {
                println!("  note: {n}");
            }
        }
        all.extend(plan.calls);
    }
    if json {
        let text = serde_json::to_string_pretty(&all).exit_with(Exit::Failure)?;
        println!("{text}");
    }
    Ok(())
}
