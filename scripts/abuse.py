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
temporary directory removed (ABUSE_KEEP=1 keeps it, with the server's log). Standard library
only; Linux (/proc) only.

The checks of bodies, names and the final round trip (1, 2, 3, 8, 9) are here; the
connection-level ones (4 to 7) and the raw-socket client are in scripts/abuse_checks.py;
starting and measuring the server, and the PASS/FAIL lines, in scripts/harness.py.
"""

import atexit
import json
import os
import resource
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import HOST, Server, counts, json_error, report  # noqa: E402
from abuse_checks import (  # noqa: E402
    HEADER_TIMEOUT, MAX_IN_FLIGHT, REQUEST_TIMEOUT, check_connections, check_huge_headers,
    check_slow_body, check_slow_loris, describe, exchange, head)

MAX_BODY = 1 << 20
MAX_BATCH = 100
# Below the 2,000 idle connections of check 6b: those over it are answered 503 and closed.
MAX_CONNECTIONS = 500
SERVER_NOFILE = int(os.environ.get("ABUSE_SERVER_NOFILE", "1024"))

# Nested, so that a traversal of up to three `..` still lands inside the temporary
# directory, where the before/after listing of check 3 sees it.
SERVER = Server("abuse", data_path=("a", "b", "data"), nofile=SERVER_NOFILE)


# --------------------------------------------------------------------------- the server


class Sampler(threading.Thread):
    """Samples the server's RSS and open fds every 50 ms: the peak over the run, and the
    peak over a window that each check restarts."""

    def __init__(self, srv):
        super().__init__(daemon=True)
        self.srv = srv
        self.lock = threading.Lock()
        self.stopped = False
        self.peak_rss = self.peak_fds = 0
        self.win_rss = self.win_fds = 0

    def sample(self):
        rss, fds = self.srv.rss_kb("VmRSS"), self.srv.fd_count()
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


SAMPLER = Sampler(SERVER)


def stop():
    SAMPLER.stopped = True
    SERVER.stop()


# --------------------------------------------------------------------------- the checks


def check_oversized_bodies(srv, sampler):
    base = srv.rss_kb("VmRSS")
    sampler.window()
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
        res = exchange(srv, head(srv, "POST", path, extra) + body, pause=0.002, timeout=15)
        ok = (res["status"] == 413 and json_error(res["body"]) is not None) or (
            res["status"] is None and res["closed"] is not None)
        lines.append(f"{label}: {describe(res)} after {res['sent'] / 1e6:.1f} MB sent, "
                     f"{res['seconds']:.2f}s")
        if not ok:
            bad.append(label)
    rss_peak, _ = sampler.window()
    # Sixteen at once, chunked: each may be buffered up to the limit, no further.
    results = [None] * 16

    def one(i):
        extra = ["Content-Type: application/json", "Transfer-Encoding: chunked"]
        part = b"a" * (64 * 1024)
        body = (b"%x\r\n" % len(part) + part + b"\r\n") * 48  # 3 MiB
        results[i] = exchange(srv, head(srv, "POST", "/v1/streams/s/events/batch", extra) + body,
                              pause=0.001, timeout=20)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    conc_peak, _ = sampler.window()
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


def check_too_many_events(srv, sampler):
    parts, ok = [], True
    over = ("[" + ",".join(["{}"] * (MAX_BATCH + 1)) + "]").encode()
    status, _, body, secs = srv.request("POST", "/v1/streams/s/events/batch", over,
                                        {"Content-Type": "application/json"})
    code = json_error(body)
    ok &= status == 413 and code is not None
    parts.append(f"JSON array of {MAX_BATCH + 1}: {status} {code}")
    nd = ("\n".join(["{}"] * (MAX_BATCH + 1))).encode()
    status, _, body, _ = srv.request("POST", "/v1/streams/s/events/batch", nd,
                                     {"Content-Type": "application/x-ndjson"})
    code = json_error(body)
    ok &= status == 413 and code is not None
    parts.append(f"NDJSON of {MAX_BATCH + 1}: {status} {code}")
    status, _, body, _ = srv.request("POST", "/v1/streams/s/partitions/0/events", over,
                                     {"Content-Type": "application/json"})
    code = json_error(body)
    ok &= status == 413 and code is not None
    parts.append(f"append of {MAX_BATCH + 1}: {status} {code}")
    # A million `{}` inside the 1 MiB limit: refused at the count, quickly.
    huge = b"[" + b",".join([b"{}"] * 300_000) + b"]"
    status, _, body, secs = srv.request("POST", "/v1/streams/s/events/batch", huge,
                                        {"Content-Type": "application/json"})
    code = json_error(body)
    ok &= status == 413 and code is not None
    parts.append(f"300,000 in {len(huge) // 1024} KiB: {status} {code} in {secs:.2f}s")
    at_limit = ("[" + ",".join(['{"payload":"x"}'] * MAX_BATCH) + "]").encode()
    status, _, body, _ = srv.request("POST", "/v1/streams/s/events/batch", at_limit,
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


def check_hostile_names(srv, sampler):
    before = tree(srv.tmp)
    bad, codes = [], {}
    for label, seg in HOSTILE_NAMES:
        for method in ("PUT", "GET", "DELETE"):
            extra = ["Content-Length: 0", "Connection: close"]
            res = exchange(srv, head(srv, method, f"/v1/streams/{seg}", extra), timeout=10)
            code = json_error(res["body"]) if res["status"] else None
            if not (res["status"] and 400 <= res["status"] < 500 and code):
                bad.append(f"{method} {label}: {describe(res)}")
            elif method == "PUT":
                codes[f"{res['status']} {code}"] = codes.get(f"{res['status']} {code}", 0) + 1
    # Also the bare collection with a trailing slash and a literal `../` segment.
    for path in ("/v1/streams/", "/v1/streams/../streams", "/v1/streams/x/../../streams"):
        res = exchange(srv, head(srv, "PUT", path, ["Content-Length: 0"]), timeout=10)
        if not (res["status"] and 400 <= res["status"] < 500 and json_error(res["body"])):
            bad.append(f"PUT {path}: {describe(res)}")
    after = tree(srv.tmp)
    appeared, vanished = sorted(after - before), sorted(before - after)
    # A valid name still works, and creates only its own directory.
    valid = "valid_Name-1.x"
    status, _, _, _ = srv.request("PUT", f"/v1/streams/{valid}", b'{"partitions":1}',
                                  {"Content-Type": "application/json"})
    s2, _, _, _ = srv.request("POST", f"/v1/streams/{valid}/events", b'{"payload":"ok"}',
                              {"Content-Type": "application/json"})
    new = sorted(tree(srv.tmp) - after)
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


def every_result_failed(body, count=None):
    """Whether a batch answer's every result is an error (and there are `count`)."""
    try:
        res = json.loads(body)["results"]
    except (ValueError, KeyError, TypeError):
        return False
    return bool(res) and all(json_error(json.dumps(r)) for r in res) and (
        count is None or len(res) == count)


def check_malformed_bodies(srv, sampler):
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
                st, _, rbody, _ = srv.request(method, path, body, hdrs)
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
        st, _, rbody, _ = srv.request(method, path, body, hdrs)
        all_failed = every_result_failed(rbody, 5)
        statuses[f"{st} every result an error"] = statuses.get(f"{st} every result an error", 0) + all_failed
        if not ((400 <= st < 500 and json_error(rbody)) or (st == 200 and all_failed)):
            bad.append(f"{label}: {st} {rbody[:120]!r}")
    for label, path, hdrs in header_cases:
        sent += 1
        st, _, rbody, _ = srv.request("POST", path, b"data", hdrs)
        if not (400 <= st < 500 and json_error(rbody)):
            bad.append(f"{label}: {st} {rbody[:80]!r}")
    ignored = []
    for label, method, path in bodyless:
        for blabel, body in generic[:8]:
            sent += 1
            st, _, rbody, _ = srv.request(method, path, body, J)
            ignored.append(st)
            if st >= 500 or (st >= 400 and not json_error(rbody)):
                bad.append(f"{label} {blabel}: {st} {rbody[:80]!r}")
    m8 = srv.request("GET", "/v1/streams/m8")[0]
    w8 = srv.request("GET", "/v1/streams/s/webhooks/w8")[0]
    if m8 != 404 or w8 != 404:
        bad.append(f"a malformed body created something: GET m8 {m8}, GET webhook w8 {w8}")
    report(not bad, "8 malformed bodies",
           f"{sent} requests over 12 POST/PUT routes; answers {dict(sorted(statuses.items()))}; "
           f"body-less routes ignored the garbage with {sorted(set(ignored))}; nothing created "
           f"(m8 {m8}, webhook w8 {w8})"
           + (f"; wrong: {bad[:10]}" + (" ..." if len(bad) > 10 else "") if bad else ""))


def check_still_serving(srv, sampler):
    alive = srv.alive()
    parts = [f"alive {alive}"]
    ok = alive
    if alive:
        st, _, body, _ = srv.request("GET", "/healthz")
        ok &= st == 200
        parts.append(f"/healthz {st} {body.decode(errors='replace')}")
        st, _, _, _ = srv.request("PUT", "/v1/streams/final-check", b'{"partitions":1}',
                                  {"Content-Type": "application/json"})
        ok &= st == 201
        parts.append(f"create {st}")
        payload = bytes(range(256)) * 4 + b"\x00end"
        st1, _, b1, _ = srv.request("POST", "/v1/streams/final-check/events", payload,
                                    {"Content-Type": "application/octet-stream",
                                     "cloudstream-key": "k"})
        text = "h\u00e9llo \u2603 \U0001F600 \\ \" \u0000 ok"
        st2, _, b2, _ = srv.request("POST", "/v1/streams/final-check/events",
                                    json.dumps({"payload": text}).encode(),
                                    {"Content-Type": "application/json"})
        st3, _, b3, _ = srv.request(
            "GET", "/v1/streams/final-check/records?from=earliest&partition=0&max=10")
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
    report(ok, "9 still serving",
           "; ".join(parts) + f"; peak RSS (VmHWM) {srv.rss_kb('VmHWM') / 1024:.1f} MB")


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: abuse.py PATH/TO/cloudstream")
    binary = os.path.abspath(sys.argv[1])
    t_start = time.monotonic()
    atexit.register(stop)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM):
        signal.signal(sig, lambda *_: sys.exit("abuse: interrupted or out of time"))
    signal.alarm(170)
    SERVER.start(binary, [
        "--header-timeout", f"{int(HEADER_TIMEOUT)}s",
        "--request-timeout", f"{int(REQUEST_TIMEOUT)}s",
        "--max-body-bytes", str(MAX_BODY), "--max-batch-events", str(MAX_BATCH),
        "--max-in-flight", str(MAX_IN_FLIGHT), "--max-connections", str(MAX_CONNECTIONS)])
    # Room for 2,000 client sockets and more (the server keeps its own limit, set above).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 8192 if hard == resource.RLIM_INFINITY else min(8192, hard)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    st, _, body, _ = SERVER.request("PUT", "/v1/streams/s", b'{"partitions":2}',
                                    {"Content-Type": "application/json"})
    if st != 201:
        sys.exit(f"abuse: cannot create stream s: {st} {body!r}")
    time.sleep(0.2)
    fds_baseline = SERVER.fd_count()
    SAMPLER.start()
    print(f"abuse: server pid {SERVER.proc.pid} on {HOST}:{SERVER.port}, data {SERVER.data}, "
          f"RLIMIT_NOFILE {SERVER.nofile_limit()}, baseline RSS "
          f"{SERVER.rss_kb('VmRSS') / 1024:.1f} MB, fds {fds_baseline}", flush=True)
    checks = [check_oversized_bodies, check_too_many_events, check_hostile_names,
              check_slow_loris, check_slow_body, check_connections, check_huge_headers,
              check_malformed_bodies, check_still_serving]
    for check in checks:
        if not SERVER.alive():
            report(False, check.__name__, f"the server died (exit {SERVER.proc.returncode})")
            continue
        try:
            check(SERVER, SAMPLER)
        except Exception as e:  # a check that breaks is a failure, not a crash of the run
            report(False, check.__name__, f"the check raised {e!r}")
    # Every connection of ours is closed: the server's fds return to where they were.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and SERVER.fd_count() > fds_baseline + 8:
        time.sleep(0.1)
    fds_end = SERVER.fd_count()
    SAMPLER.sample()
    if fds_end > fds_baseline + 8 or fds_end < 0:
        report(False, "fds back to baseline", f"baseline {fds_baseline}, end {fds_end}")
    peak = max(SAMPLER.peak_rss, SERVER.rss_kb("VmHWM")) / 1024
    passed, failed = counts()
    print(f"abuse: ran in {time.monotonic() - t_start:.0f}s; server log {SERVER.log_path} "
          f"({'kept' if SERVER.keep else 'removed'})", flush=True)
    print(f"abuse: {passed} passed, {failed} failed, peak RSS {peak:.1f} MB, "
          f"fds baseline {fds_baseline} peak {SAMPLER.peak_fds} end {fds_end}", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
