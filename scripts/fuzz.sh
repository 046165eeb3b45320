#!/usr/bin/env bash
# Fuzzes every decoder of what the engine reads from disk and every parser of what the server
# reads from requests (the targets in fuzz/fuzz_targets, see fuzz/README.md), each for
# FUZZ_SECONDS (default 20: the short run of CI). libFuzzer through cargo-fuzz, on the
# nightly toolchain; cargo-fuzz is installed first if `cargo fuzz` is missing.
#
# The long run, e.g. an hour per target (coverage keeps growing for a long while):
#   FUZZ_SECONDS=3600 bash scripts/fuzz.sh
# One target, or a few: FUZZ_TARGETS="event_bodies start_points" bash scripts/fuzz.sh
#
# Each target starts from the seeds committed in fuzz/corpus/TARGET and adds what it finds to
# a working corpus outside the clone, kept between runs:
# ${CLOUDSTREAM_CACHE:-~/.cache/cloudstream}/fuzz-corpus/TARGET. The build goes to
# ${CARGO_TARGET_DIR:-~/.cache/cloudstream/target}/fuzz (sanitizer flags: not shared with the
# normal build). A crash, a hang (FUZZ_TIMEOUT, default 10 s per input) or an input using
# more than FUZZ_RSS_MB (default 1024) of memory fails the run; the input that did it is in
# fuzz/artifacts/TARGET/ and replays with `cargo +nightly fuzz run TARGET FILE`. Other knobs:
# FUZZ_SANITIZER (address, the default with nightly, or none), FUZZ_FLAGS (more libFuzzer
# flags).
# The last line: "fuzz: T targets, N runs, C crashes".
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_EACH="${FUZZ_SECONDS:-20}"
TIMEOUT="${FUZZ_TIMEOUT:-10}"
RSS_MB="${FUZZ_RSS_MB:-1024}"
SANITIZER="${FUZZ_SANITIZER:-address}"
CACHE="${CLOUDSTREAM_CACHE:-$HOME/.cache/cloudstream}"
TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cloudstream/target}/fuzz"
WORK="$CACHE/fuzz-corpus"
LOGS="$CACHE/fuzz-logs"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

# cargo-fuzz wants nightly rustc flags. With a nightly toolchain installed it is used (and
# can add AddressSanitizer); a machine with only its stable toolchain builds the targets
# with RUSTC_BOOTSTRAP=1 and no sanitizer (libFuzzer still finds panics, hangs and memory
# blow-ups, which is what safe Rust can have).
if rustup run nightly rustc --version >/dev/null 2>&1; then
  TOOLCHAIN=(+nightly)
else
  TOOLCHAIN=()
  export RUSTC_BOOTSTRAP=1
  SANITIZER=none
fi
if ! cargo fuzz --help >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

if [ -n "${FUZZ_TARGETS:-}" ]; then
  read -r -a targets <<<"$FUZZ_TARGETS"
else
  targets=()
  for f in fuzz/fuzz_targets/*.rs; do
    targets+=("$(basename "$f" .rs)")
  done
fi

# The largest input worth trying, per target: segments hold several batches, the grammars
# are short.
max_len() {
  case "$1" in
    segment_frames | segment_recovery) echo 65536 ;;
    index_file | event_bodies) echo 16384 ;;
    small_file | webhook_store | wire_bodies) echo 8192 ;;
    request_params) echo 2048 ;;
    start_points) echo 512 ;;
    *) echo 4096 ;;
  esac
}

echo "== cargo fuzz build (every target, sanitizer $SANITIZER)"
cargo ${TOOLCHAIN[@]+"${TOOLCHAIN[@]}"} fuzz build --sanitizer "$SANITIZER" --target-dir "$TARGET_DIR"

mkdir -p "$LOGS"
total_runs=0
crashes=0
for t in "${targets[@]}"; do
  mkdir -p "$WORK/$t"
  log="$LOGS/$t.log"
  echo "== fuzz $t (${SECONDS_EACH}s)"
  rc=0
  # ${FUZZ_FLAGS} unquoted on purpose: several flags.
  # shellcheck disable=SC2086
  cargo ${TOOLCHAIN[@]+"${TOOLCHAIN[@]}"} fuzz run "$t" --sanitizer "$SANITIZER" --target-dir "$TARGET_DIR" \
    "$WORK/$t" "fuzz/corpus/$t" -- \
    -max_total_time="$SECONDS_EACH" -timeout="$TIMEOUT" -rss_limit_mb="$RSS_MB" \
    -max_len="$(max_len "$t")" -print_final_stats=1 ${FUZZ_FLAGS:-} >"$log" 2>&1 || rc=$?
  runs=$({ grep -Eo 'Done [0-9]+ runs' "$log" || true; } | awk '{s += $2} END {print s + 0}')
  if [ "$runs" -eq 0 ]; then
    runs=$({ grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" || true; } |
      awk '{s += $NF} END {print s + 0}')
  fi
  total_runs=$((total_runs + runs))
  if [ "$rc" -ne 0 ]; then
    crashes=$((crashes + 1))
    echo "FAILED: $t (exit $rc) after $runs runs; the end of $log:" >&2
    tail -n 60 "$log" >&2
  else
    cov=$({ grep -Eo 'cov: [0-9]+' "$log" || true; } | tail -n 1)
    echo "   $runs runs${cov:+, $cov}, corpus $(find "$WORK/$t" -type f | wc -l) inputs"
  fi
done

echo "fuzz: ${#targets[@]} targets, $total_runs runs, $crashes crashes"
[ "$crashes" -eq 0 ]
