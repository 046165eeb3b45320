//! What each subcommand does.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use cloudstream::{Client, Event, ReadFrom};
use futures::StreamExt;
use serde_json::json;
use tokio::io::AsyncBufReadExt;

use crate::args::{Cli, Command, ReadMax};
use cloudstream::wire::parse_from;

use crate::output::{emit, print_record};

pub(crate) async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Bench { dir, out, seconds } => return crate::bench::run(dir, out, seconds).await,
        Command::Token { scope, streams } => return crate::serve::token(&scope, &streams),
        _ => {}
    }
    let client = cloudstream::open(&cli.url)
        .await
        .with_context(|| format!("cannot open {}", cli.url))?;
    let json = cli.json;
    match cli.command {
        Command::Create {
            name,
            horizon,
            partitions,
            if_missing,
        } => {
            let builder = client.stream(&name).horizon(horizon).partitions(partitions);
            let stream = if if_missing {
                builder.create_if_missing().await?
            } else {
                builder.create().await?
            };
            describe(&client, stream.name(), json).await
        }
        Command::List => {
            let names = client.list_streams().await?;
            if json {
                emit(format_args!("{}", json!(names)))?;
            } else {
                for n in &names {
                    emit(n)?;
                }
            }
            Ok(())
        }
        Command::Describe { name } => describe(&client, &name, json).await,
        Command::Deliver {
            name,
            to,
            consumer,
            format,
            compression,
            max_bytes,
            max_wait,
        } => {
            let stream = client.stream(&name).open().await?;
            let report = stream
                .deliver_to(&to)
                .consumer(&consumer)
                .format(format.parse()?)
                .compression(compression.parse()?)
                .max_bytes(max_bytes)
                .max_wait(max_wait)
                .run_until(crate::serve::stopped())
                .await?;
            if json {
                let (handled, failed) = (report.handled, report.failed_attempts);
                emit(format_args!(
                    "{}",
                    json!({ "handled": handled, "failed_attempts": failed })
                ))?;
            } else {
                emit(format_args!("handled {} records", report.handled))?;
            }
            Ok(())
        }
        Command::Delete { name } => {
            client.delete_stream(&name).await?;
            if !json {
                emit(format_args!("deleted {name}"))?;
            }
            Ok(())
        }
        Command::Send {
            name,
            data,
            key,
            key_field,
            time_field,
            headers,
            batch,
        } => {
            let stream = client.stream(&name).open().await?;
            let template = |payload: String, key: Option<String>| {
                let mut e = Event::new(payload);
                e.key = key;
                e.headers.extend(headers.iter().cloned());
                e
            };
            match data {
                Some(data) => {
                    let receipt = stream.send(template(data, key)).await?;
                    if json {
                        emit(format_args!("{}", json!({ "position": receipt })))?;
                    } else {
                        emit(format_args!("{receipt}"))?;
                    }
                    Ok(())
                }
                None => {
                    send_stdin(&stream, batch.max(1), |line| {
                        let fields = (key_field.is_some() || time_field.is_some())
                            .then(|| serde_json::from_str::<serde_json::Value>(&line).ok())
                            .flatten();
                        let field = |name: &Option<String>| {
                            fields
                                .as_ref()
                                .zip(name.as_ref())
                                .and_then(|(v, n)| v.get(n))
                        };
                        let key = match &key_field {
                            Some(_) => field(&key_field).and_then(key_of),
                            None => key.clone(),
                        };
                        let time = match (&time_field, &fields) {
                            (None, _) => None,
                            (Some(name), None) => {
                                bail!("not a JSON object, so it has no {name} field")
                            }
                            (Some(name), Some(_)) => {
                                field(&time_field).map(|v| time_of(name, v)).transpose()?
                            }
                        };
                        let mut event = template(line, key);
                        event.time = time;
                        Ok(event)
                    })
                    .await
                }
            }
        }
        Command::Read {
            name,
            from,
            partition,
            max,
        } => {
            let stream = client.stream(&name).open().await?;
            let mut from = parse_from(&from)?;
            let partition = from.partition().unwrap_or(partition);
            let mut left = match max {
                ReadMax::Records(n) => n,
                ReadMax::All => usize::MAX,
            };
            // Page by page, so `--max all` reads a partition of any size.
            while left > 0 {
                let page = stream
                    .read_partition(partition, from, left.min(1000))
                    .await?;
                let Some(last) = page.last().map(|r| r.position) else {
                    return Ok(());
                };
                for r in &page {
                    print_record(r, json)?;
                }
                left -= page.len();
                from = ReadFrom::After(last);
            }
            if !stream.read_partition(partition, from, 1).await?.is_empty() {
                eprintln!(
                    "note: more records follow; read on with --from {from}, or use --max all"
                );
            }
            Ok(())
        }
        Command::Tail { name, from } => {
            let stream = client.stream(&name).open().await?;
            let mut records = stream.tail(parse_from(&from)?).await?;
            loop {
                tokio::select! {
                    next = records.next() => match next {
                        Some(r) => print_record(&r?, json)?,
                        None => return Ok(()),
                    },
                    _ = tokio::signal::ctrl_c() => return Ok(()),
                }
            }
        }
        Command::Consume {
            name,
            consumer,
            max,
            once,
            follow,
        } => {
            let stream = client.stream(&name).open().await?;
            let mut reader = stream.consumer(&consumer).max_records(max);
            if follow {
                reader = reader.wait(Duration::from_secs(1));
            }
            loop {
                let batch = tokio::select! {
                    b = reader.fetch() => b?,
                    _ = tokio::signal::ctrl_c() => break,
                };
                for gap in &batch.gaps {
                    eprintln!("warning: partition {} skipped records {}..{}: they expired before this consumer read them", gap.partition, gap.from, gap.resumed_at);
                }
                for r in &batch.records {
                    print_record(r, json)?;
                }
                if once || (batch.is_empty() && !follow) {
                    break;
                }
            }
            reader.commit().await?;
            Ok(())
        }
        Command::Aggregate(args) => {
            crate::pipeline::run(&client, crate::pipeline::from_args(args)?, false, json).await
        }
        Command::Pipeline { file, check } => {
            crate::pipeline::run(&client, crate::pipeline::load(&file)?, check, json).await
        }
        Command::Serve(args) => crate::serve::run(client, &cli.url, args).await,
        Command::Bench { .. } | Command::Token { .. } => unreachable!("handled above"),
    }
}

/// A JSON field's value as a partition key: a string as it is, other values as JSON.
fn key_of(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// A JSON field's value as an event time: RFC 3339 text in UTC (as the REST API takes
/// it), or whole milliseconds since 1970.
fn time_of(field: &str, value: &serde_json::Value) -> Result<std::time::SystemTime> {
    match value {
        serde_json::Value::String(s) => Ok(cloudstream::wire::parse_time(field, s)?),
        serde_json::Value::Number(n) => n
            .as_u64()
            .map(|ms| std::time::UNIX_EPOCH + Duration::from_millis(ms))
            .with_context(|| format!("{field} {n} is not whole milliseconds since 1970")),
        other => bail!("{field} {other} is neither RFC 3339 text nor milliseconds since 1970"),
    }
}

/// How long `send` waits for more stdin lines before sending a partial batch.
const LINGER: Duration = Duration::from_millis(200);

async fn send_stdin(
    stream: &cloudstream::Stream,
    batch_size: usize,
    make: impl Fn(String) -> Result<Event>,
) -> Result<()> {
    let progress = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {pos} events sent ({per_sec}) {elapsed}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        bar
    });
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let (mut sent, mut failed, mut line_no) = (0u64, 0u64, 0u64);
    let mut batch = Vec::with_capacity(batch_size);
    let mut done = false;
    while !done {
        // A line, or after a quiet moment a flush, so a slow producer's events are not held
        // back waiting for a full batch (`tail -f log | cloudstream send s`).
        let mut quiet = false;
        match tokio::time::timeout(LINGER, lines.next_line()).await {
            Ok(Ok(Some(line))) => {
                line_no += 1;
                if !line.trim().is_empty() {
                    batch.push((
                        line_no,
                        make(line).with_context(|| format!("line {line_no}"))?,
                    ));
                }
            }
            Ok(Ok(None)) => done = true,
            Ok(Err(e)) => return Err(e).context("reading stdin"),
            Err(_) => quiet = true,
        }
        if !batch.is_empty() && (quiet || done || batch.len() >= batch_size) {
            let (numbers, events): (Vec<u64>, Vec<Event>) =
                std::mem::take(&mut batch).into_iter().unzip();
            for (n, result) in numbers.into_iter().zip(stream.send_batch(events).await) {
                match result {
                    Ok(_) => sent += 1,
                    Err(e) => {
                        failed += 1;
                        eprintln!("line {n}: {e}");
                    }
                }
            }
            if let Some(bar) = &progress {
                bar.set_position(sent);
            }
        }
    }
    if let Some(bar) = progress {
        bar.finish();
    }
    eprintln!("sent {sent} events, {failed} failed");
    if failed > 0 {
        bail!("{failed} events were not sent");
    }
    Ok(())
}

async fn describe(client: &Client, name: &str, json: bool) -> Result<()> {
    let info = client.stream(name).open().await?.describe().await?;
    let consumers = client.backend().list_consumers(name).await?;
    if json {
        emit(format_args!(
            "{}",
            json!({ "stream": info, "consumers": consumers })
        ))?;
        return Ok(());
    }
    emit(format_args!("stream      {}", info.name))?;
    emit(format_args!("resource    {}", info.resource))?;
    emit(format_args!(
        "horizon     {}",
        humantime::format_duration(info.horizon())
    ))?;
    emit(format_args!("records     {}", or_dash(info.records())))?;
    for (name, value) in &info.details {
        emit(format_args!("{name:<11} {value}"))?;
    }
    emit(format_args!(
        "partition   id                      earliest        next            bytes"
    ))?;
    for p in &info.partitions {
        emit(format_args!(
            "{:<11} {:<23} {:<15} {:<15} {}",
            p.partition,
            p.id,
            or_dash(p.earliest),
            or_dash(p.next),
            or_dash(p.bytes)
        ))?;
    }
    if !consumers.is_empty() {
        emit(format_args!("consumer                          lag"))?;
        for c in consumers {
            emit(format_args!("{:<33} {}", c.name, or_dash(c.lag)))?;
        }
    }
    Ok(())
}

/// A value, or `-` where the provider does not tell.
fn or_dash<T: std::fmt::Display>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}
