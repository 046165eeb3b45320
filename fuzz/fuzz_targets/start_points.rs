//! Text grammars: start points, positions, sequences, times, checkpoint entries, provider URLs.
//! See `cloudstream::fuzzing::start_points`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    cloudstream::fuzzing::start_points(data);
});
