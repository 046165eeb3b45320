// A stream's page: its partitions, the live tail, browsing from a position or a time (the
// deterministic read), paged, and sending one event or a batch pasted as NDJSON.

import { api, bytes, button, field, form, gate, h, parseTime, poll, recordColumns, status, streamPath, table, whoami } from "./lib.js";
import { href, horizon } from "./streams.js";
import { tail } from "./tail.js";

const PAGE = 50;

/** A stream's heading and the links to its pages, `current` marked. */
export function streamHeading(name, current) {
  return [h("h1", {}, name), h("nav", { class: "tabs" }, [["Records", ""], ["Consumers", "/consumers"], ["Webhooks", "/webhooks"],
    ["Deliveries", "/deliveries"], ["Aggregations", "/aggregations"]].map(([text, tab]) =>
    h("a", { href: href(name, tab), "aria-current": text === current ? "page" : null }, text)))];
}

/** `name: value` lines as headers; throws on a line without a colon or a name given twice. */
function parseHeaders(text) {
  const out = {};
  for (const line of text.split("\n").map((l) => l.trim()).filter(Boolean)) {
    const at = line.indexOf(":");
    if (at <= 0) throw new Error(`header line ${JSON.stringify(line)} is not "name: value"`);
    const name = line.slice(0, at).trim();
    if (name in out) throw new Error(`header ${JSON.stringify(name)} is given twice`);
    out[name] = line.slice(at + 1).trim();
  }
  return out;
}

/** The event the send form describes: a JSON object or array is sent as JSON, anything else as text. */
function event(text, key, headers, time) {
  let value = text;
  try {
    const parsed = JSON.parse(text);
    if (parsed !== null && typeof parsed === "object") value = parsed;
  } catch {
    // Not JSON: sent as text.
  }
  const out = { payload: value, headers: parseHeaders(headers) };
  if (key) out.key = key;
  if (time) out.event_time = parseTime(time).toISOString();
  return out;
}

/** The send and batch forms; `why` (a reason, or null) says the token may not send. */
function sendForms(name, why) {
  const text = h("textarea", { name: "payload", placeholder: '{"temperature": 21.5}' });
  const key = h("input", { name: "key", placeholder: "device-7" });
  const hdrs = h("textarea", { name: "headers", class: "short", placeholder: "source: console" });
  const time = h("input", { name: "event_time", type: "datetime-local", step: "0.001" });
  const one = status();
  const single = form(async () => {
    const answer = await api("POST", streamPath(name, "/events"), event(text.value, key.value, hdrs.value, time.value));
    one.show(`Sent at ${answer.position}`);
  }, one, field("Payload", text), h("p", { class: "muted" }, "A JSON object or array is sent as JSON, anything else as text."),
  field("Key", key), field("Headers", hdrs), field("Event time", time), button("Send", why, null, { type: "submit" }));
  const lines = h("textarea", { name: "ndjson", placeholder: '{"payload": {"n": 1}, "key": "a"}\n{"payload": {"n": 2}}' });
  const many = status();
  const results = h("ol", { class: "results" });
  const batch = form(async () => {
    const answer = await api("POST", streamPath(name, "/events/batch"), { ndjson: lines.value });
    results.replaceChildren(...answer.results.map((r, i) => h("li", { class: r.error ? "error" : null },
      `line ${i + 1}: ${r.error ? `error ${r.error.code}: ${r.error.message}` : r.position}`)));
    const failed = answer.results.filter((r) => r.error).length;
    many.show(`${answer.results.length - failed} sent, ${failed} refused`);
  }, many, field("NDJSON", lines), h("p", { class: "muted" }, "One event per line, as the send form's JSON: payload or payload_base64, key, headers, event_time, id."),
  button("Send batch", why, null, { type: "submit" }));
  return h("div", { class: "cols" },
    h("section", {}, h("h2", {}, "Send an event"), single, one),
    h("section", {}, h("h2", {}, "Send a batch (NDJSON)"), batch, many, results));
}

/** `from` as the records route takes it: earliest, latest, P:S, a sequence, or a time. */
function position(text, partition) {
  text = text.trim();
  if (text === "earliest" || text === "latest" || /^\d+:\d+$/.test(text)) return text;
  if (/^\d+$/.test(text)) return `${partition}:${text}`;
  return `time:${parseTime(text).toISOString()}`;
}

/** Browsing one partition from a position or a time, a page at a time. */
function browser(name, partitions, why) {
  const which = h("select", { name: "partition" }, partitions.map((p) => h("option", { value: p.partition }, `${p.partition}`)));
  const from = h("input", { name: "from", value: "earliest", placeholder: "earliest, latest, P:S or 2026-12-07T10:00:00Z" });
  const shown = h("div", {});
  const out = status();
  let next = null;
  const more = h("button", { type: "button", disabled: true, onclick: () => read(next).catch((e) => out.fail(e)) }, "Next page");
  const read = async (start) => {
    const query = new URLSearchParams({ partition: which.value, from: start, max: PAGE });
    const { records: page } = await api("GET", `${streamPath(name, "/records")}?${query}`);
    shown.replaceChildren(table(page, recordColumns, "No records."));
    // A read stops short at its byte limit too: only an empty page is the end.
    const last = page.at(-1);
    if (last) next = `after:${last.position}`;
    more.disabled = !last;
    out.show(last ? `${page.length} records from ${page[0].position}` : "");
  };
  const go = form(() => read(position(from.value, which.value)), out,
    h("div", { class: "bar" }, field("Partition", which), field("From", from), button("Read", why, null, { type: "submit" })));
  return { el: [go, out, shown, more], first: () => read(position(from.value, which.value)).catch((e) => out.fail(e)) };
}

/** `#/streams/NAME`. */
export async function page(el, name) {
  const [who, { stream }, { capabilities }] = await Promise.all([whoami(), api("GET", streamPath(name)), api("GET", "/v1/capabilities")]);
  const cannotRead = gate(who, "read", name);
  const replays = capabilities.replay_by_position || capabilities.replay_by_time;
  const browse = browser(name, stream.partitions, cannotRead);
  const extent = h("div", { class: "narrow" });
  const drawExtent = (partitions) => extent.replaceChildren(table(partitions, [
    ["Partition", (p) => p.partition, { num: true }],
    ["Earliest", (p) => p.earliest ?? "–", { num: true }],
    ["Next", (p) => p.next ?? "–", { num: true }],
    ["Bytes", (p) => bytes(p.bytes), { num: true }],
  ]));
  drawExtent(stream.partitions);
  el.replaceChildren(
    ...streamHeading(name, "Records"),
    h("p", { class: "muted" }, `Horizon ${horizon(stream.horizon_ms)}. ${stream.resource ?? ""}`),
    extent,
    h("h2", {}, "Live tail"), tail(name, cannotRead),
    sendForms(name, gate(who, "write", name)),
    h("h2", {}, "Browse"),
    ...(replays ? browse.el : [h("p", { class: "muted" }, "This provider does not read by position or time (it delivers through subscriptions): use the live tail.")]));
  if (replays && !cannotRead) await browse.first();
  // The partitions' extent, kept current while the page is open.
  setTimeout(() => poll(extent, 5000, async () => drawExtent((await api("GET", streamPath(name))).stream.partitions)), 5000);
}
