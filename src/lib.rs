//! fluidtalk-runner: runs outreach campaigns on the FluidTalk Handshake API.
//!
//! Where each behaviour lives, in the order data flows:
//! - `config`: `jobs.toml`, parsed once into typed values that check themselves (`fields`),
//!   then across values (`file`); an error's line and key (`locate`).
//! - `schedule`: cron schedules in a job's time zone, DST-correct next fire times.
//! - `import`: lead files (CSV, JSONL), row by row, each a checked lead or a located rejection.
//! - `store`: the lead database: one SQL store (`sql/`), a SQLite and a PostgreSQL `dialect`;
//!   `RunnerStore` for the runner, `AdminStore` for commands; every SQL statement is here.
//! - `lead`: lead states and the lifecycle's transitions, a pure function.
//! - `plan`: which leads are due for a job at a time, and why (dry and live runs alike).
//! - `fluidtalk`: the API client: typed requests in, typed results or a classified error out.
//! - `policy`: what each API answer means for the attempt, the lead and the account.
//! - `runner`: works a job: claims, records in flight, calls, judges the answers, recovers.
//! - `daemon`: every job on its schedule, one runner per tick.
//! - `forecast`: the days ahead, the real daemon and runner run in virtual time over a
//!   copy of the leads, against the simulator.
//! - `retention`: old rows pruned (`[retention]`), hourly by the daemon, by hand with
//!   `prune`.
//! - `delivery`: the outbox POSTed to a webhook, signed, retried, in order per target.
//! - `metrics`: Prometheus counters, histograms and gauges (rendered at `/metrics`).
//! - `clock`: injected time, and time arithmetic that cannot overflow.
//! - `strength`: how hard to guess a shared secret must be (the runner's token, the
//!   webhook's secret).
//! - `status`: the campaign at a glance (`status`, `GET /v1/status`).
//! - `rates`: reply rates per job, step and sender, with Wilson intervals.
//! - `http`: the runner as an HTTP service: the JSON API, the inbound relay, health, metrics.
//! - `sim`: a FluidTalk-compatible server for demos, tests and benchmarks.
//! - `fuzzing`: the fuzz targets' bodies, also replayed in `cargo test`.
//! - `cli` and `exit`: the command line (thin: parse, call the library, print) and its exit
//!   codes. `main.rs` only parses the command line, sets up tracing (`logs`: the filter and
//!   the text or JSON line format) and calls `cli::run`.

pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod delivery;
pub mod exit;
pub mod fluidtalk;
pub mod forecast;
pub mod fuzzing;
pub mod http;
pub mod import;
pub mod job_pause;
pub mod lead;
pub mod logs;
pub mod metrics;
pub mod plan;
pub mod policy;
pub mod rates;
pub mod retention;
pub mod runner;
pub mod schedule;
pub mod senders;
pub mod service;
pub mod sim;
pub mod status;
pub mod store;
pub mod strength;
pub mod why;
