//! Streams as JetStream streams: create (the horizon as `max_age`, a subject per partition),
//! describe (the stream's own view: sequences, per-subject counts, storage), list, delete.

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream::context::{CreateStreamErrorKind, GetStreamErrorKind};
use async_nats::jetstream::stream::{self, DiscardPolicy, RetentionPolicy, StorageType};
use async_nats::jetstream::ErrorCode;
use futures::{StreamExt, TryStreamExt};

use super::{js_name, our_name, partition_of, subject, NatsBackend};
use crate::backend::{PartitionInfo, StreamConfig, StreamInfo};
use crate::{Error, Result};

/// Most partitions (subjects) per stream.
pub(super) const MAX_PARTITIONS: u32 = 1024;

/// Shortest and longest horizon (`max_age`): at least a minute, so that the duplicate window
/// outlasts a publish resent after timed-out acknowledgements.
pub(super) const HORIZONS: (Duration, Duration) = (
    Duration::from_secs(60),
    Duration::from_secs(100 * 365 * 24 * 3600),
);

/// How long a message id is remembered (JetStream's default), at most the horizon.
pub(super) const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// The description that marks the streams cloudstream made.
const MARK: &str = "cloudstream";

/// The crate's error for an async-nats error without a JetStream code we know: a timeout or
/// a missing responder is `Unavailable`.
pub(super) fn nats_error<E: std::error::Error + Send + Sync + 'static>(e: E) -> Error {
    let text = e.to_string().to_lowercase();
    if [
        "timed out",
        "no responders",
        "broken pipe",
        "disconnected",
        "connection",
    ]
    .iter()
    .any(|w| text.contains(w))
    {
        Error::Unavailable(Box::new(e))
    } else {
        Error::Backend(Box::new(e))
    }
}

impl NatsBackend {
    /// The JetStream stream of `stream`; [`Error::StreamNotFound`] if there is none.
    pub(super) async fn stream(&self, stream: &str) -> Result<stream::Stream> {
        cloudstream_log::validate_name("stream", stream)?;
        self.js
            .get_stream(js_name(stream))
            .await
            .map_err(|e| match e.kind() {
                GetStreamErrorKind::JetStream(j)
                    if j.error_code() == ErrorCode::STREAM_NOT_FOUND =>
                {
                    Error::StreamNotFound {
                        stream: stream.to_owned(),
                    }
                }
                _ => nats_error(e),
            })
    }

    /// A stream's partition count: its subjects.
    pub(super) async fn partition_count(&self, stream: &str) -> Result<u32> {
        let s = self.stream(stream).await?;
        Ok(s.cached_info().config.subjects.len() as u32)
    }

    fn lock_partitions(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, u32>> {
        self.partitions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forgets what is cached of a stream (deleted, or found missing).
    pub(super) fn forget(&self, stream: &str) {
        self.lock_partitions().remove(stream);
    }

    /// Checks that `partition` is one of the stream's (the count cached from the last look).
    pub(super) async fn check_partition(&self, stream: &str, partition: u32) -> Result<()> {
        let cached = self.lock_partitions().get(stream).copied();
        let partitions = match cached {
            Some(n) if partition < n => return Ok(()),
            _ => {
                let n = self.partition_count(stream).await?;
                self.lock_partitions().insert(stream.to_owned(), n);
                n
            }
        };
        if partition >= partitions {
            return Err(Error::PartitionNotFound {
                stream: stream.to_owned(),
                partition,
                partitions,
            });
        }
        Ok(())
    }

    pub(super) async fn create(&self, name: &str, config: &StreamConfig) -> Result<StreamInfo> {
        cloudstream_log::validate_name("stream", name)?;
        config.check("JetStream", HORIZONS, MAX_PARTITIONS)?;
        let js_config = stream::Config {
            name: js_name(name),
            description: Some(MARK.to_owned()),
            subjects: (0..config.partitions).map(|p| subject(name, p)).collect(),
            max_age: config.horizon,
            storage: StorageType::File,
            retention: RetentionPolicy::Limits,
            discard: DiscardPolicy::Old,
            duplicate_window: DUPLICATE_WINDOW.min(config.horizon),
            num_replicas: self.options.replicas,
            allow_direct: true,
            ..Default::default()
        };
        // A stream of that name, even with the same settings, is there already: refused, as
        // on every backend.
        if self.stream(name).await.is_ok() {
            return Err(Error::StreamExists {
                stream: name.to_owned(),
            });
        }
        self.js
            .create_stream(js_config)
            .await
            .map_err(|e| match e.kind() {
                CreateStreamErrorKind::JetStream(j)
                    if j.error_code() == ErrorCode::STREAM_NAME_EXIST =>
                {
                    Error::StreamExists {
                        stream: name.to_owned(),
                    }
                }
                CreateStreamErrorKind::JetStream(j) => {
                    Error::InvalidArgument(format!("{name}: {j}"))
                }
                _ => nats_error(e),
            })?;
        self.describe(name).await
    }

    pub(super) async fn describe(&self, name: &str) -> Result<StreamInfo> {
        let mut s = self.stream(name).await?;
        let info = s.info().await.map_err(nats_error)?.clone();
        let partitions = info.config.subjects.len() as u32;
        // Messages per partition, and each partition's first message.
        let mut counts: BTreeMap<u32, u64> = BTreeMap::new();
        if info.state.messages > 0 {
            let mut subjects = s
                .info_with_subjects(format!("cloudstream.{name}.*"))
                .await
                .map_err(nats_error)?;
            while let Some((subj, count)) = subjects.try_next().await.map_err(nats_error)? {
                if let Some(p) = partition_of(name, &subj) {
                    counts.insert(p, count as u64);
                }
            }
        }
        let mut infos = Vec::with_capacity(partitions as usize);
        for p in 0..partitions {
            let earliest = if counts.get(&p).copied().unwrap_or(0) > 0 {
                s.direct_get_next_for_subject(subject(name, p), Some(info.state.first_sequence))
                    .await
                    .ok()
                    .map(|m| m.sequence.into())
            } else {
                None
            };
            infos.push(PartitionInfo {
                partition: p,
                id: subject(name, p),
                earliest,
                next: None,
                bytes: None,
            });
        }
        let details = BTreeMap::from([
            ("messages".to_owned(), info.state.messages.to_string()),
            ("bytes".to_owned(), info.state.bytes.to_string()),
            (
                "first_seq".to_owned(),
                info.state.first_sequence.to_string(),
            ),
            ("last_seq".to_owned(), info.state.last_sequence.to_string()),
            ("storage".to_owned(), format!("{:?}", info.config.storage)),
            ("replicas".to_owned(), info.config.num_replicas.to_string()),
            (
                "duplicate_window_ms".to_owned(),
                info.config.duplicate_window.as_millis().to_string(),
            ),
            (
                "per_partition".to_owned(),
                counts
                    .iter()
                    .map(|(p, n)| format!("{p}:{n}"))
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
        ]);
        Ok(StreamInfo {
            name: name.to_owned(),
            horizon_ms: info.config.max_age.as_millis() as u64,
            partitions: infos,
            resource: format!("{}/{}", self.options.host, js_name(name)),
            details,
        })
    }

    pub(super) async fn list(&self) -> Result<Vec<String>> {
        let mut names: Vec<String> = self
            .js
            .streams()
            .filter_map(|info| async move {
                match info {
                    Ok(info) if info.config.description.as_deref() == Some(MARK) => {
                        Some(Ok(our_name(&info.config.name)))
                    }
                    Ok(_) => None,
                    Err(e) => Some(Err(nats_error(e))),
                }
            })
            .try_collect()
            .await?;
        names.sort();
        Ok(names)
    }

    pub(super) async fn delete(&self, name: &str) -> Result<()> {
        cloudstream_log::validate_name("stream", name)?;
        self.forget(name);
        self.js
            .delete_stream(js_name(name))
            .await
            .map_err(|e| match e.kind() {
                GetStreamErrorKind::JetStream(j)
                    if j.error_code() == ErrorCode::STREAM_NOT_FOUND =>
                {
                    Error::StreamNotFound {
                        stream: name.to_owned(),
                    }
                }
                _ => nats_error(e),
            })
            .map(drop)
    }
}
