//! `fluidtalk-runner completions SHELL`: the shell's completion script, generated from the
//! clap definitions (so it knows every command and option this build has), to stdout.

use super::Cli;
use crate::exit::Failure;
use clap::{Args, CommandFactory};
use clap_complete::Shell;

#[derive(Debug, Args)]
#[command(after_help = "Install, e.g.: fluidtalk-runner completions bash > \
                        /etc/bash_completion.d/fluidtalk-runner; \
                        fluidtalk-runner completions zsh > \"${fpath[1]}/_fluidtalk-runner\"; \
                        fluidtalk-runner completions fish > \
                        ~/.config/fish/completions/fluidtalk-runner.fish")]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: Shell,
}

pub fn run(args: CompletionsArgs) -> Result<(), Failure> {
    super::out::text(&script(args.shell))
}

/// The completion script for `shell`.
pub fn script(shell: Shell) -> String {
    let mut cmd = Cli::command();
    let name = cmd.get_name().to_string();
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, name.clone(), &mut buf);
    // The generators write only the command's own names and help texts, which are UTF-8.
    let script = String::from_utf8_lossy(&buf).into_owned();
    match shell {
        Shell::Bash => fix_bash_states(script, &name),
        _ => script,
    }
}

/// clap_complete (4.6.12) spells a hyphenated binary's subcommand states two ways in bash:
/// the loop that reads the words reaches `fluidtalk__runner__subcmd__leads`, the `case` arms
/// say `fluidtalk__subcmd__runner__subcmd__leads`, so no subcommand's options or
/// subcommands ever complete (clap-rs/clap#6421, open). The arms are renamed to the loop's
/// spelling; once upstream agrees with itself this replaces nothing.
fn fix_bash_states(script: String, name: &str) -> String {
    let arm = format!("{}__subcmd__", name.replace('-', "__subcmd__"));
    let state = format!("{}__subcmd__", name.replace('-', "__"));
    script.replace(&arm, &state)
}
