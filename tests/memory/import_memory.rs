//! A large import streams: 100,000 rows go through the real binary within a fixed memory
//! bound (the same bound holds for a million: the file is read row by row and written in
//! batches of 1,000). The peak RSS is the import process's own, read by `wait4`
//! (`common::output_with_peak_rss`), from this
//! small test binary (`main.rs` says why).

use crate::common;

use std::io::Write;

#[test]
fn a_100k_row_import_stays_within_a_memory_bound() {
    const ROWS: usize = 100_000;
    // The streaming import peaks near 30 MiB (binary, SQLite cache, one batch); holding
    // the ~20 MiB file's rows in memory at once would take several times the file size.
    const BOUND_MIB: i64 = 48;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("big.csv");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).expect("create"));
    writeln!(file, "target,own_username,timezone,profile_image,tags").expect("write");
    for i in 0..ROWS {
        writeln!(
            file,
            "@lead_{i:07},@acct_{},Europe/Berlin,\
             https://cdn.example.com/profiles/lead_{i:07}/avatar-large.jpg?v=20261124,\
             batch-{};spring-campaign;imported-from-crm;priority-{}",
            i % 7,
            i / 1000,
            i % 5
        )
        .expect("write");
    }
    file.flush().expect("flush");
    drop(file);
    let file_mib = std::fs::metadata(&path).expect("metadata").len() / (1 << 20);

    let (out, peak_kib) =
        common::output_with_peak_rss(common::bin().args(["leads", "import"]).arg(&path).env(
            "DATABASE_URL",
            format!("sqlite://{}", dir.path().join("big.db").display()),
        ));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("imported {ROWS}, updated 0, rejected 0")
    );
    let peak_mib = peak_kib / 1024;
    eprintln!("import of {ROWS} rows ({file_mib} MiB file): peak RSS {peak_mib} MiB");
    assert!(peak_mib > 0, "the measurement saw the import");
    assert!(
        peak_mib < BOUND_MIB,
        "peak RSS {peak_mib} MiB is over the {BOUND_MIB} MiB bound"
    );
}
