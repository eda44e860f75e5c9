//! `fluidtalk-runner man [--out DIR]`: man pages generated from the clap definitions: the
//! main page to stdout, or one page per command and subcommand written into a directory.

use super::Cli;
use crate::exit::{Exit, ExitWith, Failure};
use anyhow::Context;
use clap::{Args, CommandFactory};
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write `fluidtalk-runner.1` and one `fluidtalk-runner-COMMAND.1` page per command into
    /// DIR (made if missing) and print their paths, instead of the main page to stdout.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

pub fn run(args: ManArgs) -> Result<(), Failure> {
    match args.out {
        None => super::out::text(&main_page().exit_with(Exit::Failure)?),
        Some(dir) => {
            for path in write_pages(&dir).exit_with(Exit::Failure)? {
                outln!("{}", path.display());
            }
            Ok(())
        }
    }
}

/// The command tree the pages describe. `help` is clap's own subcommand, not a page.
fn command() -> clap::Command {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    // Gives each subcommand its display name (`fluidtalk-runner-leads`), the page's title.
    cmd.build();
    cmd
}

/// The main page, `fluidtalk-runner(1)`, as roff.
pub fn main_page() -> anyhow::Result<String> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(command())
        .render(&mut buf)
        .context("while rendering the man page")?;
    String::from_utf8(buf).context("the rendered man page is not UTF-8")
}

/// Writes every page into `dir`; returns their paths, the main page first.
pub fn write_pages(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the directory {}", dir.display()))?;
    let mut written = Vec::new();
    write_tree(command(), dir, &mut written)?;
    Ok(written)
}

fn write_tree(cmd: clap::Command, dir: &Path, written: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let subcommands: Vec<_> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .cloned()
        .collect();
    let page = clap_mangen::Man::new(cmd);
    let path = dir.join(page.get_filename());
    page.generate_to(dir)
        .with_context(|| format!("cannot write the man page {}", path.display()))?;
    written.push(path);
    for sub in subcommands {
        write_tree(sub, dir, written)?;
    }
    Ok(())
}
