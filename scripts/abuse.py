#!/usr/bin/env python3
"""Hostile-client checks of `cloudstream serve`, on loopback.

    python3 scripts/abuse.py path/to/cloudstream

Starts `cloudstream serve` on a free loopback port over a fresh temporary `local://` data
directory, with small limits (header timeout 2 s, request timeout 3 s, 1 MiB bodies, 100
events per batch, 64 requests in flight) and, unless ABUSE_SERVER_NOFILE says otherwise
(0: inherit), a soft RLIMIT_NOFILE of 1024 as on a stock host, so that 2,000 connections
really are more than it can hold. Then it plays a hostile client: oversized and endless
bodies, too many events, path-traversal and look-alike stream names, slow-loris headers,
silent and slow bodies, thousands of idle connections, huge headers, malformed bodies on
every POST/PUT route. Every check prints one PASS/FAIL line with what was measured; the
last line is

    abuse: P passed, F failed, peak RSS X MB, fds baseline A peak B end C

and the exit status is non-zero if any check failed. The server is killed on exit, and the
temporary directory removed. Standard library only; Linux (/proc) only.
"""

import atexit
import http.client
import json
import os
import resource
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HOST = "127.0.0.1"
HEADER_TIMEOUT = 2.0
REQUEST_TIMEOUT = 3.0
MAX_BODY = 1 << 20
MAX_BATCH = 100
MAX_IN_FLIGHT = 64
# Below the 2,000 idle connections of check 6b: those over it are answered 503 and closed.
MAX_CONNECTIONS = 500
SERVER_NOFILE = int(os.environ.get("ABUSE_SERVER_NOFILE", "1024"))
# A check's timing slack on a loaded 2-core machine (debug build).
SLACK = 2.5

PORT = 0
PROC = None
TMP = None
DATA = None
OUTCOMES = []


def report(ok, name, detail):
    OUTCOMES.append(bool(ok))
    print(f"{'PASS' if ok else 'FAIL'} {name}: {detail}", flush=True)


# --------------------------------------------------------------------------- the server


def proc_status(field):
    """A field of /proc/PID/status in kB (VmRSS, VmHWM), or 0 once the process is gone."""
    try:
        with open(f"/proc/{PROC.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def fd_count():
    try:
        return len(os.listdir(f"/proc/{PROC.pid}/fd"))
    except OSError:
        return -1


def nofile_of_server():
    try:
        with open(f"/proc/{PROC.pid}/limits") as f:
            for line in f:
                if line.startswith("Max open files"):
                    return line.split()[3]
    except OSError:
        pass
    return "?"


class Sampler(threading.Thread):
    """Samples the server's RSS and open fds every 50 ms: the peak over the run, and the
    peak over a window that each check restarts."""

    def __init__(self):
        super().__init__(daemon=True)
        self.lock = threading.Lock()
        self.stopped = False
        self.peak_rss = self.peak_fds = 0
        self.win_rss = self.win_fds = 0

    def sample(self):
        rss, fds = proc_status("VmRSS"), fd_count()
        with self.lock:
            self.peak_rss = max(self.peak_rss, rss)
            self.peak_fds = max(self.peak_fds, fds)
            self.win_rss = max(self.win_rss, rss)
            self.win_fds = max(self.win_fds, fds)

    def run(self):
        while not self.stopped:
            self.sample()
            time.sleep(0.05)

    def window(self):
        """The window's peaks (RSS kB, fds), and a new window."""
        self.sample()
        with self.lock:
            peaks = (self.win_rss, self.win_fds)
            self.win_rss = self.win_fds = 0
        return peaks


SAMPLER = Sampler()


def start_server(binary):
    global PORT, PROC, TMP, DATA
    TMP = tempfile.mkdtemp(prefix="cloudstream-abuse-")
    # Nested, so that a traversal of up to three `..` still lands inside TMP, where the
    # before/after listing sees it.
    DATA = os.path.join(TMP, "a", "b", "data")
    os.makedirs(DATA)
    with socket.socket() as s:
        s.bind((HOST, 0))
        PORT = s.getsockname()[1]
    log = open(os.path.join(TMP, "server.log"), "wb")

    def limit_fds():
        if SERVER_NOFILE > 0:
            _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(SERVER_NOFILE, hard), hard))

    env = {k: v for k, v in os.environ.items() if k not in ("CLOUDSTREAM_URL", "RUST_LOG")}
    PROC = subprocess.Popen(
        [binary, "serve", "--listen", f"{HOST}:{PORT}", "--url", f"local://{DATA}",
         "--header-timeout", f"{int(HEADER_TIMEOUT)}s",
         "--request-timeout", f"{int(REQUEST_TIMEOUT)}s",
         "--max-body-bytes", str(MAX_BODY), "--max-batch-events", str(MAX_BATCH),
         "--max-in-flight", str(MAX_IN_FLIGHT), "--max-connections", str(MAX_CONNECTIONS)],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
        preexec_fn=limit_fds, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if PROC.poll() is not None:
            sys.exit(f"abuse: the server exited with {PROC.returncode}; see its log:\n"
                     + open(os.path.join(TMP, "server.log"), errors="replace").read())
        try:
            status, _, body, _ = request("GET", "/healthz", timeout=1)
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    sys.exit("abuse: the server did not answer /healthz within 30 s")


def stop_server():
    SAMPLER.stopped = True
    if PROC is not None and PROC.poll() is None:
        PROC.terminate()
        try:
            PROC.wait(5)
        except subprocess.TimeoutExpired:
            PROC.kill()
            PROC.wait()
    if TMP and os.environ.get("ABUSE_KEEP") != "1":
        shutil.rmtree(TMP, ignore_errors=True)


# --------------------------------------------------------------------------- HTTP helpers


def request(method, path, body=None, headers=None, timeout=10):
    """One request on a new connection: (status, headers, body, seconds)."""
    t0 = time.monotonic()
    conn = http.client.HTTPConnection(HOST, PORT, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data, time.monotonic() - t0
    finally:
        conn.close()


def json_error(body):
    """The error code of a `{"error": {"code", "message"}}` body, else None."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    err = doc.get("error") if isinstance(doc, dict) else None
    if isinstance(err, dict) and isinstance(err.get("code"), str) and err.get("message"):
        return err["code"]
    return None


def parse_response(buf):
    """(status, headers, body) if buf holds a whole response, else None."""
    if b"\r\n\r\n" not in buf:
        return None
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        return (-1, {}, buf)
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    if "content-length" in hdrs:
        n = int(hdrs["content-length"])
        return (status, hdrs, rest[:n]) if len(rest) >= n else None
    if "chunked" in hdrs.get("transfer-encoding", "").lower():
        out, data = b"", rest
        while True:
            line, sep, data = data.partition(b"\r\n")
            if not sep:
                return None
            size = int(line.split(b";")[0] or b"0", 16)
            if size == 0:
                return (status, hdrs, out)
            if len(data) < size + 2:
                return None
            out, data = out + data[:size], data[size + 2:]
    return None  # until close


def exchange(data, chunk=64 * 1024, pause=0.0, timeout=15.0, sock=None):
    """Sends `data` (interleaved with reading, so that an early answer is seen) and reads one
    response. Returns a dict: status/headers/body (None if none came), closed ("eof",
    "reset" or None), sent (bytes written before the answer or the close), seconds."""
    s = sock or socket.create_connection((HOST, PORT), timeout=5)
    s.setblocking(False)
    t0 = time.monotonic()
    deadline = t0 + timeout
    sent, got, closed, answered_at = 0, b"", None, None
    try:
        while time.monotonic() < deadline:
            want_write = sent < len(data) and answered_at is None
            r, w = ready([s], [s] if want_write else [], 0.2)
            if r:
                try:
                    piece = s.recv(65536)
                except OSError:
                    closed = "reset"
                    break
                if not piece:
                    closed = "eof"
                    break
                if answered_at is None:
                    answered_at = sent
                got += piece
                if parse_response(got):
                    break
                continue
            if w and want_write:
                try:
                    sent += s.send(data[sent:sent + chunk])
                except BlockingIOError:
                    pass
                except OSError:
                    closed = "reset"
                    break
                if pause:
                    time.sleep(pause)
    finally:
        s.close()
    parsed = parse_response(got) or (None, {}, got)
    if parsed[0] is None and got.startswith(b"HTTP/"):
        try:
            parsed = (int(got.split()[1]), {}, got)
        except (IndexError, ValueError):
            pass
    return {"status": parsed[0], "headers": parsed[1], "body": parsed[2], "closed": closed,
            "sent": sent if answered_at is None else answered_at,
            "seconds": time.monotonic() - t0}


def ready(rlist, wlist=(), timeout=0.2):
    """select() over poll(): sockets readable (or closed) and writable within timeout."""
    poller, by_fd = select.poll(), {}
    for s in rlist:
        by_fd[s.fileno()] = s
        poller.register(s, select.POLLIN | select.POLLERR | select.POLLHUP)
    for s in wlist:
        by_fd[s.fileno()] = s
        flags = select.POLLOUT | (select.POLLIN | select.POLLERR | select.POLLHUP
                                  if s in rlist else 0)
        poller.register(s, flags)
    r, w = [], []
    for fd, ev in poller.poll(max(0.0, timeout) * 1000):
        if ev & (select.POLLIN | select.POLLERR | select.POLLHUP) and by_fd[fd] in rlist:
            r.append(by_fd[fd])
        if ev & select.POLLOUT:
            w.append(by_fd[fd])
    return r, w


def head(method, path, extra=()):
    lines = [f"{method} {path} HTTP/1.1", f"Host: {HOST}:{PORT}", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def describe(res):
    if res["status"] is not None:
        code = json_error(res["body"])
        return f"{res['status']}" + (f" {code}" if code else " (no JSON error)")
    return f"closed ({res['closed'] or 'timeout'})"


class Prober(threading.Thread):
    """A well-behaved client: GET /v1/streams every 200 ms, latencies recorded."""

    def __init__(self, path="/v1/streams"):
        super().__init__(daemon=True)
        self.path, self.stopped, self.samples = path, False, []

    def run(self):
        while not self.stopped:
            try:
                status, _, _, secs = request("GET", self.path, timeout=10)
            except OSError as e:
                status, secs = f"error {e.__class__.__name__}", 10.0
            self.samples.append((status, secs))
            time.sleep(0.2)

    def finish(self):
        self.stopped = True
        self.join(15)
        ok = bool(self.samples) and all(st == 200 for st, _ in self.samples)
        worst = max((s for _, s in self.samples), default=float("inf"))
        return ok, worst, len(self.samples)


# --------------------------------------------------------------------------- the checks


def check_oversized_bodies():
    base = proc_status("VmRSS")
    SAMPLER.window()
    bad = []
    lines = []
    cases = [
        ("Content-Length 1 GiB, 8 MB trickled, events/batch", "/v1/streams/s/events/batch", False),
        ("Content-Length 1 GiB, 8 MB trickled, events", "/v1/streams/s/events", False),
        ("Content-Length 1 GiB, 8 MB trickled, partitions/0/events",
         "/v1/streams/s/partitions/0/events", False),
        ("chunked, 8 MB, events/batch", "/v1/streams/s/events/batch", True),
    ]
    for label, path, chunked in cases:
        extra = ["Content-Type: application/json"]
        extra.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {1 << 30}")
        body = b"[" + b'{"payload":"' + b"a" * (8 * 1024 * 1024)
        if chunked:
            pieces, step = [], 64 * 1024
            for i in range(0, len(body), step):
                part = body[i:i + step]
                pieces.append(b"%x\r\n" % len(part) + part + b"\r\n")
            body = b"".join(pieces)  # never terminated: the limit must stop it first
        res = exchange(head("POST", path, extra) + body, pause=0.002, timeout=15)
        ok = (res["status"] == 413 and json_error(res["body"]) is not None) or (
            res["status"] is None and res["closed"] is not None)
        lines.append(f"{label}: {describe(res)} after {res['sent'] / 1e6:.1f} MB sent, "
                     f"{res['seconds']:.2f}s")
        if not ok:
            bad.append(label)
    rss_peak, _ = SAMPLER.window()
    # Sixteen at once, chunked: each may be buffered up to the limit, no further.
    results = [None] * 16

    def one(i):
        extra = ["Content-Type: application/json", "Transfer-Encoding: chunked"]
        part = b"a" * (64 * 1024)
        body = (b"%x\r\n" % len(part) + part + b"\r\n") * 48  # 3 MiB
        results[i] = exchange(head("POST", "/v1/streams/s/events/batch", extra) + body,
                              pause=0.001, timeout=20)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    conc_peak, _ = SAMPLER.window()
    conc_ok = sum(1 for r in results if r and ((r["status"] == 413 and json_error(r["body"]))
                                                or (r["status"] is None and r["closed"])))
    growth = (max(rss_peak, conc_peak) - base) / 1024
    if conc_ok != 16:
        bad.append(f"concurrent: {16 - conc_ok} of 16 not refused")
    bounded = growth < 64
    report(not bad and bounded, "1 oversized bodies",
           "; ".join(lines) + f"; 16 concurrent 3 MiB chunked: {conc_ok}/16 refused "
           f"({', '.join(sorted({describe(r) for r in results if r}))}); RSS before "
           f"{base / 1024:.1f} MB, peak {rss_peak / 1024:.1f} MB (sequential) / "
           f"{conc_peak / 1024:.1f} MB (concurrent), growth {growth:.1f} MB (limit 64)"
           + (f"; failing: {bad}" if bad else ""))


def check_too_many_events():
    parts, ok = [], True
    over = ("[" + ",".join(["{}"] * (MAX_BATCH + 1)) + "]").encode()
    status, _, body, secs = request("POST", "/v1/streams/s/events/batch", over,
                                    {"Content-Type": "application/json"})
    code = json_error(body)
    ok &= status == 413 and code is not None
    parts.append(f"JSON array of {MAX_BATCH + 1}: {status} {code}")
    nd = ("\n".join(["{}"] * (MAX_BATCH + 1))).encode()
    status, _, body, _ = request("POST", "/v1/streams/s/events/batch", nd,
                                 {"Content-Type": "application/x-ndjson"})
    code = json_error(body)
    ok &= status == 413 and code is not None
    parts.append(f"NDJSON of {MAX_BATCH + 1}: {status} {code}")
    status, _, body, _ = request("POST", "/v1/streams/s/partitions/0/events", over,
                                 {"Content-Type": "application/json"})
    code = json_error(body)
    ok &= status == 413 and code is not None
    parts.append(f"append of {MAX_BATCH + 1}: {status} {code}")
    # A million `{}` inside the 1 MiB limit: refused at the count, quickly.
    huge = b"[" + b",".join([b"{}"] * 300_000) + b"]"
    status, _, body, secs = request("POST", "/v1/streams/s/events/batch", huge,
                                    {"Content-Type": "application/json"})
    code = json_error(body)
    ok &= status == 413 and code is not None
    parts.append(f"300,000 in {len(huge) // 1024} KiB: {status} {code} in {secs:.2f}s")
    at_limit = ("[" + ",".join(['{"payload":"x"}'] * MAX_BATCH) + "]").encode()
    status, _, body, _ = request("POST", "/v1/streams/s/events/batch", at_limit,
                                 {"Content-Type": "application/json"})
    ok &= status == 200
    parts.append(f"exactly {MAX_BATCH} (control): {status}")
    report(ok, "2 too many events", "; ".join(parts))


def tree(root):
    out = set()
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            out.add(os.path.relpath(os.path.join(d, n), root))
    return out


HOSTILE_NAMES = [
    ("..", ".."), (".", "."), ("%2e%2e", "%2e%2e"), ("%2E%2E", "%2E%2E"), ("%2e", "%2e"),
    ("..%2F..%2Fescape", "..%2F..%2Fescape"),
    ("%2e%2e%2f%2e%2e%2f%2e%2e%2fescape", "%2e%2e%2f%2e%2e%2f%2e%2e%2fescape"),
    ("a%2Fb", "a%2Fb"), ("%2F", "%2F"), ("a%5Cb (backslash)", "a%5Cb"),
    ("..%5C..%5Cescape", "..%5C..%5Cescape"),
    ("a%00b", "a%00b"), ("%00", "%00"), ("a%0Ab (newline)", "a%0Ab"),
    ("a%09b (tab)", "a%09b"),
    ("10,000 chars", "n" * 10_000), ("129 chars", "n" * 129),
    ("Cyrillic 'b\u0430d'", "b%D0%B0d"), ("Cyrillic '\u0455' for s", "%D1%95"),
    ("fullwidth '\uff33\uff34'", "%EF%BC%B3%EF%BC%B4"),
    ("fullwidth dots '\uff0e\uff0e'", "%EF%BC%8E%EF%BC%8E"),
    ("one-dot leader '\u2024\u2024'", "%E2%80%A4%E2%80%A4"),
    ("zero-width space 's\u200b'", "s%E2%80%8B"), ("RTL override", "a%E2%80%AEb"),
    ("a%20b (space)", "a%20b"), ("%20", "%20"), ("'s ' trailing space", "s%20"),
    ("a+b", "a+b"), ("a%25b (percent)", "a%25b"),
    ("overlong UTF-8 '..'", "%C0%AE%C0%AE"), ("lone byte %80", "%80"),
    ("bad escape %ZZ", "%ZZ"),
    # "-leading" and ".leading" are valid names, as in Kafka and Kinesis: directory names are
    # never handed to a shell.
]


def check_hostile_names():
    before = tree(TMP)
    bad, codes = [], {}
    for label, seg in HOSTILE_NAMES:
        for method in ("PUT", "GET", "DELETE"):
            extra = ["Content-Length: 0", "Connection: close"]
            res = exchange(head(method, f"/v1/streams/{seg}", extra), timeout=10)
            code = json_error(res["body"]) if res["status"] else None
            if not (res["status"] and 400 <= res["status"] < 500 and code):
                bad.append(f"{method} {label}: {describe(res)}")
            elif method == "PUT":
                codes[f"{res['status']} {code}"] = codes.get(f"{res['status']} {code}", 0) + 1
    # Also the bare collection with a trailing slash and a literal `../` segment.
    for path in ("/v1/streams/", "/v1/streams/../streams", "/v1/streams/x/../../streams"):
        res = exchange(head("PUT", path, ["Content-Length: 0"]), timeout=10)
        if not (res["status"] and 400 <= res["status"] < 500 and json_error(res["body"])):
            bad.append(f"PUT {path}: {describe(res)}")
    after = tree(TMP)
    appeared, vanished = sorted(after - before), sorted(before - after)
    # A valid name still works, and creates only its own directory.
    valid = "valid_Name-1.x"
    status, _, _, _ = request("PUT", f"/v1/streams/{valid}", b'{"partitions":1}',
                              {"Content-Type": "application/json"})
    s2, _, _, _ = request("POST", f"/v1/streams/{valid}/events", b'{"payload":"ok"}',
                          {"Content-Type": "application/json"})
    new = sorted(tree(TMP) - after)
    prefix = os.path.join("a", "b", "data", "streams", valid)
    valid_ok = status == 201 and s2 == 201 and new and all(
        p == prefix or p.startswith(prefix + os.sep) for p in new)
    ok = not bad and not appeared and not vanished and valid_ok
    detail = (f"{len(HOSTILE_NAMES)} names x PUT/GET/DELETE, PUT answers {codes}; "
              f"data dir entries appeared {len(appeared)} {appeared[:8]}, vanished "
              f"{len(vanished)} {vanished[:8]}; valid '{valid}': PUT {status}, event {s2}, "
              f"{len(new)} new entries all under streams/{valid}: {bool(valid_ok)}")
    if bad:
        detail += f"; not a 4xx JSON error: {bad[:12]}" + (" ..." if len(bad) > 12 else "")
    report(ok, "3 hostile stream names", detail)


def watch(conns, send_plan, limit):
    """Watches sockets until the server answers or closes each, or `limit` seconds pass.
    send_plan: {sock: bytes to trickle one byte per second}. Returns {sock: (seconds,
    first bytes or b'')} for those the server ended."""
    start = time.monotonic()
    ended, pos, next_tick = {}, {s: 0 for s in send_plan}, start
    while time.monotonic() - start < limit and len(ended) < len(conns):
        now = time.monotonic()
        if now >= next_tick:
            for s, data in send_plan.items():
                if s in ended or pos[s] >= len(data):
                    continue
                try:
                    s.send(data[pos[s]:pos[s] + 1])
                    pos[s] += 1
                except OSError:
                    ended[s] = (now - start, b"")
            next_tick += 1.0
        live = [s for s in conns if s not in ended]
        if not live:
            break
        r, _ = ready(live, (), min(next_tick - time.monotonic(), 0.2))
        for s in r:
            try:
                data = s.recv(4096)
            except OSError:
                data = b""
            ended[s] = (time.monotonic() - start, data[:40])
    return ended


def check_slow_loris():
    slow = [socket.create_connection((HOST, PORT), timeout=5) for _ in range(50)]
    silent = [socket.create_connection((HOST, PORT), timeout=5) for _ in range(20)]
    # Keep-alive connections left idle after one request.
    idle = []
    for _ in range(5):
        s = socket.create_connection((HOST, PORT), timeout=5)
        s.sendall(head("GET", "/healthz"))
        buf = b""
        while not parse_response(buf):
            piece = s.recv(4096)
            if not piece:
                break
            buf += piece
        idle.append(s)
    for s in slow + silent + idle:
        s.setblocking(False)
    req = head("POST", "/v1/streams/s/events",
               ["User-Agent: slowloris", "X-Padding: " + "p" * 200, "Content-Length: 2"])
    prober = Prober()
    prober.start()
    ended = watch(slow + silent + idle, {s: req for s in slow}, HEADER_TIMEOUT + 6)
    pok, worst, n = prober.finish()
    for s in slow + silent + idle:
        s.close()

    def summary(group):
        times = [ended[s][0] for s in group if s in ended]
        answers = {ended[s][1].split(b"\r\n")[0].decode("latin-1") or "closed"
                   for s in group if s in ended}
        return len(times), (max(times) if times else float("nan")), answers

    n_slow, t_slow, a_slow = summary(slow)
    n_sil, t_sil, _ = summary(silent)
    n_idle, t_idle, _ = summary(idle)
    bound = HEADER_TIMEOUT + SLACK
    report(n_slow == 50 and t_slow <= bound and pok and worst < 1.0,
           "4 slow-loris headers",
           f"50 conns at 1 byte/s: {n_slow} cut by the server, last after {t_slow:.1f}s "
           f"(header timeout {HEADER_TIMEOUT:.0f}s, bound {bound:.1f}s), answers {sorted(a_slow)}; "
           f"normal client meanwhile: {n} requests, all 200: {pok}, worst {worst * 1000:.0f} ms")
    report(n_sil == 20 and t_sil <= bound and n_idle == 5 and t_idle <= bound,
           "4b silent connections",
           f"20 conns sending nothing: {n_sil} closed, last after {t_sil:.1f}s; 5 keep-alive "
           f"conns idle after a request: {n_idle} closed, last after {t_idle:.1f}s (bound {bound:.1f}s)")


def check_slow_body():
    cases = {}

    def conn(label, data):
        s = socket.create_connection((HOST, PORT), timeout=5)
        s.sendall(data)
        s.setblocking(False)
        cases[s] = label
        return s

    json_ct = "Content-Type: application/json"
    conn("POST events, CL 1000, no body",
         head("POST", "/v1/streams/s/events", [json_ct, "Content-Length: 1000"]))
    conn("POST events, CL 1000, 500 sent",
         head("POST", "/v1/streams/s/events", [json_ct, "Content-Length: 1000"])
         + b'{"payload":"' + b"x" * 488)
    conn("POST batch, chunked, one chunk then silence",
         head("POST", "/v1/streams/s/events/batch", [json_ct, "Transfer-Encoding: chunked"])
         + b"5\r\n[{},{")
    conn("PUT stream, CL 1000, no body",
         head("PUT", "/v1/streams/slowbody", [json_ct, "Content-Length: 1000"]))
    conn("PUT checkpoint, CL 1000, no body",
         head("PUT", "/v1/streams/s/consumers/c/checkpoint", [json_ct, "Content-Length: 1000"]))
    conn("PUT webhook, CL 1000, no body",
         head("PUT", "/v1/streams/s/webhooks/slow", [json_ct, "Content-Length: 1000"]))
    trickle = conn("POST events, CL 1000, 1 byte/s",
                   head("POST", "/v1/streams/s/events", [json_ct, "Content-Length: 1000"]))
    prober = Prober()
    prober.start()
    ended = watch(list(cases), {trickle: b"[" * 1000}, REQUEST_TIMEOUT + 6)
    pok, worst, n = prober.finish()
    bound = REQUEST_TIMEOUT + SLACK
    parts, ok = [], True
    for s, label in cases.items():
        s.close()
        if s not in ended:
            ok = False
            parts.append(f"{label}: still open after {REQUEST_TIMEOUT + 6:.0f}s")
            continue
        secs, first = ended[s]
        line = first.split(b"\r\n")[0].decode("latin-1") or "closed"
        good = secs <= bound and not line.startswith("HTTP/1.1 5")
        ok &= good
        parts.append(f"{label}: {line} after {secs:.1f}s")
    ok &= pok and worst < 1.0
    report(ok, "5 slow bodies",
           f"bound {bound:.1f}s; " + "; ".join(parts)
           + f"; normal client meanwhile: {n} requests, all 200: {pok}, worst {worst * 1000:.0f} ms")


def check_connections():
    # 6a: the in-flight cap answers 503 JSON, /healthz stays outside it, and it recovers.
    held = []
    for _ in range(MAX_IN_FLIGHT + 6):
        s = socket.create_connection((HOST, PORT), timeout=5)
        s.sendall(head("POST", "/v1/streams/s/events",
                       ["Content-Type: application/json", "Content-Length: 1000"]))
        held.append(s)
    time.sleep(0.5)
    st, _, body, secs = request("GET", "/v1/streams", timeout=10)
    code = json_error(body)
    hst, _, _, hsecs = request("GET", "/healthz", timeout=10)
    for s in held:
        s.close()
    time.sleep(0.5)
    rst, _, _, rsecs = request("GET", "/v1/streams", timeout=10)
    report(st == 503 and code is not None and hst == 200 and rst == 200,
           "6a in-flight cap",
           f"{len(held)} requests holding their bodies back: GET /v1/streams {st} {code} in "
           f"{secs * 1000:.0f} ms, /healthz {hst} in {hsecs * 1000:.0f} ms; once they went, "
           f"GET /v1/streams {rst} in {rsecs * 1000:.0f} ms")

    # 6b: 2,000 idle connections, opened at once: more than the server's fds (with the
    # default limit of 1024), so it sits at EMFILE with its accept queue full.
    time.sleep(0.3)
    fds_before = fd_count()
    SAMPLER.window()
    conns = []
    t0 = time.monotonic()
    for _ in range(2000):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex((HOST, PORT))
        conns.append(s)
    # A well-behaved client meanwhile: 8 requests 250 ms apart, each must be answered (200,
    # or 503 with a JSON error) well before its 12 s timeout.
    normal = []

    def one_normal():
        t = time.monotonic()
        try:
            st, _, body, secs = request("GET", "/v1/streams", timeout=12)
            normal.append((st, json_error(body) if st != 200 else None, secs))
        except OSError as e:
            normal.append((f"no answer ({e.__class__.__name__})", None, time.monotonic() - t))

    probes = []
    for _ in range(8):
        th = threading.Thread(target=one_normal, daemon=True)
        th.start()
        probes.append(th)
        time.sleep(0.25)
    # Wait for the handshakes (those the full accept queue dropped are retried by the kernel).
    pending, established, refused = set(conns), 0, 0
    deadline = time.monotonic() + 8
    while pending and time.monotonic() < deadline:
        _, w = ready((), list(pending), 0.2)
        for s in w:
            pending.discard(s)
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                established += 1
            else:
                refused += 1
    open_secs = time.monotonic() - t0
    # Does the server shed them by itself (the header timeout covers idle connections)?
    # Its fds must come back down while every client socket is still held open. (Handshakes
    # the full accept queue dropped look established to the client but never reach the
    # server: those sockets stay open on this side only.)
    shed, live = 0, [s for s in conns if s not in pending]
    deadline = time.monotonic() + 2 * HEADER_TIMEOUT + 4
    fds_held = fd_count()
    while time.monotonic() < deadline:
        r, _ = ready(live, (), 0.2)
        gone = set(r)
        for s in r:
            try:
                s.recv(1)
            except OSError:
                pass
        shed += len(gone)
        live = [s for s in live if s not in gone]
        fds_held = fd_count()
        if fds_held <= fds_before + 5:
            break
    shed_secs = time.monotonic() - t0
    for th in probes:
        th.join(15)
    _, fds_peak = SAMPLER.window()
    for s in conns:
        s.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and fd_count() > fds_before + 5:
        time.sleep(0.1)
    fds_after = fd_count()
    st2, _, _, secs2 = request("GET", "/v1/streams", timeout=10)
    worst = max((n[2] for n in normal), default=float("inf"))
    answers = sorted({f"{n[0]}" + (f" {n[1]}" if n[1] else "") for n in normal})
    normal_ok = len(normal) == 8 and all(n[0] == 200 or (n[0] == 503 and n[1]) for n in normal)
    ok = (normal_ok and worst < 10 and fds_held <= fds_before + 5
          and fds_after <= fds_before + 5 and st2 == 200)
    report(ok, "6b 2,000 idle connections",
           f"server RLIMIT_NOFILE {nofile_of_server()}; 2000 connects: {established} established, "
           f"{refused} refused, {len(pending)} still pending after {open_secs:.1f}s; normal "
           f"requests meanwhile: {len(normal)}x {answers}, worst {worst:.2f}s; server fds before "
           f"{fds_before}, peak {fds_peak}, {fds_held} at {shed_secs:.1f}s with every client "
           f"socket still open (it closed {shed} idle ones itself; the rest never left the "
           f"kernel's full accept queue), {fds_after} after closing them; then GET {st2} in "
           f"{secs2 * 1000:.0f} ms")


def check_huge_headers():
    cases = [
        ("1 MiB header line", head("GET", "/v1/streams", ["X-Big: " + "a" * (1 << 20)])),
        ("10,000 headers", head("GET", "/v1/streams",
                                [f"X-H{i}: v" for i in range(10_000)])),
        ("1 MiB request target", head("GET", "/v1/streams/" + "n" * (1 << 20))),
        ("100,000 cookies in one line", head("GET", "/v1/streams",
                                             ["Cookie: " + "; ".join(f"c{i}=v" for i in range(100_000))])),
    ]
    parts, ok = [], True
    for label, data in cases:
        res = exchange(data, timeout=10)
        st = res["status"]
        good = (st in (400, 413, 414, 431)) or (st is None and res["closed"])
        ok &= bool(good)
        parts.append(f"{label}: {describe(res)}")
    alive = PROC.poll() is None
    hst = request("GET", "/healthz")[0] if alive else None
    ok &= alive and hst == 200
    report(ok, "7 huge headers", "; ".join(parts) + f"; server alive {alive}, /healthz {hst}")


def every_result_failed(body, count=None):
    """Whether a batch answer's every result is an error (and there are `count`)."""
    try:
        res = json.loads(body)["results"]
    except (ValueError, KeyError, TypeError):
        return False
    return bool(res) and all(json_error(json.dumps(r)) for r in res) and (
        count is None or len(res) == count)


def check_malformed_bodies():
    J = {"Content-Type": "application/json"}
    generic = [
        ("truncated", b'{"payload": '), ("garbage", b"{,}"), ("empty array bracket", b"[{]"),
        ("invalid UTF-8", b'{"payload":"\xff\xfe\xfd"}'), ("invalid UTF-8 bare", b"\xc3\x28"),
        ("NUL in string", b'{"payload":"a\x00b"}'), ("NULs", b"\x00\x00\x00\x00"),
        ("NUL before JSON", b"\x00{}"), ("deep nesting", b"[" * 100_000),
        ("number", b"123"), ("string", b'"x"'), ("null", b"null"),
        ("trailing garbage", b"{}}"), ("UTF-16", '{"payload":"x"}'.encode("utf-16")),
    ]
    routes = [
        # (label, method, path, headers, route-specific wrong types)
        ("PUT stream", "PUT", "/v1/streams/m8", J,
         [b'{"horizon":5}', b'{"partitions":"x"}', b'{"partitions":-1}',
          b'{"partitions":1e400}', b'{"horizon":"forever"}', b'{"nope":1}', b"[]"]),
        ("POST event", "POST", "/v1/streams/s/events", J,
         [b'{"key":5}', b'{"headers":[1]}', b'{"headers":{"a":1}}',
          b'{"payload_base64":"***"}', b'{"event_time":"yesterday"}', b"[]"]),
        ("POST CloudEvent", "POST", "/v1/streams/s/events",
         {"Content-Type": "application/cloudevents+json"},
         [b'{"specversion":"1.0"}', b'{"id":"1","source":"s","type":"t","specversion":"2"}',
          b'{"id":"1","source":"s","type":"t","specversion":"1.0","data_base64":5}', b"[]"]),
        ("POST batch", "POST", "/v1/streams/s/events/batch", J,
         [b'{"payload":"a"}', b'{"a":[]}']),
        ("POST batch NDJSON", "POST", "/v1/streams/s/events/batch",
         {"Content-Type": "application/x-ndjson"}, [b'{"payload":"\xff"}\n']),
        ("POST CloudEvents batch", "POST", "/v1/streams/s/events/batch",
         {"Content-Type": "application/cloudevents-batch+json"}, [b"{}"]),
        ("POST append", "POST", "/v1/streams/s/partitions/0/events", J,
         [b"[5]", b'[{"key":5}]', b"{}", b"[]", b'[{"payload_base64":"***"}]']),
        ("PUT checkpoint", "PUT", "/v1/streams/s/consumers/c/checkpoint", J,
         [b'{"0":5}', b'{"x":"after:1"}', b'{"0":"nowhere"}', b"[]"]),
        ("PUT webhook", "PUT", "/v1/streams/s/webhooks/w8", J,
         [b'{"url":5}', b'{"url":"not a url"}', b'{"url":"http://127.0.0.1:9/","batch_size":"a"}',
          b"[]"]),
    ]
    per_event = [
        # A batch parses each event alone: a body that is an array of bad events is a 200
        # whose every result is an error, by design.
        ("POST batch, array of wrong types", "POST", "/v1/streams/s/events/batch", J,
         b'[5,"x",null,{"key":5},{"payload_base64":"***"}]'),
    ]
    header_cases = [
        ("binary CloudEvent, ce-id not UTF-8", "/v1/streams/s/events",
         {"ce-specversion": "1.0", "ce-id": b"\xff\xfe".decode("latin-1"), "ce-source": "s",
          "ce-type": "t", "Content-Type": "application/octet-stream"}),
        ("raw event, cloudstream-key not UTF-8", "/v1/streams/s/events",
         {"cloudstream-key": b"\xc3\x28".decode("latin-1"),
          "Content-Type": "application/octet-stream"}),
        ("binary CloudEvent without id", "/v1/streams/s/events",
         {"ce-specversion": "1.0", "Content-Type": "application/octet-stream"}),
    ]
    bodyless = [
        ("POST fetch", "POST", "/v1/streams/s/consumers/c8/fetch?wait_ms=0"),
        ("POST commit", "POST", "/v1/streams/s/consumers/c8/commit?ack=nope"),
        ("PUT lease", "PUT", "/v1/streams/s/consumers/c8/leases/0?member=m"),
    ]
    sent, bad, statuses = 0, [], {}
    for label, method, path, hdrs, specific in routes:
        for blabel, body in generic + [("wrong type " + b.decode("latin-1")[:30], b)
                                       for b in specific]:
            if label == "PUT stream" and blabel == "null":
                continue  # a null body creates the stream with defaults, as documented
            sent += 1
            try:
                st, _, rbody, _ = request(method, path, body, hdrs)
            except OSError as e:
                bad.append(f"{label} {blabel}: {e.__class__.__name__}")
                continue
            code = json_error(rbody)
            if st == 200 and "NDJSON" in label and every_result_failed(rbody):
                # NDJSON is parsed line by line, each line an event that fails alone: a
                # 200 whose every result is an error, by design.
                code = "every result an error"
            statuses[f"{st} {code}"] = statuses.get(f"{st} {code}", 0) + 1
            if not ((400 <= st < 500 and code) or code == "every result an error"):
                bad.append(f"{label} {blabel}: {st} {rbody[:80]!r}")
    for label, method, path, hdrs, body in per_event:
        sent += 1
        st, _, rbody, _ = request(method, path, body, hdrs)
        all_failed = every_result_failed(rbody, 5)
        statuses[f"{st} every result an error"] = statuses.get(f"{st} every result an error", 0) + all_failed
        if not ((400 <= st < 500 and json_error(rbody)) or (st == 200 and all_failed)):
            bad.append(f"{label}: {st} {rbody[:120]!r}")
    for label, path, hdrs in header_cases:
        sent += 1
        st, _, rbody, _ = request("POST", path, b"data", hdrs)
        if not (400 <= st < 500 and json_error(rbody)):
            bad.append(f"{label}: {st} {rbody[:80]!r}")
    ignored = []
    for label, method, path in bodyless:
        for blabel, body in generic[:8]:
            sent += 1
            st, _, rbody, _ = request(method, path, body, J)
            ignored.append(st)
            if st >= 500 or (st >= 400 and not json_error(rbody)):
                bad.append(f"{label} {blabel}: {st} {rbody[:80]!r}")
    m8 = request("GET", "/v1/streams/m8")[0]
    w8 = request("GET", "/v1/streams/s/webhooks/w8")[0]
    if m8 != 404 or w8 != 404:
        bad.append(f"a malformed body created something: GET m8 {m8}, GET webhook w8 {w8}")
    report(not bad, "8 malformed bodies",
           f"{sent} requests over 12 POST/PUT routes; answers {dict(sorted(statuses.items()))}; "
           f"body-less routes ignored the garbage with {sorted(set(ignored))}; nothing created "
           f"(m8 {m8}, webhook w8 {w8})"
           + (f"; wrong: {bad[:10]}" + (" ..." if len(bad) > 10 else "") if bad else ""))


def check_still_serving():
    alive = PROC.poll() is None
    parts = [f"alive {alive}"]
    ok = alive
    if alive:
        st, _, body, _ = request("GET", "/healthz")
        ok &= st == 200
        parts.append(f"/healthz {st} {body.decode(errors='replace')}")
        st, _, _, _ = request("PUT", "/v1/streams/final-check", b'{"partitions":1}',
                              {"Content-Type": "application/json"})
        ok &= st == 201
        parts.append(f"create {st}")
        payload = bytes(range(256)) * 4 + b"\x00end"
        st1, _, b1, _ = request("POST", "/v1/streams/final-check/events", payload,
                                {"Content-Type": "application/octet-stream",
                                 "cloudstream-key": "k"})
        text = "h\u00e9llo \u2603 \U0001F600 \\ \" \u0000 ok"
        st2, _, b2, _ = request("POST", "/v1/streams/final-check/events",
                                json.dumps({"payload": text}).encode(),
                                {"Content-Type": "application/json"})
        st3, _, b3, _ = request("GET", "/v1/streams/final-check/records?from=earliest&partition=0&max=10")
        try:
            recs = json.loads(b3)["records"]
            import base64
            got1 = base64.b64decode(recs[0]["payload_base64"])
            got2 = recs[1]["payload"]
            same = got1 == payload and got2 == text and len(recs) == 2
        except (ValueError, KeyError, IndexError, TypeError) as e:
            same = False
            parts.append(f"read back unreadable: {e!r} {b3[:200]!r}")
        ok &= st1 == 201 and st2 == 201 and st3 == 200 and same
        parts.append(f"send bytes {st1}, send JSON {st2}, read {st3}, byte-for-byte {same}")
    report(ok, "9 still serving", "; ".join(parts) + f"; peak RSS (VmHWM) {proc_status('VmHWM') / 1024:.1f} MB")


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: abuse.py PATH/TO/cloudstream")
    binary = os.path.abspath(sys.argv[1])
    t_start = time.monotonic()
    atexit.register(stop_server)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM):
        signal.signal(sig, lambda *_: sys.exit("abuse: interrupted or out of time"))
    signal.alarm(170)
    start_server(binary)
    # Room for 2,000 client sockets and more (the server keeps its own limit, set above).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 8192 if hard == resource.RLIM_INFINITY else min(8192, hard)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    st, _, body, _ = request("PUT", "/v1/streams/s", b'{"partitions":2}',
                             {"Content-Type": "application/json"})
    if st != 201:
        sys.exit(f"abuse: cannot create stream s: {st} {body!r}")
    time.sleep(0.2)
    fds_baseline = fd_count()
    SAMPLER.start()
    print(f"abuse: server pid {PROC.pid} on {HOST}:{PORT}, data {DATA}, RLIMIT_NOFILE "
          f"{nofile_of_server()}, baseline RSS {proc_status('VmRSS') / 1024:.1f} MB, "
          f"fds {fds_baseline}", flush=True)
    checks = [check_oversized_bodies, check_too_many_events, check_hostile_names,
              check_slow_loris, check_slow_body, check_connections, check_huge_headers,
              check_malformed_bodies, check_still_serving]
    for check in checks:
        if PROC.poll() is not None:
            report(False, check.__name__, f"the server died (exit {PROC.returncode})")
            continue
        try:
            check()
        except Exception as e:  # a check that breaks is a failure, not a crash of the run
            report(False, check.__name__, f"the check raised {e!r}")
    # Every connection of ours is closed: the server's fds return to where they were.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and fd_count() > fds_baseline + 8:
        time.sleep(0.1)
    fds_end = fd_count()
    SAMPLER.sample()
    if fds_end > fds_baseline + 8 or fds_end < 0:
        report(False, "fds back to baseline", f"baseline {fds_baseline}, end {fds_end}")
    peak = max(SAMPLER.peak_rss, proc_status("VmHWM")) / 1024
    passed = sum(OUTCOMES)
    failed = len(OUTCOMES) - passed
    print(f"abuse: ran in {time.monotonic() - t_start:.0f}s; server log "
          f"{os.path.join(TMP, 'server.log')} ({'kept' if os.environ.get('ABUSE_KEEP') == '1' else 'removed'})",
          flush=True)
    print(f"abuse: {passed} passed, {failed} failed, peak RSS {peak:.1f} MB, "
          f"fds baseline {fds_baseline} peak {SAMPLER.peak_fds} end {fds_end}", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
