//! The forecast's sandbox: a scratch SQLite file holding a copy of the campaign's working
//! set, and the built-in simulator standing in for the API. Both go away with `Scratch`.
//!
//! The scratch folder is `fluidtalk-forecast-<pid>-<random>` in the temporary folder
//! (`TMPDIR`, else `/tmp`): a process killed before it could remove its own leaves one
//! that `clean_stale_scratch` finds by its process id and removes at the next start.

use super::{ForecastError, Options};
use crate::config::Config;
use crate::lead::LeadState;
use crate::sim::{SimConfig, Simulator};
use crate::store::{SnapshotStore, SqliteStore, Store};
use std::sync::Arc;

/// Leads copied per read and write.
const PAGE: u32 = 500;

/// How far back attempts are copied: the daily caps count today's calls, in any zone.
const CAP_LOOKBACK: chrono::Duration = chrono::Duration::hours(48);

pub(super) struct Scratch {
    pub store: Arc<dyn Store>,
    pub sim_url: String,
    pub sim: Simulator,
    /// Leads copied.
    pub leads: u64,
    /// The last attempt id copied: the forecast's own attempts come after it.
    pub last_attempt: i64,
    _dir: tempfile::TempDir,
    _sim: tokio::task::JoinHandle<()>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Scratch {
    pub async fn copy(
        source: &dyn SnapshotStore,
        config: &Config,
        opts: &Options,
    ) -> Result<Self, ForecastError> {
        let setup = |what: &str, e: std::io::Error| ForecastError::Setup(format!("{what}: {e}"));
        let dir = tempfile::Builder::new()
            .prefix(&format!("{SCRATCH_PREFIX}{}-", std::process::id()))
            .tempdir()
            .map_err(|e| setup("creating a scratch directory", e))?;
        let url = format!("sqlite://{}", dir.path().join("forecast.db").display());
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&url).await?);

        let a = &opts.assumptions;
        let sim = Simulator::new(SimConfig {
            tokens: a.tokens,
            ignore_rate: a.ignore_rate,
            seal_rate: a.seal_rate,
            seed: a.seed,
            // Only the count is read (the budget, the progress).
            keep_log: false,
            ..SimConfig::default()
        });
        let mut leads = 0u64;
        let mut after = 0;
        loop {
            let page = source.leads_page(after, PAGE).await?;
            let Some(last) = page.last() else { break };
            after = last.id;
            leads += page.len() as u64;
            // A lead the API has talked with has a conversation there: a follow-up finds
            // it, an event continues it without a token.
            sim.hold_conversations(
                page.iter()
                    .filter(|l| in_conversation(l))
                    .map(|l| l.target.as_str()),
            );
            store.restore_leads(&page).await?;
        }
        let jobs: Vec<String> = config.jobs.iter().map(|j| j.name.clone()).collect();
        // Read after the leads: only those of leads copied (a lead added meanwhile has a
        // higher id), so the copy holds together even while the campaign runs.
        let attempts: Vec<_> = source
            .attempts_since(&jobs, opts.from - CAP_LOOKBACK)
            .await?
            .into_iter()
            .filter(|a| a.lead_id <= after)
            .collect();
        let mut events = source.queued_events(None).await?;
        events.retain(|e| e.lead_id <= after);
        let pauses = source.pauses().await?;
        // Each sender's first opener (its warm-up's day) and last call (its gap).
        let senders = source.sender_rows().await?;
        store
            .restore_rest(&events, &attempts, &pauses, &senders)
            .await?;
        // Jobs a person paused stay paused in the copy, until their pause's end.
        for p in source.job_pauses().await? {
            if p.in_force(opts.from) {
                store.pause_job(&p).await?;
            }
        }
        let last_attempt = attempts.last().map_or(0, |a| a.id);

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| setup("starting the simulator", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| setup("reading the simulator's address", e))?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = sim.clone();
        let handle = tokio::spawn(async move {
            let _ = served
                .serve(listener, async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(Scratch {
            store,
            sim_url: format!("http://{addr}"),
            sim,
            leads,
            last_attempt,
            _dir: dir,
            _sim: handle,
            _stop: stop,
        })
    }
}

/// Whether the API holds a conversation with the lead: it was contacted or has a session,
/// and is not `new` (a lead sent back to `new` by a 404 keeps its old session and contact
/// time, but has no conversation: its next opener costs a token).
fn in_conversation(l: &crate::store::Lead) -> bool {
    if l.state == LeadState::New {
        return false;
    }
    l.session_id.is_some()
        || l.last_contact_at.is_some()
        || matches!(l.state, LeadState::Contacted | LeadState::Exhausted)
}

/// The start of every forecast scratch folder's name in the temporary folder.
pub const SCRATCH_PREFIX: &str = "fluidtalk-forecast-";

/// A scratch folder whose process cannot be told (a name without a process id, or a
/// process id reused by another process) is removed once it is this old.
const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Removes the forecast scratch folders in the temporary folder that earlier processes
/// left (killed, or stopped before their forecast could clean up): those whose process
/// is gone, and any older than a day. Another live process's folder stays. Returns how
/// many were removed.
pub fn clean_stale_scratch() -> usize {
    let dir = std::env::temp_dir();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return 0;
    };
    let own = std::process::id();
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(SCRATCH_PREFIX)) else {
            continue;
        };
        let pid = rest
            .split_once('-')
            .and_then(|(pid, _)| pid.parse::<u32>().ok());
        if pid == Some(own) {
            continue;
        }
        let gone = pid.is_some_and(|p| !std::path::Path::new(&format!("/proc/{p}")).exists());
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age >= STALE_AFTER);
        if !(gone || old) {
            continue;
        }
        let path = entry.path();
        match std::fs::remove_dir_all(&path) {
            Ok(()) => {
                removed += 1;
                tracing::info!(path = %path.display(), "removed a forecast scratch folder an earlier process left");
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "could not remove a stale forecast scratch folder")
            }
        }
    }
    removed
}
