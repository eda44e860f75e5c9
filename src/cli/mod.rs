//! The command line: clap definitions and one flow per command. Thin: each flow turns
//! arguments into the library's typed values, calls the library, and prints.

#[macro_use]
pub mod out;
mod api;
mod check;
mod common;
mod completions;
mod daemon;
mod demo;
mod forecast;
mod init;
mod job;
mod leads;
mod leads_export;
mod leads_list;
mod man;
mod outbox;
mod pause;
mod prune;
mod run;
mod signals;
mod sim;
mod status;
mod store_access;
mod suppress;
mod targets;

use crate::config::{CONFIG_ENV, ConfigPath};
use crate::exit::{ExitWith, Failure};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "fluidtalk-runner",
    version,
    about = "Runs outreach campaigns on the FluidTalk Handshake API",
    long_about = "Runs outreach campaigns on the FluidTalk Handshake API.\n\n\
                  The API key is read from FLUIDTALK_API_KEY and never printed or stored.",
    after_help = "Exit codes: 0 ok, 1 unexpected failure, 2 usage, 3 bad setting or input, \
                  4 API error or unreachable, 5 API key refused (401/403), 6 database error, \
                  7 stopped by SIGTERM/Ctrl-C (answers received were recorded), 8 the SQLite file was \
                  moved or deleted while open. A run whose calls met 402 (out of tokens) \
                  exits 0: it records the pause and says so."
)]
pub struct Cli {
    /// The campaign file (default ./jobs.toml, if it exists).
    #[arg(long, global = true, env = CONFIG_ENV, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Less on standard error: errors only (no warnings, no progress bars). Overrides
    /// FLUIDTALK_LOG.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// More on standard error: -v what happens (info), -vv why (debug: each job run, the
    /// database opened), -vvv everything (trace). Overrides FLUIDTALK_LOG.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a first campaign into a folder: a commented jobs.toml whose windows are open
    /// now, a sample leads.csv and a .env.example (overwrites nothing).
    Init(init::InitArgs),
    /// Walk through every operation and outcome against the built-in simulator (no key).
    Demo,
    /// Make one FluidTalk API call and print the result as JSON.
    Api(api::ApiArgs),
    /// Run a FluidTalk-compatible simulator (for demos and tests; needs no key).
    Sim(sim::SimArgs),
    /// The lead database: import, list, inspect, record replies, block.
    Leads(leads::LeadsArgs),
    /// The suppression list (global do-not-contact): targets never called.
    Suppress {
        #[command(subcommand)]
        command: suppress::SuppressCommand,
    },
    /// Text the persona produced, waiting to be delivered on the platform.
    Outbox {
        #[command(subcommand)]
        command: outbox::OutboxCommand,
    },
    /// Account pauses (402 out of tokens, 401 key refused): list them, or lift them now.
    Pause {
        #[command(subcommand)]
        command: pause::PauseCommand,
    },
    /// Job pauses by hand: pause one job (every runner honours it), resume it, list the jobs.
    Job {
        #[command(subcommand)]
        command: job::JobCommand,
    },
    /// Create or upgrade the lead database's schema (also done by every command that uses it).
    Migrate,
    /// Remove the rows [retention] no longer keeps (what a daemon does hourly), and say how
    /// many per table; --dry-run only counts.
    Prune(prune::PruneArgs),
    /// Check the campaign file and print each job's next five fire times in its time zone,
    /// and each calendar's next days off.
    Check(check::CheckArgs),
    /// Run jobs once, now (all, or those named); --dry-run previews without acting.
    Run(run::RunArgs),
    /// The days ahead: each job's calls per day simulated over the leads (read only, no key).
    Forecast(forecast::ForecastArgs),
    /// Leads per state, active pauses, each job's last run and next fire time.
    Status(status::StatusArgs),
    /// Run every job on its schedule until SIGTERM or Ctrl-C.
    Daemon(daemon::DaemonArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(completions::CompletionsArgs),
    /// Print the man page, or write one page per command into a directory.
    Man(man::ManArgs),
}

/// Runs the parsed command.
pub async fn run(cli: Cli) -> Result<(), Failure> {
    out::set_quiet(cli.quiet);
    match cli.command {
        Command::Init(args) => init::run(args),
        Command::Demo => demo::run().await,
        Command::Api(args) => api::run(args, &load(cli.config)?).await,
        Command::Sim(args) => sim::run(args).await,
        Command::Leads(args) => leads::run(&load(cli.config)?, args.command).await,
        Command::Suppress { command } => suppress::run(&load(cli.config)?, command).await,
        Command::Outbox { command } => outbox::run(&load(cli.config)?, command).await,
        Command::Pause { command } => pause::run(&load(cli.config)?, command).await,
        Command::Job { command } => job::run(&load(cli.config)?, command).await,
        Command::Migrate => {
            let config = load(cli.config)?;
            let store = store_access::open_store(&config).await?;
            let url = crate::store::redact_url(&config.database_url());
            outln!("{} database at {url} is up to date", store.backend());
            Ok(())
        }
        Command::Prune(args) => prune::run(&load(cli.config)?, args).await,
        Command::Check(args) => check::run(&load(cli.config)?, args.at).await,
        Command::Run(args) => run::run(&load(cli.config)?, args).await,
        Command::Status(args) => status::run(&load(cli.config)?, args).await,
        Command::Forecast(args) => forecast::run(&load(cli.config)?, args).await,
        Command::Daemon(args) => {
            let path = ConfigPath::new(cli.config.clone());
            daemon::run(&load(cli.config)?, path, args).await
        }
        Command::Completions(args) => completions::run(args),
        Command::Man(args) => man::run(args),
    }
}

/// The campaign file, checked; a mistake in it is a configuration error (exit 3).
fn load(named: Option<PathBuf>) -> Result<crate::config::Config, Failure> {
    crate::config::load(&ConfigPath::new(named)).exit_with(crate::exit::Exit::Config)
}

/// The log filter the command line asks for (`-q`, `-v`...), which overrides
/// `FLUIDTALK_LOG`; `None` leaves it to `FLUIDTALK_LOG`, else `default_log_level`.
pub fn asked_log_level(cli: &Cli) -> Option<&'static str> {
    match (cli.quiet, cli.verbose) {
        (true, _) => Some("error"),
        (false, 0) => None,
        (false, 1) => Some("info,tokio_cron_scheduler=warn"),
        (false, 2) => Some("info,fluidtalk_runner=debug"),
        (false, _) => Some("debug,fluidtalk_runner=trace"),
    }
}

/// The process's `tracing` default for a command: quiet for one-shot calls whose stdout
/// is the result, informative for servers.
pub fn default_log_level(cli: &Cli) -> &'static str {
    match cli.command {
        Command::Api(_) => "warn",
        // The demo tells its own story on stdout.
        Command::Demo => "error",
        // The simulated runs' own warnings (402s, skipped ticks) are the forecast's subject.
        Command::Forecast(_) => "error",
        // The scheduler's own start-up chatter is not the operator's business.
        Command::Sim(_) | Command::Daemon(_) => "info,tokio_cron_scheduler=warn",
        Command::Init(_)
        | Command::Leads(_)
        | Command::Suppress { .. }
        | Command::Outbox { .. }
        | Command::Pause { .. }
        | Command::Job { .. }
        | Command::Migrate
        | Command::Prune(_)
        | Command::Check(_)
        | Command::Run(_)
        | Command::Status(_)
        | Command::Completions(_)
        | Command::Man(_) => "warn",
    }
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::{CommandFactory, Parser};

    /// Every command says what it does, and every argument what it takes (issue 24: "help
    /// text on every argument"): `--help` and the man pages are the reference.
    #[test]
    fn every_command_and_argument_has_help_text() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            let path = format!("{path} {}", cmd.get_name()).trim().to_string();
            if cmd.get_about().is_none() && cmd.get_long_about().is_none() {
                missing.push(format!("command `{path}`"));
            }
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("`{path}` argument `{id}`"));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &path, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "", &mut missing);
        assert!(missing.is_empty(), "without help text: {missing:#?}");
    }

    /// docs/cli.md is the `--help` of every command, generated from these definitions:
    /// a changed argument without its reference fails here. `UPDATE_CLI_REFERENCE=1 cargo
    /// test --lib cli_reference` writes it anew.
    #[test]
    fn the_cli_reference_in_docs_is_current() {
        let options = clap_markdown::MarkdownOptions::new()
            .title("The command-line reference".to_string())
            .show_footer(false)
            .show_table_of_contents(true);
        let generated = format!(
            "<!-- Generated from the clap definitions by the test \
             cli::tests::the_cli_reference_in_docs_is_current: do not edit by hand; run \
             `UPDATE_CLI_REFERENCE=1 cargo test --lib cli_reference`. -->\n\n{}",
            clap_markdown::help_markdown_custom::<Cli>(&options)
        );
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/cli.md");
        if std::env::var_os("UPDATE_CLI_REFERENCE").is_some() {
            std::fs::write(path, &generated).expect("write docs/cli.md");
        }
        let on_disk = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            on_disk == generated,
            "docs/cli.md is not the reference these definitions make: run \
             `UPDATE_CLI_REFERENCE=1 cargo test --lib cli_reference` and commit it"
        );
    }

    /// `-q` and `-v` ask for a log filter that overrides FLUIDTALK_LOG; none leaves it be.
    #[test]
    fn quiet_and_verbose_choose_the_log_filter() {
        let asked = |args: &[&str]| {
            let cli = Cli::try_parse_from(args).expect("parses");
            super::asked_log_level(&cli)
        };
        assert_eq!(asked(&["fluidtalk-runner", "status"]), None);
        assert_eq!(asked(&["fluidtalk-runner", "-q", "status"]), Some("error"));
        assert_eq!(
            asked(&["fluidtalk-runner", "status", "-vv"]),
            Some("info,fluidtalk_runner=debug")
        );
        assert!(Cli::try_parse_from(["fluidtalk-runner", "-q", "-v", "status"]).is_err());
    }
}
