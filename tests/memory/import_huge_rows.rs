//! Issue 19 defect 6: a 250 MB CSV of two rows (a 200 MB `profile_image`, a 50 MB
//! `own_username`) was imported with exit 0 at 4.3 GB of memory. The reader keeps at most
//! one row's bound (`lead::fields::ROW_BYTES`) of a record: each row is refused, naming
//! its field and limit, without a whole field ever being held, and the rows around them
//! are imported. The same for a JSON line. The peak RSS is each import process's own, read
//! by `wait4` (`common::output_with_peak_rss`), from this
//! small test binary (`main.rs` says why).

use crate::common;

use std::io::Write;

/// Writes `n` bytes of `byte` in 1 MiB pieces.
fn fill(out: &mut impl Write, byte: u8, n: usize) {
    let piece = vec![byte; 1 << 20];
    let mut left = n;
    while left > 0 {
        let k = left.min(piece.len());
        out.write_all(&piece[..k]).expect("write");
        left -= k;
    }
}

/// Imports `file`: its output and the import process's peak RSS in KiB.
fn import(dir: &std::path::Path, file: &std::path::Path) -> (std::process::Output, i64) {
    common::output_with_peak_rss(
        common::bin()
            .args(["leads", "import", "--json"])
            .arg(file)
            .current_dir(dir)
            .env(
                "DATABASE_URL",
                format!("sqlite://{}", dir.join("leads.db").display()),
            ),
    )
}

#[test]
fn rows_of_hundreds_of_megabytes_are_refused_row_by_row_in_bounded_memory() {
    // The binary with SQLite open peaks near 30 MiB; holding either field would take
    // 50 to 200 MiB at least (the old reader took 4.3 GB).
    const BOUND_MIB: i64 = 48;
    const MB: usize = 1_000_000;
    let dir = tempfile::tempdir().expect("temp dir");

    let csv = dir.path().join("huge.csv");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&csv).expect("create"));
    out.write_all(
        b"target,own_username,profile_image\n@before,,\n@big_image,,https://cdn.example.com/",
    )
    .expect("write");
    fill(&mut out, b'a', 200 * MB);
    out.write_all(b"\n@big_name,\"").expect("write");
    // Quoted, with line breaks inside: the record's end is found as CSV sees it.
    for _ in 0..50 {
        fill(&mut out, b'n', MB - 1);
        out.write_all(b"\n").expect("write");
    }
    out.write_all(b"\",\n@after,,\n").expect("write");
    out.flush().expect("flush");
    drop(out);

    let (out, csv_peak_kib) = import(dir.path(), &csv);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(report["imported"], 2, "{report}");
    assert_eq!(report["rejected"], 2, "{report}");
    let reasons = &report["rejections"];
    assert_eq!(reasons[0]["line"], 3, "{report}");
    assert_eq!(
        reasons[0]["reason"],
        "profile_image is over 262144 bytes (the row was not read further); the limit is 2048 characters"
    );
    assert_eq!(reasons[1]["line"], 4, "{report}");
    assert_eq!(
        reasons[1]["reason"],
        "own_username is over 262144 bytes (the row was not read further); the limit is 255 characters"
    );

    // A JSON line of 60 MB, between two good ones.
    let jsonl = dir.path().join("huge.jsonl");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&jsonl).expect("create"));
    out.write_all(b"{\"target\": \"@j1\"}\n{\"target\": \"@j2\", \"tags\": [\"a\", \"")
        .expect("write");
    fill(&mut out, b't', 60 * MB);
    out.write_all(b"\"]}\n{\"target\": \"@j3\"}\n")
        .expect("write");
    out.flush().expect("flush");
    drop(out);
    let (out, jsonl_peak_kib) = import(dir.path(), &jsonl);
    assert!(out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(report["imported"], 2, "{report}");
    assert_eq!(report["rejections"][0]["line"], 2, "{report}");
    assert_eq!(
        report["rejections"][0]["reason"],
        "tags is over 262144 bytes (the row was not read further); the limit is 50 tags of 100 characters"
    );

    let peak_mib = csv_peak_kib.max(jsonl_peak_kib) / 1024;
    eprintln!("imports of a 250 MB CSV and a 60 MB JSON line: peak RSS {peak_mib} MiB");
    assert!(
        csv_peak_kib > 0 && jsonl_peak_kib > 0,
        "the measurement saw both imports"
    );
    assert!(
        peak_mib < BOUND_MIB,
        "peak RSS {peak_mib} MiB is over the {BOUND_MIB} MiB bound"
    );
}
