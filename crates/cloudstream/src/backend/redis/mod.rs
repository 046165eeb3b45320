//! `redis://`: Redis Streams (7.0 or later, standalone), through redis-rs on tokio.
//!
//! | cloudstream | Redis |
//! |---|---|
//! | stream `S` | a settings hash `cloudstream:{S}` (horizon, partitions) and one Redis stream per partition, `cloudstream:{S}:N`, made and deleted together by Lua scripts; the names in the set `cloudstream:streams` |
//! | horizon | `XTRIM MINID` to the server's `TIME` minus the horizon: on every append, and for every stream by a background pass (`trim_interval_ms`) |
//! | append to partition N | a pipeline: a script that checks the stream and partition and trims, then `XADD NOMKSTREAM` per event (a deleted stream is never made again by a late write) |
//! | event payload, key, time, headers | entry fields `p`, `k`, `t` (ms), `h:NAME` |
//! | sequence | the entry id `MS-SEQ` as one number, `MS << 64 | SEQ` (reads by time are native: an id starts with its append time) |
//! | `Earliest` / `Latest` / `At` / `After` / `AtTime` | `XRANGE -` / after the last generated id / `XRANGE ID` / `XRANGE (ID` / `XRANGE MS-0` |
//! | `Expired` | a position below the oldest entry of a partition that has lost entries (trimmed: `entries-added` above its length) |
//! | long poll | `XREAD BLOCK` on a connection of its own |
//! | consumer `NAME` | Redis consumer group `NAME` on every partition: its last delivered id is the checkpoint (`XGROUP SETID`, read back with `XINFO GROUPS`, which also gives the lag), so `redis-cli XINFO GROUPS` shows every cloudstream consumer |
//! | consumer-group leases (`member(id)`) | a hash per group, `cloudstream:{S}:leases:GROUP`, changed only by scripts on the server's clock |
//! | with `consumers=groups` | consumers read through their Redis consumer group (`XREADGROUP`, `XACK`, `XAUTOCLAIM` of members that died): see `groups.rs` |
//!
//! Durability is the server's: an append is acknowledged once Redis has it in memory, and
//! on disk only as its `appendonly` / `appendfsync` settings say (`Capabilities::durable` is
//! `appendonly yes`; describe shows both). Redis Cluster is not supported (the scripts reach
//! keys they build).

mod checkpoints;
mod errors;
mod groups;
mod keys;
mod options;
mod read;
mod scripts;
mod streams;
mod write;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::Value;

use self::errors::redis_error;
use self::groups::Groups;
pub use self::options::{RedisConsumers, RedisOptions};
use self::scripts::Scripts;
use super::{
    Backend, Capabilities, ConsumerInfo, Consumption, PartitionStart, ReadOptions, StreamConfig,
    StreamInfo,
};
use crate::url::ProviderUrl;
use crate::{Error, Event, Position, Record, Result};

/// Longest wait for an answer (blocking reads have connections of their own, without one).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);

/// Most connections kept for blocking reads (each blocking read needs one of its own).
const MAX_IDLE_BLOCKING: usize = 16;

/// What the server said about itself when we connected.
#[derive(Debug, Clone, Default)]
struct Server {
    version: String,
    appendonly: String,
    appendfsync: String,
    maxmemory_policy: String,
}

/// A Redis server as a backend.
pub struct RedisBackend {
    options: RedisOptions,
    client: redis::Client,
    conn: ConnectionManager,
    scripts: Scripts,
    server: Server,
    /// Connections for blocking reads, idle.
    blocking: Mutex<Vec<MultiplexedConnection>>,
    /// With `consumers=groups`: the consumer-group side.
    groups: Option<Groups>,
    /// The background tasks (trimming; with groups, settling and keeping entries in hand).
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("options", &self.options)
            .field("version", &self.server.version)
            .finish_non_exhaustive()
    }
}

impl Drop for RedisBackend {
    fn drop(&mut self) {
        self.tasks.iter().for_each(tokio::task::JoinHandle::abort);
    }
}

impl RedisBackend {
    /// Connects, checks the server (7.0 or later), and starts the background trimming.
    pub async fn connect(options: RedisOptions) -> Result<Arc<Self>> {
        let client = redis::Client::open(options.connect.as_str())
            .map_err(|e| Error::InvalidArgument(format!("redis: {:?}", e.kind())))?;
        // A pipeline of thousands of appends under `appendfsync always` takes longer than
        // redis-rs's default half second.
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_connection_timeout(Some(Duration::from_secs(5)));
        let mut conn = ConnectionManager::new_with_config(client.clone(), config)
            .await
            .map_err(|e| redis_error(e, "the server"))?;
        let server = server_facts(&mut conn).await?;
        let scripts = Scripts::new();
        // The append script goes in a pipeline by hash: load it now, so the first append
        // finds it (one the server forgets is loaded again when an append meets NOSCRIPT).
        scripts
            .guard
            .load_async(&mut conn)
            .await
            .map_err(|e| redis_error(e, "the server"))?;
        let major: u32 = server
            .version
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(0);
        if major < 7 {
            return Err(Error::Unsupported {
                operation: format!(
                    "Redis {} (cloudstream needs 7.0 or later: XINFO STREAM's entries-added, XADD NOMKSTREAM, exclusive XRANGE)",
                    server.version
                )
                .into(),
                backend: "redis",
            });
        }
        let (trim_interval, claim_idle) = (options.trim_interval, options.claim_idle);
        let (groups, settlements) = match options.consumers {
            RedisConsumers::Checkpoints => (None, None),
            RedisConsumers::Groups => {
                let (groups, rx) = Groups::new(claim_idle);
                (Some(groups), Some(rx))
            }
        };
        if let (Some(groups), Some(rx)) = (&groups, settlements) {
            // Not one of `tasks`: it outlives the backend until the acks queued are sent.
            let settler = groups::Settler {
                conn: conn.clone(),
                refresh: scripts.refresh.clone(),
                me: groups.me.clone(),
                claim_idle,
                settling: groups.settling.clone(),
            };
            tokio::spawn(groups::settle_forever(settler, rx));
        }
        Ok(Arc::new_cyclic(|me: &Weak<RedisBackend>| {
            let mut tasks = vec![tokio::spawn(trim_forever(me.clone(), trim_interval))];
            if groups.is_some() {
                tasks.push(tokio::spawn(groups::keep_in_hand(me.clone(), claim_idle)));
            }
            RedisBackend {
                tasks,
                groups,
                options,
                client,
                conn,
                scripts,
                server,
                blocking: Mutex::default(),
            }
        }))
    }

    /// The shared connection (it reconnects by itself).
    fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// Runs a script by hash, loading it first where the server does not know it.
    async fn run<T: redis::FromRedisValue>(
        &self,
        invocation: redis::ScriptInvocation<'_>,
        stream: &str,
    ) -> Result<T> {
        let mut conn = self.conn();
        invocation
            .invoke_async(&mut conn)
            .await
            .map_err(|e| redis_error(e, stream))
    }
}

/// Reads the server's version and persistence settings.
async fn server_facts(conn: &mut ConnectionManager) -> Result<Server> {
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(conn)
        .await
        .map_err(|e| redis_error(e, "the server"))?;
    let version = info
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .unwrap_or("unknown")
        .trim()
        .to_owned();
    // CONFIG may be renamed or refused (a managed Redis): then the settings are unknown.
    let config = |name: &'static str| {
        let mut conn = conn.clone();
        async move {
            let pair: redis::RedisResult<Vec<String>> = redis::cmd("CONFIG")
                .arg("GET")
                .arg(name)
                .query_async(&mut conn)
                .await;
            pair.ok()
                .and_then(|p| p.get(1).cloned())
                .unwrap_or_else(|| "unknown".to_owned())
        }
    };
    Ok(Server {
        version,
        appendonly: config("appendonly").await,
        appendfsync: config("appendfsync").await,
        maxmemory_policy: config("maxmemory-policy").await,
    })
}

/// Trims every stream to its horizon, every `interval`, for as long as the backend lives.
async fn trim_forever(backend: Weak<RedisBackend>, interval: Duration) {
    loop {
        tokio::time::sleep(interval).await;
        let Some(backend) = backend.upgrade() else {
            return;
        };
        if let Err(e) = backend.trim_all().await {
            tracing::warn!(error = %e, "trimming Redis streams to their horizon failed; will retry");
        }
    }
}

/// A reply's fields by name: a RESP2 array of name, value, ... or a RESP3 map.
fn fields(value: Value) -> BTreeMap<String, Value> {
    let pairs: Vec<(Value, Value)> = match value {
        Value::Map(pairs) => pairs,
        Value::Array(items) => {
            let mut items = items.into_iter();
            let mut pairs = Vec::new();
            while let (Some(k), Some(v)) = (items.next(), items.next()) {
                pairs.push((k, v));
            }
            pairs
        }
        _ => Vec::new(),
    };
    pairs
        .into_iter()
        .filter_map(|(k, v)| Some((text(&k)?, v)))
        .collect()
}

/// A reply as text, where it is text (or a number).
fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) | Value::VerbatimString { text: s, .. } => Some(s.clone()),
        Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A reply as a number, where it is one.
fn number(value: &Value) -> Option<i64> {
    match value {
        Value::Int(n) => Some(*n),
        other => text(other)?.parse().ok(),
    }
}

#[async_trait]
impl Backend for RedisBackend {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            replay_by_position: true,
            replay_by_time: true,
            dense_sequences: false,
            consumers_see_history: true,
            server_side_checkpoints: true,
            durable: self.server.appendonly == "yes",
            // With consumers=groups, Redis shares a group's entries among its members itself.
            leases: self.groups.is_none(),
            max_record_bytes: write::MAX_RECORD_BYTES,
            max_headers: usize::MAX,
            max_header_name_bytes: usize::MAX,
            max_header_value_bytes: usize::MAX,
            max_batch_records: write::MAX_BATCH_RECORDS,
            max_batch_bytes: write::MAX_BATCH_BYTES,
            max_partitions: streams::MAX_PARTITIONS,
            horizon_range: streams::HORIZONS,
            dedup_window: None,
        }
    }

    fn consumption(&self) -> Consumption<'_> {
        match self.groups {
            // The backend is its own checkpoint store: its consumer groups' last delivered ids.
            None => Consumption::Checkpoints(self),
            Some(_) => Consumption::Subscriptions(self),
        }
    }

    async fn create_stream(&self, name: &str, config: &StreamConfig) -> Result<StreamInfo> {
        self.create(name, config).await
    }

    async fn describe_stream(&self, name: &str) -> Result<StreamInfo> {
        self.describe(name).await
    }

    async fn list_streams(&self) -> Result<Vec<String>> {
        self.list().await
    }

    async fn delete_stream(&self, name: &str) -> Result<()> {
        self.delete(name).await
    }

    async fn append(
        &self,
        stream: &str,
        partition: u32,
        events: &[Event],
    ) -> Result<Vec<Position>> {
        self.write(stream, partition, events).await
    }

    async fn read(
        &self,
        stream: &str,
        partition: u32,
        start: PartitionStart,
        options: &ReadOptions,
    ) -> Result<Vec<Record>> {
        self.read_partition(stream, partition, start, options).await
    }

    async fn list_consumers(&self, stream: &str) -> Result<Vec<ConsumerInfo>> {
        self.consumers(stream).await
    }

    async fn delete_consumer(&self, stream: &str, consumer: &str) -> Result<bool> {
        crate::checkpoint::CheckpointStore::delete(self, stream, consumer).await
    }
}

/// Checks a `redis` URL without connecting.
pub(crate) fn check(url: &ProviderUrl) -> Result<()> {
    RedisOptions::from_url(url).map(drop)
}

/// Connects to what a `redis` URL names.
pub(crate) async fn open(url: ProviderUrl) -> Result<Arc<dyn Backend>> {
    let backend: Arc<dyn Backend> = RedisBackend::connect(RedisOptions::from_url(&url)?).await?;
    Ok(backend)
}
