//! What the overhead benches share: their command-line numbers and the median of rounds.

/// The `n`th number on the command line (flags skipped), or `default`.
pub(crate) fn arg(n: usize, default: usize) -> usize {
    std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

/// The median of the rounds' figures.
#[allow(dead_code)] // not every bench uses every helper
pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// cloudstream's side of a send bench: `events` events of 100 bytes sent to partition 0's
/// stream as `send_batch` calls of `batch`; events per second.
#[allow(dead_code)] // not every bench uses every helper
pub(crate) async fn send_batches(stream: &cloudstream::Stream, events: usize, batch: usize) -> f64 {
    let started = std::time::Instant::now();
    for chunk in 0..events.div_ceil(batch) {
        let n = batch.min(events - chunk * batch);
        let batch: Vec<cloudstream::Event> = (0..n)
            .map(|_| cloudstream::Event::new(vec![b'x'; 100]))
            .collect();
        let results = stream.send_batch(batch).await;
        assert!(results.iter().all(Result::is_ok), "send_batch failed");
    }
    events as f64 / started.elapsed().as_secs_f64()
}

/// cloudstream's side of a read bench: partition 0 read from the oldest record, 10,000
/// records per call, until `events` were read; events per second.
#[allow(dead_code)] // not every bench uses every helper
pub(crate) async fn catch_up(stream: &cloudstream::Stream, events: usize) -> f64 {
    use cloudstream::ReadFrom;
    let options = cloudstream::backend::ReadOptions {
        max_records: 10_000,
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let (mut next, mut seen) = (ReadFrom::Earliest, 0);
    while seen < events {
        let records = stream.read_with(0, next, &options).await.expect("read");
        let Some(last) = records.last() else { break };
        next = ReadFrom::After(last.position);
        seen += records.len();
        std::hint::black_box(&records);
    }
    events as f64 / started.elapsed().as_secs_f64()
}
