//! Kinesis stand-ins, kinesalite and moto, through the AWS SDK: `PutRecords` of at most
//! 500 records a call (both enforce Kinesis' limit), `GetRecords` from the horizon. Both
//! keep everything in memory: acknowledged means held by the process. Only (a) and (e)
//! run: a single `PutRecord` is an HTTP request each, about a thousand a second. moto finds
//! a shard's last record by listing them all on every put, so its puts slow down as a
//! shard grows (about 100 ms per 500 records at 50,000): its rows are small, their counts
//! stated.

use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use async_trait::async_trait;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType, StreamStatus};
use aws_sdk_kinesis::Client;
use bytes::Bytes;

use super::{Kind, Tools};
use crate::peer::{Consumer, Peer, Producer};
use crate::process::{free_port, Server};

pub(super) const KINESALITE: Kind = Kind {
    name: "kinesalite",
    about: "kinesalite 3.3 (Kinesis API, in memory) through the AWS SDK",
    durability: "in memory",
    start: |dir, tools| Box::pin(start(dir, tools, true)),
};

pub(super) const MOTO: Kind = Kind {
    name: "moto",
    about: "moto 5 (Kinesis API, in memory) through the AWS SDK",
    durability: "in memory",
    start: |dir, tools| Box::pin(start(dir, tools, false)),
};

/// Records in one `PutRecords`.
const PUT_RECORDS: usize = 500;

struct Kinesis {
    server: Server,
    client: Client,
    kinesalite: bool,
}

async fn start(dir: &Path, tools: &Tools, kinesalite: bool) -> Result<Box<dyn Peer>> {
    let port = free_port()?;
    let mut server = if kinesalite {
        let script =
            format!(
            "require({:?})({{createStreamMs: 20, shardLimit: 100000}}).listen({port}, '127.0.0.1')",
            tools.dir.join("node_modules/kinesalite").display().to_string()
        );
        Server::start(
            KINESALITE.name,
            Path::new("node"),
            &["-e".to_owned(), script],
            dir,
            &tools.logs,
        )?
    } else {
        let args = ["-H", "127.0.0.1", "-p", &port.to_string()].map(String::from);
        Server::start(MOTO.name, Path::new("moto_server"), &args, dir, &tools.logs)?
    };
    let endpoint = format!("http://127.0.0.1:{port}");
    server.wait_for(&format!("127.0.0.1:{port}")).await?;
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_kinesis::config::Credentials::new(
            "bench", "bench", None, None, "bench",
        ))
        .load()
        .await;
    let client = Client::from_conf(
        aws_sdk_kinesis::config::Builder::from(&config)
            .endpoint_url(endpoint)
            .build(),
    );
    Ok(Box::new(Kinesis {
        server,
        client,
        kinesalite,
    }))
}

#[async_trait]
impl Peer for Kinesis {
    fn kind(&self) -> &'static Kind {
        if self.kinesalite {
            &KINESALITE
        } else {
            &MOTO
        }
    }

    fn pid(&self) -> Option<u32> {
        Some(self.server.pid())
    }

    fn workloads(&self) -> &'static str {
        "ae"
    }

    fn preload_producers(&self) -> usize {
        if self.kinesalite {
            4
        } else {
            1
        }
    }

    fn catch_up_cap(&self) -> Option<u64> {
        Some(if self.kinesalite { 100_000 } else { 20_000 })
    }

    async fn create(&self, stream: &str, partitions: u32) -> Result<()> {
        self.client
            .create_stream()
            .stream_name(stream)
            .shard_count(i32::try_from(partitions)?)
            .send()
            .await?;
        for _ in 0..600 {
            let summary = self
                .client
                .describe_stream_summary()
                .stream_name(stream)
                .send()
                .await?;
            if summary
                .stream_description_summary()
                .map(|s| s.stream_status())
                == Some(&StreamStatus::Active)
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!("{stream} did not become active within 30 s")
    }

    async fn producer(&self, stream: &str, _partitions: u32) -> Result<Box<dyn Producer>> {
        Ok(Box::new(Putter {
            client: self.client.clone(),
            stream: stream.to_owned(),
            next: 0,
            concurrent: self.kinesalite,
        }))
    }

    async fn consumer(
        &self,
        stream: &str,
        _partitions: u32,
        index: u32,
        of: u32,
    ) -> Result<Box<dyn Consumer>> {
        let shards = self.client.list_shards().stream_name(stream).send().await?;
        let mut iterators = Vec::new();
        for (i, shard) in shards.shards().iter().enumerate() {
            if i as u32 % of != index {
                continue;
            }
            let iterator = self
                .client
                .get_shard_iterator()
                .stream_name(stream)
                .shard_id(shard.shard_id())
                .shard_iterator_type(ShardIteratorType::TrimHorizon)
                .send()
                .await?;
            iterators.push(
                iterator
                    .shard_iterator()
                    .context("no shard iterator")?
                    .to_owned(),
            );
        }
        Ok(Box::new(Getter {
            client: self.client.clone(),
            iterators,
        }))
    }

    async fn stop(self: Box<Self>) -> Result<()> {
        self.server.stop().await
    }
}

struct Putter {
    client: Client,
    stream: String,
    /// A partition key for the next unkeyed record.
    next: u64,
    /// Whether a batch's calls may be in flight together (moto gives records written
    /// concurrently to one shard the same sequence number, and keeps one of them).
    concurrent: bool,
}

#[async_trait]
impl Producer for Putter {
    async fn send(&mut self, key: Option<&str>, payload: Bytes) -> Result<()> {
        self.send_batch(key, vec![payload]).await
    }

    /// Calls of at most 500 records, all in flight at once where the server allows.
    async fn send_batch(&mut self, key: Option<&str>, payloads: Vec<Bytes>) -> Result<()> {
        let mut calls = Vec::new();
        for chunk in payloads.chunks(PUT_RECORDS) {
            let mut records = Vec::with_capacity(chunk.len());
            for payload in chunk {
                self.next += 1;
                let partition_key = key.map_or_else(|| format!("k{}", self.next), str::to_owned);
                records.push(
                    PutRecordsRequestEntry::builder()
                        .data(Blob::new(payload.to_vec()))
                        .partition_key(partition_key)
                        .build()?,
                );
            }
            calls.push(
                self.client
                    .put_records()
                    .stream_name(&self.stream)
                    .set_records(Some(records))
                    .send(),
            );
        }
        let answers = if self.concurrent {
            futures::future::join_all(calls).await
        } else {
            let mut answers = Vec::with_capacity(calls.len());
            for call in calls {
                answers.push(call.await);
            }
            answers
        };
        for answer in answers {
            let failed = answer?.failed_record_count().unwrap_or(0);
            ensure!(failed == 0, "PutRecords failed {failed} records");
        }
        Ok(())
    }
}

struct Getter {
    client: Client,
    iterators: Vec<String>,
}

#[async_trait]
impl Consumer for Getter {
    async fn poll(&mut self) -> Result<Vec<Bytes>> {
        let mut out = Vec::new();
        for iterator in &mut self.iterators {
            let got = self
                .client
                .get_records()
                .shard_iterator(iterator.as_str())
                .limit(10_000)
                .send()
                .await?;
            out.extend(
                got.records()
                    .iter()
                    .map(|r| Bytes::copy_from_slice(r.data().as_ref())),
            );
            if let Some(next) = got.next_shard_iterator() {
                *iterator = next.to_owned();
            }
        }
        if out.is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(out)
    }
}
