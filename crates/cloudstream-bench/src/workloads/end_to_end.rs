//! (d) End-to-end latency at a fixed rate: events sent on a schedule, whatever is still in
//! flight (open loop), and timed from when each was due to when a consumer has it.

use std::time::Duration;

use anyhow::Result;

use super::drive::{base, limited, payload, producers, stream_name, Readers};
use super::{row, Settings};
use crate::measure::{Percentiles, Window};
use crate::peer::Peer;
use crate::report::Report;

/// Senders, each sending its share of the schedule one event at a time: the rate holds
/// while an acknowledgement takes under `SENDERS / rate` (5 ms at 50,000 events/s).
const SENDERS: usize = 256;
/// How long past the window a sender may still be catching up before it gives up (what it
/// did not send counts as not sustained).
const GRACE: Duration = Duration::from_secs(2);

/// (d) 100 B events at `rate` events/s, 4 partitions, 4 consumers.
pub(super) async fn at_rate(
    peer: &dyn Peer,
    s: &Settings,
    report: &mut Report,
    rate: u64,
) -> Result<()> {
    let stream = stream_name("d", rate);
    peer.create(&stream, 4).await?;
    let senders = producers(peer, &stream, 4, SENDERS).await?;
    // Events are due from `first` (everything is connected by then), measured from `start`
    // (after the warm-up) to `until`.
    let first = base().elapsed() + Duration::from_millis(100);
    let start = first + s.warmup;
    let until = start + s.window;
    let readers = Readers::four(peer, &stream, 4, Some((start, until))).await?;
    let tasks: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(k, mut producer)| {
            tokio::spawn(async move {
                let key = format!("k{k}");
                let (mut i, mut sent, mut late) = (k as u64, 0u64, Vec::new());
                loop {
                    let due = first + Duration::from_nanos(i * 1_000_000_000 / rate);
                    if due > until || base().elapsed() > until + GRACE {
                        return Ok::<_, anyhow::Error>((sent, late));
                    }
                    tokio::time::sleep_until((base() + due).into()).await;
                    // How late the harness itself issued it (timer granularity, a busy
                    // machine): part of the latency measured, reported beside it.
                    late.push(base().elapsed().saturating_sub(due));
                    limited("a send", producer.send(Some(&key), payload(100, due))).await?;
                    (i, sent) = (i + SENDERS as u64, sent + 1);
                }
            })
        })
        .collect();
    tokio::time::sleep_until((base() + start).into()).await;
    let window = Window::start(peer.pid());
    tokio::time::sleep_until((base() + until).into()).await;
    let usage = window.finish();
    let (mut sent, mut late) = (0, Vec::new());
    for task in tasks {
        let (n, l) = task.await??;
        sent += n;
        late.extend(l);
    }
    let (latencies, read) = readers.drain(sent).await?;
    let due = (s.window.as_secs_f64() * rate as f64).round() as u64;
    let seen = latencies.len() as u64;
    let lateness = Percentiles::of(late).map_or(String::new(), |p| {
        format!(
            "sends issued late by p50 {:.0} µs, p99 {:.0} µs",
            p.p50_us, p.p99_us
        )
    });
    let mut out = row(
        peer,
        "d",
        format!("{rate} ev/s"),
        seen,
        s.window.as_secs_f64(),
        100,
        Percentiles::of(latencies),
        usage,
    );
    out.note = if seen * 100 < due * 95 || read < sent {
        format!("NOT SUSTAINED: {seen} of {due} events due in the window consumed; {lateness}")
    } else {
        lateness
    };
    report.add(out);
    Ok(())
}
