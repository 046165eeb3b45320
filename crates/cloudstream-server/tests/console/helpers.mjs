// Helpers for the console's browser scenarios: polling expectations (playwright-core has
// no `expect`), locators by role and label as the UI contract names things, reading a
// table's shown rows by heading, and API calls against a test server.

/** How long an expectation waits, unless told otherwise. */
export const EXPECT_MS = 10_000;
export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
export const firstLine = (text) => String(text).split("\n").find((l) => l.trim()) ?? String(text);

/** Polls `fn` until it returns something truthy (which it returns); `what` names it on timeout. */
export async function waitFor(fn, what, timeout = EXPECT_MS) {
  const deadline = Date.now() + timeout;
  for (;;) {
    let last = null;
    try {
      const value = await fn();
      if (value) return value;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      throw new Error(`no ${what} within ${timeout / 1000} s${last ? ` (${firstLine(last.message)})` : ""}`);
    }
    await sleep(100);
  }
}

export const button = (scope, name) => scope.getByRole("button", { name, exact: true });
export const field = (scope, name) => scope.getByLabel(name, { exact: true });
export const link = (scope, name) => scope.getByRole("link", { name, exact: true });
// A <select> by its accessible name: the text of a label wrapping it includes the options',
// so getByLabel cannot match it exactly.
export const choice = (scope, name) => scope.getByRole("combobox", { name, exact: true });
export const num = (text) => {
  const digits = String(text ?? "").replace(/[,\s]/g, "").match(/^\d+/);
  return digits ? Number(digits[0]) : NaN;
};

/** Waits for `locator` to be visible. */
export async function visible(locator, what, timeout = EXPECT_MS) {
  try {
    await locator.waitFor({ state: "visible", timeout });
  } catch (e) {
    throw new Error(`no ${what} within ${timeout / 1000} s (${firstLine(e.message)})`);
  }
}

/** The tables of the page (outside the live tail) with a column headed `heading`. */
export const tableWith = (page, heading) =>
  page.locator("main table:not(.tail table)").filter({ has: page.locator("thead th", { hasText: heading }) });

/** The shown rows of the first table `locator` matches, as {heading: cell text}; [] if none. */
export const rowsOf = (locator) =>
  locator.evaluateAll((tables) => {
    if (!tables[0]) return [];
    const headings = [...tables[0].querySelectorAll("thead th")].map((th) => th.innerText.trim());
    return [...tables[0].querySelectorAll("tbody tr")]
      .filter((tr) => tr.getClientRects().length > 0)
      .map((tr) => Object.fromEntries([...tr.children].map((td, i) => [headings[i] ?? String(i), td.innerText.trim()])));
  });

/** A row's cell under the first heading matching `heading` (a RegExp). */
export const cell = (row, heading) => {
  const key = Object.keys(row ?? {}).find((k) => heading.test(k));
  return key === undefined ? undefined : row[key];
};
export const POSITION = /^Position/i;
export const KEY = /^Key/i;
export const PAYLOAD = /^Payload/i;

/** An API call that must answer one of `expect`; its JSON body. */
export async function api(server, method, path, { expect = [200, 201, 204], ...options } = {}) {
  const answer = await server.request(method, path, options);
  if (!expect.includes(answer.status)) {
    throw new Error(`${method} ${path} answered ${answer.status}: ${JSON.stringify(answer.body)?.slice(0, 200)}`);
  }
  return answer.body;
}
export const createStream = (server, name, partitions = 1, token) =>
  api(server, "PUT", `/v1/streams/${name}`, { json: { partitions }, token, expect: [201] });
export const sendBatch = (server, name, events) => api(server, "POST", `/v1/streams/${name}/events/batch`, { json: events });

/** Waits for the page's address to end in `hash`. */
export async function hashIs(page, hash) {
  try {
    await waitFor(() => new URL(page.url()).hash === hash, `address ending in ${hash}`);
  } catch (e) {
    throw new Error(`${e.message}: the page is at ${page.url()}`);
  }
}

/** Opens `hash` and waits for the heading `heading`. */
export async function open(t, page, hash, heading) {
  await page.goto(`${t.server.url}/${hash}`);
  await visible(page.getByRole("heading", { name: heading, exact: true }), `heading "${heading}"`);
}

/**
 * The `data-points` of the chart (`.chart`) whose title contains `title`: the number of
 * non-null samples of its first line; null while there is no such chart or attribute.
 */
export const chartPoints = (page, title) =>
  page.locator(".chart").evaluateAll((charts, title) => {
    const named = (c) => [c.querySelector(".u-title")?.textContent, c.getAttribute("aria-label"), c.getAttribute("title"),
      c.dataset.title].some((text) => text?.includes(title));
    const chart = charts.find(named);
    const n = chart?.getAttribute("data-points");
    return n === null || n === undefined ? null : Number(n);
  }, title);

/**
 * Counts `page`'s requests to a path ending in `/tail`: `open` those neither finished nor
 * failed (a live tail is a response that never ends), `started` all of them.
 */
export function tailRequests(page) {
  const open = new Set();
  let started = 0;
  const isTail = (request) => {
    try {
      return new URL(request.url()).pathname.endsWith("/tail");
    } catch {
      return false;
    }
  };
  page.on("request", (request) => {
    if (!isTail(request)) return;
    started += 1;
    open.add(request);
  });
  page.on("requestfinished", (request) => open.delete(request));
  page.on("requestfailed", (request) => open.delete(request));
  return {
    get open() {
      return open.size;
    },
    get started() {
      return started;
    },
  };
}

/** A consumer's lag as the API gives it (null if there is no such consumer). */
export async function consumerLag(server, stream, consumer, token) {
  const { consumers } = await api(server, "GET", `/v1/streams/${stream}/consumers`, { token });
  return consumers.find((c) => c.name === consumer)?.lag ?? null;
}

/** Has a consumer read every record so far and committed (fetch and commit until lag 0). */
export async function catchUp(server, stream, consumer, { max = 4, token } = {}) {
  const path = `/v1/streams/${stream}/consumers/${consumer}`;
  for (let i = 0; i < 50; i++) {
    const fetched = await api(server, "POST", `${path}/fetch?max=${max}`, { token });
    if (fetched.records.length) await api(server, "POST", `${path}/commit?ack=${encodeURIComponent(fetched.ack)}`, { token });
    if ((await consumerLag(server, stream, consumer, token)) === 0) return;
  }
  throw new Error(`${consumer} did not catch up on ${stream}`);
}

/** Resets `consumer` from the row's "Reset" button and the dialog: To `to`, Value `value`. */
export async function resetConsumer(page, table, consumer, to, value) {
  const row = table.locator("tbody tr").filter({ has: page.getByRole("cell", { name: consumer, exact: true }) });
  await button(row, "Reset").click();
  const dialog = page.locator("dialog[open]");
  await visible(dialog, "reset dialog");
  await choice(dialog, "To").selectOption(to);
  if (value !== undefined) await field(dialog, "Value").fill(value);
  await button(dialog, "Reset consumer").click();
  await dialog.waitFor({ state: "detached", timeout: EXPECT_MS });
}
