//! Checkpoints as Kafka consumer groups' committed offsets: consumer `NAME` of stream `S`
//! is group `S:NAME` (`:` cannot appear in a name, so no two pairs share a group), and its
//! checkpoint is the offsets that group committed for topic `S`, where Kafka's own tools
//! (`kafka-consumer-groups --describe --group S:NAME`) see them and lag monitors count them.
//!
//! Commits are made outside the group protocol (no member joins: the consumer runtime
//! reads partitions by position), as Kafka's "simple consumers" and Kafka Connect's sink
//! offsets resets do.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{Offset, TopicPartitionList};

use super::errors::kafka_error;
use super::ledger::Op;
use super::topics::partition_count;
use super::{client_config, setting_error, KafkaBackend, KafkaOptions, CALL_TIMEOUT};
use crate::backend::blocking;
use crate::backend::{ConsumerInfo, PartitionStart};
use crate::checkpoint::{Checkpoint, CheckpointStore};
use crate::event::to_millis;
use crate::{Error, Result};

/// Most group clients kept open; beyond, the oldest is closed (and made again when needed).
const MAX_GROUP_CLIENTS: usize = 64;

/// The Kafka consumer group of consumer `consumer` of `stream`.
pub(super) fn group_id(stream: &str, consumer: &str) -> String {
    format!("{stream}:{consumer}")
}

/// One client per consumer group, to read and commit its offsets.
pub(super) struct GroupClients {
    options: KafkaOptions,
    open: Mutex<Vec<(String, Arc<BaseConsumer>)>>,
}

impl GroupClients {
    pub(super) fn new(options: &KafkaOptions) -> Self {
        GroupClients {
            options: options.clone(),
            open: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(String, Arc<BaseConsumer>)>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The client of group `group`.
    fn get(&self, group: &str) -> Result<Arc<BaseConsumer>> {
        if let Some((_, c)) = self.lock().iter().find(|(g, _)| g == group) {
            return Ok(c.clone());
        }
        let client: BaseConsumer = client_config(
            &self.options,
            &[("group.id", group), ("enable.auto.commit", "false")],
        )
        .create()
        .map_err(|e| setting_error("a consumer group's client", &e))?;
        let client = Arc::new(client);
        let mut open = self.lock();
        if open.len() >= MAX_GROUP_CLIENTS {
            open.remove(0);
        }
        open.push((group.to_owned(), client.clone()));
        Ok(client)
    }

    /// Closes the client of a group (before the group is deleted).
    fn close(&self, group: &str) {
        self.lock().retain(|(g, _)| g != group);
    }
}

/// Where a checkpoint's start is, as an offset (a blocking call for the starts that need
/// the partition's watermarks or a time lookup).
fn resolve(meta: &BaseConsumer, topic: &str, partition: u32, start: PartitionStart) -> Result<i64> {
    let marks = || {
        meta.fetch_watermarks(topic, partition as i32, CALL_TIMEOUT)
            .map_err(|e| kafka_error(e, topic))
    };
    let offset = |s: crate::Sequence| {
        super::read::offset_of(s)
            .ok_or_else(|| Error::InvalidArgument(format!("sequence {s} is not a Kafka offset")))
    };
    Ok(match start {
        PartitionStart::At(s) => offset(s)?,
        PartitionStart::After(s) => offset(s)?.saturating_add(1),
        PartitionStart::Earliest => marks()?.0,
        PartitionStart::Latest => marks()?.1,
        PartitionStart::AtTime(t) => time_offset(meta, topic, partition, t)?.unwrap_or(marks()?.1),
    })
}

/// The first offset appended at or after `time` (a blocking call); `None` when none is.
pub(super) fn time_offset(
    meta: &BaseConsumer,
    topic: &str,
    partition: u32,
    time: SystemTime,
) -> Result<Option<i64>> {
    let mut tpl = TopicPartitionList::with_capacity(1);
    tpl.add_partition_offset(
        topic,
        partition as i32,
        Offset::Offset(to_millis(time).max(0)),
    )
    .map_err(|e| kafka_error(e, topic))?;
    let found = meta
        .offsets_for_times(tpl, CALL_TIMEOUT)
        .map_err(|e| kafka_error(e, topic))?;
    match found
        .find_partition(topic, partition as i32)
        .map(|e| (e.error(), e.offset()))
    {
        Some((Err(e), _)) => Err(kafka_error(e, topic)),
        Some((Ok(()), Offset::Offset(o))) => Ok(Some(o)),
        _ => Ok(None),
    }
}

/// The offsets group client `client` committed for `topic` (a blocking call).
fn committed(
    meta: &BaseConsumer,
    client: &BaseConsumer,
    topic: &str,
) -> Result<Option<Checkpoint>> {
    let partitions = partition_count(meta, topic)?;
    let mut tpl = TopicPartitionList::with_capacity(partitions as usize);
    for p in 0..partitions {
        tpl.add_partition(topic, p as i32);
    }
    let found = client
        .committed_offsets(tpl, CALL_TIMEOUT)
        .map_err(|e| kafka_error(e, topic))?;
    let mut checkpoint = Checkpoint::new();
    for e in found.elements_for_topic(topic) {
        // A partition whose offset could not be read is an error, not "no checkpoint"
        // (which would start it over).
        e.error().map_err(|e| kafka_error(e, topic))?;
        if let Offset::Offset(o) = e.offset() {
            if o >= 0 {
                checkpoint.insert(e.partition() as u32, PartitionStart::At((o as u64).into()));
            }
        }
    }
    Ok((!checkpoint.is_empty()).then_some(checkpoint))
}

impl KafkaBackend {
    /// Runs a blocking call with the metadata client and the client of a consumer's group.
    async fn with_group<T: Send + 'static>(
        &self,
        stream: &str,
        consumer: &str,
        f: impl FnOnce(&BaseConsumer, &BaseConsumer, &str) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.check_topic(stream)?;
        cloudstream_log::validate_name("consumer", consumer)?;
        let client = self.groups.get(&group_id(stream, consumer))?;
        let meta = self.meta.clone();
        let topic = stream.to_owned();
        blocking(move || {
            super::drain(&client);
            f(&meta, &client, &topic)
        })
        .await
    }

    /// The groups of a stream's consumers: (consumer name, group id).
    async fn stream_groups(&self, stream: &str) -> Result<Vec<(String, String)>> {
        let meta = self.meta.clone();
        let prefix = group_id(stream, "");
        blocking(move || {
            let groups = meta
                .fetch_group_list(None, CALL_TIMEOUT)
                .map_err(|e| kafka_error(e, "consumer groups"))?;
            Ok(groups
                .groups()
                .iter()
                .filter_map(|g| {
                    // A group of another application that only looks like ours
                    // (`S:not a name`) is not one of the stream's consumers.
                    let consumer = g.name().strip_prefix(&prefix)?;
                    cloudstream_log::validate_name("consumer", consumer).ok()?;
                    Some((consumer.to_owned(), g.name().to_owned()))
                })
                .collect())
        })
        .await
    }

    /// Deletes consumer groups; those already gone count as deleted.
    async fn delete_groups(&self, groups: &[&str]) -> Result<()> {
        if groups.is_empty() {
            return Ok(());
        }
        for g in groups {
            self.groups.close(g);
        }
        let results = self
            .admin
            .delete_groups(groups, &Self::admin_options())
            .await
            .map_err(|e| kafka_error(e, "consumer groups"))?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::GroupIdNotFound)) => {}
                Err((group, RDKafkaErrorCode::NonEmptyGroup)) => {
                    return Err(Error::InvalidArgument(format!(
                        "consumer group {group} has active members (another Kafka client uses it); stop them first"
                    )))
                }
                Err((group, code)) => return Err(kafka_error(KafkaError::AdminOp(code), &group)),
            }
        }
        Ok(())
    }

    /// Every consumer of a stream with its lag (the `Backend::list_consumers` primitive).
    pub(super) async fn consumers(&self, stream: &str) -> Result<Vec<ConsumerInfo>> {
        let info = self.describe_topic(stream).await?;
        let ends: HashMap<u32, u64> = info
            .partitions
            .iter()
            .filter_map(|p| Some((p.partition, p.next?.as_u64()?)))
            .collect();
        let mut out = Vec::new();
        for (name, committed) in self.list(stream).await? {
            let lag = committed
                .iter()
                .map(|(p, at)| match at {
                    PartitionStart::At(s) => {
                        Some(ends.get(p)?.saturating_sub(s.as_u64().unwrap_or(0)))
                    }
                    _ => None,
                })
                .sum();
            out.push(ConsumerInfo {
                name,
                committed,
                lag,
            });
        }
        Ok(out)
    }
}

#[async_trait]
impl CheckpointStore for KafkaBackend {
    fn kind(&self) -> &'static str {
        "kafka"
    }

    async fn load(&self, stream: &str, consumer: &str) -> Result<Option<Checkpoint>> {
        self.with_group(stream, consumer, |meta, client, topic| {
            committed(meta, client, topic)
        })
        .await
    }

    async fn commit(
        &self,
        stream: &str,
        consumer: &str,
        resume: &[(u32, PartitionStart)],
    ) -> Result<()> {
        let resume = resume.to_vec();
        let commit = self.with_group(stream, consumer, move |meta, client, topic| {
            let mut tpl = TopicPartitionList::with_capacity(resume.len());
            for (p, start) in resume {
                let offset = resolve(meta, topic, p, start)?;
                tpl.add_partition_offset(topic, p as i32, Offset::Offset(offset))
                    .map_err(|e| kafka_error(e, topic))?;
            }
            client
                .commit(&tpl, CommitMode::Sync)
                .map_err(|e| kafka_error(e, topic))
        });
        // A synchronous commit waits for the group coordinator without a bound of its own.
        tokio::time::timeout(2 * CALL_TIMEOUT, commit)
            .await
            .unwrap_or_else(|_| {
                Err(Error::Unavailable(
                    format!("the commit of consumer {consumer} of {stream} was not answered")
                        .into(),
                ))
            })
    }

    async fn list(&self, stream: &str) -> Result<Vec<(String, Checkpoint)>> {
        let mut out = Vec::new();
        for (consumer, _) in self.stream_groups(stream).await? {
            if let Some(checkpoint) = self.load(stream, &consumer).await? {
                out.push((consumer, checkpoint));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    async fn delete(&self, stream: &str, consumer: &str) -> Result<bool> {
        let existed = self.load(stream, consumer).await?.is_some();
        self.delete_groups(&[&group_id(stream, consumer)]).await?;
        Ok(existed)
    }

    async fn delete_stream(&self, stream: &str) -> Result<()> {
        let groups = self.stream_groups(stream).await?;
        let ids: Vec<&str> = groups.iter().map(|(_, g)| g.as_str()).collect();
        self.delete_groups(&ids).await
    }

    async fn take_lease(
        &self,
        stream: &str,
        group: &str,
        name: &str,
        member: &str,
        ttl: Duration,
    ) -> Result<bool> {
        let held = self
            .take_leases(stream, group, &[name], member, ttl)
            .await?;
        Ok(held.first().copied().unwrap_or(false))
    }

    async fn take_leases(
        &self,
        stream: &str,
        group: &str,
        names: &[&str],
        member: &str,
        ttl: Duration,
    ) -> Result<Vec<bool>> {
        self.claim(Op::Take, stream, group, names, member, ttl)
            .await
    }

    async fn release_lease(
        &self,
        stream: &str,
        group: &str,
        name: &str,
        member: &str,
    ) -> Result<()> {
        self.claim(Op::Release, stream, group, &[name], member, Duration::ZERO)
            .await
            .map(drop)
    }

    async fn live_leases(&self, stream: &str, group: &str) -> Result<BTreeMap<String, String>> {
        self.live(stream, group).await
    }
}
