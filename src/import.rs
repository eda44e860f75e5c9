//! Reading lead files: CSV with a header row, or JSON Lines, streamed row by row.
//!
//! Each row becomes a checked `LeadInput` or a rejection that names its line and what
//! was expected; the caller decides what to keep. Problems with the file as a whole
//! (unreadable, unknown format, a header without `target` or with an unknown column) are
//! `FileError`s, and nothing is imported.

use crate::lead::LeadState;
use crate::store::{LeadInput, MAX_TARGET_LEN};
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// The columns (CSV) or keys (JSONL) a lead file may have.
pub const COLUMNS: [&str; 9] = [
    "target",
    "own_username",
    "timezone",
    "profile_image",
    "tags",
    "state",
    "last_contact_at",
    "last_reply_at",
    "follow_ups_sent",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Jsonl,
}

/// A problem with the whole file.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{path}: cannot read: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path}: unknown file type: expected a .csv or .jsonl file")]
    UnknownFormat { path: PathBuf },
    #[error("{path}: line {line}: {why}")]
    Header {
        path: PathBuf,
        line: u64,
        why: String,
    },
}

/// One row that was not imported, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Rejection {
    pub line: u64,
    pub reason: String,
}

impl Format {
    pub fn of(path: &Path) -> Result<Format, FileError> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("csv") => Ok(Format::Csv),
            Some("jsonl" | "ndjson") => Ok(Format::Jsonl),
            _ => Err(FileError::UnknownFormat {
                path: path.to_path_buf(),
            }),
        }
    }
}

/// A row as read, before it is checked: text values, `None` where absent or empty.
#[derive(Debug, Default)]
struct RawRow {
    fields: [Option<String>; 9],
    /// Tags from JSONL arrive as a list already.
    tag_list: Option<Vec<String>>,
}

/// A row's line and either the checked lead or why it was rejected.
pub type Row = (u64, Result<LeadInput, String>);

/// Rows of a lead file, in order, each with the line it starts on.
pub struct Rows {
    inner: RowsInner,
    path: PathBuf,
}

enum RowsInner {
    Csv {
        reader: csv::Reader<Box<dyn Read + Send>>,
        columns: Vec<usize>,
        record: csv::StringRecord,
    },
    Jsonl {
        reader: BufReader<Box<dyn Read + Send>>,
        buf: Vec<u8>,
        line: u64,
    },
}

impl Rows {
    /// Opens `path` (reading through `wrap`, e.g. to count bytes for a progress bar).
    pub fn open(
        path: &Path,
        wrap: impl FnOnce(std::fs::File) -> Box<dyn Read + Send>,
    ) -> Result<Rows, FileError> {
        let format = Format::of(path)?;
        let file = std::fs::File::open(path).map_err(|source| FileError::Io {
            path: path.to_path_buf(),
            cause: source,
        })?;
        Rows::from_reader(format, path, wrap(file))
    }

    /// Rows of `format` read from `reader`; `path` names it in errors. (The fuzz target
    /// `lead_rows` feeds it arbitrary bytes.)
    pub fn from_reader(
        format: Format,
        path: &Path,
        reader: Box<dyn Read + Send>,
    ) -> Result<Rows, FileError> {
        let inner = match format {
            Format::Csv => {
                // `\n` alone ends a record: with the default (CR, LF or CRLF) the csv crate
                // numbers lines after a CRLF one too low. The `\r` left at the end of a
                // line's last field is trimmed like any other surrounding white space.
                let mut reader = csv::ReaderBuilder::new()
                    .has_headers(true)
                    .flexible(true)
                    .terminator(csv::Terminator::Any(b'\n'))
                    .from_reader(reader);
                let header = reader
                    .headers()
                    .map_err(|e| csv_file_error(path, e))?
                    .clone();
                let columns = header_columns(path, &header)?;
                RowsInner::Csv {
                    reader,
                    columns,
                    record: csv::StringRecord::new(),
                }
            }
            Format::Jsonl => RowsInner::Jsonl {
                reader: BufReader::new(reader),
                buf: Vec::new(),
                line: 0,
            },
        };
        Ok(Rows {
            inner,
            path: path.to_path_buf(),
        })
    }

    /// The next row: its line and the checked lead or why it was rejected. `Err` is a
    /// read failure of the file itself.
    pub fn next_row(&mut self) -> Result<Option<Row>, FileError> {
        match &mut self.inner {
            RowsInner::Csv {
                reader,
                columns,
                record,
            } => loop {
                let more = match reader.read_record(record) {
                    Ok(more) => more,
                    Err(e) => {
                        // A malformed record (bad quoting, invalid UTF-8) rejects that row;
                        // an I/O error ends the file.
                        if let csv::ErrorKind::Io(_) = e.kind() {
                            return Err(csv_file_error(&self.path, e));
                        }
                        let line = e.position().map_or(0, |p| p.line());
                        return Ok(Some((line, Err(format!("unreadable row: {e}")))));
                    }
                };
                if !more {
                    return Ok(None);
                }
                let line = record.position().map_or(0, |p| p.line());
                // A blank line (only its `\r`, or spaces) is no row at all.
                if record.len() == 1 && record[0].trim().is_empty() {
                    continue;
                }
                if record.len() != columns.len() {
                    return Ok(Some((
                        line,
                        Err(format!(
                            "expected {} fields as in the header, found {}",
                            columns.len(),
                            record.len()
                        )),
                    )));
                }
                let mut raw = RawRow::default();
                for (value, &col) in record.iter().zip(columns.iter()) {
                    let value = value.trim();
                    if !value.is_empty() {
                        raw.fields[col] = Some(value.to_string());
                    }
                }
                return Ok(Some((line, check(raw))));
            },
            RowsInner::Jsonl { reader, buf, line } => loop {
                buf.clear();
                let read = reader
                    .read_until(b'\n', buf)
                    .map_err(|source| FileError::Io {
                        path: self.path.clone(),
                        cause: source,
                    })?;
                if read == 0 {
                    return Ok(None);
                }
                *line += 1;
                // Bytes that are not UTF-8 reject their line, not the file.
                let Ok(text) = std::str::from_utf8(buf) else {
                    return Ok(Some((*line, Err("the line is not valid UTF-8".into()))));
                };
                let text = if *line == 1 {
                    text.trim_start_matches('\u{feff}')
                } else {
                    text
                };
                if text.trim().is_empty() {
                    continue;
                }
                return Ok(Some((*line, jsonl_row(text).and_then(check))));
            },
        }
    }
}

fn csv_file_error(path: &Path, e: csv::Error) -> FileError {
    let line = e.position().map_or(1, |p| p.line());
    match e.into_kind() {
        csv::ErrorKind::Io(source) => FileError::Io {
            path: path.to_path_buf(),
            cause: source,
        },
        other => FileError::Header {
            path: path.to_path_buf(),
            line,
            why: format!("{other:?}"),
        },
    }
}

/// Maps header cells to column indexes, refusing unknown, repeated or missing columns.
fn header_columns(path: &Path, header: &csv::StringRecord) -> Result<Vec<usize>, FileError> {
    let bad = |why: String| FileError::Header {
        path: path.to_path_buf(),
        line: 1,
        why,
    };
    if header
        .iter()
        .all(|h| h.trim_start_matches('\u{feff}').trim().is_empty())
    {
        return Err(bad(
            "the file is empty: expected a header row naming the columns, with \"target\"".into(),
        ));
    }
    let mut columns = Vec::with_capacity(header.len());
    for (i, name) in header.iter().enumerate() {
        let name = if i == 0 {
            name.trim_start_matches('\u{feff}')
        } else {
            name
        };
        let name = name.trim().to_ascii_lowercase();
        let Some(col) = COLUMNS.iter().position(|c| *c == name) else {
            return Err(bad(format!(
                "unknown column {name:?} (expected: {})",
                COLUMNS.join(", ")
            )));
        };
        if columns.contains(&col) {
            return Err(bad(format!("column {name:?} appears twice")));
        }
        columns.push(col);
    }
    if !columns.contains(&0) {
        return Err(bad("the header has no \"target\" column".into()));
    }
    Ok(columns)
}

/// A JSON object's entries in order, repeated keys kept (serde_json's map keeps only the
/// last, which would drop a value silently).
struct Entries(Vec<(String, Value)>);

impl<'de> serde::Deserialize<'de> for Entries {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Entries;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Entries, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = map.next_entry::<String, Value>()? {
                    out.push(entry);
                }
                Ok(Entries(out))
            }
        }
        d.deserialize_map(Visit)
    }
}

fn jsonl_row(text: &str) -> Result<RawRow, String> {
    let Entries(entries) =
        serde_json::from_str(text).map_err(|e| format!("not a JSON object: {e}"))?;
    for (i, (key, _)) in entries.iter().enumerate() {
        if entries[..i].iter().any(|(k, _)| k == key) {
            return Err(format!("key {key:?} appears twice; give each key once"));
        }
    }
    if !entries.iter().any(|(k, _)| k == "target") {
        return Err("the \"target\" key is missing (every line needs the lead's handle)".into());
    }
    let mut raw = RawRow::default();
    for (key, value) in entries {
        let Some(col) = COLUMNS.iter().position(|c| *c == key) else {
            return Err(format!(
                "unknown key {key:?} (expected: {})",
                COLUMNS.join(", ")
            ));
        };
        match (key.as_str(), value) {
            (_, Value::Null) => {}
            ("tags", Value::Array(items)) => {
                let tags = items
                    .into_iter()
                    .map(|t| match t {
                        Value::String(s) => Ok(s),
                        _ => Err("tags must be an array of strings".to_string()),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                raw.tag_list = Some(tags);
            }
            ("tags", _) => return Err("tags must be an array of strings".into()),
            ("follow_ups_sent", Value::Number(n)) => raw.fields[col] = Some(n.to_string()),
            (_, Value::String(s)) => {
                let s = s.trim();
                if !s.is_empty() {
                    raw.fields[col] = Some(s.to_string());
                }
            }
            (key, other) => return Err(format!("{key} must be a string, not {other}")),
        }
    }
    Ok(raw)
}

fn no_control(name: &str, value: &str) -> Result<(), String> {
    match value.chars().find(|c| c.is_control()) {
        Some(c) => Err(format!(
            "{name} contains a control character (U+{:04X})",
            c as u32
        )),
        None => Ok(()),
    }
}

/// Unicode format characters (general category Cf): bidi controls, zero-width spaces and
/// joiners, the BOM, invisible operators, tags. In a target they make two handles look
/// the same while differing, or one look like another.
fn is_format(c: char) -> bool {
    matches!(c as u32,
        0x00AD | 0x0600..=0x0605 | 0x061C | 0x06DD | 0x070F | 0x0890..=0x0891 | 0x08E2
        | 0x180E | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F
        | 0xFEFF | 0xFFF9..=0xFFFB | 0x110BD | 0x110CD | 0x13430..=0x1343F
        | 0x1BCA0..=0x1BCA3 | 0x1D173..=0x1D17A | 0xE0001 | 0xE0020..=0xE007F)
}

fn no_format(name: &str, value: &str) -> Result<(), String> {
    match value.chars().find(|c| is_format(*c)) {
        Some(c) => Err(format!(
            "{name} contains an invisible format character (U+{:04X}), such as a bidi control or zero-width space",
            c as u32
        )),
        None => Ok(()),
    }
}

fn time(name: &str, value: &str) -> Result<DateTime<Utc>, String> {
    let t = DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            format!("{name} {value:?} is not an RFC 3339 time (like 2026-11-24T09:00:00Z)")
        })?;
    // A time in the future would stall the lead until then.
    if t > Utc::now() + crate::store::FUTURE_SKEW {
        return Err(format!(
            "{name} {value:?} is in the future; give the time it happened"
        ));
    }
    Ok(t)
}

/// Checks one field that names an IANA time zone.
pub fn check_timezone(value: &str) -> Result<String, String> {
    value
        .parse::<chrono_tz::Tz>()
        .map(|tz| tz.name().to_string())
        .map_err(|_| {
            format!("unknown time zone {value:?} (expected an IANA name such as Europe/Berlin)")
        })
}

/// Checks a target: not empty, not over-long, no control characters.
pub fn check_target(value: &str) -> Result<String, String> {
    let value = value.trim();
    if value.is_empty() {
        return Err("target is empty".into());
    }
    if value.chars().count() > MAX_TARGET_LEN {
        return Err(format!("target is longer than {MAX_TARGET_LEN} characters"));
    }
    no_control("target", value)?;
    no_format("target", value)?;
    Ok(value.to_string())
}

fn check(raw: RawRow) -> Result<LeadInput, String> {
    let [
        target,
        own_username,
        timezone,
        profile_image,
        tags,
        state,
        last_contact,
        last_reply,
        follow_ups,
    ] = raw.fields;
    let target = check_target(target.as_deref().unwrap_or(""))?;
    if let Some(v) = &own_username {
        no_control("own_username", v)?;
        no_format("own_username", v)?;
    }
    if let Some(v) = &profile_image {
        no_control("profile_image", v)?;
    }
    let timezone = timezone.as_deref().map(check_timezone).transpose()?;
    let tags = match (raw.tag_list, tags) {
        (Some(list), _) => Some(list),
        (None, Some(text)) => Some(text.split(';').map(str::to_string).collect()),
        (None, None) => None,
    }
    .map(|list| {
        list.into_iter()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .map(|t| no_control("tags", &t).map(|()| t))
            .collect::<Result<Vec<_>, _>>()
    })
    .transpose()?;
    let last_contact_at = last_contact
        .as_deref()
        .map(|v| time("last_contact_at", v))
        .transpose()?;
    let last_reply_at = last_reply
        .as_deref()
        .map(|v| time("last_reply_at", v))
        .transpose()?;
    let follow_ups_sent = follow_ups
        .as_deref()
        .map(|v| {
            v.parse::<i32>()
                .ok()
                .filter(|n| (0..=1000).contains(n))
                .ok_or_else(|| {
                    format!("follow_ups_sent {v:?} is not a whole number from 0 to 1000")
                })
        })
        .transpose()?;
    let state = match state.as_deref() {
        None if last_contact_at.is_some() => Some(LeadState::Contacted),
        None => None,
        Some("new") => Some(LeadState::New),
        Some("contacted") => Some(LeadState::Contacted),
        Some(other) => {
            return Err(format!(
                "state {other:?} cannot be imported (expected new or contacted)"
            ));
        }
    };
    match state {
        Some(LeadState::Contacted) if last_contact_at.is_none() => {
            return Err(
                "state contacted needs last_contact_at (when the lead was contacted)".into(),
            );
        }
        Some(LeadState::New) if last_contact_at.is_some() || follow_ups_sent.unwrap_or(0) > 0 => {
            return Err(
                "state new cannot have last_contact_at or follow-ups sent: use state contacted"
                    .into(),
            );
        }
        None if follow_ups_sent.unwrap_or(0) > 0 => {
            return Err("follow_ups_sent needs state contacted and last_contact_at".into());
        }
        _ => {}
    }
    Ok(LeadInput {
        target,
        own_username,
        timezone,
        profile_image,
        tags,
        state,
        last_contact_at,
        last_reply_at,
        follow_ups_sent,
    })
}

/// Checks the fields of `leads add`, as an import row would be checked.
pub fn check_input(
    target: &str,
    own_username: Option<String>,
    timezone: Option<String>,
    profile_image: Option<String>,
    tags: Vec<String>,
) -> Result<LeadInput, String> {
    let mut raw = RawRow::default();
    raw.fields[0] = Some(target.to_string());
    raw.fields[1] = own_username.filter(|s| !s.is_empty());
    raw.fields[2] = timezone.filter(|s| !s.is_empty());
    raw.fields[3] = profile_image.filter(|s| !s.is_empty());
    raw.tag_list = (!tags.is_empty()).then_some(tags);
    check(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(pairs: &[(&str, &str)]) -> Result<LeadInput, String> {
        let mut raw = RawRow::default();
        for (k, v) in pairs {
            let col = COLUMNS.iter().position(|c| c == k).expect("known column");
            raw.fields[col] = Some(v.to_string());
        }
        check(raw)
    }

    #[test]
    fn a_full_row_becomes_a_checked_lead() {
        let lead = row(&[
            ("target", " @ana "),
            ("timezone", "America/New_York"),
            ("tags", "vip; spring ;;"),
            ("state", "contacted"),
            ("last_contact_at", "2026-11-20T10:00:00+01:00"),
            ("follow_ups_sent", "1"),
        ])
        .expect("valid");
        assert_eq!(lead.target, "@ana");
        assert_eq!(
            lead.tags,
            Some(vec!["vip".to_string(), "spring".to_string()])
        );
        assert_eq!(
            lead.last_contact_at.map(|t| t.to_rfc3339()),
            Some("2026-11-20T09:00:00+00:00".to_string())
        );
        assert_eq!(lead.follow_ups_sent, Some(1));
    }

    #[test]
    fn each_kind_of_bad_value_is_rejected_with_its_reason() {
        let long = "x".repeat(MAX_TARGET_LEN + 1);
        let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
            (vec![("target", "  ")], "target is empty"),
            (vec![("target", long.as_str())], "longer than 255"),
            (vec![("target", "@a\u{7}b")], "control character (U+0007)"),
            (
                vec![("target", "@a"), ("timezone", "Mars/Olympus")],
                "unknown time zone \"Mars/Olympus\"",
            ),
            (
                vec![("target", "@a"), ("last_reply_at", "yesterday")],
                "not an RFC 3339 time",
            ),
            (
                vec![("target", "@a"), ("state", "done")],
                "state \"done\" cannot be imported",
            ),
            (
                vec![("target", "@a"), ("state", "contacted")],
                "needs last_contact_at",
            ),
            (
                vec![("target", "@a"), ("follow_ups_sent", "-1")],
                "whole number",
            ),
            (
                vec![("target", "@a"), ("follow_ups_sent", "2")],
                "needs state contacted",
            ),
            // Issue 9: invisible characters and times in the future.
            (
                vec![("target", "@a\u{202E}nim")],
                "invisible format character (U+202E)",
            ),
            (
                vec![("target", "@ad\u{200B}min")],
                "invisible format character (U+200B)",
            ),
            (
                vec![("target", "@a"), ("own_username", "@me\u{2066}")],
                "own_username contains an invisible format character (U+2066)",
            ),
            (
                vec![("target", "@a"), ("last_reply_at", "2062-01-01T00:00:00Z")],
                "last_reply_at \"2062-01-01T00:00:00Z\" is in the future",
            ),
            (
                vec![
                    ("target", "@a"),
                    ("last_contact_at", "2099-05-01T00:00:00Z"),
                ],
                "last_contact_at \"2099-05-01T00:00:00Z\" is in the future",
            ),
        ];
        for (pairs, want) in cases {
            let err = row(&pairs).expect_err(&format!("{pairs:?} is rejected"));
            assert!(
                err.contains(want),
                "{pairs:?}: {err:?} should contain {want:?}"
            );
        }
    }

    #[test]
    fn a_jsonl_line_that_repeats_a_key_is_rejected_not_half_read() {
        let err = jsonl_row(r#"{"target": "@a", "target": "@b"}"#).err();
        assert_eq!(
            err.as_deref(),
            Some("key \"target\" appears twice; give each key once")
        );
        assert!(jsonl_row(r#"{"target": "@a", "tags": ["x"]}"#).is_ok());
        assert!(
            jsonl_row(r#"{"own_username": "x"}"#)
                .err()
                .unwrap_or_default()
                .contains("the \"target\" key is missing")
        );
        assert!(
            jsonl_row("[1]")
                .err()
                .unwrap_or_default()
                .contains("not a JSON object")
        );
    }

    #[test]
    fn last_contact_alone_means_contacted() {
        let lead = row(&[
            ("target", "@a"),
            ("last_contact_at", "2026-11-20T10:00:00Z"),
        ])
        .expect("valid");
        assert_eq!(lead.state, Some(LeadState::Contacted));
    }
}
