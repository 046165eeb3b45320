//! Partition recovery at open (sealed and active segments, index files), then reads.
//! See `cloudstream_log::fuzzing::segment_recovery`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    cloudstream_log::fuzzing::segment_recovery(data);
});
