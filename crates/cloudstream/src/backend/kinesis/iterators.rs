//! Shard iterators, cached per continuation point so a consumer reading on from its last
//! record makes one `GetRecords` call per read; replaced before they expire.

use super::*;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct IteratorKey {
    pub(super) stream: String,
    pub(super) partition: u32,
    pub(super) start: String,
}

impl KinesisBackend {
    /// Makes every cached shard iterator `by` older, as if time had passed: for tests of
    /// iterator expiry, which otherwise take five minutes.
    #[doc(hidden)]
    pub fn age_cached_iterators(&self, by: Duration) {
        for (_, at) in self.lock_iterators().values_mut() {
            *at = at.checked_sub(by).unwrap_or(*at);
        }
    }

    pub(super) fn lock_iterators(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<IteratorKey, (String, Instant)>> {
        self.iterators.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn cached_iterator(&self, key: &IteratorKey) -> Option<String> {
        let mut cache = self.lock_iterators();
        let (iterator, at) = cache.remove(key)?;
        (at.elapsed() < ITERATOR_TTL).then_some(iterator)
    }

    pub(super) fn cache_iterator(&self, key: IteratorKey, iterator: String, obtained: Instant) {
        let mut cache = self.lock_iterators();
        if cache.len() >= ITERATOR_CACHE {
            cache.retain(|_, (_, at)| at.elapsed() < ITERATOR_TTL);
            if cache.len() >= ITERATOR_CACHE {
                cache.clear();
            }
        }
        cache.insert(key, (iterator, obtained));
    }

    /// A fresh shard iterator for a start point. A time still in the future starts at
    /// `LATEST` (Kinesis refuses future timestamps); the read then skips records appended
    /// before that time.
    pub(super) async fn new_iterator(
        &self,
        stream: &str,
        shard: &Shard,
        start: PartitionStart,
    ) -> Result<String> {
        let (kind, sequence, time) = match start {
            PartitionStart::Earliest => (ShardIteratorType::TrimHorizon, None, None),
            PartitionStart::Latest => (ShardIteratorType::Latest, None, None),
            PartitionStart::At(s) => (ShardIteratorType::AtSequenceNumber, Some(s), None),
            PartitionStart::After(s) => (ShardIteratorType::AfterSequenceNumber, Some(s), None),
            PartitionStart::AtTime(t) if t >= SystemTime::now() => {
                (ShardIteratorType::Latest, None, None)
            }
            PartitionStart::AtTime(t) => (
                ShardIteratorType::AtTimestamp,
                None,
                Some(DateTime::from(t)),
            ),
        };
        let get = |kind: ShardIteratorType, time: Option<DateTime>| {
            self.call("GetShardIterator", move || {
                let request = self
                    .client
                    .get_shard_iterator()
                    .stream_name(stream)
                    .shard_id(&shard.id)
                    .shard_iterator_type(kind.clone())
                    .set_starting_sequence_number(sequence.map(|s| s.to_string()))
                    .set_timestamp(time);
                async move { request.send().await.map_err(|e| aws_error(e, stream)) }
            })
        };
        let out = match time {
            // kinesalite never answers AT_TIMESTAMP when no record is that recent. On a local
            // server, bound the wait, then scan from the trim horizon instead: slower, never
            // wrong, since the read drops records older than the time asked for.
            Some(_) if self.local_server => match tokio::time::timeout(AT_TIMESTAMP_WAIT, get(kind, time)).await {
                Ok(out) => out,
                Err(_) => {
                    tracing::warn!(stream, shard = %shard.id, "AT_TIMESTAMP unanswered; scanning from TRIM_HORIZON");
                    get(ShardIteratorType::TrimHorizon, None).await
                }
            },
            _ => get(kind, time).await,
        }
        .map_err(|e| self.stream_error(stream, e))?;
        out.shard_iterator()
            .map(str::to_owned)
            .ok_or_else(|| Error::Backend("GetShardIterator returned no iterator".into()))
    }
}
