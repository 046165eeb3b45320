//! What the delivery tests share.

#![allow(dead_code)] // each test file uses part of it

use std::future::Future;
use std::time::Duration;

use cloudstream::deliver::{Compression, Format};
use cloudstream::{Position, Stream};

/// Runs `cycles` deliveries of `stream` to `sink`, each after `send(cycle)` has sent more
/// events and each aborted at another point (files written, checkpoints maybe not), as a
/// process killed mid-delivery would be; returns every position sent.
pub(crate) async fn abort_again_and_again<F, Fut>(
    stream: &Stream,
    sink: &str,
    format: Format,
    cycles: usize,
    send: F,
) -> Vec<Position>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Vec<Position>>,
{
    let mut sent = Vec::new();
    for cycle in 0..cycles {
        sent.extend(send(cycle).await);
        let run = tokio::spawn(
            stream
                .deliver_to(sink)
                .format(format)
                .compression(Compression::Zstd)
                .max_wait(Duration::from_millis(20))
                .max_records(97)
                .run_until(std::future::pending()),
        );
        tokio::time::sleep(Duration::from_millis(20 + (cycle as u64 * 37) % 180)).await;
        run.abort();
        let _ = run.await;
    }
    sent
}
