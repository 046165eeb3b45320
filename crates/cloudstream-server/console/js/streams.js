// The streams page: every stream the token sees, with its partitions, records, bytes,
// horizon, write rate over the last 5 minutes and consumers with their lag; create and
// delete (admin).

import { api, attempt, bytes, button, confirm, field, form, gate, h, mapLimit, poll, status, streamPath, table, whoami } from "./lib.js";
import { lineChart } from "./charts.js";

/** Most streams described on the page (each costs two calls every 5 s). */
const SHOWN = 100;
const sum = (xs) => (xs.some((x) => x == null) ? null : xs.reduce((a, b) => a + b, 0));
export const href = (name, tab = "") => `#/streams/${encodeURIComponent(name)}${tab}`;

/** A horizon in the largest unit that divides it. */
export function horizon(ms) {
  for (const [unit, size] of [["d", 86400000], ["h", 3600000], ["m", 60000], ["s", 1000]]) {
    if (ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

/** Events per second in each whole 5 s bucket of `/stats` (the current one is partial), with each bucket's time. */
function rates(stats) {
  const whole = stats.events_in.slice(0, -1);
  const times = whole.map((_, i) => (stats.until_ms - (whole.length - i) * stats.interval_ms) / 1000);
  return [times, whole.map((e) => e / (stats.interval_ms / 1000))];
}

/** `#/streams`. */
export async function list(el) {
  const [who, caps] = await Promise.all([whoami(), api("GET", "/v1/capabilities")]);
  const rows = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  const out = status();
  // One sparkline per stream, kept across refreshes (uPlot holds window listeners).
  const sparks = new Map();
  const spark = (name, stats) => {
    if (!sparks.has(name)) sparks.set(name, lineChart("", ["events/s"], "", { spark: true }));
    const chart = sparks.get(name);
    chart.set(...rates(stats));
    return chart;
  };
  const remove = (name) => attempt(out, async () => {
    const sure = await confirm(`Delete ${name}?`,
      h("p", {}, "Its records and its consumers' checkpoints are deleted for good."), "Delete stream", name);
    if (!sure) return;
    await api("DELETE", streamPath(name));
    out.show(`Deleted ${name}.`);
    await refresh();
  });
  const refresh = async () => {
    const { streams } = await api("GET", "/v1/streams");
    // A stream deleted since the list was read is left out.
    const described = (await mapLimit(streams.slice(0, SHOWN), 6, async (name) => {
      const [d, stats] = await Promise.all([
        api("GET", streamPath(name)).catch(() => null),
        api("GET", streamPath(name, "/stats")).catch(() => null),
      ]);
      return d && { ...d, stats };
    })).filter(Boolean);
    for (const [name, chart] of sparks) {
      if (!described.some((d) => d.stream.name === name)) {
        chart.destroy();
        sparks.delete(name);
      }
    }
    const more = streams.length > SHOWN ? h("p", { class: "muted" }, `The first ${SHOWN} of ${streams.length} streams.`) : "";
    rows.replaceChildren(more, table(described, [
      ["Name", (r) => h("a", { href: href(r.stream.name) }, r.stream.name)],
      ["Partitions", (r) => r.stream.partitions.length, { num: true }],
      ["Horizon", (r) => horizon(r.stream.horizon_ms), { num: true }],
      // Only where positions are dense does next - earliest count records.
      ["Records", (r) => (caps.capabilities.dense_sequences
        ? sum(r.stream.partitions.map((p) => (p.next == null || p.earliest == null ? null : p.next - p.earliest)))
        : null) ?? "–", { num: true }],
      ["Bytes", (r) => bytes(sum(r.stream.partitions.map((p) => p.bytes))), { num: true }],
      ["Write rate (5 min)", (r) => (r.stats
        ? h("span", { class: "rate" }, spark(r.stream.name, r.stats), `${(rates(r.stats)[1].at(-1) ?? 0).toFixed(1)}/s`)
        : "–")],
      ["Consumers (lag)", (r) => r.consumers.map((c) => `${c.name} (${c.lag ?? "?"})`).join(", ") || "–"],
      ["", (r) => button("Delete", gate(who, "admin", r.stream.name), () => remove(r.stream.name))],
    ], "No streams yet: create one below."));
  };
  const name = h("input", { name: "name", required: true, placeholder: "TelemetryIngest" });
  const partitions = h("input", { name: "partitions", type: "number", min: 1, max: caps.capabilities.max_partitions ?? null, value: 1 });
  const horizonInput = h("input", { name: "horizon", placeholder: "24h" });
  const made = status();
  const create = button("Create", gate(who, "admin"), null, { type: "submit" });
  // Admin on some stream is not admin on this name: checked as it is typed.
  name.addEventListener("input", () => {
    const why = name.value ? gate(who, "admin", name.value) : gate(who, "admin");
    create.disabled = Boolean(why);
    create.title = why ?? "";
  });
  const creating = form(async () => {
    const body = { partitions: Number(partitions.value) };
    if (horizonInput.value.trim()) body.horizon = horizonInput.value.trim();
    await api("PUT", streamPath(name.value), body);
    location.hash = href(name.value);
  }, made, field("Name", name), field("Partitions", partitions), field("Horizon", horizonInput), create);
  el.replaceChildren(
    h("h1", {}, "Streams"),
    h("p", { class: "muted" }, `Provider: ${caps.backend}. Write rates count what went through this server.`),
    rows, out,
    h("h2", {}, "Create a stream"), creating, made);
  poll(rows, 5000, refresh, out);
}
