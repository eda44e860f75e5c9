//! `fluidtalk-runner completions SHELL` and `fluidtalk-runner man [--out DIR]`, with the real
//! binary: the scripts complete every command clap knows (bash runs them), and the man
//! pages are roff that groff renders without a warning, one per command.

use crate::common;

use clap::CommandFactory;
use common::bin;
use fluidtalk_runner::cli::Cli;
use std::path::Path;
use std::process::{Command, Output};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
}

fn completions(shell: &str) -> String {
    ok(bin()
        .args(["completions", shell])
        .output()
        .expect("completions"))
}

/// The names of `cmd`'s subcommands, as clap has them (its own `help` left out).
fn subcommands(cmd: &clap::Command) -> Vec<String> {
    cmd.get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
        .map(|s| s.get_name().to_string())
        .collect()
}

/// What bash offers for `fluidtalk-runner WORDS... CUR<TAB>`, by running the script.
fn bash_offers(script: &Path, words: &[&str], cur: &str) -> Vec<String> {
    let line: Vec<String> = std::iter::once("fluidtalk-runner")
        .chain(words.iter().copied())
        .chain(std::iter::once(cur))
        .map(|w| format!("'{w}'"))
        .collect();
    let program = format!(
        "source '{}'\nCOMP_WORDS=({})\nCOMP_CWORD={}\n\
         _fluidtalk__runner fluidtalk-runner '{cur}' '{}'\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display(),
        line.join(" "),
        words.len() + 1,
        words.last().copied().unwrap_or("fluidtalk-runner"),
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &program])
        .output()
        .expect("run bash");
    ok(out).lines().map(str::to_string).collect()
}

/// `cmd`'s long options, as clap has them.
fn long_options(cmd: &clap::Command) -> Vec<String> {
    cmd.get_arguments()
        .filter(|a| !a.is_hide_set())
        .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
        .collect()
}

#[test]
fn the_bash_script_is_valid_and_completes_every_command_and_subcommand() {
    let dir = tempfile::tempdir().expect("temp dir");
    let script = dir.path().join("fluidtalk-runner.bash");
    std::fs::write(&script, completions("bash")).expect("write the script");
    let syntax = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .expect("bash -n");
    assert!(syntax.status.success(), "bash -n: {}", text(&syntax.stderr));

    let mut cli = Cli::command();
    // Built, so that each subcommand has the global options too.
    cli.build();
    let top = bash_offers(&script, &[], "");
    let names = subcommands(&cli);
    assert!(names.len() >= 12, "{names:?}");
    for name in &names {
        assert!(top.contains(name), "`{name}` is not offered: {top:?}");
    }
    for sub in cli.get_subcommands().filter(|s| s.get_name() != "help") {
        // Each command's own options (and the global ones), e.g. `daemon --dry-run`.
        let offered = bash_offers(&script, &[sub.get_name()], "--");
        let options = long_options(sub);
        assert!(options.contains(&"--config".to_string()), "{options:?}");
        for option in &options {
            assert!(
                offered.contains(option),
                "`{} {option}` is not offered: {offered:?}",
                sub.get_name()
            );
        }
        let nested = subcommands(sub);
        if nested.is_empty() {
            continue;
        }
        let offered = bash_offers(&script, &[sub.get_name()], "");
        for name in &nested {
            assert!(
                offered.contains(name),
                "`{} {name}` is not offered: {offered:?}",
                sub.get_name()
            );
        }
    }
}

#[test]
fn every_shells_script_names_every_command() {
    let names = subcommands(&Cli::command());
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = completions(shell);
        assert!(script.contains("fluidtalk-runner"), "{shell}");
        for name in &names {
            assert!(script.contains(name.as_str()), "{shell}: no `{name}`");
        }
    }
    let out = bin().args(["completions", "tcsh"]).output().expect("run");
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
    assert!(text(&out.stderr).contains("tcsh"));
}

/// groff's warnings for a page (empty: clean), or `None` where groff is not installed.
fn groff_warnings(page: &Path) -> Option<String> {
    let out = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .arg(page)
        .output()
        .ok()?;
    assert!(out.status.success(), "groff failed on {}", page.display());
    Some(text(&out.stderr))
}

/// Checks one page: groff renders it without a warning (or, without groff, it has the
/// header and NAME section a man reader needs) and it is the page of `name`.
fn check_page(page: &Path, name: &str) {
    let roff = std::fs::read_to_string(page).expect("read the page");
    assert!(
        roff.lines()
            .any(|l| l.starts_with(&format!(".TH {name} 1 "))),
        "{}: no .TH header for {name}",
        page.display()
    );
    let escaped = name.replace('-', "\\-");
    let after_name = roff.split(".SH NAME\n").nth(1).unwrap_or_default();
    assert!(
        after_name.starts_with(&format!("{escaped} \\- ")),
        "{}: the NAME section does not name {name}",
        page.display()
    );
    if let Some(warnings) = groff_warnings(page) {
        assert_eq!(warnings, "", "{}", page.display());
    }
}

#[test]
fn the_main_page_goes_to_stdout_and_lists_every_command() {
    let page = ok(bin().arg("man").output().expect("man"));
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("fluidtalk-runner.1");
    std::fs::write(&path, &page).expect("write the page");
    check_page(&path, "fluidtalk-runner");
    let listed = page.split(".SH SUBCOMMANDS\n").nth(1).unwrap_or_default();
    for name in subcommands(&Cli::command()) {
        let escaped = format!("fluidtalk\\-runner\\-{}(1)", name.replace('-', "\\-"));
        assert!(
            listed.contains(&escaped),
            "SUBCOMMANDS does not list {name}"
        );
    }
    assert!(
        page.contains("Exit codes"),
        "the exit codes are on the page"
    );
}

/// Every page `--out` should write: the command and each subcommand, to any depth.
fn page_names(cmd: &clap::Command, prefix: &str, names: &mut Vec<String>) {
    names.push(prefix.to_string());
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        page_names(sub, &format!("{prefix}-{}", sub.get_name()), names);
    }
}

#[test]
fn out_writes_one_clean_page_per_command_and_subcommand_and_prints_their_paths() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out_dir = dir.path().join("man/man1");
    let printed = ok(bin()
        .args(["man", "--out"])
        .arg(&out_dir)
        .output()
        .expect("man --out"));

    let mut names = Vec::new();
    page_names(&Cli::command(), "fluidtalk-runner", &mut names);
    assert!(names.len() > 20, "{names:?}");
    let expected: Vec<String> = names
        .iter()
        .map(|n| out_dir.join(format!("{n}.1")).display().to_string())
        .collect();
    assert_eq!(printed.lines().collect::<Vec<_>>(), expected);
    let mut files: Vec<String> = std::fs::read_dir(&out_dir)
        .expect("list the pages")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut wanted: Vec<String> = names.iter().map(|n| format!("{n}.1")).collect();
    wanted.sort();
    assert_eq!(files, wanted, "nothing more, nothing less");
    for name in &names {
        check_page(&out_dir.join(format!("{name}.1")), name);
    }
}

#[test]
fn an_unwritable_out_directory_is_an_error_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "").expect("write");
    let target = file.join("man1");
    let out = bin()
        .args(["man", "--out"])
        .arg(&target)
        .output()
        .expect("man --out");
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains(&target.display().to_string()), "{stderr}");
}
