//! Where delivered files (and aggregations' saved state) go: an object store named by a URL
//! (`object_store`), and what is there already (the positions delivered files hold,
//! recovered by listing them). Local files are fsynced, with their directory, before a put
//! returns: a checkpoint moves only past what a power loss keeps.

use std::collections::HashMap;
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt as _, PutMode, PutOptions, PutPayload};

use super::layout::FileName;
use crate::{Error, Result, Sequence};

/// The schemes of the stores a delivery writes to (`memory://` would lose what it was given).
const SCHEMES: [&str; 6] = ["file", "s3", "s3a", "az", "abfs", "gs"];

/// An object store and the prefix delivered files go under.
#[derive(Debug, Clone)]
pub(crate) struct Sink {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    /// The URL, without its query (which may hold credentials), for messages.
    shown: String,
}

/// The error of an object store call, by meaning.
fn store_error(shown: &str, e: object_store::Error) -> Error {
    let message = format!("object store {shown}: {e}");
    match e {
        object_store::Error::NotFound { .. } => Error::Backend(message.into()),
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => Error::Forbidden(message),
        object_store::Error::NotSupported { .. } | object_store::Error::NotImplemented { .. } => {
            Error::Unsupported {
                operation: message.into(),
                backend: "deliver",
            }
        }
        _ => Error::Unavailable(message.into()),
    }
}

/// A plain absolute path as a `file://` URL; anything else as it is.
fn absolute_as_url(url: &str) -> String {
    if url.starts_with('/') {
        format!("file://{url}")
    } else {
        url.to_owned()
    }
}

/// The `file://` URL of a local directory (made absolute against the current directory),
/// its special characters escaped.
pub(crate) fn local_url(dir: &std::path::Path) -> Result<String> {
    let absolute = std::path::absolute(dir).map_err(|e| {
        Error::InvalidArgument(format!("{} is not a usable path: {e}", dir.display()))
    })?;
    url::Url::from_file_path(&absolute)
        .map(String::from)
        .map_err(|()| Error::InvalidArgument(format!("{} is not a usable path", dir.display())))
}

/// A sink URL as messages and views show it: without its user-info and its query (which
/// may hold credentials), and without opening the store.
pub(crate) fn shown(url: &str) -> String {
    let text = absolute_as_url(url);
    match url::Url::parse(&text) {
        Ok(mut parsed) => {
            parsed.set_query(None);
            parsed.set_fragment(None);
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        // Not a URL: up to the first `?` or `@`, whichever comes first.
        Err(_) => text.split(['?', '@']).next().unwrap_or_default().to_owned(),
    }
}

impl Sink {
    /// The sink a URL names: `file:///DIR` (or a plain absolute path), `s3://BUCKET/PREFIX`,
    /// `az://CONTAINER/PREFIX`, `gs://BUCKET/PREFIX`; the query's `key=value` pairs are the
    /// store's options (`endpoint`, `region`, `access_key_id`, `secret_access_key`,
    /// `allow_http`, `use_emulator`, ...), as `object_store` names them.
    pub(crate) fn open(url: &str) -> Result<Sink> {
        let text = absolute_as_url(url);
        let visible = shown(url);
        let parsed = url::Url::parse(&text).map_err(|e| {
            Error::InvalidArgument(format!("a sink is a URL, {visible:?} is not: {e}"))
        })?;
        if !SCHEMES.contains(&parsed.scheme()) {
            return Err(Error::InvalidArgument(format!(
                "a sink is file://, s3://, az://, abfs://, gs:// or an absolute path, not {visible:?}"
            )));
        }
        if parsed.scheme() == "file" && !matches!(parsed.host_str(), None | Some("" | "localhost"))
        {
            return Err(Error::InvalidArgument(format!(
                "a local sink is file:///ABSOLUTE/PATH (three slashes), not {visible:?}: its host would be {:?}",
                parsed.host_str().unwrap_or_default()
            )));
        }
        let options: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let mut bare = parsed.clone();
        bare.set_query(None);
        let shown = visible;
        let (store, prefix): (Arc<dyn ObjectStore>, Path) = if parsed.scheme() == "file" {
            let prefix = Path::from_url_path(bare.path()).map_err(|e| {
                Error::InvalidArgument(format!("sink {shown} is not a usable path: {e}"))
            })?;
            (Arc::new(LocalFileSystem::new().with_fsync(true)), prefix)
        } else {
            let (store, prefix) = object_store::parse_url_opts(&bare, options).map_err(|e| {
                Error::InvalidArgument(format!("sink {shown} cannot be opened: {e}"))
            })?;
            (Arc::from(store), prefix)
        };
        Ok(Sink {
            store,
            prefix,
            shown,
        })
    }

    /// The sink as shown in messages (its URL without the query).
    pub(crate) fn shown(&self) -> &str {
        &self.shown
    }

    /// The last position of each partition that files of `stream` hold: the files in the
    /// prefix's `dt=*/hour=*/` folders (not deeper, where another delivery may write).
    pub(crate) async fn delivered(&self, stream: &str) -> Result<HashMap<u32, Sequence>> {
        let depth = self.prefix.parts().count() + 3;
        let mut out: HashMap<u32, Sequence> = HashMap::new();
        let mut listing = self.store.list(Some(&self.prefix));
        while let Some(meta) = listing
            .try_next()
            .await
            .map_err(|e| store_error(&self.shown, e))?
        {
            let parts: Vec<_> = meta.location.parts().collect();
            let laid_out = parts.len() == depth
                && parts[depth - 3].as_ref().starts_with("dt=")
                && parts[depth - 2].as_ref().starts_with("hour=");
            let Some(name) = meta.location.filename().filter(|_| laid_out) else {
                continue;
            };
            if let Some(file) = FileName::parse(stream, name) {
                let last = out.entry(file.partition).or_insert(file.last);
                *last = (*last).max(file.last);
            }
        }
        Ok(out)
    }

    /// Where `relative` (parts separated by `/`) is below the prefix.
    fn location(&self, relative: &str) -> Path {
        let mut location = self.prefix.clone();
        for part in relative.split('/') {
            location = location.join(part);
        }
        location
    }

    /// The bytes of the object at `relative` below the prefix, if there is one.
    pub(crate) async fn get(&self, relative: &str) -> Result<Option<bytes::Bytes>> {
        match self.store.get(&self.location(relative)).await {
            Ok(got) => got
                .bytes()
                .await
                .map(Some)
                .map_err(|e| store_error(&self.shown, e)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(store_error(&self.shown, e)),
        }
    }

    /// Writes one file, whole (a reader never sees a part of it): `relative` below the
    /// prefix. Writing it again writes the same bytes.
    pub(crate) async fn put(&self, relative: &str, bytes: Vec<u8>) -> Result<()> {
        let location = self.location(relative);
        let options = PutOptions {
            mode: PutMode::Overwrite,
            ..Default::default()
        };
        self.store
            .put_opts(&location, PutPayload::from(bytes), options)
            .await
            .map(drop)
            .map_err(|e| store_error(&self.shown, e))
    }
}
