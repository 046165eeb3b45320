// A stream's consumers: where each resumes in each partition, its lag in records (and in
// time, where the provider reads by position: the age of the oldest record it has not
// consumed), a lag chart sampled while the page is open, and a reset to the earliest, the
// latest, a time or a position (the checkpoint route), after a confirmation.

import { api, button, can, confirm, every, field, h, status, streamPath, table, whoami } from "./lib.js";
import { Rolling, lineChart } from "./charts.js";
import { header } from "./stream.js";

/** Job consumers (webhooks, deliveries, aggregations) are the server's own: admin only. */
const JOB = /^(webhook|deliver|aggregate)-/;

/** A resume point (`at:S`, `after:S`) as the sequence it resumes at. */
function resumesAt(start) {
  const m = /^(at|after):(\d+)$/.exec(start ?? "");
  return m ? Number(m[2]) + (m[1] === "after" ? 1 : 0) : null;
}

/** How long ago the record at `partition:seq` was appended, in seconds; null if unknown. */
async function age(name, partition, seq) {
  const query = new URLSearchParams({ partition, from: `${partition}:${seq}`, max: 1 });
  const { records } = await api("GET", `${streamPath(name, "/records")}?${query}`);
  return records[0] ? (Date.now() - Date.parse(records[0].append_time)) / 1000 : null;
}

/** The checkpoint body that moves every partition to `to` (`value` for time and position). */
function target(to, value, partitions) {
  const all = (start) => Object.fromEntries(partitions.map((p) => [String(p.partition), start]));
  if (to === "earliest" || to === "latest") return all(to);
  if (to === "time") {
    const time = new Date(value);
    if (Number.isNaN(time.getTime())) throw new Error(`"${value}" is not a time`);
    return all(`time:${time.toISOString()}`);
  }
  const m = /^(\d+):(\d+)$/.exec(value.trim());
  if (!m) throw new Error(`"${value}" is not a position P:S`);
  return { [m[1]]: `at:${m[2]}` };
}

/** Asks where to move `consumer`, and moves it; true if it moved. */
async function reset(name, consumer, partitions) {
  const to = h("select", { name: "to" }, ["earliest", "latest", "time", "position"].map((t) => h("option", { value: t }, t)));
  const value = h("input", { name: "value", placeholder: "2026-12-07T10:00:00Z or 0:42" });
  const sure = await confirm(`Reset ${consumer}?`, [
    h("p", {}, "It resumes there the next time it reads: records before it are skipped, records after it read again. Stop the consumer first."),
    field("To", to), field("Value", value),
  ], "Reset consumer");
  if (!sure) return false;
  await api("PUT", streamPath(name, `/consumers/${encodeURIComponent(consumer)}/checkpoint`), target(to.value, value.value, partitions));
  return true;
}

/** `#/streams/NAME/consumers`. */
export async function page(el, name) {
  const who = await whoami();
  const caps = (await api("GET", "/v1/capabilities")).capabilities;
  const rows = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  const out = status();
  // The chart keeps a line per consumer, drawn anew when the consumers change.
  const slot = h("div", {});
  let chart = null;
  let names = null;
  let rolling = null;
  const refresh = async () => {
    const [{ stream }, { consumers }] = await Promise.all([api("GET", streamPath(name)), api("GET", streamPath(name, "/consumers"))]);
    const next = Object.fromEntries(stream.partitions.map((p) => [p.partition, p.next]));
    const ages = await Promise.all(consumers.map(async (c) => {
      if (!caps.replay_by_position) return null;
      const behind = Object.entries(c.committed ?? {})
        .map(([p, start]) => [Number(p), resumesAt(start)])
        .filter(([p, seq]) => seq != null && next[p] != null && seq < next[p]);
      const each = await Promise.all(behind.map(([p, seq]) => age(name, p, seq).catch(() => null)));
      return each.length ? Math.max(...each.map((a) => a ?? 0)) : 0;
    }));
    rows.replaceChildren(table(consumers.map((c, i) => ({ ...c, age: ages[i] })), [
      ["Name", (c) => c.name],
      ["Position", (c) => h("pre", {}, Object.entries(c.committed ?? {}).map(([p, s]) => `${p}: ${s}`).join("\n") || "never committed")],
      ["Lag (records)", (c) => c.lag ?? "?", { num: true }],
      ["Lag (time)", (c) => (c.age == null ? "–" : `${c.age.toFixed(1)} s`), { num: true }],
      ["", (c) => {
        const allowed = can(who, JOB.test(c.name) ? "admin" : "read", name);
        return h("div", { class: "bar" },
          button("Reset", allowed, JOB.test(c.name) ? "admin" : "read", async () => {
            try {
              if (await reset(name, c.name, stream.partitions)) out.show(`${c.name} reset.`);
              await refresh();
            } catch (e) {
              out.fail(e);
            }
          }),
          button("Delete", can(who, "admin", name), "admin", async () => {
            if (!(await confirm(`Delete ${c.name}?`, h("p", {}, "Its checkpoint is forgotten."), "Delete consumer"))) return;
            await api("DELETE", streamPath(name, `/consumers/${encodeURIComponent(c.name)}`)).catch((e) => out.fail(e));
            await refresh();
          }));
      }],
    ], "No consumers: one appears when it first commits."));
    const now = consumers.map((c) => c.name).sort();
    if (now.join("\n") !== names?.join("\n")) {
      names = now;
      rolling = new Rolling(150, names.length);
      chart = lineChart("Lag (records)", names, "records");
      slot.replaceChildren(chart);
    }
    const lag = Object.fromEntries(consumers.map((c) => [c.name, c.lag ?? null]));
    rolling.push(Date.now() / 1000, ...names.map((n) => lag[n]));
    rolling.draw(chart);
  };
  el.replaceChildren(...header(name, "Consumers"), rows, out, h("h2", {}, "Lag, sampled every 2 s"), slot);
  every(rows, 2000, () => refresh().catch((e) => out.fail(e)));
}
