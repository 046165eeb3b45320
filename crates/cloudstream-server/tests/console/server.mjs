// Starts and stops a real `cloudstream serve` for the console's browser tests: a fresh
// temporary directory (data, state, tokens file, log), `--listen 127.0.0.1:0`, the bound
// address read from the line the server prints (`serving local on http://127.0.0.1:PORT`),
// then /healthz polled; 30 s to come up, or the error carries the server's log. Stopping
// sends SIGTERM, SIGKILL after 10 s, and removes the directory. Every server started is
// remembered so that `stopAll` (and, as a last resort, the process's exit) ends them all.

import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const STARTUP_MS = 30_000;
const STOP_GRACE_MS = 10_000;
const running = new Set();

/** The SHA-256 of a token in lowercase hex: what a tokens file holds. */
export function tokenHash(token) {
  return createHash("sha256").update(token, "utf8").digest("hex");
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Starts `bin serve`. `tokens`: optional [{token, scope, streams}] written as a tokens file
 * (`SHA256-HEX SCOPE STREAMS` per line) and passed with `--tokens`.
 * Returns {url, dir, log(), stop(), request(method, path, {token, json, body, headers})}.
 */
export async function startServer(bin, { name = "server", tokens } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "cloudstream-console-"));
  const logPath = path.join(dir, "server.log");
  const args = ["--url", `local://${dir}/data`, "serve", "--listen", "127.0.0.1:0", "--state-dir", `${dir}/state`];
  if (tokens) {
    const file = path.join(dir, "tokens");
    const lines = tokens.map((t) => `${tokenHash(t.token)} ${t.scope} ${t.streams}`);
    fs.writeFileSync(file, `# written by the console tests\n${lines.join("\n")}\n`, { mode: 0o600 });
    args.push("--tokens", file);
  }
  const logFd = fs.openSync(logPath, "a");
  let child;
  try {
    child = spawn(bin, args, { stdio: ["ignore", logFd, logFd], env: { ...process.env, RUST_BACKTRACE: "1" } });
  } finally {
    fs.closeSync(logFd);
  }
  let exited = null;
  const exit = new Promise((resolve) => {
    child.on("exit", (code, signal) => {
      exited = signal ? `signal ${signal}` : `code ${code}`;
      resolve();
    });
    child.on("error", (e) => {
      exited = `spawn error: ${e.message}`;
      resolve();
    });
  });
  const log = () => {
    try {
      return fs.readFileSync(logPath, "utf8");
    } catch {
      return "";
    }
  };

  let stopped = false;
  const server = {
    name,
    dir,
    url: null,
    pid: child.pid,
    log,
    /** SIGTERM, SIGKILL after 10 s; then the directory goes. Safe to call twice. */
    async stop() {
      if (stopped) return;
      stopped = true;
      if (exited === null) {
        child.kill("SIGTERM");
        const killed = await Promise.race([exit.then(() => false), sleep(STOP_GRACE_MS).then(() => true)]);
        if (killed && exited === null) {
          child.kill("SIGKILL");
          await exit;
        }
      }
      running.delete(server);
      fs.rmSync(dir, { recursive: true, force: true });
    },
    killNow() {
      if (exited === null) child.kill("SIGKILL");
    },
    /** A request to this server; the answer's status and JSON body (or text). */
    async request(method, p, { token, json, body, headers = {} } = {}) {
      const h = { ...headers };
      if (token) h.authorization = `Bearer ${token}`;
      if (json !== undefined) {
        h["content-type"] = "application/json";
        body = JSON.stringify(json);
      }
      const response = await fetch(server.url + p, { method, headers: h, body, signal: AbortSignal.timeout(15_000) });
      const text = await response.text();
      let parsed = text;
      try {
        parsed = text ? JSON.parse(text) : null;
      } catch {
        // not JSON (metrics, HTML): the text itself
      }
      return { status: response.status, body: parsed };
    },
  };
  running.add(server);

  const fail = async (why) => {
    const text = log();
    await server.stop();
    throw new Error(`${name}: ${why}; its log:\n${text || "(empty)"}`);
  };
  const deadline = Date.now() + STARTUP_MS;
  while (server.url === null) {
    if (exited !== null) await fail(`the server exited (${exited}) before listening`);
    if (Date.now() > deadline) await fail(`the server printed no address within ${STARTUP_MS / 1000} s`);
    const match = log().match(/\bon (https?:\/\/[0-9.:[\]a-z]+)/i);
    if (match) server.url = match[1].replace(/\/$/, "");
    else await sleep(50);
  }
  for (;;) {
    if (exited !== null) await fail(`the server exited (${exited}) before /healthz answered`);
    if (Date.now() > deadline) await fail(`/healthz did not answer 200 within ${STARTUP_MS / 1000} s`);
    try {
      const response = await fetch(`${server.url}/healthz`, { signal: AbortSignal.timeout(1000) });
      if (response.status === 200) break;
    } catch {
      // not up yet
    }
    await sleep(100);
  }
  return server;
}

/** Stops every server still running. */
export async function stopAll() {
  await Promise.all([...running].map((s) => s.stop()));
}

// Last resort (an exception nobody caught, process.exit): no server outlives the tests.
process.on("exit", () => {
  for (const server of running) {
    server.killNow();
    fs.rmSync(server.dir, { recursive: true, force: true });
  }
});
