//! The simulator's request parser: any method, path, content type and body gets an HTTP
//! answer, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fluidtalk_runner::fuzzing::sim_request(data);
});
