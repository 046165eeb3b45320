//! What went through each stream lately, for charts: events and bytes written and records
//! handed out, per 5 seconds over the last 5 minutes (`GET /v1/streams/{name}/stats`).
//! Kept beside the `/metrics` counters, under the same lock, counting only what went
//! through this server.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use serde_json::{json, Value};

use crate::{ApiError, Path, State};

/// The length of a bucket.
pub(crate) const INTERVAL_MS: u64 = 5_000;
/// Buckets kept: 5 minutes.
const BUCKETS: usize = 60;

/// One bucket's counts.
#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    events_in: u64,
    bytes_in: u64,
    events_out: u64,
}

/// A stream's last [`BUCKETS`] buckets, by bucket number (ms since 1970 / the interval).
#[derive(Debug, Default)]
pub(crate) struct Ring {
    /// The newest bucket's number.
    newest: u64,
    buckets: Vec<Bucket>,
}

/// The number of the bucket `now` falls in.
fn bucket_now() -> u64 {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    ms / INTERVAL_MS
}

impl Ring {
    /// The bucket of `now`, the ring moved on to it (a clock that went back counts in the
    /// newest bucket).
    fn at(&mut self, now: u64) -> &mut Bucket {
        if self.buckets.is_empty() {
            self.buckets = vec![Bucket::default(); BUCKETS];
            self.newest = now;
        }
        if now > self.newest {
            let passed = (now - self.newest).min(BUCKETS as u64);
            for n in now + 1 - passed..=now {
                self.buckets[(n % BUCKETS as u64) as usize] = Bucket::default();
            }
            self.newest = now;
        }
        &mut self.buckets[(self.newest % BUCKETS as u64) as usize]
    }

    /// Counts events written.
    pub(crate) fn written(&mut self, events: u64, bytes: u64) {
        let b = self.at(bucket_now());
        b.events_in = b.events_in.saturating_add(events);
        b.bytes_in = b.bytes_in.saturating_add(bytes);
    }

    /// Counts records handed out.
    pub(crate) fn read(&mut self, events: u64) {
        let b = self.at(bucket_now());
        b.events_out = b.events_out.saturating_add(events);
    }

    /// The last buckets up to `now`, oldest first, as the route shows them.
    fn view(&mut self, now: u64) -> Value {
        self.at(now);
        let order: Vec<Bucket> = (0..BUCKETS as u64)
            .map(|i| self.buckets[((now + 1 + i) % BUCKETS as u64) as usize])
            .collect();
        json!({
            "interval_ms": INTERVAL_MS,
            "until_ms": (now + 1) * INTERVAL_MS,
            "events_in": order.iter().map(|b| b.events_in).collect::<Vec<_>>(),
            "bytes_in": order.iter().map(|b| b.bytes_in).collect::<Vec<_>>(),
            "events_out": order.iter().map(|b| b.events_out).collect::<Vec<_>>(),
        })
    }
}

/// `GET /v1/streams/{name}/stats`: events and bytes written to the stream and records
/// handed out, through this server, per 5 s over the last 5 minutes (oldest first).
#[utoipa::path(
    get, path = "/v1/streams/{name}/stats", tag = "streams",
    params(("name" = String, Path, description = "Stream name")),
    responses(
        (status = 200, description = "The stream's recent rates", body = crate::openapi::StreamStats),
        crate::openapi::Failures
    )
)]
pub(crate) async fn stats(state: State, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    state.stream(&name).await?;
    Ok(Json(
        state.metrics.rates(&name, |ring| ring.view(bucket_now())),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_move_on_and_forget_what_is_older_than_five_minutes() {
        let mut ring = Ring::default();
        ring.at(100).events_in = 1;
        ring.at(101).events_in = 2;
        // A clock that went back counts in the newest bucket.
        ring.at(99).events_in += 1;
        let view = ring.view(102);
        let events: Vec<u64> =
            serde_json::from_value(view["events_in"].clone()).unwrap_or_default();
        assert_eq!(events.len(), BUCKETS);
        assert_eq!(&events[BUCKETS - 3..], &[1, 3, 0]);
        assert_eq!(view["until_ms"], 103 * INTERVAL_MS);
        // Five minutes later, nothing is left; far later neither.
        let later = ring.view(102 + BUCKETS as u64);
        assert!(later["events_in"]
            .as_array()
            .is_some_and(|a| a.iter().all(|v| v == 0)));
        ring.at(10_000).events_out = 7;
        let far: Vec<u64> =
            serde_json::from_value(ring.view(10_000)["events_out"].clone()).unwrap_or_default();
        assert_eq!(far.iter().sum::<u64>(), 7);
        assert_eq!(far[BUCKETS - 1], 7);
    }
}
