//! The API answer decoder: any status, `Retry-After` and body is a typed result or a
//! classified error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fluidtalk_runner::fuzzing::api_answer(data);
});
