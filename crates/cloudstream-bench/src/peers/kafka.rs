//! A Kafka-protocol broker: tansu, the one the `kafka://` backend is tested on, on its
//! SQLite storage, driven by librdkafka (`acks=all`, idempotent producer). tansu commits
//! each produce to SQLite's write-ahead log with `synchronous = normal`, hard-coded: what
//! it acknowledges survives a crash of the broker, not a power loss (no fsync per produce).

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use async_trait::async_trait;
use bytes::Bytes;
use futures::FutureExt;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use super::{Kind, Tools};
use crate::peer::{assigned, Consumer, Peer, Producer};
use crate::process::{free_port, Server};

pub(super) const KIND: Kind = Kind {
    name: "kafka-tansu",
    about: "tansu 0.6 (Kafka protocol, SQLite WAL without fsync) through librdkafka",
    durability: "SQLite WAL, synchronous=normal: no fsync per produce (tansu's only setting)",
    start: |dir, tools| Box::pin(start(dir, tools)),
};

struct Tansu {
    server: Server,
    brokers: String,
    /// One producer for every sender, as Kafka clients share one (each librdkafka
    /// instance runs threads of its own).
    producer: FutureProducer,
}

async fn start(dir: &Path, tools: &Tools) -> Result<Box<dyn Peer>> {
    let addr = format!("127.0.0.1:{}", free_port()?);
    let url = format!("tcp://{addr}");
    let args = [
        "broker",
        "--listener-url",
        &url,
        "--advertised-listener-url",
        &url,
        // Resolved against the working directory: the peer's data directory.
        "--storage-engine",
        "sqlite://tansu.db",
    ]
    .map(String::from);
    let mut server = Server::start(
        KIND.name,
        &tools.dir.join("tansu/bin/tansu"),
        &args,
        dir,
        &tools.logs,
    )?;
    server.wait_for(&addr).await?;
    let producer = ClientConfig::new()
        .set("bootstrap.servers", &addr)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        // Sent as soon as queued: single sends wait for nothing; a batch is queued whole
        // before the first delivery report.
        .set("linger.ms", "0")
        .set("message.timeout.ms", "30000")
        .create()?;
    Ok(Box::new(Tansu {
        server,
        brokers: addr,
        producer,
    }))
}

#[async_trait]
impl Peer for Tansu {
    fn kind(&self) -> &'static Kind {
        &KIND
    }

    fn pid(&self) -> Option<u32> {
        Some(self.server.pid())
    }

    fn catch_up_cap(&self) -> Option<u64> {
        Some(1_000_000)
    }

    async fn create(&self, stream: &str, partitions: u32) -> Result<()> {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .create()?;
        let topic = NewTopic::new(
            stream,
            i32::try_from(partitions)?,
            TopicReplication::Fixed(1),
        );
        for result in admin.create_topics([&topic], &AdminOptions::new()).await? {
            result.map_err(|(topic, e)| anyhow::anyhow!("creating {topic}: {e}"))?;
        }
        Ok(())
    }

    async fn producer(&self, stream: &str, _partitions: u32) -> Result<Box<dyn Producer>> {
        Ok(Box::new(Sender {
            producer: self.producer.clone(),
            topic: stream.to_owned(),
        }))
    }

    async fn consumer(
        &self,
        stream: &str,
        partitions: u32,
        index: u32,
        of: u32,
    ) -> Result<Box<dyn Consumer>> {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", "bench")
            .set("enable.auto.commit", "false")
            .set("fetch.wait.max.ms", "10")
            .set("queued.max.messages.kbytes", "65536")
            .create()?;
        let mut assignment = TopicPartitionList::new();
        for p in assigned(partitions, index, of) {
            assignment.add_partition_offset(stream, i32::try_from(p)?, Offset::Beginning)?;
        }
        consumer.assign(&assignment)?;
        Ok(Box::new(Reader { consumer }))
    }

    async fn stop(self: Box<Self>) -> Result<()> {
        self.server.stop().await
    }
}

struct Sender {
    producer: FutureProducer,
    topic: String,
}

impl Sender {
    /// Queues every payload, then waits for each delivery report.
    async fn produce(&self, key: Option<&str>, payloads: &[Bytes]) -> Result<()> {
        let mut deliveries = Vec::with_capacity(payloads.len());
        for payload in payloads {
            let mut record: FutureRecord<'_, str, [u8]> =
                FutureRecord::to(&self.topic).payload(payload.as_ref());
            if let Some(key) = key {
                record = record.key(key);
            }
            match self.producer.send_result(record) {
                Ok(delivery) => deliveries.push(delivery),
                Err((e, _)) => bail!("queueing a produce: {e}"),
            }
        }
        for delivery in futures::future::join_all(deliveries).await {
            delivery
                .context("a delivery report lost")?
                .map_err(|(e, _)| anyhow::anyhow!("produce: {e}"))?;
        }
        Ok(())
    }
}

#[async_trait]
impl Producer for Sender {
    async fn send(&mut self, key: Option<&str>, payload: Bytes) -> Result<()> {
        self.produce(key, std::slice::from_ref(&payload)).await
    }

    async fn send_batch(&mut self, key: Option<&str>, payloads: Vec<Bytes>) -> Result<()> {
        self.produce(key, &payloads).await
    }
}

struct Reader {
    consumer: StreamConsumer,
}

#[async_trait]
impl Consumer for Reader {
    async fn poll(&mut self) -> Result<Vec<Bytes>> {
        // The first message within 100 ms, then what is already there (up to 10,000).
        let mut out = Vec::new();
        let Ok(first) =
            tokio::time::timeout(Duration::from_millis(100), self.consumer.recv()).await
        else {
            return Ok(out);
        };
        out.push(Bytes::copy_from_slice(first?.payload().unwrap_or_default()));
        while out.len() < 10_000 {
            match self.consumer.recv().now_or_never() {
                Some(message) => out.push(Bytes::copy_from_slice(
                    message?.payload().unwrap_or_default(),
                )),
                None => break,
            }
        }
        Ok(out)
    }
}
