// More of the console's browser scenarios (see scenarios.mjs): untrusted text shown as text,
// stream names with every character the server allows, browsing to the end of a partition,
// and what the send form sends.

import {
  EXPECT_MS, KEY, PAYLOAD, POSITION, api, button, cell, choice, createStream, field, hashIs, link, open, rowsOf,
  sendBatch, sleep, tableWith, visible, waitFor,
} from "./helpers.mjs";

const IMG = "<img src=x onerror=window.__xss=1>";
const SCRIPT = "<script>window.__xss=2</script>";

/** Opens a stream's page and waits for its live tail to connect. */
async function openLive(t, page, name) {
  const tailPath = `/v1/streams/${encodeURIComponent(name)}/tail`;
  const connected = page.waitForResponse((r) => new URL(r.url()).pathname === tailPath, { timeout: EXPECT_MS });
  await open(t, page, `#/streams/${encodeURIComponent(name)}`, name);
  await connected;
}

// (13) Markup in a key, a header's name and value and a payload shows as text in the tail
// and in browse, and runs nothing.
export async function xss(t) {
  const name = "Xss-ui";
  await createStream(t.server, name, 1);
  const page = await t.page();
  await openLive(t, page, name);
  t.step("send markup as key, header name and value, text and JSON payload (API)");
  const text = `${IMG} ${SCRIPT}`;
  await api(t.server, "POST", `/v1/streams/${name}/events`, {
    json: { payload: text, key: `${SCRIPT}${IMG}`, headers: { [IMG]: SCRIPT, [`x-${SCRIPT}`]: IMG } },
  });
  await api(t.server, "POST", `/v1/streams/${name}/events`, { json: { payload: { html: IMG, script: SCRIPT }, key: IMG } });
  t.step("the tail shows it as text");
  const tailRows = () => rowsOf(page.locator(".tail table"));
  await waitFor(async () => {
    const rows = await tailRows();
    return rows.some((r) => cell(r, POSITION) === "0:0" && cell(r, KEY) === `${SCRIPT}${IMG}` && cell(r, PAYLOAD) === text) &&
      rows.some((r) => cell(r, POSITION) === "0:1" && cell(r, KEY) === IMG && cell(r, PAYLOAD)?.includes(IMG) &&
        cell(r, PAYLOAD)?.includes(SCRIPT));
  }, "tail rows 0:0 and 0:1 with the markup as text");
  t.step("browse shows it as text");
  await choice(page, "Partition").selectOption("0");
  await field(page, "From").fill("earliest");
  await button(page, "Read").click();
  const browsed = tableWith(page, PAYLOAD);
  await waitFor(async () => {
    const rows = await rowsOf(browsed);
    const first = rows.find((r) => cell(r, POSITION) === "0:0");
    const headers = cell(first, /^Headers/) ?? "";
    return first && cell(first, KEY) === `${SCRIPT}${IMG}` && cell(first, PAYLOAD) === text &&
      headers.includes(`${IMG}: ${SCRIPT}`) && headers.includes(`x-${SCRIPT}: ${IMG}`) &&
      rows.some((r) => cell(r, POSITION) === "0:1" && cell(r, PAYLOAD)?.includes(IMG));
  }, "browse rows 0:0 and 0:1 with the markup as text");
  await sleep(500); // an injected image would have failed to load by now
  await t.shot(page, "markup-as-text");
  t.step("nothing ran, no element was made of it");
  const found = await page.evaluate(() => ({
    xss: typeof window.__xss === "undefined" ? "undefined" : String(window.__xss),
    images: document.querySelectorAll('img[src="x"]').length,
    scripts: [...document.querySelectorAll("script")].filter((s) => s.textContent.includes("__xss")).length,
  }));
  if (found.xss !== "undefined" || found.images || found.scripts) throw new Error(`markup ran or became elements: ${JSON.stringify(found)}`);
}

// (14) Stream names made of the other characters the server allows ('.', '-', '_'): listed,
// linked, their pages, tails and tabs work.
export async function oddNames(t) {
  const names = ["...", ".odd-_.name..", "-x_"];
  for (const name of names) {
    await createStream(t.server, name, 1);
    await api(t.server, "POST", `/v1/streams/${encodeURIComponent(name)}/events`, { json: { payload: `in ${name}` } });
  }
  const page = await t.page();
  await open(t, page, "#/streams", "Streams");
  const table = tableWith(page, /^Partitions$/);
  for (const name of names) {
    t.step(`the list links to "${name}"`);
    await link(page.locator("header"), "Streams").click();
    await hashIs(page, "#/streams");
    await waitFor(async () => (await rowsOf(table)).some((r) => cell(r, /^Name$/) === name), `row "${name}"`);
    const tailPath = `/v1/streams/${encodeURIComponent(name)}/tail`;
    const connected = page.waitForResponse((r) => new URL(r.url()).pathname === tailPath, { timeout: EXPECT_MS });
    await link(table, name).click();
    t.step(`the page of "${name}": heading, tail, browse`);
    await hashIs(page, `#/streams/${encodeURIComponent(name)}`);
    await visible(page.getByRole("heading", { name, exact: true }), `heading "${name}"`);
    await connected;
    await waitFor(async () => (await rowsOf(tableWith(page, PAYLOAD))).some((r) => cell(r, POSITION) === "0:0" &&
      cell(r, PAYLOAD) === `in ${name}`), `browse row 0:0 of "${name}"`);
    t.step(`the "Consumers" tab of "${name}"`);
    await link(page.locator("main"), "Consumers").click();
    await hashIs(page, `#/streams/${encodeURIComponent(name)}/consumers`);
    await visible(page.getByText(/^No consumers/), `"No consumers" on "${name}"`);
  }
  await t.shot(page, "odd-names");
}

// (15) Paging through a partition of 120 records to its end: Next stays enabled after a
// page that had records; past the end, "No records." and Next disabled.
export async function browsePaging(t) {
  const name = "Pages-ui";
  await createStream(t.server, name, 1);
  await sendBatch(t.server, name, Array.from({ length: 120 }, (_, i) => ({ payload: `event ${i}` })));
  const page = await t.page();
  await open(t, page, `#/streams/${name}`, name);
  const table = tableWith(page, PAYLOAD);
  const next = button(page, "Next page");
  const range = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => [`0:${from + i}`, `event ${from + i}`]);
  const shows = (from, to) => waitFor(async () => JSON.stringify((await rowsOf(table)).map((r) => [cell(r, POSITION), cell(r, PAYLOAD)])) ===
    JSON.stringify(range(from, to)), `rows 0:${from}..0:${to}`);
  const enabled = async (what) => {
    if (!(await next.isEnabled())) throw new Error(`"Next page" is disabled ${what}`);
  };
  const read = async (from) => {
    await choice(page, "Partition").selectOption("0");
    await field(page, "From").fill(from);
    await button(page, "Read").click();
  };
  t.step("read from earliest");
  await read("earliest");
  await shows(0, 49);
  await enabled("after the first page");
  t.step("next page: 0:50..0:99");
  await next.click();
  await shows(50, 99);
  await enabled("after the second page");
  t.step("next page: 0:100..0:119, the last records");
  await next.click();
  await shows(100, 119);
  await enabled("after a page of 20 records (there may be more by now)");
  await t.shot(page, "browse-last-page");
  t.step('next page past the end: "No records.", Next disabled');
  await next.click();
  await visible(page.getByText("No records.", { exact: true }), '"No records."');
  await waitFor(async () => !(await next.isEnabled()), 'disabled "Next page"');
  if ((await rowsOf(table)).length) throw new Error("records still shown past the end");
  await t.shot(page, "browse-past-the-end");
  t.step("reading again from 0:100 enables Next again");
  await read("0:100");
  await shows(100, 119);
  await enabled("after reading from 0:100");
}

// (16) The send form: only a JSON object or array is sent as JSON, anything else as text;
// a header name on two lines is an error and nothing is sent.
export async function sendForm(t) {
  const name = "Form-ui";
  await createStream(t.server, name, 1);
  const page = await t.page();
  await open(t, page, `#/streams/${name}`, name);
  const stored = async (position) => {
    const { records } = await api(t.server, "GET", `/v1/streams/${name}/records?partition=0&from=${position}&max=1`);
    return records[0];
  };
  const cases = [["123", "123"], ["true", "true"], ["null", "null"], ['"quoted"', '"quoted"'], ["12.5 kg", "12.5 kg"],
    ["[1, 2]", [1, 2]], ['{"a": {"b": 1}}', { a: { b: 1 } }]];
  for (const [i, [typed, want]] of cases.entries()) {
    t.step(`send the payload ${typed}`);
    await field(page, "Payload").fill(typed);
    await button(page, "Send").click();
    await visible(page.getByText(`Sent at 0:${i}`, { exact: true }), `status "Sent at 0:${i}"`);
    const record = await stored(`0:${i}`);
    if (JSON.stringify(record?.payload) !== JSON.stringify(want)) {
      throw new Error(`the payload ${typed} was stored as ${JSON.stringify(record?.payload ?? record)}, not ${JSON.stringify(want)}`);
    }
  }
  t.step("the same header name on two lines: an error, nothing sent");
  const nextOf = async () => (await api(t.server, "GET", `/v1/streams/${name}`)).stream.partitions[0].next;
  const before = await nextOf();
  await field(page, "Payload").fill("duplicated header");
  await field(page, "Headers").fill("trace: a\ntrace: b");
  await button(page, "Send").click();
  await waitFor(async () => (await page.locator("main .error").allInnerTexts())
    .some((text) => /trace|header|duplicate|twice|more than once|repeat/i.test(text)), "an error about the repeated header");
  await t.shot(page, "send-duplicate-header");
  await sleep(500);
  if ((await nextOf()) !== before) throw new Error(`the event was sent anyway: next went from ${before} to ${await nextOf()}`);
  t.step("distinct header names are sent");
  await field(page, "Headers").fill("trace: a\nspan: b");
  await button(page, "Send").click();
  await visible(page.getByText(`Sent at 0:${cases.length}`, { exact: true }), `status "Sent at 0:${cases.length}"`);
  const record = await stored(`0:${cases.length}`);
  if (record?.headers?.trace !== "a" || record.headers.span !== "b") throw new Error(`the API has ${JSON.stringify(record)}`);
}
