//! The fuzz targets' bodies (`fuzz/fuzz_targets/*`), kept in the library so the same code
//! also runs in `cargo test`: `tests/it/fuzz_corpus.rs` replays the seed corpus and every
//! input a fuzzer ever crashed on (`fuzz/regressions/`). Each function must return
//! normally for any input; a panic is the bug a fuzzer reports.

use crate::fluidtalk::{ActionResult, ChatResult, UploadResult, decode_answer};
use crate::import::{Format, Rows};
use crate::sim::{SimConfig, Simulator};
use std::path::Path;

/// The campaign file parser on `text`.
pub fn campaign_file(text: &str) -> Result<crate::config::Config, crate::config::ConfigError> {
    crate::config::parse(Path::new("fuzz/jobs.toml"), text)
}

/// Every row of a lead file: CSV when the first byte is even, JSON Lines when odd.
pub fn lead_rows(data: &[u8]) -> usize {
    let Some((first, body)) = data.split_first() else {
        return 0;
    };
    let format = if first % 2 == 0 {
        Format::Csv
    } else {
        Format::Jsonl
    };
    let reader: Box<dyn std::io::Read + Send> = Box::new(std::io::Cursor::new(body.to_vec()));
    let Ok(mut rows) = Rows::from_reader(format, Path::new("fuzz.csv"), reader) else {
        return 0;
    };
    let mut n = 0;
    while let Ok(Some((_line, row))) = rows.next_row() {
        if let Ok(lead) = row {
            // A checked lead is what the store is promised.
            assert!(!lead.target.is_empty() && !lead.target.chars().any(char::is_control));
        }
        n += 1;
    }
    n
}

/// An API answer: two bytes of status, a `Retry-After` line, then the body; decoded as
/// each of the results the client reads.
pub fn api_answer(data: &[u8]) {
    let status = match data {
        [a, b, ..] => 100 + u16::from_be_bytes([*a, *b]) % 500,
        _ => 200,
    };
    let rest = data.get(2..).unwrap_or_default();
    let (retry_after, body) = match rest.iter().position(|b| *b == b'\n') {
        Some(i) => (std::str::from_utf8(&rest[..i]).ok(), &rest[i + 1..]),
        None => (None, rest),
    };
    let _ = decode_answer::<ActionResult>("/api/v1/bot/action", status, retry_after, body);
    let _ = decode_answer::<ChatResult>("/api/v1/bot/chat", status, retry_after, body);
    if let Err(e) = decode_answer::<UploadResult>("/api/v1/bot/upload", status, retry_after, body) {
        // What the runner reads of an error, all of it.
        let _ = (e.kind().class(), e.detail(), e.retry_after(), e.to_string());
    }
}

/// A request to the simulator: a method and path chosen by the first byte, a content type
/// by the second, the rest as the body.
pub fn sim_request(data: &[u8]) -> u16 {
    use tower::ServiceExt;
    let (choice, kind, body) = match data {
        [a, b, rest @ ..] => (*a, *b, rest.to_vec()),
        _ => return 0,
    };
    let paths = [
        "/api/v1/bot/action",
        "/api/v1/bot/chat",
        "/api/v1/bot/upload",
        "/_sim/tokens",
        "/_sim/log",
    ];
    let path = paths[usize::from(choice) % paths.len()];
    let method = if choice & 0x80 == 0 { "POST" } else { "GET" };
    let content_type = match kind % 4 {
        0 => "application/x-www-form-urlencoded",
        1 => "multipart/form-data; boundary=XyZ",
        2 => "application/json",
        _ => "multipart/form-data",
    };
    let Ok(request) = axum::http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", content_type)
        .header("x-api-key", "ft_sk_fuzz")
        .body(axum::body::Body::from(body))
    else {
        return 0;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build();
    let Ok(runtime) = runtime else { return 0 };
    let sim = Simulator::new(SimConfig::default());
    runtime.block_on(async {
        match sim.router().oneshot(request).await {
            Ok(response) => response.status().as_u16(),
            Err(never) => match never {},
        }
    })
}
