//! Reads: one shard from a start point through cached shard iterators, walking empty pages
//! and long-polling within the limits Kinesis sets.

use super::*;

impl KinesisBackend {
    /// Reads the shard of `partition` from `start` (the `Backend::read` primitive).
    pub(super) async fn read_shard(
        &self,
        stream: &str,
        partition: u32,
        start: PartitionStart,
        options: &ReadOptions,
    ) -> Result<Vec<Record>> {
        let shard = self.shard(stream, partition).await?;
        let key = |start: PartitionStart| IteratorKey {
            stream: stream.to_owned(),
            partition,
            start: start.to_string(),
        };
        let reusable = start != PartitionStart::Latest;
        let deadline = options.wait.map(|w| Instant::now() + w);
        let limit = options.max_records.clamp(1, MAX_GET_RECORDS) as i32;
        let mut obtained = Instant::now();
        let mut iterator = match reusable
            .then(|| self.cached_iterator(&key(start)))
            .flatten()
        {
            Some(it) => it,
            None => self.new_iterator(stream, &shard, start).await?,
        };
        let not_before = match start {
            PartitionStart::AtTime(t) => Some(t),
            _ => None,
        };
        let (mut refreshed, mut skipped) = (false, 0);
        loop {
            let got = self
                .call("GetRecords", || async {
                    self.client
                        .get_records()
                        .shard_iterator(&iterator)
                        .limit(limit)
                        .send()
                        .await
                        .map_err(|e| aws_error(e, stream))
                })
                .await;
            let out = match got {
                Ok(out) => out,
                Err(AwsError::ExpiredIterator(_)) if !refreshed => {
                    self.metrics
                        .iterator_refreshes
                        .fetch_add(1, Ordering::Relaxed);
                    refreshed = true;
                    obtained = Instant::now();
                    iterator = self.new_iterator(stream, &shard, start).await?;
                    continue;
                }
                Err(e) => return Err(self.stream_error(stream, e)),
            };
            let next = out.next_shard_iterator().map(str::to_owned);
            if !out.records().is_empty() {
                let mut records = Vec::with_capacity(out.records().len());
                let mut bytes = 0;
                let mut whole = true;
                for r in out.records() {
                    bytes += r.data().as_ref().len();
                    if !records.is_empty() && bytes > options.max_bytes {
                        whole = false;
                        break;
                    }
                    let record = Self::to_record(partition, r)?;
                    if not_before.is_none_or(|t| record.append_time >= t) {
                        records.push(record);
                    }
                }
                if records.is_empty() {
                    if let Some(next) = next {
                        iterator = next; // every record was older than the time asked for
                        continue;
                    }
                }
                if let (true, Some(next), Some(last)) = (whole, next, records.last()) {
                    let after = PartitionStart::After(last.position.sequence);
                    self.cache_iterator(key(after), next, obtained);
                }
                return Ok(records);
            }
            let Some(next) = next else {
                // The shard was closed by a split or merge (AWS reshards on-demand streams
                // itself). Its records continue in child shards this backend does not follow:
                // say so rather than return nothing forever.
                self.forget(stream);
                return Err(Error::Backend(
                    format!("shard {} of {stream} is closed: the stream was resharded, and cloudstream does not follow resharding", shard.id).into(),
                ));
            };
            iterator = next;
            if out.millis_behind_latest().unwrap_or(0) > 0 && skipped < MAX_EMPTY_PAGES {
                skipped += 1;
                continue; // an empty stretch of the shard; records may lie further on
            }
            match deadline {
                Some(d) if Instant::now() < d => {
                    tokio::time::sleep(POLL.min(d - Instant::now())).await;
                }
                _ => {
                    if reusable {
                        self.cache_iterator(key(start), iterator, obtained);
                    }
                    return Ok(Vec::new());
                }
            }
        }
    }
}
