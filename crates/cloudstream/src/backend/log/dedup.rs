//! Idempotent appends to the embedded engine: an event that carries an id (the
//! `cloudstream-id` header, set with [`crate::Event::with_id`], or a CloudEvent's `source`
//! and `id`) is stored once per stream within [`WINDOW`]. Sending it again, as a producer
//! does after a lost answer, returns the position of the first copy instead of storing a
//! second; a copy sent while the first is still being written waits for it.
//!
//! The ids live in memory, per stream, and come back at open from the log itself: the
//! records appended within the window are read again for their ids, so deduplication
//! survives restarts without a file of its own. At most [`MAX_IDS`] per stream are kept;
//! past that the oldest are forgotten early.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;

use crate::event::{now_ms, ID_HEADER};
use crate::{Error, Event, Position, Result};

/// How long an id is remembered after its event was stored (NATS JetStream's default
/// duplicate window).
pub(crate) const WINDOW: Duration = Duration::from_secs(120);

/// Most ids remembered per stream.
pub(crate) const MAX_IDS: usize = 1_000_000;

/// The deduplication key of an event: its id, or its CloudEvent source and id.
pub(crate) fn key_of(headers: impl Fn(&str) -> Option<String>) -> Option<String> {
    if let Some(id) = headers(ID_HEADER) {
        return Some(format!("id:{id}"));
    }
    let source = headers("ce_source")?;
    let id = headers("ce_id")?;
    Some(format!("ce:{}:{source}{id}", source.len()))
}

/// The key of an event, if it has one.
pub(crate) fn event_key(event: &Event) -> Option<String> {
    key_of(|name| event.headers.get(name).cloned())
}

/// The outcome of an append a later copy waits for.
type Outcome = Option<std::result::Result<Position, String>>;

/// What one stream remembers.
#[derive(Debug, Default)]
struct Table {
    /// Whether the ids of the records in the window were read back from the log.
    loaded: bool,
    /// Stored: key → (position, append time in ms).
    stored: HashMap<String, (Position, i64)>,
    /// Keys by append time, oldest first, to forget them.
    order: VecDeque<(i64, String)>,
    /// Being written: key → where its outcome will be told.
    pending: HashMap<String, watch::Receiver<Outcome>>,
}

impl Table {
    fn remember(&mut self, key: String, at: Position, time_ms: i64) {
        self.order.push_back((time_ms, key.clone()));
        self.stored.insert(key, (at, time_ms));
        let horizon = now_ms() - WINDOW.as_millis() as i64;
        while let Some((t, _)) = self.order.front() {
            if *t >= horizon && self.order.len() <= MAX_IDS {
                break;
            }
            let Some((t, k)) = self.order.pop_front() else {
                break;
            };
            if self.stored.get(&k).is_some_and(|(_, stored)| *stored == t) {
                self.stored.remove(&k);
            }
        }
    }

    fn known(&self, key: &str) -> Option<Position> {
        let horizon = now_ms() - WINDOW.as_millis() as i64;
        self.stored
            .get(key)
            .filter(|(_, t)| *t >= horizon)
            .map(|(at, _)| *at)
    }
}

/// What became of one event of an append.
#[derive(Debug)]
pub(crate) enum Plan {
    /// Store it: it has no key, or its key is new.
    Store,
    /// Stored before, here.
    Known(Position),
    /// Another append is writing it: wait for that one.
    Wait(watch::Receiver<Outcome>),
    /// The same as an earlier event of this append.
    SameAs(usize),
}

/// The ids of every stream of one engine.
#[derive(Debug, Default)]
pub(crate) struct Dedup {
    streams: Mutex<HashMap<String, Table>>,
}

/// The senders of the keys an append claimed, to tell waiting copies how it went.
#[derive(Debug, Default)]
pub(crate) struct Claims {
    stream: String,
    keys: Vec<(usize, String, watch::Sender<Outcome>)>,
}

impl Dedup {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Table>> {
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the ids of `stream`'s recent records were read back yet.
    pub(crate) fn loaded(&self, stream: &str) -> bool {
        self.lock().get(stream).is_some_and(|t| t.loaded)
    }

    /// Records the ids read back from `stream`'s log: (key, position, append time).
    pub(crate) fn load(&self, stream: &str, found: Vec<(String, Position, i64)>) {
        let mut all = self.lock();
        let table = all.entry(stream.to_owned()).or_default();
        if table.loaded {
            return;
        }
        for (key, at, time_ms) in found {
            table.remember(key, at, time_ms);
        }
        table.loaded = true;
    }

    /// Forgets a stream (deleted, or created anew).
    pub(crate) fn forget(&self, stream: &str) {
        self.lock().remove(stream);
    }

    /// Plans an append of `events` to `stream`: which to store, and which were stored or
    /// are being stored already. The keys of those to store are claimed until
    /// [`Dedup::settle`].
    pub(crate) fn plan(&self, stream: &str, events: &[Event]) -> (Vec<Plan>, Claims) {
        let mut claims = Claims {
            stream: stream.to_owned(),
            keys: Vec::new(),
        };
        let keys: Vec<Option<String>> = events.iter().map(event_key).collect();
        if keys.iter().all(Option::is_none) {
            return (keys.iter().map(|_| Plan::Store).collect(), claims);
        }
        let mut all = self.lock();
        let table = all.entry(stream.to_owned()).or_default();
        let mut first: HashMap<&str, usize> = HashMap::new();
        let plans = keys
            .iter()
            .enumerate()
            .map(|(i, key)| {
                let Some(key) = key else {
                    return Plan::Store;
                };
                if let Some(&j) = first.get(key.as_str()) {
                    return Plan::SameAs(j);
                }
                first.insert(key, i);
                if let Some(at) = table.known(key) {
                    return Plan::Known(at);
                }
                // A claim whose append was dropped before it settled is free again.
                if let Some(rx) = table.pending.get(key).filter(|rx| rx.has_changed().is_ok()) {
                    return Plan::Wait(rx.clone());
                }
                let (tx, rx) = watch::channel(None);
                table.pending.insert(key.clone(), rx);
                claims.keys.push((i, key.clone(), tx));
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
        let table = all.entry(claims.stream).or_default();
        for (i, key, tx) in claims.keys {
            table.pending.remove(&key);
            let outcome = match &stored {
                Ok(positions) => match positions.get(&i) {
                    Some(&at) => {
                        table.remember(key, at, now);
                        Ok(at)
                    }
                    None => Err("the event was not stored".to_owned()),
                },
                Err(why) => Err(why.clone()),
            };
            tx.send_replace(Some(outcome));
        }
    }
}

/// The position a copy waited for: where the first copy was stored, or an error saying
/// that its append failed (the copy may be sent again).
pub(crate) async fn wait(mut rx: watch::Receiver<Outcome>) -> Result<Position> {
    loop {
        if let Some(outcome) = rx.borrow_and_update().clone() {
            return outcome.map_err(|why| {
                Error::Unavailable(
                    format!("the first copy of this event failed to be stored: {why}").into(),
                )
            });
        }
        if rx.changed().await.is_err() {
            return Err(Error::Unavailable(
                "the first copy of this event was dropped before it was stored".into(),
            ));
        }
    }
}
