//! The benchmark: the release binary against the built-in simulator on loopback, real
//! databases, and the official Python client for comparison. Prints markdown tables and
//! writes them as JSON (`target/bench/bench.json`, `target/bench/bench.md`).
//!
//!     TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \
//!         cargo run --release --example bench            # every row (about 25 minutes)
//!     cargo run --release --example bench -- --quick    # smaller, no 10,000,000 (minutes)
//!     cargo run --release --example bench -- throughput python   # some sections only
//!
//! Sections: `targets` (issue 21's end-to-end rows with the CPU each process used),
//! `throughput` (opener runs at 0/20/100 ms latency, concurrency 1-128, SQLite,
//! PostgreSQL with 1 and 3 runner processes), `python` (the official client, sequential and
//! a thread pool, and the runner's ratios), `planning` (plan and claim one batch at
//! 10,000, 1,000,000 and 10,000,000 leads; a dry run over 1,000,000 due leads), `import`
//! (`leads import` of 1,000,000 rows), `memory` (the runner's peak RSS at 100,000 leads,
//! the idle daemon's RSS and CPU over a minute), `forecast` (`forecast --days 14` over
//! 10,000, 20,000 and 100,000 leads; `--quick`: the first two), `guest` (a daemon's RSS idle and during its dashboard's
//! forecast of 150,000 leads with every-second jobs, on the default `[forecast]` budget).
//! Without `TEST_DATABASE_URL` the PostgreSQL
//! rows are left out (and the output says so).

mod env;
mod forecast;
mod guest;
mod python;
mod report;
mod runs;
mod scale;
mod targets;

use report::Table;
use std::time::Duration;

#[tokio::main]
async fn main() {
    fluidtalk_runner::fluidtalk::install_crypto_provider();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let all = [
        "targets",
        "throughput",
        "python",
        "planning",
        "import",
        "memory",
        "forecast",
        "guest",
    ];
    let chosen: Vec<&str> = all
        .iter()
        .copied()
        .filter(|s| args.iter().all(|a| a.starts_with("--")) || args.iter().any(|a| a == s))
        .collect();
    let pg = std::env::var("TEST_DATABASE_URL").ok();
    let bin = env::binary();
    let sizing = runs::Sizing {
        seconds: if quick { 3.0 } else { 12.0 },
        max_leads: if quick { 5_000 } else { 20_000 },
    };
    let mut tables = [
        Table::new(
            "targets",
            "Issue 21's runs: 0 ms with 20,000 leads, 100 ms sized to 12 s (batch 500), and where the CPU went",
        ),
        Table::new(
            "throughput",
            "Opener runs end to end (leads/s; ideal = runners x concurrency / latency)",
        ),
        Table::new(
            "python",
            "The official Python client (fluidtalk 1.0.3) against the same simulator, 0 ms",
        ),
        Table::new(
            "planning",
            "Plan one batch of 500 due leads, and plan and claim it (median of 20)",
        ),
        Table::new(
            "dry_run",
            "A dry run (`run --dry-run`) over 1,000,000 due leads",
        ),
        Table::new("import", "`leads import` of a CSV file"),
        Table::new("memory", "Memory and CPU"),
        Table::new(
            "forecast",
            "`forecast --days 14` (the runner in virtual time, 50 calls/s, caps of 500, 2,000 and 5,000 a day)",
        ),
        Table::new(
            "guest",
            "The daemon's RSS idle and during its dashboard's forecast (every-second jobs, default [forecast] budget)",
        ),
    ];
    let [
        targets,
        throughput,
        python,
        planning,
        dry,
        import,
        memory,
        forecast,
        guest,
    ] = &mut tables;
    if pg.is_none() {
        throughput.note("TEST_DATABASE_URL is not set: no PostgreSQL rows.".into());
    }
    for section in &chosen {
        eprintln!("== {section}");
        match *section {
            "targets" => targets::targets(&bin, pg.as_deref(), quick, targets).await,
            "throughput" => runs::throughput(&bin, pg.as_deref(), &sizing, throughput).await,
            "python" => {
                // The runner's rates to compare with, measured now on the same simulator.
                let mut runner = Vec::new();
                for concurrency in [1usize, 32] {
                    let leads = if concurrency == 1 {
                        5_000
                    } else {
                        sizing.max_leads
                    };
                    let (cost, _) =
                        runs::opener_run(&bin, "sqlite", None, 0, concurrency, 1, leads).await;
                    runner.push((concurrency, leads as f64 / cost.seconds));
                }
                python::compare(if quick { 1_000 } else { 3_000 }, &runner, python).await;
            }
            "planning" => {
                let sizes: &[u64] = if quick {
                    &[10_000, 1_000_000]
                } else {
                    &[10_000, 1_000_000, 10_000_000]
                };
                scale::planning(&bin, pg.as_deref(), sizes, planning, dry).await;
            }
            "import" => scale::import(&bin, pg.as_deref(), 1_000_000, import).await,
            "memory" => {
                runs::peak_rss(&bin, 100_000, memory).await;
                let span = Duration::from_secs(if quick { 10 } else { 60 });
                scale::idle(&bin, span, memory).await;
            }
            "forecast" => {
                let rows = if quick {
                    &forecast::ROWS[..2]
                } else {
                    forecast::ROWS
                };
                forecast::forecast(&bin, pg.as_deref(), rows, forecast).await;
            }
            "guest" => {
                let leads = if quick { 20_000 } else { 150_000 };
                // `FLUIDTALK_BENCH_FORECAST="max_calls = 5000"`: another budget than the default.
                let budget = std::env::var("FLUIDTALK_BENCH_FORECAST").unwrap_or_default();
                guest::guest(&bin, leads, &budget, guest).await
            }
            _ => unreachable!(),
        }
    }
    let machine = machine(pg.as_deref()).await;
    let mut md = format!(
        "## Benchmark, {}\n\n{}\n\n",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        machine_line(&machine)
    );
    let mut json = serde_json::json!({ "machine": machine, "quick": quick });
    for t in tables.iter().filter(|t| !t.is_empty()) {
        md += &t.markdown();
        json[t.key] = t.json();
    }
    println!("{md}");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&dir).expect("target/bench");
    std::fs::write(dir.join("bench.md"), &md).expect("write bench.md");
    std::fs::write(
        dir.join("bench.json"),
        serde_json::to_string_pretty(&json).expect("json"),
    )
    .expect("write bench.json");
    eprintln!("written: {}/bench.{{md,json}}", dir.display());
}

/// What the numbers were measured on.
async fn machine(pg: Option<&str>) -> serde_json::Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_gb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    let postgres = match pg {
        Some(url) => match sqlx::PgPool::connect(url).await {
            Ok(p) => sqlx::query_scalar::<_, String>("SHOW server_version")
                .fetch_one(&p)
                .await
                .unwrap_or_default(),
            Err(_) => String::new(),
        },
        None => String::new(),
    };
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    serde_json::json!({
        "cpu": cpu, "cores": cores, "memory_gb": (mem_gb * 10.0).round() / 10.0,
        "postgres": postgres, "sqlite": sqlite_version().await, "commit": commit,
        "postgres_over": "TCP (127.0.0.1)",
    })
}

async fn sqlite_version() -> String {
    match sqlx::SqlitePool::connect("sqlite::memory:").await {
        Ok(p) => sqlx::query_scalar::<_, String>("SELECT sqlite_version()")
            .fetch_one(&p)
            .await
            .unwrap_or_default(),
        Err(_) => String::new(),
    }
}

fn machine_line(m: &serde_json::Value) -> String {
    format!(
        "Machine: {} ({} cores, {} GB); PostgreSQL {} over TCP on 127.0.0.1; SQLite {}; commit {}.",
        m["cpu"].as_str().unwrap_or("?"),
        m["cores"],
        m["memory_gb"],
        m["postgres"]
            .as_str()
            .filter(|s| !s.is_empty())
            .unwrap_or("(not used)"),
        m["sqlite"].as_str().unwrap_or("?"),
        m["commit"].as_str().unwrap_or("?")
    )
}
