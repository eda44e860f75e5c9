//! The integration tests, as one binary: each file of this folder is a module, and
//! `common` (in `tests/common/`) is compiled once for all of them. The soak has two binaries
//! of its own (`tests/soak_sqlite.rs`, `tests/soak_postgres.rs`): each reads its own
//! process's resident memory (VmRSS) day by day against a bound, which would count every
//! other test running beside it here, and the other backend's soak in a shared binary.
//! Tests that measure a child's memory read that one child's peak (`wait4`), so they live
//! here.

#[path = "../common/mod.rs"]
mod common;

mod browser;
mod chaos;
mod cli_api;
mod cli_check;
mod cli_leads;
mod cli_run;
mod client_errors;
mod client_wire;
mod completions_and_man;
mod config_defaults;
mod daemon;
mod dashboard;
mod dashboard_forecast;
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
mod import_huge_rows;
mod import_memory;
mod log_format;
mod multi_runner;
mod planner_model;
mod python_crosscheck;
mod query_plans;
mod reliability;
mod retention;
mod runner;
mod runner_faults;
mod secret;
mod service_end_to_end;
mod sim;
mod storage_faults;
mod store_conformance;
mod store_never_twice;
mod store_upgrade;
mod stuck_leads;
mod systemd_unit;
