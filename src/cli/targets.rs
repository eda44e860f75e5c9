//! The targets of `leads block` and `leads unblock`: arguments and a file, each checked
//! before anything is written; and how their results are printed.

use super::common::print_json;
use crate::exit::{Exit, ExitWith, Failure};
use crate::store::Lead;
use anyhow::anyhow;
use std::path::Path;

/// The most targets one `block` or `unblock` takes (arguments and file together).
pub const MAX_TARGETS: usize = 1_000_000;
/// The largest target file read.
const MAX_TARGET_FILE: u64 = 64 * 1024 * 1024;

/// The targets named on the command line and in `file`, each checked (the first bad one
/// is an error naming its argument or its file and line, and nothing is written), in
/// order, each once; and whether several were asked for (a JSON array then).
pub(super) fn targets_named(
    args: Vec<String>,
    file: Option<&Path>,
) -> Result<(Vec<String>, bool), Failure> {
    let several = args.len() != 1 || file.is_some();
    let mut seen = std::collections::HashSet::new();
    let mut targets = Vec::new();
    let mut take = |target: String| -> Result<(), String> {
        if seen.insert(target.clone()) {
            if targets.len() == MAX_TARGETS {
                return Err(format!("more than {MAX_TARGETS} targets; split the list"));
            }
            targets.push(target);
        }
        Ok(())
    };
    for (i, arg) in args.iter().enumerate() {
        let target = crate::lead::fields::target(arg)
            .map_err(|e| anyhow!("target {} ({arg:?}): {e}", i + 1))
            .exit_with(Exit::Config)?;
        take(target)
            .map_err(|e| anyhow!(e))
            .exit_with(Exit::Config)?;
    }
    if let Some(path) = file {
        use std::io::{BufRead, Read};
        let shown = path.display();
        let opened = std::fs::File::open(path)
            .map_err(|e| anyhow!("{shown}: cannot read: {e}"))
            .exit_with(Exit::Config)?;
        // One byte past the bound is read, so a pipe or FIFO (whose size is not known
        // beforehand) that goes on is an error, never a list cut in the middle of a target.
        let mut reader = std::io::BufReader::new(opened.take(MAX_TARGET_FILE + 1));
        let mut read: u64 = 0;
        let mut line = String::new();
        for n in 1.. {
            line.clear();
            let got = reader
                .read_line(&mut line)
                .map_err(|e| anyhow!("{shown}:{n}: cannot read: {e}"))
                .exit_with(Exit::Config)?;
            read += got as u64;
            if read > MAX_TARGET_FILE {
                return Err(Failure {
                    exit: Exit::Config,
                    error: anyhow!("{shown}: more than {MAX_TARGET_FILE} bytes; split the list"),
                });
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
            // One target per line: a CSV row, a comment or a name with spaces would be
            // taken for a target (and a wrong person added, blocked) if not refused.
            if text.trim().starts_with('#') || text.trim().contains([',', ';', '\t', ' ']) {
                return Err(Failure {
                    exit: Exit::Config,
                    error: anyhow!(
                        "{shown}:{n}: {} is not one target: the file holds one target per line (no header, comments, commas or spaces)",
                        crate::lead::fields::shown(text.trim())
                    ),
                });
            }
            let target = crate::lead::fields::target(text)
                .map_err(|e| anyhow!("{shown}:{n}: {e}"))
                .exit_with(Exit::Config)?;
            take(target)
                .map_err(|e| anyhow!("{shown}:{n}: {e}"))
                .exit_with(Exit::Config)?;
        }
    }
    if targets.is_empty() {
        return Err(Failure {
            exit: Exit::Config,
            error: anyhow!("no targets: the file holds none"),
        });
    }
    Ok((targets, several))
}

/// Prints the leads as JSON (text lines were printed as each was done).
pub(super) fn several_done(leads: &[Lead], json: bool, several: bool) -> Result<(), Failure> {
    match (json, several) {
        (false, _) => Ok(()),
        (true, true) => print_json(&leads),
        (true, false) => leads.first().map_or(Ok(()), print_json),
    }
}

/// At most ten targets, then how many more.
pub(super) fn shown_list(targets: &[String]) -> String {
    let mut shown: Vec<String> = targets.iter().take(10).map(|t| format!("{t:?}")).collect();
    if targets.len() > 10 {
        shown.push(format!("and {} more", targets.len() - 10));
    }
    shown.join(", ")
}
