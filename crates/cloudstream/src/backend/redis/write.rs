//! Appends: one transaction per call, a guard script (the stream and partition exist; the
//! partition trimmed to the horizon by the server's clock) then `XADD NOMKSTREAM` per event,
//! in order.

use redis::{RedisResult, Value};

use super::errors::{no_script, says};
use super::keys::{self, EntryId};
use super::{redis_error, text, RedisBackend};
use crate::event::to_millis;
use crate::{Error, Event, Position, Result};

/// Largest event (payload, key and headers).
pub(super) const MAX_RECORD_BYTES: usize = 8 * 1024 * 1024;
/// Most events and bytes in one append call (one pipeline).
pub(super) const MAX_BATCH_RECORDS: usize = 10_000;
pub(super) const MAX_BATCH_BYTES: usize = 32 * 1024 * 1024;

/// Entry fields: payload, key, event time (ms), and `h:NAME` per header.
pub(super) const PAYLOAD: &str = "p";
pub(super) const KEY: &str = "k";
pub(super) const TIME: &str = "t";
pub(super) const HEADER: &str = "h:";

impl RedisBackend {
    /// Appends events, in order, to one partition (the `Backend::append` primitive), in one
    /// `MULTI`/`EXEC`. If one `XADD` fails when run (not at queueing), the call fails and the
    /// events before it are stored.
    pub(super) async fn write(
        &self,
        stream: &str,
        partition: u32,
        events: &[Event],
    ) -> Result<Vec<Position>> {
        cloudstream_log::validate_name("stream", stream)?;
        if let Some(e) = events.iter().find(|e| e.size() > MAX_RECORD_BYTES) {
            return Err(Error::RecordTooLarge {
                size: e.size(),
                max: MAX_RECORD_BYTES,
            });
        }
        let key = keys::partition(stream, partition);
        // One transaction: a connection lost half-way leaves nothing of the call stored, and
        // an out-of-memory refusal at queueing aborts it whole.
        let mut pipe = redis::pipe();
        pipe.atomic().ignore_errors();
        pipe.cmd("EVALSHA")
            .arg(self.scripts.guard.get_hash())
            .arg(2)
            .arg(keys::meta(stream))
            .arg(&key)
            .arg(partition);
        for event in events {
            let add = pipe.cmd("XADD").arg(&key).arg("NOMKSTREAM").arg("*");
            add.arg(PAYLOAD).arg(&event.payload[..]);
            if let Some(k) = &event.key {
                add.arg(KEY).arg(k);
            }
            if let Some(t) = event.time {
                add.arg(TIME).arg(to_millis(t));
            }
            for (name, value) in &event.headers {
                add.arg(format!("{HEADER}{name}")).arg(value);
            }
        }
        let mut conn = self.conn();
        let replies: Vec<RedisResult<Value>> = pipe
            .query_async(&mut conn)
            .await
            .map_err(|e| redis_error(e, stream))?;
        let mut replies = replies.into_iter();
        match replies.next() {
            Some(Ok(_)) | None => {}
            // The server forgot the script (restarted): the events went in untrimmed; load
            // it for the next append.
            Some(Err(e)) if no_script(&e) => {
                if let Err(e) = self.scripts.guard.load_async(&mut conn).await {
                    tracing::warn!(error = %e, "the append script could not be loaded");
                }
            }
            Some(Err(e)) if says(&e, "NOPARTITION") => {
                return Err(self.missing_partition(stream, partition).await)
            }
            Some(Err(e)) => return Err(redis_error(e, stream)),
        }
        let mut positions = Vec::with_capacity(events.len());
        for reply in replies {
            match reply.map_err(|e| redis_error(e, stream))? {
                // NOMKSTREAM: the partition's key is gone (the stream deleted meanwhile).
                Value::Nil => return Err(self.missing_partition(stream, partition).await),
                id => {
                    let id = text(&id).ok_or_else(|| {
                        Error::Backend(format!("XADD answered {id:?}, not an id").into())
                    })?;
                    positions.push(Position::new(partition, EntryId::parse(&id)?.sequence()));
                }
            }
        }
        Ok(positions)
    }
}
