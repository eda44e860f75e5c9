//! Reading a lead file row by row: CSV with a header row, or JSON Lines; each row handed
//! to `check` with the line it starts on.
//!
//! A row is held in memory only up to `lead::fields::ROW_BYTES`: a longer CSV record or
//! JSON line is read on to its end without being kept, and rejected naming the field it
//! went over in (a 200 MB `profile_image` costs a buffer, not 200 MB). CSV is parsed with
//! `csv_core` (RFC 4180 quoting, `\n` ends a record), which hands a record over in pieces
//! of the caller's buffer, so the bound is the buffer's size.

use super::check::{RawRow, RowError, check};
use super::{COLUMNS, FileError, Format};
use crate::lead::fields::{self, FieldError, ROW_BYTES, shown};
use crate::store::LeadInput;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// A row's line and either the checked lead or why it was rejected.
pub type Row = (u64, Result<LeadInput, RowError>);

/// Rows of a lead file, in order, each with the line it starts on.
pub struct Rows {
    inner: RowsInner,
    path: PathBuf,
}

enum RowsInner {
    Csv {
        records: CsvRecords,
        columns: Vec<usize>,
    },
    Jsonl {
        reader: BufReader<Box<dyn Read + Send>>,
        buf: Vec<u8>,
        line: u64,
    },
}

/// One CSV record as read: its fields, or why it could not be kept.
enum Record {
    /// Its fields, UTF-8 each, are `CsvRecords::fields` until the next record is read.
    Fields,
    /// Over `ROW_BYTES`: read to its end and dropped; the field (by position) being read
    /// when it went over.
    TooLong { field: usize },
    /// The field (by position) is not UTF-8.
    NotUtf8 { field: usize },
}

/// CSV records from a reader, each held up to `ROW_BYTES`.
struct CsvRecords {
    reader: BufReader<Box<dyn Read + Send>>,
    /// Boxed: its DFA tables are most of a kilobyte.
    core: Box<csv_core::Reader>,
    /// The record's bytes (at most `ROW_BYTES`) and where each field ends in them.
    out: Vec<u8>,
    ends: Vec<usize>,
    /// Where the rest of a record over `ROW_BYTES` is parsed to and dropped; allocated
    /// once, not zeroed per record.
    skip: Box<([u8; 4096], [usize; 64])>,
    /// Fields of the last record read (`Record::Fields`).
    fields: usize,
    done: bool,
}

impl CsvRecords {
    fn new(reader: Box<dyn Read + Send>) -> Self {
        CsvRecords {
            reader: BufReader::with_capacity(64 * 1024, reader),
            // `\n` alone ends a record: the `\r` left at the end of a CRLF line's last
            // field is trimmed like any other surrounding white space.
            core: Box::new(
                csv_core::ReaderBuilder::new()
                    .terminator(csv_core::Terminator::Any(b'\n'))
                    .build(),
            ),
            out: vec![0; 4096],
            ends: vec![0; 16],
            skip: Box::new(([0; 4096], [0; 64])),
            fields: 0,
            done: false,
        }
    }

    /// The next record and the line it starts on; `None` at the end of the file.
    fn next(&mut self) -> std::io::Result<Option<(u64, Record)>> {
        use csv_core::ReadRecordResult as R;
        if self.done {
            return Ok(None);
        }
        let line = self.core.line();
        let (mut outlen, mut endlen) = (0, 0);
        // Set once the record is over `ROW_BYTES`: the rest is parsed into `skip` and
        // dropped, so the record's end is found as the parser sees it (quotes included).
        let mut over: Option<usize> = None;
        loop {
            let input = self.reader.fill_buf()?;
            let (res, nin, nout, nend) = match over {
                Some(_) => {
                    let (out, ends) = &mut *self.skip;
                    self.core.read_record(input, out, ends)
                }
                None => {
                    self.core
                        .read_record(input, &mut self.out[outlen..], &mut self.ends[endlen..])
                }
            };
            self.reader.consume(nin);
            if over.is_none() {
                outlen += nout;
                endlen += nend;
            }
            match res {
                R::InputEmpty => continue,
                R::OutputFull if over.is_none() => {
                    if self.out.len() >= ROW_BYTES {
                        over = Some(endlen);
                    } else {
                        let grown = (self.out.len() * 2).min(ROW_BYTES);
                        self.out.resize(grown, 0);
                    }
                }
                R::OutputEndsFull if over.is_none() => {
                    // A field ends at most once per byte: bounded by the row's bytes.
                    let grown = self.ends.len() * 2;
                    self.ends.resize(grown, 0);
                }
                R::OutputFull | R::OutputEndsFull => {}
                R::Record => {
                    if let Some(field) = over {
                        return Ok(Some((line, Record::TooLong { field })));
                    }
                    let mut start = 0;
                    for (i, &end) in self.ends[..endlen].iter().enumerate() {
                        if std::str::from_utf8(&self.out[start..end]).is_err() {
                            return Ok(Some((line, Record::NotUtf8 { field: i })));
                        }
                        start = end;
                    }
                    self.fields = endlen;
                    return Ok(Some((line, Record::Fields)));
                }
                R::End => {
                    self.done = true;
                    return Ok(None);
                }
            }
        }
    }
}

impl CsvRecords {
    /// The fields of the last `Record::Fields` read, borrowed from the buffer.
    fn fields(&self) -> impl ExactSizeIterator<Item = &str> {
        let ends = &self.ends[..self.fields];
        ends.iter().enumerate().map(move |(i, &end)| {
            let start = if i == 0 { 0 } else { ends[i - 1] };
            // Checked as UTF-8 when the record was read.
            std::str::from_utf8(&self.out[start..end]).unwrap_or_default()
        })
    }
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
        let io = |cause| FileError::Io {
            path: path.to_path_buf(),
            cause,
        };
        let inner = match format {
            Format::Csv => {
                let mut records = CsvRecords::new(reader);
                let header = match records.next().map_err(io)? {
                    None => Vec::new(),
                    Some((_, Record::Fields)) => records.fields().map(str::to_string).collect(),
                    Some((line, Record::TooLong { .. })) => {
                        return Err(FileError::Header {
                            path: path.to_path_buf(),
                            line,
                            why: format!("the header row is over {ROW_BYTES} bytes"),
                        });
                    }
                    Some((line, Record::NotUtf8 { .. })) => {
                        return Err(FileError::Header {
                            path: path.to_path_buf(),
                            line,
                            why: "the header row is not valid UTF-8".into(),
                        });
                    }
                };
                let columns = header_columns(path, &header)?;
                RowsInner::Csv { records, columns }
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
        let io = |path: &Path, cause| FileError::Io {
            path: path.to_path_buf(),
            cause,
        };
        match &mut self.inner {
            RowsInner::Csv { records, columns } => loop {
                let Some((line, record)) = records.next().map_err(|e| io(&self.path, e))? else {
                    return Ok(None);
                };
                let column = |i: usize| {
                    columns
                        .get(i)
                        .map_or_else(|| format!("field {}", i + 1), |&c| COLUMNS[c].to_string())
                };
                match record {
                    Record::Fields => {}
                    Record::TooLong { field } => {
                        return Ok(Some((line, Err(unread(column(field))))));
                    }
                    Record::NotUtf8 { field } => {
                        let column = column(field);
                        return Ok(Some((line, Err(RowError::FieldNotUtf8 { column }))));
                    }
                }
                let mut record = records.fields();
                let found = record.len();
                // A blank line (only its `\r`, or spaces) is no row at all.
                if found == 1 && records.fields().all(|f| f.trim().is_empty()) {
                    continue;
                }
                if found != columns.len() {
                    return Ok(Some((
                        line,
                        Err(RowError::FieldCount {
                            expected: columns.len(),
                            found,
                        }),
                    )));
                }
                let mut raw = RawRow::default();
                for (value, &col) in record.by_ref().zip(columns.iter()) {
                    let value = value.trim();
                    if !value.is_empty() {
                        raw.fields[col] = Some(value.to_string());
                    }
                }
                return Ok(Some((line, check(raw))));
            },
            RowsInner::Jsonl { reader, buf, line } => loop {
                buf.clear();
                let whole = read_line(reader, buf).map_err(|e| io(&self.path, e))?;
                if buf.is_empty() && whole == Some(0) {
                    return Ok(None);
                }
                *line += 1;
                if whole.is_none() {
                    let key = key_at_end(buf).unwrap_or_else(|| "the line".into());
                    return Ok(Some((*line, Err(unread(key)))));
                }
                // Bytes that are not UTF-8 reject their line, not the file.
                let Ok(text) = std::str::from_utf8(buf) else {
                    return Ok(Some((*line, Err(RowError::LineNotUtf8))));
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

/// The rejection of a row too long to read: the field it went over in, and its limit.
fn unread(field: String) -> RowError {
    let limit = fields::limit_of(&field);
    RowError::Field(FieldError::Unread {
        field,
        bytes: ROW_BYTES,
        limit,
    })
}

/// Reads one line (to `\n` or the end of the file) into `buf`, keeping at most
/// `ROW_BYTES`: `Some(bytes read)`, or `None` when the line was longer (its start is in
/// `buf`, the rest was read and dropped).
fn read_line(reader: &mut impl BufRead, buf: &mut Vec<u8>) -> std::io::Result<Option<usize>> {
    let mut total = 0;
    let mut over = false;
    loop {
        let input = reader.fill_buf()?;
        if input.is_empty() {
            return Ok((!over).then_some(total));
        }
        let (chunk, ends) = match input.iter().position(|b| *b == b'\n') {
            Some(i) => (&input[..=i], true),
            None => (input, false),
        };
        let n = chunk.len();
        if !over {
            let room = ROW_BYTES.saturating_sub(buf.len());
            buf.extend_from_slice(&chunk[..n.min(room)]);
            over = n > room;
        }
        total += n;
        reader.consume(n);
        if ends {
            return Ok((!over).then_some(total));
        }
    }
}

/// The key whose value a JSON object's text was in when it was cut off: what a JSON line
/// too long to read is rejected for. Follows strings and nesting; `None` if the cut is
/// not inside a top-level key's value.
fn key_at_end(text: &[u8]) -> Option<String> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut string_start = 0;
    let mut last_string: Option<(usize, usize)> = None;
    let mut key: Option<(usize, usize)> = None;
    for (i, &b) in text.iter().enumerate() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => {
                    in_string = false;
                    last_string = Some((string_start, i));
                }
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => {
                in_string = true;
                string_start = i + 1;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth = depth.saturating_sub(1),
            b':' if depth == 1 => key = last_string,
            b',' if depth == 1 => key = None,
            _ => {}
        }
    }
    let (start, end) = key?;
    let name = String::from_utf8_lossy(&text[start..end]).into_owned();
    Some(if COLUMNS.contains(&name.as_str()) {
        name
    } else {
        format!("key {}", shown(&name))
    })
}

/// Maps header cells to column indexes, refusing unknown, repeated or missing columns.
fn header_columns(path: &Path, header: &[String]) -> Result<Vec<usize>, FileError> {
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
                "unknown column {} (expected: {})",
                shown(&name),
                COLUMNS.join(", ")
            )));
        };
        if columns.contains(&col) {
            return Err(bad(format!("column {} appears twice", shown(&name))));
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

fn jsonl_row(text: &str) -> Result<RawRow, RowError> {
    let Entries(entries) =
        serde_json::from_str(text).map_err(|e| RowError::NotAnObject(e.to_string()))?;
    for (i, (key, _)) in entries.iter().enumerate() {
        if entries[..i].iter().any(|(k, _)| k == key) {
            return Err(RowError::KeyTwice(key.clone()));
        }
    }
    if !entries.iter().any(|(k, _)| k == "target") {
        return Err(RowError::NoTarget);
    }
    let mut raw = RawRow::default();
    for (key, value) in entries {
        let Some(col) = COLUMNS.iter().position(|c| *c == key) else {
            return Err(RowError::UnknownKey(key));
        };
        match (key.as_str(), value) {
            (_, Value::Null) => {}
            ("tags", Value::Array(items)) => {
                let tags = items
                    .into_iter()
                    .map(|t| match t {
                        Value::String(s) => Ok(s),
                        _ => Err(RowError::TagsNotStrings),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                raw.tag_list = Some(tags);
            }
            ("tags", _) => return Err(RowError::TagsNotStrings),
            ("follow_ups_sent", Value::Number(n)) => raw.fields[col] = Some(n.to_string()),
            (_, Value::String(s)) => {
                let s = s.trim();
                if !s.is_empty() {
                    raw.fields[col] = Some(s.to_string());
                }
            }
            (key, other) => {
                return Err(RowError::NotAString {
                    key: key.to_string(),
                    value: other.to_string(),
                });
            }
        }
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jsonl_line_that_repeats_a_key_is_rejected_not_half_read() {
        let err = jsonl_row(r#"{"target": "@a", "target": "@b"}"#)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("key \"target\" appears twice; give each key once")
        );
        assert!(jsonl_row(r#"{"target": "@a", "tags": ["x"]}"#).is_ok());
        assert!(
            jsonl_row(r#"{"own_username": "x"}"#)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
                .contains("the \"target\" key is missing")
        );
        assert!(
            jsonl_row("[1]")
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
                .contains("not a JSON object")
        );
    }
}
