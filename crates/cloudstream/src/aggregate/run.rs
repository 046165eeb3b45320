//! `stream.aggregate(...)`: an [`Aggregation`] run as a consumer of the shared runtime (an
//! `on_batch` trigger), its results sent as events to an output stream, its late records
//! optionally to a side stream, its state kept in an object store with the input position.
//!
//! Per batch of an input partition: push the records, save the lane with the events they
//! gave, send them, save it without them ([`super::lane`]), and only then let the
//! checkpoint move. After a crash anywhere, records the saved state has seen are skipped,
//! the others computed again, and the saved events the targets do not hold yet are sent.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;

use super::lane::{Lane, Names, Target, LATE_FROM};
use super::Aggregation;
use crate::backend::{Consumption, PartitionStart};
use crate::deliver::sink::Sink;
use crate::trigger::Stalling;
use crate::{BatchReport, Error, Event, Record, Result, StartAt, Stream, TriggerReport};

/// A windowed aggregation of a stream into another: configure it, then
/// [`Aggregate::run_until`].
pub struct Aggregate {
    input: Stream,
    spec: Aggregation,
    output: Stream,
    late: Option<Stream>,
    state_url: String,
    consumer: String,
    run: Stalling,
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
            run: Stalling::new(10_000, Duration::from_secs(1)),
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
        self.run.max_records = n.max(1);
        self
    }

    /// How long a batch gathers records after its first one (default 1 s): how long a
    /// closed window may wait for its results to be sent.
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.run.max_wait = wait;
        self
    }

    /// Where the aggregation starts when its consumer has no checkpoint (default earliest).
    pub fn start_at(mut self, start: StartAt) -> Self {
        self.run.start = start;
        self
    }

    /// Tells `observer` of every batch's outcome, as [`crate::Trigger::observe`] does.
    pub fn observe(mut self, observer: impl Fn(&BatchReport) + Send + Sync + 'static) -> Self {
        self.run.observe(observer);
        self
    }

    /// Runs until `shutdown` completes. A batch that fails (a target or the state store
    /// down) is retried with backoff, up to a minute apart, for as long as it fails: the
    /// aggregation stalls, it never skips. It stops with an error, at start or later, when
    /// it cannot go on at all: `InvalidArgument` when the spec cannot be computed, the
    /// state store holds another aggregation's state (or another stream's), or the consumer
    /// has acknowledged records but no saved state (its windows would be partial);
    /// `StreamNotFound` when a target is deleted.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> Result<TriggerReport> {
        self.spec.check()?;
        crate::validate_name("consumer", &self.consumer)?;
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
        let runner = Runner {
            spec: self.spec,
            store,
            names,
            input: self.input.clone(),
            start: self.run.start,
            ordered: self.input.backend().capabilities().replay_by_position
                && matches!(
                    self.input.backend().consumption(),
                    Consumption::Checkpoints(_)
                ),
            output: self.output,
            late: self.late,
            lanes: Mutex::default(),
            fatal: std::sync::Mutex::default(),
            failed: tokio::sync::Notify::new(),
        };
        // Every partition's state is read (and what it left pending sent) at start: a state
        // that cannot be used stops the aggregation here rather than failing its batches.
        let runner = tokio::select! {
            started = runner.start() => Arc::new(started?),
            () = &mut shutdown => return Ok(TriggerReport::default()),
        };
        let handler = Arc::clone(&runner);
        let trigger = self.input.on_batch(&self.consumer, move |records| {
            let runner = Arc::clone(&handler);
            async move { runner.batch(records).await }
        });
        let stopped = async {
            tokio::select! {
                () = &mut shutdown => {}
                () = runner.failed.notified() => {}
            }
        };
        let report = self.run.apply(trigger).run_until(stopped).await?;
        let fatal = runner
            .fatal
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        match fatal {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }
}

/// A partition's lane, or none while it is to be loaded again from the state store.
type Slot = Arc<Mutex<Option<Lane>>>;

/// The aggregation's partitions, each loaded from the state store when first needed or
/// after a failure.
struct Runner {
    spec: Aggregation,
    store: Sink,
    names: Names,
    input: Stream,
    /// Where the consumer starts without a checkpoint.
    start: StartAt,
    /// Whether the input is read by position (so records the state has seen can be
    /// skipped): a checkpointed provider that replays by position.
    ordered: bool,
    output: Stream,
    late: Option<Stream>,
    lanes: Mutex<HashMap<u32, Slot>>,
    /// An error no retry can mend, to stop the run with.
    fatal: std::sync::Mutex<Option<Error>>,
    /// Told when `fatal` is set.
    failed: tokio::sync::Notify,
}

impl Runner {
    /// Loads every partition's lane.
    async fn start(self) -> Result<Runner> {
        for p in 0..self.input.partitions() {
            // What no retry can mend stops the run now; a store or provider that fails
            // leaves the lane to be loaded by its first batch, which is retried.
            let lane = match self.load(p).await {
                Ok(lane) => Some(lane),
                Err(e) if fatal(&e) => return Err(e),
                Err(e) => {
                    tracing::warn!(partition = p, error = %e, "an aggregation's lane could not be loaded yet");
                    None
                }
            };
            self.lanes
                .lock()
                .await
                .insert(p, Arc::new(Mutex::new(lane)));
        }
        Ok(self)
    }

    /// A partition's lane as saved, its pending events sent; a fresh one if it has none.
    async fn load(&self, partition: u32) -> Result<Lane> {
        let Some(mut lane) = Lane::load(&self.store, &self.names, &self.spec, partition).await?
        else {
            self.check_fresh(partition).await?;
            return Lane::fresh(&self.spec);
        };
        self.check_within(&lane, partition).await?;
        if !lane.pending.is_empty() {
            lane.drop_landed(Target::Output, &self.output, &self.names, partition)
                .await?;
            if let Some(late) = &self.late {
                lane.drop_landed(Target::Late, late, &self.names, partition)
                    .await?;
            }
            self.flush(&mut lane, partition).await?;
        }
        Ok(lane)
    }

    /// Refuses a fresh lane for a partition where the consumer, started from the earliest
    /// record, has moved past it: its windows would miss what it passed (the state was
    /// lost, or is kept elsewhere). A consumer started elsewhere (latest, a time) is not
    /// checked: where it was pinned and where it got to look the same.
    async fn check_fresh(&self, partition: u32) -> Result<()> {
        let Consumption::Checkpoints(checkpoints) = self.input.backend().consumption() else {
            return Ok(());
        };
        if self.start != StartAt::Earliest {
            return Ok(());
        }
        let Some(resume) = checkpoints
            .load(self.input.name(), &self.names.consumer)
            .await?
            .and_then(|c| c.get(&partition).copied())
        else {
            return Ok(());
        };
        let earliest = self
            .input
            .describe()
            .await?
            .partitions
            .iter()
            .find(|p| p.partition == partition)
            .and_then(|p| p.earliest);
        // Past the first record held: a start pinned at the earliest reads as `Earliest`,
        // `At(earliest)` or (Redis) `After(0-0)`, before it.
        let moved = match resume {
            PartitionStart::After(after) => earliest.is_none_or(|earliest| after >= earliest),
            PartitionStart::At(at) => earliest.is_some_and(|earliest| at > earliest),
            _ => false,
        };
        if moved {
            return Err(Error::InvalidArgument(format!(
                "consumer {} of {} has acknowledged records of partition {partition} but {} holds no state for it: its windows would miss them; point the state where it was kept, or delete the consumer to start afresh",
                self.names.consumer,
                self.input.name(),
                self.store.shown()
            )));
        }
        Ok(())
    }

    /// Refuses a state that has seen past the partition's end: another stream's of the
    /// name (deleted and made again).
    async fn check_within(&self, lane: &Lane, partition: u32) -> Result<()> {
        let Some(last) = lane.input_last else {
            return Ok(());
        };
        let info = self.input.describe().await?;
        let next = info
            .partitions
            .iter()
            .find(|p| p.partition == partition)
            .and_then(|p| p.next);
        if next.is_some_and(|next| last >= next) {
            return Err(Error::InvalidArgument(format!(
                "the state of {} partition {partition} in {} has seen position {last}, past the partition's end: it is another stream's; delete it or name another consumer",
                self.input.name(),
                self.store.shown()
            )));
        }
        Ok(())
    }

    /// Sends a lane's pending events, then saves it without them.
    async fn flush(&self, lane: &mut Lane, partition: u32) -> Result<()> {
        send(&self.output, lane.pending_events(Target::Output)?).await?;
        if let Some(late) = &self.late {
            send(late, lane.pending_events(Target::Late)?).await?;
        }
        // Pending late records of a run that sent them somewhere are dropped by one that
        // sends them nowhere.
        lane.pending.clear();
        lane.save(&self.store, &self.names, partition).await
    }

    /// The slot of a partition, made when the stream has gained one since the start.
    async fn slot(&self, partition: u32) -> Slot {
        Arc::clone(self.lanes.lock().await.entry(partition).or_default())
    }

    /// Aggregates a batch, partition by partition (a trigger's batch holds one partition's
    /// records; a subscription's may hold several). An error no retry can mend stops the
    /// run.
    async fn batch(&self, records: Vec<Record>) -> Result<()> {
        let mut by_partition: BTreeMap<u32, Vec<Record>> = BTreeMap::new();
        for r in records {
            by_partition
                .entry(r.position.partition)
                .or_default()
                .push(r);
        }
        for (partition, records) in by_partition {
            let slot = self.slot(partition).await;
            let mut slot = slot.lock().await;
            let result = match slot.take() {
                Some(lane) => Ok(lane),
                None => self.load(partition).await,
            };
            // Kept only when the batch went through: after a failure the lane is loaded
            // again from its saved state, its pending events sent from there.
            let result = match result {
                Ok(lane) => self.partition(lane, partition, &records).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(lane) => *slot = Some(lane),
                Err(e) => return Err(self.fail(e)),
            }
        }
        Ok(())
    }

    /// `e`, and if no retry can mend it, the run told to stop with it.
    fn fail(&self, e: Error) -> Error {
        if fatal(&e) {
            let message = e.to_string();
            *self.fatal.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
            self.failed.notify_one();
            return Error::InvalidArgument(message);
        }
        e
    }

    /// Pushes one partition's records, saves the lane with the events they gave, sends
    /// them, and saves it again without them.
    async fn partition(&self, mut lane: Lane, partition: u32, records: &[Record]) -> Result<Lane> {
        let mut pushed_any = false;
        for record in records {
            // Where records come by position, what the state has seen is skipped; through
            // a subscription positions are not an order, and a record handed out again is
            // counted again (at least once).
            if self.ordered
                && lane
                    .input_last
                    .is_some_and(|last| record.position.sequence <= last)
            {
                continue;
            }
            pushed_any = true;
            lane.input_last = Some(record.position.sequence);
            let pushed = lane.aggregator.push(record);
            for result in &pushed.results {
                let event = lane.result_event(result)?;
                lane.number(&self.names, partition, Target::Output, event, |e| {
                    fitting(&self.output, e)
                });
            }
            if let (true, Some(late)) = (pushed.late, &self.late) {
                let event = Lane::late_event(record);
                lane.number(&self.names, partition, Target::Late, event, |e| {
                    fitting(late, e)
                });
            }
        }
        if !pushed_any {
            return Ok(lane);
        }
        lane.save(&self.store, &self.names, partition).await?;
        if !lane.pending.is_empty() {
            self.flush(&mut lane, partition).await?;
        }
        Ok(lane)
    }
}

/// Whether no retry can mend `e`: a state that cannot be used, a stream gone.
fn fatal(e: &Error) -> bool {
    matches!(e, Error::InvalidArgument(_) | Error::StreamNotFound { .. })
}

/// An event as `stream` takes it: without the late record's position header when that
/// makes one header too many; `None` when it still does not fit (a result or late record
/// too large for the stream is logged and not sent, rather than failing every batch after
/// it).
fn fitting(stream: &Stream, mut event: Event) -> Option<Event> {
    if stream.check_event(&event).is_ok() {
        return Some(event);
    }
    event.headers.remove(LATE_FROM);
    match stream.check_event(&event) {
        Ok(()) => Some(event),
        Err(e) => {
            tracing::warn!(stream = stream.name(), error = %e, "an aggregation's event does not fit its stream; not sent");
            None
        }
    }
}

/// Sends events in order; the first failure fails the batch. An event the stream can never
/// take (saved by a run whose target took larger ones) is logged and left out.
async fn send(stream: &Stream, events: Vec<Event>) -> Result<()> {
    let events: Vec<Event> = events
        .into_iter()
        .filter(|e| match stream.check_event(e) {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(stream = stream.name(), %error, "an aggregation's saved event does not fit its stream; not sent");
                false
            }
        })
        .collect();
    if events.is_empty() {
        return Ok(());
    }
    for receipt in stream.send_batch(events).await {
        receipt?;
    }
    Ok(())
}
