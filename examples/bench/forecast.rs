//! The forecast's cost: `forecast --days 14 --json` of the release binary over 10,000 and
//! 100,000 leads, on SQLite and PostgreSQL. It runs the real runner in virtual time, so
//! its cost is the calls it simulates (plus copying the leads), not the days.

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

pub async fn forecast(bin: &Path, pg: Option<&str>, sizes: &[u64], table: &mut Table) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut backends = vec!["sqlite"];
    if pg.is_some() {
        backends.push("postgres");
    }
    for backend in backends {
        for &leads in sizes {
            let db = Db::new(backend, pg).await;
            db.fill(leads).await;
            let cap = leads / 20;
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
            ]);
            eprintln!("  {}", table.last_line());
        }
    }
}
