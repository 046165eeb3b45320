//! `kinesis://`: AWS Kinesis Data Streams through the official AWS SDK for Rust.
//!
//! | cloudstream | Kinesis |
//! |---|---|
//! | stream | stream (`RetentionPeriodHours` = horizon, 24 h to 8760 h in whole hours) |
//! | partition N | the N-th open shard, by starting hash key |
//! | append to partition N | `PutRecords` with `ExplicitHashKey` = the shard's starting hash key |
//! | sequence | the shard's sequence number (up to 56 digits; not dense) |
//! | `Earliest` / `Latest` / `At` / `After` / `AtTime` | `TRIM_HORIZON` / `LATEST` / `AT_SEQUENCE_NUMBER` / `AFTER_SEQUENCE_NUMBER` / `AT_TIMESTAMP` |
//! | consumer checkpoints | a DynamoDB table or a local directory ([`crate::checkpoint`], `checkpoints=`) |
//!
//! Our partitioner picks the partition (so keys land where they do on every backend) and
//! the explicit hash key pins the record to that shard. Shard iterators are cached per
//! continuation point, so a consumer reading on from its last record makes one `GetRecords`
//! call per read; an expired iterator is replaced and the read retried. Throttling
//! (`ProvisionedThroughputExceeded`) and network failures are retried with backoff, and
//! counted in [`KinesisMetrics`].

mod append;
mod envelope;
mod iterators;
mod metrics;
mod options;
mod put;
mod read;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use aws_sdk_kinesis::primitives::{Blob, DateTime};
use aws_sdk_kinesis::types::{
    PutRecordsRequestEntry, ShardIteratorType, StreamDescriptionSummary, StreamMode,
    StreamModeDetails, StreamStatus,
};
use aws_sdk_kinesis::Client as KinesisClient;

use self::iterators::IteratorKey;
pub use self::metrics::KinesisMetrics;
pub use self::options::{CapacityMode, KinesisOptions};
use super::{
    Backend, Capabilities, CheckpointStore, ConsumerInfo, Consumption, PartitionInfo,
    PartitionStart, ReadOptions, StreamConfig, StreamInfo,
};
use crate::aws_errors::{aws_error, AwsError};
use crate::checkpoint::{CheckpointLocation, DynamoCheckpoints, LocalCheckpoints};
use crate::retry::{retry, Pause};
use crate::url::ProviderUrl;
use crate::{Error, Event, Position, Record, Result, RetryPolicy, Sequence};

/// Largest record Kinesis accepts (data and partition key).
const MAX_RECORD: usize = 1024 * 1024;
/// Room kept for the envelope of headers and event time within [`MAX_RECORD`].
const ENVELOPE_ROOM: usize = 1024;
/// Most records and bytes in one `PutRecords` call.
const MAX_PUT_RECORDS: usize = 500;
const MAX_PUT_BYTES: usize = 5 * 1024 * 1024;
/// Most records one `GetRecords` call returns.
const MAX_GET_RECORDS: usize = 10_000;
/// Shard iterators live five minutes; cached ones are replaced a little before.
const ITERATOR_TTL: Duration = Duration::from_secs(280);
/// Most cached iterators.
const ITERATOR_CACHE: usize = 4096;
/// How long an `AT_TIMESTAMP` iterator request may take before the read scans instead.
const AT_TIMESTAMP_WAIT: Duration = Duration::from_secs(3);
/// Pause between polls of an empty shard (Kinesis allows five `GetRecords` per second).
const POLL: Duration = Duration::from_millis(200);
/// Empty pages a read walks past at once when the service says records lie further on;
/// beyond that it returns (or waits), and the caller reads on from where it stopped.
const MAX_EMPTY_PAGES: u32 = 5;

/// One open shard: a partition.
#[derive(Debug, Clone)]
struct Shard {
    id: String,
    starting_hash_key: String,
}

/// AWS Kinesis Data Streams as a backend.
#[derive(Debug)]
pub struct KinesisBackend {
    client: KinesisClient,
    mode: CapacityMode,
    /// A Kinesis-compatible server at an endpoint override (kinesalite, moto), not AWS.
    local_server: bool,
    checkpoints: Arc<dyn CheckpointStore>,
    retry: RetryPolicy,
    shards: Mutex<HashMap<String, Arc<Vec<Shard>>>>,
    iterators: Mutex<HashMap<IteratorKey, (String, Instant)>>,
    metrics: KinesisMetrics,
}

impl KinesisBackend {
    /// Connects with the settings of a `kinesis://` URL: region, endpoint and credentials
    /// from the URL, else from the AWS chain (environment, profile, SSO, instance role).
    pub async fn connect(options: KinesisOptions) -> Result<Self> {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .retry_config(aws_config::retry::RetryConfig::disabled());
        if let Some(region) = &options.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        if let Some(profile) = &options.profile {
            loader = loader.profile_name(profile);
        }
        if let Some((key, secret, token)) = &options.credentials {
            loader = loader.credentials_provider(aws_sdk_kinesis::config::Credentials::new(
                key,
                secret,
                token.clone(),
                None,
                "cloudstream-url",
            ));
        }
        // No call may hang: a server that accepts a request and never answers is an error.
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(5))
            .operation_attempt_timeout(Duration::from_secs(20))
            .build();
        let mut config = loader.timeout_config(timeouts).load().await;
        if config.region().is_none() {
            if options.endpoint.is_none() {
                return Err(Error::InvalidArgument(
                    "no AWS region: name it in the URL (kinesis://us-east-1) or set AWS_REGION"
                        .into(),
                ));
            }
            // A local server (kinesalite, moto) answers whatever the region.
            config = config
                .into_builder()
                .region(aws_config::Region::new("us-east-1"))
                .build();
        }
        let mut kinesis = aws_sdk_kinesis::config::Builder::from(&config);
        if let Some(endpoint) = &options.endpoint {
            kinesis = kinesis.endpoint_url(endpoint);
        }
        let local_server = options.endpoint.is_some();
        let checkpoints: Arc<dyn CheckpointStore> = match options.checkpoints {
            CheckpointLocation::Local(dir) => LocalCheckpoints::shared(dir)?,
            CheckpointLocation::DynamoDb { table, endpoint } => {
                // The SDK's standard retries (throttling, 5xx, timeouts) for checkpoint and
                // lease calls; Kinesis calls retry through `call`, which counts them.
                let mut dynamo = aws_sdk_dynamodb::config::Builder::from(&config)
                    .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(5));
                if let Some(endpoint) = endpoint.or(options.endpoint) {
                    dynamo = dynamo.endpoint_url(endpoint);
                }
                let client = aws_sdk_dynamodb::Client::from_conf(dynamo.build());
                Arc::new(DynamoCheckpoints::new(client, table))
            }
        };
        Ok(KinesisBackend {
            client: KinesisClient::from_conf(kinesis.build()),
            mode: options.mode,
            local_server,
            checkpoints,
            retry: RetryPolicy {
                max_attempts: 8,
                initial_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_secs(5),
            },
            shards: Mutex::default(),
            iterators: Mutex::default(),
            metrics: KinesisMetrics::default(),
        })
    }

    /// Counters of retried calls and records.
    pub fn kinesis_metrics(&self) -> &KinesisMetrics {
        &self.metrics
    }

    /// Runs an AWS call, retrying throttling and transient failures with backoff.
    async fn call<T, F, Fut>(&self, what: &str, f: F) -> std::result::Result<T, AwsError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = std::result::Result<T, AwsError>>,
    {
        let counted = |e: &AwsError, attempt| {
            let counter = match e {
                AwsError::Throttled(_) => &self.metrics.throttled_calls,
                _ => &self.metrics.transient_errors,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(what, attempt, error = ?e, "retrying Kinesis call");
        };
        retry(&self.retry, None, AwsError::retryable, counted, f)
            .await
            // Without a stop signal a retry always ends with the call's own outcome.
            .unwrap_or_else(|| Err(AwsError::Other(format!("{what}: retry stopped"))))
    }

    /// `DescribeStreamSummary`, retried when throttled.
    async fn summary(&self, name: &str) -> std::result::Result<StreamDescriptionSummary, AwsError> {
        let out = self
            .call("DescribeStreamSummary", || async {
                self.client
                    .describe_stream_summary()
                    .stream_name(name)
                    .send()
                    .await
                    .map_err(|e| aws_error(e, name))
            })
            .await?;
        out.stream_description_summary()
            .cloned()
            .ok_or_else(|| AwsError::Other("DescribeStreamSummary returned nothing".into()))
    }

    /// Waits until the stream is `ACTIVE` (it is `CREATING` or `UPDATING` for a while).
    async fn wait_active(&self, name: &str) -> Result<()> {
        for _ in 0..1200 {
            let summary = self.summary(name).await.map_err(AwsError::into_error)?;
            if summary.stream_status() == &StreamStatus::Active {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(Error::Unavailable(
            format!("Kinesis stream {name} did not become active").into(),
        ))
    }

    /// The open shards of a stream, by starting hash key (cached).
    async fn shards(&self, name: &str) -> Result<Arc<Vec<Shard>>> {
        if let Some(shards) = self.lock_shards().get(name) {
            return Ok(shards.clone());
        }
        let mut shards = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .call("ListShards", || async {
                    let request = self.client.list_shards();
                    let request = match &token {
                        Some(t) => request.next_token(t),
                        None => request.stream_name(name),
                    };
                    request.send().await.map_err(|e| aws_error(e, name))
                })
                .await
                .map_err(AwsError::into_error)?;
            for shard in page.shards() {
                let open = shard
                    .sequence_number_range()
                    .is_some_and(|r| r.ending_sequence_number().is_none());
                if let (true, Some(range)) = (open, shard.hash_key_range()) {
                    shards.push(Shard {
                        id: shard.shard_id().to_owned(),
                        starting_hash_key: range.starting_hash_key().to_owned(),
                    });
                }
            }
            token = page.next_token().map(str::to_owned);
            if token.is_none() {
                break;
            }
        }
        shards.sort_by_key(|s| (s.starting_hash_key.len(), s.starting_hash_key.clone()));
        let shards = Arc::new(shards);
        self.lock_shards().insert(name.to_owned(), shards.clone());
        Ok(shards)
    }

    fn lock_shards(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Vec<Shard>>>> {
        self.shards.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn shard(&self, stream: &str, partition: u32) -> Result<Shard> {
        let shards = self.shards(stream).await?;
        shards
            .get(partition as usize)
            .cloned()
            .ok_or_else(|| Error::PartitionNotFound {
                stream: stream.to_owned(),
                partition,
                partitions: shards.len() as u32,
            })
    }

    /// Forgets what is cached about a stream (after it is deleted or not found).
    fn forget(&self, stream: &str) {
        self.lock_shards().remove(stream);
        self.lock_iterators().retain(|k, _| k.stream != stream);
    }

    fn stream_error(&self, stream: &str, e: AwsError) -> Error {
        if matches!(e, AwsError::NotFound(_)) {
            self.forget(stream);
        }
        e.into_error()
    }

    fn to_record(partition: u32, r: &aws_sdk_kinesis::types::Record) -> Result<Record> {
        let sequence: Sequence = r.sequence_number().parse().map_err(|e| {
            Error::Backend(format!("Kinesis sent a sequence number we cannot read: {e}").into())
        })?;
        let append_time = r
            .approximate_arrival_timestamp()
            .and_then(|t| SystemTime::try_from(*t).ok())
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let data = bytes::Bytes::copy_from_slice(r.data().as_ref());
        Ok(Record {
            position: Position::new(partition, sequence),
            append_time,
            event: envelope::decode(data, r.partition_key().unwrap_or(envelope::UNKEYED)),
        })
    }
}

/// Retention in whole hours, within what Kinesis holds.
fn retention_hours(horizon: Duration) -> Result<i32> {
    let secs = horizon.as_secs();
    if horizon.subsec_nanos() != 0 || !secs.is_multiple_of(3600) {
        return Err(Error::InvalidArgument(format!(
            "Kinesis keeps records for whole hours; {} is not",
            humantime_hours(horizon)
        )));
    }
    let hours = secs / 3600;
    if !(24..=8760).contains(&hours) {
        return Err(Error::InvalidArgument(format!(
            "Kinesis retention is 24 to 8760 hours; {hours} hours asked"
        )));
    }
    Ok(hours as i32)
}

fn humantime_hours(d: Duration) -> String {
    format!("{:.3} hours", d.as_secs_f64() / 3600.0)
}

#[async_trait]
impl Backend for KinesisBackend {
    fn name(&self) -> &'static str {
        "kinesis"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            replay_by_position: true,
            replay_by_time: true,
            dense_sequences: false,
            consumers_see_history: true,
            server_side_checkpoints: self.checkpoints.kind() == "dynamodb",
            durable: true,
            leases: true,
            max_record_bytes: MAX_RECORD - ENVELOPE_ROOM,
            max_headers: usize::MAX,
            max_header_name_bytes: usize::MAX,
            max_header_value_bytes: usize::MAX,
            max_batch_records: MAX_PUT_RECORDS,
            max_batch_bytes: MAX_PUT_BYTES,
            max_partitions: 500,
            horizon_range: (
                Duration::from_secs(24 * 3600),
                Duration::from_secs(8760 * 3600),
            ),
            // Kinesis does not deduplicate: PutRecords retried after a lost answer stores twice.
            dedup_window: None,
        }
    }

    fn consumption(&self) -> Consumption<'_> {
        Consumption::Checkpoints(&*self.checkpoints)
    }

    fn metrics(&self) -> BTreeMap<String, u64> {
        self.metrics.snapshot()
    }

    async fn create_stream(&self, name: &str, config: &StreamConfig) -> Result<StreamInfo> {
        let hours = retention_hours(config.horizon)?;
        let shards = i32::try_from(config.partitions)
            .map_err(|_| Error::InvalidArgument("too many partitions".into()))?;
        self.forget(name);
        self.call("CreateStream", || async {
            let request = self.client.create_stream().stream_name(name);
            let request = match self.mode {
                CapacityMode::Provisioned => request.shard_count(shards),
                CapacityMode::OnDemand => request.stream_mode_details(
                    StreamModeDetails::builder()
                        .stream_mode(StreamMode::OnDemand)
                        .build()
                        .map_err(|e| AwsError::Invalid(e.to_string()))?,
                ),
            };
            request.send().await.map_err(|e| aws_error(e, name))
        })
        .await
        .map_err(|e| match e {
            AwsError::InUse(_) => Error::StreamExists {
                stream: name.to_owned(),
            },
            e => e.into_error(),
        })?;
        self.wait_active(name).await?;
        if hours != 24 {
            self.call("IncreaseStreamRetentionPeriod", || async {
                self.client
                    .increase_stream_retention_period()
                    .stream_name(name)
                    .retention_period_hours(hours)
                    .send()
                    .await
                    .map_err(|e| aws_error(e, name))
            })
            .await
            .map_err(AwsError::into_error)?;
            self.wait_active(name).await?;
        }
        self.describe_stream(name).await
    }

    async fn describe_stream(&self, name: &str) -> Result<StreamInfo> {
        cloudstream_log::validate_name("stream", name)?;
        let summary = self
            .summary(name)
            .await
            .map_err(|e| self.stream_error(name, e))?;
        if summary.stream_status() == &StreamStatus::Deleting {
            self.forget(name);
            return Err(Error::StreamNotFound {
                stream: name.to_owned(),
            });
        }
        let shards = self.shards(name).await?;
        let mut details = BTreeMap::from([
            (
                "status".to_owned(),
                summary.stream_status().as_str().to_owned(),
            ),
            (
                "retention".to_owned(),
                format!("{} hours", summary.retention_period_hours()),
            ),
            ("shards".to_owned(), shards.len().to_string()),
            ("checkpoints".to_owned(), self.checkpoints.kind().to_owned()),
        ]);
        if let Some(mode) = summary.stream_mode_details() {
            details.insert("mode".to_owned(), mode.stream_mode().as_str().to_owned());
        }
        Ok(StreamInfo {
            name: name.to_owned(),
            horizon_ms: u64::try_from(summary.retention_period_hours()).unwrap_or(0) * 3_600_000,
            partitions: shards
                .iter()
                .enumerate()
                .map(|(i, s)| PartitionInfo {
                    partition: i as u32,
                    id: s.id.clone(),
                    earliest: None,
                    next: None,
                    bytes: None,
                })
                .collect(),
            resource: summary.stream_arn().to_owned(),
            details,
        })
    }

    async fn list_streams(&self) -> Result<Vec<String>> {
        let mut names: Vec<String> = Vec::new();
        loop {
            let last = names.last().cloned();
            let page = self
                .call("ListStreams", || async {
                    self.client
                        .list_streams()
                        .set_exclusive_start_stream_name(last.clone())
                        .send()
                        .await
                        .map_err(|e| aws_error(e, "streams"))
                })
                .await
                .map_err(AwsError::into_error)?;
            names.extend(page.stream_names().iter().cloned());
            if !page.has_more_streams() || page.stream_names().is_empty() {
                return Ok(names);
            }
        }
    }

    async fn delete_stream(&self, name: &str) -> Result<()> {
        cloudstream_log::validate_name("stream", name)?;
        self.describe_stream(name).await?;
        self.call("DeleteStream", || async {
            self.client
                .delete_stream()
                .stream_name(name)
                .enforce_consumer_deletion(true)
                .send()
                .await
                .map_err(|e| aws_error(e, name))
        })
        .await
        .map_err(|e| self.stream_error(name, e))?;
        self.forget(name);
        self.checkpoints.delete_stream(name).await?;
        // Deletion is asynchronous: wait until the name is free again.
        for _ in 0..600 {
            match self.summary(name).await {
                Err(AwsError::NotFound(_)) => return Ok(()),
                Err(e) if !e.retryable() => return Err(e.into_error()),
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        Err(Error::Unavailable(
            format!("Kinesis stream {name} is still being deleted").into(),
        ))
    }

    async fn append(
        &self,
        stream: &str,
        partition: u32,
        events: &[Event],
    ) -> Result<Vec<Position>> {
        self.append_to_shard(stream, partition, events).await
    }

    async fn read(
        &self,
        stream: &str,
        partition: u32,
        start: PartitionStart,
        options: &ReadOptions,
    ) -> Result<Vec<Record>> {
        self.read_shard(stream, partition, start, options).await
    }

    async fn list_consumers(&self, stream: &str) -> Result<Vec<ConsumerInfo>> {
        self.describe_stream(stream).await?;
        Ok(self
            .checkpoints
            .list(stream)
            .await?
            .into_iter()
            .map(|(name, committed)| ConsumerInfo {
                name,
                committed,
                lag: None,
            })
            .collect())
    }

    async fn delete_consumer(&self, stream: &str, consumer: &str) -> Result<bool> {
        self.checkpoints.delete(stream, consumer).await
    }
}

/// Checks a `kinesis` URL without connecting.
pub(crate) fn check(url: &ProviderUrl) -> Result<()> {
    KinesisOptions::from_url(url).map(drop)
}

/// Connects to what a `kinesis` URL names.
pub(crate) async fn open(url: ProviderUrl) -> Result<std::sync::Arc<dyn Backend>> {
    Ok(std::sync::Arc::new(
        KinesisBackend::connect(KinesisOptions::from_url(&url)?).await?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_is_whole_hours_within_bounds() {
        let h = |n: u64| Duration::from_secs(n * 3600);
        assert_eq!(retention_hours(h(24)).ok(), Some(24));
        assert_eq!(retention_hours(h(8760)).ok(), Some(8760));
        for bad in [
            h(23),
            h(8761),
            Duration::from_secs(90_060),
            Duration::from_millis(1),
        ] {
            let err = retention_hours(bad).expect_err("refused").to_string();
            assert!(err.contains("hours"), "{err}");
        }
    }
}
