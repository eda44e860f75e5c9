//! `fluidtalk-runner status [--json]`: leads per state, active pauses, what each running
//! daemon holds back and why, each job's last run and next fire time, and the reply rates
//! per job, step and sender.

use super::store_access::{Open, open_as, store_failure};
use crate::config::Config;
use crate::exit::{Exit, ExitWith, Failure};
use crate::store::PauseScope;
use chrono::{Offset, Utc};
use clap::Args;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The report as JSON (as `GET /v1/status` answers).
    #[arg(long)]
    json: bool,
}

pub async fn run(config: &Config, args: StatusArgs) -> Result<(), Failure> {
    let store = open_as(config, Open::ReadOnly).await?;
    let now = Utc::now();
    let report = crate::status::Report::read(&*store, config, now)
        .await
        .map_err(store_failure)?;
    if args.json {
        let text =
            serde_json::to_string_pretty(&report.to_json(config)).exit_with(Exit::Failure)?;
        outln!("{text}");
        return Ok(());
    }
    if let Some(line) = report.storage.describe() {
        outln!("!!! {line}");
    }
    let crate::status::Report {
        leads: counts,
        pauses,
        held,
        runners,
        runs,
        job_pauses,
        unsent_events: unsent,
        outbox,
        rates,
        ..
    } = report;
    if let Some(p) = pauses.iter().find(|p| p.scope == PauseScope::All) {
        outln!(
            "!!! THE API REFUSED THE KEY: every call is paused until {} ({}). Fix FLUIDTALK_API_KEY.",
            p.until.format("%Y-%m-%d %H:%M UTC"),
            p.reason
        );
    }
    let leads: Vec<String> = counts.iter().map(|(s, n)| format!("{s} {n}")).collect();
    outln!("leads: {}", leads.join(", "));
    if held.leased > 0 {
        outln!(
            "held by runners: {} lead(s) claimed, {} call(s) in flight; a runner that stopped hard (SIGKILL, a second Ctrl-C) holds its claims until {}",
            held.leased,
            held.in_flight,
            held.until.map_or_else(
                || "-".into(),
                |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
            )
        );
    }
    if outbox.pending + outbox.parked > 0 {
        outln!(
            "outbox: {} pending, {} parked{}",
            outbox.pending,
            outbox.parked,
            if outbox.parked > 0 {
                " (`outbox list --parked`, `outbox redeliver ID...`)"
            } else {
                ""
            }
        );
    }
    if pauses.is_empty() {
        outln!("pauses: none");
    }
    for p in &pauses {
        outln!(
            "pause: {} until {} (strike {}): {}",
            p.scope.as_str(),
            p.until.format("%Y-%m-%d %H:%M UTC"),
            p.strikes,
            p.reason
        );
    }
    if !pauses.is_empty() {
        outln!(
            "  (after buying tokens or fixing the key: `fluidtalk-runner pause clear` lifts them now)"
        );
    }
    for r in &runners {
        let holding = if r.holds.is_empty() {
            "holding nothing".to_string()
        } else {
            let held: Vec<String> = r
                .holds
                .iter()
                .map(|h| {
                    format!(
                        "{} until {} ({}{})",
                        h.scope.as_str(),
                        h.until.format("%Y-%m-%d %H:%M:%S UTC"),
                        if h.stored {
                            "stored pause"
                        } else {
                            "heard by this runner, not stored: holds it alone until then"
                        },
                        if h.reason.is_empty() {
                            String::new()
                        } else {
                            format!(": {}", h.reason)
                        }
                    )
                })
                .collect();
            format!("holding {}", held.join("; "))
        };
        outln!(
            "runner {}: seen {}s ago, {holding}",
            r.runner_id,
            (now - r.seen_at).num_seconds().max(0)
        );
    }
    for (t, n) in &unsent {
        outln!(
            "events: {n} queued {t:?} event(s) that no job sends: they wait, and hold their leads back from openers (add an event job for {t:?})"
        );
    }
    for j in &config.jobs {
        let last = runs.iter().find(|r| r.job == j.name);
        let last_text = match last {
            Some(r) => format!(
                "last run {} by {}: {}",
                r.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
                r.runner_id,
                r.summary
                    .as_ref()
                    .and_then(|s| serde_json::from_value::<crate::runner::Summary>(s.clone()).ok())
                    .map(|s| s.describe())
                    .unwrap_or_else(|| "still running or stopped".into())
            ),
            None => "never run".into(),
        };
        let next = j
            .schedule
            .next_after(now)
            .map(|t| {
                // UTC like the last run, with the job's local time beside it (unless the
                // job's zone is UTC's offset: the same time twice says nothing).
                let utc = t.format("%Y-%m-%d %H:%M:%S UTC").to_string();
                let local = t.with_timezone(&j.timezone);
                if local.offset().fix().local_minus_utc() == 0 {
                    utc
                } else {
                    format!("{utc} ({})", local.format("%H:%M %Z"))
                }
            })
            .unwrap_or_else(|| "-".into());
        match job_pauses.iter().find(|p| p.job == j.name) {
            Some(p) => outln!(
                "job {}: PAUSED: {} (`job resume {}` starts it again); {last_text}; next {next}",
                j.name,
                p.describe(),
                j.name
            ),
            None => outln!("job {}: {last_text}; next {next}", j.name),
        }
    }
    if !rates.is_empty() {
        outln!(
            "reply rates (a reply counts for the last step sent before it; interval: 95% Wilson):"
        );
    }
    for r in &rates {
        outln!("  {}", r.describe());
    }
    Ok(())
}
