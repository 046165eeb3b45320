//! cloudstream's embedded engine, in this process, through its public API, acknowledging
//! only after fdatasync (`sync=always`).

use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Result};
use async_trait::async_trait;
use bytes::Bytes;
use cloudstream::backend::ReadOptions;
use cloudstream::{Client, Event, ReadFrom, Stream};

use super::{Kind, Tools};
use crate::peer::{assigned, Consumer, Peer, Producer};

pub(super) const KIND: Kind = Kind {
    name: "cloudstream",
    about: "the embedded engine in process (local://, sync=always)",
    durability: "fdatasync before ack (sync=always)",
    start: |dir, _tools: &Tools| Box::pin(start(dir)),
};

struct Embedded {
    client: Client,
}

async fn start(dir: &Path) -> Result<Box<dyn Peer>> {
    let client = cloudstream::open(&format!("local://{}?sync=always", dir.display())).await?;
    Ok(Box::new(Embedded { client }))
}

/// An event of `payload`, with `key` if given.
pub(super) fn event(key: Option<&str>, payload: Bytes) -> Event {
    let event = Event::new(payload);
    match key {
        Some(key) => event.with_key(key),
        None => event,
    }
}

#[async_trait]
impl Peer for Embedded {
    fn kind(&self) -> &'static Kind {
        &KIND
    }

    fn pid(&self) -> Option<u32> {
        None
    }

    async fn create(&self, stream: &str, partitions: u32) -> Result<()> {
        self.client
            .stream(stream)
            .partitions(partitions)
            .create()
            .await?;
        Ok(())
    }

    async fn producer(&self, stream: &str, _partitions: u32) -> Result<Box<dyn Producer>> {
        Ok(Box::new(self.client.stream(stream).open().await?))
    }

    async fn consumer(
        &self,
        stream: &str,
        partitions: u32,
        index: u32,
        of: u32,
    ) -> Result<Box<dyn Consumer>> {
        let stream = self.client.stream(stream).open().await?;
        let from = assigned(partitions, index, of)
            .map(|p| (p, ReadFrom::Earliest))
            .collect();
        Ok(Box::new(Reader { stream, from }))
    }

    async fn stop(self: Box<Self>) -> Result<()> {
        Ok(())
    }
}

#[async_trait]
impl Producer for Stream {
    async fn send(&mut self, key: Option<&str>, payload: Bytes) -> Result<()> {
        Stream::send(self, event(key, payload)).await?;
        Ok(())
    }

    async fn send_batch(&mut self, key: Option<&str>, payloads: Vec<Bytes>) -> Result<()> {
        let events = payloads.into_iter().map(|p| event(key, p)).collect();
        for result in Stream::send_batch(self, events).await {
            result?;
        }
        Ok(())
    }
}

/// Reads its partitions in turn, each from where it left off.
struct Reader {
    stream: Stream,
    from: Vec<(u32, ReadFrom)>,
}

#[async_trait]
impl Consumer for Reader {
    async fn poll(&mut self) -> Result<Vec<Bytes>> {
        ensure!(!self.from.is_empty(), "a consumer of no partition");
        let mut out = Vec::new();
        // A pass without waiting over every partition, then a short wait on the first if
        // none had anything.
        for wait in [None, Some(Duration::from_millis(100))] {
            for (partition, from) in &mut self.from {
                let options = ReadOptions {
                    max_records: 10_000,
                    max_bytes: 16 << 20,
                    wait,
                };
                let records = self.stream.read_with(*partition, *from, &options).await?;
                if let Some(last) = records.last() {
                    *from = ReadFrom::After(last.position);
                }
                out.extend(records.into_iter().map(|r| r.event.payload));
                if wait.is_some() {
                    break;
                }
            }
            if !out.is_empty() {
                break;
            }
        }
        Ok(out)
    }
}
