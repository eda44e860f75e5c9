//! Where in the campaign file an error is: its line and the key it is about, named as a
//! person finds it (`[backoff] retry_max`, `[[job]] "openers" schedule`,
//! `send_window.days`). Never the value: it may be a password.

use super::ConfigError;
use super::fields::MARK;
use std::ops::Range;
use std::path::Path;

/// Line (1-based) and column (1-based, in characters) of byte `offset`.
pub(super) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// The key at `span`: the table above it, the job's name under `[[job]]`, and the key
/// on its line (with the inline table's inner key where the span is inside one).
pub(super) fn key_at(text: &str, span: &Range<usize>) -> Option<String> {
    let (line, column) = line_column(text, span.start);
    let lines: Vec<&str> = text.lines().collect();
    let above = &lines[..line.min(lines.len())];
    let header = above
        .iter()
        .rposition(|l| l.trim_start().starts_with('['))
        .map(|i| (i, lines[i].trim()));
    let first = header.map_or(0, |(i, _)| i + 1);
    let key = match lines.get(line - 1) {
        Some(here) => line_key(here, column).or_else(|| {
            // A value continued from an earlier line (a list over several lines).
            above[first.min(line - 1)..line - 1]
                .iter()
                .rev()
                .find_map(|l| line_key(l, l.chars().count() + 1))
        }),
        None => None,
    };
    let table = match header {
        Some((i, "[[job]]")) if key.as_deref() != Some("name") => match job_name(&lines[i + 1..]) {
            Some(name) => format!("[[job]] {name:?}"),
            None => "[[job]]".to_string(),
        },
        Some((_, h)) => h.to_string(),
        None => String::new(),
    };
    match (table.is_empty(), key) {
        (true, k) => k,
        (false, Some(k)) => Some(format!("{table} {k}")),
        (false, None) => Some(table),
    }
}

/// The key of the value at `column` (1-based) of `line`: `timeout = 60` gives `timeout`,
/// `send_window = { days = "x" }` gives `send_window.days` inside the braces; a span at a
/// key (an unknown one) gives that key. `None` on a header line or a line with no key.
fn line_key(line: &str, column: usize) -> Option<String> {
    if line.trim_start().starts_with(['[', '#']) {
        return None;
    }
    let before: String = line.chars().take(column.saturating_sub(1)).collect();
    let rest: String = line.chars().skip(column.saturating_sub(1)).collect();
    let name = |part: &str| {
        part.rsplit(['{', ',', ' ', '\t'])
            .find(|s| !s.is_empty())
            .map(|s| s.trim().to_string())
    };
    // The keys whose `=` comes before the column, outermost first.
    let pieces: Vec<&str> = before.split('=').collect();
    let keys: Vec<String> = pieces[..pieces.len() - 1]
        .iter()
        .filter_map(|p| name(p))
        .collect();
    let open = before.matches('{').count() > before.matches('}').count();
    let tail = before.trim_end();
    let at_key = (tail.is_empty() || tail.ends_with([',', '{'])) && rest.contains('=');
    let inner = if at_key {
        rest.split('=').next().map(str::trim).map(str::to_string)
    } else {
        keys.last().cloned()
    }?;
    match keys.first() {
        Some(outer) if open && (at_key || keys.len() > 1) => Some(format!("{outer}.{inner}")),
        _ => Some(inner),
    }
}

/// The `name` of the job whose lines (after its `[[job]]` header) are `lines`.
fn job_name(lines: &[&str]) -> Option<String> {
    lines
        .iter()
        .take_while(|l| !l.trim_start().starts_with('['))
        .find_map(|l| {
            let (k, _) = l.split_once('=')?;
            if k.trim() != "name" {
                return None;
            }
            let table: toml::Table = toml::from_str(l).ok()?;
            table.get("name")?.as_str().map(|n| n.trim().to_string())
        })
}

/// A TOML error as "line L, column C: KEY: what". toml's own text quotes the offending
/// source line, which may be the database URL with its password: it is not used.
pub(super) fn syntax_message(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim_start_matches(MARK);
    let Some(span) = e.span() else {
        return message.to_string();
    };
    let (line, column) = line_column(text, span.start);
    match key_at(text, &span) {
        Some(k) => format!("line {line}, column {column}: {k}: {message}"),
        None => format!("line {line}, column {column}: {message}"),
    }
}

/// The campaign file's error for a toml error: a value's own complaint (marked, see
/// `fields`) as `line L: KEY: why`; anything else (syntax, the file's shape) as
/// `syntax_message` says it.
pub(super) fn config_error(path: &Path, text: &str, e: &toml::de::Error) -> ConfigError {
    match (e.message().strip_prefix(MARK), e.span()) {
        (Some(why), Some(span)) => ConfigError::Invalid {
            path: path.to_path_buf(),
            line: line_column(text, span.start).0,
            key: key_at(text, &span).unwrap_or_else(|| "(top level)".into()),
            message: why.to_string(),
        },
        _ => ConfigError::Syntax {
            path: path.to_path_buf(),
            message: syntax_message(text, e),
        },
    }
}
