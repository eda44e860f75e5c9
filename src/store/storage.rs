//! The storage under the store: is it still the campaign's database, and would a write
//! succeed now? Written by hand per backend (`sqlite.rs`, `postgres.rs`): a SQLite file
//! has an identity and a file system, a PostgreSQL server a read-only mode.

use super::StoreError;
use async_trait::async_trait;

/// Checks of the storage itself, for the runner (before each group of calls), the daemon
/// (each heartbeat), `status` and `/readyz`.
#[async_trait]
pub trait Storage: Send + Sync {
    /// `Err(StoreError::Moved)` if the database file was deleted, replaced or moved since
    /// this store opened it: what the process writes from now on would be lost, or would
    /// go to some other file. Cheap (one `stat`); always `Ok` on PostgreSQL.
    fn check_file(&self) -> Result<(), StoreError>;

    /// Why a write would fail now, if it would, without writing: the file system full or
    /// read-only, the file not writable, the server a standby or set read-only.
    async fn write_problem(&self) -> Option<String>;
}

/// A file system with less room than this takes no more writes in practice: SQLite's
/// write-ahead log grows by whole pages, a checkpoint needs room in the main file.
pub const MIN_FREE_BYTES: u64 = 1024 * 1024;

/// The identity of an open SQLite file: its path and the device and inode it had then.
#[derive(Debug, Clone)]
pub struct FileIdentity {
    pub path: std::path::PathBuf,
    dev: u64,
    ino: u64,
}

impl FileIdentity {
    /// The identity of the file at `path` now.
    pub fn of(path: &std::path::Path) -> std::io::Result<FileIdentity> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path)?;
        let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        Ok(FileIdentity {
            path,
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }

    /// `Err(Moved)` unless the file at the path is still the one opened.
    pub fn check(&self) -> Result<(), StoreError> {
        use std::os::unix::fs::MetadataExt;
        let moved = |what| StoreError::Moved {
            path: self.path.display().to_string(),
            what,
        };
        match std::fs::metadata(&self.path) {
            Ok(meta) if meta.dev() == self.dev && meta.ino() == self.ino => Ok(()),
            Ok(_) => Err(moved("replaced by another file")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(moved("deleted or moved")),
            // Unreadable for a moment (permissions being changed, say): not a verdict.
            Err(_) => Ok(()),
        }
    }

    /// Why SQLite could not write to this file now, if it could not: the file or its
    /// folder (the write-ahead log lives there) not writable, the file system read-only or
    /// nearly full.
    pub fn write_problem(&self) -> Option<String> {
        if let Err(e) = self.check() {
            return Some(e.to_string());
        }
        let dir = self
            .path
            .parent()
            .unwrap_or_else(|| std::path::Path::new("."));
        for p in [self.path.as_path(), dir] {
            if let Some(why) = not_writable(p) {
                return Some(format!("{} is not writable: {why}", p.display()));
            }
        }
        match free_bytes(dir) {
            Ok(free) if free < MIN_FREE_BYTES => Some(format!(
                "the file system holding {} is full ({} KiB free)",
                self.path.display(),
                free / 1024
            )),
            _ => None,
        }
    }
}

fn c_path(p: &std::path::Path) -> Option<std::ffi::CString> {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(p.as_os_str().as_bytes()).ok()
}

/// `access(W_OK)`: `Some(why)` if this process may not write `p` (a read-only mount says
/// so here too).
fn not_writable(p: &std::path::Path) -> Option<String> {
    let c = c_path(p)?;
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    let r = unsafe { libc::access(c.as_ptr(), libc::W_OK) };
    (r != 0).then(|| std::io::Error::last_os_error().to_string())
}

/// The bytes an unprivileged process may still write on the file system holding `dir`.
fn free_bytes(dir: &std::path::Path) -> std::io::Result<u64> {
    let c = c_path(dir).ok_or_else(|| std::io::Error::other("a path with NUL"))?;
    // SAFETY: `statvfs` only writes into `out`, which is zeroed and sized for it.
    let mut out: libc::statvfs = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::statvfs(c.as_ptr(), &mut out) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // The field types differ between platforms (u32 on some 32-bit ones).
    #[allow(clippy::useless_conversion)]
    let free = u64::from(out.f_bavail).saturating_mul(u64::from(out.f_frsize));
    Ok(free)
}
