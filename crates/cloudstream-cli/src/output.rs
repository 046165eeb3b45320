//! How records and descriptions are printed: a readable line, or JSON.

use cloudstream::wire::{base64_encode, record_json};
use cloudstream::Record;

/// Writes one line to stdout. A closed pipe (`cloudstream read s | head`) is an error the
/// caller ends quietly on, never a panic.
pub(crate) fn emit(line: impl std::fmt::Display) -> std::io::Result<()> {
    use std::io::Write;
    writeln!(std::io::stdout().lock(), "{line}")
}

/// One line per record.
pub(crate) fn print_record(r: &Record, as_json: bool) -> std::io::Result<()> {
    if as_json {
        return emit(record_json(r));
    }
    let payload = match std::str::from_utf8(&r.event.payload) {
        Ok(text) => text.to_owned(),
        Err(_) => format!("base64:{}", base64_encode(&r.event.payload)),
    };
    let key = r
        .event
        .key
        .as_deref()
        .map(|k| format!(" key={k}"))
        .unwrap_or_default();
    emit(format_args!(
        "{}\t{}{}\t{}",
        r.position,
        humantime::format_rfc3339_millis(r.append_time),
        key,
        payload
    ))
}
