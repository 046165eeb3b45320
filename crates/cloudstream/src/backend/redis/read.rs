//! Reads by position and time: `XRANGE` in chunks sized to the read's byte budget, the
//! partition's extent (`XINFO STREAM`) beside the first chunk where a position may have
//! expired, and `XREAD BLOCK` on a connection of its own for a long poll.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisResult, Value};

use super::keys::{self, EntryId};
use super::streams::{is_no_such_key, Extent};
use super::write::{HEADER, KEY, PAYLOAD, TIME};
use super::{redis_error, text, RedisBackend, MAX_IDLE_BLOCKING};
use crate::backend::{PartitionStart, ReadOptions};
use crate::event::from_millis;
use crate::{Error, Event, Position, Record, Result};

/// Entries asked for by a read's first `XRANGE`, before their size is known.
const FIRST_CHUNK: usize = 16;

/// A read's range: the first id wanted (`-` for the oldest), inclusive.
#[derive(Debug, Clone, Copy)]
enum From {
    Oldest,
    Id(EntryId),
}

impl From {
    /// The argument of `XRANGE` for it.
    fn arg(self) -> String {
        match self {
            From::Oldest => "-".to_owned(),
            From::Id(id) => id.to_string(),
        }
    }

    /// The id `XREAD` waits after (exclusive).
    fn after(self) -> EntryId {
        match self {
            From::Oldest => EntryId::ZERO,
            From::Id(id) => id.previous(),
        }
    }
}

/// One entry as a record of `partition`.
pub(super) fn to_record(partition: u32, entry: Value) -> Result<Record> {
    let bad = |what: &str| Error::Corrupt(format!("a Redis stream entry {what}").into());
    let Value::Array(mut parts) = entry else {
        return Err(bad("is not an array"));
    };
    if parts.len() != 2 {
        return Err(bad("is not an id and fields"));
    }
    let values = parts.pop().unwrap_or(Value::Nil);
    let id = text(&parts[0]).ok_or_else(|| bad("has no id"))?;
    let id = EntryId::parse(&id)?;
    let pairs: Vec<(Value, Value)> = match values {
        Value::Array(items) => {
            let mut items = items.into_iter();
            let mut pairs = Vec::new();
            while let (Some(k), Some(v)) = (items.next(), items.next()) {
                pairs.push((k, v));
            }
            pairs
        }
        Value::Map(pairs) => pairs,
        _ => return Err(bad("has no fields")),
    };
    let mut event = Event::default();
    let mut headers = BTreeMap::new();
    for (name, value) in pairs {
        let name = text(&name).ok_or_else(|| bad("has a field without a name"))?;
        let bytes = match value {
            Value::BulkString(b) => b,
            other => text(&other).unwrap_or_default().into_bytes(),
        };
        match name.as_str() {
            PAYLOAD => event.payload = Bytes::from(bytes),
            KEY => event.key = Some(String::from_utf8_lossy(&bytes).into_owned()),
            TIME => {
                let ms = String::from_utf8_lossy(&bytes)
                    .parse::<i64>()
                    .map_err(|_| bad("has a bad time"))?;
                event.time = Some(from_millis(ms));
            }
            _ => {
                if let Some(header) = name.strip_prefix(HEADER) {
                    headers.insert(
                        header.to_owned(),
                        String::from_utf8_lossy(&bytes).into_owned(),
                    );
                }
            }
        }
    }
    event.headers = headers;
    Ok(Record {
        position: Position::new(partition, id.sequence()),
        append_time: from_millis(id.millis() as i64),
        event,
    })
}

/// The entries of an `XRANGE` reply (or of one stream of an `XREAD` reply).
pub(super) fn entries(reply: Value) -> Vec<Value> {
    match reply {
        Value::Array(entries) => entries,
        _ => Vec::new(),
    }
}

/// The entries of an `XREAD` / `XREADGROUP` reply by stream key: `[[key, entries], ...]`
/// (RESP2) or `{key: entries}` (RESP3); none when it timed out.
pub(super) fn read_streams(reply: Value) -> Vec<(String, Vec<Value>)> {
    let pairs: Vec<(Value, Value)> = match reply {
        Value::Array(streams) => streams
            .into_iter()
            .filter_map(|s| match s {
                Value::Array(mut kv) if kv.len() == 2 => {
                    let entries = kv.pop()?;
                    Some((kv.pop()?, entries))
                }
                _ => None,
            })
            .collect(),
        Value::Map(streams) => streams,
        _ => Vec::new(),
    };
    pairs
        .into_iter()
        .filter_map(|(k, v)| Some((text(&k)?, entries(v))))
        .collect()
}

/// A connection for one blocking read, back to the pool only if the read finished (one
/// dropped while blocked still has an answer coming).
pub(super) struct Blocking<'a> {
    backend: &'a RedisBackend,
    pub(super) conn: Option<MultiplexedConnection>,
}

impl Drop for Blocking<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            let mut idle = self
                .backend
                .blocking
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if idle.len() < MAX_IDLE_BLOCKING {
                idle.push(conn);
            }
        }
    }
}

impl RedisBackend {
    /// Reads one partition from `start` (the `Backend::read` primitive).
    pub(super) async fn read_partition(
        &self,
        stream: &str,
        partition: u32,
        start: PartitionStart,
        options: &ReadOptions,
    ) -> Result<Vec<Record>> {
        cloudstream_log::validate_name("stream", stream)?;
        let key = keys::partition(stream, partition);
        let (from, asked) = match start {
            PartitionStart::Earliest => (From::Oldest, None),
            PartitionStart::AtTime(t) => {
                let ms = crate::event::to_millis(t).max(0) as u64;
                (From::Id(EntryId::at_millis(ms)), None)
            }
            PartitionStart::At(s) => {
                let id = EntryId::of(s)?;
                (From::Id(id), Some(id))
            }
            PartitionStart::After(s) => {
                let id = EntryId::of(s)?.next();
                (From::Id(id), Some(id))
            }
            PartitionStart::Latest => {
                let end = self.extent(stream, partition).await?.last_generated.next();
                (From::Id(end), None)
            }
        };
        let budget = options.max_records.max(1);
        let first = budget.min(FIRST_CHUNK);
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        if asked.is_some() {
            pipe.cmd("XINFO").arg("STREAM").arg(&key);
        }
        pipe.cmd("XRANGE")
            .arg(&key)
            .arg(from.arg())
            .arg("+")
            .arg("COUNT")
            .arg(first);
        // XRANGE of a missing key answers nothing, as an empty partition does.
        pipe.cmd("EXISTS").arg(&key);
        let replies: Vec<RedisResult<Value>> = pipe
            .query_async(&mut self.conn())
            .await
            .map_err(|e| redis_error(e, stream))?;
        let mut replies = replies.into_iter();
        let mut take = || replies.next().unwrap_or(Ok(Value::Nil));
        if let Some(asked) = asked {
            let extent = Extent::parse(self.reply(take(), stream, partition).await?)?;
            check_expired(partition, asked, &extent)?;
        }
        let first_entries = entries(self.reply(take(), stream, partition).await?);
        if self.reply(take(), stream, partition).await? == Value::Int(0) {
            return Err(self.missing_partition(stream, partition).await);
        }
        let mut out = Vec::new();
        let mut bytes = 0;
        let mut chunk = first_entries;
        let mut asked_for = first;
        loop {
            let got = chunk.len();
            for entry in chunk {
                let record = to_record(partition, entry)?;
                let size = record.event.size();
                if !out.is_empty() && bytes + size > options.max_bytes {
                    return Ok(out);
                }
                bytes += size;
                out.push(record);
            }
            if got < asked_for || out.len() >= budget || bytes >= options.max_bytes {
                break;
            }
            // The next chunk, sized by the entries seen so far to what the budget has left.
            let average = (bytes / out.len().max(1)).max(1);
            asked_for = ((options.max_bytes - bytes) / average).clamp(1, budget - out.len());
            let after = out.last().map_or(EntryId::ZERO, |r| {
                EntryId::of(r.position.sequence).unwrap_or(EntryId::ZERO)
            });
            let reply: Value = redis::cmd("XRANGE")
                .arg(&key)
                .arg(format!("({after}"))
                .arg("+")
                .arg("COUNT")
                .arg(asked_for)
                .query_async(&mut self.conn())
                .await
                .map_err(|e| redis_error(e, stream))?;
            chunk = entries(reply);
        }
        match options.wait {
            Some(wait) if out.is_empty() && !wait.is_zero() => {
                self.wait_for(
                    stream,
                    partition,
                    from.after(),
                    budget.min(FIRST_CHUNK * 8),
                    wait,
                )
                .await
            }
            _ => Ok(out),
        }
    }

    /// A reply of a read's pipeline: a partition key found missing is a missing stream or
    /// partition.
    async fn reply(
        &self,
        reply: RedisResult<Value>,
        stream: &str,
        partition: u32,
    ) -> Result<Value> {
        match reply {
            Ok(v) => Ok(v),
            Err(e) if is_no_such_key(&e) => Err(self.missing_partition(stream, partition).await),
            Err(e) => Err(redis_error(e, stream)),
        }
    }

    /// A connection for one blocking command, and the guard that puts it back in the pool
    /// once the caller stores it there (`guard.conn = Some(conn)`) after the command
    /// answered: one dropped while blocked still has an answer coming.
    pub(super) async fn blocking_conn(
        &self,
        stream: &str,
    ) -> Result<(Blocking<'_>, MultiplexedConnection)> {
        let idle = self
            .blocking
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop();
        let conn = match idle {
            Some(conn) => conn,
            None => {
                let config = AsyncConnectionConfig::new()
                    .set_response_timeout(None)
                    .set_connection_timeout(Some(Duration::from_secs(5)));
                self.client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                    .map_err(|e| redis_error(e, stream))?
            }
        };
        let guard = Blocking {
            backend: self,
            conn: None,
        };
        Ok((guard, conn))
    }

    /// Waits up to `wait` for entries after `after`, on a connection of its own.
    async fn wait_for(
        &self,
        stream: &str,
        partition: u32,
        after: EntryId,
        count: usize,
        wait: Duration,
    ) -> Result<Vec<Record>> {
        let (mut guard, mut conn) = self.blocking_conn(stream).await?;
        let block_ms = wait.as_millis().clamp(1, u128::from(u32::MAX)) as u64;
        let reply: RedisResult<Value> = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(count)
            .arg("BLOCK")
            .arg(block_ms)
            .arg("STREAMS")
            .arg(keys::partition(stream, partition))
            .arg(after.to_string())
            .query_async(&mut conn)
            .await;
        let reply = match reply {
            Ok(reply) => reply,
            Err(e) if is_no_such_key(&e) => {
                return Err(self.missing_partition(stream, partition).await)
            }
            Err(e) => return Err(redis_error(e, stream)),
        };
        guard.conn = Some(conn);
        read_streams(reply)
            .into_iter()
            .flat_map(|(_, entries)| entries)
            .map(|entry| to_record(partition, entry))
            .collect()
    }
}

/// `Expired` when the partition lost entries and the position asked is below what is left.
fn check_expired(partition: u32, asked: EntryId, extent: &Extent) -> Result<()> {
    if !extent.lost_entries() {
        return Ok(());
    }
    let earliest = extent.first.unwrap_or_else(|| extent.last_generated.next());
    if asked < earliest && asked <= extent.last_generated {
        return Err(Error::Expired {
            requested: Position::new(partition, asked.sequence()),
            earliest: Position::new(partition, earliest.sequence()),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn entries_become_records() {
        let entry = Value::Array(vec![
            bulk("1700000000000-3"),
            Value::Array(vec![
                bulk("p"),
                Value::BulkString(vec![0, 255]),
                bulk("k"),
                bulk("device-7"),
                bulk("t"),
                bulk("1699999999000"),
                bulk("h:unit"),
                bulk("celsius"),
            ]),
        ]);
        let r = to_record(2, entry).expect("record");
        assert_eq!(r.position.partition, 2);
        assert_eq!(r.event.payload.as_ref(), [0, 255]);
        assert_eq!(r.event.key.as_deref(), Some("device-7"));
        assert_eq!(r.event.headers["unit"], "celsius");
        assert_eq!(r.event.time, Some(from_millis(1_699_999_999_000)));
        assert_eq!(r.append_time, from_millis(1_700_000_000_000));
        assert!(to_record(0, bulk("x")).is_err());
    }

    #[test]
    fn only_positions_of_lost_entries_are_expired() {
        let id = |ms| EntryId::at_millis(ms);
        let trimmed = Extent {
            length: 5,
            added: 9,
            first: Some(id(50)),
            last_generated: id(90),
        };
        assert!(matches!(
            check_expired(0, id(10), &trimmed),
            Err(Error::Expired { .. })
        ));
        assert!(check_expired(0, id(50), &trimmed).is_ok());
        let whole = Extent {
            added: 5,
            ..trimmed.clone()
        };
        assert!(check_expired(0, id(10), &whole).is_ok(), "nothing was lost");
        let emptied = Extent {
            length: 0,
            added: 9,
            first: None,
            last_generated: id(90),
        };
        assert!(matches!(
            check_expired(0, id(10), &emptied),
            Err(Error::Expired { .. })
        ));
        assert!(
            check_expired(0, id(90).next(), &emptied).is_ok(),
            "the end itself"
        );
    }
}
