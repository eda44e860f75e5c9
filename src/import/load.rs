//! Loading a lead file into the store: rows checked as they stream, good ones upserted in
//! batches of `BATCH` rows (a handful of statements each), rejections reported with their
//! line. With `strict`, the whole file is checked first without touching the database,
//! then written in one transaction, so one bad row keeps nothing.

use super::{FileError, Rejection, Rows};
use crate::store::{AdminStore, ImportCounts, ImportSession, StoreError};
use chrono::{DateTime, Utc};
use std::io::Read;
use std::path::Path;

/// Rows per upsert batch.
pub const BATCH: usize = 1000;
/// Rejections kept in the report (all are passed to `Load::rejected` as they are found).
pub const REJECTIONS_KEPT: usize = 1000;

/// What a load did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Loaded {
    #[serde(flatten)]
    pub counts: ImportCounts,
    pub rejected: u64,
    /// Whether the rows written were kept (false: `strict` and a row was rejected).
    pub kept: bool,
    pub rejections: Vec<Rejection>,
}

/// Why a load stopped; with what it had done by then, if anything.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the caller sees of a load as it goes (a progress bar, say).
pub trait Load {
    /// Wraps the file for reading (to count bytes read).
    fn wrap(&self, file: std::fs::File) -> Box<dyn Read + Send> {
        Box::new(file)
    }
    /// A row was rejected.
    fn rejected(&self, _line: u64, _reason: &str) {}
    /// A batch was written; the counts so far.
    fn written(&self, _so_far: ImportCounts) {}
    /// A pass over the file begins (`writing`: false for `strict`'s checking pass).
    fn pass(&self, _writing: bool) {}
}

/// Loads `path` into `store`. A file that cannot be read at all is an error with nothing
/// loaded; one that stops being readable half-way keeps what was written (not with
/// `strict`), and the error says how far it got.
pub async fn load_file(
    store: &dyn AdminStore,
    path: &Path,
    strict: bool,
    now: DateTime<Utc>,
    seen: &dyn Load,
) -> Result<Loaded, (Option<Loaded>, LoadError)> {
    if strict {
        // Check the whole file before writing anything, so no lock is held while reading
        // and a rejected file leaves the database as it was.
        seen.pass(false);
        let checked = pass(path, None, now, seen).await?;
        if checked.rejected > 0 {
            return Ok(Loaded {
                kept: false,
                ..checked
            });
        }
    }
    let mut session = store
        .begin_import(strict)
        .await
        .map_err(|e| (None, e.into()))?;
    seen.pass(true);
    match pass(path, Some(&mut session), now, seen).await {
        Ok(done) => {
            session.finish(true).await.map_err(|e| (None, e.into()))?;
            Ok(Loaded { kept: true, ..done })
        }
        Err((partial, e)) => {
            // Not strict: the batches written stay, and the report says how far it got.
            let _ = session.finish(!strict).await;
            Err((
                partial
                    .filter(|_| !strict)
                    .map(|p| Loaded { kept: true, ..p }),
                e,
            ))
        }
    }
}

/// Reads `path` once, checking every row; with a `session`, writes the good rows in
/// batches. A read failure of the file itself ends the pass after the rows read so far
/// are written.
async fn pass(
    path: &Path,
    mut session: Option<&mut Box<dyn ImportSession>>,
    now: DateTime<Utc>,
    seen: &dyn Load,
) -> Result<Loaded, (Option<Loaded>, LoadError)> {
    let mut result = Loaded::default();
    let mut rows = Rows::open(path, |f| seen.wrap(f)).map_err(|e| (None, e.into()))?;
    let mut batch = Vec::with_capacity(BATCH);
    let mut file_error = None;
    loop {
        let (line, row) = match rows.next_row() {
            Ok(Some(row)) => row,
            Ok(None) => break,
            Err(e) => {
                file_error = Some(e);
                break;
            }
        };
        match row {
            Ok(input) if session.is_some() => batch.push(input),
            Ok(_) => {}
            Err(why) => {
                let reason = why.to_string();
                result.rejected += 1;
                seen.rejected(line, &reason);
                if result.rejections.len() < REJECTIONS_KEPT {
                    result.rejections.push(Rejection { line, reason });
                }
            }
        }
        let last = file_error.is_some();
        if (batch.len() >= BATCH || last) && !batch.is_empty() {
            write(&mut session, &mut batch, now, &mut result, seen).await?;
        }
    }
    if !batch.is_empty() {
        write(&mut session, &mut batch, now, &mut result, seen).await?;
    }
    match file_error {
        Some(e) => Err((Some(result), e.into())),
        None => Ok(result),
    }
}

async fn write(
    session: &mut Option<&mut Box<dyn ImportSession>>,
    batch: &mut Vec<crate::store::LeadInput>,
    now: DateTime<Utc>,
    result: &mut Loaded,
    seen: &dyn Load,
) -> Result<(), (Option<Loaded>, LoadError)> {
    if let Some(s) = session.as_mut() {
        match s.upsert(std::mem::take(batch), now).await {
            Ok(c) => result.counts += c,
            Err(e) => return Err((Some(result.clone()), e.into())),
        }
        seen.written(result.counts);
    }
    Ok(())
}
