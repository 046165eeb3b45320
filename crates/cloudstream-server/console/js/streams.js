// The streams page (name, partitions, records, bytes, consumers and lag; create) and a
// stream's page (partitions, browse from the earliest record, send an event).

import { api, can, h, table, whoami } from "./app.js";
import { tail } from "./tail.js";

const bytes = (n) => (n == null ? "–" : n < 1024 ? `${n} B` : n < 1 << 20 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / (1 << 20)).toFixed(1)} MiB`);
const sum = (xs) => (xs.some((x) => x == null) ? null : xs.reduce((a, b) => a + b, 0));
const href = (name) => `#/streams/${encodeURIComponent(name)}`;
const canCreate = (who) => !who.tokens_required || who.grants.some((g) => g.scope === "admin");

/** `#/streams`: every stream the token sees, described. */
export async function list(el) {
  const [who, { streams }] = await Promise.all([whoami(), api("GET", "/v1/streams")]);
  const described = await Promise.all(streams.map((name) => api("GET", `/v1/streams/${encodeURIComponent(name)}`)));
  const rows = described.map(({ stream, consumers }) => ({ stream, consumers }));
  const name = h("input", { name: "name", required: true, placeholder: "TelemetryIngest" });
  const partitions = h("input", { name: "partitions", type: "number", min: 1, value: 1 });
  const status = h("p", { class: "muted" });
  const create = h("form", {
    onsubmit: async (event) => {
      event.preventDefault();
      try {
        await api("PUT", `/v1/streams/${encodeURIComponent(name.value)}`, { partitions: Number(partitions.value) });
        location.hash = href(name.value);
      } catch (e) {
        status.textContent = e.message;
        status.className = "error";
      }
    },
  }, h("label", {}, "Name", name), h("label", {}, "Partitions", partitions),
  h("button", { type: "submit", disabled: !canCreate(who), title: canCreate(who) ? null : "needs the admin scope" }, "Create"));
  el.replaceChildren(
    h("h1", {}, "Streams"),
    table(rows, [
      ["Name", (r) => h("a", { href: href(r.stream.name) }, r.stream.name)],
      ["Partitions", (r) => r.stream.partitions.length, { num: true }],
      ["Records", (r) => sum(r.stream.partitions.map((p) => (p.next == null || p.earliest == null ? null : Number(p.next) - Number(p.earliest)))) ?? "–", { num: true }],
      ["Bytes", (r) => bytes(sum(r.stream.partitions.map((p) => p.bytes))), { num: true }],
      ["Consumers (lag)", (r) => r.consumers.map((c) => `${c.name} (${c.lag ?? "?"})`).join(", ") || "–"],
    ]),
    h("h2", {}, "Create a stream"), create, status);
}

/** `#/streams/NAME`: partitions, the first 50 records of one, and a form to send one. */
export async function one(el, name) {
  const path = `/v1/streams/${encodeURIComponent(name)}`;
  const [who, { stream }] = await Promise.all([whoami(), api("GET", path)]);
  const records = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  const which = h("select", { name: "partition", onchange: () => browse(Number(which.value)) },
    stream.partitions.map((p) => h("option", { value: p.partition }, `partition ${p.partition}`)));
  const browse = async (partition) => {
    which.value = String(partition);
    const { records: page } = await api("GET", `${path}/records?from=earliest&partition=${partition}&max=50`);
    records.replaceChildren(page.length === 0 ? h("p", { class: "muted" }, "No records.") : table(page, [
      ["Position", (r) => `${r.partition}:${r.sequence}`],
      ["Appended", (r) => r.append_time],
      ["Key", (r) => r.key ?? ""],
      ["Payload", (r) => h("pre", {}, r.payload_base64 != null ? `base64 ${r.payload_base64}` : typeof r.payload === "string" ? r.payload : JSON.stringify(r.payload, null, 2))],
    ]));
  };
  const payload = h("textarea", { name: "payload", placeholder: '{"temperature": 21.5}' });
  const key = h("input", { name: "key", placeholder: "device-7" });
  const sent = h("p", { class: "muted" });
  const send = h("form", {
    onsubmit: async (event) => {
      event.preventDefault();
      try {
        const answer = await api("POST", `${path}/events`, { payload: payload.value, key: key.value || undefined });
        sent.textContent = `Sent at ${answer.position}`;
        sent.className = "muted";
        await browse(Number(String(answer.position).split(":")[0]));
      } catch (e) {
        sent.textContent = e.message;
        sent.className = "error";
      }
    },
  }, h("label", {}, "Payload", payload), h("label", {}, "Key", key),
  h("button", { type: "submit", disabled: !can(who, "write", name), title: can(who, "write", name) ? null : "needs the write scope" }, "Send"));
  el.replaceChildren(
    h("h1", {}, name),
    table(stream.partitions, [
      ["Partition", (p) => p.partition, { num: true }],
      ["Earliest", (p) => p.earliest ?? "–", { num: true }],
      ["Next", (p) => p.next ?? "–", { num: true }],
      ["Bytes", (p) => bytes(p.bytes), { num: true }],
    ]),
    h("h2", {}, "Live tail"), tail(name),
    h("h2", {}, "Send an event"), send, sent,
    h("h2", {}, "Records, from the earliest"), h("label", {}, "Partition", which), records);
  await browse(0);
}
