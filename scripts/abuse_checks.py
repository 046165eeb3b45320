"""The connection-level checks of scripts/abuse.py, and the raw-socket client they share
with its body checks.

Checks 4 to 7: slow-loris headers (4) and silent or idle connections (4b), silent and slow
bodies (5), the in-flight cap (6a) and 2,000 idle connections (6b), huge headers (7). Each
takes the harness.Server under test and abuse.py's Sampler, and prints its PASS/FAIL line
through harness.report. The limits here are those abuse.py starts the server with.

The client: `head` (a request head), `exchange` (sends bytes interleaved with reading, reads
one response), `parse_response`, `ready` (poll), `describe` (a result in a few words),
`watch` (sockets until the server ends them), `Prober` (a well-behaved client meanwhile).
Standard library only; Linux (/proc) only.
"""

import select
import socket
import threading
import time

from harness import HOST, json_error, report

HEADER_TIMEOUT = 2.0
REQUEST_TIMEOUT = 3.0
MAX_IN_FLIGHT = 64
# A check's timing slack on a loaded 2-core machine (debug build).
SLACK = 2.5


# --------------------------------------------------------------------------- the client


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


def exchange(srv, data, chunk=64 * 1024, pause=0.0, timeout=15.0, sock=None):
    """Sends `data` (interleaved with reading, so that an early answer is seen) and reads one
    response. Returns a dict: status/headers/body (None if none came), closed ("eof",
    "reset" or None), sent (bytes written before the answer or the close), seconds."""
    s = sock or socket.create_connection((HOST, srv.port), timeout=5)
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


def head(srv, method, path, extra=()):
    lines = [f"{method} {path} HTTP/1.1", f"Host: {HOST}:{srv.port}", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def describe(res):
    if res["status"] is not None:
        code = json_error(res["body"])
        return f"{res['status']}" + (f" {code}" if code else " (no JSON error)")
    return f"closed ({res['closed'] or 'timeout'})"


class Prober(threading.Thread):
    """A well-behaved client: GET /v1/streams every 200 ms, latencies recorded."""

    def __init__(self, srv, path="/v1/streams"):
        super().__init__(daemon=True)
        self.srv, self.path, self.stopped, self.samples = srv, path, False, []

    def run(self):
        while not self.stopped:
            try:
                status, _, _, secs = self.srv.request("GET", self.path, timeout=10)
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


# --------------------------------------------------------------------------- the checks


def check_slow_loris(srv, sampler):
    slow = [socket.create_connection((HOST, srv.port), timeout=5) for _ in range(50)]
    silent = [socket.create_connection((HOST, srv.port), timeout=5) for _ in range(20)]
    # Keep-alive connections left idle after one request.
    idle = []
    for _ in range(5):
        s = socket.create_connection((HOST, srv.port), timeout=5)
        s.sendall(head(srv, "GET", "/healthz"))
        buf = b""
        while not parse_response(buf):
            piece = s.recv(4096)
            if not piece:
                break
            buf += piece
        idle.append(s)
    for s in slow + silent + idle:
        s.setblocking(False)
    req = head(srv, "POST", "/v1/streams/s/events",
               ["User-Agent: slowloris", "X-Padding: " + "p" * 200, "Content-Length: 2"])
    prober = Prober(srv)
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


def check_slow_body(srv, sampler):
    cases = {}

    def conn(label, data):
        s = socket.create_connection((HOST, srv.port), timeout=5)
        s.sendall(data)
        s.setblocking(False)
        cases[s] = label
        return s

    json_ct = "Content-Type: application/json"
    conn("POST events, CL 1000, no body",
         head(srv, "POST", "/v1/streams/s/events", [json_ct, "Content-Length: 1000"]))
    conn("POST events, CL 1000, 500 sent",
         head(srv, "POST", "/v1/streams/s/events", [json_ct, "Content-Length: 1000"])
         + b'{"payload":"' + b"x" * 488)
    conn("POST batch, chunked, one chunk then silence",
         head(srv, "POST", "/v1/streams/s/events/batch", [json_ct, "Transfer-Encoding: chunked"])
         + b"5\r\n[{},{")
    conn("PUT stream, CL 1000, no body",
         head(srv, "PUT", "/v1/streams/slowbody", [json_ct, "Content-Length: 1000"]))
    conn("PUT checkpoint, CL 1000, no body",
         head(srv, "PUT", "/v1/streams/s/consumers/c/checkpoint",
              [json_ct, "Content-Length: 1000"]))
    conn("PUT webhook, CL 1000, no body",
         head(srv, "PUT", "/v1/streams/s/webhooks/slow", [json_ct, "Content-Length: 1000"]))
    trickle = conn("POST events, CL 1000, 1 byte/s",
                   head(srv, "POST", "/v1/streams/s/events", [json_ct, "Content-Length: 1000"]))
    prober = Prober(srv)
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


def check_connections(srv, sampler):
    # 6a: the in-flight cap answers 503 JSON, /healthz stays outside it, and it recovers.
    held = []
    for _ in range(MAX_IN_FLIGHT + 6):
        s = socket.create_connection((HOST, srv.port), timeout=5)
        s.sendall(head(srv, "POST", "/v1/streams/s/events",
                       ["Content-Type: application/json", "Content-Length: 1000"]))
        held.append(s)
    time.sleep(0.5)
    st, _, body, secs = srv.request("GET", "/v1/streams", timeout=10)
    code = json_error(body)
    hst, _, _, hsecs = srv.request("GET", "/healthz", timeout=10)
    for s in held:
        s.close()
    time.sleep(0.5)
    rst, _, _, rsecs = srv.request("GET", "/v1/streams", timeout=10)
    report(st == 503 and code is not None and hst == 200 and rst == 200,
           "6a in-flight cap",
           f"{len(held)} requests holding their bodies back: GET /v1/streams {st} {code} in "
           f"{secs * 1000:.0f} ms, /healthz {hst} in {hsecs * 1000:.0f} ms; once they went, "
           f"GET /v1/streams {rst} in {rsecs * 1000:.0f} ms")

    # 6b: 2,000 idle connections, opened at once: more than the server's fds (with the
    # default limit of 1024), so it sits at EMFILE with its accept queue full.
    time.sleep(0.3)
    fds_before = srv.fd_count()
    sampler.window()
    conns = []
    t0 = time.monotonic()
    for _ in range(2000):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex((HOST, srv.port))
        conns.append(s)
    # A well-behaved client meanwhile: 8 requests 250 ms apart, each must be answered (200,
    # or 503 with a JSON error) well before its 12 s timeout.
    normal = []

    def one_normal():
        t = time.monotonic()
        try:
            st, _, body, secs = srv.request("GET", "/v1/streams", timeout=12)
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
    fds_held = srv.fd_count()
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
        fds_held = srv.fd_count()
        if fds_held <= fds_before + 5:
            break
    shed_secs = time.monotonic() - t0
    for th in probes:
        th.join(15)
    _, fds_peak = sampler.window()
    for s in conns:
        s.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and srv.fd_count() > fds_before + 5:
        time.sleep(0.1)
    fds_after = srv.fd_count()
    st2, _, _, secs2 = srv.request("GET", "/v1/streams", timeout=10)
    worst = max((n[2] for n in normal), default=float("inf"))
    answers = sorted({f"{n[0]}" + (f" {n[1]}" if n[1] else "") for n in normal})
    # Over the connection cap, a request gets a 503 with a JSON body or, when the server is
    # answering many refusals at once, a closed connection: never a hang.
    normal_ok = len(normal) == 8 and all(
        n[0] == 200 or (n[0] == 503 and n[1]) or str(n[0]).startswith("no answer (Connection")
        for n in normal)
    ok = (normal_ok and worst < 10 and fds_held <= fds_before + 5
          and fds_after <= fds_before + 5 and st2 == 200)
    report(ok, "6b 2,000 idle connections",
           f"server RLIMIT_NOFILE {srv.nofile_limit()}; 2000 connects: {established} established, "
           f"{refused} refused, {len(pending)} still pending after {open_secs:.1f}s; normal "
           f"requests meanwhile: {len(normal)}x {answers}, worst {worst:.2f}s; server fds before "
           f"{fds_before}, peak {fds_peak}, {fds_held} at {shed_secs:.1f}s with every client "
           f"socket still open (it closed {shed} idle ones itself; the rest never left the "
           f"kernel's full accept queue), {fds_after} after closing them; then GET {st2} in "
           f"{secs2 * 1000:.0f} ms")


def check_huge_headers(srv, sampler):
    cases = [
        ("1 MiB header line", head(srv, "GET", "/v1/streams", ["X-Big: " + "a" * (1 << 20)])),
        ("10,000 headers", head(srv, "GET", "/v1/streams",
                                [f"X-H{i}: v" for i in range(10_000)])),
        ("1 MiB request target", head(srv, "GET", "/v1/streams/" + "n" * (1 << 20))),
        ("100,000 cookies in one line", head(srv, "GET", "/v1/streams",
                                             ["Cookie: " + "; ".join(f"c{i}=v" for i in range(100_000))])),
    ]
    parts, ok = [], True
    for label, data in cases:
        res = exchange(srv, data, timeout=10)
        st = res["status"]
        good = (st in (400, 413, 414, 431)) or (st is None and res["closed"])
        ok &= bool(good)
        parts.append(f"{label}: {describe(res)}")
    alive = srv.alive()
    hst = srv.request("GET", "/healthz")[0] if alive else None
    ok &= alive and hst == 200
    report(ok, "7 huge headers", "; ".join(parts) + f"; server alive {alive}, /healthz {hst}")
