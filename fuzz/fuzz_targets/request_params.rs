//! Query strings, Last-Event-ID cursors, checkpoint and stream bodies, tokens file, webhook allow-list.
//! See `cloudstream_server::fuzzing::request_params`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    cloudstream_server::fuzzing::request_params(data);
});
