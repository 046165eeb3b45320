//! `http://HOST:PORT` (and `https://`): a remote `cloudstream serve`, through its REST API.
//!
//! Every backend primitive is one request to the server's `/v1` routes, so the whole library
//! (consumers with their checkpoints, consumer groups, triggers, tails) runs unchanged in
//! front of a server, and the server runs it against whatever provider it was given:
//!
//! | primitive | request |
//! |---|---|
//! | capabilities | `GET /v1/capabilities` (once, on connect) |
//! | create / describe / list / delete | `PUT`, `GET`, `GET /v1/streams`, `DELETE /v1/streams/{s}` |
//! | append | `POST /v1/streams/{s}/partitions/{p}/events` (all or nothing) |
//! | read | `GET /v1/streams/{s}/records?partition=&from=&max=&max_bytes=&wait_ms=&payload=text` |
//! | checkpoints | `GET` / `PUT /v1/streams/{s}/consumers/{c}/checkpoint` |
//! | consumers | `GET /v1/streams/{s}/consumers`, `DELETE /v1/streams/{s}/consumers/{c}` |
//! | leases | `PUT` / `DELETE /v1/streams/{s}/consumers/{c}/leases/{l}`, `GET .../leases` |
//!
//! Errors come back as the variant the server's provider returned ([`crate::wire`]); a server
//! that cannot be reached is [`Error::Unavailable`]. Events travel exactly: payloads as
//! base64, event times to the nanosecond.

mod options;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::{Method, RequestBuilder};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

pub use self::options::HttpOptions;
use super::{
    Backend, Capabilities, Checkpoint, CheckpointStore, ConsumerInfo, Consumption, PartitionStart,
    ReadOptions, StreamConfig, StreamInfo,
};
use crate::url::ProviderUrl;
use crate::wire::{
    error_from_body, Appended, CapabilitiesBody, CheckpointBody, ConsumerList, EventJson, Existed,
    Held, LeaseList, RecordJson, Records, StreamCreated, StreamDescription, StreamList,
};
use crate::{Error, Event, Position, ReadFrom, Record, Result, RetryPolicy};

/// The client backend of a remote `cloudstream serve`.
#[derive(Debug)]
pub struct HttpBackend {
    remote: Remote,
    /// What the server's provider can do, asked once on connect.
    capabilities: Capabilities,
}

/// The server's `/v1` routes, reached with the URL's token and timeout.
#[derive(Debug)]
struct Remote {
    http: reqwest::Client,
    base: reqwest::Url,
    token: Option<String>,
    timeout: Duration,
}

impl HttpBackend {
    /// Connects to the server and asks what its provider can do.
    pub async fn connect(options: HttpOptions) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidUrl {
            url: options.base.clone(),
            reason,
        };
        let base = reqwest::Url::parse(&options.base).map_err(|e| invalid(e.to_string()))?;
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true);
        if let Some(path) = &options.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| invalid(format!("cannot read ca_file {}: {e}", path.display())))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| invalid(format!("ca_file {} is not PEM: {e}", path.display())))?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder.build().map_err(|e| invalid(e.to_string()))?;
        let remote = Remote {
            http,
            base,
            token: options.token,
            timeout: options.timeout,
        };
        let answer: CapabilitiesBody = remote.call(Method::GET, &["capabilities"], |r| r).await?;
        Ok(HttpBackend {
            remote,
            capabilities: Capabilities {
                // Checkpoints live in the server, whatever its provider does with them.
                server_side_checkpoints: true,
                ..answer.capabilities
            },
        })
    }
}

impl Remote {
    /// `base/v1/segments...`, each segment escaped.
    fn url(&self, segments: &[&str]) -> Result<reqwest::Url> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| Error::InvalidUrl {
                url: self.base.to_string(),
                reason: "cannot be a base URL".into(),
            })?
            .pop_if_empty()
            .push("v1")
            .extend(segments);
        Ok(url)
    }

    /// Sends a request built by `build` and decodes its JSON answer; an error status
    /// becomes the [`Error`] its body names.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        build: impl FnOnce(RequestBuilder) -> RequestBuilder,
    ) -> Result<T> {
        let body = self.send(method, segments, build).await?;
        serde_json::from_slice(&body).map_err(|e| {
            Error::Backend(format!("the server answered with an unexpected body: {e}").into())
        })
    }

    /// Sends a request; the body of a 2xx answer, else the error it stands for.
    async fn send(
        &self,
        method: Method,
        segments: &[&str],
        build: impl FnOnce(RequestBuilder) -> RequestBuilder,
    ) -> Result<bytes::Bytes> {
        let mut request = self
            .http
            .request(method, self.url(segments)?)
            .timeout(self.timeout);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = build(request).send().await.map_err(unavailable)?;
        let status = response.status();
        let body = response.bytes().await.map_err(unavailable)?;
        if status.is_success() {
            return Ok(body);
        }
        let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        Err(error_from_body(status.as_u16(), &value))
    }
}

/// A request that did not get an answer: the server is down or unreachable.
fn unavailable(e: reqwest::Error) -> Error {
    Error::Unavailable(Box::new(e))
}

#[async_trait]
impl Backend for HttpBackend {
    fn name(&self) -> &'static str {
        "http"
    }

    fn capabilities(&self) -> Capabilities {
        self.capabilities.clone()
    }

    fn consumption(&self) -> Consumption<'_> {
        Consumption::Checkpoints(self)
    }

    async fn create_stream(&self, name: &str, config: &StreamConfig) -> Result<StreamInfo> {
        let spec = json!({
            "horizon": format!("{}ms", config.horizon.as_millis()),
            "partitions": config.partitions,
        });
        let body: StreamCreated = self
            .remote
            .call(Method::PUT, &["streams", name], |r| r.json(&spec))
            .await?;
        Ok(body.stream)
    }

    async fn describe_stream(&self, name: &str) -> Result<StreamInfo> {
        let body: StreamDescription = self
            .remote
            .call(Method::GET, &["streams", name], |r| r)
            .await?;
        Ok(body.stream)
    }

    async fn list_streams(&self) -> Result<Vec<String>> {
        let body: StreamList = self.remote.call(Method::GET, &["streams"], |r| r).await?;
        Ok(body.streams)
    }

    async fn delete_stream(&self, name: &str) -> Result<()> {
        self.remote
            .send(Method::DELETE, &["streams", name], |r| r)
            .await?;
        Ok(())
    }

    async fn append(
        &self,
        stream: &str,
        partition: u32,
        events: &[Event],
    ) -> Result<Vec<Position>> {
        // An append whose answer was lost (a timeout, a dropped connection) may have been
        // stored. When every event has an id and the server deduplicates, sending it again
        // stores nothing twice, so such failures are retried; otherwise they are reported.
        let idempotent =
            self.capabilities.dedup_window.is_some() && events.iter().all(|e| e.id().is_some());
        let policy = RetryPolicy {
            max_attempts: if idempotent { 4 } else { 1 },
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
        };
        let events: Vec<EventJson> = events.iter().map(EventJson::exact).collect();
        let p = partition.to_string();
        let path = ["streams", stream, "partitions", &p, "events"];
        // Never past half the server's window, so that a late copy is still recognized.
        let started = std::time::Instant::now();
        let window = self.capabilities.dedup_window.unwrap_or_default();
        let ambiguous =
            |e: &Error| matches!(e, Error::Unavailable(_)) && started.elapsed() < window / 2;
        let sent = crate::retry::retry(
            &policy,
            None,
            ambiguous,
            |_, _| {},
            || {
                self.remote
                    .call::<Appended>(Method::POST, &path, |r| r.json(&events))
            },
        )
        .await;
        match sent {
            Some(answer) => Ok(answer?.positions),
            None => Err(Error::Unavailable("the append was stopped".into())),
        }
    }

    async fn read(
        &self,
        stream: &str,
        partition: u32,
        start: PartitionStart,
        options: &ReadOptions,
    ) -> Result<Vec<Record>> {
        let wait = options.wait.unwrap_or(Duration::ZERO);
        let query = [
            ("partition", partition.to_string()),
            ("from", ReadFrom::within(partition, start).to_string()),
            ("max", options.max_records.to_string()),
            ("max_bytes", options.max_bytes.to_string()),
            ("wait_ms", wait.as_millis().to_string()),
            // Exact bytes back, whatever the payload holds.
            ("payload", "text".to_owned()),
        ];
        let body: Records = self
            .remote
            .call(Method::GET, &["streams", stream, "records"], |r| {
                r.query(&query).timeout(self.remote.timeout + wait)
            })
            .await?;
        body.records
            .into_iter()
            .map(RecordJson::into_record)
            .collect()
    }

    async fn list_consumers(&self, stream: &str) -> Result<Vec<ConsumerInfo>> {
        let body: ConsumerList = self
            .remote
            .call(Method::GET, &["streams", stream, "consumers"], |r| r)
            .await?;
        Ok(body.consumers)
    }

    async fn delete_consumer(&self, stream: &str, consumer: &str) -> Result<bool> {
        let path = ["streams", stream, "consumers", consumer];
        let body: Existed = self.remote.call(Method::DELETE, &path, |r| r).await?;
        Ok(body.existed)
    }
}

/// The server keeps the checkpoints and leases, whatever its provider keeps them in.
#[async_trait]
impl CheckpointStore for HttpBackend {
    fn kind(&self) -> &'static str {
        "http"
    }

    async fn load(&self, stream: &str, consumer: &str) -> Result<Option<Checkpoint>> {
        let path = ["streams", stream, "consumers", consumer, "checkpoint"];
        let body: CheckpointBody = self.remote.call(Method::GET, &path, |r| r).await?;
        Ok(body.checkpoint)
    }

    async fn commit(
        &self,
        stream: &str,
        consumer: &str,
        resume: &[(u32, PartitionStart)],
    ) -> Result<()> {
        let resume: Checkpoint = resume.iter().copied().collect();
        let path = ["streams", stream, "consumers", consumer, "checkpoint"];
        self.remote
            .send(Method::PUT, &path, |r| r.json(&resume))
            .await?;
        Ok(())
    }

    async fn list(&self, stream: &str) -> Result<Vec<(String, Checkpoint)>> {
        let consumers = self.list_consumers(stream).await?;
        Ok(consumers
            .into_iter()
            .map(|c| (c.name, c.committed))
            .collect())
    }

    async fn delete(&self, stream: &str, consumer: &str) -> Result<bool> {
        self.delete_consumer(stream, consumer).await
    }

    async fn take_lease(
        &self,
        stream: &str,
        consumer: &str,
        name: &str,
        member: &str,
        ttl: Duration,
    ) -> Result<bool> {
        let path = ["streams", stream, "consumers", consumer, "leases", name];
        let query = [
            ("member", member.to_owned()),
            ("ttl_ms", ttl.as_millis().to_string()),
        ];
        let body: Held = self
            .remote
            .call(Method::PUT, &path, |r| r.query(&query))
            .await?;
        Ok(body.held)
    }

    async fn release_lease(
        &self,
        stream: &str,
        consumer: &str,
        name: &str,
        member: &str,
    ) -> Result<()> {
        let path = ["streams", stream, "consumers", consumer, "leases", name];
        self.remote
            .send(Method::DELETE, &path, |r| r.query(&[("member", member)]))
            .await?;
        Ok(())
    }

    async fn live_leases(&self, stream: &str, consumer: &str) -> Result<BTreeMap<String, String>> {
        let path = ["streams", stream, "consumers", consumer, "leases"];
        let body: LeaseList = self.remote.call(Method::GET, &path, |r| r).await?;
        Ok(body.leases)
    }
}

/// Checks a `http` URL without connecting.
pub(crate) fn check(url: &ProviderUrl) -> Result<()> {
    HttpOptions::from_url(url).map(drop)
}

/// Connects to what a `http` URL names.
pub(crate) async fn open(url: ProviderUrl) -> Result<std::sync::Arc<dyn Backend>> {
    Ok(std::sync::Arc::new(
        HttpBackend::connect(HttpOptions::from_url(&url)?).await?,
    ))
}
