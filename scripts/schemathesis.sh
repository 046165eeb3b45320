#!/usr/bin/env bash
# Fuzzes `cloudstream serve` against its own OpenAPI document (/v1/openapi.json) with
# schemathesis and every check it has: the document must be exactly as strict as the
# server (a request the document allows is accepted, one it forbids is refused, every
# answer matches its schema) and no request may get a 5xx.
#
#   scripts/schemathesis.sh PATH/TO/cloudstream      (CI: "$CARGO_TARGET_DIR/debug/cloudstream")
#
# Two passes, each against a fresh server (`--url local://` in a fresh temporary directory,
# an empty working directory, TMPDIR an empty directory):
#   1. open: no --tokens;
#   2. tokens: --tokens with one admin token, given to schemathesis as a bearer token, so
#      the document's security scheme is exercised (and ignored_auth checks that a request
#      without it is refused).
# After each pass the server must still answer /healthz, must not have created anything
# outside its data directory (nor hold a file open outside it), and must stop cleanly on
# SIGTERM. The last line counts operations, test cases, failures and 5xx answers; the exit
# status is non-zero on any failure, error or 5xx.
#
# Isolation: a webhook registration makes the server POST to whatever URL schemathesis
# generated. So, where it can (as root, as CI runs), the script runs the servers and
# schemathesis in a network namespace of their own, where only loopback exists, and with a
# private, empty /tmp, so that "nothing outside the data directory" covers /tmp too.
# Without namespaces it excludes webhook registration (see below) and says so.
#
# schemathesis is installed from PyPI, pinned, into a venv outside the clone:
# ${CLOUDSTREAM_CACHE:-~/.cache/cloudstream}/venv-schemathesis (reused when the version
# matches). Knobs: SCHEMATHESIS_MAX_EXAMPLES (default 100 per operation and phase),
# SCHEMATHESIS_SEED, CLOUDSTREAM_SCHEMATHESIS_REPORTS=DIR (copy the JSON, HAR and JUnit
# reports there; outside /tmp), CLOUDSTREAM_SCHEMATHESIS_KEEP=1 (keep the scratch directory;
# only meaningful without isolation).
set -euo pipefail

SCHEMATHESIS_VERSION=4.32.5
MAX_EXAMPLES="${SCHEMATHESIS_MAX_EXAMPLES:-100}"
SEED="${SCHEMATHESIS_SEED:-20261129}"
CACHE="${CLOUDSTREAM_CACHE:-$HOME/.cache/cloudstream}"
VENV="$CACHE/venv-schemathesis"
ST="$VENV/bin/schemathesis"
PY="$VENV/bin/python"

if [ $# -ne 1 ]; then
  echo "usage: $0 PATH/TO/cloudstream" >&2
  exit 2
fi

die() {
  echo "schemathesis.sh: $*" >&2
  exit 1
}

if [ -z "${CS_SCHEMATHESIS_STAGE:-}" ]; then
  bin=$(realpath "$1") || die "no such binary: $1"
  [ -f "$bin" ] && [ -x "$bin" ] || die "not an executable file: $bin"

  # 1. schemathesis, pinned, idempotently (the only network use: PyPI, through pip).
  if [ "$("$ST" --version 2>/dev/null || true)" != "schemathesis, version $SCHEMATHESIS_VERSION" ]; then
    echo "== installing schemathesis $SCHEMATHESIS_VERSION (PyPI) into $VENV"
    mkdir -p "$CACHE"
    python3 -m venv --clear "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
    [ "$("$ST" --version)" = "schemathesis, version $SCHEMATHESIS_VERSION" ] ||
      die "schemathesis $SCHEMATHESIS_VERSION did not install"
  fi

  # 2. Isolation: a network namespace (loopback only) and a mount namespace (private /tmp).
  # The venv must stay visible once /tmp is covered.
  case "$(realpath "$VENV")/" in
    /tmp/*) private_tmp=0 ;;
    *) private_tmp=1 ;;
  esac
  if unshare --net --mount true 2>/dev/null && command -v ip >/dev/null; then
    # The binary may live under /tmp, which the private /tmp covers: the inner script runs
    # it through this descriptor (/proc/PID/fd/9 of the inner shell).
    exec 9<"$bin"
    export CS_SCHEMATHESIS_STAGE=isolated CS_SCHEMATHESIS_PRIVATE_TMP=$private_tmp
    export CS_SCHEMATHESIS_BIN_DISPLAY="$bin"
    exec unshare --net --mount --propagation private -- bash "$0" "$bin"
  fi
  echo "!! no network namespace here (not root?): webhook registration is excluded and /tmp is shared" >&2
  export CS_SCHEMATHESIS_STAGE=shared CS_SCHEMATHESIS_PRIVATE_TMP=0
  export CS_SCHEMATHESIS_BIN_DISPLAY="$bin"
fi

excluded=()
if [ "$CS_SCHEMATHESIS_STAGE" = isolated ]; then
  ip link set lo up
  if [ "$CS_SCHEMATHESIS_PRIVATE_TMP" = 1 ]; then
    mount -t tmpfs -o mode=1777,size=4g cloudstream-schemathesis /tmp
  fi
  BIN="/proc/$$/fd/9"
  [ -e "$BIN" ] || die "lost the binary's descriptor"
else
  BIN=$(realpath "$1")
  # Outside a network namespace a registered webhook would POST to any address schemathesis
  # makes up (the server's default webhook policy allows any host but link-local ones): no
  # traffic may leave this machine, so webhook registration (operationId `register`, PUT /v1/streams/{name}/webhooks/{id}) is
  # not tested here.
  excluded=(--exclude-operation-id register)
fi

if [ "$CS_SCHEMATHESIS_PRIVATE_TMP" = 1 ]; then
  TMP=$(mktemp -d /tmp/cloudstream-schemathesis.XXXXXX)
else
  TMP=$(mktemp -d "${TMPDIR:-/tmp}/cloudstream-schemathesis.XXXXXX")
fi
server_pid=""
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -KILL "$server_pid" 2>/dev/null || true
  fi
  if [ "${CLOUDSTREAM_SCHEMATHESIS_KEEP:-0}" = 1 ]; then
    echo "== kept $TMP"
  else
    rm -rf "$TMP"
  fi
}
trap cleanup EXIT
# What /tmp held before any server ran (with a private /tmp: only $TMP).
ls -A /tmp | sort >"$TMP/tmp-before"

problems=0
problem() {
  echo "!! $*" >&2
  problems=$((problems + 1))
}

# start_server DIR [--tokens FILE]: serve from an empty working directory DIR/wd with data
# in DIR/data and TMPDIR DIR/tmp; sets server_pid and base_url, or fails the run.
start_server() {
  local dir=$1
  shift
  mkdir -p "$dir/data" "$dir/wd" "$dir/tmp"
  # --request-timeout 10s: a read or fetch with a large wait_ms long-polls for at most half
  # the request deadline less a second (29.5 s by default, 4.5 s here), which keeps the run
  # within minutes; 10 s still leaves room for the slowest request schemathesis makes
  # (creating a stream of 1,024 partitions: 1-5 s for a debug build on a busy machine).
  (cd "$dir/wd" && TMPDIR="$dir/tmp" exec "$BIN" serve --url "local://$dir/data" \
    --listen 127.0.0.1:0 --request-timeout 10s "$@" 9<&-) >"$dir/server.log" 2>&1 &
  server_pid=$!
  local port=""
  for _ in $(seq 1 600); do
    if ! kill -0 "$server_pid" 2>/dev/null; then
      cat "$dir/server.log" >&2
      die "the server exited before answering"
    fi
    port=$(sed -n 's|^serving .* on http://127\.0\.0\.1:\([0-9][0-9]*\) .*|\1|p' "$dir/server.log" | head -1)
    if [ -n "$port" ] && curl -sf -o /dev/null --max-time 1 "http://127.0.0.1:$port/healthz"; then
      base_url="http://127.0.0.1:$port"
      echo "== server up at $base_url (pid $server_pid)"
      return 0
    fi
    sleep 0.1
  done
  cat "$dir/server.log" >&2
  die "the server did not answer /healthz within 60 s"
}

# check_files DIR: the server wrote only under DIR/data (the working directory, its TMPDIR
# and, with a private /tmp, /tmp itself are as they were).
check_files() {
  local dir=$1 extra
  extra=$(find "$dir/wd" "$dir/tmp" -mindepth 1 2>/dev/null | head -20)
  [ -z "$extra" ] || problem "the server created files outside its data directory:"$'\n'"$extra"
  extra=$(find "$dir" -mindepth 1 -maxdepth 1 \
    ! -name data ! -name wd ! -name tmp ! -name server.log ! -name st | head -20)
  [ -z "$extra" ] || problem "new files next to the data directory:"$'\n'"$extra"
  if [ "$CS_SCHEMATHESIS_PRIVATE_TMP" = 1 ]; then
    extra=$(comm -13 "$TMP/tmp-before" <(ls -A /tmp | sort))
    [ -z "$extra" ] || problem "new files in /tmp:"$'\n'"$extra"
  fi
}

# check_open_files DIR: every regular file the server holds open is under DIR/data.
check_open_files() {
  local dir=$1 fd target
  for fd in /proc/"$server_pid"/fd/*; do
    target=$(readlink "$fd" 2>/dev/null) || continue
    case "$target" in
      "$dir"/data/* | /dev/* | socket:* | pipe:* | anon_inode:* | "$dir/server.log") ;;
      *) problem "the server holds $target open" ;;
    esac
  done
}

# stop_server DIR: alive and answering, then a clean exit on SIGTERM.
stop_server() {
  local dir=$1 status=0
  if ! kill -0 "$server_pid" 2>/dev/null; then
    problem "the server died during the run; its log:"
    tail -50 "$dir/server.log" >&2
    server_pid=""
    return
  fi
  curl -sf -o /dev/null --max-time 5 "$base_url/healthz" ||
    problem "the server is alive but no longer answers /healthz"
  check_open_files "$dir"
  kill -TERM "$server_pid"
  for _ in $(seq 1 150); do
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$server_pid" 2>/dev/null; then
    problem "the server did not stop within 15 s of SIGTERM"
    kill -KILL "$server_pid" 2>/dev/null || true
  fi
  wait "$server_pid" || status=$?
  server_pid=""
  [ "$status" = 0 ] || problem "the server exited with status $status on SIGTERM; its log:"$'\n'"$(tail -20 "$dir/server.log")"
}

# run_pass NAME [schemathesis options...]: a fresh server (server options come from
# $server_args), schemathesis against its document, then the checks.
run_pass() {
  local name=$1 dir="$TMP/$1" rc=0
  shift
  echo "== pass $name"
  start_server "$dir" ${server_args[@]+"${server_args[@]}"}
  mkdir -p "$dir/st/tmp"
  # schemathesis runs in a directory of its own (it writes .hypothesis/ and reports there).
  # --request-timeout 15: above the server's own deadline, so a slow request is the
  # server's 408 (a finding), not a client-side network error.
  # The config sets max-stream-events = 1: a live tail (GET .../tail of a stream that
  # exists) never ends, and schemathesis reads an event stream until that many events came
  # (the tail's `open` event) or the request timeout passed.
  # --output-sanitize false: the printed curl commands reproduce exactly (the bearer token
  # is a throwaway one of this run, and schemathesis would also hide every "key" field).
  # --continue-on-failure: every distinct failure of an operation, not only its first.
  (cd "$dir/st" && TMPDIR="$dir/st/tmp" "$ST" --config-file "$TMP/schemathesis.toml" \
    run "$base_url/v1/openapi.json" \
    --checks all \
    --max-examples "$MAX_EXAMPLES" \
    --seed "$SEED" \
    --continue-on-failure \
    --workers 1 \
    --request-timeout 15 \
    --generation-database none \
    --output-sanitize false \
    --no-color \
    --report json,har,junit --report-dir "$dir/st/report" \
    ${excluded[@]+"${excluded[@]}"} "$@" 9<&-) || rc=$?
  echo "== schemathesis exited with $rc"
  [ "$rc" = 0 ] || problem "schemathesis failed in pass $name (exit $rc)"
  stop_server "$dir"
  check_files "$dir"
  if [ -n "${CLOUDSTREAM_SCHEMATHESIS_REPORTS:-}" ]; then
    mkdir -p "$CLOUDSTREAM_SCHEMATHESIS_REPORTS/$name"
    cp "$dir"/st/report/* "$CLOUDSTREAM_SCHEMATHESIS_REPORTS/$name/"
  fi
}

# A well-formed request may still be refused for what the server holds or its provider
# allows, with a status that says so rather than 400: 404 (no such stream, partition,
# webhook), 409 (exists, no longer outstanding), 416 (a position past the end), 422 (a
# horizon outside the provider's range, a dead-letter stream that is the webhook's own,
# a position in another partition than partition= names). 403: a webhook host the
# server's policy refuses.
cat >"$TMP/schemathesis.toml" <<'TOML'
max-stream-events = 1

[checks.positive_data_acceptance]
expected-statuses = ["2XX", "401", "403", "404", "409", "416", "422", "429"]
TOML
started=$(date +%s)
echo "== schemathesis $SCHEMATHESIS_VERSION against $CS_SCHEMATHESIS_BIN_DISPLAY (seed $SEED, max $MAX_EXAMPLES examples, isolation: $CS_SCHEMATHESIS_STAGE)"

server_args=()
run_pass open

# An admin token on every stream; `cloudstream token` runs in an empty directory that must
# stay empty.
mkdir -p "$TMP/token/wd"
token_out=$(cd "$TMP/token/wd" && "$BIN" token --scope admin --streams '*' --url memory:// 9<&-)
token=$(sed -n 's/^token: //p' <<<"$token_out")
[ -n "$token" ] || die "cloudstream token printed no token: $token_out"
sed -n 's/^tokens file line: //p' <<<"$token_out" >"$TMP/token/tokens"
rmdir "$TMP/token/wd" || problem "cloudstream token created files in its working directory"
server_args=(--tokens "$TMP/token/tokens")
run_pass tokens -H "Authorization: Bearer $token"

# The failures of both passes, by check and operation, and the totals.
"$PY" - "$TMP" >"$TMP/totals" <<'EOF'
import glob, json, sys
root = sys.argv[1]
operations, cases, failures, errors, server_errors = 0, 0, 0, 0, 0
for name in ("open", "tokens"):
    [path] = glob.glob(f"{root}/{name}/st/report/json-*.json")
    report = json.load(open(path))
    cases += report["test_cases"]["generated"]
    failures += report["test_cases"]["unique_failures"]
    errors += len(report["errors"])
    operations = max(operations, report["operations"]["tested"])
    for failure in report["failures"]:
        print(f"pass {name}: {failure['code']} {failure['title']} ({failure['type']}):", file=sys.stderr)
        for op in failure["operations"]:
            print(f"    {op}", file=sys.stderr)
    for error in report["errors"]:
        print(f"pass {name}: error: {json.dumps(error)[:500]}", file=sys.stderr)
    for har in glob.glob(f"{root}/{name}/st/report/har-*.json"):
        for entry in json.load(open(har))["log"]["entries"]:
            status = entry["response"]["status"]
            if status >= 500:
                server_errors += 1
                req = entry["request"]
                print(f"pass {name}: {status} for {req['method']} {req['url']}", file=sys.stderr)
print(operations, cases, failures, errors, server_errors)
EOF
read -r n_ops n_cases n_failures n_errors n_5xx <"$TMP/totals"
elapsed=$(($(date +%s) - started))
[ "$n_failures" = 0 ] || problem "$n_failures failures"
[ "$n_errors" = 0 ] || problem "$n_errors errors"
[ "$n_5xx" = 0 ] || problem "$n_5xx answers were 5xx"
if [ "$problems" != 0 ]; then
  echo "== FAILED ($problems problems) in ${elapsed}s"
fi
echo "schemathesis: $n_ops operations, $n_cases test cases, $n_failures failures, $n_5xx server errors, $n_errors errors (2 passes, ${elapsed}s)"
[ "$problems" = 0 ]
