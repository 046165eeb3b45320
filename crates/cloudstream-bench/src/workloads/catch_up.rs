//! (e) Reading back a partition of many 100 B events from the earliest.

use std::time::Duration;

use anyhow::{bail, Result};

use super::drive::{limited, payload, producers, stream_name};
use super::{row, Settings};
use crate::measure::Window;
use crate::peer::Peer;
use crate::report::Report;

/// Events per preload batch.
const BATCH: u64 = 1_000;

/// (e) Preloads `events` (the run's, or fewer where the peer caps it) with producers of
/// batches (not measured), then reads them all back with one consumer.
pub(super) async fn read_back(peer: &dyn Peer, s: &Settings, report: &mut Report) -> Result<()> {
    let events = peer
        .catch_up_cap()
        .map_or(s.catch_up, |cap| cap.min(s.catch_up));
    let stream = stream_name("e", events);
    peer.create(&stream, 1).await?;
    let writers = peer.preload_producers();
    let loads: Vec<_> = producers(peer, &stream, 1, writers)
        .await?
        .into_iter()
        .enumerate()
        .map(|(i, mut producer)| {
            // Producer i sends the batches i, i + writers, ...; the last may be short.
            let mine: Vec<u64> = (0..events.div_ceil(BATCH))
                .filter(|b| b % writers as u64 == i as u64)
                .map(|b| BATCH.min(events - b * BATCH))
                .collect();
            tokio::spawn(async move {
                for n in mine {
                    let batch = vec![payload(100, Duration::ZERO); n as usize];
                    limited("a preload batch", producer.send_batch(None, batch)).await?;
                }
                Ok::<_, anyhow::Error>(())
            })
        })
        .collect();
    for load in loads {
        load.await??;
    }
    let mut consumer = peer.consumer(&stream, 1, 0, 1).await?;
    let window = Window::start(peer.pid());
    let (mut read, mut idle) = (0u64, 0);
    while read < events {
        let n = limited("a read", consumer.poll()).await?.len() as u64;
        read += n;
        idle = if n == 0 { idle + 1 } else { 0 };
        if idle > 50 {
            bail!(
                "{} read {read} of {events} events, then nothing for 50 polls",
                peer.name()
            );
        }
    }
    let usage = window.finish();
    let seconds = usage.seconds;
    let mut out = row(
        peer,
        "e",
        format!("{events} events"),
        read,
        seconds,
        100,
        None,
        usage,
    );
    out.note = "warm page cache".into();
    report.add(out);
    Ok(())
}
