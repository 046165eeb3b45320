//! `cloudstream`: the command line of cloudstream. Create, list, describe and delete streams,
//! send events (one, or NDJSON from stdin), read, tail and consume them, and benchmark the
//! embedded engine, against any provider URL.

mod args;
mod bench;
mod commands;
mod output;
mod pipeline;
mod serve;

use clap::Parser;

/// mimalloc rather than the system allocator: the server's request path allocates small,
/// short-lived buffers on every request, where it spends less CPU (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CLOUDSTREAM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = args::Cli::parse();
    if let Err(err) = commands::run(cli).await {
        let closed_pipe = err
            .chain()
            .filter_map(|e| e.downcast_ref::<std::io::Error>())
            .any(|e| e.kind() == std::io::ErrorKind::BrokenPipe);
        if closed_pipe {
            return; // the reader went away (`... | head`): not an error
        }
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}
