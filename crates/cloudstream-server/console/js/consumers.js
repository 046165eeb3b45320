// A stream's consumers: where each resumes in each partition, its lag in records (and in
// time, where the provider reads by position: the age of the oldest record it has not
// consumed, by the server's clock), a lag chart sampled while the page is open, and a reset
// to the earliest, the latest, a time or a position (the checkpoint route), after a
// confirmation.

import { api, attempt, button, confirm, field, gate, h, mapLimit, parseTime, poll, request, status, streamPath, table, whoami } from "./lib.js";
import { Rolling, lineChart } from "./charts.js";
import { streamHeading } from "./stream.js";

/** The server's own consumers, by the prefix of their names (as `jobs/kinds.rs` names them). */
const JOBS = [["webhook-", "webhook"], ["deliver-", "delivery"], ["aggregate-", "aggregation"]];
const jobOf = (consumer) => JOBS.find(([prefix]) => consumer.startsWith(prefix))?.[1];

/** A resume point (`at:S`, `after:S`) as the sequence it resumes at; null for others. */
function resumesAt(start) {
  const m = /^(at|after):(\d+)$/.exec(start ?? "");
  return m ? Number(m[2]) + (m[1] === "after" ? 1 : 0) : null;
}

/** How long ago, by the server's clock, the record at `partition:seq` was appended, in seconds; null if unknown. */
async function age(name, partition, seq) {
  const query = new URLSearchParams({ partition, from: `${partition}:${seq}`, max: 1 });
  const response = await request("GET", `${streamPath(name, "/records")}?${query}`);
  const { records } = await response.json();
  const now = Date.parse(response.headers.get("date") ?? "");
  if (!records[0] || Number.isNaN(now)) return null;
  return Math.max(0, (now - Date.parse(records[0].append_time)) / 1000);
}

/** The age of the oldest record `consumer` has not consumed; null if any is unknown. */
async function lagTime(name, consumer, next) {
  const lagging = Object.entries(next).filter(([, n]) => n != null);
  const behind = [];
  for (const [p, n] of lagging) {
    const start = consumer.committed?.[p];
    const seq = start === undefined ? null : resumesAt(start);
    if (start === undefined || seq === null) return null;
    if (seq < n) behind.push([p, seq]);
  }
  const ages = await mapLimit(behind, 4, ([p, seq]) => age(name, p, seq).catch(() => null));
  return ages.includes(null) ? null : Math.max(0, ...ages);
}

/** The checkpoint body that moves every partition to `to` (`value` for time and position). */
function target(to, value, partitions) {
  const all = (start) => Object.fromEntries(partitions.map((p) => [String(p.partition), start]));
  if (to === "earliest" || to === "latest") return all(to);
  if (to === "time") return all(`time:${parseTime(value).toISOString()}`);
  const m = /^(\d+):(\d+)$/.exec(value.trim());
  if (!m) throw new Error(`"${value}" is not a position P:S`);
  return { [m[1]]: `at:${m[2]}` };
}

/** Asks where to move `consumer`, and moves it; true if it moved. */
async function reset(name, consumer, partitions) {
  const to = h("select", { name: "to" }, ["earliest", "latest", "time", "position"].map((t) => h("option", { value: t }, t)));
  const value = h("input", { name: "value", placeholder: "2026-12-07T10:00:00Z or 0:42" });
  const job = jobOf(consumer);
  const sure = await confirm(`Reset ${consumer}?`, [
    h("p", {}, "It resumes there: records before it are skipped, records after it are read again."),
    h("p", {}, job ? `The server stops its ${job}, moves it, and starts it again.`
      : "Stop the consumer first: a running one commits its own position over this."),
    field("To", to), field("Value", value),
  ], "Reset consumer");
  if (!sure) return false;
  await api("PUT", streamPath(name, `/consumers/${encodeURIComponent(consumer)}/checkpoint`), target(to.value, value.value, partitions));
  return true;
}

/** `#/streams/NAME/consumers`. */
export async function page(el, name) {
  const [who, { capabilities }] = await Promise.all([whoami(), api("GET", "/v1/capabilities")]);
  const rows = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  const out = status();
  // The chart keeps a line per consumer, drawn anew when the consumers change.
  const slot = h("div", {});
  let chart = null;
  let names = null;
  let rolling = null;
  const act = (action) => attempt(out, async () => {
    await action();
    await refresh();
  });
  const refresh = async () => {
    const [{ stream }, { consumers }] = await Promise.all([api("GET", streamPath(name)), api("GET", streamPath(name, "/consumers"))]);
    const next = Object.fromEntries(stream.partitions.map((p) => [p.partition, p.next]));
    const ages = await mapLimit(consumers, 2, (c) => (capabilities.replay_by_position ? lagTime(name, c, next) : null));
    rows.replaceChildren(table(consumers.map((c, i) => ({ ...c, age: ages[i] })), [
      ["Name", (c) => c.name],
      ["Position", (c) => h("pre", {}, Object.entries(c.committed ?? {}).map(([p, s]) => `${p}: ${s}`).join("\n") || "never committed")],
      ["Lag (records)", (c) => c.lag ?? "?", { num: true }],
      ["Lag (time)", (c) => (c.age == null ? "–" : `${c.age.toFixed(1)} s`), { num: true }],
      ["", (c) => {
        const job = jobOf(c.name);
        const resetWhy = job === "aggregation" ? "an aggregation's checkpoint moves with its saved windows: register it again with a start"
          : gate(who, job ? "admin" : "read", name);
        const deleteWhy = job ? `delete the ${job} instead` : gate(who, "admin", name);
        return h("div", { class: "bar" },
          button("Reset", resetWhy, () => act(async () => {
            if (await reset(name, c.name, stream.partitions)) out.show(`${c.name} reset.`);
          })),
          button("Delete", deleteWhy, () => act(async () => {
            if (!(await confirm(`Delete ${c.name}?`, h("p", {}, "Its checkpoint is forgotten: it starts over where it is told to next time."), "Delete consumer"))) return;
            await api("DELETE", streamPath(name, `/consumers/${encodeURIComponent(c.name)}`));
            out.show(`${c.name} deleted.`);
          })));
      }],
    ], "No consumers: one appears when it first commits."));
    const now = consumers.map((c) => c.name).sort();
    if (now.join("\n") !== names?.join("\n")) {
      names = now;
      rolling = new Rolling(150, names.length);
      chart?.destroy();
      chart = lineChart("Lag (records)", names, "records");
      slot.replaceChildren(chart);
    }
    const lag = Object.fromEntries(consumers.map((c) => [c.name, c.lag ?? null]));
    rolling.push(Date.now() / 1000, ...names.map((n) => lag[n]));
    rolling.draw(chart);
  };
  el.replaceChildren(...streamHeading(name, "Consumers"), rows, out, h("h2", {}, "Lag, sampled every 2 s"), slot);
  poll(rows, 2000, refresh, out);
}
