//! Appends: `PutRecords` to one shard, failed records (and the later records of their keys)
//! sent again until every record is in, in key order.

use super::*;

impl KinesisBackend {
    /// One `PutRecords` call; returns each record's sequence number, or `None` if it failed.
    async fn put_once(
        &self,
        stream: &str,
        shard: &Shard,
        entries: &[(bytes::Bytes, String)],
    ) -> Result<Vec<Option<(String, String)>>> {
        let records = entries
            .iter()
            .map(|(data, key)| {
                PutRecordsRequestEntry::builder()
                    .data(Blob::new(data.to_vec()))
                    .partition_key(key)
                    .explicit_hash_key(&shard.starting_hash_key)
                    .build()
                    .map_err(|e| Error::InvalidArgument(e.to_string()))
            })
            .collect::<Result<Vec<_>>>()?;
        let out = self
            .call("PutRecords", || async {
                self.client
                    .put_records()
                    .stream_name(stream)
                    .set_records(Some(records.clone()))
                    .send()
                    .await
                    .map_err(|e| aws_error(e, stream))
            })
            .await
            .map_err(|e| self.stream_error(stream, e))?;
        if out.records().len() != entries.len() {
            return Err(Error::Backend(
                format!(
                    "PutRecords answered {} results for {} records",
                    out.records().len(),
                    entries.len()
                )
                .into(),
            ));
        }
        Ok(out
            .records()
            .iter()
            .map(|r| match (r.sequence_number(), r.error_code()) {
                (Some(seq), None) => {
                    Some((seq.to_owned(), r.shard_id().unwrap_or_default().to_owned()))
                }
                _ => None,
            })
            .collect())
    }

    /// Appends events, in order, to the shard of `partition` (the `Backend::append` primitive).
    pub(super) async fn append_to_shard(
        &self,
        stream: &str,
        partition: u32,
        events: &[Event],
    ) -> Result<Vec<Position>> {
        let shard = self.shard(stream, partition).await?;
        let mut entries = Vec::with_capacity(events.len());
        for event in events {
            let (data, key) = envelope::encode(event);
            let size = data.len() + key.len();
            if size > MAX_RECORD {
                return Err(Error::RecordTooLarge {
                    size: event.size(),
                    max: MAX_RECORD - ENVELOPE_ROOM,
                });
            }
            entries.push((data, key));
        }
        let keys: Vec<Option<&str>> = events.iter().map(|e| e.key.as_deref()).collect();
        let mut receipts: Vec<Option<Sequence>> = vec![None; events.len()];
        let mut pending: Vec<usize> = (0..events.len()).collect();
        let mut attempts = self.retry.attempts();
        while !pending.is_empty() {
            let batch: Vec<_> = pending.iter().map(|&i| entries[i].clone()).collect();
            let results = self.put_once(stream, &shard, &batch).await?;
            let mut failed = Vec::with_capacity(pending.len());
            for (&i, result) in pending.iter().zip(&results) {
                if let Some((seq, shard_id)) = result {
                    if *shard_id != shard.id && !shard_id.is_empty() {
                        self.forget(stream);
                        return Err(Error::Backend(
                            format!(
                                "record went to shard {shard_id}, not {}: the stream was resharded",
                                shard.id
                            )
                            .into(),
                        ));
                    }
                    receipts[i] = Some(seq.parse()?);
                }
                failed.push(result.is_none());
            }
            let pending_keys: Vec<Option<&str>> = pending.iter().map(|&i| keys[i]).collect();
            let again: Vec<usize> = put::to_resend(&pending_keys, &failed)
                .into_iter()
                .map(|j| pending[j])
                .collect();
            if again.is_empty() {
                break;
            }
            let failures = failed.iter().filter(|&&f| f).count() as u64;
            self.metrics
                .failed_records
                .fetch_add(failures, Ordering::Relaxed);
            self.metrics
                .reordered_resends
                .fetch_add(again.len() as u64 - failures, Ordering::Relaxed);
            if attempts.pause(None).await == Pause::Exhausted {
                let attempt = attempts.failed();
                return Err(Error::Unavailable(
                    format!("{failures} records of a PutRecords call to {stream} still failed after {attempt} attempts").into(),
                ));
            }
            pending = again;
        }
        receipts
            .into_iter()
            .map(|r| {
                r.map(|s| Position::new(partition, s))
                    .ok_or_else(|| Error::Backend("a record got no sequence number".into()))
            })
            .collect()
    }
}
