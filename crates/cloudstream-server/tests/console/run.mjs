// The web console's end-to-end browser tests: starts a real `cloudstream serve` (and, for the
// scenarios that need one, a second server with --tokens or a webhook receiver), drives
// headless Chromium through playwright-core over the console pages, and checks what the
// pages show against the API. Each scenario gets its own browser context (so its own
// session storage), its own streams, a 1280x800 viewport and UTC as time zone; any console
// error, uncaught page error or Content Security Policy violation fails it. Screenshots of
// the pages go to the directory given (NN-what.png, failures as NN-N-scenario-failed.png;
// the NN-*.png of an earlier run there are removed first).
//
// helpers.mjs holds the expectations and locators, scenarios.mjs lists the scenarios (some
// in scenarios2.mjs and scenarios3.mjs), units.mjs checks the pure modules (prom.js) under
// node as the first scenario, server.mjs starts servers, receiver.mjs receives webhook POSTs.
//
// Usage (scripts/console.sh installs the tools and runs this):
//   PLAYWRIGHT_CORE=.../node_modules/playwright-core CHROMIUM=/usr/bin/chromium \
//     node crates/cloudstream-server/tests/console/run.mjs BIN [SCREENSHOT_DIR]
// CONSOLE_ONLY=REGEX runs only the scenarios whose name matches.
// Output: one line per scenario (`ok  name (ms)` / `FAIL name: error`), then
//   console: N scenarios passed, M failed, first page in X ms
// and exit status 1 if any failed or none ran.

import fs from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";

import { EXPECT_MS, firstLine } from "./helpers.mjs";
import { startReceiver } from "./receiver.mjs";
import { startServer, stopAll } from "./server.mjs";
import { scenarios } from "./scenarios.mjs";

const SCENARIO_MS = 90_000;

const [binArg, shotsArg] = process.argv.slice(2);
if (!binArg) {
  console.error("usage: run.mjs BIN [SCREENSHOT_DIR]");
  process.exit(2);
}
const BIN = path.resolve(binArg);
const SHOTS = path.resolve(shotsArg ?? "target/console-screenshots");
if (!fs.existsSync(BIN)) {
  console.error(`console: no binary at ${BIN}`);
  process.exit(2);
}
fs.mkdirSync(SHOTS, { recursive: true });
for (const old of fs.readdirSync(SHOTS)) if (/^\d\d-.*\.png$/.test(old)) fs.rmSync(path.join(SHOTS, old));

const { chromium } = createRequire(import.meta.url)(process.env.PLAYWRIGHT_CORE ?? "playwright-core");

// Stop everything on Ctrl-C or a TERM from CI, not only at the end.
let browser = null;
let cleaning = null;
let interrupted = false;
async function cleanup() {
  cleaning ??= (async () => {
    await browser?.close().catch(() => {});
    await stopAll();
  })();
  return cleaning;
}
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, async () => {
    interrupted = true;
    console.error(`console: ${signal}: stopping`);
    await cleanup();
    process.exit(signal === "SIGINT" ? 130 : 143);
  });
}

let shotNumber = 0;
const slug = (text) => text.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "");

// Chrome logs a fetch answered 4xx/5xx as a console error; a scenario may say which
// statuses its pages expect (a read-only token meeting 401/403), and only those pass.
const HTTP_FAILURE = /^Failed to load resource: the server responded with a status of (\d{3})/;

/** What a scenario gets: the server, pages that record their errors, screenshots, steps. */
function harness(name, context, results) {
  const errors = [];
  const cleanups = [];
  const t = {
    name,
    server: results.server,
    at: "start",
    /** Names the step under way, for the failure message. */
    step(what) {
      t.at = what;
    },
    /** A new page (1280x800) whose console errors, page errors and CSP violations fail the scenario. */
    async page({ allowHttp = [] } = {}) {
      if (!context) throw new Error("this scenario runs without a browser");
      const page = await context.newPage();
      page.setDefaultTimeout(EXPECT_MS);
      page.setDefaultNavigationTimeout(30_000);
      page.on("console", (message) => {
        const text = message.text();
        const csp = /Content[- ]Security[- ]Policy|CSP violation/i.test(text);
        if (message.type() !== "error" && !csp) return;
        const http = text.match(HTTP_FAILURE);
        if (!csp && http && allowHttp.includes(Number(http[1]))) return;
        const where = message.location()?.url ? ` (${message.location().url})` : "";
        errors.push(`${/^CSP violation:/.test(text) ? "" : csp ? "CSP violation: " : "console error: "}${text}${where}`);
      });
      page.on("pageerror", (error) => {
        const at = (error.stack ?? "").split("\n").find((l) => /^\s+at /.test(l))?.trim();
        errors.push(`page error: ${firstLine(error.message)}${at ? ` (${at})` : ""}`);
      });
      page.on("crash", () => errors.push("the page crashed"));
      return page;
    },
    /** A screenshot into the screenshot directory, as NN-what.png. */
    async shot(page, what) {
      shotNumber += 1;
      const file = path.join(SHOTS, `${String(shotNumber).padStart(2, "0")}-${slug(what)}.png`);
      await page.screenshot({ path: file, fullPage: true });
      return file;
    },
    /** Records the first page's load time (shown on the summary line). */
    firstPage(ms) {
      results.firstPageMs = ms;
    },
    /** Another server, stopped when the scenario ends. */
    async startServer(options) {
      const server = await startServer(BIN, options);
      cleanups.push(() => server.stop());
      return server;
    },
    /** A webhook receiver, closed when the scenario ends. */
    async receiver() {
      const receiver = await startReceiver();
      cleanups.push(() => receiver.close());
      return receiver;
    },
    errors,
    cleanups,
  };
  return t;
}

async function runScenario(number, scenario, results) {
  const started = Date.now();
  // A scenario with `browser: false` (unit checks run by node) gets no context.
  const context = scenario.browser === false ? null : await browser.newContext({
    viewport: { width: 1280, height: 800 },
    timezoneId: "UTC",
    locale: "en-US",
  });
  // CSP violations reach the console too, but say so plainly whatever Chrome's wording.
  await context?.addInitScript(() => {
    document.addEventListener("securitypolicyviolation", (e) => {
      console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI || "inline"} at ${e.sourceFile}:${e.lineNumber}`);
    });
  });
  const t = harness(scenario.name, context, results);
  let failure = null;
  let timer;
  try {
    await Promise.race([
      scenario.run(t),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`took over ${SCENARIO_MS / 1000} s`)), SCENARIO_MS);
      }),
    ]);
    // Errors a page logs while the last expectation was met count too.
    await new Promise((resolve) => setTimeout(resolve, 200));
    if (t.errors.length) failure = `the page reported: ${t.errors.join(" | ")}`;
  } catch (e) {
    failure = `at step "${t.at}": ${firstLine(e.message)}`;
    if (t.errors.length) failure += ` [page: ${t.errors.join(" | ")}]`;
  } finally {
    clearTimeout(timer);
  }
  if (failure) {
    for (const page of context?.pages() ?? []) {
      await t.shot(page, `${number}-${scenario.name}-failed`).catch(() => {});
    }
  }
  await context?.close().catch(() => {});
  for (const done of t.cleanups.reverse()) await done().catch(() => {});
  const ms = Date.now() - started;
  if (interrupted) return;
  if (failure) {
    results.failed += 1;
    console.log(`FAIL ${scenario.name}: ${failure.replace(/\s+/g, " ")}`);
  } else {
    results.passed += 1;
    console.log(`ok  ${scenario.name} (${ms} ms)`);
  }
}

async function main() {
  const results = { passed: 0, failed: 0, firstPageMs: null, server: null };
  try {
    browser = await chromium.launch({
      executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
      headless: true,
      timeout: 30_000,
      args: [
        "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-default-apps", "--disable-extensions",
      ],
    });
  } catch (e) {
    // The first line as the summary; Playwright's own details (the browser's log) after it.
    const [, ...details] = String(e.message).split("\n");
    console.error(`console: the browser did not start: ${firstLine(e.message)}`);
    if (details.some((l) => l.trim())) console.error(details.join("\n"));
    return 1;
  }
  console.log(`console: Chromium ${browser.version()}, server ${BIN}, screenshots in ${SHOTS}`);
  results.server = await startServer(BIN, { name: "server" });
  console.log(`console: server on ${results.server.url}`);

  const only = process.env.CONSOLE_ONLY ? new RegExp(process.env.CONSOLE_ONLY) : null;
  let number = 0;
  for (const scenario of scenarios) {
    number += 1;
    if (interrupted) break;
    if (only && !only.test(scenario.name)) continue;
    await runScenario(number, scenario, results);
  }
  const first = results.firstPageMs === null ? "n/a" : String(Math.round(results.firstPageMs));
  console.log(`console: ${results.passed} scenarios passed, ${results.failed} failed, first page in ${first} ms`);
  return results.failed > 0 || results.passed === 0 ? 1 : 0;
}

let status = 1;
try {
  status = await main();
} catch (e) {
  if (!interrupted) console.error(`console: ${e.stack ?? e.message}`);
  status = 1;
} finally {
  await cleanup();
}
process.exit(status);
