//! Pulsar's admin REST API, where the URL names it (`admin=http://HOST:8080`): a stream's
//! partitioned-topic metadata is made and deleted there, and its horizon set as each
//! partition topic's retention. **Not verified against a broker**: pulsar-lite, the broker
//! the tests run against, has no admin API.

use std::time::Duration;

use serde_json::json;

use crate::{Error, Result};

/// The admin API of one cluster.
#[derive(Debug, Clone)]
pub(super) struct Admin {
    /// `http(s)://HOST:PORT`, without a trailing slash.
    base: String,
    http: reqwest::Client,
}

impl Admin {
    pub(super) fn new(base: &str, timeout: Duration) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| Error::Backend(Box::new(e)))?;
        Ok(Admin {
            base: base.trim_end_matches('/').to_owned(),
            http,
        })
    }

    fn topic_url(&self, tenant: &str, namespace: &str, topic: &str) -> String {
        format!(
            "{}/admin/v2/persistent/{tenant}/{namespace}/{topic}",
            self.base
        )
    }

    /// Makes the partitioned topic `topic` with `partitions` partitions; one that exists
    /// already (a creator that lost the race made it) is fine.
    pub(super) async fn create_partitioned(
        &self,
        tenant: &str,
        namespace: &str,
        topic: &str,
        partitions: u32,
    ) -> Result<()> {
        let url = format!("{}/partitions", self.topic_url(tenant, namespace, topic));
        let answer = self.http.put(&url).json(&partitions).send().await;
        self.check(answer, "make the partitioned topic", &[409])
            .await
    }

    /// Keeps the records of `topic` for `horizon` (topic-level retention, whole minutes).
    pub(super) async fn set_retention(
        &self,
        tenant: &str,
        namespace: &str,
        topic: &str,
        horizon: Duration,
    ) -> Result<()> {
        let url = format!("{}/retention", self.topic_url(tenant, namespace, topic));
        let minutes = horizon.as_secs().div_ceil(60);
        let body = json!({"retentionTimeInMinutes": minutes, "retentionSizeInMB": -1});
        let answer = self.http.post(&url).json(&body).send().await;
        self.check(answer, "set the topic's retention", &[]).await
    }

    /// Deletes the partitioned topic `topic` with its partitions and subscriptions; one that
    /// is gone already is fine.
    pub(super) async fn delete_partitioned(
        &self,
        tenant: &str,
        namespace: &str,
        topic: &str,
    ) -> Result<()> {
        let url = format!(
            "{}/partitions?force=true",
            self.topic_url(tenant, namespace, topic)
        );
        let answer = self.http.delete(&url).send().await;
        self.check(answer, "delete the partitioned topic", &[404])
            .await
    }

    async fn check(
        &self,
        answer: reqwest::Result<reqwest::Response>,
        what: &str,
        fine: &[u16],
    ) -> Result<()> {
        let response = answer.map_err(|e| {
            Error::Unavailable(format!("Pulsar's admin API at {} ({what}): {e}", self.base).into())
        })?;
        let status = response.status();
        if status.is_success() || fine.contains(&status.as_u16()) {
            return Ok(());
        }
        let body = response.text().await.unwrap_or_default();
        let message = format!(
            "Pulsar's admin API could not {what}: {status} {}",
            body.chars().take(300).collect::<String>()
        );
        Err(match status.as_u16() {
            401 | 403 => Error::Forbidden(message),
            429 => Error::Throttled(message.into()),
            s if s >= 500 => Error::Unavailable(message.into()),
            _ => Error::Backend(message.into()),
        })
    }
}
