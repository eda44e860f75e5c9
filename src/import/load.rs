//! Loading a lead file into the store: rows checked as they stream, on a reader thread a
//! batch ahead of the writer, good ones upserted in batches of `BATCH` rows (one statement
//! for new leads, a second for existing ones), rejections reported with their line. With `strict`, the whole file is checked first without touching the database,
//! then written in one transaction, so one bad row keeps nothing.

use super::{FileError, Rejection, Rows};
use crate::store::{AdminStore, ImportCounts, ImportSession, LeadInput, StoreError};
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
    /// More rows were read and checked (this many, good and rejected), in this pass.
    fn read(&self, _rows: u64) {}
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

/// What the reader hands the writer: checked rows (at most `BATCH`, or `BATCH_BYTES` of
/// text) and the rejections found among them, in file order.
#[derive(Default)]
struct Piece {
    rows: Vec<LeadInput>,
    rejections: Vec<Rejection>,
    /// The file stopped being readable after these rows.
    failed: Option<FileError>,
    /// Rows read into this piece, good and rejected (also when good rows are not kept).
    read: u64,
    /// The last piece: the file was read to its end or `failed`. A channel closed without
    /// it means the reader itself stopped (a panic), which is not the end of the file.
    last: bool,
}

/// Text bytes of rows in one piece, at most: with rows near `ROW_BYTES` a piece holds
/// fewer than `BATCH`, so the pieces in flight stay small whatever the rows.
pub const BATCH_BYTES: usize = 4 * 1024 * 1024;
/// Pieces waiting for the writer: the reader parses the next one while the last is
/// written, and waits when it is this far ahead. In memory at most: this many, the one
/// being read, and the one being written.
const PIECES_AHEAD: usize = 1;

/// Reads `path` once, checking every row; with a `session`, writes the good rows in
/// batches. A read failure of the file itself ends the pass after the rows read so far
/// are written. The file is read and checked on a thread of its own, a piece ahead of
/// the writer (`PIECES_AHEAD`), so reading and writing overlap.
async fn pass(
    path: &Path,
    mut session: Option<&mut Box<dyn ImportSession>>,
    now: DateTime<Utc>,
    seen: &dyn Load,
) -> Result<Loaded, (Option<Loaded>, LoadError)> {
    let mut result = Loaded::default();
    let rows = Rows::open(path, |f| seen.wrap(f)).map_err(|e| (None, e.into()))?;
    let keep = session.is_some();
    let (tx, mut rx) = tokio::sync::mpsc::channel(PIECES_AHEAD);
    // A thread, not `spawn_blocking`: a runtime shutting down waits for its blocking
    // tasks, and a reader stuck on a slow file must not hold up an exit. It ends on its
    // own at the end of the file, or when its next piece has no one to take it.
    std::thread::Builder::new()
        .name("import-reader".into())
        .spawn(move || read(rows, keep, &tx))
        .map_err(|cause| {
            let e = FileError::Io {
                path: path.to_path_buf(),
                cause,
            };
            (None, e.into())
        })?;
    let mut file_error = None;
    let mut ended = false;
    while let Some(piece) = rx.recv().await {
        let Piece {
            mut rows,
            rejections,
            failed,
            last,
            read,
        } = piece;
        seen.read(read);
        for rejection in rejections {
            result.rejected += 1;
            seen.rejected(rejection.line, &rejection.reason);
            if result.rejections.len() < REJECTIONS_KEPT {
                result.rejections.push(rejection);
            }
        }
        if !rows.is_empty() {
            write(&mut session, &mut rows, now, &mut result, seen).await?;
        }
        file_error = failed;
        ended = last;
    }
    if !ended {
        let cause = std::io::Error::other("the file's reader stopped before its end");
        let e = FileError::Io {
            path: path.to_path_buf(),
            cause,
        };
        return Err((Some(result), e.into()));
    }
    match file_error {
        Some(e) => Err((Some(result), e.into())),
        None => Ok(result),
    }
}

/// The reader's side of `pass`: rows checked and sent in pieces; rows kept only if
/// `keep` (else only rejections are sent). Returns when the file ends or fails, or when
/// the writer is gone.
fn read(mut rows: Rows, keep: bool, tx: &tokio::sync::mpsc::Sender<Piece>) {
    let mut piece = Piece::default();
    let mut bytes = 0;
    loop {
        let next = rows.next_row();
        if matches!(next, Ok(Some(_))) {
            piece.read += 1;
        }
        match next {
            Ok(Some((_, Ok(input)))) if keep => {
                bytes += text_bytes(&input);
                piece.rows.push(input);
            }
            Ok(Some((_, Ok(_)))) => {}
            Ok(Some((line, Err(why)))) => piece.rejections.push(Rejection {
                line,
                reason: why.to_string(),
            }),
            Ok(None) => break,
            Err(e) => {
                piece.failed = Some(e);
                break;
            }
        }
        if piece.read >= BATCH as u64 || bytes >= BATCH_BYTES {
            if tx.blocking_send(std::mem::take(&mut piece)).is_err() {
                return;
            }
            bytes = 0;
        }
    }
    piece.last = true;
    let _ = tx.blocking_send(piece);
}

/// A row's text, about what it holds in memory.
fn text_bytes(row: &LeadInput) -> usize {
    let len = |s: &Option<String>| s.as_ref().map_or(0, String::len);
    row.target.len()
        + len(&row.own_username)
        + len(&row.timezone)
        + len(&row.profile_image)
        + row
            .tags
            .as_ref()
            .map_or(0, |t| t.iter().map(|t| t.len() + 24).sum())
}

async fn write(
    session: &mut Option<&mut Box<dyn ImportSession>>,
    batch: &mut Vec<LeadInput>,
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
