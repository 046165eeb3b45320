//! Consumer-group leases kept in Kafka itself: a one-partition claims topic
//! (`__cloudstream_leases`; `cloudstream-leases` on Event Hubs, whose hub names cannot begin
//! with `_`), which every process replays with the same rule (`ledger.rs`).
//!
//! | lease call | on the claims topic |
//! |---|---|
//! | take (or renew) leases for a member | one claim per lease, produced together; each answered once the replay reaches it |
//! | release | a release claim, answered the same way |
//! | live leases of a group | the replay brought up to the topic's end as it is now, then the leases unexpired by this host's clock |
//!
//! The replay reads on demand: a thread of its own fetches up to the offset a call waits
//! for, then pauses the partition until the next call.
//!
//! The topic is made on first use (one partition, `LogAppendTime`, six hours of
//! retention); a process replays it from [`REPLAY_BACK`] before it first needs it. Members
//! in any number of processes agree on who holds what, because each decision is the log's.
//! Kafka's own group protocol was not used: see `docs/design.md` (Kafka decisions).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::oneshot;

use super::errors::kafka_error;
use super::ledger::{self, Claim, Ledger, Op, Read, REPLAY_BACK};
use super::offsets::time_offset;
use super::options::Service;
use super::{client_config, setting_error, KafkaBackend, KafkaOptions, CALL_TIMEOUT};
use crate::backend::{blocking, StreamConfig};
use crate::event::to_millis;
use crate::{Error, Result};

/// How long the claims topic keeps claims: well past [`REPLAY_BACK`].
const CLAIMS_RETENTION: Duration = Duration::from_secs(6 * 3600);

/// Settings of the replaying consumer: assigned, never committing, and fetching again soon
/// after reaching the end, so a claim is decided within a few tens of milliseconds even by a
/// broker that holds a fetch until its wait is over instead of answering when a record
/// arrives (tansu does).
const REPLAY_SETTINGS: [(&str, &str); 5] = [
    ("group.id", "cloudstream-lease-replay"),
    ("enable.auto.commit", "false"),
    ("enable.partition.eof", "true"),
    ("auto.offset.reset", "earliest"),
    ("fetch.wait.max.ms", "20"),
];

/// The claims topic a client uses, unless its URL names another (`leases_topic=`).
pub(super) fn default_topic(service: Service) -> &'static str {
    match service {
        Service::Kafka => "__cloudstream_leases",
        Service::EventHubs(_) => "cloudstream-leases",
    }
}

/// What the replaying thread shares with the callers.
#[derive(Default)]
struct Shared {
    inner: Mutex<Replayed>,
    /// Wakes the replaying thread when a caller waits for an offset it has not reached.
    wanted: Condvar,
    stop: AtomicBool,
}

/// The replay so far.
#[derive(Default)]
struct Replayed {
    ledger: Ledger,
    /// The next offset to replay (everything before it is applied).
    next: i64,
    /// Claims sent and not decided yet, by nonce.
    pending: HashMap<String, oneshot::Sender<bool>>,
    /// Callers waiting for the replay to reach an offset.
    reaching: Vec<(i64, oneshot::Sender<()>)>,
    /// Why the replay stopped deciding (a claim of an unknown version).
    stopped: Option<String>,
    /// The topic was made anew: the replaying thread starts again from its beginning.
    restart: bool,
}

/// The error of every lease call once the replay stopped deciding: not one a retry fixes.
fn stopped(why: &str) -> Error {
    Error::Unsupported {
        operation: why.to_owned().into(),
        backend: "kafka",
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Replayed> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies the record at `offset`, appended at `at_ms`.
    fn apply(&self, offset: i64, at_ms: i64, payload: &[u8]) {
        let mut r = self.lock();
        if r.stopped.is_none() {
            match ledger::read(payload) {
                Read::Claim(claim) => {
                    let granted = r.ledger.apply(&claim, at_ms);
                    if let Some(answer) = r.pending.remove(&claim.nonce) {
                        let _ = answer.send(granted);
                    }
                }
                Read::Unknown(v) => {
                    let why = if v > ledger::VERSION {
                        format!("the claims log holds a claim of version {v}, written by a newer cloudstream; this one decides version {}: upgrade it", ledger::VERSION)
                    } else {
                        format!("the claims log holds a claim of version {v}, which no cloudstream writes: a foreign writer broke it; delete the claims topic")
                    };
                    tracing::error!(offset, "{why}");
                    r.stopped = Some(why);
                    r.pending.clear(); // the waiters learn why from `stopped`
                }
                Read::Foreign => {
                    tracing::warn!(offset, "a record of the claims log is not a claim; ignored")
                }
            }
        }
        self.reached(&mut r, offset + 1);
    }

    /// Records that everything before `next` is applied.
    fn reached(&self, r: &mut Replayed, next: i64) {
        r.next = r.next.max(next);
        let next = r.next;
        let (done, waiting) = std::mem::take(&mut r.reaching)
            .into_iter()
            .partition(|(at, _)| *at <= next);
        r.reaching = waiting;
        for (_, tx) in done {
            let _ = tx.send(());
        }
    }

    /// Waits until everything before `end` is applied (the replaying thread reads up to
    /// there, then pauses).
    async fn reach(&self, end: i64) -> Result<()> {
        let rx = {
            let mut r = self.lock();
            if let Some(why) = &r.stopped {
                return Err(stopped(why));
            }
            if end < r.next {
                // The topic is shorter than what was replayed: it was deleted and made
                // again. Its claims are all new: replay it from its start.
                tracing::warn!(
                    end,
                    replayed = r.next,
                    "the lease claims topic was made anew; replaying it from its start"
                );
                r.ledger = Ledger::default();
                r.next = 0;
                r.restart = true;
            }
            if r.next >= end {
                return Ok(());
            }
            let (tx, rx) = oneshot::channel();
            r.reaching.push((end, tx));
            rx
        };
        self.wanted.notify_all();
        match tokio::time::timeout(CALL_TIMEOUT, rx).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(self.unanswered()),
            Err(_) => Err(Error::Unavailable(
                "the lease claims were not read up to their end in time".into(),
            )),
        }
    }

    /// The furthest offset a caller waits for, and whether to replay from the topic's start
    /// (it was made anew), waiting for one (or for the stop) first; `idle` runs every 200 ms
    /// of waiting.
    fn wanted_end(&self, idle: impl Fn()) -> Option<(i64, bool)> {
        let mut r = self.lock();
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return None;
            }
            if let Some(end) = r.reaching.iter().map(|(end, _)| *end).max() {
                let restart = std::mem::take(&mut r.restart);
                return Some((end, restart));
            }
            r = self
                .wanted
                .wait_timeout(r, Duration::from_millis(200))
                .unwrap_or_else(|e| e.into_inner())
                .0;
            drop(r);
            idle();
            r = self.lock();
        }
    }

    /// The error of an answer that will not come.
    fn unanswered(&self) -> Error {
        match &self.lock().stopped {
            Some(why) => stopped(why),
            None => Error::Unavailable("the replay of the lease claims stopped".into()),
        }
    }
}

/// The claims log of one backend: its topic, and the replay (started on first use).
pub(super) struct LeaseLog {
    topic: String,
    shared: Arc<Shared>,
    started: tokio::sync::OnceCell<()>,
    /// Makes the nonces of this process unique.
    counter: AtomicU64,
    process: String,
}

impl Drop for LeaseLog {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.wanted.notify_all();
    }
}

impl LeaseLog {
    pub(super) fn new(topic: String) -> Self {
        let process = format!(
            "{}-{}-{}",
            std::process::id(),
            rand::random::<u64>(),
            to_millis(SystemTime::now())
        );
        LeaseLog {
            topic,
            shared: Arc::default(),
            started: tokio::sync::OnceCell::new(),
            counter: AtomicU64::new(0),
            process,
        }
    }

    /// The claims topic's name.
    pub(super) fn topic(&self) -> &str {
        &self.topic
    }

    fn nonce(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.process)
    }
}

/// Starts replaying `topic` from `REPLAY_BACK` ago on a thread of its own (blocking calls).
fn start_replay(options: &KafkaOptions, topic: &str, shared: Arc<Shared>) -> Result<()> {
    let consumer: BaseConsumer = client_config(options, &REPLAY_SETTINGS)
        .create()
        .map_err(|e| setting_error("the lease replay", &e))?;
    let since = SystemTime::now() - REPLAY_BACK;
    let (_, end) = consumer
        .fetch_watermarks(topic, 0, CALL_TIMEOUT)
        .map_err(|e| kafka_error(e, topic))?;
    let start = time_offset(&consumer, topic, 0, since)?.unwrap_or(end);
    let mut tpl = TopicPartitionList::with_capacity(1);
    tpl.add_partition_offset(topic, 0, Offset::Offset(start))
        .map_err(|e| kafka_error(e, topic))?;
    consumer.assign(&tpl).map_err(|e| kafka_error(e, topic))?;
    consumer.pause(&tpl).map_err(|e| kafka_error(e, topic))?;
    shared.lock().next = start;
    let topic = topic.to_owned();
    std::thread::Builder::new()
        .name("cloudstream-leases".into())
        .spawn(move || replay(&consumer, &topic, &tpl, &shared))
        .map_err(|e| Error::Unavailable(Box::new(e)))?;
    Ok(())
}

/// The replaying thread: whenever a caller waits for an offset not reached yet, fetches up
/// to there, applying every claim in log order, then pauses again, until the log is
/// dropped. Between calls it fetches nothing: a broker answering fetches oddly while it
/// deletes a topic (tansu, see `docs/design.md`) has nothing to answer.
fn replay(consumer: &BaseConsumer, topic: &str, tpl: &TopicPartitionList, shared: &Shared) {
    // Paused, the client still queues events (errors, logs): serve them while idle.
    while let Some((end, restart)) = shared.wanted_end(|| super::drain(consumer)) {
        if restart {
            let mut from_start = TopicPartitionList::with_capacity(1);
            let assigned = from_start
                .add_partition_offset(topic, 0, Offset::Beginning)
                .and_then(|()| consumer.assign(&from_start));
            if let Err(e) = assigned {
                tracing::warn!(error = %e, topic, "the lease replay could not start over");
            }
        }
        if let Err(e) = consumer.resume(tpl) {
            tracing::warn!(error = %e, topic, "the lease replay could not resume; retrying");
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        while shared.lock().next < end && !shared.stop.load(Ordering::Relaxed) {
            match consumer.poll(Duration::from_millis(100)) {
                None => {}
                Some(Ok(m)) => {
                    let at_ms = m.timestamp().to_millis().unwrap_or(0);
                    shared.apply(m.offset(), at_ms, m.payload().unwrap_or_default());
                }
                Some(Err(KafkaError::PartitionEOF(_))) => {
                    let end = consumer.position().ok().and_then(|tpl| {
                        match tpl.find_partition(topic, 0)?.offset() {
                            Offset::Offset(o) => Some(o),
                            _ => None,
                        }
                    });
                    if let Some(end) = end {
                        let mut r = shared.lock();
                        shared.reached(&mut r, end);
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, topic, "reading the lease claims failed; retrying");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
        if let Err(e) = consumer.pause(tpl) {
            tracing::warn!(error = %e, topic, "the lease replay could not pause");
        }
    }
}

impl KafkaBackend {
    /// The claims log, made and replayed on first use; [`Error::Unsupported`] for a client
    /// limited to one Event Hub (it cannot reach the claims hub).
    async fn lease_log(&self) -> Result<&LeaseLog> {
        let Some(log) = &self.leases else {
            return Err(Error::Unsupported {
                operation: "consumer-group leases (this client is limited to one hub, so it cannot keep its claims in another)".into(),
                backend: self.options.service.name(),
            });
        };
        log.started
            .get_or_try_init(|| async {
                let config = StreamConfig {
                    horizon: CLAIMS_RETENTION,
                    partitions: 1,
                };
                match self.make_topic(log.topic(), &config).await {
                    Ok(_) => {}
                    // Made by another process, maybe a moment ago.
                    Err(Error::StreamExists { .. }) => {
                        self.await_topic(log.topic(), 1).await?;
                    }
                    Err(e) => return Err(e),
                }
                let (options, topic, shared) =
                    (self.options.clone(), log.topic.clone(), log.shared.clone());
                blocking(move || start_replay(&options, &topic, shared)).await
            })
            .await?;
        Ok(log)
    }

    /// Appends claims and waits until the replay decides each; whether each was granted.
    pub(super) async fn claim(
        &self,
        op: Op,
        stream: &str,
        group: &str,
        leases: &[&str],
        member: &str,
        ttl: Duration,
    ) -> Result<Vec<bool>> {
        if op == Op::Take {
            crate::lease::check_ttl(ttl)?;
        }
        let log = self.lease_log().await?;
        if let Some(why) = &log.shared.lock().stopped {
            return Err(stopped(why));
        }
        let mut answers = Vec::with_capacity(leases.len());
        let mut claims = Vec::with_capacity(leases.len());
        for lease in leases {
            let claim = Claim {
                v: ledger::VERSION,
                op,
                stream: stream.to_owned(),
                group: group.to_owned(),
                lease: (*lease).to_owned(),
                member: member.to_owned(),
                ttl_ms: if op == Op::Take {
                    ttl.as_millis() as u64
                } else {
                    0
                },
                nonce: log.nonce(),
            };
            let (tx, rx) = oneshot::channel();
            log.shared.lock().pending.insert(claim.nonce.clone(), tx);
            answers.push(rx);
            claims.push(claim);
        }
        let forget = |claims: &[Claim]| {
            let mut r = log.shared.lock();
            for c in claims {
                r.pending.remove(&c.nonce);
            }
        };
        let sent = match self.send_claims(log.topic(), &claims).await {
            Ok(end) => log.shared.reach(end).await,
            Err(e) => Err(e),
        };
        if let Err(e) = sent {
            forget(&claims);
            return Err(e);
        }
        let decided = tokio::time::timeout(CALL_TIMEOUT, futures::future::join_all(answers)).await;
        forget(&claims);
        let Ok(decided) = decided else {
            return Err(Error::Unavailable(
                "the lease claims were stored but not read back in time".into(),
            ));
        };
        decided
            .into_iter()
            .map(|d| d.map_err(|_| log.shared.unanswered()))
            .collect()
    }

    /// Produces claims to the claims topic, in order, and waits until each is stored; the
    /// offset past the last of them (the topic's end, where the broker did not say).
    async fn send_claims(&self, topic: &str, claims: &[Claim]) -> Result<i64> {
        let producer = self.producer();
        let mut deliveries = Vec::with_capacity(claims.len());
        for claim in claims {
            let payload = serde_json::to_vec(claim).map_err(|e| Error::Backend(Box::new(e)))?;
            let record: FutureRecord<'_, [u8], [u8]> =
                FutureRecord::to(topic).partition(0).payload(&payload[..]);
            let delivery = producer
                .send_result(record)
                .map_err(|(e, _)| kafka_error(e, topic))?;
            deliveries.push(delivery);
        }
        let mut end = Some(0);
        for delivered in futures::future::join_all(deliveries).await {
            match delivered {
                // librdkafka says -1 where a broker recognised a resent batch without
                // naming its offset.
                Ok(Ok(d)) => end = end.filter(|_| d.offset >= 0).map(|e| e.max(d.offset + 1)),
                Ok(Err((e, _))) => return Err(kafka_error(e, topic)),
                Err(_) => {
                    return Err(Error::Unavailable(
                        "the Kafka producer closed before a lease claim was stored".into(),
                    ))
                }
            }
        }
        match end {
            Some(end) => Ok(end),
            None => self.claims_end(topic).await,
        }
    }

    /// The end of the claims topic as it is now.
    async fn claims_end(&self, topic: &str) -> Result<i64> {
        self.watermarks(topic, 0).await.map(|(_, end)| end)
    }

    /// The leases of a group unexpired now, once the replay has reached the claims
    /// topic's end as it is now.
    pub(super) async fn live(&self, stream: &str, group: &str) -> Result<BTreeMap<String, String>> {
        let log = self.lease_log().await?;
        let end = self.claims_end(log.topic()).await?;
        log.shared.reach(end).await?;
        let now = to_millis(SystemTime::now());
        Ok(log.shared.lock().ledger.live(stream, group, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_of_an_unknown_version_stops_the_answers() {
        let shared = Shared::default();
        let (tx, mut rx) = oneshot::channel();
        shared.lock().pending.insert("n".into(), tx);
        shared.apply(0, 0, br#"{"v":9}"#);
        assert!(rx.try_recv().is_err(), "no answer");
        assert!(shared.unanswered().to_string().contains("version 9"));
        assert_eq!(shared.lock().next, 1, "the replay moves on");
    }
}
