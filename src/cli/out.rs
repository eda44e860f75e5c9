//! Standard output for the commands' results. A reader that goes away (`leads list |
//! head -1`) ends the command quietly with exit 0 instead of a panic: `line` reports the
//! closed pipe as a quiet `Failure` that `main` does not print.

use crate::exit::{Exit, Failure};
use std::io::Write;

/// Prints one line (a `println!` that cannot panic).
pub fn line(text: &str) -> Result<(), Failure> {
    write(text, "\n")
}

/// Prints `text` as it is (several lines at once, say).
pub fn text(text: &str) -> Result<(), Failure> {
    write(text, "")
}

fn write(text: &str, end: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    match write!(out, "{text}{end}").and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(closed()),
        Err(e) => Err(Failure {
            exit: Exit::Failure,
            error: anyhow::Error::new(e).context("while writing to standard output"),
        }),
    }
}

/// The quiet failure of a closed standard output.
fn closed() -> Failure {
    Failure {
        exit: Exit::Success,
        error: anyhow::anyhow!("standard output was closed"),
    }
}

/// Whether `failure` is only the reader going away.
pub fn is_closed(failure: &Failure) -> bool {
    failure.exit == Exit::Success
}

/// `line` formatted, returning early from a command flow on failure.
macro_rules! outln {
    () => { $crate::cli::out::line("")? };
    ($($arg:tt)*) => { $crate::cli::out::line(&format!($($arg)*))? };
}

/// `-q`: no progress bars (set once, at start).
static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Records `-q` for the rest of the command.
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, std::sync::atomic::Ordering::Relaxed);
}

/// Whether a progress bar is shown: on a terminal, and not asked for quiet (`-q`).
pub fn progress_shown() -> bool {
    use std::io::IsTerminal;
    !QUIET.load(std::sync::atomic::Ordering::Relaxed) && std::io::stderr().is_terminal()
}
