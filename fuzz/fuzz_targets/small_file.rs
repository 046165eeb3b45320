//! Small atomic files: consumer checkpoints and stream.meta.
//! See `cloudstream_log::fuzzing::small_file`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    cloudstream_log::fuzzing::small_file(data);
});
