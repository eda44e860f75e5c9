//! The command line: clap definitions and one flow per command. Thin: each flow turns
//! arguments into the library's typed values, calls the library, and prints.

mod api;
mod demo;
mod sim;

use crate::exit::Failure;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "fluidtalk-runner",
    version,
    about = "Runs outreach campaigns on the FluidTalk Handshake API",
    long_about = "Runs outreach campaigns on the FluidTalk Handshake API.\n\n\
                  The API key is read from FLUIDTALK_API_KEY and never printed or stored.",
    after_help = "Exit codes: 0 ok, 1 unexpected failure, 2 usage, 3 bad setting or input, \
                  4 API error or unreachable, 5 API key refused (401/403)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Walk through every operation and outcome against the built-in simulator (no key).
    Demo,
    /// Make one FluidTalk API call and print the result as JSON.
    Api(api::ApiArgs),
    /// Run a FluidTalk-compatible simulator (for demos and tests; needs no key).
    Sim(sim::SimArgs),
}

/// Runs the parsed command.
pub async fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Demo => demo::run().await,
        Command::Api(args) => api::run(args).await,
        Command::Sim(args) => sim::run(args).await,
    }
}

/// The process's `tracing` default for a command: quiet for one-shot calls whose stdout
/// is the result, informative for servers.
pub fn default_log_level(cli: &Cli) -> &'static str {
    match cli.command {
        Command::Api(_) | Command::Demo => "warn",
        Command::Sim(_) => "info",
    }
}
