//! The process exit codes, documented in docs/operations.md ("Exit codes"), and the failure that carries one.
//!
//! Flows in `cli` return `Result<(), Failure>`: the error is printed once, with its context
//! chain, by `main`, and the code tells a calling script what kind of failure it was.

use std::fmt;

/// Exit codes. Stable: scripts depend on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// Everything asked for was done.
    Success = 0,
    /// An unexpected failure (a bug, or the machine: disk, permissions).
    Failure = 1,
    /// The command line is wrong (clap's own code).
    Usage = 2,
    /// A setting or input is wrong: missing API key, bad JSON argument, unreadable file.
    Config = 3,
    /// The API answered with an error, or could not be reached.
    Api = 4,
    /// The API refused the key (401/403): nothing can succeed until it is fixed.
    Unauthorized = 5,
    /// The lead database could not be opened, migrated or used.
    Database = 6,
    /// Stopped by SIGTERM or Ctrl-C before the work was done. Every answer received was
    /// recorded; leads not reached were given back and stay due.
    Stopped = 7,
    /// The SQLite database file was deleted, replaced or moved while the process had it
    /// open: it stopped calling at once (what it wrote from then on would be lost).
    DatabaseMoved = 8,
}

impl Exit {
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// An error with the exit code it should end the process with.
pub struct Failure {
    pub exit: Exit,
    pub error: anyhow::Error,
}

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} ({:#})", self.exit, self.error)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.error)
    }
}

/// Attaches an exit code to any error.
pub trait ExitWith<T> {
    fn exit_with(self, exit: Exit) -> Result<T, Failure>;
}

impl<T, E: Into<anyhow::Error>> ExitWith<T> for Result<T, E> {
    fn exit_with(self, exit: Exit) -> Result<T, Failure> {
        self.map_err(|e| Failure {
            exit,
            error: e.into(),
        })
    }
}
