//! Reading a lead file row by row: CSV with a header row, or JSON Lines; each row handed
//! to `check` with the line it starts on.

use super::check::check;
use super::{COLUMNS, FileError, Format};
use crate::store::LeadInput;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// A row as read, before it is checked: text values, `None` where absent or empty.
#[derive(Debug, Default)]
pub(super) struct RawRow {
    pub(super) fields: [Option<String>; 9],
    /// Tags from JSONL arrive as a list already.
    pub(super) tag_list: Option<Vec<String>>,
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
