//! NATS JetStream, file storage, with every write fsynced before it is acknowledged
//! (`sync_interval: always`, nats-server 2.10 and later) or as shipped (fsync every two
//! minutes). A stream of P partitions is one JetStream stream of subjects `NAME.c.p`
//! (`c = p % 4`, so each of four consumers filters one wildcard); each producer has a
//! connection of its own and awaits each acknowledgement (a batch: all in flight, then
//! every acknowledgement); consumers are ephemeral pull consumers without acknowledgements.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use async_nats::jetstream::{self, consumer::pull, consumer::AckPolicy, stream::StorageType};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;

use super::{Kind, Tools};
use crate::peer::{Consumer, Peer, Producer, Spread};
use crate::process::{free_port, Server};

pub(super) const ALWAYS: Kind = Kind {
    name: "nats-always",
    about: "NATS JetStream, file storage, sync_interval: always",
    durability: "fsync before ack (sync_interval: always)",
    start: |dir, tools| Box::pin(start(dir, tools, &ALWAYS)),
};

pub(super) const DEFAULT: Kind = Kind {
    name: "nats-default",
    about: "NATS JetStream, file storage as shipped (fsync every 2 min)",
    durability: "page cache; fsync every 2 min (default)",
    start: |dir, tools| Box::pin(start(dir, tools, &DEFAULT)),
};

struct Nats {
    server: Server,
    addr: String,
    js: jetstream::Context,
    kind: &'static Kind,
}

/// A JetStream context on a connection of its own.
async fn connect(addr: &str) -> Result<jetstream::Context> {
    let client = async_nats::connect(addr)
        .await
        .context("connecting to nats-server")?;
    Ok(jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(10))
        .build(client))
}

async fn start(dir: &Path, tools: &Tools, kind: &'static Kind) -> Result<Box<dyn Peer>> {
    let port = free_port()?;
    let always = kind.name == ALWAYS.name;
    let sync = if always {
        "  sync_interval: always\n"
    } else {
        ""
    };
    let config = format!(
        "listen: 127.0.0.1:{port}\njetstream {{\n  store_dir: {:?}\n{sync}}}\n",
        dir.join("js").display().to_string()
    );
    let file = dir.join("nats.conf");
    std::fs::write(&file, config)?;
    let args = ["-c".to_owned(), file.display().to_string()];
    let mut server = Server::start(kind.name, &tools.nats_server, &args, dir, &tools.logs)?;
    let addr = format!("127.0.0.1:{port}");
    server.wait_for(&addr).await?;
    let js = connect(&addr).await?;
    Ok(Box::new(Nats {
        server,
        addr,
        js,
        kind,
    }))
}

/// The subject of partition `p` of `stream`.
fn subject(stream: &str, p: u32) -> String {
    format!("{stream}.{}.{p}", p % 4)
}

#[async_trait]
impl Peer for Nats {
    fn kind(&self) -> &'static Kind {
        self.kind
    }

    fn pid(&self) -> Option<u32> {
        Some(self.server.pid())
    }

    fn workloads(&self) -> &'static str {
        // An fsync per message (about 1,200 a second here): a catch-up preload would take
        // hours; the default setting's (e) reads the same kind of store.
        if self.kind.name == ALWAYS.name {
            "abcd"
        } else {
            "abcde"
        }
    }

    async fn create(&self, stream: &str, partitions: u32) -> Result<()> {
        self.js
            .create_stream(jetstream::stream::Config {
                name: stream.to_owned(),
                subjects: (0..partitions).map(|p| subject(stream, p)).collect(),
                storage: StorageType::File,
                ..Default::default()
            })
            .await?;
        Ok(())
    }

    async fn producer(&self, stream: &str, partitions: u32) -> Result<Box<dyn Producer>> {
        Ok(Box::new(Publisher {
            js: connect(&self.addr).await?,
            stream: stream.to_owned(),
            spread: Spread::new(partitions),
        }))
    }

    async fn consumer(
        &self,
        stream: &str,
        partitions: u32,
        index: u32,
        of: u32,
    ) -> Result<Box<dyn Consumer>> {
        // Four consumers of `NAME.c.*` each, or one of everything.
        let filter_subject = if of == 4 && partitions >= 4 {
            format!("{stream}.{index}.*")
        } else {
            format!("{stream}.>")
        };
        let consumer = self
            .js
            .get_stream(stream)
            .await?
            .create_consumer(pull::Config {
                filter_subject,
                ack_policy: AckPolicy::None,
                ..Default::default()
            })
            .await?;
        Ok(Box::new(Puller { consumer }))
    }

    async fn stop(self: Box<Self>) -> Result<()> {
        self.server.stop().await
    }
}

struct Publisher {
    js: jetstream::Context,
    stream: String,
    spread: Spread,
}

#[async_trait]
impl Producer for Publisher {
    async fn send(&mut self, key: Option<&str>, payload: Bytes) -> Result<()> {
        let subject = subject(&self.stream, self.spread.partition(key));
        self.js.publish(subject, payload).await?.await?;
        Ok(())
    }

    async fn send_batch(&mut self, key: Option<&str>, payloads: Vec<Bytes>) -> Result<()> {
        let mut acks = Vec::with_capacity(payloads.len());
        for payload in payloads {
            let subject = subject(&self.stream, self.spread.partition(key));
            acks.push(self.js.publish(subject, payload).await?);
        }
        for ack in acks {
            ack.await?;
        }
        Ok(())
    }
}

struct Puller {
    consumer: jetstream::consumer::Consumer<pull::Config>,
}

#[async_trait]
impl Consumer for Puller {
    async fn poll(&mut self) -> Result<Vec<Bytes>> {
        let mut messages = self
            .consumer
            .fetch()
            .max_messages(10_000)
            .expires(Duration::from_millis(100))
            .messages()
            .await?;
        let mut out = Vec::new();
        while let Some(message) = messages.next().await {
            out.push(message.map_err(|e| anyhow::anyhow!("{e}"))?.payload.clone());
        }
        Ok(out)
    }
}
