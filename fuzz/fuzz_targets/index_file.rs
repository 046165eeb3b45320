//! Sparse offset and time index files: load, lookups, write back.
//! See `cloudstream_log::fuzzing::index_file`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    cloudstream_log::fuzzing::index_file(data);
});
