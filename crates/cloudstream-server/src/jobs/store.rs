//! Where registrations survive a restart: `{PLURAL}.json` in the server's state directory
//! (`{"webhooks": [...]}`), replaced atomically on every change and readable by its owner
//! only (a registration may hold a URL's credentials).

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

/// Reads the registrations of `plural` in `dir`, creating `dir` if missing; none if there is
/// no file.
pub(crate) fn load<S: DeserializeOwned>(
    dir: &Path,
    plural: &str,
) -> Result<Vec<S>, cloudstream::Error> {
    fn failed(path: &Path, e: &dyn std::fmt::Display) -> cloudstream::Error {
        cloudstream::Error::Backend(format!("server state {}: {e}", path.display()).into())
    }
    std::fs::create_dir_all(dir).map_err(|e| failed(dir, &e))?;
    let path = dir.join(format!("{plural}.json"));
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(failed(&path, &e)),
    };
    parse(&bytes, plural).map_err(|e| failed(&path, &e))
}

/// The registrations of `plural` in a state file's bytes (none when it has no such list).
pub(crate) fn parse<S: DeserializeOwned>(
    bytes: &[u8],
    plural: &str,
) -> Result<Vec<S>, serde_json::Error> {
    let mut file: Map<String, Value> = serde_json::from_slice(bytes)?;
    match file.remove(plural) {
        None => Ok(Vec::new()),
        Some(list) => serde_json::from_value(list),
    }
}

/// A state file's bytes holding `specs` as the registrations of `plural`.
pub(crate) fn encode<S: Serialize>(plural: &str, specs: &[S]) -> Result<Vec<u8>, String> {
    let mut file = Map::new();
    let list =
        serde_json::to_value(specs).map_err(|e| format!("could not encode the {plural}: {e}"))?;
    file.insert(plural.to_owned(), list);
    serde_json::to_vec_pretty(&file).map_err(|e| format!("could not encode the {plural}: {e}"))
}

/// Replaces the registrations of `plural` in `dir` with `specs`; an error names the file.
pub(crate) fn save<S: Serialize>(dir: &Path, plural: &str, specs: &[S]) -> Result<(), String> {
    let path = dir.join(format!("{plural}.json"));
    let bytes = encode(plural, specs)?;
    write_atomically(dir, &path, &bytes)
        .map_err(|e| format!("could not save the {plural} to {}: {e}", path.display()))
}

/// Replaces `path` with `bytes`: written to a temporary file (mode 0600), synced, renamed
/// over the old one, and the directory synced, so a crash leaves the old file or the new one.
fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("json.tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    #[cfg(unix)]
    {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
