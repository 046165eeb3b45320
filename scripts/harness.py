"""What scripts/abuse.py and scripts/soak.py share: `cloudstream serve` on a free loopback
port over a fresh temporary `local://` data directory (class Server: start, stop, the
process's RSS and open fds, one request on a new connection), and the PASS/FAIL lines of
the checks with their count (report, counts).

A Server named NAME makes its temporary directory with the prefix `cloudstream-NAME-`,
writes the server's output to `server.log` in it, prefixes its fatal messages with `NAME:`,
and removes the directory on stop unless the environment variable NAME_KEEP (ABUSE_KEEP,
SOAK_KEEP) is 1. Standard library only; Linux (/proc) only.
"""

import http.client
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HOST = "127.0.0.1"
OUTCOMES = []


def report(ok, name, detail):
    """One check's line, `PASS name: detail` or `FAIL name: detail`, and its outcome counted."""
    OUTCOMES.append(bool(ok))
    print(f"{'PASS' if ok else 'FAIL'} {name}: {detail}", flush=True)


def counts():
    """(passed, failed) of the checks reported so far."""
    passed = sum(OUTCOMES)
    return passed, len(OUTCOMES) - passed


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


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


class Server:
    """One `cloudstream serve` process: its port, temporary directory and data directory.

    data_path: the data directory's path under the temporary directory; url_query: appended
    to the `local://` URL; nofile: the server's soft RLIMIT_NOFILE (0: inherited); unset:
    environment variables not passed on, besides CLOUDSTREAM_URL and RUST_LOG."""

    def __init__(self, name, data_path=("data",), url_query="", nofile=0, unset=()):
        self.name = name
        self.data_path = data_path
        self.url_query = url_query
        self.nofile = nofile
        self.unset = ("CLOUDSTREAM_URL", "RUST_LOG", *unset)
        self.proc = None
        self.port = 0
        self.tmp = None
        self.data = None

    @property
    def log_path(self):
        return os.path.join(self.tmp, "server.log")

    @property
    def keep(self):
        """Whether stop() keeps the temporary directory (NAME_KEEP=1)."""
        return os.environ.get(f"{self.name.upper()}_KEEP") == "1"

    def start(self, binary, extra_args=()):
        """Starts the server and waits (up to 30 s) for /healthz; exits the script if it
        does not come up."""
        self.tmp = tempfile.mkdtemp(prefix=f"cloudstream-{self.name}-")
        self.data = os.path.join(self.tmp, *self.data_path)
        os.makedirs(self.data)
        self.port = free_port()
        nofile = self.nofile

        def limit_fds():
            if nofile > 0:
                _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
                resource.setrlimit(resource.RLIMIT_NOFILE, (min(nofile, hard), hard))

        env = {k: v for k, v in os.environ.items() if k not in self.unset}
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [binary, "serve", "--listen", f"{HOST}:{self.port}",
                 "--url", f"local://{self.data}{self.url_query}", *extra_args],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                preexec_fn=limit_fds if nofile > 0 else None, start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                sys.exit(f"{self.name}: the server exited with {self.proc.returncode}; see "
                         f"its log:\n" + self.log())
            try:
                if self.request("GET", "/healthz", timeout=1)[0] == 200:
                    return
            except (OSError, http.client.HTTPException):
                pass
            time.sleep(0.1)
        sys.exit(f"{self.name}: the server did not answer /healthz within 30 s")

    def stop(self):
        """Stops the server (SIGTERM, SIGKILL after 5 s) and removes the temporary directory
        unless NAME_KEEP=1. Safe to call more than once."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.tmp and not self.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log(self):
        """The server's output so far, or "" once it is gone."""
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def rss_kb(self, field="VmRSS"):
        """A field of /proc/PID/status in kB (VmRSS, VmHWM), or 0 once the process is gone."""
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith(field + ":"):
                        return int(line.split()[1])
        except OSError:
            pass
        return 0

    def fd_count(self):
        """The server's open fds, or -1 once the process is gone."""
        try:
            return len(os.listdir(f"/proc/{self.proc.pid}/fd"))
        except OSError:
            return -1

    def nofile_limit(self):
        """The server's soft RLIMIT_NOFILE, as /proc/PID/limits shows it, or "?"."""
        try:
            with open(f"/proc/{self.proc.pid}/limits") as f:
                for line in f:
                    if line.startswith("Max open files"):
                        return line.split()[3]
        except OSError:
            pass
        return "?"

    def request(self, method, path, body=None, headers=None, timeout=10):
        """One request on a new connection: (status, headers, body, seconds)."""
        t0 = time.monotonic()
        conn = http.client.HTTPConnection(HOST, self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            data = r.read()
            return (r.status, {k.lower(): v for k, v in r.getheaders()}, data,
                    time.monotonic() - t0)
        finally:
            conn.close()
