//! The campaign file parser: any text is either a checked `Config` or a located error,
//! never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = fluidtalk_runner::fuzzing::campaign_file(text);
    }
});
