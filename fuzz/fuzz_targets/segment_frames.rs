//! Segment files: header check, frame scan, record decoding (also past a valid CRC).
//! See `cloudstream_log::fuzzing::segment_frames`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    cloudstream_log::fuzzing::segment_frames(data);
});
