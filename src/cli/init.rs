//! `fluidtalk-runner init [DIR]`: a first campaign folder — a commented campaign file whose
//! send windows are open now, a small lead file and a `.env.example` — and the next three
//! commands. Writes nothing over an existing file: if one of the three is there, none is
//! written.

use crate::exit::{Exit, ExitWith, Failure};
use anyhow::Context;
use clap::Args;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
#[command(after_help = "Then, in DIR: fluidtalk-runner leads import leads.csv; \
                        fluidtalk-runner run --dry-run; fluidtalk-runner run. \
                        The README's quickstart runs them against the built-in simulator.")]
pub struct InitArgs {
    /// The folder to write into (created if missing; default: the current folder).
    #[arg(default_value = ".", value_name = "DIR")]
    dir: PathBuf,
    /// The time zone of the jobs' schedules and daily caps (an IANA name, e.g.
    /// Europe/Berlin; default: this machine's zone, else UTC).
    #[arg(long, value_name = "ZONE")]
    timezone: Option<chrono_tz::Tz>,
}

/// The campaign file; `{zone}` is the jobs' time zone.
const JOBS: &str = include_str!("init/jobs.toml");
/// Five sample leads, in the format `leads import` reads.
const LEADS: &str = include_str!("init/leads.csv");
/// The settings that stay out of the campaign file (the key, the simulator's address).
const ENV: &str = include_str!("init/env.example");

/// The files `init` writes, in the order it writes them.
pub const FILES: [&str; 3] = ["jobs.toml", "leads.csv", ".env.example"];

pub fn run(args: InitArgs) -> Result<(), Failure> {
    let zone = args.timezone.unwrap_or_else(local_zone);
    let written = write(&args.dir, zone)?;
    let shown = args.dir.display().to_string();
    outln!(
        "wrote {} (time zone {zone})",
        written
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    outln!();
    if args.dir != Path::new(".") {
        outln!("cd {}", shell_word(&shown));
    }
    outln!(
        "cp .env.example .env && set -a && . ./.env && set +a   # as it is for the simulator \
         (fluidtalk-runner sim); your key in .env for the real API"
    );
    outln!("next:");
    outln!("  fluidtalk-runner leads import leads.csv   # the leads into the database");
    outln!("  fluidtalk-runner run --dry-run            # what a run would do, touching nothing");
    outln!("  fluidtalk-runner run                      # do it");
    Ok(())
}

/// Writes the three files into `dir`, or none of them if one exists (exit 3, naming it).
pub fn write(dir: &Path, zone: chrono_tz::Tz) -> Result<Vec<PathBuf>, Failure> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the folder {}", dir.display()))
        .exit_with(Exit::Config)?;
    let jobs = JOBS.replace("{zone}", zone.name());
    let contents = [jobs.as_str(), LEADS, ENV];
    let paths: Vec<PathBuf> = FILES.iter().map(|f| dir.join(f)).collect();
    // Every file is checked before the first is written: all or nothing.
    if let Some(there) = paths.iter().find(|p| p.symlink_metadata().is_ok()) {
        return Err(anyhow::anyhow!(
            "{} exists: init writes over nothing (move it away, or init another folder)",
            there.display()
        ))
        .exit_with(Exit::Config);
    }
    let mut written = Vec::new();
    for (path, text) in paths.iter().zip(contents) {
        // `create_new`: a file made between the check and here is not overwritten either.
        let made = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|()| f.sync_all()));
        if let Err(e) = made {
            // Leave no half-made folder: what this run wrote goes again.
            for p in &written {
                let _ = std::fs::remove_file(p);
            }
            // A file half written by this run goes too; one made by someone else stays.
            if e.kind() != std::io::ErrorKind::AlreadyExists {
                let _ = std::fs::remove_file(path);
            }
            return Err(anyhow::Error::new(e).context(format!("cannot write {}", path.display())))
                .exit_with(Exit::Config);
        }
        written.push(path.clone());
    }
    Ok(written)
}

/// `word` as one shell word: as it is when plain, else in single quotes.
fn shell_word(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+:,@%".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// This machine's time zone: `TZ` if it names one, else the system's, else UTC.
fn local_zone() -> chrono_tz::Tz {
    let named = |name: &str| {
        name.trim()
            .trim_start_matches(':')
            .parse::<chrono_tz::Tz>()
            .ok()
    };
    std::env::var("TZ")
        .ok()
        .and_then(|tz| named(&tz))
        .or_else(|| {
            iana_time_zone::get_timezone()
                .ok()
                .and_then(|tz| named(&tz))
        })
        .unwrap_or(chrono_tz::Tz::UTC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_campaign_file_parses_and_its_windows_are_open_at_any_hour() {
        let text = JOBS.replace("{zone}", "Europe/Berlin");
        let c = crate::config::parse(Path::new("jobs.toml"), &text).expect("it parses");
        assert_eq!(c.jobs.len(), 2);
        for job in &c.jobs {
            let w = job.kind.send_window().expect("a window");
            for day in 0..7 {
                let day = chrono::Weekday::try_from(day).expect("a day");
                for minute in [0, 1, 9 * 60, 23 * 60 + 59] {
                    let t = chrono::NaiveTime::from_hms_opt(minute / 60, minute % 60, 59)
                        .expect("a time");
                    assert!(w.contains(day, t), "{} closed at {day} {t}", job.name);
                }
            }
        }
    }

    #[test]
    fn the_folder_is_printed_as_one_shell_word() {
        assert_eq!(shell_word("my-campaign/2026"), "my-campaign/2026");
        assert_eq!(shell_word("my campaign"), "'my campaign'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(shell_word("$(rm -rf x)"), "'$(rm -rf x)'");
    }

    #[test]
    fn an_existing_file_stops_init_before_it_writes_anything() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(".env.example"), "mine").expect("write");
        let e = write(dir.path(), chrono_tz::Tz::UTC).expect_err("refused");
        assert_eq!(e.exit, Exit::Config);
        assert!(e.to_string().contains(".env.example exists"), "{e}");
        assert!(!dir.path().join("jobs.toml").exists());
        assert!(!dir.path().join("leads.csv").exists());
        assert_eq!(
            std::fs::read_to_string(dir.path().join(".env.example")).expect("read"),
            "mine"
        );
    }
}
