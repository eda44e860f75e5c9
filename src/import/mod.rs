//! Reading lead files: CSV with a header row, or JSON Lines, streamed row by row.
//!
//! Each row becomes a checked `LeadInput` or a rejection that names its line and what
//! was expected; the caller decides what to keep. Problems with the file as a whole
//! (unreadable, unknown format, a header without `target` or with an unknown column) are
//! `FileError`s, and nothing is imported.

mod check;
mod load;
mod rows;

pub use check::{RowError, check_input, check_target, check_timezone};
pub use load::{Load, LoadError, Loaded, load_file};
pub use rows::{Row, Rows};

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
