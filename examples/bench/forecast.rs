//! The forecast's cost: `forecast --days 14 --json` of the release binary over the rows
//! of issue 21 (10,000 leads at 500 a day, 20,000 at 2,000 a day, 100,000 at 5,000 a
//! day; the same two jobs), on SQLite and PostgreSQL. It runs the real runner in virtual
//! time, so its cost is the calls it simulates (plus copying the leads), not the days,
//! and the cost of a call (`us_per_call`) should not grow with the campaign.

use crate::env::{self, Db};
use crate::report::{Table, num};
use std::path::Path;
use std::time::Instant;

/// Openers at 09:00 with a cap of `cap` a day, 50 calls a second; follow-ups at 15:00
/// after 23 quiet hours, two at most.
fn campaign(dir: &Path, cap: u64) -> std::path::PathBuf {
    let path = dir.join(format!("forecast-{cap}.toml"));
    let text = format!(
        "[limits]\nconcurrency = 16\nper_second = 50\n\
         [[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"0 0 9 * * *\"\ndaily_cap = {cap}\nbatch_size = 500\n\
         [[job]]\nname = \"follow-ups\"\nkind = \"follow_up\"\nschedule = \"0 0 15 * * *\"\nquiet_after = [\"23h\"]\nmax_follow_ups = 2\n"
    );
    std::fs::write(&path, text).expect("write the campaign file");
    path
}

/// The rows: leads, and the openers' daily cap.
pub const ROWS: &[(u64, u64)] = &[(10_000, 500), (20_000, 2_000), (100_000, 5_000)];

pub async fn forecast(bin: &Path, pg: Option<&str>, rows: &[(u64, u64)], table: &mut Table) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut backends = vec!["sqlite"];
    if pg.is_some() {
        backends.push("postgres");
    }
    for backend in backends {
        for &(leads, cap) in rows {
            let db = Db::new(backend, pg).await;
            db.fill(leads).await;
            let file = campaign(dir.path(), cap);
            let mut cmd =
                env::command(bin, &db.url, &file, &["forecast", "--days", "14", "--json"]);
            cmd.stdout(std::process::Stdio::piped());
            let started = Instant::now();
            let out = tokio::task::spawn_blocking(move || cmd.output())
                .await
                .expect("join")
                .expect("run the forecast");
            let seconds = started.elapsed().as_secs_f64();
            assert!(
                out.status.success(),
                "forecast failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let days: Vec<serde_json::Value> =
                serde_json::from_slice(&out.stdout).expect("the forecast's JSON");
            let calls: u64 = days
                .iter()
                .map(|d| {
                    let follow_ups: u64 = d["follow_ups"]
                        .as_object()
                        .map_or(0, |m| m.values().filter_map(|v| v.as_u64()).sum());
                    d["openers"].as_u64().unwrap_or(0) + follow_ups
                })
                .sum();
            table.row(vec![
                ("backend", backend.into()),
                ("leads", leads.into()),
                ("daily_cap", cap.into()),
                ("days", 14u64.into()),
                ("calls_simulated", calls.into()),
                ("seconds", num(seconds, 1)),
                ("calls_per_s", num(calls as f64 / seconds, 0)),
                ("us_per_call", num(seconds * 1e6 / calls.max(1) as f64, 0)),
            ]);
            eprintln!("  {}", table.last_line());
        }
    }
}
