//! Cost at scale: planning and claiming one batch at 10,000 to 10,000,000 leads, a dry run
//! over 1,000,000 due leads, and `leads import` of 1,000,000 rows.

use crate::env::{self, Db};
use crate::report::{Table, num};
use fluidtalk_runner::config;
use fluidtalk_runner::plan::{self, Cursor};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

const BATCH: u32 = 500;

fn job() -> config::Config {
    let text = "[[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"0 0 * * * *\"\nbatch_size = 500\n";
    config::parse(Path::new("bench.toml"), text).expect("the bench's campaign file")
}

/// Median milliseconds to plan one batch of 500 due leads and claim it (the claim is
/// given back after each try, so every try sees the same table).
async fn plan_and_claim(db: &Db) -> (f64, f64) {
    let config = job();
    let job = &config.jobs[0];
    let mut plans = Vec::new();
    let mut claims = Vec::new();
    for i in 0..25 {
        let now = chrono::Utc::now();
        let started = Instant::now();
        let mut cursor = Cursor::default();
        let batch = plan::next_batch(&*db.store, job, now, BATCH, &mut cursor)
            .await
            .expect("plan a batch");
        let planned = started.elapsed();
        let ids: Vec<i64> = batch.iter().map(|c| c.lead.id).collect();
        let claimed = db
            .store
            .claim_leads(
                &ids,
                fluidtalk_runner::store::Lease {
                    lease_token: "bench/1",
                    now,
                    until: now + chrono::Duration::minutes(5),
                },
            )
            .await
            .expect("claim");
        let both = started.elapsed();
        assert_eq!(claimed.len(), BATCH as usize, "a full batch claimed");
        db.store
            .release_leads(&ids, "bench/1", now)
            .await
            .expect("give back");
        if i >= 5 {
            // The first tries warm the caches and prepare the statements.
            plans.push(planned.as_secs_f64() * 1000.0);
            claims.push(both.as_secs_f64() * 1000.0);
        }
    }
    (median(&mut plans), median(&mut claims))
}

/// Issue 21's question, measured: would claims that update no indexed column (heap-only
/// tuples on PostgreSQL) be worth a schema without `leads_leased`? The same tries on the
/// same table with that index dropped and room left in each page (`fillfactor` 80).
async fn heap_only_claims(db: &Db, table: &mut Table) {
    db.exec(&[
        "DROP INDEX leads_leased".into(),
        "ALTER TABLE leads SET (fillfactor = 80)".into(),
        "VACUUM FULL leads".into(),
        "ANALYZE leads".into(),
    ])
    .await;
    let (plan_ms, claim_ms) = plan_and_claim(db).await;
    table.row(vec![
        ("backend", "postgres, no lease index, fillfactor 80".into()),
        ("leads", 1_000_000u64.into()),
        ("plan_ms", num(plan_ms, 2)),
        ("plan_and_claim_ms", num(claim_ms, 2)),
    ]);
    eprintln!("  {}", table.last_line());
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `run --dry-run` of the release binary over every due lead: seconds to the first line
/// and to the end, and the lines printed. (`wait_peak` reaps the child.)
#[allow(clippy::zombie_processes)]
fn dry_run(bin: &Path, db: &Db, dir: &Path) -> (f64, f64, u64, f64) {
    let campaign = env::campaign(dir, "http://127.0.0.1:9", 32, BATCH);
    let mut cmd = env::command(bin, &db.url, &campaign, &["run", "--dry-run", "openers"]);
    cmd.stdout(Stdio::piped());
    let started = Instant::now();
    let mut child = cmd.spawn().expect("spawn the dry run");
    let out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = None;
    let mut lines = 0u64;
    let mut rss = 0.0f64;
    for line in out.lines() {
        line.expect("a line of the plan");
        first.get_or_insert_with(|| started.elapsed().as_secs_f64());
        lines += 1;
        if lines.is_multiple_of(4096) {
            // Read while it runs: once its output ends it may be gone.
            rss = rss.max(env::peak_now(child.id()));
        }
    }
    let (status, last) = env::wait_peak(child.id());
    let rss = rss.max(last);
    assert_eq!(status, 0, "the dry run failed");
    (
        first.unwrap_or(0.0),
        started.elapsed().as_secs_f64(),
        lines,
        rss,
    )
}

pub async fn planning(
    bin: &Path,
    pg: Option<&str>,
    sizes: &[u64],
    plan_table: &mut Table,
    dry_table: &mut Table,
) {
    let mut backends = vec!["sqlite"];
    if pg.is_some() {
        backends.push("postgres");
    }
    for backend in backends {
        for &n in sizes {
            let db = Db::new(backend, pg).await;
            let filled = Instant::now();
            db.fill(n).await;
            eprintln!(
                "  ({backend}: {n} leads filled in {:.0} s)",
                filled.elapsed().as_secs_f64()
            );
            let (plan_ms, claim_ms) = plan_and_claim(&db).await;
            plan_table.row(vec![
                ("backend", backend.into()),
                ("leads", n.into()),
                ("plan_ms", num(plan_ms, 2)),
                ("plan_and_claim_ms", num(claim_ms, 2)),
            ]);
            eprintln!("  {}", plan_table.last_line());
            if backend == "postgres" && n == 1_000_000 {
                heap_only_claims(&db, plan_table).await;
            }
            if n == 1_000_000 {
                let dir = tempfile::tempdir().expect("temp dir");
                let (first, total, lines, rss) = dry_run(bin, &db, dir.path());
                let calls = lines.saturating_sub(2);
                assert_eq!(calls, n, "the dry run plans every due lead");
                dry_table.row(vec![
                    ("backend", backend.into()),
                    ("due_leads", n.into()),
                    ("first_line_s", num(first, 3)),
                    ("seconds", num(total, 2)),
                    ("calls_per_s", num(calls as f64 / total, 0)),
                    ("peak_rss_mb", num(rss, 1)),
                ]);
                eprintln!("  {}", dry_table.last_line());
            }
        }
    }
}

/// `leads import` of a CSV file of `rows` leads into a fresh database.
pub async fn import(bin: &Path, pg: Option<&str>, rows: usize, table: &mut Table) {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("leads.csv");
    {
        let mut w = std::io::BufWriter::new(std::fs::File::create(&file).expect("csv"));
        writeln!(w, "target,timezone,tags").expect("write");
        for i in 0..rows {
            writeln!(w, "@import{i:08},Europe/Berlin,bench;csv").expect("write");
        }
    }
    let campaign = env::campaign(dir.path(), "http://127.0.0.1:9", 32, BATCH);
    let mut backends = vec!["sqlite"];
    if pg.is_some() {
        backends.push("postgres");
    }
    for backend in backends {
        let db = Db::new(backend, pg).await;
        let file = file.display().to_string();
        let cmd = env::command(bin, &db.url, &campaign, &["leads", "import", &file]);
        let cost = tokio::task::spawn_blocking(move || env::run_all(vec![cmd]))
            .await
            .expect("import");
        assert_eq!(db.count("new").await as usize, rows, "every row imported");
        table.row(vec![
            ("backend", backend.into()),
            ("rows", rows.into()),
            ("seconds", num(cost.seconds, 2)),
            ("rows_per_s", num(rows as f64 / cost.seconds, 0)),
            ("peak_rss_mb", num(cost.peak_rss_mb, 1)),
        ]);
        eprintln!("  {}", table.last_line());
    }
}

/// The daemon with nothing due: RSS and CPU over `span`.
pub async fn idle(bin: &Path, span: Duration, table: &mut Table) {
    let url = env::sim(Duration::ZERO).await;
    let db = Db::new("sqlite", None).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let campaign = env::campaign(dir.path(), &url, 32, BATCH);
    let mut child = env::command(bin, &db.url, &campaign, &["daemon"])
        .spawn()
        .expect("spawn the daemon");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (cpu0, _) = proc_stat(child.id());
    tokio::time::sleep(span).await;
    let (cpu1, rss) = proc_stat(child.id());
    // SAFETY: sends SIGTERM to the child started above.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    table.row(vec![
        ("what", "daemon, nothing due (one job, SQLite)".into()),
        ("seconds", num(span.as_secs_f64(), 0)),
        ("rss_mb", num(rss, 1)),
        (
            "cpu_pct",
            num(100.0 * (cpu1 - cpu0) / ticks / span.as_secs_f64(), 2),
        ),
    ]);
    eprintln!("  {}", table.last_line());
}

/// CPU ticks used so far (user + system) and the resident set in MB of process `pid`.
fn proc_stat(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest: Vec<&str> = stat[stat.rfind(')').expect("stat") + 2..]
        .split(' ')
        .collect();
    let (utime, stime): (f64, f64) = (
        rest[11].parse().expect("utime"),
        rest[12].parse().expect("stime"),
    );
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let rss_kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    (utime + stime, rss_kb / 1024.0)
}
