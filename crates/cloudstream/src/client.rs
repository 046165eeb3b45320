//! Opening a provider by URL, and the [`Client`] that names its streams.

use std::sync::Arc;

use crate::backend::{Backend, StreamConfig};
use crate::url::parse_url;
use crate::{Error, Result, Stream};

/// Opens the provider a URL names: `local://DIR` (the embedded engine, durable),
/// `memory://[NAME]` (the embedded engine in memory), `http://HOST:PORT` (a remote
/// `cloudstream serve`), and the cloud providers this build has. See [`crate::url`] for the
/// URLs and [`crate::backend::providers`] for the registry.
///
/// Opening the same `local://` directory or the same named `memory://` instance twice in one
/// process returns the same engine; a second process is refused by the directory lock.
pub async fn open(url: &str) -> Result<Client> {
    let url = parse_url(url)?;
    let constructor = crate::backend::registry::constructor(&url)?;
    Ok(Client::new((constructor.open)(url).await?))
}

/// The provider used when none is named: the embedded engine in `./cloudstream-data`.
pub const DEFAULT_URL: &str = "local://./cloudstream-data";

/// The provider URL from the `CLOUDSTREAM_URL` environment variable, or [`DEFAULT_URL`].
pub fn url_from_env() -> String {
    std::env::var("CLOUDSTREAM_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// A connection to one provider: creates, lists and deletes its streams.
#[derive(Debug, Clone)]
pub struct Client {
    backend: Arc<dyn Backend>,
}

impl Client {
    /// A client over any backend.
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        Client { backend }
    }

    /// The backend underneath.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// Starts naming a stream; finish with [`StreamBuilder::create`],
    /// [`StreamBuilder::create_if_missing`] or [`StreamBuilder::open`].
    pub fn stream(&self, name: &str) -> StreamBuilder {
        StreamBuilder {
            client: self.clone(),
            name: name.to_owned(),
            config: StreamConfig::default(),
        }
    }

    /// Names of all streams.
    pub async fn list_streams(&self) -> Result<Vec<String>> {
        self.backend.list_streams().await
    }

    /// Deletes a stream with its records and consumers.
    pub async fn delete_stream(&self, name: &str) -> Result<()> {
        cloudstream_log::validate_name("stream", name)?;
        self.backend.delete_stream(name).await
    }
}

/// A stream being named, with the settings used if it is created.
#[derive(Debug, Clone)]
pub struct StreamBuilder {
    client: Client,
    name: String,
    config: StreamConfig,
}

impl StreamBuilder {
    /// Retention horizon (default 24 h). A horizon the provider cannot hold is an error.
    pub fn horizon(mut self, horizon: std::time::Duration) -> Self {
        self.config.horizon = horizon;
        self
    }

    /// Number of partitions (default 1).
    pub fn partitions(mut self, partitions: u32) -> Self {
        self.config.partitions = partitions;
        self
    }

    fn check(&self) -> Result<()> {
        cloudstream_log::validate_name("stream", &self.name)?;
        let caps = self.client.backend.capabilities();
        let (min, max) = caps.horizon_range;
        if self.config.horizon < min || self.config.horizon > max {
            return Err(Error::InvalidArgument(format!(
                "horizon {:?} is outside what the {} backend can hold ({min:?} to {max:?})",
                self.config.horizon,
                self.client.backend.name()
            )));
        }
        if self.config.partitions == 0 || self.config.partitions > caps.max_partitions {
            return Err(Error::InvalidArgument(format!(
                "partitions must be between 1 and {}, got {}",
                caps.max_partitions, self.config.partitions
            )));
        }
        Ok(())
    }

    /// Creates the stream; [`Error::StreamExists`] if it exists.
    pub async fn create(self) -> Result<Stream> {
        self.check()?;
        let info = self
            .client
            .backend
            .create_stream(&self.name, &self.config)
            .await?;
        Ok(Stream::new(self.client.backend, info))
    }

    /// Opens the stream, creating it first if it does not exist. An existing stream keeps
    /// its own settings.
    pub async fn create_if_missing(self) -> Result<Stream> {
        self.check()?;
        match self.client.backend.describe_stream(&self.name).await {
            Ok(info) => Ok(Stream::new(self.client.backend, info)),
            Err(Error::StreamNotFound { .. }) => {
                let backend = self.client.backend.clone();
                match self.create().await {
                    Err(Error::StreamExists { stream }) => {
                        let info = backend.describe_stream(&stream).await?;
                        Ok(Stream::new(backend, info))
                    }
                    other => other,
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Opens an existing stream; [`Error::StreamNotFound`] if there is none.
    pub async fn open(self) -> Result<Stream> {
        cloudstream_log::validate_name("stream", &self.name)?;
        let info = self.client.backend.describe_stream(&self.name).await?;
        Ok(Stream::new(self.client.backend, info))
    }
}
