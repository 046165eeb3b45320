//! The consumer handles of the REST consumers and their batch tokens.
//!
//! One handle per stream, consumer and member ("" outside a group), made with the settings
//! of the fetch that needed it. Each batch a handle hands out gets a token and stays with
//! its client for the visibility time (`lease_ms`, default 10 s), as an SQS message does:
//!
//! | the next fetch carries | and | it |
//! |---|---|---|
//! | the outstanding batch's token | | commits that batch, and gets the next |
//! | the token committed last | | is the client whose last answer was lost: gets the outstanding batch again |
//! | another token, or none | the batch is younger than the visibility time | gets 409 `batch_outstanding` |
//! | another token, or none | the batch is older | gets the batch, with a new token (its first client is gone) |
//!
//! So no fetch commits a batch its client did not receive, and two clients under one name
//! take turns instead of taking each other's batches.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use cloudstream::backend::ReadOptions;
use cloudstream::{Batch, Consumer};
use serde_json::json;

use super::{long_poll, FetchQuery};
use crate::{ApiError, State};

/// How long an unused handle is kept; a member's is kept for at least its lease.
const IDLE: Duration = Duration::from_secs(600);

/// Most REST consumer handles held at once (each a consumer name, or a member of a group).
const MAX_HANDLES: usize = 10_000;

/// A handle's key: stream, consumer, member.
type Key = (String, String, String);

/// A consumer handle kept between requests, with the settings it was made with.
#[derive(Debug)]
struct Held {
    session: Arc<Session>,
    max: usize,
    wait: Duration,
    lease: Duration,
    used: Instant,
}

/// The consumer handles of the REST consumers. A handle unused for 10 minutes (or its
/// lease, if longer) is dropped, its uncommitted batch delivered again to the next fetch.
#[derive(Debug, Default)]
pub(crate) struct Handles(Mutex<HashMap<Key, Held>>);

impl Handles {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Held>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The handle of `key`, if there is one.
    pub(crate) fn get(&self, key: &Key) -> Option<Arc<Session>> {
        self.lock().get(key).map(|h| h.session.clone())
    }

    /// Forgets the handles of `consumer` of `stream` (every consumer when `None`): after a
    /// checkpoint is set or a consumer or stream deleted, the next fetch starts afresh.
    pub(crate) fn forget(&self, stream: &str, consumer: Option<&str>) {
        self.lock()
            .retain(|(s, c, _), _| !(s == stream && consumer.is_none_or(|name| name == c)));
    }
}

/// The batch a handle handed out last and that is not committed yet.
#[derive(Debug)]
struct Outstanding {
    token: String,
    handed_out: Instant,
    /// Whether it holds anything (records or a gap): an empty batch is held by nobody.
    holds: bool,
}

/// The tokens of a handle.
#[derive(Debug, Default)]
struct Tokens {
    outstanding: Option<Outstanding>,
    /// The token committed last.
    committed: Option<String>,
}

impl Tokens {
    fn is_outstanding(&self, ack: &str) -> bool {
        self.outstanding.as_ref().is_some_and(|o| o.token == ack)
    }
}

/// A consumer handle and its batch tokens. The tokens' lock is held for a whole fetch, so
/// that the check of a token and the fetch that commits are one step; a second fetch of
/// the same handle meanwhile gets 409 `fetch_in_progress` rather than queueing behind a
/// long poll.
#[derive(Debug)]
pub(crate) struct Session {
    consumer: Consumer,
    /// How long a batch stays with its client.
    visibility: Duration,
    tokens: tokio::sync::Mutex<Tokens>,
}

/// A 409 with this code, message and details.
fn conflict(code: &'static str, message: String, details: serde_json::Value) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, code, message).with_details(details)
}

/// The 409 of a commit whose token is not the outstanding batch's.
pub(crate) fn not_outstanding() -> ApiError {
    conflict(
        "batch_not_outstanding",
        "the batch of this ack token is not the consumer's outstanding batch (it was \
         committed already, or handed to another client after its visibility time)"
            .to_owned(),
        json!({}),
    )
}

impl Session {
    /// The next batch and its token, for a client whose last batch had token `ack` (see the
    /// module docs for what happens to the outstanding batch).
    pub(crate) async fn fetch(&self, ack: Option<&str>) -> Result<(Batch, String), ApiError> {
        let mut tokens = self.tokens.try_lock().map_err(|_| {
            conflict(
                "fetch_in_progress",
                "another fetch of this consumer is in progress".to_owned(),
                json!({}),
            )
        })?;
        let mut acked = None;
        if let Some(o) = &tokens.outstanding {
            let lost_answer = ack.is_some() && ack == tokens.committed.as_deref();
            if Some(o.token.as_str()) == ack {
                acked = Some(o.token.clone());
            } else if o.holds && !lost_answer && o.handed_out.elapsed() < self.visibility {
                let left = self.visibility.saturating_sub(o.handed_out.elapsed());
                return Err(conflict(
                    "batch_outstanding",
                    format!(
                        "another client holds this consumer's batch for {} ms more; fetch with \
                         its ack token to commit it, or use member= to share the partitions",
                        left.as_millis()
                    ),
                    json!({ "retry_after_ms": left.as_millis() as u64 }),
                ));
            } else {
                self.consumer.redeliver().await;
                tokens.outstanding = None;
            }
        }
        // The fetch commits what the handle handed out: the acknowledged batch, or nothing.
        // If it fails, the tokens stay, so a retry with the same one commits the batch.
        let batch = self.consumer.fetch().await?;
        if acked.is_some() {
            tokens.committed = acked;
        }
        let token = token();
        tokens.outstanding = Some(Outstanding {
            token: token.clone(),
            handed_out: Instant::now(),
            holds: !batch.records.is_empty() || !batch.gaps.is_empty(),
        });
        Ok((batch, token))
    }

    /// Commits the outstanding batch, if `ack` is its token; 409 otherwise.
    pub(crate) async fn commit(&self, ack: &str) -> Result<(), ApiError> {
        let mut tokens = self.tokens.lock().await;
        if !tokens.is_outstanding(ack) {
            return Err(not_outstanding());
        }
        self.consumer.commit().await?;
        tokens.outstanding = None;
        tokens.committed = Some(ack.to_owned());
        Ok(())
    }

    /// Before the handle is replaced: commits the outstanding batch if `ack` is its token,
    /// and gives back anything else for delivery again.
    async fn retire(&self, ack: Option<&str>) -> Result<(), ApiError> {
        let mut tokens = self.tokens.lock().await;
        if ack.is_some_and(|a| tokens.is_outstanding(a)) {
            self.consumer.commit().await?;
        }
        self.consumer.redeliver().await;
        tokens.outstanding = None;
        Ok(())
    }
}

/// A fresh batch token: unique within the server's life and not guessable from the last.
fn token() -> String {
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let n = COUNT.fetch_add(1, Ordering::Relaxed);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(n);
    format!("{n:x}-{:016x}", h.finish())
}

/// The handle for a fetch of `consumer` of `stream` with `query`'s settings: the one kept,
/// or a new one (the old one, made with other settings, retired first).
pub(crate) async fn open(
    state: &State,
    stream: &str,
    consumer: &str,
    query: &FetchQuery,
) -> Result<Arc<Session>, ApiError> {
    cloudstream::validate_name("consumer", consumer)?;
    if let Some(member) = &query.member {
        cloudstream::validate_name("member", member)?;
    }
    let key = (
        stream.to_owned(),
        consumer.to_owned(),
        query.member.clone().unwrap_or_default(),
    );
    let max = query.max.unwrap_or(100).clamp(1, state.limits.max_records);
    let wait = long_poll(state, query.wait_ms.unwrap_or(0));
    let lease = Duration::from_millis(query.lease_ms.unwrap_or(10_000).max(100));
    if lease > crate::leases::MAX_TTL {
        return Err(ApiError::bad_request(format!(
            "lease_ms must be at most {} (one hour), got {}",
            crate::leases::MAX_TTL.as_millis(),
            lease.as_millis()
        )));
    }
    let previous = {
        let mut handles = state.consumers.lock();
        match handles.get_mut(&key) {
            Some(held) if (held.max, held.wait, held.lease) == (max, wait, lease) => {
                held.used = Instant::now();
                return Ok(held.session.clone());
            }
            Some(_) => handles.remove(&key).map(|held| held.session),
            None => None,
        }
    };
    if let Some(old) = previous {
        old.retire(query.ack.as_deref()).await?;
    }
    let mut handle = state
        .stream(stream)
        .await?
        .consumer(consumer)
        .max_records(max)
        .max_bytes(
            ReadOptions::default()
                .max_bytes
                .min(state.limits.max_body_bytes),
        )
        .wait(wait);
    if let Some(member) = &query.member {
        handle = handle.lease_ttl(lease).member(member.clone());
    }
    let held = Held {
        session: Arc::new(Session {
            consumer: handle,
            visibility: lease,
            tokens: tokio::sync::Mutex::default(),
        }),
        max,
        wait,
        lease,
        used: Instant::now(),
    };
    let mut handles = state.consumers.lock();
    handles.retain(|_, h| h.used.elapsed() < IDLE.max(h.lease));
    if handles.len() >= MAX_HANDLES && !handles.contains_key(&key) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_consumers",
            format!(
                "the server holds {MAX_HANDLES} REST consumer handles, each unused for less \
                 than 10 minutes; retry later, or reuse consumer and member names"
            ),
        ));
    }
    Ok(handles.entry(key).or_insert(held).session.clone())
}
