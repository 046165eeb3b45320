// The streams page: every stream the token sees, with its partitions, records, bytes,
// horizon, write rate over the last 5 minutes and consumers with their lag; create and
// delete (admin).

import { api, bytes, button, can, confirm, every, field, form, h, mapLimit, status, streamPath, table, whoami } from "./lib.js";
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

/** Events per second in each 5 s bucket of `/stats`, with each bucket's time. */
export function rates(stats) {
  const n = stats.events_in.length;
  const times = stats.events_in.map((_, i) => (stats.until_ms - (n - 1 - i) * stats.interval_ms) / 1000);
  return [times, stats.events_in.map((e) => e / (stats.interval_ms / 1000))];
}

/** `#/streams`. */
export async function list(el) {
  const [who, caps] = await Promise.all([whoami(), api("GET", "/v1/capabilities")]);
  const admin = can(who, "admin");
  const rows = h("div", {}, h("p", { class: "muted" }, "Loading…"));
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
    const more = streams.length > SHOWN ? h("p", { class: "muted" }, `The first ${SHOWN} of ${streams.length} streams.`) : "";
    rows.replaceChildren(more, table(described, [
      ["Name", (r) => h("a", { href: href(r.stream.name) }, r.stream.name)],
      ["Partitions", (r) => r.stream.partitions.length, { num: true }],
      ["Horizon", (r) => horizon(r.stream.horizon_ms), { num: true }],
      ["Records", (r) => sum(r.stream.partitions.map((p) => (p.next == null || p.earliest == null ? null : p.next - p.earliest))) ?? "–", { num: true }],
      ["Bytes", (r) => bytes(sum(r.stream.partitions.map((p) => p.bytes))), { num: true }],
      ["Write rate (5 min)", (r) => {
        if (!r.stats) return "–";
        const [times, perSecond] = rates(r.stats);
        const chart = lineChart("", ["events/s"], "", { spark: true });
        chart.set(times, perSecond);
        return h("span", { class: "rate" }, chart, `${perSecond.at(-2)?.toFixed(1) ?? 0}/s`);
      }],
      ["Consumers (lag)", (r) => r.consumers.map((c) => `${c.name} (${c.lag ?? "?"})`).join(", ") || "–"],
      ["", (r) => button("Delete", can(who, "admin", r.stream.name), "admin", async () => {
        const sure = await confirm(`Delete ${r.stream.name}?`,
          h("p", {}, "Its records and its consumers' checkpoints are deleted for good."), "Delete stream", r.stream.name);
        if (!sure) return;
        await api("DELETE", streamPath(r.stream.name)).catch((e) => out.fail(e));
        await refresh();
      })],
    ], "No streams yet: create one below."));
  };
  const name = h("input", { name: "name", required: true, placeholder: "TelemetryIngest" });
  const partitions = h("input", { name: "partitions", type: "number", min: 1, max: caps.capabilities.max_partitions ?? null, value: 1 });
  const horizonInput = h("input", { name: "horizon", placeholder: "24h" });
  const out = status();
  const create = form(async () => {
    const body = { partitions: Number(partitions.value) };
    if (horizonInput.value.trim()) body.horizon = horizonInput.value.trim();
    await api("PUT", streamPath(name.value), body);
    location.hash = href(name.value);
  }, out,
  field("Name", name), field("Partitions", partitions), field("Horizon", horizonInput),
  button("Create", admin, "admin", null, { type: "submit" }));
  el.replaceChildren(
    h("h1", {}, "Streams"),
    h("p", { class: "muted" }, `Provider: ${caps.backend}. Write rates count what went through this server.`),
    rows,
    h("h2", {}, "Create a stream"), create, out);
  every(rows, 5000, () => refresh().catch((e) => out.fail(e)));
}
