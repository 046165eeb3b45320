//! `cloudstream serve`: the REST endpoint over the provider of `--url`, and `cloudstream
//! token`, which makes the bearer tokens it can require.

use anyhow::{bail, Context, Result};
use std::path::Path;

use cloudstream::url::parse_url;
use cloudstream::Client;
use cloudstream_server::{Config, Limits, ServeOptions, Server, Tokens, WebhookPolicy};

use crate::args::ServeArgs;

pub(crate) async fn run(client: Client, url: &str, args: ServeArgs) -> Result<()> {
    let state_dir = args.state_dir.or_else(|| match parse_url(url) {
        // Beside the engine's own directories, so nothing lands outside the data directory.
        Ok(url) if url.scheme() == "local" => Some(Path::new(url.location()).join("server")),
        _ => None,
    });
    if state_dir.is_none() {
        eprintln!("note: webhook and delivery registrations are kept in memory; give --state-dir to keep them across restarts");
    }
    let tokens = match &args.tokens {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read tokens file {}", path.display()))?;
            let tokens = Tokens::parse(&text)
                .map_err(|e| anyhow::anyhow!("tokens file {}: {e}", path.display()))?;
            if tokens.is_empty() {
                bail!("tokens file {} holds no token", path.display());
            }
            Some(tokens)
        }
    };
    if tokens.is_none() && !args.listen.ip().is_loopback() {
        eprintln!(
            "warning: serving {} without --tokens: anyone who reaches it can write, read, delete \
             streams and register webhooks (which post from inside this network; see \
             --webhook-allow)",
            args.listen
        );
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            Some(cloudstream_server::tls_config(cert, key).map_err(anyhow::Error::msg)?)
        }
        _ => None,
    };
    let config = Config {
        limits: Limits {
            max_body_bytes: args.max_body_bytes,
            max_batch_events: args.max_batch_events,
            request_timeout: args.request_timeout,
            max_in_flight: args.max_in_flight,
            ..Limits::default()
        },
        state_dir,
        tokens,
        webhooks: match &args.webhook_allow {
            Some(list) => WebhookPolicy::allow_only(list).map_err(anyhow::Error::msg)?,
            None => WebhookPolicy::default(),
        },
        deliver_root: match &args.deliver_root {
            // Made if missing and resolved (links, `..`), so that the check of a sink's
            // path below it means what it says.
            Some(root) => Some(
                std::fs::create_dir_all(root)
                    .and_then(|()| root.canonicalize())
                    .with_context(|| format!("--deliver-root {}", root.display()))?,
            ),
            None => None,
        },
    };
    // A pipeline runs beside the server, on the same provider; its aggregations keep their
    // state beside the server's registrations unless the file says where.
    let pipeline = match &args.pipeline {
        None => None,
        Some(path) => {
            let mut pipeline = crate::pipeline::load(path)?;
            if pipeline.state.is_none() {
                pipeline.state = config
                    .state_dir
                    .as_ref()
                    .map(|dir| cloudstream::deliver::local_sink(&dir.join("pipeline")))
                    .transpose()?;
            }
            pipeline.check()?;
            Some(pipeline)
        }
    };
    cloudstream_server::raise_descriptor_limit();
    let backend = client.backend().name();
    let server = Server::open(client.clone(), config).await?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    eprintln!(
        "serving {backend} on {scheme}://{} (Ctrl-C to stop)",
        listener.local_addr()?
    );
    let options = ServeOptions {
        tls,
        header_timeout: Some(args.header_timeout),
        max_connections: args.max_connections,
    };
    // The pipeline stops with the server; a pipeline that fails for good stops the server
    // too (with its error), rather than leaving it up and healthy without it.
    let (stop_pipeline, pipeline_stopped) = tokio::sync::oneshot::channel::<()>();
    let (pipeline_failed, failed) = tokio::sync::oneshot::channel::<anyhow::Error>();
    let pipeline = pipeline.map(|pipeline| {
        tokio::spawn(async move {
            let until = async {
                let _ = pipeline_stopped.await;
            };
            if let Err(e) = pipeline.run_until(&client, until).await {
                let _ = pipeline_failed.send(anyhow::Error::new(e).context("the pipeline failed"));
            }
        })
    });
    let (fail, failure) = tokio::sync::oneshot::channel::<anyhow::Error>();
    let until = async move {
        tokio::select! {
            () = stopped() => {}
            Ok(e) = failed => {
                let _ = fail.send(e);
            }
        }
    };
    let served = cloudstream_server::serve_with(listener, server.router(), options, until).await;
    let _ = stop_pipeline.send(());
    if let Some(pipeline) = pipeline {
        let _ = pipeline.await;
    }
    server.shutdown().await;
    served?;
    match failure.await {
        Ok(e) => Err(e),
        Err(_) => Ok(()),
    }
}

/// Completes on Ctrl-C or SIGTERM.
pub(crate) async fn stopped() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Prints a new random token and its tokens-file line.
pub(crate) fn token(scope: &str, streams: &str) -> Result<()> {
    if !matches!(scope, "read" | "write" | "admin") {
        bail!("--scope must be read, write or admin, not {scope:?}");
    }
    let bytes: [u8; 32] = rand::random();
    let token: String = std::iter::once("cst_".to_owned())
        .chain(bytes.iter().map(|b| format!("{b:02x}")))
        .collect();
    let line = format!(
        "{} {scope} {streams}",
        cloudstream_server::token_hash(&token)
    );
    Tokens::parse(&line).map_err(anyhow::Error::msg)?;
    println!("token: {token}");
    println!("tokens file line: {line}");
    Ok(())
}
