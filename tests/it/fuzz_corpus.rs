//! The fuzz targets' seed corpus and every input a fuzzer once crashed on, replayed in
//! `cargo test` through the same functions the targets run (`fluidtalk_runner::fuzzing`):
//! a crash fixed once stays fixed. Fuzzing itself: see CONTRIBUTING.md ("Fuzzing").

use fluidtalk_runner::fuzzing;
use std::path::{Path, PathBuf};

/// Every file under `fuzz/corpus/TARGET` and `fuzz/regressions/TARGET`.
fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut out = Vec::new();
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.is_file() {
                let data = std::fs::read(&path).expect("read an input");
                out.push((path, data));
            }
        }
    }
    out.sort();
    assert!(
        !out.is_empty(),
        "no inputs for {target}: the seed corpus is missing"
    );
    out
}

#[test]
fn the_campaign_file_parser_takes_every_saved_input() {
    let mut parsed = 0;
    for (path, data) in inputs("campaign_file") {
        if let Ok(text) = std::str::from_utf8(&data)
            && fuzzing::campaign_file(text).is_ok()
        {
            parsed += 1;
        }
        let _ = path;
    }
    assert!(parsed >= 2, "the seeds are valid campaign files");
}

#[test]
fn lead_rows_take_every_saved_input() {
    let rows: usize = inputs("lead_rows")
        .iter()
        .map(|(_, d)| fuzzing::lead_rows(d))
        .sum();
    assert!(rows >= 4, "the seeds hold rows: {rows}");
}

#[test]
fn the_api_answer_decoder_takes_every_saved_input() {
    for (_, data) in inputs("api_answer") {
        fuzzing::api_answer(&data);
    }
}

#[test]
fn the_simulator_answers_every_saved_request() {
    for (path, data) in inputs("sim_request") {
        let status = fuzzing::sim_request(&data);
        assert!((200..600).contains(&status), "{}: {status}", path.display());
    }
}
