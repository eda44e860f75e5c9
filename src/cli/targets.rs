//! The targets of `leads block`, `leads unblock`, `suppress add` and `suppress remove`:
//! arguments and a file (one target a line, or a CSV with a `target` column), each checked
//! before anything is written; and how the leads' results are printed.

use super::common::print_json;
use crate::exit::{Exit, Failure};
use crate::store::Lead;
use anyhow::anyhow;
use std::path::Path;

/// The most targets one `leads block` or `leads unblock` takes (arguments and file
/// together; one transaction holds them all).
pub const MAX_TARGETS: usize = 10_000;
/// The largest target file read.
const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// A usage-free input error (exit 3).
fn bad(message: String) -> Failure {
    Failure {
        exit: Exit::Config,
        error: anyhow!(message),
    }
}

/// The targets named on the command line and in `file`, each checked, in order, each
/// once: the first bad one is an error naming its argument, or its file and line, and
/// what was expected. At most `max`.
pub(super) fn targets_named(
    args: Vec<String>,
    file: Option<&Path>,
    max: usize,
) -> Result<Vec<String>, Failure> {
    let mut seen = std::collections::HashSet::new();
    let mut targets = Vec::new();
    let mut take = |target: String| -> Result<(), String> {
        if seen.insert(target.clone()) {
            if targets.len() == max {
                return Err(format!(
                    "more than {max} targets (the most one command takes); split the list"
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
