//! `fluidtalk-runner prune [--dry-run] [--json]`: what a daemon does once an hour, by hand
//! and to the end: removes the rows `[retention]` no longer keeps, in statements of at
//! most 1,000 rows, and says how many per table (or, with `--dry-run`, how many it would).
//! On SQLite it then gives the freed pages back to the file system where the file allows
//! (`auto_vacuum = INCREMENTAL`).

use super::store_access::{Open, open_as, store_failure};
use crate::config::Config;
use crate::exit::{Exit, ExitWith, Failure};
use crate::retention;
use crate::store::PruneTable;
use anyhow::anyhow;
use clap::Args;

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Say what would be removed, removing nothing (opens the database read only).
    #[arg(long)]
    dry_run: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

pub async fn run(config: &Config, args: PruneArgs) -> Result<(), Failure> {
    let clock = crate::clock::from_env()
        .map_err(|e| anyhow!(e))
        .exit_with(Exit::Usage)?;
    let store = open_as(
        config,
        if args.dry_run {
            Open::ReadOnly
        } else {
            Open::Existing
        },
    )
    .await?;
    let now = clock.now();
    let r = &config.retention;
    let (pruned, free_pages) = if args.dry_run {
        let p = retention::would_prune(&*store, r, now)
            .await
            .map_err(store_failure)?;
        (p, None)
    } else {
        let p = retention::prune(&*store, r, now, None, None)
            .await
            .map_err(store_failure)?;
        let free = store.reclaim_space(u32::MAX).await.map_err(store_failure)?;
        (p, (store.backend() == "sqlite").then_some(free))
    };
    if args.json {
        let cutoffs: serde_json::Map<String, serde_json::Value> = PruneTable::ALL
            .iter()
            .map(|t| {
                (
                    t.as_str().to_string(),
                    retention::cutoff(*t, r, now).to_rfc3339().into(),
                )
            })
            .collect();
        let key = if args.dry_run {
            "would_remove"
        } else {
            "removed"
        };
        let mut out = serde_json::json!({
            "dry_run": args.dry_run,
            key: pruned.to_json(),
            "total": pruned.total(),
            "older_than": cutoffs,
        });
        if let Some(free) = free_pages {
            out["sqlite_free_pages"] = free.into();
        }
        let text = serde_json::to_string_pretty(&out).exit_with(Exit::Failure)?;
        outln!("{text}");
        return Ok(());
    }
    let verb = if args.dry_run {
        "would remove"
    } else {
        "removed"
    };
    outln!("{verb} {} rows", pruned.total());
    for table in PruneTable::ALL {
        let n = pruned.rows.get(table.as_str()).copied().unwrap_or(0);
        let cut = retention::cutoff(table, r, now);
        outln!(
            "  {:<9} {n:>10}  (older than {})",
            table.as_str(),
            cut.format("%Y-%m-%d %H:%M UTC")
        );
    }
    if let Some(free) = free_pages.filter(|&f| f > 0) {
        outln!(
            "the SQLite file keeps {free} free pages that new rows reuse; to give them back, \
             stop the daemons and run: sqlite3 FILE 'PRAGMA auto_vacuum = INCREMENTAL; VACUUM;' \
             (once; later prunes then give space back themselves)"
        );
    }
    Ok(())
}
