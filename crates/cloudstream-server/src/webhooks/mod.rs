//! Webhook triggers: the network form of `on_event`.
//!
//! A webhook registered with `PUT /v1/streams/{name}/webhooks/{id}` is a consumer of the
//! stream, named `webhook-{id}`, run by the library's [`cloudstream::Trigger`]: it POSTs each
//! batch of records to a URL as JSON, moves its checkpoint past the batch after a 2xx answer,
//! retries any other answer (or a transport error) with exponential backoff, and after the
//! last attempt writes the batch's records to a dead-letter stream (`<stream>.dlq` unless the
//! spec says otherwise) and goes on. Delivery is at-least-once: a batch delivered but not yet
//! checkpointed when the server dies is delivered again.
//!
//! A webhook is a [`crate::jobs::Job`]: registrations are kept in `webhooks.json` in the
//! server's state directory, and every registered webhook starts again when the server
//! does, resuming at its checkpoint.
//!
//! The body of a POST:
//!
//! ```json
//! {"stream": "orders", "webhook": "billing", "records": [{"position": "0:41", "payload": "...", ...}]}
//! ```
//!
//! with the records in the shape of [`cloudstream::wire::record_json`], and the headers
//! `cloudstream-stream` and `cloudstream-webhook`.

mod allow;
mod post;
pub(crate) mod routes;
mod spec;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use cloudstream::{Client, StartAt};
use futures::future::BoxFuture;
use futures::FutureExt as _;
use serde_json::{json, Value};
use tokio::sync::watch;

pub use self::allow::WebhookPolicy;
pub(crate) use self::post::error_chain;
use self::spec::{parse_url, Spec, WebhookSpec};
use crate::jobs::{internal, Job, JobStats, Jobs};
use crate::ApiError;

/// The webhooks of a server.
pub(crate) type Webhooks = Jobs<Webhook>;

/// Webhooks as a kind of job: where they may post, and the HTTP client they share.
#[derive(Debug)]
pub(crate) struct Webhook {
    /// Which hosts webhooks may post to.
    policy: WebhookPolicy,
    /// Built on first use, then shared by every webhook.
    http: Mutex<Option<reqwest::Client>>,
}

impl Webhook {
    /// Webhooks that may post where `policy` allows.
    pub(crate) fn new(policy: WebhookPolicy) -> Webhook {
        Webhook {
            policy,
            http: Mutex::new(None),
        }
    }

    /// The shared HTTP client, built on first use.
    fn http(&self) -> Result<reqwest::Client, String> {
        let mut http = self.http.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(client) = &*http {
            return Ok(client.clone());
        }
        let client = reqwest::Client::builder()
            .user_agent(concat!("cloudstream-webhooks/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            // A redirect is an answer other than 2xx, so a failure, not a new destination.
            .redirect(reqwest::redirect::Policy::none())
            // Every address a webhook connects to passes the policy; a proxy would connect
            // on the webhook's behalf, past it.
            .dns_resolver(self.policy.resolver())
            .no_proxy()
            .build()
            .map_err(|e| format!("cannot build the webhook HTTP client: {}", error_chain(&e)))?;
        *http = Some(client.clone());
        Ok(client)
    }
}

impl Job for Webhook {
    type Spec = Spec;
    type SpecIn = WebhookSpec;

    const CONSUMER_PREFIX: &'static str = "webhook-";
    const KIND: &'static str = "webhook";
    const PLURAL: &'static str = "webhooks";
    const NOT_FOUND: &'static str = "webhook_not_found";
    const CONFLICT: &'static str = "webhook_conflict";

    fn registry(state: &crate::AppState) -> &Jobs<Self> {
        &state.jobs.webhooks
    }

    fn resolve(
        &self,
        stream: &str,
        id: &str,
        body: WebhookSpec,
    ) -> BoxFuture<'_, Result<Spec, ApiError>> {
        let resolved = body.resolve(stream, id).and_then(|(spec, url)| {
            self.policy.check(&url).map_err(|message| {
                ApiError::new(
                    axum::http::StatusCode::FORBIDDEN,
                    "webhook_url_not_allowed",
                    message,
                )
            })?;
            self.http().map_err(internal)?;
            Ok(spec)
        });
        std::future::ready(resolved).boxed()
    }

    fn key(spec: &Spec) -> (String, String) {
        (spec.stream.clone(), spec.id.clone())
    }

    fn start(spec: &Spec) -> StartAt {
        spec.start
    }

    fn view(s: &Spec) -> Value {
        let dead_letter = match &s.dead_letter {
            Some(name) => json!(name),
            None => json!(false),
        };
        json!({
            "id": s.id,
            "stream": s.stream,
            "url": s.url,
            "batch_size": s.batch_size,
            "max_wait_ms": s.max_wait_ms,
            "max_attempts": s.max_attempts,
            "backoff_ms": s.backoff_ms,
            "dead_letter": dead_letter,
            "start": s.start,
            "timeout_ms": s.timeout_ms,
        })
    }

    fn run(
        self: Arc<Self>,
        client: Client,
        spec: Spec,
        stats: Arc<JobStats>,
        stop: watch::Receiver<bool>,
    ) -> BoxFuture<'static, cloudstream::Result<()>> {
        async move {
            // Checked at registration; a registration kept from an older server is checked
            // again here, and one that fails is retried like any failing run (its error
            // shown) until it is deleted.
            let url = parse_url(&spec.url)
                .map_err(|e| cloudstream::Error::InvalidArgument(e.message().to_owned()))?;
            let http = self
                .http()
                .map_err(|e| cloudstream::Error::Backend(e.into()))?;
            post::run(client, http, self.policy.clone(), spec, url, stats, stop).await
        }
        .boxed()
    }
}
