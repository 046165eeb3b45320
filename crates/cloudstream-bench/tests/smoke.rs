//! The harness runs end to end on the peers every CI machine has (the raw disk, the
//! embedded engine, `cloudstream serve`, and Redis from `scripts/servers.sh install`), with
//! windows too short for the figures to mean anything: what is checked is that every
//! workload runs, every row is there, and what was acknowledged was read back.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

#[test]
fn every_workload_runs_on_the_peers_ci_has() {
    let harness = PathBuf::from(env!("CARGO_BIN_EXE_cloudstream-bench"));
    let cloudstream = harness.with_file_name("cloudstream");
    assert!(
        cloudstream.exists(),
        "{} is not built (cargo build -p cloudstream-cli)",
        cloudstream.display()
    );
    let out = tempfile::tempdir().expect("tempdir");
    let status = Command::new(&harness)
        .args([
            "--smoke",
            "--require-all",
            "--peers",
            "raw-disk,cloudstream,cloudstream-serve,redis-always",
            "--out",
        ])
        .arg(out.path())
        .arg("--cloudstream")
        .arg(&cloudstream)
        .status()
        .expect("run the harness");
    assert!(status.success(), "the harness failed: {status}");
    let results: Value = serde_json::from_slice(
        &std::fs::read(out.path().join("results.json")).expect("results.json"),
    )
    .expect("results.json is JSON");
    let rows = results["rows"].as_array().expect("rows");
    let has = |peer: &str, workload: &str| {
        rows.iter().any(|r| {
            r["peer"] == peer && r["workload"] == workload && r["events"].as_u64().unwrap_or(0) > 0
        })
    };
    for peer in ["cloudstream", "cloudstream-serve", "redis-always"] {
        for workload in ["a", "b", "c", "d", "e"] {
            assert!(
                has(peer, workload),
                "no row of ({workload}) with events for {peer}: {rows:#?}"
            );
        }
    }
    for workload in ["a", "b", "c", "e"] {
        assert!(
            has("raw-disk", workload),
            "no row of ({workload}) for the raw disk"
        );
    }
    let table = std::fs::read_to_string(out.path().join("results.md")).expect("results.md");
    assert!(
        table.contains("| c | 8 writers | redis-always |"),
        "{table}"
    );
}
