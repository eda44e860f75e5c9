//! `fluidtalk-runner suppress ...`: the suppression list (a global do-not-contact list)
//! from the command line. Targets are checked as a lead's are (`lead::fields::target`),
//! every one before anything is written; each command is one transaction.

use super::common::{print_json, show_time};
use super::store_access::{Open, open_as, store_failure};
use crate::config::Config;
use crate::exit::{Exit, ExitWith, Failure};
use crate::store::{SUPPRESS_BATCH_MAX, SUPPRESSIONS_PAGE_MAX, Suppression};
use anyhow::anyhow;
use clap::Subcommand;
use std::path::{Path, PathBuf};

/// The largest target file read.
const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;
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
            let targets = targets_named(targets, file.as_deref())?;
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
            let targets = targets_named(targets, file.as_deref())?;
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

/// A usage-free input error (exit 3).
fn bad(message: String) -> Failure {
    Failure {
        exit: Exit::Config,
        error: anyhow!(message),
    }
}

/// The targets named on the command line and in `file`, each checked, in order, each
/// once: the first bad one is an error naming its argument, or its file and line, and
/// what was expected. At most `SUPPRESS_BATCH_MAX`.
fn targets_named(args: Vec<String>, file: Option<&Path>) -> Result<Vec<String>, Failure> {
    let mut seen = std::collections::HashSet::new();
    let mut targets = Vec::new();
    let mut take = |target: String| -> Result<(), String> {
        if seen.insert(target.clone()) {
            if targets.len() == SUPPRESS_BATCH_MAX {
                return Err(format!(
                    "more than {SUPPRESS_BATCH_MAX} targets (the most one command takes); split the list"
                ));
            }
            targets.push(target);
        }
        Ok(())
    };
    for (i, arg) in args.iter().enumerate() {
        let target = crate::lead::fields::target(arg)
            .map_err(|e| bad(format!("target {} ({arg:?}): {e}", i + 1)))?;
        take(target).map_err(bad)?;
    }
    if let Some(path) = file {
        for (n, target) in read_file(path)? {
            take(target).map_err(|e| bad(format!("{}:{n}: {e}", path.display())))?;
        }
    }
    if targets.is_empty() {
        return Err(bad("no targets: the file holds none".into()));
    }
    Ok(targets)
}

/// The targets of a file with their line numbers: one target per line, or, when the
/// first line is a CSV header with a `target` column, that column of each row (one record
/// per line, fields quoted with `"` where they hold a comma). Blank lines are skipped.
fn read_file(path: &Path) -> Result<Vec<(u64, String)>, Failure> {
    use std::io::{BufRead, Read};
    let shown = path.display();
    let opened =
        std::fs::File::open(path).map_err(|e| bad(format!("{shown}: cannot read: {e}")))?;
    // One byte past the bound is read, so a file that goes on is an error, never a list
    // cut in the middle.
    let mut reader = std::io::BufReader::new(opened.take(MAX_FILE_BYTES + 1));
    let mut read: u64 = 0;
    let mut line = String::new();
    // The CSV's target column and its number of columns, once a header was read.
    let mut csv: Option<(usize, usize)> = None;
    let mut first = true;
    let mut found = Vec::new();
    for n in 1u64.. {
        line.clear();
        let got = reader.read_line(&mut line).map_err(|e| {
            bad(format!(
                "{shown}:{n}: cannot read: {e} (expected UTF-8 text)"
            ))
        })?;
        read += got as u64;
        if read > MAX_FILE_BYTES {
            return Err(bad(format!(
                "{shown}: more than {MAX_FILE_BYTES} bytes; split the list"
            )));
        }
        if got == 0 {
            break;
        }
        let text = line
            .trim_end_matches(['\n', '\r'])
            .trim_start_matches('\u{feff}');
        if text.trim().is_empty() {
            continue;
        }
        if std::mem::take(&mut first) {
            let cells = split_csv(text).map_err(|e| bad(format!("{shown}:{n}: {e}")))?;
            let column = cells
                .iter()
                .position(|c| c.trim().eq_ignore_ascii_case("target"));
            match column {
                Some(column) => {
                    csv = Some((column, cells.len()));
                    continue;
                }
                None if cells.len() > 1 => {
                    return Err(bad(format!(
                        "{shown}:{n}: a CSV header row needs a `target` column (found {})",
                        cells
                            .iter()
                            .map(|c| format!("{:?}", c.trim()))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
                None => {}
            }
        }
        let raw = match csv {
            Some((column, columns)) => {
                let cells = split_csv(text).map_err(|e| bad(format!("{shown}:{n}: {e}")))?;
                if cells.len() != columns {
                    return Err(bad(format!(
                        "{shown}:{n}: expected {columns} fields as in the header row, found {}",
                        cells.len()
                    )));
                }
                cells[column].clone()
            }
            None => {
                // One target per line: a CSV row without a header, a comment or a name
                // with spaces would be taken for a target if not refused.
                if text.trim().starts_with('#') || text.trim().contains([',', ';', '\t', ' ']) {
                    return Err(bad(format!(
                        "{shown}:{n}: {} is not one target: expected one target per line, or a CSV whose first line is a header row with a `target` column",
                        crate::lead::fields::shown(text.trim())
                    )));
                }
                text.to_string()
            }
        };
        let target =
            crate::lead::fields::target(&raw).map_err(|e| bad(format!("{shown}:{n}: {e}")))?;
        found.push((n, target));
    }
    Ok(found)
}

/// The fields of one CSV record on one line: separated by commas, a field in double quotes
/// may hold commas and `""` for a quote.
fn split_csv(line: &str) -> Result<Vec<String>, String> {
    let mut cells = Vec::new();
    let mut cell = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut at_start = true;
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted => {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    cell.push('"');
                } else {
                    quoted = false;
                }
            }
            '"' if at_start => {
                quoted = true;
                at_start = false;
            }
            ',' if !quoted => {
                cells.push(std::mem::take(&mut cell));
                at_start = true;
            }
            c => {
                cell.push(c);
                at_start = false;
            }
        }
    }
    if quoted {
        return Err("a quoted field is not closed (expected one record per line)".into());
    }
    cells.push(cell);
    Ok(cells)
}

#[cfg(test)]
mod tests {
    use super::split_csv;

    #[test]
    fn csv_fields_are_split_on_commas_outside_quotes() {
        assert_eq!(split_csv("a,b").unwrap(), ["a", "b"]);
        assert_eq!(
            split_csv("\"x, y\",@ana,\"say \"\"hi\"\"\"").unwrap(),
            ["x, y", "@ana", "say \"hi\""]
        );
        assert_eq!(split_csv("@ana").unwrap(), ["@ana"]);
        assert!(split_csv("\"open,@ana").is_err());
    }
}
