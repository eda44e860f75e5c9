//! `fluidtalk-runner suppress ...`: the suppression list (a global do-not-contact list)
//! from the command line. Targets are checked as a lead's are (`lead::fields::target`),
//! every one before anything is written; each command is one transaction.

use super::common::{print_json, show_time};
use super::store_access::{Open, open_as, store_failure};
use super::targets::targets_named;
use crate::config::Config;
use crate::exit::{Exit, ExitWith, Failure};
use crate::store::{SUPPRESS_BATCH_MAX, SUPPRESSIONS_PAGE_MAX, Suppression};
use anyhow::anyhow;
use clap::Subcommand;
use std::path::PathBuf;

/// `suppress list`'s page when `--limit` is not given.
const DEFAULT_LIST: u32 = 100;

#[derive(Debug, Subcommand)]
pub enum SuppressCommand {
    /// Never contact these targets: add them to the suppression list and block their
    /// leads (at most 10,000 per command; the list holds at most 1,000,000).
    Add {
        /// Targets (@username), checked as a lead's target is.
        #[arg(required_unless_present = "file")]
        targets: Vec<String>,
        /// Also the targets of this file: one per line, or a CSV whose header row has a
        /// `target` column.
        #[arg(long, value_name = "PATH")]
        file: Option<PathBuf>,
        /// The counts as JSON (added, already, leads_blocked).
        #[arg(long)]
        json: bool,
    },
    /// Take targets off the suppression list. Their leads stay blocked: `leads unblock`
    /// resumes one.
    Remove {
        /// Targets (@username).
        #[arg(required_unless_present = "file")]
        targets: Vec<String>,
        /// Also the targets of this file: one per line, or a CSV whose header row has a
        /// `target` column.
        #[arg(long, value_name = "PATH")]
        file: Option<PathBuf>,
        /// The counts as JSON (removed, not_suppressed, leads_still_blocked).
        #[arg(long)]
        json: bool,
    },
    /// The suppressed targets in target order, a page at a time; a cut list says so on
    /// stderr with the `--after` that shows the next page.
    List {
        /// At most this many (1 to 1000, default 100).
        #[arg(long, default_value_t = DEFAULT_LIST,
              value_parser = clap::value_parser!(u32).range(1..=i64::from(SUPPRESSIONS_PAGE_MAX)))]
        limit: u32,
        /// Only targets after this one (the last one shown): the next page.
        #[arg(long, value_name = "TARGET")]
        after: Option<String>,
        /// `{"suppressions": [...], "next_after": ...}`, as `GET /v1/suppressions`.
        #[arg(long)]
        json: bool,
    },
}

/// A page of the list, as `--json` and the HTTP API give it.
#[derive(serde::Serialize)]
struct Page {
    suppressions: Vec<Suppression>,
    next_after: Option<String>,
}

pub async fn run(config: &Config, command: SuppressCommand) -> Result<(), Failure> {
    match command {
        SuppressCommand::Add {
            targets,
            file,
            json,
        } => {
            // Every target checked before the database is opened: a bad line writes nothing.
            let targets = targets_named(targets, file.as_deref(), SUPPRESS_BATCH_MAX)?;
            let store = open_as(config, Open::Create).await?;
            let done = store
                .suppress(&targets, chrono::Utc::now())
                .await
                .map_err(store_failure)?;
            if json {
                return print_json(&done);
            }
            outln!(
                "suppressed {} target(s): {} added, {} already on the list; {} lead(s) blocked",
                targets.len(),
                done.added,
                done.already,
                done.leads_blocked
            );
            Ok(())
        }
        SuppressCommand::Remove {
            targets,
            file,
            json,
        } => {
            let targets = targets_named(targets, file.as_deref(), SUPPRESS_BATCH_MAX)?;
            let store = open_as(config, Open::Existing).await?;
            let done = store.unsuppress(&targets).await.map_err(store_failure)?;
            if json {
                return print_json(&done);
            }
            outln!(
                "removed {} of {} target(s) from the suppression list ({} were not on it)",
                done.removed,
                targets.len(),
                done.not_suppressed
            );
            if done.leads_still_blocked > 0 {
                eprintln!(
                    "{} lead(s) of the removed targets stay blocked: `leads unblock TARGET` resumes one",
                    done.leads_still_blocked
                );
            }
            Ok(())
        }
        SuppressCommand::List { limit, after, json } => {
            let after = after
                .as_deref()
                .map(crate::lead::fields::target)
                .transpose()
                .map_err(|e| anyhow!("--after: {e}"))
                .exit_with(Exit::Config)?;
            let store = open_as(config, Open::ReadOnly).await?;
            // One more than shown: whether the list goes on.
            let mut found = store
                .suppressions(after.as_deref(), limit + 1)
                .await
                .map_err(store_failure)?;
            let cut = found.len() > limit as usize;
            found.truncate(limit as usize);
            let next_after = cut
                .then(|| found.last().map(|s| s.target.clone()))
                .flatten();
            if json {
                print_json(&Page {
                    suppressions: found,
                    next_after: next_after.clone(),
                })?;
            } else {
                if !found.is_empty() {
                    outln!("{:<32} ADDED (UTC)", "TARGET");
                }
                for s in &found {
                    outln!("{:<32} {}", s.target, show_time(Some(s.created_at)));
                }
                if found.is_empty() {
                    eprintln!("no suppressed targets");
                }
            }
            if let Some(next) = next_after {
                eprintln!(
                    "cut at {limit} targets (--limit {limit}); more follow: `suppress list --after {next}` shows the next ones"
                );
            }
            Ok(())
        }
    }
}
