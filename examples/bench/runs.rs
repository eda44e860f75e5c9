//! Throughput end to end: the release binary's `run` against the simulator, one or three
//! processes on one database, and the official Python client against the same simulator.

use crate::env::{self, Cost, Db};
use crate::report::{Table, num};
use std::path::Path;
use std::time::Duration;

/// How long a throughput row aims to take: the leads of a row are what its expected rate
/// sends in this time (at least 200, at most 20,000), so a row at 100 ms and concurrency 1
/// (10 calls a second) does not take half an hour.
pub struct Sizing {
    pub seconds: f64,
    pub max_leads: usize,
}

/// A fresh database with `leads` new leads, the simulator at `latency_ms`, and `runners`
/// commands of `run openers` ready to start (the temp dir holds their campaign file).
pub struct Openers {
    pub db: Db,
    pub commands: Vec<std::process::Command>,
    _dir: tempfile::TempDir,
}

pub async fn openers(
    bin: &Path,
    backend: &'static str,
    pg: Option<&str>,
    latency_ms: u64,
    concurrency: usize,
    runners: usize,
    leads: usize,
) -> Openers {
    let url = env::sim(Duration::from_millis(latency_ms)).await;
    let db = Db::new(backend, pg).await;
    db.import(leads, "run").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let campaign = env::campaign(dir.path(), &url, concurrency, 500);
    let commands = (0..runners)
        .map(|_| env::command(bin, &db.url, &campaign, &["run", "openers"]))
        .collect();
    Openers {
        db,
        commands,
        _dir: dir,
    }
}

impl Openers {
    /// Runs the commands at once; asserts every lead was sent exactly once.
    pub async fn run(self) -> (Cost, u64, Db) {
        let Openers { db, commands, _dir } = self;
        let leads = db.count("new").await;
        let cost = tokio::task::spawn_blocking(move || env::run_all(commands))
            .await
            .expect("runs");
        let sent = db.count("contacted").await;
        assert_eq!(sent, leads, "every lead sent exactly once");
        (cost, sent, db)
    }
}

/// One `run` of an opener job over `leads` new leads by `runners` processes.
pub async fn opener_run(
    bin: &Path,
    backend: &'static str,
    pg: Option<&str>,
    latency_ms: u64,
    concurrency: usize,
    runners: usize,
    leads: usize,
) -> (Cost, u64) {
    let (cost, sent, _) = openers(bin, backend, pg, latency_ms, concurrency, runners, leads)
        .await
        .run()
        .await;
    (cost, sent)
}

pub async fn throughput(bin: &Path, pg: Option<&str>, sizing: &Sizing, table: &mut Table) {
    let mut setups = vec![("sqlite", 1)];
    if pg.is_some() {
        setups.extend([("postgres", 1), ("postgres", 3)]);
    }
    for (backend, runners) in setups {
        for latency_ms in [0u64, 20, 100] {
            for concurrency in [1usize, 8, 32, 128] {
                // The most the API allows: concurrency / latency per runner (per_second is
                // set far above it).
                let ideal = (latency_ms > 0)
                    .then(|| (runners * concurrency) as f64 * 1000.0 / latency_ms as f64);
                // With no latency the database bounds the rate (PostgreSQL at concurrency
                // 1: ~150 leads/s here), so those rows are smaller.
                let leads = match ideal {
                    Some(rate) => ((rate * sizing.seconds) as usize).clamp(200, sizing.max_leads),
                    None if concurrency == 1 => sizing.max_leads / 10,
                    None => sizing.max_leads / 2,
                };
                let (cost, _) =
                    opener_run(bin, backend, pg, latency_ms, concurrency, runners, leads).await;
                let rate = leads as f64 / cost.seconds;
                table.row(vec![
                    ("backend", backend.into()),
                    ("runners", runners.into()),
                    ("latency_ms", latency_ms.into()),
                    ("concurrency", concurrency.into()),
                    ("leads", leads.into()),
                    ("seconds", num(cost.seconds, 2)),
                    ("leads_per_s", num(rate, 0)),
                    (
                        "ideal_per_s",
                        ideal.map_or(serde_json::Value::Null, |i| num(i, 0)),
                    ),
                    (
                        "of_ideal_pct",
                        ideal.map_or(serde_json::Value::Null, |i| num(100.0 * rate / i, 1)),
                    ),
                    ("peak_rss_mb", num(cost.peak_rss_mb, 1)),
                ]);
                eprintln!("  {}", table.last_line());
            }
        }
    }
}

/// The runner's peak RSS over 100,000 leads (SQLite, concurrency 32, no latency).
pub async fn peak_rss(bin: &Path, leads: usize, table: &mut Table) {
    let (cost, _) = opener_run(bin, "sqlite", None, 0, 32, 1, leads).await;
    table.row(vec![
        (
            "what",
            "runner: one run over new leads (SQLite, concurrency 32, 0 ms)".into(),
        ),
        ("leads", leads.into()),
        ("seconds", num(cost.seconds, 2)),
        ("leads_per_s", num(leads as f64 / cost.seconds, 0)),
        ("peak_rss_mb", num(cost.peak_rss_mb, 1)),
    ]);
    eprintln!("  {}", table.last_line());
}
