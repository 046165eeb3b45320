#!/usr/bin/env bash
# The real servers the backend tests run against, on loopback ports:
#   kinesalite (Kinesis, npm)              127.0.0.1:4567
#   moto_server (Kinesis + DynamoDB, PyPI) 127.0.0.1:4566
#   Google's Pub/Sub emulator (gcloud)     127.0.0.1:8085
#   tansu (Kafka protocol, crates.io)      127.0.0.1:9092, SQLite storage under $RUN
#   redis-server (Redis Streams, Debian)   127.0.0.1:6390, appendonly yes, appendfsync always
#   nats-server (JetStream, Debian)        127.0.0.1:4232, file storage under $RUN
#   pulsar-lite (Pulsar protocol, PyPI)    127.0.0.1:6652, RocksDB under $RUN
#   Azurite (Azure Blob, npm)              127.0.0.1:10000, a delivery sink, data under $RUN
# and installs pyarrow (PyPI), the reader the Parquet delivery tests check files with.
#
#   scripts/servers.sh start   install what is missing (idempotently, outside the clone),
#                              start every server, wait until each answers; fails if one
#                              does not come up
#   scripts/servers.sh stop    stop the servers this script started (by PID)
#   scripts/servers.sh urls DIR  print the provider URL of every server started here, one a
#                              line (scratch files under DIR); scripts/test.sh runs the spec's
#                              examples on each
#
# Tools live in $CLOUDSTREAM_TOOLS (default ~/.cache/cloudstream/tools); logs and PIDs in
# $CLOUDSTREAM_RUN (default /tmp/cloudstream-servers).
set -euo pipefail
TOOLS="${CLOUDSTREAM_TOOLS:-$HOME/.cache/cloudstream/tools}"
RUN="${CLOUDSTREAM_RUN:-/tmp/cloudstream-servers}"
mkdir -p "$TOOLS" "$RUN"
# pulsar-lite's broker binary, inside its Python package.
pulsar_lite() { compgen -G "$TOOLS/pulsar/lib/python3*/site-packages/pulsar_lite/bin/pulsar-lite" | head -1; }

install() {
  if [ ! -f "$TOOLS/node_modules/kinesalite/package.json" ]; then
    echo "== installing kinesalite (npm) into $TOOLS"
    [ -f "$TOOLS/package.json" ] || echo '{"private":true}' >"$TOOLS/package.json"
    (cd "$TOOLS" && npm install --no-audit --no-fund --loglevel=error kinesalite@3.3.3)
  fi
  # Azurite: Azure Blob Storage's emulator, a sink of the delivery tests.
  if [ ! -f "$TOOLS/node_modules/azurite/package.json" ]; then
    echo "== installing azurite 3.37.0 (npm) into $TOOLS"
    [ -f "$TOOLS/package.json" ] || echo '{"private":true}' >"$TOOLS/package.json"
    (cd "$TOOLS" && npm install --no-audit --no-fund --loglevel=error azurite@3.37.0)
  fi
  if ! command -v moto_server >/dev/null 2>&1; then
    echo "== installing moto[server] (PyPI)"
    python3 -m pip install --quiet 'moto[server]==5.*'
  fi
  # tansu's SQLite engine: its memory engine counts a batch as one offset in the high
  # watermark (a fetch past the first record of a batch finds nothing).
  if [ ! -x "$TOOLS/tansu/bin/tansu" ]; then
    echo "== building tansu 0.6.0 (crates.io; about 10 minutes on 2 cores, once)"
    cargo install tansu@0.6.0 --locked --quiet --features dynostore,libsql --root "$TOOLS/tansu"
  fi
  for server in redis-server nats-server; do
    if ! command -v "$server" >/dev/null 2>&1; then
      echo "== installing $server (Debian)"
      apt-get install -y -qq "$server" >/dev/null ||
        (apt-get update -qq && apt-get install -y -qq "$server" >/dev/null)
    fi
  done
  # The pulsar crate's build compiles Pulsar's protocol definitions with protoc.
  if ! command -v protoc >/dev/null 2>&1; then
    echo "== installing protoc (Debian protobuf-compiler, for the pulsar crate's build)"
    apt-get install -y -qq protobuf-compiler >/dev/null ||
      (apt-get update -qq && apt-get install -y -qq protobuf-compiler >/dev/null)
  fi
  if [ -z "$(pulsar_lite)" ]; then
    echo "== installing pulsar-lite 0.2.0 (PyPI) into $TOOLS/pulsar"
    python3 -m venv "$TOOLS/pulsar"
    "$TOOLS/pulsar/bin/pip" install --quiet pulsar-lite==0.2.0
  fi
  # pyarrow: the independent reader the Parquet delivery tests read files back with.
  if [ ! -x "$TOOLS/pyarrow/bin/python" ] || ! "$TOOLS/pyarrow/bin/python" -c 'import pyarrow' 2>/dev/null; then
    echo "== installing pyarrow 26 (PyPI) into $TOOLS/pyarrow"
    python3 -m venv "$TOOLS/pyarrow"
    "$TOOLS/pyarrow/bin/pip" install --quiet 'pyarrow==26.*'
  fi
  if ! gcloud beta emulators pubsub env-init >/dev/null 2>&1; then
    echo "== installing the Pub/Sub emulator (Debian package google-cloud-cli-pubsub-emulator)"
    apt-get install -y -qq google-cloud-cli-pubsub-emulator >/dev/null ||
      (apt-get update -qq && apt-get install -y -qq google-cloud-cli-pubsub-emulator >/dev/null)
  fi
}

# wait_up NAME PID PROBE...: until the command PROBE succeeds while the process lives, or
# fail if it died (showing its log) or 60 s passed.
wait_up() {
  local name=$1 pid=$2
  shift 2
  for _ in $(seq 1 600); do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "$name exited before it was up; its log:" >&2
      cat "$RUN/$name.log" >&2
      return 1
    fi
    if "$@" && kill -0 "$pid" 2>/dev/null; then
      echo "== $name is up (pid $pid)"
      return 0
    fi
    sleep 0.1
  done
  echo "$name was not up within 60 s ($*)" >&2
  return 1
}

answers_http() { curl -s -o /dev/null --max-time 1 "$1"; }
accepts_tcp() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_for NAME PID URL: until URL answers HTTP.
wait_for() { wait_up "$1" "$2" answers_http "$3"; }

# wait_tcp NAME PID PORT: until 127.0.0.1:PORT accepts connections.
wait_tcp() { wait_up "$1" "$2" accepts_tcp "$3"; }

start() {
  install
  stop_quietly
  (cd "$TOOLS" && exec node -e "require('kinesalite')({createStreamMs: 20, deleteStreamMs: 20, updateStreamMs: 20, shardLimit: 100000}).listen(4567, '127.0.0.1')") \
    >"$RUN/kinesalite.log" 2>&1 &
  echo $! >"$RUN/kinesalite.pid"
  moto_server -H 127.0.0.1 -p 4566 >"$RUN/moto.log" 2>&1 &
  echo $! >"$RUN/moto.pid"
  rm -rf "$RUN/pubsub-data" && mkdir -p "$RUN/pubsub-data"
  # setsid: the emulator is a gcloud wrapper around a Java server; stop kills the group.
  setsid gcloud beta emulators pubsub start --host-port=127.0.0.1:8085 --project=test-project \
    --data-dir="$RUN/pubsub-data" >"$RUN/pubsub.log" 2>&1 &
  echo $! >"$RUN/pubsub.pid"
  # tansu resolves a sqlite:// path against its working directory.
  rm -rf "$RUN/tansu" && mkdir -p "$RUN/tansu"
  (cd "$RUN/tansu" && exec "$TOOLS/tansu/bin/tansu" broker --listener-url tcp://127.0.0.1:9092 \
    --advertised-listener-url tcp://127.0.0.1:9092 --storage-engine sqlite://tansu.db) \
    >"$RUN/tansu.log" 2>&1 &
  echo $! >"$RUN/tansu.pid"
  # Every write fsynced before it is answered: the durability the README's Redis rows state.
  rm -rf "$RUN/redis" && mkdir -p "$RUN/redis"
  redis-server --bind 127.0.0.1 --port 6390 --dir "$RUN/redis" --save '' --appendonly yes \
    --appendfsync always >"$RUN/redis.log" 2>&1 &
  echo $! >"$RUN/redis.pid"
  rm -rf "$RUN/nats" && mkdir -p "$RUN/nats"
  nats-server -a 127.0.0.1 -p 4232 -js -sd "$RUN/nats" >"$RUN/nats.log" 2>&1 &
  echo $! >"$RUN/nats.pid"
  # pulsar-lite: --db-path is a prefix of its files; metrics off (else it opens 0.0.0.0:8080).
  rm -rf "$RUN/pulsar" && mkdir -p "$RUN/pulsar"
  printf '[metrics]\nenabled = false\n' >"$RUN/pulsar/pulsar-lite.toml"
  "$(pulsar_lite)" --config "$RUN/pulsar/pulsar-lite.toml" --addr 127.0.0.1:6652 \
    --db-path "$RUN/pulsar/data" --log-level warn >"$RUN/pulsar.log" 2>&1 &
  echo $! >"$RUN/pulsar.pid"
  # Azurite's blob service only, without telemetry (it would call out).
  rm -rf "$RUN/azurite" && mkdir -p "$RUN/azurite"
  "$TOOLS/node_modules/.bin/azurite-blob" --blobHost 127.0.0.1 --blobPort 10000 \
    --location "$RUN/azurite" --disableTelemetry --skipApiVersionCheck \
    >"$RUN/azurite.log" 2>&1 &
  echo $! >"$RUN/azurite.pid"
  wait_tcp tansu "$(cat "$RUN/tansu.pid")" 9092
  wait_tcp pulsar "$(cat "$RUN/pulsar.pid")" 6652
  wait_tcp redis "$(cat "$RUN/redis.pid")" 6390
  wait_tcp nats "$(cat "$RUN/nats.pid")" 4232
  wait_for kinesalite "$(cat "$RUN/kinesalite.pid")" http://127.0.0.1:4567/
  wait_for moto "$(cat "$RUN/moto.pid")" http://127.0.0.1:4566/moto-api/
  wait_for pubsub "$(cat "$RUN/pubsub.pid")" http://127.0.0.1:8085/
  # Azurite answers a bare GET with 400: an answer is all this waits for.
  wait_for azurite "$(cat "$RUN/azurite.pid")" http://127.0.0.1:10000/
}

stop_quietly() {
  local pids=()
  for pidfile in "$RUN"/*.pid; do
    [ -e "$pidfile" ] || continue
    pids+=("$(cat "$pidfile")")
    # The process group first (the Pub/Sub emulator's Java child), then the process.
    kill -- -"$(cat "$pidfile")" 2>/dev/null || kill "$(cat "$pidfile")" 2>/dev/null || true
    rm -f "$pidfile"
  done
  # Until they are gone (up to 10 s), so a server started next finds its port free.
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
  done
}

# urls DIR: the provider URL of each server, as the examples and the CLI take it.
urls() {
  local dir=$1 aws="access_key_id=test&secret_access_key=test"
  echo "kinesis://us-east-1?endpoint=http://127.0.0.1:4567&$aws&checkpoints=local:$dir/kinesalite"
  echo "kinesis://us-east-1?endpoint=http://127.0.0.1:4566&$aws&checkpoints=dynamodb"
  echo "pubsub://test-project?endpoint=http://127.0.0.1:8085"
  echo "kafka://127.0.0.1:9092"
  echo "redis://127.0.0.1:6390"
  echo "nats://127.0.0.1:4232"
  echo "pulsar://127.0.0.1:6652?retention=broker"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop_quietly ;;
  urls) urls "${2:?usage: $0 urls DIR}" ;;
  *) echo "usage: $0 install|start|stop|urls DIR" >&2; exit 2 ;;
esac
