// A stream's page: its partitions, the live tail, browsing from a position or a time (the
// deterministic read), paged, and sending one event or a batch pasted as NDJSON.

import { api, bytes, button, can, field, form, h, payload, status, streamPath, table, whoami } from "./lib.js";
import { href, horizon } from "./streams.js";
import { tail } from "./tail.js";

const PAGE = 50;

/** The links to a stream's pages, `current` marked. */
export function tabs(name, current) {
  return h("nav", { class: "tabs" }, [["Records", ""], ["Consumers", "/consumers"], ["Webhooks", "/webhooks"],
    ["Deliveries", "/deliveries"], ["Aggregations", "/aggregations"]].map(([text, tab]) =>
    h("a", { href: href(name, tab), "aria-current": text === current ? "page" : null }, text)));
}

/** A stream's heading and tabs. */
export const header = (name, current) => [h("h1", {}, name), tabs(name, current)];

/** The records of a page, as a table. */
export const records = (page) => table(page, [
  ["Position", (r) => r.position],
  ["Appended", (r) => r.append_time],
  ["Key", (r) => r.key ?? ""],
  ["Headers", (r) => h("pre", {}, Object.entries(r.headers ?? {}).map(([k, v]) => `${k}: ${v}`).join("\n"))],
  ["Payload", (r) => h("pre", {}, payload(r))],
], "No records.");

/** `k: v` lines as headers; throws on a line without a colon. */
function parseHeaders(text) {
  const out = {};
  for (const line of text.split("\n").map((l) => l.trim()).filter(Boolean)) {
    const at = line.indexOf(":");
    if (at <= 0) throw new Error(`header line ${JSON.stringify(line)} is not "name: value"`);
    out[line.slice(0, at).trim()] = line.slice(at + 1).trim();
  }
  return out;
}

/** The event the send form describes: JSON payloads kept as JSON, other text as text. */
function event(text, key, headers, time) {
  let value = text;
  try {
    value = JSON.parse(text);
  } catch {
    // Not JSON: sent as text.
  }
  const out = { payload: value, headers: parseHeaders(headers) };
  if (key) out.key = key;
  if (time) out.event_time = new Date(time).toISOString();
  return out;
}

/** The send and batch forms. */
function sendForms(name, allowed) {
  const text = h("textarea", { name: "payload", placeholder: '{"temperature": 21.5}' });
  const key = h("input", { name: "key", placeholder: "device-7" });
  const hdrs = h("textarea", { name: "headers", class: "short", placeholder: "source: console" });
  const time = h("input", { name: "event_time", type: "datetime-local", step: "0.001" });
  const one = status();
  const single = form(async () => {
    const answer = await api("POST", streamPath(name, "/events"), event(text.value, key.value, hdrs.value, time.value));
    one.show(`Sent at ${answer.position}`);
  }, one, field("Payload", text), field("Key", key), field("Headers", hdrs), field("Event time", time),
  button("Send", allowed, "write", null, { type: "submit" }));
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
  button("Send batch", allowed, "write", null, { type: "submit" }));
  return h("div", { class: "cols" },
    h("section", {}, h("h2", {}, "Send an event"), single, one),
    h("section", {}, h("h2", {}, "Send a batch (NDJSON)"), batch, many, results));
}

/** Browsing one partition from a position or a time, a page at a time. */
function browser(name, partitions) {
  const which = h("select", { name: "partition" }, partitions.map((p) => h("option", { value: p.partition }, `${p.partition}`)));
  const from = h("input", { name: "from", value: "earliest", placeholder: "earliest, latest, P:S or 2026-12-07T10:00:00Z" });
  const shown = h("div", {});
  const out = status();
  let next = null;
  const more = h("button", { type: "button", disabled: true, onclick: () => read(next).catch((e) => out.fail(e)) }, "Next page");
  /** `from` as the records route takes it. */
  const position = (text, partition) => {
    text = text.trim();
    if (text === "earliest" || text === "latest" || /^\d+:\d+$/.test(text)) return text;
    if (/^\d+$/.test(text)) return `${partition}:${text}`;
    const time = new Date(text);
    if (Number.isNaN(time.getTime())) throw new Error(`"${text}" is not earliest, latest, P:S, a sequence or a time`);
    return `time:${time.toISOString()}`;
  };
  const read = async (start) => {
    const partition = Number(which.value);
    const query = new URLSearchParams({ partition, from: start, max: PAGE });
    const { records: page } = await api("GET", `${streamPath(name, "/records")}?${query}`);
    shown.replaceChildren(records(page));
    const last = page.at(-1);
    next = last ? `after:${last.position}` : null;
    more.disabled = page.length < PAGE;
    out.show(page.length ? `${page.length} records from ${page[0].position}` : "");
  };
  const go = form(() => read(position(from.value, which.value)), out,
    h("div", { class: "bar" }, field("Partition", which), field("From", from), h("button", { type: "submit" }, "Read")));
  return { el: [go, out, shown, more], read: (p) => {
    which.value = String(p);
    return read(position(from.value, p));
  } };
}

/** `#/streams/NAME`. */
export async function page(el, name) {
  const [who, { stream }] = await Promise.all([whoami(), api("GET", streamPath(name))]);
  const browse = browser(name, stream.partitions);
  el.replaceChildren(
    ...header(name, "Records"),
    h("p", { class: "muted" }, `Horizon ${horizon(stream.horizon_ms)}. ${stream.resource ?? ""}`),
    h("div", { class: "narrow" }, table(stream.partitions, [
      ["Partition", (p) => p.partition, { num: true }],
      ["Earliest", (p) => p.earliest ?? "–", { num: true }],
      ["Next", (p) => p.next ?? "–", { num: true }],
      ["Bytes", (p) => bytes(p.bytes), { num: true }],
    ])),
    h("h2", {}, "Live tail"), tail(name),
    sendForms(name, can(who, "write", name)),
    h("h2", {}, "Browse"), ...browse.el);
  if (can(who, "read", name)) await browse.read(0);
}
