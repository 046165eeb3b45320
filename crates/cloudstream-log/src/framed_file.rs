//! Small files replaced atomically and checked on load: stream metadata and consumer
//! checkpoints. Layout: magic (8 bytes), CRC-32C of the payload (u32), payload length (u32),
//! payload (JSON). Written to `NAME.tmp`, synced, renamed over `NAME`, then the directory is
//! synced, so a reader sees the old file or the new one, never a mix.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::IoContext;
use crate::storage::{OpenMode, Storage};
use crate::{LogError, Result};

const HEADER_LEN: usize = 16;

/// Writes `value` as `dir/name` atomically and durably.
pub(crate) fn write<T: Serialize>(
    storage: &dyn Storage,
    dir: &Path,
    name: &str,
    magic: &[u8; 8],
    value: &T,
) -> Result<()> {
    let payload = serde_json::to_vec(value)
        .map_err(|e| LogError::InvalidConfig(format!("cannot encode {name}: {e}")))?;
    let mut bytes = Vec::with_capacity(HEADER_LEN + payload.len());
    bytes.extend_from_slice(magic);
    bytes.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&payload);
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    if storage.exists(&tmp) {
        storage.remove_file(&tmp).at(&tmp)?;
    }
    let file = storage.open(&tmp, OpenMode::CreateNew).at(&tmp)?;
    file.write_all_at(&bytes, 0).at(&tmp)?;
    file.sync_data().at(&tmp)?;
    drop(file);
    storage.rename(&tmp, &path).at(&path)?;
    storage.sync_dir(dir).at(dir)
}

/// Reads and checks a file written by [`write`].
pub(crate) fn read<T: DeserializeOwned>(
    storage: &dyn Storage,
    path: &Path,
    magic: &[u8; 8],
) -> Result<T> {
    let file = storage.open(path, OpenMode::Existing).at(path)?;
    let len = file.len().at(path)? as usize;
    let corrupt = |position: usize, reason: &str| LogError::Corrupt {
        path: path.to_path_buf(),
        position: position as u64,
        reason: reason.to_owned(),
    };
    if len < HEADER_LEN {
        return Err(corrupt(0, "file shorter than its header"));
    }
    let mut bytes = vec![0; len];
    file.read_exact_at(&mut bytes, 0).at(path)?;
    if &bytes[0..8] != magic {
        return Err(corrupt(0, "bad magic bytes"));
    }
    let crc = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    let payload_len = u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]) as usize;
    if payload_len != len - HEADER_LEN {
        return Err(corrupt(12, "length field does not match the file size"));
    }
    let payload = &bytes[HEADER_LEN..];
    if crc32c::crc32c(payload) != crc {
        return Err(corrupt(HEADER_LEN, "checksum mismatch"));
    }
    serde_json::from_slice(payload).map_err(|e| corrupt(HEADER_LEN, &e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryStorage;

    #[test]
    fn round_trip_and_every_bit_flip_detected() -> Result<()> {
        let fs = MemoryStorage::new();
        let dir = Path::new("/d");
        fs.create_dir_all(dir).at(dir)?;
        write(&fs, dir, "c", b"TESTMAGC", &vec![1u64, 2, 3])?;
        let path = dir.join("c");
        let back: Vec<u64> = read(&fs, &path, b"TESTMAGC")?;
        assert_eq!(back, vec![1, 2, 3]);
        let file = fs.open(&path, OpenMode::Existing).at(&path)?;
        let len = file.len().at(&path)? as usize;
        for bit in 0..len * 8 {
            let mut b = [0u8; 1];
            file.read_exact_at(&mut b, (bit / 8) as u64).at(&path)?;
            file.write_all_at(&[b[0] ^ (1 << (bit % 8))], (bit / 8) as u64)
                .at(&path)?;
            let res: Result<Vec<u64>> = read(&fs, &path, b"TESTMAGC");
            assert!(res.is_err(), "bit {bit} not detected");
            file.write_all_at(&b, (bit / 8) as u64).at(&path)?;
        }
        Ok(())
    }
}
