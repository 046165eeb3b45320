//! Opening the embedded engine from a `local://` or `memory://` URL, once per directory (or
//! memory name) per process.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use cloudstream_log::{Log, LogOptions, MemoryStorage};

use super::{LocalOptions, LogBackend};
use crate::backend::Backend;
use crate::url::ProviderUrl;
use crate::{Error, Result};

/// Checks a `local://` URL without opening anything.
pub(crate) fn check_local(url: &ProviderUrl) -> Result<()> {
    local_dir(url)?;
    LocalOptions::from_url(url).map(drop)
}

/// Checks a `memory://` URL.
pub(crate) fn check_memory(url: &ProviderUrl) -> Result<()> {
    LocalOptions::from_url(url).map(drop)
}

fn local_dir(url: &ProviderUrl) -> Result<PathBuf> {
    if url.location().is_empty() {
        return Err(url.invalid("local:// needs a directory, e.g. local://./cloudstream-data"));
    }
    Ok(PathBuf::from(url.location()))
}

/// Opens (or shares) the engine in a `local://` URL's directory.
pub(crate) async fn open_local_url(url: ProviderUrl) -> Result<Arc<dyn Backend>> {
    let path = local_dir(&url)?;
    let options = LocalOptions::from_url(&url)?;
    let backend = tokio::task::spawn_blocking(move || open_local(&path, options))
        .await
        .map_err(|e| Error::Unavailable(Box::new(e)))??;
    Ok(backend)
}

/// Opens (or shares, by name) an engine in memory.
pub(crate) async fn open_memory_url(url: ProviderUrl) -> Result<Arc<dyn Backend>> {
    let options = LocalOptions::from_url(&url)?;
    Ok(open_memory(url.location().trim_end_matches('/'), options)?)
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
