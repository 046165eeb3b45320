//! The conformance suite: DESIGN.md's semantics as plain async functions over a [`Client`],
//! run unchanged against every backend.
//!
//! Each function creates its own uniquely named streams, so the suite can run against a
//! shared server. Differences between providers come only from [`Capabilities`]: a function
//! that needs a capability the backend lacks checks that the backend says so with
//! [`Error::Unsupported`](crate::Error::Unsupported) instead. [`conformance_tests!`](crate::conformance_tests) turns the
//! suite into one `#[tokio::test]` per function for a backend:
//!
//! ```ignore
//! async fn make() -> (cloudstream::Client, ()) { (cloudstream::open("memory://").await.unwrap(), ()) }
//! cloudstream::conformance_tests!(make);
//! ```
//!
//! [`Capabilities`]: crate::backend::Capabilities

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use crate::{Client, Consumer, Event, ReadFrom, Record, Stream};

mod consumers;
mod groups;
mod lifecycle;
mod outcomes;
mod reads;
mod triggers;
mod writes;

pub use consumers::*;
pub use groups::*;
pub use lifecycle::*;
pub use outcomes::*;
pub use reads::*;
pub use triggers::*;
pub use writes::*;

/// A stream name unique to this process and call.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{prefix}-{}-{n}-{nanos}", std::process::id())
}

/// A new stream with `partitions` partitions, or as many as the provider has (Pub/Sub: 1).
pub(crate) async fn new_stream(client: &Client, prefix: &str, partitions: u32) -> Stream {
    let max = client.backend().capabilities().max_partitions;
    client
        .stream(&unique_name(prefix))
        .horizon(Duration::from_secs(48 * 3600))
        .partitions(partitions.min(max))
        .create()
        .await
        .expect("create stream")
}

pub(crate) fn event(i: usize) -> Event {
    Event::new(format!("event-{i}")).with_header("n", i.to_string())
}

/// [`event`] with key `k`: order is promised per key on every provider (Pub/Sub orders
/// nothing else), so tests of order send keyed events.
pub(crate) fn keyed(i: usize) -> Event {
    event(i).with_key("k")
}

/// Makes sure consumer `name` exists before events it must see are sent: a no-op where
/// consumers start at the oldest record, a first fetch (which subscribes) where a consumer
/// sees only what is published after it exists (Pub/Sub).
pub(crate) async fn subscribe_first(stream: &Stream, name: &str) {
    if !stream.backend().capabilities().consumers_see_history {
        stream
            .consumer(name)
            .wait(Duration::from_millis(10))
            .fetch()
            .await
            .expect("subscribe");
    }
}

/// How a test sees what a stream holds: reads from the oldest record where the provider
/// replays, else a consumer subscribed before the events were sent. Create it before sending.
pub(crate) struct Witness {
    stream: Stream,
    consumer: Option<Consumer>,
}

impl Witness {
    pub(crate) async fn new(stream: &Stream) -> Witness {
        let replay = stream.backend().capabilities().replay_by_position;
        let consumer = if replay {
            None
        } else {
            subscribe_first(stream, "conformance-witness").await;
            Some(
                stream
                    .consumer("conformance-witness")
                    .wait(Duration::from_secs(10)),
            )
        };
        Witness {
            stream: stream.clone(),
            consumer,
        }
    }

    /// The records of `partition` in order; where delivery is asynchronous, waits until
    /// `expected` of them arrived (or none arrives for a while).
    pub(crate) async fn all(&self, partition: u32, expected: usize) -> Vec<Record> {
        let Some(consumer) = &self.consumer else {
            return read_all(&self.stream, partition).await;
        };
        let mut out: Vec<Record> = Vec::new();
        while out.len() < expected {
            let batch = consumer.fetch().await.expect("fetch");
            if batch.is_empty() {
                break;
            }
            out.extend(
                batch
                    .records
                    .into_iter()
                    .filter(|r| r.position.partition == partition),
            );
        }
        consumer.commit().await.expect("commit");
        out
    }
}

pub(crate) async fn read_all(stream: &Stream, partition: u32) -> Vec<Record> {
    let mut out: Vec<Record> = Vec::new();
    loop {
        let from = match out.last() {
            Some(r) => ReadFrom::After(r.position),
            None => ReadFrom::Earliest,
        };
        let batch = stream
            .read_partition(partition, from, 500)
            .await
            .expect("read");
        if batch.is_empty() {
            return out;
        }
        out.extend(batch);
    }
}

/// Calls macro `[$callback]` with `$args`, a `;`, and the name of every conformance function:
/// the one list `conformance_tests!` and [`NAMES`] are made from.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_list {
    ([$($callback:tt)*] $($args:tt)*) => {
        $($callback)*! { $($args)*;
            create_describe_list_delete, bad_input_is_refused, send_and_read_back,
            send_batch_has_per_event_results, large_batches_are_split, reads_are_deterministic,
            keys_choose_partitions, unknown_streams_are_errors, consumers_checkpoint_implicitly,
            uncommitted_batches_are_redelivered, consumer_groups_share_partitions_through_leases,
            waits_wake_on_new_records,
            triggers_deliver_every_event_in_order, triggers_retry_then_dead_letter,
            batch_triggers_gather_and_dead_letter, triggers_pin_their_start_and_survive_panics,
            triggers_report_each_batch_outcome, events_over_header_limits_fail_alone,
            events_with_an_id_are_stored_once, triggers_share_partitions_as_group_members }
    };
}

macro_rules! names_of {
    (; $($name:ident),*) => {
        &[$(stringify!($name)),*]
    };
}

/// The name of every conformance function, for the tests of a backend that runs them one
/// by one (to check that none is left out).
pub const NAMES: &[&str] = __conformance_list!([names_of]);

/// Stamps out one `#[tokio::test]` per conformance function. `$make` is an async fn returning
/// `(Client, Guard)`; the guard (a temp dir, a server) lives as long as the test.
#[macro_export]
macro_rules! conformance_tests {
    ($make:path) => {
        $crate::__conformance_list!([$crate::conformance_tests] @each $make);
    };
    (@each $make:path; $($name:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (client, _guard) = $make().await;
                $crate::conformance::$name(&client).await;
            }
        )*
    };
}
