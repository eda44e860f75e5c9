//! `fluidtalk-runner job pause|resume|list`: stop one job (every runner on the database
//! honours it at its next batch) and start it again, without stopping a daemon or
//! editing the campaign file. Not the account pauses of `pause list|clear` (402, 401).

use super::common::{parse_time, print_json};
use super::store_access::{Open, open_as, store_failure};
use crate::config::Config;
use crate::exit::{Exit, ExitWith, Failure};
use crate::job_pause::{self, PauseAsk};
use anyhow::anyhow;
use chrono::{DateTime, SecondsFormat, Utc};
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Pause a job: its runs (scheduled or `run`) make no call until it is resumed or the
    /// pause ends. Pausing a paused job replaces its pause.
    Pause {
        /// The job's name, as in the campaign file.
        name: String,
        /// End the pause after this long (e.g. 30m, 2h, 3days).
        #[arg(long = "for", value_name = "DURATION", value_parser = parse_for, conflicts_with = "until")]
        for_: Option<std::time::Duration>,
        /// End the pause at this instant (RFC 3339, e.g. 2026-12-08T10:00:00Z).
        #[arg(long, value_name = "TIME", value_parser = parse_time)]
        until: Option<DateTime<Utc>>,
        /// Why (at most 200 characters, one line), shown in run summaries and `status`.
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
        /// The pause as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Resume a paused job: runners call again at their next batch or fire.
    Resume {
        /// The job's name, as in the campaign file.
        name: String,
        /// What was lifted, as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The configured jobs, each paused (until when, why) or active.
    List {
        /// The jobs as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// A `--for` duration: humantime's words (`90s`, `2h`, `1day 6h`).
fn parse_for(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration like 30m, 2h or 3days: {e}"))
}

/// An ask's error in the command line's words: its keys as flags.
fn flags(e: &str) -> String {
    e.replace("`for`", "--for")
        .replace("`until`", "--until")
        .replace("`reason`", "--reason")
}

fn show(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub async fn run(config: &Config, command: JobCommand) -> Result<(), Failure> {
    // The runner's clock (FLUIDTALK_CLOCK_OFFSET moves it, as for `run`).
    let clock = crate::clock::from_env()
        .map_err(|e| anyhow!(e))
        .exit_with(Exit::Usage)?;
    let now = clock.now();
    match command {
        JobCommand::Pause {
            name,
            for_,
            until,
            reason,
            json,
        } => {
            let ask = PauseAsk {
                for_,
                until,
                reason,
            };
            let pause = job_pause::pause_of(config, &name, &ask, now)
                .map_err(|e| anyhow!("job pause: {}", flags(&e.to_string())))
                .exit_with(Exit::Config)?;
            let store = open_as(config, Open::Create).await?;
            let before = store.pause_job(&pause).await.map_err(store_failure)?;
            if json {
                return print_json(&serde_json::json!({
                    "job": pause.job,
                    "paused": true,
                    "pause": pause,
                    "replaced": before,
                }));
            }
            let was = if before.is_some() {
                " (it was paused already: its pause is replaced)"
            } else {
                ""
            };
            outln!(
                "{}: {}{was}; every runner on the database makes no call for it from its next batch",
                pause.job,
                pause.describe()
            );
            Ok(())
        }
        JobCommand::Resume { name, json } => {
            let job = job_pause::find_job(config, &name)
                .map_err(|e| anyhow!("job resume: {e}"))
                .exit_with(Exit::Config)?;
            let store = open_as(config, Open::Existing).await?;
            let lifted = store
                .resume_job(&job.name, now)
                .await
                .map_err(store_failure)?;
            if json {
                return print_json(&serde_json::json!({
                    "job": job.name,
                    "resumed": lifted.is_some(),
                    "was": lifted,
                }));
            }
            match lifted {
                Some(p) => outln!(
                    "{}: resumed (was {}); runners call again at their next batch or fire",
                    job.name,
                    p.describe()
                ),
                None => outln!("{}: not paused; nothing to resume", job.name),
            }
            Ok(())
        }
        JobCommand::List { json } => {
            let store = open_as(config, Open::ReadOnly).await?;
            let pauses = store.job_pauses().await.map_err(store_failure)?;
            let states = job_pause::states(config, &pauses, now);
            if json {
                return print_json(&states);
            }
            if states.is_empty() {
                outln!("no [[job]] is defined in {}", config.path.display());
            }
            for s in &states {
                match &s.pause {
                    Some(p) => outln!(
                        "{:<24} paused   until {:<22} since {}{}",
                        s.name,
                        p.until.map_or_else(|| "resumed".into(), show),
                        show(p.paused_at),
                        p.reason
                            .as_deref()
                            .map_or(String::new(), |r| format!("  ({r})"))
                    ),
                    None => outln!("{:<24} active", s.name),
                }
            }
            Ok(())
        }
    }
}
