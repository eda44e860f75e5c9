//! `fluidtalk-runner check`: the campaign file as the runner reads it, and when each job
//! fires next.

use crate::config::{Config, JobKind, SendWindow};
use crate::exit::{ExitWith, Failure};
use crate::store::redact_url;
use chrono::Utc;

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
        "{} {}-{} (the lead's zone if known)",
        days.join(","),
        w.from.format("%H:%M"),
        w.to.format("%H:%M")
    )
}

pub fn run(config: &Config) -> Result<(), Failure> {
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
    let now = Utc::now();
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
