//! The baseline: the official Python client in a loop over SQLite (`python_client.py`),
//! sequential and with a thread pool, against the same simulator as the runner.

use crate::env;
use crate::report::{Table, num};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A Python with `fluidtalk==1.0.3`: `FLUIDTALK_PYTHON`, else the virtual environment the
/// cross-check test uses (`target/py-crosscheck`), made here if missing.
fn python() -> Result<PathBuf, String> {
    if let Ok(p) = std::env::var("FLUIDTALK_PYTHON") {
        return Ok(PathBuf::from(p));
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let venv = root.join("target/py-crosscheck");
    let py = venv.join("bin/python");
    if !py.exists() {
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status();
        if !made.is_ok_and(|s| s.success()) {
            return Err("python3 -m venv failed".into());
        }
    }
    let installed = Command::new(&py)
        .args(["-m", "pip", "install", "-q", "-r"])
        .arg(root.join("tests/py/requirements.txt"))
        .status();
    if !installed.is_ok_and(|s| s.success()) {
        return Err("pip install fluidtalk==1.0.3 failed (no access to PyPI?)".into());
    }
    Ok(py)
}

/// Leads per second of the official client at no latency, with `threads` threads.
async fn python_rate(py: &Path, leads: usize, threads: usize) -> Result<f64, String> {
    let url = env::sim(Duration::ZERO).await;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/bench/python_client.py");
    let db = dir.path().join("py.db");
    let out = tokio::process::Command::new(py)
        .arg(&script)
        .arg(&url)
        .arg(&db)
        .arg(leads.to_string())
        .arg(threads.to_string())
        .output()
        .await
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("python's output: {e}"))?;
    let sent = v["sent"].as_u64().unwrap_or(0) as usize;
    if sent != leads {
        return Err(format!("python sent {sent} of {leads}"));
    }
    Ok(leads as f64 / v["seconds"].as_f64().unwrap_or(f64::INFINITY))
}

/// The Python rows and the runner's ratios to them: `runner` is the runner's leads/s at
/// no latency on SQLite (concurrency 32, and 1).
pub async fn compare(leads: usize, runner: &[(usize, f64)], table: &mut Table) {
    let py = match python() {
        Ok(p) => p,
        Err(e) => {
            table.note(format!("the Python client could not be run: {e}"));
            return;
        }
    };
    for threads in [1usize, 32] {
        match python_rate(&py, leads, threads).await {
            Ok(rate) => {
                for (concurrency, r) in runner {
                    table.row(vec![
                        (
                            "python",
                            if threads == 1 {
                                "sequential loop".into()
                            } else {
                                format!("thread pool of {threads}").into()
                            },
                        ),
                        ("python_leads", leads.into()),
                        ("python_per_s", num(rate, 0)),
                        ("runner_concurrency", (*concurrency).into()),
                        ("runner_per_s", num(*r, 0)),
                        ("ratio", num(r / rate, 1)),
                    ]);
                    eprintln!("  {}", table.last_line());
                }
            }
            Err(e) => table.note(format!(
                "the Python client with {threads} thread(s) failed: {e}"
            )),
        }
    }
}
