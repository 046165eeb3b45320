// More of the console's browser scenarios (see scenarios.mjs): consumers and their resets,
// what each token scope may do on each page, the server page's charts drawing, and that
// leaving a stream's page quickly leaves no live tail open.

import {
  api, button, catchUp, cell, chartPoints, consumerLag, createStream, field, hashIs, link, num, open,
  resetConsumer, rowsOf, sendBatch, sleep, tableWith, tailRequests, visible, waitFor,
} from "./helpers.mjs";

const SECONDS = /^\d+(\.\d+)? s$/;

// (6) A consumer's lag in records and in time, the lag chart, resets to latest, earliest,
// a position and a time, each checked on the page and by the API.
export async function consumers(t) {
  const name = "Ledger-ui";
  const path = `/v1/streams/${name}/consumers`;
  await createStream(t.server, name, 1);
  // 0:5 is appended a later millisecond than 0:4: a reset to its time lands on it.
  await sendBatch(t.server, name, Array.from({ length: 5 }, (_, i) => ({ payload: { i }, key: `k${i}` })));
  await sleep(30);
  await sendBatch(t.server, name, Array.from({ length: 5 }, (_, i) => ({ payload: { i: 5 + i }, key: `k${5 + i}` })));
  const fetched = await api(t.server, "POST", `${path}/billing/fetch?max=4`);
  await api(t.server, "POST", `${path}/billing/commit?ack=${encodeURIComponent(fetched.ack)}`);
  await catchUp(t.server, name, "idle");
  const lag = () => consumerLag(t.server, name, "billing");
  const before = await lag();
  if (before !== 10 - fetched.records.length) throw new Error(`the API says lag ${before} after committing ${fetched.records.length} of 10`);
  const { records } = await api(t.server, "GET", `/v1/streams/${name}/records?partition=0&from=earliest&max=10`);
  const page = await t.page();
  await open(t, page, `#/streams/${name}`, name);
  t.step('the "Consumers" tab');
  await link(page.locator("main"), "Consumers").click();
  await hashIs(page, `#/streams/${name}/consumers`);
  // "Lag (records)" is the first column whose heading starts with "Lag".
  const table = tableWith(page, /^Lag\b/);
  const row = async (consumer) => (await rowsOf(table)).find((r) => cell(r, /^Name$/) === consumer);
  const lagShown = (n) => waitFor(async () => num(cell(await row("billing"), /^Lag\b/)) === n, `row "billing" with lag ${n}`);
  const checkLag = async (n, after) => {
    await lagShown(n);
    const api = await lag();
    if (api !== n) throw new Error(`the API says lag ${api} after ${after}, not ${n}`);
  };
  await lagShown(before);

  t.step('"Lag (time)": the age of the first record not consumed, in seconds');
  const oldest = records[fetched.records.length];
  const time = await waitFor(async () => {
    const text = cell(await row("billing"), /^Lag \(time\)/);
    return SECONDS.test(text ?? "") && text;
  }, `"Lag (time)" of billing as N.N s`);
  const age = (Date.now() - Date.parse(oldest.append_time)) / 1000;
  // Read every 2 s, by the server's clock (its Date header, to the second): a few seconds
  // younger at most, never older. A time from the wrong record or in the wrong unit is not.
  if (!(parseFloat(time) <= age + 1 && parseFloat(time) >= age - 5)) {
    throw new Error(`"Lag (time)" of billing is ${time}, but ${oldest.position} was appended ${age.toFixed(1)} s ago`);
  }
  await waitFor(async () => ["–", "0.0 s"].includes(cell(await row("idle"), /^Lag \(time\)/)),
    '"Lag (time)" of idle (lag 0) as "–" or "0.0 s"');
  if (num(cell(await row("idle"), /^Lag\b/)) !== 0) throw new Error(`idle shows lag ${cell(await row("idle"), /^Lag\b/)}`);

  t.step("the lag chart draws its samples");
  await visible(page.locator("main .uplot").first(), "lag chart (.uplot)");
  await waitFor(async () => (await chartPoints(page, "Lag")) >= 2, "lag chart with data-points >= 2", 10_000);
  await t.shot(page, "consumers");

  t.step("reset to latest");
  await resetConsumer(page, table, "billing", "latest");
  await checkLag(0, "a reset to latest");
  await t.shot(page, "consumer-reset-latest");
  t.step("reset to earliest");
  await resetConsumer(page, table, "billing", "earliest");
  await checkLag(10, "a reset to earliest");
  t.step("reset to the position 0:2");
  await resetConsumer(page, table, "billing", "position", "0:2");
  await checkLag(8, "a reset to 0:2");
  t.step(`reset to the time of 0:5 (${records[5].append_time})`);
  await resetConsumer(page, table, "billing", "time", records[5].append_time);
  await checkLag(5, `a reset to ${records[5].append_time}`);
  await t.shot(page, "consumer-reset-time");
  if ((await consumerLag(t.server, name, "idle")) !== 0) throw new Error("resetting billing moved idle");
}

// (8) Tokens: a read token sees only its stream, may not create or send, may reset a
// consumer but not delete one nor register a webhook; a write token may send but not read;
// admin may do everything.
export async function tokens(t) {
  const admin = "cst_console_admin_7f3c2a";
  const read = "cst_console_read_91d0be";
  const write = "cst_console_write_5be81f";
  const server = await t.startServer({
    name: "tokens server",
    tokens: [{ token: admin, scope: "admin", streams: "*" }, { token: read, scope: "read", streams: "Orders" },
      { token: write, scope: "write", streams: "Orders" }],
  });
  t.step("API: set up and check the scopes");
  await createStream(server, "Orders", 1, admin);
  await createStream(server, "Secret", 1, admin);
  await api(server, "POST", "/v1/streams/Orders/events", { token: admin, json: { payload: "o1" } });
  await api(server, "POST", "/v1/streams/Orders/events", { token: read, json: { payload: "no" }, expect: [403] });
  await api(server, "GET", "/v1/streams/Orders/records?partition=0&from=earliest", { token: write, expect: [403] });
  await api(server, "GET", "/v1/streams", { expect: [401] });
  await catchUp(server, "Orders", "plain", { token: admin });
  const page = await t.page({ allowHttp: [401, 403] });
  const tails = tailRequests(page);
  const base = server.url;
  const signIn = async (token) => {
    await page.goto(`${base}/#/login`);
    await field(page, "Bearer token").fill(token);
    await button(page, "Sign in").click();
    await hashIs(page, "#/streams");
  };
  const table = tableWith(page, /^Partitions$/);
  const names = async () => (await rowsOf(table)).map((r) => cell(r, /^Name$/));
  const disabled = async (locator, what) => {
    await visible(locator, what);
    await waitFor(async () => !(await locator.isEnabled()), `disabled ${what}`);
  };
  t.step("sign in with the read token");
  await signIn(read);
  await waitFor(async () => JSON.stringify(await names()) === '["Orders"]', "list of Orders alone");
  const create = button(page, "Create");
  if (await create.isEnabled()) throw new Error('"Create" is enabled for a read token');
  if (!/admin/i.test((await create.getAttribute("title")) ?? "")) throw new Error(`"Create" has the title ${await create.getAttribute("title")}`);
  await t.shot(page, "read-token-streams");
  t.step("the stream page: Send disabled");
  await link(table, "Orders").click();
  await visible(page.getByRole("heading", { name: "Orders", exact: true }), 'heading "Orders"');
  await disabled(button(page, "Send"), '"Send"');
  await t.shot(page, "read-token-stream");
  t.step("the header shows who is signed in");
  await waitFor(async () => /\bread\b/i.test(await page.locator("header").innerText()), 'header naming the "read" scope');

  t.step("the consumers page: Reset enabled, Delete disabled (admin)");
  await link(page.locator("main"), "Consumers").click();
  await hashIs(page, "#/streams/Orders/consumers");
  const consumersTable = tableWith(page, /^Lag\b/);
  const plain = consumersTable.locator("tbody tr").filter({ has: page.getByRole("cell", { name: "plain", exact: true }) });
  await visible(plain, 'row "plain"');
  await disabled(button(plain, "Delete"), '"Delete" of plain');
  const deletes = await consumersTable.getByRole("button", { name: "Delete", exact: true }).evaluateAll((bs) => bs.map((b) => b.disabled));
  if (!deletes.length || deletes.some((d) => !d)) throw new Error(`"Delete" buttons disabled: ${JSON.stringify(deletes)}`);
  await waitFor(() => button(plain, "Reset").isEnabled(), 'enabled "Reset" of plain');
  t.step("reset plain to earliest with the read token");
  await resetConsumer(page, consumersTable, "plain", "earliest");
  await waitFor(async () => (await consumerLag(server, "Orders", "plain", admin)) === 1, "plain at lag 1 (API)");
  await t.shot(page, "read-token-consumers");
  t.step("the webhooks page: Register disabled");
  await link(page.locator("main"), "Webhooks").click();
  await hashIs(page, "#/streams/Orders/webhooks");
  await disabled(button(page, "Register"), '"Register"');

  t.step("the server page says admin is needed");
  await page.goto(`${base}/#/server`);
  // The webhooks page said "admin" too: the server page's own heading first.
  await visible(page.getByRole("heading", { name: "Server", exact: true }), 'heading "Server"');
  await waitFor(async () => /admin/i.test(await page.locator("main").innerText()), "note that admin is needed");
  if ((await page.locator("main .uplot").count()) > 0) throw new Error("charts shown to a read token");

  t.step("sign in with the write token; the stream page");
  await signIn(write);
  await waitFor(async () => JSON.stringify(await names()) === '["Orders"]', "list of Orders alone");
  const tailsBefore = tails.started;
  await link(table, "Orders").click();
  await visible(page.getByRole("heading", { name: "Orders", exact: true }), 'heading "Orders"');
  t.step("write token: browse's Read disabled, the tail a note about read");
  await disabled(button(page, "Read"), '"Read" (browse)');
  const tailNote = () => page.evaluate(() => {
    const heading = [...document.querySelectorAll("main h2")].find((h) => /^Live tail$/i.test(h.textContent.trim()));
    return heading?.nextElementSibling?.innerText ?? "";
  });
  await waitFor(async () => /\bread\b/i.test(await tailNote()), 'a note under "Live tail" mentioning "read"');
  await sleep(500);
  if (tails.started !== tailsBefore) throw new Error(`the page requested the tail ${tails.started - tailsBefore} time(s) with a write token`);
  t.step("write token: Send enabled, and it sends");
  await waitFor(() => button(page, "Send").isEnabled(), 'enabled "Send"');
  await field(page, "Payload").fill('{"by": "write token"}');
  await button(page, "Send").click();
  await visible(page.getByText("Sent at 0:1", { exact: true }), 'status "Sent at 0:1"');
  const { records } = await api(server, "GET", "/v1/streams/Orders/records?partition=0&from=0:1", { token: admin });
  if (records[0]?.payload?.by !== "write token") throw new Error(`the API has ${JSON.stringify(records[0])} at 0:1`);
  await t.shot(page, "write-token-stream");

  t.step("sign in with the admin token");
  await signIn(admin);
  await waitFor(async () => JSON.stringify((await names()).sort()) === '["Orders","Secret"]', "list of Orders and Secret");
  await waitFor(() => button(page, "Create").isEnabled(), 'enabled "Create"');
  await waitFor(async () => /\badmin\b/i.test(await page.locator("header").innerText()), 'header naming the "admin" scope');
  t.step("create a stream as admin");
  await field(page, "Name").fill("Made-by-admin");
  await button(page, "Create").click();
  await hashIs(page, "#/streams/Made-by-admin");
  await api(server, "GET", "/v1/streams/Made-by-admin", { token: admin });
  await t.shot(page, "admin-token");
}

// (9) The server page: the provider, its capabilities, and the request latency chart
// drawing points from /metrics (scraped after 1 s, then every 5 s).
export async function serverPage(t) {
  await createStream(t.server, "Metrics-ui", 1);
  await sendBatch(t.server, "Metrics-ui", [{ payload: "a" }, { payload: "b" }]);
  const page = await t.page();
  await open(t, page, "#/streams", "Streams");
  t.step('the header link "Server"');
  await link(page.locator("header"), "Server").click();
  await hashIs(page, "#/server");
  t.step("the provider and its capabilities");
  await waitFor(async () => /\blocal\b/.test(await page.locator("main").innerText()), 'provider name "local"');
  await waitFor(() => page.locator("main table").evaluateAll((tables) =>
    tables.some((table) => table.querySelectorAll("tbody tr").length >= 5)), "capabilities table (5 rows or more)");
  t.step("the charts");
  await waitFor(async () => (await page.locator("main .uplot").count()) >= 2, "two charts (.uplot)");
  t.step("the request latency chart draws a point (requests sent meanwhile)");
  let sending = true;
  const traffic = (async () => {
    for (let i = 0; sending; i++) {
      await api(t.server, "GET", "/v1/streams/Metrics-ui").catch(() => {});
      if (i % 5 === 0) await sendBatch(t.server, "Metrics-ui", [{ payload: `m${i}` }]).catch(() => {});
      await sleep(200);
    }
  })();
  try {
    await waitFor(async () => (await chartPoints(page, "Request latency")) >= 1,
      '"Request latency" chart with data-points >= 1', 15_000);
  } finally {
    sending = false;
    await traffic;
  }
  await t.shot(page, "server");
}

// (12) Toggling quickly between a stream's Records and Consumers leaves no tail open; the
// Records tab then has exactly one, and the page can still reach the server.
export async function quickNavigation(t) {
  const name = "Nav-ui";
  await createStream(t.server, name, 1);
  await sendBatch(t.server, name, [{ payload: "n1" }]);
  const page = await t.page();
  const tails = tailRequests(page);
  await open(t, page, `#/streams/${name}`, name);
  await waitFor(() => tails.open === 1, "one open tail on Records");
  // A click on the tab link as a user's would be, without waiting for anything.
  const clickTab = (tab) => page.evaluate((tab) => {
    const a = [...document.querySelectorAll("main a")].find((l) => l.textContent.trim() === tab);
    if (!a) throw new Error(`no tab "${tab}"`);
    a.click();
  }, tab);
  const onConsumers = async (round) => {
    await hashIs(page, `#/streams/${name}/consumers`);
    await sleep(3000);
    if (tails.open !== 0) throw new Error(`${tails.open} tail(s) still open 3 s after ending on Consumers (${round}; ${tails.started} started)`);
    const current = await page.locator('main a[aria-current="page"]').allInnerTexts();
    if (current.join() !== "Consumers") throw new Error(`the tab shown as current is ${JSON.stringify(current)} (${round})`);
    if (await page.locator(".tail").count()) throw new Error(`the Records page's tail is on the Consumers page (${round})`);
    await visible(page.getByRole("heading", { name, exact: true }), `heading "${name}"`);
  };
  t.step("toggle Records/Consumers 10 times without waiting, end on Consumers");
  for (let i = 0; i < 10; i++) await clickTab(i % 2 === 0 ? "Consumers" : "Records");
  await clickTab("Consumers");
  await onConsumers("no waits");
  t.step("toggle 10 times 30 ms apart, end on Consumers");
  for (let i = 0; i < 10; i++) {
    await clickTab(i % 2 === 0 ? "Records" : "Consumers");
    await sleep(30);
  }
  await clickTab("Consumers");
  await onConsumers("30 ms apart");
  await t.shot(page, "quick-navigation-consumers");
  t.step("Records: exactly one tail");
  await clickTab("Records");
  await hashIs(page, `#/streams/${name}`);
  await sleep(2000);
  if (tails.open !== 1) throw new Error(`${tails.open} tails open on Records, not 1`);
  await visible(page.locator(".tail"), "the live tail");
  t.step("the page still reaches the server: /healthz within 2 s");
  const health = await page.evaluate(() => Promise.race([
    fetch("/healthz", { cache: "no-store" }).then((r) => r.status, (e) => `failed: ${e.message}`),
    new Promise((resolve) => setTimeout(() => resolve("no answer within 2 s"), 2000)),
  ]));
  if (health !== 200) throw new Error(`fetch("/healthz") from the page: ${health}`);
  await t.shot(page, "quick-navigation-records");
}
