//! The server's webhooks.json and the body of PUT .../webhooks/{id}.
//! See `cloudstream_server::fuzzing::webhook_store`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    cloudstream_server::fuzzing::webhook_store(data);
});
