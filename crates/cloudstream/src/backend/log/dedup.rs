//! Idempotent appends to the embedded engine: an event that carries an id (the
//! `cloudstream-id` header, set with [`crate::Event::with_id`], or a CloudEvent's `source`
//! and `id`) is stored once per stream within [`WINDOW`]. Sending it again, as a producer
//! does after a lost answer, returns the position of the first copy instead of storing a
//! second; a copy sent while the first is still being written waits for it.
//!
//! The ids live in memory, per stream, and come back from the log itself after a restart:
//! at the first append of a stream that carries an id, the records appended within the
//! window are read again for their ids, so deduplication survives restarts without a file
//! of its own. At most [`MAX_IDS`] per stream are kept (as 128-bit keyed hashes); past
//! that the oldest are forgotten early.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;

use crate::event::now_ms;
use crate::{Position, Result};

/// How long an id is remembered after its event was stored (NATS JetStream's default
/// duplicate window).
pub(crate) const WINDOW: Duration = Duration::from_secs(120);

/// Most ids remembered per stream (about 100 bytes each).
pub(crate) const MAX_IDS: usize = 200_000;

pub(crate) use crate::event::{event_identity, identity};

/// What the tables hold of an identity: a 128-bit keyed hash, so that an id costs the same
/// whatever its length.
type Key = u128;

/// The outcome of an append a later copy waits for.
type Outcome = Option<std::result::Result<Position, String>>;

/// What one stream remembers.
#[derive(Debug, Default)]
struct Table {
    /// Whether the ids of the records in the window were read back from the log.
    loaded: bool,
    /// Stored: key → (position, append time in ms).
    stored: HashMap<Key, (Position, i64)>,
    /// Keys by append time, oldest first, to forget them.
    order: VecDeque<(i64, Key)>,
    /// Being written: key → where its outcome will be told.
    pending: HashMap<Key, watch::Receiver<Outcome>>,
}

impl Table {
    fn remember(&mut self, key: Key, at: Position, time_ms: i64) {
        self.order.push_back((time_ms, key));
        self.stored.insert(key, (at, time_ms));
        let horizon = now_ms() - WINDOW.as_millis() as i64;
        while let Some(&(t, k)) = self.order.front() {
            if t >= horizon && self.order.len() <= MAX_IDS {
                break;
            }
            self.order.pop_front();
            if self.stored.get(&k).is_some_and(|(_, stored)| *stored == t) {
                self.stored.remove(&k);
            }
        }
    }

    fn known(&self, key: Key) -> Option<Position> {
        let horizon = now_ms() - WINDOW.as_millis() as i64;
        self.stored
            .get(&key)
            .filter(|(_, t)| *t >= horizon)
            .map(|(at, _)| *at)
    }

    /// The outcome channel of an append writing `key` now; a claim whose append went away
    /// before it settled (its sender dropped) is free again.
    fn in_flight(&self, key: Key) -> Option<watch::Receiver<Outcome>> {
        self.pending
            .get(&key)
            .filter(|rx| rx.has_changed().is_ok())
            .cloned()
    }
}

/// What becomes of one event of an append.
#[derive(Debug)]
pub(crate) enum Plan {
    /// Store it: it has no id, or its id is new.
    Store,
    /// Stored before, here.
    Known(Position),
    /// Another append is writing it: wait for that one, then plan again.
    Wait(watch::Receiver<Outcome>),
    /// The same as an earlier event of this append.
    SameAs(usize),
}

/// The ids of every stream of one engine.
#[derive(Debug, Default)]
pub(crate) struct Dedup {
    streams: Mutex<HashMap<String, Table>>,
    /// One reading back of a stream's ids at a time.
    loading: tokio::sync::Mutex<()>,
    hashers: (
        std::collections::hash_map::RandomState,
        std::collections::hash_map::RandomState,
    ),
}

/// The keys an append claimed, to tell waiting copies how it went.
#[derive(Debug, Default)]
pub(crate) struct Claims {
    stream: String,
    keys: Vec<(usize, Key, watch::Sender<Outcome>)>,
}

impl Dedup {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Table>> {
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn key(&self, identity: &str) -> Key {
        let hash = |state: &std::collections::hash_map::RandomState| {
            let mut h = state.build_hasher();
            h.write(identity.as_bytes());
            h.finish()
        };
        (u128::from(hash(&self.hashers.0)) << 64) | u128::from(hash(&self.hashers.1))
    }

    /// Reads back `stream`'s ids with `read` (identity, position, append time) unless that
    /// was done: once per stream, one stream at a time.
    pub(crate) async fn load<F, Fut>(&self, stream: &str, read: F) -> Result<()>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Vec<(String, Position, i64)>>>,
    {
        let loaded = |d: &Self| d.lock().get(stream).is_some_and(|t| t.loaded);
        if loaded(self) {
            return Ok(());
        }
        let _one = self.loading.lock().await;
        if loaded(self) {
            return Ok(());
        }
        let found = read().await?;
        let keys: Vec<(Key, Position, i64)> = found
            .iter()
            .map(|(identity, at, t)| (self.key(identity), *at, *t))
            .collect();
        let mut all = self.lock();
        let table = all.entry(stream.to_owned()).or_default();
        for (key, at, time_ms) in keys {
            table.remember(key, at, time_ms);
        }
        table.loaded = true;
        Ok(())
    }

    /// Forgets a stream (deleted, or created anew).
    pub(crate) fn forget(&self, stream: &str) {
        self.lock().remove(stream);
    }

    /// Plans an append to `stream` of events of these identities: which to store, and which were stored or
    /// are being stored already. The keys of those to store are claimed until
    /// [`Dedup::settle`] (or until the claims are dropped).
    pub(crate) fn plan(&self, stream: &str, identities: &[Option<String>]) -> (Vec<Plan>, Claims) {
        let mut claims = Claims {
            stream: stream.to_owned(),
            keys: Vec::new(),
        };
        let keys: Vec<Option<Key>> = identities
            .iter()
            .map(|i| i.as_deref().map(|i| self.key(i)))
            .collect();
        if keys.iter().all(Option::is_none) {
            return (keys.iter().map(|_| Plan::Store).collect(), claims);
        }
        let mut all = self.lock();
        let table = all.entry(stream.to_owned()).or_default();
        if table.pending.len() > 1024 {
            table.pending.retain(|_, rx| rx.has_changed().is_ok());
        }
        let mut first: HashMap<Key, usize> = HashMap::new();
        let plans = keys
            .iter()
            .enumerate()
            .map(|(i, key)| {
                let Some(key) = *key else {
                    return Plan::Store;
                };
                if let Some(&j) = first.get(&key) {
                    return Plan::SameAs(j);
                }
                first.insert(key, i);
                if let Some(at) = table.known(key) {
                    return Plan::Known(at);
                }
                if let Some(rx) = table.in_flight(key) {
                    return Plan::Wait(rx);
                }
                let (tx, rx) = watch::channel(None);
                table.pending.insert(key, rx);
                claims.keys.push((i, key, tx));
                Plan::Store
            })
            .collect();
        (plans, claims)
    }

    /// Settles the claims of an append: `stored` gives the position of each event stored,
    /// by its index in the append (`Err`: the append failed, and nothing was stored).
    pub(crate) fn settle(
        &self,
        claims: Claims,
        stored: std::result::Result<&HashMap<usize, Position>, String>,
    ) {
        if claims.keys.is_empty() {
            return;
        }
        let now = now_ms();
        let mut all = self.lock();
        // A stream deleted meanwhile keeps nothing.
        let mut table = all.get_mut(&claims.stream);
        for (i, key, tx) in claims.keys {
            let outcome = match &stored {
                Ok(positions) => match positions.get(&i) {
                    Some(&at) => Ok(at),
                    None => Err("the event was not stored".to_owned()),
                },
                Err(why) => Err(why.clone()),
            };
            if let Some(table) = table.as_deref_mut() {
                table.pending.remove(&key);
                if let Ok(at) = outcome {
                    table.remember(key, at, now);
                }
            }
            tx.send_replace(Some(outcome));
        }
    }
}

/// Waits until the append writing a copy has settled (stored or failed); the caller then
/// plans again.
pub(crate) async fn settled(mut rx: watch::Receiver<Outcome>) {
    while rx.borrow_and_update().is_none() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}
