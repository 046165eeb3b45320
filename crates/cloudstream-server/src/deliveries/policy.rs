//! Where a server may deliver, when a client of its API chooses the sink: a guard against a
//! delivery used to read or write the server's files, or to reach what only the server
//! should reach.
//!
//! - **Local files** (`file://`) only below the server's delivery root (`serve
//!   --deliver-root`), after symbolic links are resolved; none without a root.
//! - **Store options**: only those that name where to write and with which credentials
//!   (region, endpoint, keys, tokens, a GCS service-account key given inline). Options that
//!   make the store client read a local file, run a program, or fetch credentials from a
//!   metadata, container, STS or identity endpoint are refused, whatever their value.
//! - **Endpoints** (`endpoint`, a GCS key's `gcs_base_url`) pass the webhooks' guard (no
//!   link-local or cloud metadata address, or only `--webhook-allow`'s hosts), on the name
//!   and on every address it resolves to when checked; and a sink that names an endpoint
//!   must carry its own credentials, so that the server's own never go to a host a client
//!   chose. Without an endpoint, the store's own host is used with the server's credentials
//!   (as a Firehose delivery stream uses its role).
//!
//! The checks run when a delivery is registered and every time it starts. A name that
//! resolves elsewhere between a check and a connection (DNS rebinding) is not caught: list
//! the hosts in `--webhook-allow` where that matters.

use std::path::{Path, PathBuf};

use axum::http::StatusCode;
use serde_json::Value;

use crate::webhooks::WebhookPolicy;
use crate::ApiError;

/// Options of `s3://` sinks a client may give (as object_store spells them).
const S3_OPTIONS: &[&str] = &[
    "region",
    "aws_region",
    "endpoint",
    "aws_endpoint",
    "endpoint_url",
    "aws_endpoint_url",
    "access_key_id",
    "aws_access_key_id",
    "secret_access_key",
    "aws_secret_access_key",
    "session_token",
    "aws_session_token",
    "token",
    "aws_token",
    "virtual_hosted_style_request",
    "aws_virtual_hosted_style_request",
    "skip_signature",
    "aws_skip_signature",
    "allow_http",
];
/// Options of `az://` sinks a client may give.
const AZURE_OPTIONS: &[&str] = &[
    "account_name",
    "azure_storage_account_name",
    "access_key",
    "account_key",
    "azure_storage_access_key",
    "azure_storage_account_key",
    "sas_key",
    "sas_token",
    "azure_storage_sas_key",
    "azure_storage_sas_token",
    "endpoint",
    "azure_storage_endpoint",
    "allow_http",
];
/// Options of `gs://` sinks a client may give.
const GCS_OPTIONS: &[&str] = &[
    "service_account_key",
    "google_service_account_key",
    "allow_http",
];

/// Which of a scheme's options carry the sink's own credentials.
const CREDENTIALS: &[&str] = &[
    "access_key_id",
    "aws_access_key_id",
    "skip_signature",
    "aws_skip_signature",
    "access_key",
    "account_key",
    "azure_storage_access_key",
    "azure_storage_account_key",
    "sas_key",
    "sas_token",
    "azure_storage_sas_key",
    "azure_storage_sas_token",
];

/// Where a server may deliver (see the module docs).
#[derive(Debug, Clone, Default)]
pub(crate) struct SinkPolicy {
    /// The directory `file://` sinks must be below, its links resolved.
    pub(crate) root: Option<PathBuf>,
    /// The hosts an endpoint may name.
    pub(crate) outbound: WebhookPolicy,
}

/// A 422 with code `invalid_delivery`: a sink that is not one a delivery can use (not a
/// URL, another scheme, an option that is not what it should be).
fn unusable(message: impl Into<String>) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_delivery",
        message.into(),
    )
}

/// A 403 with code `sink_not_allowed`.
fn refused(message: String) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "sink_not_allowed", message)
}

impl SinkPolicy {
    /// Checks a sink URL; `Err` (a 403, or a 422 for a URL that is not one a delivery can use) says why the
    /// server may not deliver there.
    pub(crate) async fn check(&self, sink: &str) -> Result<(), ApiError> {
        let url = reqwest::Url::parse(sink).map_err(|e| unusable(format!("to: not a URL: {e}")))?;
        let allowed = match url.scheme() {
            "file" => return self.check_file(&url),
            "s3" | "s3a" => S3_OPTIONS,
            "az" | "abfs" => AZURE_OPTIONS,
            "gs" => GCS_OPTIONS,
            other => {
                return Err(unusable(format!(
                    "to: a sink is s3://, az://, abfs://, gs:// or file://, not {other}://"
                )))
            }
        };
        let mut endpoints = Vec::new();
        let mut own_credentials = false;
        for (key, value) in url.query_pairs() {
            let key = key.to_ascii_lowercase();
            if !allowed.contains(&key.as_str()) {
                return Err(refused(format!(
                    "to: option {key} is not allowed in a sink registered over the API (allowed: {})",
                    allowed.join(", ")
                )));
            }
            own_credentials |= CREDENTIALS.contains(&key.as_str());
            if key.contains("endpoint") {
                endpoints.push((key.clone(), value.into_owned()));
            } else if key.ends_with("service_account_key") {
                own_credentials = true;
                if let Some(base) = gcs_base_url(&value)? {
                    endpoints.push((key.clone(), base));
                }
            }
        }
        if !endpoints.is_empty() && !own_credentials {
            return Err(refused(
                "to: a sink that names an endpoint must carry its own credentials (the server's own go only to the store's own hosts)".into(),
            ));
        }
        for (key, endpoint) in endpoints {
            self.check_endpoint(&key, &endpoint).await?;
        }
        Ok(())
    }

    /// Checks an endpoint: an `http(s)` URL whose host, and every address it resolves to,
    /// the guard allows.
    async fn check_endpoint(&self, key: &str, endpoint: &str) -> Result<(), ApiError> {
        let url = reqwest::Url::parse(endpoint)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
            .ok_or_else(|| {
                unusable(format!(
                    "to: option {key} is not an http:// or https:// URL"
                ))
            })?;
        self.outbound
            .check(&url)
            .map_err(|e| refused(format!("to: option {key}: {e}")))?;
        let host = url.host_str().unwrap_or_default().to_owned();
        let port = url.port_or_known_default().unwrap_or(443);
        let found: Vec<_> = tokio::net::lookup_host((host.trim_matches(['[', ']']), port))
            .await
            .map_err(|e| refused(format!("to: option {key}: {host} does not resolve: {e}")))?
            .collect();
        self.outbound
            .admit(&host, found)
            .map(drop)
            .map_err(|e| refused(format!("to: option {key}: {e}")))
    }

    /// Checks a local sink: below the root once the links of its longest existing part are
    /// resolved (a link under the root cannot lead out of it).
    fn check_file(&self, url: &reqwest::Url) -> Result<(), ApiError> {
        let Some(root) = &self.root else {
            return Err(refused(
                "to: this server delivers to local files only below a root directory it was started with (serve --deliver-root DIR)".into(),
            ));
        };
        let path = url
            .to_file_path()
            .map_err(|()| unusable("to: not a local path"))?;
        let outside = || {
            refused(format!(
                "to: local files go below {} (serve --deliver-root)",
                root.display()
            ))
        };
        let resolved = resolve_existing(&path).ok_or_else(outside)?;
        if !resolved.starts_with(root) {
            return Err(outside());
        }
        Ok(())
    }
}

/// `path` with its longest existing ancestor's links resolved and the rest appended; `None`
/// when a part that does not exist yet is `..` (or nothing of it exists).
fn resolve_existing(path: &Path) -> Option<PathBuf> {
    let mut existing = path;
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = existing.canonicalize() {
            let mut out = real;
            for part in rest.iter().rev() {
                out.push(part);
            }
            return Some(out);
        }
        let name = existing.file_name()?;
        rest.push(name.to_owned());
        existing = existing.parent()?;
    }
}

/// The `gcs_base_url` of an inline GCS service-account key, if it names one.
fn gcs_base_url(key: &str) -> Result<Option<String>, ApiError> {
    let key: Value = serde_json::from_str(key)
        .map_err(|e| unusable(format!("to: option service_account_key is not JSON: {e}")))?;
    Ok(match key.get("gcs_base_url") {
        None | Some(Value::Null) => None,
        Some(Value::String(url)) => Some(url.clone()),
        Some(other) => {
            return Err(unusable(format!(
                "to: a service account key's gcs_base_url is a URL, not {other}"
            )))
        }
    })
}
