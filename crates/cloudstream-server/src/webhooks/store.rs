//! Where registrations survive a restart: `webhooks.json` in the server's state directory,
//! replaced atomically on every change.

use std::path::Path as FsPath;

use serde::{Deserialize, Serialize};

use super::spec::Spec;

/// The file, in the state directory, that holds the registrations.
pub(crate) const STATE_FILE: &str = "webhooks.json";
/// Where the next version of [`STATE_FILE`] is written before it replaces it.
const STATE_TMP: &str = "webhooks.json.tmp";

/// The state file's content.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct StateFile {
    /// The registrations.
    #[serde(default)]
    pub(crate) webhooks: Vec<Spec>,
}

/// Reads the registrations in `dir`, creating `dir` if missing; none if there is no file.
pub(crate) fn load(dir: &FsPath) -> Result<Vec<Spec>, cloudstream::Error> {
    fn failed(path: &FsPath, e: &dyn std::fmt::Display) -> cloudstream::Error {
        cloudstream::Error::Backend(format!("webhook state {}: {e}", path.display()).into())
    }
    std::fs::create_dir_all(dir).map_err(|e| failed(dir, &e))?;
    let path = dir.join(STATE_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(failed(&path, &e)),
    };
    let file: StateFile = serde_json::from_slice(&bytes).map_err(|e| failed(&path, &e))?;
    Ok(file.webhooks)
}

/// Replaces the state file with `bytes`: written to a temporary file, synced, renamed over
/// the old one, and the directory synced, so a crash leaves the old file or the new one.
pub(crate) fn write_atomically(dir: &FsPath, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(STATE_TMP);
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, dir.join(STATE_FILE))?;
    #[cfg(unix)]
    {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
