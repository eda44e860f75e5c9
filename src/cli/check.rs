//! `fluidtalk-runner check`: the campaign file as the runner reads it, and when each job
//! fires next.

use crate::config::{Config, JobKind, SendWindow};
use crate::exit::{ExitWith, Failure};
use crate::store::redact_url;
use chrono::{DateTime, Utc};

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Print the next fire times and days off from this instant (RFC 3339) instead of now.
    #[arg(long, value_parser = super::common::parse_time)]
    pub at: Option<DateTime<Utc>>,
}

fn window(w: Option<&SendWindow>) -> String {
    let Some(w) = w else {
        return "any time".into();
    };
    let names = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let days: Vec<&str> = names
        .iter()
        .zip(w.days)
        .filter(|(_, on)| *on)
        .map(|(n, _)| *n)
        .collect();
    format!(
        "{} {} (the lead's zone if known)",
        days.join(","),
        w.hours()
    )
}

/// How many days of each sender's ramp `check` prints, today first.
const RAMP_DAYS: u32 = 7;

/// Each `[[sender]]`: its rules, and its cap today and on the next days of its ramp. Its
/// use (today's openers, the first opener that started its ramp) is read from the
/// database when one is there; else the ramp starts at day 0.
async fn senders(config: &Config, now: chrono::DateTime<Utc>) -> Result<(), Failure> {
    let book = &config.senders;
    if book.is_empty() {
        return Ok(());
    }
    let rules: Vec<_> = book.rules.values().cloned().collect();
    let uses = match super::store_access::open_as(config, super::store_access::Open::ReadOnly).await
    {
        Ok(store) => store.sender_uses(&rules, now).await.ok(),
        Err(_) => None,
    };
    outln!(
        "
senders ({})",
        rules.len()
    );
    for rule in &rules {
        let u = uses
            .as_ref()
            .and_then(|us| us.iter().find(|u| u.username == rule.username));
        let first = u.and_then(|u| u.first_opener_at);
        let cap = match rule.daily_cap {
            None => "no daily cap".to_string(),
            Some(c) => format!("daily cap {c} in {}", rule.timezone),
        };
        let gap = if rule.min_gap.is_zero() {
            String::new()
        } else {
            format!(
                ", at least {} between calls",
                humantime::format_duration(rule.min_gap)
            )
        };
        outln!("  {}: {cap}{gap}", rule.username);
        if let Some(w) = rule.warmup {
            outln!(
                "    warm-up    {} on day 0, +{} every {} day(s); {}",
                w.start,
                w.step,
                w.every_days,
                match first {
                    Some(t) => format!(
                        "day 0 was {} (its first opener); today is day {}",
                        t.with_timezone(&rule.timezone).format("%Y-%m-%d"),
                        rule.ramp_day(first, now)
                    ),
                    None => "no opener yet, so day 0 will be the day of its first".into(),
                }
            );
        }
        if rule.daily_cap.is_some() {
            let ramp: Vec<String> = rule
                .ramp(first, now, RAMP_DAYS)
                .iter()
                .map(|c| c.map_or("-".into(), |c| c.to_string()))
                .collect();
            outln!(
                "    caps       {} (today, then the next {} days)",
                ramp.join(", "),
                RAMP_DAYS - 1
            );
        }
        match u {
            Some(u) => outln!(
                "    today      {} opener(s) used{}",
                u.openers_today,
                u.last_call_at.map_or(String::new(), |t| format!(
                    ", last call {}",
                    t.format("%Y-%m-%d %H:%M:%S UTC")
                ))
            ),
            None => outln!("    today      unknown (no database to read yet)"),
        }
    }
    Ok(())
}

pub async fn run(config: &Config, at: Option<DateTime<Utc>>) -> Result<(), Failure> {
    // Nothing to check is not "ok": say where a campaign file was looked for.
    if !config.path.exists() {
        return Err(Failure {
            exit: crate::exit::Exit::Config,
            error: anyhow::anyhow!(
                "no campaign file: {} does not exist here; give one with --config PATH or {}",
                config.path.display(),
                crate::config::CONFIG_ENV
            ),
        });
    }
    // The runner's clock (FLUIDTALK_CLOCK_OFFSET moves it), unless --at names an instant.
    let now = match at {
        Some(at) => at,
        None => crate::clock::from_env()
            .map_err(|e| anyhow::anyhow!(e))
            .exit_with(crate::exit::Exit::Usage)?
            .now(),
    };
    let api = config
        .checked_base_url()
        .exit_with(crate::exit::Exit::Config)?;
    let database = config
        .checked_database_url()
        .exit_with(crate::exit::Exit::Config)?;
    outln!("{}: ok", config.path.display());
    outln!("  database   {}", redact_url(&database));
    outln!(
        "  api        {} (timeout {}; key from FLUIDTALK_API_KEY)",
        api,
        humantime::format_duration(config.fluidtalk.timeout)
    );
    outln!(
        "  sender     {}",
        config
            .fluidtalk
            .own_username
            .as_deref()
            .unwrap_or("(each lead's own_username)")
    );
    outln!(
        "  limits     {} in flight, {}/s",
        config.limits.concurrency,
        config.limits.per_second
    );
    let b = &config.backoff;
    outln!(
        "  backoff    402: {} doubling to {}; transient: {} doubling to {}, {} attempts",
        humantime::format_duration(b.out_of_tokens),
        humantime::format_duration(b.out_of_tokens_max),
        humantime::format_duration(b.retry_base),
        humantime::format_duration(b.retry_max),
        b.max_attempts
    );
    let h = &config.http;
    match h.listen {
        Some(addr) => outln!(
            "  http       {addr} (`daemon` serves the HTTP API there; token from FLUIDTALK_RUNNER_TOKEN)"
        ),
        None => outln!("  http       none (`daemon --http ADDR` serves the HTTP API)"),
    }
    outln!(
        "             {}{}; headers within {}, idle for {}, HTTP/2 pings every {} (answer within {}); {} connections, {} per client address; {} wrong tokens a minute per address",
        if h.tls.is_some() {
            "HTTPS (tls_cert, tls_key)"
        } else {
            "plain HTTP"
        },
        h.public_url.as_ref().map_or_else(String::new, |u| format!(
            ", public at {}",
            u.origin().ascii_serialization()
        )),
        humantime::format_duration(h.header_timeout),
        humantime::format_duration(h.idle_timeout),
        humantime::format_duration(h.keep_alive_interval),
        humantime::format_duration(h.keep_alive_timeout),
        h.max_connections,
        h.max_connections_per_client,
        h.auth_failures_per_minute
    );
    match &config.delivery {
        Some(d) => outln!(
            "  delivery   {} (secret from {}; timeout {}; retry {} doubling to {}, parked after {}; {} at once)",
            d.webhook_url,
            d.secret_env,
            humantime::format_duration(d.timeout),
            humantime::format_duration(d.retry_base),
            humantime::format_duration(d.retry_max),
            humantime::format_duration(d.max_age),
            d.concurrency
        ),
        None => outln!("  delivery   none (the outbox waits for `outbox list` / `outbox ack`)"),
    }
    // Days off from the day `now` falls in (UTC); a lead's own zone decides which of
    // them are off for it.
    let today = now.date_naive();
    for cal in &config.calendars {
        let from = cal
            .ics
            .as_deref()
            .map_or_else(String::new, |f| format!(", with {f}"));
        let timed = if cal.timed_ignored > 0 {
            format!(
                "; {} timed event(s) ignored (only all-day events are days off)",
                cal.timed_ignored
            )
        } else {
            String::new()
        };
        outln!(
            "\ncalendar {:?}: {} day(s) off{from}{timed}",
            cal.name,
            cal.days()
        );
        let next = cal.next_days_off(today, 5, 366);
        if next.is_empty() {
            outln!("  no day off within a year of {today}");
        } else {
            outln!("  next days off (in each lead's zone, else the job's)");
            for d in next {
                outln!("    {}", d.format("%a %Y-%m-%d"));
            }
        }
    }
    senders(config, now).await?;
    if config.jobs.is_empty() {
        outln!("  no [[job]] defined: `run` and `daemon` have nothing to do");
    }
    for job in &config.jobs {
        let what = match &job.kind {
            JobKind::Opener { daily_cap, .. } => format!(
                "opener, daily cap {}",
                daily_cap.map_or("none".into(), |c| c.to_string())
            ),
            JobKind::FollowUp {
                quiet_after,
                max_follow_ups,
                ..
            } => format!(
                "follow_up, quiet after {}, at most {max_follow_ups}",
                quiet_after
                    .iter()
                    .map(|d| humantime::format_duration(*d).to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            JobKind::Event { event_type, .. } => format!("event {event_type:?}"),
        };
        outln!("\njob {:?}: {what}", job.name);
        outln!(
            "  schedule   {:?} in {}, batches of {}",
            job.schedule.text(),
            job.timezone,
            job.batch_size
        );
        outln!("  window     {}", window(job.kind.send_window()));
        if !matches!(job.kind, JobKind::Event { .. }) {
            outln!("  segment    {}", job.segment);
        }
        if !job.calendars.is_empty() {
            let names: Vec<&str> = job.calendars.iter().map(|c| c.name.as_str()).collect();
            outln!(
                "  calendars  {} (no call on their days off)",
                names.join(", ")
            );
        }
        if !job.senders.of_job.is_empty() {
            let names: Vec<&str> = job
                .senders
                .of_job
                .iter()
                .map(|r| r.username.as_str())
                .collect();
            outln!(
                "  senders    {} (a lead that names none goes to the one with the most room today)",
                names.join(", ")
            );
        }
        let upcoming = job.schedule.upcoming(now, 5);
        if upcoming.is_empty() {
            outln!(
                "  warning    {:?} never fires (a day that does not exist, like February 30, or a year gone by): the daemon will never run this job",
                job.schedule.text()
            );
            continue;
        }
        outln!("  next fires");
        for t in upcoming {
            outln!("    {}", t.format("%a %Y-%m-%d %H:%M:%S %Z"));
        }
    }
    Ok(())
}
