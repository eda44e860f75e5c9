//! SIGHUP: the campaign file read again, its jobs taken up by the running daemon.
//!
//! The jobs (`[[job]]`, with the `[[sender]]`s and `[[calendar]]`s they use, which each job
//! carries) change at run time: the scheduler's jobs are replaced (`Daemon::reload`), a
//! run going finishing under the job it started with. Every other table configures a part
//! built once at start-up (the store, the API client, the shared call limits, the HTTP
//! listener, delivery): a change to one is logged as needing a restart, and the running
//! value stays.

use crate::config::Config;
use crate::daemon::Daemon;

/// Each setting of `new` that differs from `running` but cannot change while the daemon
/// runs: the setting, and why it needs a restart.
pub fn needs_restart(running: &Config, new: &Config) -> Vec<(&'static str, &'static str)> {
    let mut out = Vec::new();
    let mut check = |changed: bool, setting, why| {
        if changed {
            out.push((setting, why));
        }
    };
    check(
        running.database_url != new.database_url,
        "[database] url",
        "the database is opened once, at start-up",
    );
    check(
        running.fluidtalk != new.fluidtalk,
        "[fluidtalk]",
        "the API client (base URL, timeout, sender, image folder) is made once, at start-up",
    );
    check(
        running.limits != new.limits,
        "[limits]",
        "the calls in flight and per second are shared by every run and relayed call, sized at start-up",
    );
    check(
        running.backoff != new.backoff,
        "[backoff]",
        "the calls' back-off is set at start-up",
    );
    check(
        running.http != new.http,
        "[http]",
        "the HTTP API's address, certificate and limits are bound at start-up",
    );
    check(
        running.delivery != new.delivery,
        "[delivery]",
        "the webhook's delivery is started once, at start-up",
    );
    check(
        running.forecast != new.forecast,
        "[forecast]",
        "the dashboard's forecast budget is set at start-up",
    );
    check(
        running.retention != new.retention,
        "[retention]",
        "the hourly prune's settings are read at start-up",
    );
    out
}

/// Applies `new` to the running `daemon`: its jobs replaced, each setting that needs a
/// restart logged as kept at its running value (`running`: the file as the daemon
/// started with it).
pub fn apply(daemon: &Daemon, running: &Config, new: &Config) {
    let file = new.path.display().to_string();
    for (setting, why) in needs_restart(running, new) {
        tracing::warn!(%file, setting, why, "changed in the campaign file, but ignored until the daemon restarts");
    }
    let r = daemon.reload(new);
    tracing::info!(
        %file,
        added = %r.added.join(","),
        removed = %r.removed.join(","),
        kept = %r.kept.join(","),
        "campaign file reloaded: the jobs are the file's now (runs going finish as they started)"
    );
    for (job, next) in daemon.next_fires() {
        match next {
            Some(t) => tracing::info!(%job, next = %t.to_rfc3339(), "scheduled"),
            None => {
                tracing::warn!(%job, "this job's schedule never fires (e.g. February 30): it will not run")
            }
        }
    }
}
