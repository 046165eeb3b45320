// The console's browser scenarios, one async function each, run in order by run.mjs with a
// harness `t` (t.server, t.page(), t.shot(), t.step(), t.startServer(), t.receiver()).
// Each sets up its own streams through the API, drives the pages with role and label
// locators as the console's UI contract names them, and checks the result against the API
// where that makes the test stronger. Expectations poll (waitFor) for up to 10 s.
// scenarios2.mjs and scenarios3.mjs hold more of them, units.mjs the checks of the pure
// modules (run without a browser); `scenarios` below lists them all, in the order they run.

import {
  EXPECT_MS, KEY, PAYLOAD, POSITION, api, button, cell, choice, createStream, field, hashIs, link, num,
  open, rowsOf, sendBatch, sleep, tableWith, visible, waitFor,
} from "./helpers.mjs";
import { consumers, quickNavigation, serverPage, tokens } from "./scenarios2.mjs";
import { browsePaging, oddNames, sendForm, xss } from "./scenarios3.mjs";
import { promUnits } from "./units.mjs";

// (1) The first page: under a second to the load event, no errors, the header's links.
async function firstPage(t) {
  const page = await t.page();
  t.step("open /");
  await page.goto(`${t.server.url}/`, { waitUntil: "load" });
  const ms = await waitFor(() => page.evaluate(() => {
    const [nav] = performance.getEntriesByType("navigation");
    return nav && nav.loadEventEnd > 0 ? nav.loadEventEnd - nav.startTime : 0;
  }), "load event");
  t.firstPage(ms);
  t.step("the streams page and the header's links");
  await visible(page.getByRole("heading", { name: "Streams", exact: true }), 'heading "Streams"');
  const header = page.locator("header");
  await visible(header.locator('a[href="#/streams"]', { hasText: /^Streams$/ }), 'header link "Streams"');
  await visible(header.locator('a[href="#/login"]'), "header link to #/login");
  await t.shot(page, "first-page");
  if (ms >= 1000) throw new Error(`the first page took ${Math.round(ms)} ms to its load event (limit 1000 ms)`);
}

// (2) Create a stream from the form: its page opens, the list and the API have it.
async function createFromForm(t) {
  const name = "Orders-ui";
  const page = await t.page();
  t.step("open #/streams");
  await open(t, page, "#/streams", "Create a stream");
  t.step("fill in and submit the form");
  await field(page, "Name").fill(name);
  await field(page, "Partitions").fill("3");
  await button(page, "Create").click();
  await hashIs(page, `#/streams/${name}`);
  await visible(page.getByRole("heading", { name, exact: true }), `heading "${name}"`);
  await t.shot(page, "stream-created");
  t.step("the API has it");
  const { stream } = await api(t.server, "GET", `/v1/streams/${name}`);
  if (stream.partitions.length !== 3) throw new Error(`the API says ${stream.partitions.length} partitions, not 3`);
  t.step("the list shows it");
  await link(page.locator("header"), "Streams").click();
  await hashIs(page, "#/streams");
  const table = tableWith(page, /^Partitions$/);
  await waitFor(async () => (await rowsOf(table)).some((r) => cell(r, /^Name$/) === name && cell(r, /^Partitions$/) === "3"), `row "${name}" with 3 partitions`);
  const href = await link(table, name).getAttribute("href");
  if (href !== `#/streams/${name}`) throw new Error(`the stream's link goes to ${href}`);
  await t.shot(page, "streams-list");
}

// (3) Send from the form and see it live; pause, send, resume, see it; filter; headers.
async function sendAndTail(t) {
  const name = "Tail-ui";
  await createStream(t.server, name, 2);
  const page = await t.page();
  t.step("open the stream page; the live tail connects");
  const tailPath = `/v1/streams/${name}/tail`;
  const connected = page.waitForResponse((r) => new URL(r.url()).pathname === tailPath, { timeout: EXPECT_MS });
  await open(t, page, `#/streams/${name}`, name);
  await connected;
  const tail = page.locator(".tail");
  const tailRows = () => rowsOf(tail.locator("table"));
  t.step("send an event from the form");
  await field(page, "Payload").fill('{"temperature": 21.5}');
  await field(page, "Key").fill("device-7");
  await button(page, "Send").click();
  const status = page.getByText(/^Sent at \d+:\d+$/);
  await visible(status, 'status "Sent at P:S"');
  const position = (await status.innerText()).trim().slice("Sent at ".length);
  t.step(`see ${position} in the live tail`);
  await waitFor(async () => (await tailRows()).some((r) => cell(r, POSITION) === position &&
    cell(r, KEY) === "device-7" && cell(r, PAYLOAD)?.includes("21.5")), `tail row ${position} with key device-7`);
  await t.shot(page, "tail-sent");

  t.step("pause: a record sent meanwhile does not show");
  await button(tail, "Pause").click();
  await visible(button(tail, "Resume"), 'button "Resume"');
  const payload = { n: 2, tag: "sent while paused" };
  const sent = await api(t.server, "POST", `/v1/streams/${name}/events`, { json: { payload, key: "paused-key" } });
  await sleep(1000);
  if ((await tailRows()).some((r) => cell(r, POSITION) === sent.position)) throw new Error("the paused tail showed a new record");
  t.step("resume: it shows, its JSON pretty-printed");
  await button(tail, "Resume").click();
  await waitFor(async () => (await tailRows()).some((r) => cell(r, POSITION) === sent.position &&
    cell(r, PAYLOAD) === JSON.stringify(payload, null, 2)), `tail row ${sent.position} pretty-printed`);

  t.step("the filter hides what does not match");
  await field(tail, "Filter").fill("device-7");
  await waitFor(async () => {
    const rows = await tailRows();
    return rows.length > 0 && rows.every((r) => cell(r, KEY) === "device-7");
  }, "tail showing only device-7");
  await t.shot(page, "tail-filtered");
  await field(tail, "Filter").fill("");
  await waitFor(async () => (await tailRows()).length >= 2, "both records back without the filter");

  t.step("send with headers and an event time");
  await field(page, "Payload").fill("with headers");
  await field(page, "Key").fill("k2");
  await field(page, "Headers").fill("source: console\ntrace-id: abc-123");
  const when = field(page, "Event time");
  await when.fill((await when.getAttribute("type")) === "datetime-local" ? "2024-05-01T12:00" : "2024-05-01T12:00:00Z");
  await button(page, "Send").click();
  const second = await waitFor(async () => {
    const text = (await status.innerText()).trim().slice("Sent at ".length);
    return text !== position && text;
  }, "second \"Sent at\"");
  const { records: [record] } = await api(t.server, "GET", `/v1/streams/${name}/records?partition=${second.split(":")[0]}&from=${second}&max=1`);
  if (record?.headers?.source !== "console" || record.headers["trace-id"] !== "abc-123" || record.key !== "k2" ||
    !String(record.event_time).startsWith("2024-05-01T12:00:00")) {
    throw new Error(`the API has ${JSON.stringify(record)}`);
  }
  await waitFor(async () => (await tailRows()).some((r) => cell(r, POSITION) === second), `tail row ${second}`);
}

// (4) A batch as NDJSON: one result per line, errors included.
async function sendBatchForm(t) {
  const name = "Batch-ui";
  await createStream(t.server, name, 1);
  const page = await t.page();
  await open(t, page, `#/streams/${name}`, name);
  t.step("send four lines, the third not JSON");
  await field(page, "NDJSON").fill(['{"payload":"a"}', '{"payload":{"b":2},"key":"k"}', "this is not json", '{"payload":"d"}'].join("\n"));
  await button(page, "Send batch").click();
  t.step("the per-line results");
  for (const line of ["line 1: 0:0", "line 2: 0:1", "line 4: 0:2"]) await visible(page.getByText(line, { exact: true }), `"${line}"`);
  await visible(page.getByText(/^line 3: error/), '"line 3: error ..."');
  await t.shot(page, "batch-results");
  t.step("the API has the three events");
  const { records } = await api(t.server, "GET", `/v1/streams/${name}/records?partition=0&from=earliest`);
  const got = JSON.stringify(records.map((r) => [r.payload, r.key ?? null]));
  if (got !== JSON.stringify([["a", null], [{ b: 2 }, "k"], ["d", null]])) throw new Error(`the API has ${got}`);
}

// (5) Browse from earliest, the next page, from a time, from a position.
async function browse(t) {
  const name = "Browse-ui";
  await createStream(t.server, name, 1);
  await sendBatch(t.server, name, Array.from({ length: 150 }, (_, i) => ({ payload: `event ${i}` })));
  await sleep(20); // the second half is appended a later millisecond: reading from a time tells them apart
  await sendBatch(t.server, name, Array.from({ length: 150 }, (_, i) => ({ payload: `event ${150 + i}` })));
  const page = await t.page();
  await open(t, page, `#/streams/${name}`, name);
  const table = tableWith(page, PAYLOAD);
  const first = async () => (await rowsOf(table))[0];
  const read = async (from) => {
    await choice(page, "Partition").selectOption("0");
    await field(page, "From").fill(from);
    await button(page, "Read").click();
  };
  const firstIs = (position, payload) => waitFor(async () => {
    const row = await first();
    return cell(row, POSITION) === position && (payload === undefined || cell(row, PAYLOAD) === payload);
  }, `first row ${position}`);
  t.step("read from earliest");
  await read("earliest");
  await firstIs("0:0", "event 0");
  await t.shot(page, "browse-earliest");
  t.step("next page");
  const last = num(cell((await rowsOf(table)).at(-1), POSITION).split(":")[1]);
  await button(page, "Next page").click();
  await firstIs(`0:${last + 1}`, `event ${last + 1}`);
  t.step("read from a time");
  const { records: [at150] } = await api(t.server, "GET", `/v1/streams/${name}/records?partition=0&from=0:150&max=1`);
  const { records: [expected] } = await api(t.server, "GET", `/v1/streams/${name}/records?partition=0&from=time:${at150.append_time}&max=1`);
  await read(at150.append_time);
  await firstIs(expected.position);
  t.step("read from a position");
  await read("0:220");
  await firstIs("0:220", "event 220");
  await t.shot(page, "browse-position");
}

// (7) Register a webhook to a local receiver from the form, see deliveries counted, delete it.
async function webhooks(t) {
  const name = "Hooks-ui";
  const receiver = await t.receiver();
  await createStream(t.server, name, 1);
  const page = await t.page();
  await open(t, page, `#/streams/${name}`, name);
  t.step('the "Webhooks" tab');
  await link(page.locator("main"), "Webhooks").click();
  await hashIs(page, `#/streams/${name}/webhooks`);
  t.step("register a webhook");
  await field(page, "Id").fill("audit");
  await field(page, "URL").fill(`${receiver.url}/hook`);
  await button(page, "Register").click();
  const table = tableWith(page, /^Delivered$/);
  const row = async () => (await rowsOf(table)).find((r) => cell(r, /^Id$/) === "audit");
  await waitFor(row, 'row "audit"');
  const hook = await api(t.server, "GET", `/v1/streams/${name}/webhooks/audit`);
  if (hook.url !== `${receiver.url}/hook`) throw new Error(`the API has the URL ${hook.url}`);
  t.step("send three events; the receiver gets them");
  await sendBatch(t.server, name, [1, 2, 3].map((n) => ({ payload: { n } })));
  await waitFor(() => receiver.records.length >= 3, "3 records at the receiver");
  t.step("the page counts them (it refreshes every 2 s)");
  await waitFor(async () => num(cell(await row(), /^Delivered$/)) >= 3, 'Delivered of 3 or more', 15_000);
  await t.shot(page, "webhook-delivered");
  t.step("delete it");
  await button(table.locator("tbody tr", { hasText: "audit" }), "Delete").click();
  const dialog = page.locator("dialog[open]");
  await visible(dialog, "confirmation dialog");
  await button(dialog, "Delete webhook").click();
  await waitFor(async () => !(await row()), 'row "audit" gone');
  await api(t.server, "GET", `/v1/streams/${name}/webhooks/audit`, { expect: [404] });
}

// (10) Delete a stream: the dialog asks for its name typed; a wrong name deletes nothing.
async function deleteStream(t) {
  await createStream(t.server, "Doomed-ui", 1);
  await createStream(t.server, "Keeper-ui", 1);
  const page = await t.page();
  await open(t, page, "#/streams", "Streams");
  const table = tableWith(page, /^Partitions$/);
  const names = async () => (await rowsOf(table)).map((r) => cell(r, /^Name$/));
  await waitFor(async () => (await names()).includes("Doomed-ui"), 'row "Doomed-ui"');
  t.step("open the dialog; a wrong name does not delete");
  await button(table.locator("tbody tr").filter({ has: link(page, "Doomed-ui") }), "Delete").click();
  const dialog = page.locator("dialog[open]");
  await visible(dialog, "confirmation dialog");
  await field(dialog, "Type the name to confirm").fill("Doomed");
  const confirm = button(dialog, "Delete stream");
  if (await confirm.isEnabled()) await confirm.click();
  await sleep(500);
  await api(t.server, "GET", "/v1/streams/Doomed-ui");
  await t.shot(page, "delete-dialog");
  t.step("the right name deletes");
  await field(dialog, "Type the name to confirm").fill("Doomed-ui");
  await confirm.click();
  await waitFor(async () => {
    const shown = await names();
    return !shown.includes("Doomed-ui") && shown.includes("Keeper-ui");
  }, "list without Doomed-ui");
  await api(t.server, "GET", "/v1/streams/Doomed-ui", { expect: [404] });
  await t.shot(page, "stream-deleted");
}

// (11) The stream page's tabs each open their page without errors.
async function tabs(t) {
  const name = "Tabs-ui";
  await createStream(t.server, name, 1);
  const page = await t.page();
  await open(t, page, `#/streams/${name}`, name);
  for (const [tab, hash] of [["Consumers", "/consumers"], ["Webhooks", "/webhooks"], ["Deliveries", "/deliveries"],
    ["Aggregations", "/aggregations"], ["Records", ""]]) {
    t.step(`the "${tab}" tab`);
    await link(page.locator("main"), tab).click();
    await hashIs(page, `#/streams/${name}${hash}`);
    await visible(page.getByRole("heading", { name, exact: true }), `heading "${name}"`);
    await t.shot(page, `tab-${tab}`);
  }
}

export const scenarios = [
  { name: "prom-units", run: promUnits, browser: false },
  { name: "first-page", run: firstPage },
  { name: "create-stream", run: createFromForm },
  { name: "send-and-tail", run: sendAndTail },
  { name: "send-batch", run: sendBatchForm },
  { name: "browse", run: browse },
  { name: "consumers", run: consumers },
  { name: "webhooks", run: webhooks },
  { name: "tokens", run: tokens },
  { name: "server-page", run: serverPage },
  { name: "delete-stream", run: deleteStream },
  { name: "stream-tabs", run: tabs },
  { name: "quick-navigation", run: quickNavigation },
  { name: "xss", run: xss },
  { name: "odd-names", run: oddNames },
  { name: "browse-paging", run: browsePaging },
  { name: "send-form", run: sendForm },
];
