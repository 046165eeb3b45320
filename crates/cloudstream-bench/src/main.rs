//! `cloudstream-bench`: the same workloads, in one run, against cloudstream's embedded
//! engine and `cloudstream serve`, and against the engines a user would pick instead, each
//! driven through its own client at its most comparable durability; a Markdown table and
//! JSON of the results (plots are drawn from the JSON by `scripts/bench_plot.py`).
//!
//! Peers run one at a time, each started on its own loopback port with a fresh data
//! directory and stopped after, so they never share the machine with each other.
//! `scripts/bench-peers.sh` installs what is missing, builds this in release mode and runs
//! it; see BENCHMARKS.md for the figures and what each durability setting means.

mod measure;
mod peer;
mod peers;
mod process;
mod report;
mod workloads;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "cloudstream-bench",
    about = "Side by side with the peers: one run, one table"
)]
struct Args {
    /// Where results.json, results.md and the peers' logs go.
    #[arg(long, default_value = "bench-results")]
    out: PathBuf,
    /// Where peers keep their data (fresh per peer); on the disk being measured.
    #[arg(long)]
    data: Option<PathBuf>,
    /// The peers to run, comma-separated (default: all of them; see `--list`).
    #[arg(long, value_delimiter = ',')]
    peers: Vec<String>,
    /// The workloads to run, comma-separated letters (default: a,b,c,d,e).
    #[arg(long, value_delimiter = ',')]
    workloads: Vec<String>,
    /// Short windows and small counts: minutes rather than half an hour.
    #[arg(long)]
    quick: bool,
    /// Shorter still, for a smoke test of the harness: figures mean nothing.
    #[arg(long)]
    smoke: bool,
    /// The `cloudstream` binary that `serve` runs (default: beside this one).
    #[arg(long)]
    cloudstream: Option<PathBuf>,
    /// The project's tools directory, where `scripts/servers.sh` installs tansu and
    /// kinesalite.
    #[arg(long, env = "CLOUDSTREAM_TOOLS")]
    tools: Option<PathBuf>,
    /// The `nats-server` to run (2.10 or later; Debian's 2.9 has no `sync_interval`).
    #[arg(long, env = "NATS_SERVER", default_value = "nats-server")]
    nats_server: PathBuf,
    /// Fail when a peer's server is not installed, rather than leaving its row out.
    #[arg(long)]
    require_all: bool,
    /// List the peers and exit.
    #[arg(long)]
    list: bool,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.list {
        for peer in peers::ALL {
            println!("{:<18} {}", peer.name, peer.about);
        }
        return Ok(());
    }
    let settings = workloads::Settings::new(args.quick, args.smoke, &args.workloads)?;
    let chosen = peers::chosen(&args.peers)?;
    // Absolute: servers run in their own data directories.
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let out = std::path::absolute(&args.out)?;
    let data = std::path::absolute(args.data.clone().unwrap_or_else(|| out.join("data")))?;
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let tools = peers::Tools {
        dir: args
            .tools
            .clone()
            .unwrap_or_else(|| home.join(".cache/cloudstream/tools")),
        cloudstream: match &args.cloudstream {
            Some(path) => std::path::absolute(path)?,
            None => std::env::current_exe()?.with_file_name("cloudstream"),
        },
        nats_server: args.nats_server.clone(),
        logs: out.join("logs"),
    };
    std::fs::create_dir_all(&tools.logs)?;
    std::fs::create_dir_all(&data)?;
    measure::watch_disk(&data);
    let mut report = report::Report::new(&settings);
    for kind in chosen {
        println!("== {}", kind.name);
        // Ctrl-C stops the run between calls; the servers go with their handles.
        let outcome = tokio::select! {
            outcome = run_peer(kind, &data, &tools, &settings, &mut report) => Some(outcome),
            _ = tokio::signal::ctrl_c() => None,
        };
        let Some(outcome) = outcome else {
            report.write(&out)?;
            anyhow::bail!("interrupted while running {}", kind.name);
        };
        if let Err(e) = outcome {
            if args.require_all {
                report.write(&out)?;
                return Err(e.context(format!("running {}", kind.name)));
            }
            println!("   failed: {e:#}");
            report.skipped(kind.name, &format!("{e:#}"));
        }
        // Written after each peer: a run stopped half way keeps what it measured.
        report.write(&out)?;
    }
    println!("results in {}", out.display());
    Ok(())
}

/// Starts one peer in a fresh directory below `data`, runs the workloads on it, stops it
/// and removes its data.
async fn run_peer(
    kind: &peers::Kind,
    data: &std::path::Path,
    tools: &peers::Tools,
    settings: &workloads::Settings,
    report: &mut report::Report,
) -> Result<()> {
    let dir = data.join(kind.name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let peer = (kind.start)(&dir, tools).await?;
    let outcome = workloads::run_all(peer.as_ref(), settings, report).await;
    let stopped = peer.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    outcome?;
    stopped
}
