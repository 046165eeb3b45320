//! `stream.aggregate(...)`: an [`Aggregation`] run as a consumer of the shared runtime (an
//! `on_batch` trigger), its results sent as events to an output stream, its late records
//! optionally to a side stream, its state kept in an object store with the input position.
//!
//! Per batch of an input partition: push the records, send the results, save the lane
//! ([`super::lane`]), and only then let the checkpoint move. A crash anywhere leaves the
//! saved state at or behind the checkpoint's records; records the state has seen are
//! skipped, the others computed again, and events the output already holds not sent again.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;

use super::lane::{Lane, Names, LATE_FROM};
use super::Aggregation;
use crate::deliver::sink::Sink;
use crate::{
    BatchReport, Error, Event, Record, Result, RetryPolicy, StartAt, Stream, TriggerReport,
};

/// Is told of every batch's outcome.
type Observer = Arc<dyn Fn(&BatchReport) + Send + Sync>;

/// A windowed aggregation of a stream into another: configure it, then
/// [`Aggregate::run_until`].
pub struct Aggregate {
    input: Stream,
    spec: Aggregation,
    output: Stream,
    late: Option<Stream>,
    state_url: String,
    consumer: String,
    max_records: usize,
    max_wait: Duration,
    start: StartAt,
    observers: Vec<Observer>,
}

impl std::fmt::Debug for Aggregate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aggregate")
            .field("input", &self.input.name())
            .field("output", &self.output.name())
            .field("late", &self.late.as_ref().map(Stream::name))
            .field("state", &crate::deliver::shown_sink(&self.state_url))
            .field("consumer", &self.consumer)
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

impl Stream {
    /// A windowed aggregation of this stream whose results go to `output` as JSON events
    /// (`window_start`, `window_end`, the group's fields, each measure), and whose state is
    /// kept in the object store `state` names (`file:///DIR`, `s3://BUCKET/PREFIX`, ... as
    /// for [`Stream::deliver_to`]). Its consumer is `aggregate` unless
    /// [`Aggregate::consumer`] names another.
    ///
    /// Each input partition is aggregated on its own, in order: group by fields the
    /// stream's keys determine (the device of a stream keyed by device) for one result per
    /// window and group; otherwise each partition gives its own.
    pub fn aggregate(&self, spec: Aggregation, output: &Stream, state: &str) -> Aggregate {
        Aggregate {
            input: self.clone(),
            spec,
            output: output.clone(),
            late: None,
            state_url: state.to_owned(),
            consumer: "aggregate".to_owned(),
            max_records: 10_000,
            max_wait: Duration::from_secs(1),
            start: StartAt::Earliest,
            observers: Vec::new(),
        }
    }
}

impl Aggregate {
    /// The consumer whose checkpoints (and saved state) the aggregation keeps (default
    /// `aggregate`): two aggregations of one stream need two names.
    pub fn consumer(mut self, name: &str) -> Self {
        self.consumer = name.to_owned();
        self
    }

    /// Sends records that come after their windows closed to `late`, as they were, with the
    /// `cloudstream-late-from` header giving their input position. Without it they are
    /// only counted.
    pub fn late_to(mut self, late: &Stream) -> Self {
        self.late = Some(late.clone());
        self
    }

    /// Most records per batch, and so between two saves of the state (default 10,000).
    pub fn batch_size(mut self, n: usize) -> Self {
        self.max_records = n.max(1);
        self
    }

    /// How long a batch gathers records after its first one (default 1 s): how long a
    /// closed window may wait for its results to be sent.
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.max_wait = wait;
        self
    }

    /// Where the aggregation starts when its consumer has no checkpoint (default earliest).
    pub fn start_at(mut self, start: StartAt) -> Self {
        self.start = start;
        self
    }

    /// Tells `observer` of every batch's outcome, as [`crate::Trigger::observe`] does.
    pub fn observe(mut self, observer: impl Fn(&BatchReport) + Send + Sync + 'static) -> Self {
        self.observers.push(Arc::new(observer));
        self
    }

    /// Runs until `shutdown` completes. A batch that fails (a target or the state store
    /// down) is retried with backoff, up to a minute apart, for as long as it fails: the
    /// aggregation stalls, it never skips. `InvalidArgument` at once when the spec cannot be
    /// computed or the state store holds another aggregation's state.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> Result<TriggerReport> {
        self.spec.check()?;
        if self.output.name() == self.input.name()
            || self
                .late
                .as_ref()
                .is_some_and(|l| l.name() == self.input.name())
        {
            return Err(Error::InvalidArgument(format!(
                "an aggregation of {} cannot send to {0} itself: it would read its own results",
                self.input.name()
            )));
        }
        let store = Sink::open(&self.state_url)?;
        let names = Names::new(self.input.name(), &self.consumer);
        let mut shutdown = std::pin::pin!(shutdown);
        // Every partition's state is read at start: a state saved for another spec stops
        // the aggregation here rather than failing its batches for ever.
        let runner = tokio::select! {
            runner = Runner::start(self.spec, store, names, self.output, self.late, self.input.partitions()) => Arc::new(runner?),
            () = &mut shutdown => return Ok(TriggerReport::default()),
        };
        let mut trigger = self.input.on_batch(&self.consumer, move |records| {
            let runner = runner.clone();
            async move { runner.batch(records).await }
        });
        for observer in self.observers {
            trigger = trigger.observe(move |report| observer(report));
        }
        trigger
            .batch_size(self.max_records)
            .max_wait(self.max_wait)
            .start_at(self.start)
            .retry(RetryPolicy {
                max_attempts: u32::MAX,
                initial_backoff: Duration::from_millis(200),
                max_backoff: Duration::from_secs(60),
            })
            .no_dead_letter()
            .run_until(shutdown)
            .await
    }
}

/// The aggregation's partitions, each loaded from the state store when first needed or
/// after a failure.
struct Runner {
    spec: Aggregation,
    store: Sink,
    names: Names,
    output: Stream,
    late: Option<Stream>,
    lanes: HashMap<u32, Mutex<Option<Lane>>>,
}

impl Runner {
    async fn start(
        spec: Aggregation,
        store: Sink,
        names: Names,
        output: Stream,
        late: Option<Stream>,
        partitions: u32,
    ) -> Result<Runner> {
        let mut runner = Runner {
            spec,
            store,
            names,
            output,
            late,
            lanes: HashMap::new(),
        };
        for p in 0..partitions {
            let lane = runner.load(p).await?;
            runner.lanes.insert(p, Mutex::new(Some(lane)));
        }
        Ok(runner)
    }

    /// A partition's lane as saved, with the events its targets hold past the save.
    async fn load(&self, partition: u32) -> Result<Lane> {
        let mut lane = Lane::load(&self.store, &self.names, &self.spec, partition).await?;
        for target in std::iter::once(&self.output).chain(&self.late) {
            lane.find_landed(target, &self.names, partition).await?;
        }
        Ok(lane)
    }

    /// Aggregates a batch, partition by partition.
    async fn batch(&self, records: Vec<Record>) -> Result<()> {
        let mut by_partition: BTreeMap<u32, Vec<Record>> = BTreeMap::new();
        for r in records {
            by_partition
                .entry(r.position.partition)
                .or_default()
                .push(r);
        }
        for (partition, records) in by_partition {
            let Some(slot) = self.lanes.get(&partition) else {
                return Err(Error::Backend(
                    format!("a record of partition {partition}, which the stream had not at start")
                        .into(),
                ));
            };
            let mut slot = slot.lock().await;
            let lane = match slot.take() {
                Some(lane) => lane,
                None => self.load(partition).await?,
            };
            // Kept only when the batch went through: after a failure the lane is loaded
            // again from its saved state, and the records computed again.
            *slot = Some(self.partition(lane, partition, &records).await?);
        }
        Ok(())
    }

    /// Pushes one partition's records, sends what they give, then saves the lane.
    async fn partition(&self, mut lane: Lane, partition: u32, records: &[Record]) -> Result<Lane> {
        let (mut results, mut late) = (Vec::new(), Vec::new());
        let mut pushed_any = false;
        for record in records {
            if lane
                .input_last
                .is_some_and(|last| record.position.sequence <= last)
            {
                continue;
            }
            pushed_any = true;
            lane.input_last = Some(record.position.sequence);
            let pushed = lane.aggregator.push(record);
            for result in &pushed.results {
                results.extend(lane.result_event(&self.names, partition, result)?);
            }
            if pushed.late {
                // Numbered whether or not it is sent, so that results keep their ids when
                // a run starts or stops sending late records.
                let event = lane.late_event(&self.names, partition, record);
                if let Some(stream) = &self.late {
                    late.extend(event.and_then(|event| fitting(stream, event)));
                }
            }
        }
        if !pushed_any {
            return Ok(lane);
        }
        send(&self.output, results).await?;
        if let Some(stream) = &self.late {
            send(stream, late).await?;
        }
        lane.save(&self.store, &self.names, partition).await?;
        Ok(lane)
    }
}

/// A late record as the late stream takes it: without the header giving its input position
/// when that makes one header too many; `None` when it still does not fit (it is counted as
/// late and not sent, rather than failing every batch after it).
fn fitting(stream: &Stream, mut event: Event) -> Option<Event> {
    if stream.check_event(&event).is_ok() {
        return Some(event);
    }
    event.headers.remove(LATE_FROM);
    stream.check_event(&event).is_ok().then_some(event)
}

/// Sends events in order; the first failure fails the batch.
async fn send(stream: &Stream, events: Vec<Event>) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    for receipt in stream.send_batch(events).await {
        receipt?;
    }
    Ok(())
}
