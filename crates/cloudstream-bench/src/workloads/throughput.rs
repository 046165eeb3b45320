//! The closed-loop workloads: (a) batches to one partition, (b) 16 partitions with
//! consumers following, (c) single durable sends from many writers.

use anyhow::{ensure, Result};

use super::drive::{closed_loop, producers, stream_name, Call, Readers};
use super::{row, Settings};
use crate::measure::Percentiles;
use crate::peer::Peer;
use crate::report::Report;

/// (a) One partition, 100 B events in batches of `batch`, one producer.
pub(super) async fn batches(
    peer: &dyn Peer,
    s: &Settings,
    report: &mut Report,
    batch: usize,
) -> Result<()> {
    let call = Call::Batch {
        size: 100,
        events: batch,
    };
    measure(peer, s, report, ("a", format!("batch {batch}")), 1, 1, call).await
}

/// (c) Single 100 B sends from `writers` concurrent writers, each keyed, 4 partitions.
pub(super) async fn singles(
    peer: &dyn Peer,
    s: &Settings,
    report: &mut Report,
    writers: usize,
) -> Result<()> {
    let call = Call::One {
        size: 100,
        keyed: true,
    };
    measure(
        peer,
        s,
        report,
        ("c", format!("{writers} writers")),
        4,
        writers,
        call,
    )
    .await
}

/// A closed loop of `call` by `producers` to a new stream of `partitions`: one row.
async fn measure(
    peer: &dyn Peer,
    s: &Settings,
    report: &mut Report,
    (workload, setting): (&'static str, String),
    partitions: u32,
    producers_n: usize,
    call: Call,
) -> Result<()> {
    let stream = stream_name(workload, &setting);
    peer.create(&stream, partitions).await?;
    let producers = producers(peer, &stream, partitions, producers_n).await?;
    let tally = closed_loop(producers, call, s, peer.pid(), None).await?;
    let latency = Percentiles::of(tally.latencies);
    let seconds = s.window.as_secs_f64();
    report.add(row(
        peer,
        workload,
        setting,
        tally.events,
        seconds,
        call.size(),
        latency,
        tally.usage,
    ));
    Ok(())
}

/// (b) 16 partitions, 1 KiB events, 4 producers of unkeyed batches of 100, 4 consumers
/// following: a row for what was produced, and one for what was consumed meanwhile.
pub(super) async fn sixteen_partitions(
    peer: &dyn Peer,
    s: &Settings,
    report: &mut Report,
) -> Result<()> {
    let stream = stream_name("b", "16");
    peer.create(&stream, 16).await?;
    let readers = if peer.follows() {
        Some(Readers::four(peer, &stream, 16, None).await?)
    } else {
        None
    };
    let producers = producers(peer, &stream, 16, 4).await?;
    let count = readers.as_ref().map(|r| r.count.as_ref());
    let tally = closed_loop(
        producers,
        Call::Batch {
            size: 1024,
            events: 100,
        },
        s,
        peer.pid(),
        count,
    )
    .await?;
    let seconds = s.window.as_secs_f64();
    let (acknowledged, consumed, usage) = (tally.acknowledged, tally.consumed, tally.usage.clone());
    report.add(row(
        peer,
        "b",
        "16 partitions, produce".into(),
        tally.events,
        seconds,
        1024,
        Percentiles::of(tally.latencies),
        tally.usage,
    ));
    let Some(readers) = readers else {
        return Ok(());
    };
    let (_, read) = readers.drain(acknowledged).await?;
    ensure!(
        read >= acknowledged,
        "{}: consumers read {read} of {acknowledged} events within 30 s",
        peer.name()
    );
    let mut consumed = row(
        peer,
        "b",
        "16 partitions, consume".into(),
        consumed,
        seconds,
        1024,
        None,
        usage,
    );
    consumed.note = "read while producing, in the same window (CPU as in the produce row)".into();
    report.add(consumed);
    Ok(())
}
