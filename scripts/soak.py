#!/usr/bin/env python3
"""A bounded soak of `cloudstream serve`, on loopback.

    python3 scripts/soak.py path/to/cloudstream                    # CI: 60 s, ~62 s in all
    python3 scripts/soak.py path/to/cloudstream --seconds 3600     # the long run: an hour

Starts `cloudstream serve` on a free loopback port over a fresh temporary `local://` data
directory (segments of 256 KiB, so that they roll), creates a stream `s` of 4 partitions
with a short horizon (30 s for runs under 10 minutes, else 2 minutes: the retention pass,
every 30 s, deletes segments during the run), and puts a mixed load on it at a fixed rate
(`--rate`, events per second, paced, not flat-out), every request over keep-alive HTTP/1.1
connections:

  - half the events sent one at a time (POST /events) on 4 connections, half in batches of
    10 to 100 (POST /events/batch) on one;
  - a live SSE tail (GET /tail), read continuously;
  - a consumer fetching with the ack protocol (POST /consumers/c/fetch?max=100&wait_ms=1000,
    each fetch acknowledging the previous batch with `&ack=`);
  - a webhook (batch_size 50) posting to a receiver this script runs itself;
  - a read (GET /records, each partition in turn, from earliest) every 0.5 s and a describe
    (GET /v1/streams/s) every 5 s.

Every event carries its own number (and the time it was sent), so every observer's view is
checked event by event. Every request's latency is recorded. Each `--interval` (5 s, 60 s for
runs of 10 minutes or more) prints one line: events sent (acknowledged) and the rate,
consumed, tailed and webhook-delivered (distinct events), the server's RSS and open fds,
p50/p99 latency of the sends, p99 end-to-end lag of each observer (consumer/tail/webhook),
the stream's segments and bytes on disk, and errors.

Then the checks, one PASS/FAIL line each:

  - the server is alive; no errors: no 5xx (a 503 too), no unexpected 4xx, no transport
    error, no event of a batch refused;
  - the rate was held (at least 95% of the target);
  - every acknowledged event was seen by the consumer, the tail and the webhook (they get
    up to 15 s after the load stops to catch up);
  - the server's own counters (`/metrics`) agree: events in = events acknowledged, no 5xx;
  - no growth, the first third of the run (after a warm-up of one interval) against the
    last third: RSS growth (medians of 1-second samples) below max(25 MB, 30%); fds growth
    (medians) at most 8; the send p99 (the median of the p99s of the window's intervals, so
    that one stall spoils one interval, not the window) at most 3x the first window's, with
    a floor of 25 ms, and never above SOAK_P99_MS (default 100 ms). Measured on a 2-core
    machine with another build and test job running, debug build fsyncing every append: a
    p50 of 3-6 ms and per-interval p99s of 7-60 ms (median ~16 ms), with isolated stalls of
    up to ~150 ms that follow the machine's load, not the server's retention passes.

The last line is

    soak: N s at R events/s, S sent, C consumed, T tailed, W webhook-delivered, RSS A→B MB, fds X→Y, p99 P1→P2 ms, E errors

and the exit status is non-zero if any check failed. The server is killed on exit, and the
temporary directory removed (SOAK_KEEP=1 keeps it, with the server's log). Standard library
only; Linux (/proc) only. Starting and measuring the server, and the PASS/FAIL lines, are in
scripts/harness.py.
"""

import argparse
import atexit
import http.client
import http.server
import json
import os
import random
import signal
import socket
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import HOST, Server, counts, report  # noqa: E402

STREAM = "s"
PARTITIONS = 4
SEGMENT_BYTES = 256 * 1024
SINGLE_CONNECTIONS = 4
P99_BOUND_MS = float(os.environ.get("SOAK_P99_MS", "100"))
P99_FACTOR = 3.0
P99_FLOOR_MS = 25.0
CATCH_UP = 15.0
PAD = "x" * 96

# CLOUDSTREAM_LOG unset: the server logs at its default level, and the log's lines are counted.
SERVER = Server("soak", url_query=f"?segment_bytes={SEGMENT_BYTES}", unset=("CLOUDSTREAM_LOG",))
T0 = 0.0
STOP = threading.Event()  # everything stops
LOAD_STOP = threading.Event()  # the senders and the reader stop


def elapsed():
    return time.monotonic() - T0


# --------------------------------------------------------------------------- the server


def segments():
    """(segments, bytes of every file) under the stream's directory: a segment is a `.log`
    file (with its `.index` and `.timeindex`)."""
    n = size = 0
    for d, _, files in os.walk(os.path.join(SERVER.data, "streams", STREAM)):
        for name in files:
            try:
                size += os.path.getsize(os.path.join(d, name))
                n += name.endswith(".log")
            except OSError:
                pass
    return n, size


def stop():
    STOP.set()
    SERVER.stop()


# --------------------------------------------------------------------------- what is measured


class Seen:
    """Which events (by number) an observer saw, how many times, and their end-to-end lag."""

    def __init__(self, size):
        self.bits = bytearray(size)
        self.unique = self.dups = self.foreign = 0

    def mark(self, n):
        """Under STATS.lock."""
        if not isinstance(n, int) or not 0 <= n < len(self.bits):
            self.foreign += 1
        elif self.bits[n]:
            self.dups += 1
        else:
            self.bits[n] = 1
            self.unique += 1

    def missing(self, acked):
        """How many of `acked`'s events this one has not seen."""
        a = int.from_bytes(acked.bits, "little")
        s = int.from_bytes(self.bits, "little")
        return bin(a & ~s).count("1")


class Stats:
    def __init__(self, size):
        self.lock = threading.Lock()
        self.acked = Seen(size)
        self.consumed = Seen(size)
        self.tailed = Seen(size)
        self.hooked = Seen(size)
        self.next_n = 0
        self.sent_events = 0  # acknowledged
        # Latencies (seconds) by whole second of the run: sends, and the other requests.
        self.send_lat = {}
        self.other_lat = {}
        # End-to-end lag (seconds) by second, per observer.
        self.lag = {"c": {}, "t": {}, "w": {}}
        self.errors = 0
        self.error_kinds = {}
        self.error_samples = []
        self.requests = 0
        self.fetches = 0
        self.fetch_gaps = 0
        self.tail_reconnects = 0
        self.hook_posts = 0
        # (second, rss kB, fds, segments, bytes of the stream), one a second.
        self.samples = []

    def numbers(self, k):
        with self.lock:
            if self.next_n + k > len(self.acked.bits):
                return None
            first = self.next_n
            self.next_n += k
            return range(first, first + k)

    def latency(self, table, secs):
        sec = int(elapsed())
        with self.lock:
            self.requests += 1
            table.setdefault(sec, []).append(secs)

    def error(self, kind, detail):
        with self.lock:
            self.errors += 1
            self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1
            if len(self.error_samples) < 12:
                self.error_samples.append(f"{elapsed():.1f}s {kind}: {detail}")

    def observed(self, who, records, now_wall):
        """Marks the records an observer got (their payload's `n`), and their lag."""
        seen = {"c": self.consumed, "t": self.tailed, "w": self.hooked}[who]
        sec = int(elapsed())
        with self.lock:
            lags = self.lag[who].setdefault(sec, [])
            for rec in records:
                p = rec.get("payload") if isinstance(rec, dict) else None
                if not isinstance(p, dict):
                    seen.foreign += 1
                    continue
                seen.mark(p.get("n"))
                if isinstance(p.get("t"), (int, float)):
                    lags.append(now_wall - p["t"])


STATS = None


def pct(values, q):
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))]


def gather(table, lo, hi):
    """Every value of a by-second table in seconds [lo, hi)."""
    out = []
    for sec in range(int(lo), int(hi)):
        out.extend(table.get(sec, ()))
    return out


# --------------------------------------------------------------------------- clients


class Conn:
    """One keep-alive HTTP/1.1 connection, opened again after a failure."""

    def __init__(self, timeout=15):
        self.timeout = timeout
        self.conn = None

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def call(self, kind, method, path, body=None, table=None, ok=(200, 201)):
        """(status, parsed JSON or None); None status on a transport error. Errors counted."""
        headers = {"Content-Type": "application/json"} if body is not None else {}
        t = time.monotonic()
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection(HOST, SERVER.port, timeout=self.timeout)
            self.conn.request(method, path, body=body, headers=headers)
            r = self.conn.getresponse()
            data = r.read()
            if r.will_close:
                self.close()
        except (OSError, http.client.HTTPException) as e:
            self.close()
            if not STOP.is_set() or kind != "fetch":
                STATS.error(f"{kind} transport", repr(e))
            return None, None
        secs = time.monotonic() - t
        if table is not None:
            STATS.latency(table, secs)
        if r.status not in ok:
            STATS.error(f"{kind} {r.status}", data[:200].decode(errors="replace"))
            return r.status, None
        try:
            return r.status, json.loads(data) if data else None
        except ValueError:
            STATS.error(f"{kind} bad JSON", repr(data[:200]))
            return r.status, None


def event(n, src):
    return {"payload": {"n": n, "t": time.time(), "src": src, "pad": PAD},
            "key": f"k{n % 64}"}


class Pacer:
    """Due times for a fixed rate of events; never more than a second of backlog."""

    def __init__(self, rate):
        self.rate = rate
        self.due = time.monotonic()

    def wait(self, events):
        now = time.monotonic()
        if self.due > now:
            if LOAD_STOP.wait(self.due - now):
                return False
        elif now - self.due > 1.0:
            self.due = now - 1.0
        self.due += events / self.rate
        return not LOAD_STOP.is_set()


def single_sender(rate):
    conn, pacer = Conn(), Pacer(rate)
    path = f"/v1/streams/{STREAM}/events"
    while pacer.wait(1):
        ns = STATS.numbers(1)
        if ns is None:
            return
        status, doc = conn.call("send", "POST", path, json.dumps(event(ns[0], "one")).encode(),
                                table=STATS.send_lat, ok=(201,))
        if status == 201 and isinstance(doc, dict) and "position" in doc:
            with STATS.lock:
                STATS.acked.mark(ns[0])
                STATS.sent_events += 1
    conn.close()


def batch_sender(rate):
    conn, pacer = Conn(), Pacer(rate)
    path = f"/v1/streams/{STREAM}/events/batch"
    rng = random.Random(7)
    while True:
        k = rng.randint(10, 100)
        if not pacer.wait(k):
            break
        ns = STATS.numbers(k)
        if ns is None:
            return
        body = json.dumps([event(n, "batch") for n in ns]).encode()
        status, doc = conn.call("batch", "POST", path, body, table=STATS.send_lat)
        if status != 200 or not isinstance(doc, dict):
            continue
        results = doc.get("results") or []
        bad = 0
        with STATS.lock:
            for n, res in zip(ns, results):
                if isinstance(res, dict) and "position" in res:
                    STATS.acked.mark(n)
                    STATS.sent_events += 1
                else:
                    bad += 1
        bad += max(0, k - len(results))
        if bad:
            STATS.error("batch event failed", f"{bad} of {k}: {str(results)[:200]}")
    conn.close()


def consumer(stop_when):
    """Fetches with the ack protocol until `stop_when()`; commits the last batch at the end."""
    conn = Conn(timeout=20)
    base = f"/v1/streams/{STREAM}/consumers/c"
    ack = None
    while not stop_when():
        path = f"{base}/fetch?max=100&wait_ms=1000" + (f"&ack={ack}" if ack else "")
        status, doc = conn.call("fetch", "POST", path)
        if status != 200 or not isinstance(doc, dict):
            # The outstanding batch comes again with the next fetch (no ack): nothing lost.
            ack = None
            time.sleep(0.2)
            continue
        records = doc.get("records") or []
        with STATS.lock:
            STATS.fetches += 1
            STATS.fetch_gaps += len(doc.get("gaps") or [])
        STATS.observed("c", records, time.time())
        ack = doc.get("ack")
    if ack:
        conn.call("commit", "POST", f"{base}/commit?ack={ack}", ok=(204,))
    conn.close()


class Tail(threading.Thread):
    """A live SSE tail, read continuously; resumes with Last-Event-ID if it is cut."""

    def __init__(self):
        super().__init__(daemon=True)
        self.conn = None
        self.last_id = None

    def run(self):
        while not STOP.is_set():
            try:
                self.conn = http.client.HTTPConnection(HOST, SERVER.port, timeout=30)
                headers = {"Accept": "text/event-stream"}
                if self.last_id:
                    headers["Last-Event-ID"] = self.last_id
                self.conn.request("GET", f"/v1/streams/{STREAM}/tail?from=earliest",
                                  headers=headers)
                r = self.conn.getresponse()
                if r.status != 200:
                    STATS.error(f"tail {r.status}", r.read()[:200].decode(errors="replace"))
                    self.conn.close()
                    STOP.wait(1)
                    continue
                self.read(r)
                if not STOP.is_set():
                    STATS.error("tail transport", "the server ended the tail")
            except (OSError, http.client.HTTPException, ValueError) as e:
                if not STOP.is_set():
                    STATS.error("tail transport", repr(e))
            finally:
                if self.conn is not None:
                    self.conn.close()
            if not STOP.is_set():
                with STATS.lock:
                    STATS.tail_reconnects += 1
                STOP.wait(0.5)

    def read(self, r):
        kind, data = None, []
        while not STOP.is_set():
            line = r.readline()
            if not line:
                break
            line = line.decode().rstrip("\r\n")
            if line == "":
                if kind == "record" and data:
                    STATS.observed("t", [json.loads("\n".join(data))], time.time())
                elif kind == "error":
                    STATS.error("tail event error", "\n".join(data)[:200])
                kind, data = None, []
            elif line.startswith("event:"):
                kind = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip(" "))
            elif line.startswith("id:"):
                self.last_id = line[3:].strip()

    def stop(self):
        try:
            if self.conn is not None and self.conn.sock is not None:
                self.conn.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def reader():
    """A read of one partition (in turn) every 0.5 s, a describe every 5 s."""
    conn = Conn()
    i = 0
    while not LOAD_STOP.wait(0.5):
        p = i % PARTITIONS
        conn.call("read", "GET",
                  f"/v1/streams/{STREAM}/records?partition={p}&from=earliest&max=100",
                  table=STATS.other_lat)
        if i % 10 == 0:
            conn.call("describe", "GET", f"/v1/streams/{STREAM}", table=STATS.other_lat)
        i += 1
    conn.close()


class Hook(http.server.BaseHTTPRequestHandler):
    """The webhook receiver: counts the records of every POST, answers 200."""

    protocol_version = "HTTP/1.1"

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n)
        try:
            records = json.loads(body).get("records") or []
        except (ValueError, AttributeError):
            records = []
            STATS.error("webhook bad body", repr(body[:200]))
        with STATS.lock:
            STATS.hook_posts += 1
        STATS.observed("w", records, time.time())
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_):
        pass


class Sampler(threading.Thread):
    """The server's RSS, fds and the stream's segments, once a second."""

    def __init__(self):
        super().__init__(daemon=True)

    def run(self):
        while not STOP.is_set():
            self.sample()
            STOP.wait(1.0 - (elapsed() % 1.0))

    @staticmethod
    def sample():
        n, size = segments()
        row = (elapsed(), SERVER.rss_kb("VmRSS"), SERVER.fd_count(), n, size)
        with STATS.lock:
            STATS.samples.append(row)


def window(lo, hi, block):
    """Over seconds [lo, hi): the medians of RSS (MB) and fds, the median of the send p99s
    (ms) of its blocks of `block` seconds (one stall spoils one block, not the window), the
    number of sends, and their p99 taken together (ms)."""
    with STATS.lock:
        rows = [r for r in STATS.samples if lo <= r[0] < hi]
        sends = gather(STATS.send_lat, lo, hi)
        p99s, t = [], lo
        while t + block / 2 <= hi:
            part = gather(STATS.send_lat, t, min(t + block, hi))
            if part:
                p99s.append(pct(part, 0.99) * 1000)
            t += block
    rss = statistics.median(r[1] for r in rows) / 1024 if rows else float("nan")
    fds = statistics.median(r[2] for r in rows) if rows else float("nan")
    p99 = statistics.median(p99s) if p99s else float("nan")
    return rss, fds, p99, len(sends), pct(sends, 0.99) * 1000, len(p99s)


def interval_line(lo, hi, prev_sent):
    with STATS.lock:
        sends = gather(STATS.send_lat, lo, hi)
        lags = {k: gather(v, lo, hi) for k, v in STATS.lag.items()}
        sent, errors = STATS.sent_events, STATS.errors
        c, t, w = STATS.consumed.unique, STATS.tailed.unique, STATS.hooked.unique
        last = STATS.samples[-1] if STATS.samples else (0, 0, 0, 0, 0)
    lag = "/".join(f"{pct(lags[k], 0.99) * 1000:.0f}" for k in "ctw")
    print(f"  {hi:6.0f}s sent {sent:8d} ({(sent - prev_sent) / (hi - lo):5.0f}/s) consumed "
          f"{c:8d} tailed {t:8d} webhook {w:8d} | RSS {last[1] / 1024:6.1f} MB fds "
          f"{last[2]:3d} | send p50 {pct(sends, 0.5) * 1000:5.1f} p99 "
          f"{pct(sends, 0.99) * 1000:6.1f} ms | lag p99 c/t/w {lag} ms | segments {last[3]:3d} "
          f"{last[4] / 1e6:4.1f} MB | errors {errors}", flush=True)
    return sent


def parse_metrics(text):
    """{(name, labels): value} of a Prometheus text answer."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        name, _, labels = head.partition("{")
        try:
            out[(name, labels.rstrip("}"))] = float(value)
        except ValueError:
            pass
    return out


# --------------------------------------------------------------------------- the run


def main():
    global T0, STATS
    ap = argparse.ArgumentParser(description="A bounded soak of `cloudstream serve`.")
    ap.add_argument("binary")
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--rate", type=float, default=200, help="events per second")
    ap.add_argument("--interval", type=float, default=None,
                    help="report interval (default 5 s, 60 s for runs of 10 minutes or more)")
    ap.add_argument("--horizon", default=None,
                    help="the stream's horizon (default 30s, 2m for runs of 10 minutes or more)")
    args = ap.parse_args()
    long_run = args.seconds >= 600
    interval = args.interval or (60.0 if long_run else 5.0)
    horizon = args.horizon or ("2m" if long_run else "30s")
    binary = os.path.abspath(args.binary)
    atexit.register(stop)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM):
        signal.signal(sig, lambda *_: sys.exit("soak: interrupted or out of time"))
    signal.alarm(int(args.seconds) + 120)

    STATS = Stats(int(args.rate * args.seconds * 1.2) + 10_000)
    SERVER.start(binary)
    st, _, body, _ = SERVER.request(
        "PUT", f"/v1/streams/{STREAM}",
        json.dumps({"partitions": PARTITIONS, "horizon": horizon}).encode(),
        {"Content-Type": "application/json"})
    if st != 201:
        sys.exit(f"soak: cannot create stream {STREAM}: {st} {body!r}")

    hook_server = http.server.ThreadingHTTPServer((HOST, 0), Hook)
    hook_server.daemon_threads = True
    threading.Thread(target=hook_server.serve_forever, daemon=True).start()
    hook_url = f"http://{HOST}:{hook_server.server_address[1]}/hook"
    st, _, body, _ = SERVER.request(
        "PUT", f"/v1/streams/{STREAM}/webhooks/w",
        json.dumps({"url": hook_url, "batch_size": 50, "start": "earliest"}).encode(),
        {"Content-Type": "application/json"})
    if st != 201:
        sys.exit(f"soak: cannot register the webhook: {st} {body!r}")

    T0 = time.monotonic()
    print(f"soak: server pid {SERVER.proc.pid} on {HOST}:{SERVER.port}, data {SERVER.data} "
          f"(segments {SEGMENT_BYTES // 1024} KiB), stream {STREAM!r} of {PARTITIONS} "
          f"partitions, horizon {horizon}; {args.seconds:.0f} s at {args.rate:.0f} events/s "
          f"(half single sends on {SINGLE_CONNECTIONS} connections, half batches of 10-100), "
          f"tail, consumer, webhook to {hook_url}; RSS {SERVER.rss_kb('VmRSS') / 1024:.1f} MB, "
          f"fds {SERVER.fd_count()}", flush=True)
    sampler = Sampler()
    sampler.start()
    tail = Tail()
    tail.start()
    caught_up = threading.Event()
    threads = [threading.Thread(target=single_sender, args=(args.rate / 2 / SINGLE_CONNECTIONS,),
                                daemon=True) for _ in range(SINGLE_CONNECTIONS)]
    threads.append(threading.Thread(target=batch_sender, args=(args.rate / 2,), daemon=True))
    threads.append(threading.Thread(target=reader, daemon=True))
    cons = threading.Thread(target=consumer, args=(caught_up.is_set,), daemon=True)
    cons.start()
    for th in threads:
        th.start()

    # The run: one line per interval.
    prev, lo = 0, 0.0
    while True:
        hi = min(lo + interval, args.seconds)
        time.sleep(max(0.0, hi - elapsed()))
        if not SERVER.alive():
            break
        prev = interval_line(lo, hi, prev)
        lo = hi
        if hi >= args.seconds:
            break
    load_end = elapsed()
    LOAD_STOP.set()  # the consumer, the tail and the webhook go on
    for th in threads:
        th.join(20)

    # Catch-up: every acknowledged event seen by the consumer, the tail and the webhook.
    deadline = time.monotonic() + CATCH_UP
    while time.monotonic() < deadline and SERVER.alive():
        with STATS.lock:
            missing = [s.missing(STATS.acked) for s in (STATS.consumed, STATS.tailed, STATS.hooked)]
        if not any(missing):
            break
        time.sleep(0.25)
    catch_up = elapsed() - load_end
    caught_up.set()
    cons.join(15)
    STOP.set()
    tail.stop()
    tail.join(5)
    hook_server.shutdown()
    alive = SERVER.alive()
    hook_view = None
    if alive:
        try:
            st, _, body, _ = SERVER.request("GET", f"/v1/streams/{STREAM}/webhooks/w")
            hook_view = json.loads(body) if st == 200 else None
        except (OSError, http.client.HTTPException, ValueError):
            pass
    metrics = {}
    if alive:
        try:
            st, _, body, _ = SERVER.request("GET", "/metrics")
            metrics = parse_metrics(body.decode(errors="replace")) if st == 200 else {}
        except (OSError, http.client.HTTPException):
            pass
    log = SERVER.log()
    log_lines = [ln for ln in log.splitlines() if ln.strip()]
    print(f"soak: load stopped at {load_end:.1f}s; caught up {catch_up:.1f}s later; server "
          f"alive {alive}, peak RSS (VmHWM) {SERVER.rss_kb('VmHWM') / 1024:.1f} MB; "
          f"{STATS.requests} requests timed, {STATS.fetches} fetches ({STATS.fetch_gaps} gaps), "
          f"{STATS.hook_posts} webhook POSTs, {STATS.tail_reconnects} tail reconnects; "
          f"duplicates c/t/w {STATS.consumed.dups}/{STATS.tailed.dups}/{STATS.hooked.dups}; "
          f"webhook view {json.dumps(hook_view)[:300] if hook_view else None}; server log "
          f"{len(log_lines)} lines", flush=True)
    for ln in log_lines[:5]:
        print(f"  log: {ln[:300]}", flush=True)

    # ------------------------------------------------------------------ the checks
    report(alive, "server alive", f"exit status {SERVER.proc.returncode}" if not alive else "yes")
    report(STATS.errors == 0, "no errors",
           f"{STATS.errors} errors {STATS.error_kinds}"
           + (f"; first: {STATS.error_samples}" if STATS.error_samples else ""))
    achieved = STATS.sent_events / load_end if load_end else 0
    report(achieved >= 0.95 * args.rate, "rate held",
           f"{STATS.sent_events} events acknowledged in {load_end:.1f}s: {achieved:.1f}/s "
           f"(target {args.rate:.0f}, at least 95%)")
    with STATS.lock:
        acked = STATS.acked.unique
        miss = {k: s.missing(STATS.acked) for k, s in
                (("consumer", STATS.consumed), ("tail", STATS.tailed), ("webhook", STATS.hooked))}
        seen = {"consumer": STATS.consumed.unique, "tail": STATS.tailed.unique,
                "webhook": STATS.hooked.unique}
        foreign = STATS.consumed.foreign + STATS.tailed.foreign + STATS.hooked.foreign
    for who in ("consumer", "tail", "webhook"):
        report(miss[who] == 0, f"every acknowledged event seen by the {who}",
               f"{acked} acknowledged, {seen[who]} distinct seen, {miss[who]} missing "
               f"(after {catch_up:.1f}s of catch-up, at most {CATCH_UP:.0f}s)"
               + (f"; {foreign} records not ours" if foreign else ""))

    counted = metrics.get(("cloudstream_events_in_total", f'stream="{STREAM}"'))
    fives = sum(v for (name, labels), v in metrics.items()
                if name == "cloudstream_http_requests_total" and 'status="5' in labels)
    lags = {labels: v for (name, labels), v in metrics.items()
            if name == "cloudstream_consumer_lag"}
    report(counted == acked and fives == 0, "the server's own counters",
           f"/metrics: events in {counted if counted is None else int(counted)} (acknowledged "
           f"{acked}), 5xx answers {fives:.0f}, consumer lag {lags}")

    warm = min(interval, args.seconds / 4)
    third = (load_end - warm) / 3
    first = window(warm, warm + third, interval)
    last = window(load_end - third, load_end + 0.001, interval)
    rss_limit = max(25.0, 0.30 * first[0])
    report(last[0] - first[0] < rss_limit, "RSS growth",
           f"median {first[0]:.1f} MB in [{warm:.0f}s, {warm + third:.0f}s) → {last[0]:.1f} MB "
           f"in [{load_end - third:.0f}s, {load_end:.0f}s]: {last[0] - first[0]:+.1f} MB "
           f"(limit {rss_limit:.1f} MB)")
    report(last[1] - first[1] <= 8, "fds growth",
           f"median {first[1]:.0f} → {last[1]:.0f}: {last[1] - first[1]:+.0f} (limit +8)")
    p99_limit = min(max(P99_FACTOR * first[2], P99_FLOOR_MS), P99_BOUND_MS)
    report(last[2] <= p99_limit, "send p99 latency",
           f"median of the {interval:.0f}-second p99s {first[2]:.1f} ms ({first[5]} blocks, "
           f"{first[3]} sends, p99 of them all {first[4]:.1f}) → {last[2]:.1f} ms ({last[5]} "
           f"blocks, {last[3]} sends, p99 of them all {last[4]:.1f}); limit "
           f"{p99_limit:.1f} ms (max({P99_FACTOR:.0f}x the first window, {P99_FLOOR_MS:.0f} ms), "
           f"at most {P99_BOUND_MS:.0f} ms)")
    with STATS.lock:
        others = gather(STATS.other_lat, 0, load_end + 1)
        segs = [r[3] for r in STATS.samples]
        slowest = sorted(((max(v), sec) for sec, v in STATS.send_lat.items() if v),
                         reverse=True)[:5]
        drops = [f"{b[0]:.0f}s (-{a[3] - b[3]})" for a, b in zip(STATS.samples, STATS.samples[1:])
                 if b[3] < a[3]]
    print(f"soak: slowest sends (second: ms) "
          f"{', '.join(f'{sec}s: {ms * 1000:.0f}' for ms, sec in slowest)}; retention deleted "
          f"segments at {', '.join(drops) or 'no time'}", flush=True)
    print(f"soak: reads and describes: {len(others)}, p50 {pct(others, 0.5) * 1000:.1f} ms, "
          f"p99 {pct(others, 0.99) * 1000:.1f} ms; segments of the stream min "
          f"{min(segs, default=0)} max {max(segs, default=0)} end {segs[-1] if segs else 0}; server log "
          f"{SERVER.log_path} ({'kept' if SERVER.keep else 'removed'})", flush=True)
    failed = counts()[1]
    print(f"soak: {args.seconds:.0f} s at {args.rate:.0f} events/s, {STATS.sent_events} sent, "
          f"{seen['consumer']} consumed, {seen['tail']} tailed, {seen['webhook']} "
          f"webhook-delivered, RSS {first[0]:.1f}→{last[0]:.1f} MB, fds {first[1]:.0f}→"
          f"{last[1]:.0f}, p99 {first[2]:.1f}→{last[2]:.1f} ms, {STATS.errors} errors"
          + (f"; {failed} checks FAILED" if failed else ""), flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
