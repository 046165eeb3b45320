//! Opening a provider by URL, and the [`Client`] that names its streams.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use cloudstream_log::{Log, LogOptions, MemoryStorage};

use crate::backend::{Backend, LogBackend, StreamConfig};
use crate::url::{parse_url, LocalOptions, ProviderUrl};
use crate::{Error, Result, Stream};

/// Opens the provider a URL names: `local://DIR` (the embedded engine, durable),
/// `memory://[NAME]` (the embedded engine in memory), and the cloud providers as their
/// backends land. See [`crate::url`] for the options.
///
/// Opening the same `local://` directory or the same named `memory://` instance twice in one
/// process returns the same engine; a second process is refused by the directory lock.
pub async fn open(url: &str) -> Result<Client> {
    let backend: Arc<dyn Backend> = match parse_url(url)? {
        ProviderUrl::Local { path, options } => {
            tokio::task::spawn_blocking(move || open_local(&path, options))
                .await
                .map_err(|e| Error::Unavailable(Box::new(e)))??
        }
        ProviderUrl::Memory { name, options } => open_memory(&name, options)?,
        #[cfg(feature = "kinesis")]
        ProviderUrl::Kinesis(options) => {
            Arc::new(crate::backend::KinesisBackend::connect(options).await?)
        }
        #[cfg(not(feature = "kinesis"))]
        ProviderUrl::Kinesis(_) => {
            return Err(Error::InvalidUrl {
                url: url.to_owned(),
                reason: "this build has no kinesis backend: enable the `kinesis` feature".into(),
            })
        }
        #[cfg(feature = "pubsub")]
        ProviderUrl::PubSub(options) => {
            Arc::new(crate::backend::PubSubBackend::connect(options).await?)
        }
        #[cfg(not(feature = "pubsub"))]
        ProviderUrl::PubSub(_) => {
            return Err(Error::InvalidUrl {
                url: url.to_owned(),
                reason: "this build has no pubsub backend: enable the `pubsub` feature".into(),
            })
        }
        #[cfg(feature = "http")]
        ProviderUrl::Http(options) => {
            Arc::new(crate::backend::HttpBackend::connect(options).await?)
        }
        #[cfg(not(feature = "http"))]
        ProviderUrl::Http(_) => {
            return Err(Error::InvalidUrl {
                url: url.to_owned(),
                reason: "this build has no http client backend: enable the `http` feature".into(),
            })
        }
    };
    Ok(Client::new(backend))
}

/// The provider used when none is named: the embedded engine in `./cloudstream-data`.
pub const DEFAULT_URL: &str = "local://./cloudstream-data";

/// The provider URL from the `CLOUDSTREAM_URL` environment variable, or [`DEFAULT_URL`].
pub fn url_from_env() -> String {
    std::env::var("CLOUDSTREAM_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

type Registry = Mutex<HashMap<String, (Weak<LogBackend>, LocalOptions)>>;

/// Engines open in this process, so one directory is opened once.
fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Registry::default)
}

fn shared(
    key: String,
    options: LocalOptions,
    open: impl FnOnce() -> Result<LogBackend>,
) -> Result<Arc<LogBackend>> {
    let mut engines = registry().lock().unwrap_or_else(|e| e.into_inner());
    if let Some((engine, opened_with)) = engines.get(&key) {
        if let Some(backend) = engine.upgrade() {
            if *opened_with != options {
                return Err(Error::InvalidArgument(format!(
                    "{key} is already open in this process with other options ({opened_with:?}); \
                     open it with the same URL options"
                )));
            }
            return Ok(backend);
        }
    }
    let backend = Arc::new(open()?);
    engines.retain(|_, (w, _)| w.strong_count() > 0);
    engines.insert(key, (Arc::downgrade(&backend), options));
    Ok(backend)
}

fn log_options(options: LocalOptions) -> LogOptions {
    LogOptions {
        sync: options.sync,
        segment_bytes: options.segment_bytes,
        retention_check: Some(options.retention_check),
        ..LogOptions::default()
    }
}

fn open_local(path: &Path, options: LocalOptions) -> Result<Arc<LogBackend>> {
    std::fs::create_dir_all(path).map_err(|e| Error::Backend(Box::new(e)))?;
    let path = path
        .canonicalize()
        .map_err(|e| Error::Backend(Box::new(e)))?;
    shared(format!("local://{}", path.display()), options, || {
        let log = Log::open(&path, log_options(options))?;
        Ok(LogBackend::new("local", log, options.max_record_bytes))
    })
}

fn open_memory(name: &str, options: LocalOptions) -> Result<Arc<LogBackend>> {
    let open = || {
        let log_options = LogOptions {
            storage: Arc::new(MemoryStorage::new()),
            sync: cloudstream_log::SyncPolicy::Never,
            segment_bytes: options.segment_bytes.min(16 * 1024 * 1024),
            ..log_options(options)
        };
        let log = Log::open("/memory", log_options)?;
        Ok(LogBackend::new("memory", log, options.max_record_bytes))
    };
    if name.is_empty() {
        return Ok(Arc::new(open()?));
    }
    shared(format!("memory://{name}"), options, open)
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
