use clap::Parser;
use fluidtalk_runner::cli::{self, Cli};
use std::io::IsTerminal;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default = cli::default_log_level(&cli);
    let (filter, bad_filter) = match std::env::var("FLUIDTALK_LOG") {
        Ok(text) if !text.trim().is_empty() => {
            match tracing_subscriber::EnvFilter::try_new(&text) {
                Ok(f) => (f, None),
                Err(e) => (tracing_subscriber::EnvFilter::new(default), Some((text, e))),
            }
        }
        _ => (tracing_subscriber::EnvFilter::new(default), None),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    if let Some((text, e)) = bad_filter {
        tracing::warn!("FLUIDTALK_LOG={text:?} is not a log filter ({e}); using {default:?}");
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(fluidtalk_runner::exit::Exit::Failure.code());
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of standard output went away: nothing more to say.
        Err(failure) if cli::out::is_closed(&failure) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {failure}");
            ExitCode::from(failure.exit.code())
        }
    }
}
