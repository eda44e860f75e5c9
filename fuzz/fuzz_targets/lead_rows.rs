//! Lead file rows, CSV and JSON Lines (the first byte picks): every row is a checked lead
//! or a rejection with its line, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fluidtalk_runner::fuzzing::lead_rows(data);
});
