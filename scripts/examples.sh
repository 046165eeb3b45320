#!/usr/bin/env bash
# Runs the Cloud Stream spec's three examples end to end on one provider:
# TelemetryWriter sends events, telemetry-reader fetches them in checkpointed batches,
# ReadAll's onEvent trigger sees every event. Default provider: the embedded engine in
# ./cloudstream-data. Another provider is one URL away: CLOUDSTREAM_URL=... scripts/examples.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CLOUDSTREAM_URL="${CLOUDSTREAM_URL:-local://./cloudstream-data}"
export READ_ALL_IDLE_SECS="${READ_ALL_IDLE_SECS:-2}"
# Only the backend the URL names is compiled: each cloud backend is a cargo feature named
# like its scheme (local://, memory:// and http:// need none).
scheme="${CLOUDSTREAM_URL%%://*}"
features=()
case "$scheme" in
  local | memory | http | https) ;;
  *) features=(--features "$scheme") ;;
esac
# CLOUDSTREAM_EXAMPLES_PROFILE=debug runs the debug build; CLOUDSTREAM_EXAMPLES_BUILT=1 runs
# examples already built (scripts/test.sh builds them once, with every backend).
profile="${CLOUDSTREAM_EXAMPLES_PROFILE:-release}"
if [ "${CLOUDSTREAM_EXAMPLES_BUILT:-0}" != 1 ]; then
  if [ "$profile" = release ]; then
    cargo build --release --quiet --examples -p cloudstream ${features[@]+"${features[@]}"}
  else
    cargo build --quiet --examples -p cloudstream ${features[@]+"${features[@]}"}
  fi
fi
bin=${CARGO_TARGET_DIR:-target}/$profile/examples
echo "== provider: $CLOUDSTREAM_URL"
"$bin/telemetry_writer" "${1:-200}"
"$bin/telemetry_reader"
"$bin/read_all"
