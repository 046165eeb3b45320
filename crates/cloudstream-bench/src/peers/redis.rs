//! Redis Streams, with the append-only file fsynced before each reply (`appendfsync
//! always`: one fsync per event-loop turn, for every client of that turn) or once a second
//! (`everysec`). A stream of P partitions is P Redis streams `NAME:p`; producers `XADD`
//! (a batch is one pipeline), consumers `XREAD BLOCK` their keys.

use std::path::Path;

use anyhow::{bail, Context, Result};
use async_trait::async_trait;
use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use redis::Value;

use super::{Kind, Tools};
use crate::peer::{assigned, Consumer, Peer, Producer, Spread};
use crate::process::{free_port, Server};

pub(super) const ALWAYS: Kind = Kind {
    name: "redis-always",
    about: "Redis Streams, appendfsync always",
    durability: "AOF fsync before replies (appendfsync always)",
    start: |dir, tools| Box::pin(start(dir, tools, &ALWAYS)),
};

pub(super) const EVERYSEC: Kind = Kind {
    name: "redis-everysec",
    about: "Redis Streams, appendfsync everysec",
    durability: "AOF fsync once a second (appendfsync everysec)",
    start: |dir, tools| Box::pin(start(dir, tools, &EVERYSEC)),
};

struct Redis {
    server: Server,
    client: redis::Client,
    kind: &'static Kind,
}

async fn start(dir: &Path, tools: &Tools, kind: &'static Kind) -> Result<Box<dyn Peer>> {
    let fsync = if kind.name == ALWAYS.name {
        "always"
    } else {
        "everysec"
    };
    let port = free_port()?;
    let args: Vec<String> = [
        "--bind",
        "127.0.0.1",
        "--port",
        &port.to_string(),
        "--dir",
        &dir.display().to_string(),
        "--save",
        "",
        "--appendonly",
        "yes",
        "--appendfsync",
        fsync,
        // No rewrite forks in the middle of a measurement.
        "--auto-aof-rewrite-percentage",
        "0",
    ]
    .map(String::from)
    .to_vec();
    let mut server = Server::start(
        kind.name,
        Path::new("redis-server"),
        &args,
        dir,
        &tools.logs,
    )?;
    server.wait_for(&format!("127.0.0.1:{port}")).await?;
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?;
    Ok(Box::new(Redis {
        server,
        client,
        kind,
    }))
}

impl Redis {
    /// A connection of its own, without redis-rs' 500 ms response timeout (an fsync can
    /// take longer on a busy disk; the harness bounds each call itself).
    async fn connect(&self) -> Result<MultiplexedConnection> {
        let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
        Ok(self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?)
    }
}

#[async_trait]
impl Peer for Redis {
    fn kind(&self) -> &'static Kind {
        self.kind
    }

    fn pid(&self) -> Option<u32> {
        Some(self.server.pid())
    }

    async fn create(&self, _stream: &str, _partitions: u32) -> Result<()> {
        // Streams come with their first entry.
        Ok(())
    }

    async fn producer(&self, stream: &str, partitions: u32) -> Result<Box<dyn Producer>> {
        Ok(Box::new(Adder {
            conn: self.connect().await?,
            stream: stream.to_owned(),
            spread: Spread::new(partitions),
        }))
    }

    async fn consumer(
        &self,
        stream: &str,
        partitions: u32,
        index: u32,
        of: u32,
    ) -> Result<Box<dyn Consumer>> {
        let keys: Vec<String> = assigned(partitions, index, of)
            .map(|p| format!("{stream}:{p}"))
            .collect();
        Ok(Box::new(Reader {
            conn: self.connect().await?,
            after: vec!["0-0".to_owned(); keys.len()],
            keys,
        }))
    }

    async fn stop(self: Box<Self>) -> Result<()> {
        self.server.stop().await
    }
}

struct Adder {
    conn: MultiplexedConnection,
    stream: String,
    spread: Spread,
}

impl Adder {
    fn key(&mut self, key: Option<&str>) -> String {
        format!("{}:{}", self.stream, self.spread.partition(key))
    }
}

#[async_trait]
impl Producer for Adder {
    async fn send(&mut self, key: Option<&str>, payload: Bytes) -> Result<()> {
        let stream = self.key(key);
        let _: String = redis::cmd("XADD")
            .arg(stream)
            .arg("*")
            .arg("p")
            .arg(payload.as_ref())
            .query_async(&mut self.conn)
            .await?;
        Ok(())
    }

    async fn send_batch(&mut self, key: Option<&str>, payloads: Vec<Bytes>) -> Result<()> {
        let mut pipe = redis::pipe();
        for payload in &payloads {
            let stream = self.key(key);
            pipe.cmd("XADD")
                .arg(stream)
                .arg("*")
                .arg("p")
                .arg(payload.as_ref());
        }
        let ids: Vec<String> = pipe.query_async(&mut self.conn).await?;
        anyhow::ensure!(
            ids.len() == payloads.len(),
            "{} ids for {} events",
            ids.len(),
            payloads.len()
        );
        Ok(())
    }
}

/// `XREAD COUNT 10000 BLOCK 100` over its keys, each after the last id read.
struct Reader {
    conn: MultiplexedConnection,
    keys: Vec<String>,
    after: Vec<String>,
}

#[async_trait]
impl Consumer for Reader {
    async fn poll(&mut self) -> Result<Vec<Bytes>> {
        let reply: Value = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(10_000)
            .arg("BLOCK")
            .arg(100)
            .arg("STREAMS")
            .arg(&self.keys)
            .arg(&self.after)
            .query_async(&mut self.conn)
            .await?;
        let mut out = Vec::new();
        for (key, entries) in streams(reply)? {
            let i = self
                .keys
                .iter()
                .position(|k| *k == key)
                .context("a reply for a key not asked for")?;
            for entry in entries {
                let (id, payload) = entry_of(entry)?;
                self.after[i] = id;
                out.push(payload);
            }
        }
        Ok(out)
    }
}

/// The text of a reply.
fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// An `XREAD` reply's streams: key and entries (RESP2 arrays or a RESP3 map; nil if none).
fn streams(reply: Value) -> Result<Vec<(String, Vec<Value>)>> {
    let pairs: Vec<(Value, Value)> = match reply {
        Value::Nil => return Ok(Vec::new()),
        Value::Map(pairs) => pairs,
        Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                Value::Array(mut kv) if kv.len() == 2 => {
                    let entries = kv.pop().unwrap_or(Value::Nil);
                    Ok((kv.pop().unwrap_or(Value::Nil), entries))
                }
                other => bail!("an XREAD stream that is not a key and entries: {other:?}"),
            })
            .collect::<Result<_>>()?,
        other => bail!("an XREAD reply that is not streams: {other:?}"),
    };
    pairs
        .into_iter()
        .map(|(key, entries)| {
            let key = text(&key).context("an XREAD stream without a key")?;
            let Value::Array(entries) = entries else {
                bail!("XREAD entries that are not an array")
            };
            Ok((key, entries))
        })
        .collect()
}

/// An entry's id and its `p` field.
fn entry_of(entry: Value) -> Result<(String, Bytes)> {
    let Value::Array(mut parts) = entry else {
        bail!("an entry that is not an array")
    };
    anyhow::ensure!(parts.len() == 2, "an entry that is not an id and fields");
    let fields = parts.pop().unwrap_or(Value::Nil);
    let id = text(&parts[0]).context("an entry without an id")?;
    let Value::Array(fields) = fields else {
        bail!("an entry without fields")
    };
    let payload = match fields.into_iter().nth(1) {
        Some(Value::BulkString(b)) => Bytes::from(b),
        other => bail!("an entry whose payload is {other:?}"),
    };
    Ok((id, payload))
}
