//! The integration tests, as one binary: each file of this folder is a module, and
//! `common` (in `tests/common/`) is compiled once for all of them. Two other test binaries
//! hold what cannot run here: `tests/soak/` (weeks of the daemon, checking this process's
//! VmRSS, which would count every test running beside it) and `tests/memory/` (peak memory
//! of an import process: Linux counts in a child's peak the memory of the process that
//! started it, and this binary's is large).

#[path = "../common/mod.rs"]
mod common;

mod browser;
mod calendars;
mod chaos;
mod cli_api;
mod cli_check;
mod cli_init;
mod cli_leads;
mod cli_outbox;
mod cli_run;
mod client_errors;
mod client_wire;
mod completions_and_man;
mod config_defaults;
mod daemon;
mod dashboard;
mod dashboard_forecast;
mod dashboard_leads;
mod delivery;
mod delivery_daemon;
mod delivery_store;
mod field_limits;
mod forecast;
mod forecast_assumptions;
mod forecast_guest;
mod fuzz_corpus;
mod hardening;
mod http_api;
mod http_attack;
mod http_daemon;
mod http_inbound;
mod job_pause;
mod log_format;
mod multi_runner;
mod planner_model;
mod python_crosscheck;
mod query_plans;
mod readme;
mod regressions24;
mod reliability;
mod reply_rates;
mod retention;
mod runner;
mod runner_faults;
mod secret;
mod segments;
mod senders;
mod service_end_to_end;
mod sim;
mod storage_faults;
mod store_conformance;
mod store_never_twice;
mod store_upgrade;
mod stuck_leads;
mod suppressions;
mod systemd_unit;
mod terminal;
mod why;
