//! Bodies the http:// client reads: errors, records and every typed answer.
//! See `cloudstream::fuzzing::wire_bodies`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    cloudstream::fuzzing::wire_bodies(data);
});
