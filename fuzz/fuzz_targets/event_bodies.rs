//! Event bodies: JSON event, JSON array, NDJSON, CloudEvents structured, batch and binary, raw.
//! See `cloudstream_server::fuzzing::event_bodies`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    cloudstream_server::fuzzing::event_bodies(data);
});
