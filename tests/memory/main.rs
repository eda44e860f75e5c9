//! Tests that measure the peak memory of an import process, in a test binary of their own:
//! Linux counts in a child's peak RSS (`ru_maxrss`, from `wait4` or `RUSAGE_CHILDREN`) the
//! memory of the process it was started from, as it was when the child started (the copy
//! it replaced at `exec`). Started from this small binary, that is a few MiB, below what is
//! measured; started from the integration tests' binary, with hundreds of tests' memory,
//! it was 85 MiB and hid the import's own figure.

#[path = "../common/mod.rs"]
mod common;

mod import_huge_rows;
mod import_memory;
