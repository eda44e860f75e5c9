//! The end-to-end rows of issue 21's table, and where each one's CPU went: the runner
//! processes (their user + system time), the simulator (this process), and the rest of
//! the machine (PostgreSQL's server processes, the kernel's other work). On a machine of
//! two cores a row whose busy share is near 100 % is bound by CPU, and the split says
//! whose.

use crate::report::{Table, num};
use std::path::Path;

/// CPU seconds used so far: (this process, its reaped children, the whole machine busy),
/// and the machine's total (busy + idle) in seconds of all its cores.
fn cpu_now() -> (f64, f64, f64, f64) {
    fn usage(who: i32) -> f64 {
        // SAFETY: getrusage writes into the zeroed struct given.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(who, &mut u) };
        let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
        t(u.ru_utime) + t(u.ru_stime)
    }
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let total: f64 = fields.iter().take(8).sum::<f64>() / ticks;
    // idle and iowait are not busy.
    let idle =
        (fields.get(3).copied().unwrap_or(0.0) + fields.get(4).copied().unwrap_or(0.0)) / ticks;
    (
        usage(libc::RUSAGE_SELF),
        usage(libc::RUSAGE_CHILDREN),
        total - idle,
        total,
    )
}

/// One row: `runners` processes of `run openers` over `leads` new leads at `latency_ms`.
#[allow(clippy::too_many_arguments)]
async fn row(
    bin: &Path,
    pg: Option<&str>,
    backend: &'static str,
    runners: usize,
    latency_ms: u64,
    concurrency: usize,
    leads: usize,
    table: &mut Table,
) {
    let prepared =
        crate::runs::openers(bin, backend, pg, latency_ms, concurrency, runners, leads).await;
    let before = cpu_now();
    let (cost, _, _db) = prepared.run().await;
    let after = cpu_now();
    let rate = leads as f64 / cost.seconds;
    let ideal =
        (latency_ms > 0).then(|| (runners * concurrency) as f64 * 1000.0 / latency_ms as f64);
    let (sim, runner, busy, total) = (
        after.0 - before.0,
        after.1 - before.1,
        after.2 - before.2,
        after.3 - before.3,
    );
    table.row(vec![
        ("backend", backend.into()),
        ("runners", runners.into()),
        ("latency_ms", latency_ms.into()),
        ("concurrency", concurrency.into()),
        ("leads", leads.into()),
        ("seconds", num(cost.seconds, 2)),
        ("leads_per_s", num(rate, 0)),
        (
            "of_ideal_pct",
            ideal.map_or(serde_json::Value::Null, |i| num(100.0 * rate / i, 1)),
        ),
        ("machine_busy_pct", num(100.0 * busy / total.max(1e-9), 0)),
        (
            "runner_cpu_ms_per_lead",
            num(1000.0 * runner / leads as f64, 3),
        ),
        ("sim_cpu_ms_per_lead", num(1000.0 * sim / leads as f64, 3)),
        (
            "other_cpu_ms_per_lead",
            num(1000.0 * (busy - runner - sim).max(0.0) / leads as f64, 3),
        ),
    ]);
    eprintln!("  {}", table.last_line());
}

/// Issue 21's rows: 20,000 leads at 0 ms (one runner on SQLite, three on PostgreSQL over
/// TCP), and at 100 ms latency concurrency 32 and 128 with one runner on each backend and
/// three on PostgreSQL, sized to take about 12 s at the ideal rate; batch 500.
pub async fn targets(bin: &Path, pg: Option<&str>, quick: bool, table: &mut Table) {
    let zero = if quick { 5_000 } else { 20_000 };
    row(bin, pg, "sqlite", 1, 0, 32, zero, table).await;
    if pg.is_some() {
        row(bin, pg, "postgres", 1, 0, 32, zero, table).await;
        row(bin, pg, "postgres", 3, 0, 32, zero, table).await;
    }
    let seconds = if quick { 3.0 } else { 12.0 };
    let mut setups = vec![("sqlite", 1)];
    if pg.is_some() {
        setups.extend([("postgres", 1), ("postgres", 3)]);
    }
    for (backend, runners) in setups {
        for concurrency in [32usize, 128] {
            let leads = ((runners * concurrency) as f64 * 10.0 * seconds) as usize;
            row(bin, pg, backend, runners, 100, concurrency, leads, table).await;
        }
    }
}
