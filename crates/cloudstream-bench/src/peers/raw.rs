//! The raw disk, the physical limit: appends to a file, each acknowledged after the
//! `fdatasync` that covers it, by the best possible group commit (one thread writes
//! everything waiting as one write, syncs once, and acknowledges all of it). Its (e) reads
//! the file back sequentially.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};

use anyhow::{anyhow, Result};
use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::oneshot;

use super::{Kind, Tools};
use crate::peer::{Consumer, Peer, Producer};

pub(super) const KIND: Kind = Kind {
    name: "raw-disk",
    about: "write + fdatasync on a file, perfectly group-committed (the physical limit)",
    durability: "fdatasync before ack",
    start: |dir, _tools: &Tools| {
        Box::pin(async move { Ok(Box::new(Raw::new(dir)) as Box<dyn Peer>) })
    },
};

/// What a committer is asked to write: the bytes, and who waits for them.
type Append = (Vec<u8>, oneshot::Sender<std::io::Result<()>>);

struct Raw {
    dir: PathBuf,
    /// Each stream's committer.
    committers: Mutex<Vec<(String, mpsc::Sender<Append>)>>,
}

impl Raw {
    fn new(dir: &Path) -> Raw {
        Raw {
            dir: dir.to_owned(),
            committers: Mutex::new(Vec::new()),
        }
    }

    fn file(&self, stream: &str) -> PathBuf {
        self.dir.join(format!("{stream}.raw"))
    }
}

/// Writes everything waiting in one write, syncs once, and acknowledges it all.
fn commit_forever(mut file: File, appends: mpsc::Receiver<Append>) {
    while let Ok(first) = appends.recv() {
        let mut batch = vec![first];
        batch.extend(appends.try_iter());
        let mut bytes = Vec::with_capacity(batch.iter().map(|(b, _)| b.len()).sum());
        for (b, _) in &batch {
            bytes.extend_from_slice(b);
        }
        let outcome = file.write_all(&bytes).and_then(|()| file.sync_data());
        for (_, done) in batch {
            let _ = done.send(
                outcome
                    .as_ref()
                    .map(|_| ())
                    .map_err(|e| std::io::Error::new(e.kind(), e.to_string())),
            );
        }
    }
}

#[async_trait]
impl Peer for Raw {
    fn kind(&self) -> &'static Kind {
        &KIND
    }

    fn pid(&self) -> Option<u32> {
        None
    }

    fn follows(&self) -> bool {
        false
    }

    async fn create(&self, stream: &str, _partitions: u32) -> Result<()> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(self.file(stream))?;
        let (send, receive) = mpsc::channel();
        std::thread::spawn(move || commit_forever(file, receive));
        self.committers
            .lock()
            .map_err(|_| anyhow!("poisoned"))?
            .push((stream.to_owned(), send));
        Ok(())
    }

    async fn producer(&self, stream: &str, _partitions: u32) -> Result<Box<dyn Producer>> {
        let committers = self.committers.lock().map_err(|_| anyhow!("poisoned"))?;
        let (_, send) = committers
            .iter()
            .find(|(s, _)| s == stream)
            .ok_or_else(|| anyhow!("no stream {stream}"))?;
        Ok(Box::new(Appender {
            committer: send.clone(),
        }))
    }

    async fn consumer(
        &self,
        stream: &str,
        _partitions: u32,
        _index: u32,
        _of: u32,
    ) -> Result<Box<dyn Consumer>> {
        Ok(Box::new(FileReader {
            file: Arc::new(Mutex::new(File::open(self.file(stream))?)),
        }))
    }

    async fn stop(self: Box<Self>) -> Result<()> {
        Ok(())
    }
}

struct Appender {
    committer: mpsc::Sender<Append>,
}

impl Appender {
    async fn append(&self, bytes: Vec<u8>) -> Result<()> {
        let (done, acked) = oneshot::channel();
        self.committer
            .send((bytes, done))
            .map_err(|_| anyhow!("the committer is gone"))?;
        Ok(acked.await??)
    }
}

#[async_trait]
impl Producer for Appender {
    async fn send(&mut self, _key: Option<&str>, payload: Bytes) -> Result<()> {
        self.append(payload.to_vec()).await
    }

    async fn send_batch(&mut self, _key: Option<&str>, payloads: Vec<Bytes>) -> Result<()> {
        self.append(payloads.concat()).await
    }
}

/// Reads the file in chunks of about 1 MB, as 100-byte events (what (e) writes).
struct FileReader {
    file: Arc<Mutex<File>>,
}

#[async_trait]
impl Consumer for FileReader {
    async fn poll(&mut self) -> Result<Vec<Bytes>> {
        let file = Arc::clone(&self.file);
        let chunk = tokio::task::spawn_blocking(move || -> Result<Vec<u8>> {
            // A whole number of events: a read fills the buffer but at the end of the file.
            let mut buf = vec![0u8; 100 * 10_000];
            let mut file = file.lock().map_err(|_| anyhow!("poisoned"))?;
            let mut n = 0;
            while n < buf.len() {
                match file.read(&mut buf[n..])? {
                    0 => break,
                    read => n += read,
                }
            }
            buf.truncate(n);
            Ok(buf)
        })
        .await??;
        let chunk = Bytes::from(chunk);
        Ok((0..chunk.len() / 100)
            .map(|i| chunk.slice(i * 100..(i + 1) * 100))
            .collect())
    }
}
