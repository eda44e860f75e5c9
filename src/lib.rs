//! fluidtalk-runner: runs outreach campaigns on the FluidTalk Handshake API.
//!
//! How data flows through the modules:
//! - `fluidtalk` is the API client: typed requests in, typed results or a classified
//!   `Error` out. It knows nothing of leads.
//! - `sim` is a FluidTalk-compatible HTTP server for demos, tests and benchmarks.
//! - `cli` turns the command line into calls on the modules above and prints results;
//!   `exit` holds the documented exit codes.
//!
//! `main.rs` only parses the command line, sets up tracing and calls `cli::run`.

pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod exit;
pub mod fluidtalk;
pub mod import;
pub mod lead;
pub mod plan;
pub mod policy;
pub mod runner;
pub mod schedule;
pub mod sim;
pub mod store;
