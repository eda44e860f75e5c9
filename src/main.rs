use clap::Parser;
use fluidtalk_runner::cli::{self, Cli};
use fluidtalk_runner::exit::Exit;
use fluidtalk_runner::logs;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let format = match logs::LogFormat::from_env() {
        Ok(format) => format,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(Exit::Usage.code());
        }
    };
    logs::init(
        format,
        cli::default_log_level(&cli),
        cli::asked_log_level(&cli),
    );
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            let message = format!("cannot start the async runtime: {e}");
            logs::print_fatal(format, &message, Exit::Failure.code());
            return ExitCode::from(Exit::Failure.code());
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of standard output went away: nothing more to say.
        Err(failure) if cli::out::is_closed(&failure) => ExitCode::SUCCESS,
        Err(failure) => {
            logs::print_fatal(format, &failure.to_string(), failure.exit.code());
            ExitCode::from(failure.exit.code())
        }
    }
}
