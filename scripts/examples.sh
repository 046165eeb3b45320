#!/usr/bin/env bash
# Runs the Cloud Stream spec's three examples end to end on one provider:
# TelemetryWriter sends events, telemetry-reader fetches them in checkpointed batches,
# ReadAll's onEvent trigger sees every event. Default provider: the embedded engine in
# ./cloudstream-data. Another provider is one URL away: CLOUDSTREAM_URL=... scripts/examples.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CLOUDSTREAM_URL="${CLOUDSTREAM_URL:-local://./cloudstream-data}"
export READ_ALL_IDLE_SECS="${READ_ALL_IDLE_SECS:-2}"
# CLOUDSTREAM_EXAMPLES_PROFILE=debug reuses the test build instead of a release build.
profile="${CLOUDSTREAM_EXAMPLES_PROFILE:-release}"
if [ "$profile" = release ]; then
  cargo build --release --quiet --examples -p cloudstream
else
  cargo build --quiet --examples -p cloudstream
fi
bin=${CARGO_TARGET_DIR:-target}/$profile/examples
echo "== provider: $CLOUDSTREAM_URL"
"$bin/telemetry_writer" "${1:-200}"
"$bin/telemetry_reader"
"$bin/read_all"
