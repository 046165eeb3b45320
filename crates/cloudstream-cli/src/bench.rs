//! `cloudstream bench`: the embedded engine against raw fdatasync on the same disk, in one
//! run, so the figures compare as ratios on a noisy machine.
//!
//! Every engine figure goes through the public API (`local://...?sync=always`): events are
//! acknowledged only after fdatasync. Measurements:
//! - raw: sequential `write` + `fdatasync` of the same size as one batch, before and after the
//!   engine runs (the engine is compared with the better of the two);
//! - 1 KiB × 1,000 batches, one writer (same pattern as raw) and four writers;
//! - 100 B × 1,000 batches, four writers, then reading them all back;
//! - single-event sends, one writer and eight concurrent writers (group commit);
//! - send → on_event delivery latency.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use cloudstream::backend::ReadOptions;
use cloudstream::{Event, ReadFrom, Stream};
use serde_json::{json, Value};

struct Bench {
    dir: PathBuf,
    seconds: f64,
    results: Vec<Value>,
    streams: u32,
}

/// Percentiles of a set of latencies, in microseconds.
fn percentiles(mut samples: Vec<Duration>) -> (f64, f64) {
    if samples.is_empty() {
        return (0.0, 0.0);
    }
    samples.sort_unstable();
    let at =
        |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e6;
    (at(0.50), at(0.99))
}

impl Bench {
    fn budget(&self) -> Duration {
        Duration::from_secs_f64(self.seconds)
    }

    fn record(&mut self, name: &str, value: Value) {
        let mut v = value;
        v["name"] = json!(name);
        println!("{:<44} {}", name, summary(&v));
        self.results.push(v);
    }

    async fn stream(&mut self, url_options: &str) -> Result<Stream> {
        self.streams += 1;
        let url = format!("local://{}/engine?{url_options}", self.dir.display());
        let client = cloudstream::open(&url).await?;
        Ok(client
            .stream(&format!("bench-{}", self.streams))
            .create()
            .await?)
    }

    /// Raw sequential write + fdatasync of `size` bytes per operation.
    fn raw(&mut self, size: usize) -> Result<f64> {
        let path = self.dir.join(format!("raw-{size}"));
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)?;
        let buf = vec![0xA5u8; size];
        let (started, mut ops) = (Instant::now(), 0u64);
        while started.elapsed() < self.budget() {
            file.write_all(&buf)?;
            file.sync_data()?;
            ops += 1;
        }
        let secs = started.elapsed().as_secs_f64();
        std::fs::remove_file(&path)?;
        let bytes_per_sec = (ops * size as u64) as f64 / secs;
        self.record(
            &format!("raw write+fdatasync {} KiB", size / 1024),
            json!({ "ops_per_sec": ops as f64 / secs, "mb_per_sec": bytes_per_sec / 1e6 }),
        );
        Ok(bytes_per_sec)
    }

    /// `writers` tasks sending batches of `batch` events of `size` bytes for the budget.
    async fn batches(
        &mut self,
        size: usize,
        batch: usize,
        writers: usize,
    ) -> Result<(Stream, f64, f64)> {
        let stream = self.stream("sync=always").await?;
        let template: Vec<Event> = (0..batch)
            .map(|_| Event::new(Bytes::from(vec![0x42u8; size])))
            .collect();
        let deadline = Instant::now() + self.budget();
        let started = Instant::now();
        let tasks: Vec<_> = (0..writers)
            .map(|_| {
                let (stream, template) = (stream.clone(), template.clone());
                tokio::spawn(async move {
                    let mut sent = 0u64;
                    while Instant::now() < deadline {
                        for r in stream.send_batch(template.clone()).await {
                            r?;
                        }
                        sent += template.len() as u64;
                    }
                    Ok::<u64, cloudstream::Error>(sent)
                })
            })
            .collect();
        let mut events = 0;
        for t in tasks {
            events += t.await??;
        }
        let secs = started.elapsed().as_secs_f64();
        let events_per_sec = events as f64 / secs;
        let mb_per_sec = events_per_sec * size as f64 / 1e6;
        self.record(
            &format!("append {size} B x {batch}, {writers} writer(s)"),
            json!({ "events_per_sec": events_per_sec, "mb_per_sec": mb_per_sec, "events": events }),
        );
        Ok((stream, events_per_sec, mb_per_sec * 1e6))
    }

    async fn read_back(&mut self, stream: &Stream, size: usize) -> Result<f64> {
        let options = ReadOptions {
            max_records: 10_000,
            max_bytes: 16 << 20,
            wait: None,
        };
        let started = Instant::now();
        let (mut from, mut events) = (ReadFrom::Earliest, 0u64);
        loop {
            let records = stream.read_with(0, from, &options).await?;
            let Some(last) = records.last() else { break };
            from = ReadFrom::After(last.position);
            events += records.len() as u64;
        }
        let secs = started.elapsed().as_secs_f64();
        let events_per_sec = events as f64 / secs;
        self.record(
            &format!("read back {size} B events"),
            json!({ "events_per_sec": events_per_sec, "mb_per_sec": events_per_sec * size as f64 / 1e6, "events": events }),
        );
        Ok(events_per_sec)
    }

    /// Single-event sends from `writers` concurrent tasks; events/s and latency.
    async fn singles(&mut self, writers: usize) -> Result<f64> {
        let stream = self.stream("sync=always").await?;
        let deadline = Instant::now() + self.budget();
        let started = Instant::now();
        let tasks: Vec<_> = (0..writers)
            .map(|w| {
                let stream = stream.clone();
                tokio::spawn(async move {
                    let mut latencies = Vec::new();
                    let payload = Bytes::from(vec![b'x'; 100]);
                    while Instant::now() < deadline {
                        let t = Instant::now();
                        stream
                            .send(Event::new(payload.clone()).with_key(format!("w{w}")))
                            .await?;
                        latencies.push(t.elapsed());
                    }
                    Ok::<_, cloudstream::Error>(latencies)
                })
            })
            .collect();
        let mut latencies = Vec::new();
        for t in tasks {
            latencies.extend(t.await??);
        }
        let secs = started.elapsed().as_secs_f64();
        let events_per_sec = latencies.len() as f64 / secs;
        let (p50, p99) = percentiles(latencies);
        self.record(
            &format!("send 100 B, {writers} concurrent writer(s)"),
            json!({ "events_per_sec": events_per_sec, "p50_us": p50, "p99_us": p99 }),
        );
        Ok(events_per_sec)
    }

    /// Latency from `send` returning... to the trigger's handler seeing the event.
    async fn delivery(&mut self) -> Result<()> {
        let stream = self.stream("sync=always").await?;
        let base = Instant::now();
        let samples: Arc<Mutex<Vec<Duration>>> = Arc::default();
        let sink = samples.clone();
        let trigger = stream.on_event("bench", move |record| {
            let sink = sink.clone();
            async move {
                let sent: u64 = record
                    .event
                    .headers
                    .get("t")
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(0);
                let latency = base.elapsed().saturating_sub(Duration::from_nanos(sent));
                sink.lock().map_err(|_| "poisoned")?.push(latency);
                Ok::<(), &'static str>(())
            }
        });
        let budget = self.budget();
        let writer = stream.clone();
        let producer = async move {
            let deadline = Instant::now() + budget;
            while Instant::now() < deadline {
                let t = base.elapsed().as_nanos().to_string();
                if writer
                    .send(Event::new("ping").with_header("t", t))
                    .await
                    .is_err()
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        trigger.run_until(producer).await?;
        let samples =
            std::mem::take(&mut *samples.lock().map_err(|_| anyhow::anyhow!("poisoned"))?);
        let n = samples.len();
        let (p50, p99) = percentiles(samples);
        self.record(
            "send -> on_event delivery",
            json!({ "events": n, "p50_us": p50, "p99_us": p99 }),
        );
        Ok(())
    }
}

fn summary(v: &Value) -> String {
    let mut parts = Vec::new();
    for (key, label) in [
        ("events_per_sec", "events/s"),
        ("ops_per_sec", "ops/s"),
        ("mb_per_sec", "MB/s"),
        ("p50_us", "p50 us"),
        ("p99_us", "p99 us"),
        ("ratio", "ratio"),
    ] {
        if let Some(x) = v.get(key).and_then(Value::as_f64) {
            parts.push(if key == "ratio" {
                format!("{label} {x:.2}")
            } else {
                format!("{label} {x:.0}")
            });
        }
    }
    parts.join("  ")
}

fn check(b: &mut Bench, name: &str, ratio: f64, target: f64) {
    let pass = ratio >= target;
    b.record(
        name,
        json!({ "ratio": ratio, "target": target, "pass": pass }),
    );
}

pub(crate) async fn run(dir: Option<PathBuf>, out: Option<PathBuf>, seconds: f64) -> Result<()> {
    let tmp;
    let dir = match dir {
        Some(d) => {
            std::fs::create_dir_all(&d)?;
            d
        }
        None => {
            tmp = tempfile::Builder::new()
                .prefix(".cloudstream-bench-")
                .tempdir_in(".")?;
            tmp.path().to_path_buf()
        }
    };
    let mut b = Bench {
        dir: dir.clone(),
        seconds: seconds.max(0.05),
        results: Vec::new(),
        streams: 0,
    };
    println!(
        "cloudstream bench in {} ({:.1} s per measurement, sync=always)",
        dir.display(),
        b.seconds
    );
    // Raw is measured before and after the engine, and the engine is compared with the
    // better of the two, so a slow disk moment cannot flatter the engine.
    let raw_before = b.raw(1000 * 1024)?;
    let (_, _, one) = b.batches(1024, 1000, 1).await?;
    let (_, _, four) = b.batches(1024, 1000, 4).await?;
    let raw_1k = raw_before.max(b.raw(1000 * 1024)?);
    check(
        &mut b,
        "1 KiB x 1000, 1 writer / raw fdatasync",
        one / raw_1k,
        0.5,
    );
    check(
        &mut b,
        "1 KiB x 1000, 4 writers / raw fdatasync",
        four / raw_1k,
        0.5,
    );
    b.raw(100 * 1024)?;
    let (stream, append, _) = b.batches(100, 1000, 4).await?;
    let read = b.read_back(&stream, 100).await?;
    check(
        &mut b,
        "100 B x 1000 append, events/s / 2,000,000",
        append / 2e6,
        1.0,
    );
    check(
        &mut b,
        "100 B read back, events/s / 2,000,000",
        read / 2e6,
        1.0,
    );
    let single = b.singles(1).await?;
    let eight = b.singles(8).await?;
    check(
        &mut b,
        "single sends, 8 writers / 1 writer",
        eight / single,
        4.0,
    );
    b.delivery().await?;
    let report = json!({ "dir": dir, "seconds_per_measurement": b.seconds, "results": b.results });
    let out = out.unwrap_or_else(|| Path::new("cloudstream-bench.json").to_path_buf());
    std::fs::write(&out, serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("writing {}", out.display()))?;
    println!("results written to {}", out.display());
    Ok(())
}
