//! `fluidtalk-runner leads ...`: the lead database from the command line.

use super::common::{LEAD_HEADER, parse_time, print_json, print_lead, show_time};
use super::store_access::{Open, open_as, store_failure};
use crate::config::Config;
use crate::exit::{Exit, ExitWith, Failure};
use crate::import;
use crate::lead::LeadState;
use crate::store::{AdminStore, ImportCounts, Lead, UserAction};
use crate::store::{NewEvent, Retag};
use anyhow::anyhow;
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};

#[derive(Debug, Subcommand)]
pub enum LeadsCommand {
    /// Import leads from a .csv (with a header row) or .jsonl file; upserts by target.
    Import {
        /// The lead file: .csv with a header row (a `target` column, any of own_username,
        /// timezone, profile_image, tags, state, last_contact_at, last_reply_at,
        /// follow_ups_sent) or .jsonl, one object a line.
        file: PathBuf,
        /// Keep nothing from the file if any row is rejected (and exit 3).
        #[arg(long)]
        strict: bool,
        /// The summary as JSON (imported, updated, rejected, and each rejection's line and
        /// reason).
        #[arg(long)]
        json: bool,
    },
    /// Add one lead, or update the given fields of an existing one.
    Add {
        /// The lead: an Instagram-style handle, e.g. @jane.doe.
        target: String,
        /// The account that talks to this lead (else [fluidtalk] own_username).
        #[arg(long)]
        own_username: Option<String>,
        /// The lead's IANA time zone (e.g. Europe/Berlin), for send windows.
        #[arg(long)]
        timezone: Option<String>,
        /// A profile image URL or local path, sent with the opener.
        #[arg(long)]
        profile_image: Option<String>,
        /// A tag (repeatable).
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// The lead as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List leads, oldest first.
    List {
        /// Only leads in this state.
        #[arg(long)]
        state: Option<LeadState>,
        /// Only leads carrying this tag.
        #[arg(long)]
        tag: Option<String>,
        /// At most this many (default 1000; 0 for all, read a page at a time). A list
        /// that was cut says so on stderr, with the `--after` that shows the next ones.
        #[arg(long, default_value_t = 1000)]
        limit: u32,
        /// Only leads after this id (the `id` of the last one shown): the next page.
        #[arg(long, value_name = "ID")]
        after: Option<i64>,
        /// One JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Write every lead a filter selects to stdout, oldest first, as a lead file that
    /// `leads import` reads back: the same columns, names and formats (a state other than
    /// new or contacted is written as it is, and refused by an import).
    Export {
        /// The file format: csv (a header row, tags `;`-separated) or jsonl (one object a
        /// line).
        #[arg(long, value_enum, default_value_t = super::leads_export::ExportFormat::Csv)]
        format: super::leads_export::ExportFormat,
        /// Only leads in this state.
        #[arg(long)]
        state: Option<LeadState>,
        /// Only leads carrying this tag.
        #[arg(long)]
        tag: Option<String>,
        /// Only leads after this id (as `leads list --after`).
        #[arg(long, value_name = "ID")]
        after: Option<i64>,
    },
    /// Show a lead and its attempts, newest first (the newest --attempts of them; a cut
    /// list says so).
    Show {
        /// The lead's target, e.g. @jane.doe.
        target: String,
        /// Attempts shown, newest first (1 to 10,000).
        #[arg(long, default_value_t = SHOW_ATTEMPTS, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        attempts: u32,
        /// The lead and its attempts as JSON (with `attempts_total` and
        /// `queued_events_total`: how many it has in all).
        #[arg(long)]
        json: bool,
    },
    /// The lead wrote back: reset the quiet clock and the follow-up count.
    Replied {
        /// The lead's target, e.g. @jane.doe.
        target: String,
        /// When (RFC 3339; default now).
        #[arg(long, value_parser = parse_time)]
        at: Option<DateTime<Utc>>,
        /// The lead as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Mark leads do-not-contact (unknown targets are added, blocked), all in one
    /// transaction. With several targets, one already blocked is said on stderr and skipped.
    Block {
        /// The leads' targets (@username); at most 10,000 with the file's.
        #[arg(required_unless_present = "file")]
        targets: Vec<String>,
        /// Also the targets of this file: one per line (blank lines skipped), or a CSV
        /// whose header row has a `target` column.
        #[arg(long, value_name = "PATH")]
        file: Option<PathBuf>,
        /// The lead as JSON; a JSON array of them when several are named.
        #[arg(long)]
        json: bool,
    },
    /// Lift blocks, all in one transaction. With several targets, one not blocked is said
    /// on stderr and skipped; if any target is no lead, they are named and nothing
    /// changes (exit 3).
    Unblock {
        /// The leads' targets (@username); at most 10,000 with the file's.
        #[arg(required_unless_present = "file")]
        targets: Vec<String>,
        /// Also the targets of this file: one per line (blank lines skipped), or a CSV
        /// whose header row has a `target` column.
        #[arg(long, value_name = "PATH")]
        file: Option<PathBuf>,
        /// The lead as JSON; a JSON array of them when several are named.
        #[arg(long)]
        json: bool,
    },
    /// Add and remove tags of leads (what a job's `tags` / `exclude_tags` select), in one
    /// transaction: if any target is no lead, they are listed and nothing changes (exit 3).
    #[command(group = clap::ArgGroup::new("change").required(true).multiple(true).args(["add", "remove"]))]
    Tag {
        /// The leads' targets (@username), at most 10,000; name them before --add/--remove.
        #[arg(required = true, value_name = "TARGET")]
        targets: Vec<String>,
        /// Tags to add (one or more; a lead keeps a tag it has once).
        #[arg(long, num_args = 1.., value_name = "TAG")]
        add: Vec<String>,
        /// Tags to remove (one or more; a tag a lead lacks is no change).
        #[arg(long, num_args = 1.., value_name = "TAG")]
        remove: Vec<String>,
        /// The leads as JSON (an array when several are named).
        #[arg(long)]
        json: bool,
    },
    /// Work a failed or needs_review lead again.
    Retry {
        /// The lead's target, e.g. @jane.doe.
        target: String,
        /// The lead as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Queue a platform event for event-trigger jobs (adds the lead if unknown).
    Event {
        /// The lead's target, e.g. @jane.doe (added as new if unknown).
        target: String,
        /// The event's type, as an event job's `event_type` names it.
        #[arg(value_name = "TYPE")]
        event_type: String,
        /// The event's context, a JSON object (sent as entry_context).
        #[arg(long, value_name = "JSON")]
        context: Option<String>,
        /// The queued event as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct LeadsArgs {
    #[command(subcommand)]
    pub command: LeadsCommand,
}

/// "no lead with target" and, when the target lacks the `@` of a stored one, a hint.
async fn not_found(store: &dyn AdminStore, target: &str) -> Failure {
    let mut message = format!("no lead with target {target:?}");
    if !target.starts_with('@')
        && let Ok(Some(lead)) = store.get_lead(&format!("@{target}")).await
    {
        message.push_str(&format!(" (did you mean {:?}?)", lead.target));
    }
    Failure {
        exit: Exit::Config,
        error: anyhow!(message),
    }
}

pub async fn run(config: &Config, command: LeadsCommand) -> Result<(), Failure> {
    // Checked before the database is opened (or created): a refused event writes nothing.
    if let LeadsCommand::Event { event_type, .. } = &command {
        let event_type = event_type.trim();
        if event_type.is_empty() {
            return Err(anyhow!("the event TYPE is empty")).exit_with(Exit::Config);
        }
        config
            .check_event_type(event_type)
            .map_err(|why| anyhow!("{why}"))
            .exit_with(Exit::Config)?;
    }
    let how = match command {
        LeadsCommand::List { .. } | LeadsCommand::Export { .. } | LeadsCommand::Show { .. } => {
            Open::ReadOnly
        }
        LeadsCommand::Replied { .. }
        | LeadsCommand::Unblock { .. }
        | LeadsCommand::Tag { .. }
        | LeadsCommand::Retry { .. } => Open::Existing,
        LeadsCommand::Import { .. }
        | LeadsCommand::Add { .. }
        | LeadsCommand::Block { .. }
        | LeadsCommand::Event { .. } => Open::Create,
    };
    // Checked before the database is opened: a refused change writes nothing.
    let retag = match &command {
        LeadsCommand::Tag {
            targets,
            add,
            remove,
            ..
        } => Some(tag_change(targets, add, remove)?),
        _ => None,
    };
    // Checked before the database is opened: a bad target or line writes nothing.
    let named = match &command {
        LeadsCommand::Block { targets, file, .. } | LeadsCommand::Unblock { targets, file, .. } => {
            let several = targets.len() != 1 || file.is_some();
            let checked = super::targets::targets_named(
                targets.clone(),
                file.as_deref(),
                super::targets::MAX_TARGETS,
            )?;
            Some((
                checked,
                several,
                matches!(command, LeadsCommand::Block { .. }),
            ))
        }
        _ => None,
    };
    let store = open_as(config, how).await?;
    let now = Utc::now();
    match command {
        LeadsCommand::Import { file, strict, json } => {
            import(&*store, &file, strict, json, now).await
        }
        LeadsCommand::Add {
            target,
            own_username,
            timezone,
            profile_image,
            tags,
            json,
        } => {
            let input = import::check_input(&target, own_username, timezone, profile_image, tags)
                .exit_with(Exit::Config)?;
            let target = input.target.clone();
            let mut session = store.begin_import(false).await.map_err(store_failure)?;
            let counts = session
                .upsert(vec![input], now)
                .await
                .map_err(store_failure)?;
            session.finish(true).await.map_err(store_failure)?;
            let lead = store
                .get_lead(&target)
                .await
                .map_err(store_failure)?
                .ok_or_else(|| anyhow!("lead {target:?} vanished after it was added"))
                .exit_with(Exit::Failure)?;
            if json {
                print_json(&lead)
            } else {
                let verb = if counts.imported == 1 {
                    "added"
                } else {
                    "updated"
                };
                outln!("{verb} {}", lead.target);
                Ok(())
            }
        }
        LeadsCommand::List {
            state,
            tag,
            limit,
            after,
            json,
        } => super::leads_list::list(&*store, state, tag, limit, after, json).await,
        LeadsCommand::Export {
            format,
            state,
            tag,
            after,
        } => super::leads_export::export(&*store, state, tag, after, format).await,
        LeadsCommand::Show {
            target,
            attempts: shown,
            json,
        } => {
            let Some(lead) = store.get_lead(&target).await.map_err(store_failure)? else {
                return Err(not_found(&*store, &target).await);
            };
            let (attempts, attempts_total) = store
                .attempts_of(lead.id, shown)
                .await
                .map_err(store_failure)?;
            let (events, events_total) = store
                .queued_events_of(lead.id, SHOW_EVENTS, SHOW_EVENTS_BYTES)
                .await
                .map_err(store_failure)?;
            let cut_attempts = attempts_total > attempts.len() as u64;
            let cut_events = events_total > events.len() as u64;
            // Said on stderr in both modes (the JSON also has the totals).
            let say_cut = || {
                if cut_attempts {
                    eprintln!(
                        "showing the newest {} of {attempts_total} attempts; `--attempts N` shows more (up to 10,000)",
                        attempts.len()
                    );
                }
                if cut_events {
                    eprintln!(
                        "showing the oldest {} of {events_total} queued events",
                        events.len()
                    );
                }
            };
            if json {
                print_json(&serde_json::json!({
                    "lead": lead,
                    "attempts": attempts,
                    "attempts_total": attempts_total,
                    "queued_events": events,
                    "queued_events_total": events_total,
                }))?;
                say_cut();
                return Ok(());
            }
            outln!("{LEAD_HEADER}");
            print_lead(&lead)?;
            if let Some(p) = &lead.pending_event {
                outln!("  while blocked, an answer arrived ({p}): applied when it is unblocked");
            }
            let sent_by_jobs = config.event_types();
            for e in &events {
                let orphan = if sent_by_jobs.contains(&e.event_type.as_str()) {
                    ""
                } else {
                    "  (no job sends this type: it waits, and holds openers back)"
                };
                outln!(
                    "  queued event #{} {} {}{orphan}",
                    e.id,
                    e.event_type,
                    e.context.as_deref().unwrap_or("")
                );
            }
            if let Some(e) = &lead.last_error {
                outln!("  last error: {e}");
            }
            for a in &attempts {
                outln!(
                    "  attempt #{:<6} {}  {:<9} step {:<4} {:<15} {:<4} {}",
                    a.id,
                    show_time(Some(a.started_at)),
                    a.action.as_str(),
                    a.step,
                    a.status.as_str(),
                    a.http_status
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| "-".into()),
                    a.error_detail
                        .as_deref()
                        .map(|d| format!("({d})"))
                        .unwrap_or_default()
                        + &a.released_by
                            .as_deref()
                            .map(|by| format!(" [step released by {by}]"))
                            .unwrap_or_default(),
                );
            }
            if attempts.is_empty() {
                outln!("  no attempts yet");
            }
            say_cut();
            Ok(())
        }
        LeadsCommand::Replied { target, at, json } => {
            let lead = match store.record_reply(&target, at.unwrap_or(now), now).await {
                Ok(lead) => lead,
                Err(crate::store::StoreError::NotFound(_)) => {
                    return Err(not_found(&*store, &target).await);
                }
                Err(e) => return Err(store_failure(e)),
            };
            done(&lead, json, "reply recorded for")
        }
        LeadsCommand::Block { json, .. } | LeadsCommand::Unblock { json, .. } => {
            let Some((targets, several, block)) = named else {
                return Err(anyhow!("no targets were checked")).exit_with(Exit::Failure);
            };
            match (several, targets.as_slice()) {
                // One target, as always: a do-not-contact list may name people not
                // imported yet, added blocked.
                (false, [target]) if block => {
                    let lead = crate::store::block_adding(&*store, target, now)
                        .await
                        .map_err(store_failure)?;
                    done(&lead, json, "blocked")
                }
                (false, [target]) => {
                    user_action(&*store, target, UserAction::Unblock, now, json, "unblocked").await
                }
                _ => set_blocked(&*store, &targets, block, now, json).await,
            }
        }
        LeadsCommand::Tag { json, .. } => {
            let Some((targets, add, remove)) = retag else {
                return Err(anyhow!("no tag change was checked")).exit_with(Exit::Failure);
            };
            retag_leads(&*store, &targets, &add, &remove, now, json).await
        }
        LeadsCommand::Retry { target, json } => {
            user_action(&*store, &target, UserAction::Retry, now, json, "will retry").await
        }
        LeadsCommand::Event {
            target,
            event_type,
            context,
            json,
        } => {
            let target = crate::lead::fields::target(&target).exit_with(Exit::Config)?;
            let event_type = event_type.trim().to_string();
            let context = context
                .as_deref()
                .map(crate::lead::fields::event_context_text)
                .transpose()
                .map_err(|e| anyhow!("--context: {e}"))
                .exit_with(Exit::Config)?;
            let event = store
                .queue_event(&NewEvent {
                    target: &target,
                    event_type: &event_type,
                    context: context.as_deref(),
                    now,
                })
                .await
                .map_err(store_failure)?;
            if json {
                print_json(&event)
            } else {
                outln!(
                    "queued event #{} {} for {}",
                    event.id,
                    event.event_type,
                    event.target
                );
                Ok(())
            }
        }
    }
}

/// The most targets one `leads tag` takes (one transaction holds them all).
pub const MAX_TAG_TARGETS: usize = 10_000;

/// Attempts `leads show` shows unless `--attempts` says otherwise.
const SHOW_ATTEMPTS: u32 = 100;
/// Queued events `leads show` shows, and about how much of their text.
const SHOW_EVENTS: u32 = 100;
const SHOW_EVENTS_BYTES: usize = 1 << 20;

/// `leads tag`'s change, checked: targets, tags to add, tags to remove.
type TagChange = (Vec<String>, Vec<String>, Vec<String>);

/// `leads tag`'s targets (each checked, each once) and tags to add and to remove (each
/// checked as a lead's tags are): the first bad one is an error naming it.
fn tag_change(targets: &[String], add: &[String], remove: &[String]) -> Result<TagChange, Failure> {
    if targets.len() > MAX_TAG_TARGETS {
        return Err(anyhow!(
            "{} targets; at most {MAX_TAG_TARGETS} at a time: split the list",
            targets.len()
        ))
        .exit_with(Exit::Config);
    }
    let mut checked: Vec<String> = Vec::with_capacity(targets.len());
    for (i, arg) in targets.iter().enumerate() {
        let target = crate::lead::fields::target(arg)
            .map_err(|e| anyhow!("target {} ({arg:?}): {e}", i + 1))
            .exit_with(Exit::Config)?;
        if !checked.contains(&target) {
            checked.push(target);
        }
    }
    let tags = |values: &[String], flag: &str| -> Result<Vec<String>, Failure> {
        if values.iter().any(|t| t.trim().is_empty()) {
            return Err(anyhow!("--{flag}: a tag is empty")).exit_with(Exit::Config);
        }
        let mut once = Vec::with_capacity(values.len());
        for t in crate::lead::fields::tags(values.to_vec())
            .map_err(|e| anyhow!("--{flag}: {e}"))
            .exit_with(Exit::Config)?
        {
            if !once.contains(&t) {
                once.push(t);
            }
        }
        Ok(once)
    };
    let (add, remove) = (tags(add, "add")?, tags(remove, "remove")?);
    if let Some(t) = add.iter().find(|t| remove.contains(t)) {
        return Err(anyhow!("{t:?} is both in --add and in --remove")).exit_with(Exit::Config);
    }
    Ok((checked, add, remove))
}

/// Changes the tags of `targets` in one transaction, or none of them.
async fn retag_leads(
    store: &dyn AdminStore,
    targets: &[String],
    add: &[String],
    remove: &[String],
    now: DateTime<Utc>,
    json: bool,
) -> Result<(), Failure> {
    let done = store
        .retag_leads(&Retag {
            targets,
            add,
            remove,
            now,
        })
        .await
        .map_err(store_failure)?;
    if !done.unknown.is_empty() || !done.refused.is_empty() {
        for t in &done.unknown {
            eprintln!("{t}: no lead");
        }
        for (t, why) in &done.refused {
            eprintln!("{t}: {why}");
        }
        let mut why = Vec::new();
        if !done.unknown.is_empty() {
            why.push(format!(
                "{} of {} targets are no lead: {}",
                done.unknown.len(),
                targets.len(),
                super::targets::shown_list(&done.unknown)
            ));
        }
        if !done.refused.is_empty() {
            let named: Vec<String> = done.refused.iter().map(|(t, _)| t.clone()).collect();
            why.push(format!(
                "{} would carry too many tags: {}",
                named.len(),
                super::targets::shown_list(&named)
            ));
        }
        return Err(anyhow!("{}; no lead was changed", why.join("; "))).exit_with(Exit::Config);
    }
    if json {
        return super::targets::several_done(&done.leads, true, targets.len() != 1);
    }
    for lead in &done.leads {
        let tags = if lead.tags.is_empty() {
            "no tags".to_string()
        } else {
            lead.tags.join(", ")
        };
        outln!("tagged {} ({tags})", lead.target);
    }
    Ok(())
}

/// Blocks or unblocks several leads in one transaction, or none of them: an unblock with
/// unknown targets names them (exit 3); leads with nothing to do are said on stderr.
async fn set_blocked(
    store: &dyn AdminStore,
    targets: &[String],
    block: bool,
    now: DateTime<Utc>,
    json: bool,
) -> Result<(), Failure> {
    let done = store
        .set_blocked(targets, block, now)
        .await
        .map_err(store_failure)?;
    if !done.unknown.is_empty() {
        for t in &done.unknown {
            eprintln!("{t}: no lead");
        }
        return Err(anyhow!(
            "{} of {} targets are no lead: {}; no lead was unblocked",
            done.unknown.len(),
            targets.len(),
            super::targets::shown_list(&done.unknown)
        ))
        .exit_with(Exit::Config);
    }
    for (t, state) in &done.skipped {
        if block {
            eprintln!("{t}: already blocked");
        } else {
            eprintln!("{t}: not blocked (it is {state})");
        }
    }
    if json {
        return print_json(&done.leads);
    }
    let verb = if block { "blocked" } else { "unblocked" };
    for lead in &done.leads {
        outln!("{verb} {} (now {})", lead.target, lead.state);
    }
    Ok(())
}

fn done(lead: &Lead, json: bool, verb: &str) -> Result<(), Failure> {
    if json {
        print_json(lead)
    } else {
        outln!("{verb} {} (now {})", lead.target, lead.state);
        Ok(())
    }
}

async fn user_action(
    store: &dyn AdminStore,
    target: &str,
    action: UserAction,
    now: DateTime<Utc>,
    json: bool,
    verb: &str,
) -> Result<(), Failure> {
    let lead = match store.apply_user_action(target, action, now).await {
        Ok(lead) => lead,
        Err(crate::store::StoreError::NotFound(_)) => return Err(not_found(store, target).await),
        Err(e) => return Err(store_failure(e)),
    };
    done(&lead, json, verb)
}

/// A progress bar: rows read and their rate, its bar and time left from the file's bytes
/// read; each rejection on stderr as it is found.
struct Progress {
    bar: ProgressBar,
    shown: String,
    /// Rows read in this pass (shared with the bar's `{rows}` and `{rows_per_sec}`).
    rows: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// The import bar's template: rows and rows/s are the import's own keys (`rows_style`).
const IMPORT_TEMPLATE: &str =
    "{spinner} {wide_bar} {rows} rows read, {rows_per_sec} rows/s, ETA {eta}, {msg}";

/// `IMPORT_TEMPLATE` with its `{rows}` and `{rows_per_sec}` read from `rows`.
fn rows_style(rows: &std::sync::Arc<std::sync::atomic::AtomicU64>) -> Option<ProgressStyle> {
    use std::sync::atomic::Ordering;
    let count = rows.clone();
    let rate = rows.clone();
    Some(
        ProgressStyle::with_template(IMPORT_TEMPLATE)
            .ok()?
            .with_key(
                "rows",
                move |_: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{}", count.load(Ordering::Relaxed));
                },
            )
            .with_key(
                "rows_per_sec",
                move |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let secs = s.elapsed().as_secs_f64();
                    let n = rate.load(Ordering::Relaxed) as f64;
                    let per_sec = if secs > 0.0 { n / secs } else { 0.0 };
                    let _ = write!(w, "{per_sec:.0}");
                },
            ),
    )
}

impl import::Load for Progress {
    fn wrap(&self, file: std::fs::File) -> Box<dyn std::io::Read + Send> {
        Box::new(self.bar.wrap_read(file))
    }
    fn rejected(&self, line: u64, reason: &str) {
        self.bar
            .suspend(|| eprintln!("{}:{line}: {reason}", self.shown));
    }
    fn written(&self, so_far: ImportCounts) {
        self.bar.set_message(format!(
            "{} imported, {} updated",
            so_far.imported, so_far.updated
        ));
    }
    fn read(&self, rows: u64) {
        self.rows
            .fetch_add(rows, std::sync::atomic::Ordering::Relaxed);
        self.bar.tick();
    }
    fn pass(&self, _writing: bool) {
        self.rows.store(0, std::sync::atomic::Ordering::Relaxed);
        self.bar.reset();
    }
}

async fn import(
    store: &dyn AdminStore,
    path: &Path,
    strict: bool,
    json: bool,
    now: DateTime<Utc>,
) -> Result<(), Failure> {
    let rows = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let bar = if super::out::progress_shown() {
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let bar = ProgressBar::new(size);
        if let Some(style) = rows_style(&rows) {
            bar.set_style(style);
        }
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        bar
    } else {
        ProgressBar::hidden()
    };
    let progress = Progress {
        bar,
        shown: path.display().to_string(),
        rows,
    };
    let loaded = import::load_file(store, path, strict, now, &progress).await;
    progress.bar.finish_and_clear();
    let report = |loaded: &import::Loaded| -> Result<(), Failure> {
        if json {
            let mut report = serde_json::json!({ "file": path });
            if let (Some(out), serde_json::Value::Object(fields)) = (
                report.as_object_mut(),
                serde_json::to_value(loaded).unwrap_or_default(),
            ) {
                out.extend(fields);
            }
            print_json(&report)
        } else {
            // Targets on the suppression list, said when there are any: created or
            // left blocked.
            let suppressed = match loaded.counts.suppressed {
                0 => String::new(),
                n => format!(", suppressed {n} (blocked)"),
            };
            outln!(
                "imported {}, updated {}, rejected {}{suppressed}",
                loaded.counts.imported,
                loaded.counts.updated,
                loaded.rejected
            );
            Ok(())
        }
    };
    match loaded {
        Ok(loaded) if !loaded.kept => {
            report(&loaded)?;
            Err(anyhow!(
                "--strict: {} row(s) of {} rejected, so nothing from it was kept",
                loaded.rejected,
                path.display()
            ))
            .exit_with(Exit::Config)
        }
        Ok(loaded) => report(&loaded),
        Err((partial, e)) => {
            if let Some(partial) = partial {
                report(&partial)?;
            }
            Err(match e {
                import::LoadError::File(e) => Failure {
                    exit: Exit::Config,
                    error: e.into(),
                },
                import::LoadError::Store(e) => store_failure(e),
            })
        }
    }
}
