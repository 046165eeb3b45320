// A stream's server-run jobs, one page per kind (webhooks, deliveries, aggregations): each
// with where it sends and its counters (handled, failed attempts, dead-lettered, what is
// failing now), refreshed every 2 s; register and delete (admin, as the server requires).

import { api, attempt, button, confirm, field, form, gate, h, poll, status, streamPath, table, whoami } from "./lib.js";
import { streamHeading } from "./stream.js";

/** What differs between kinds: the route, the tab, the settings the form asks for. */
const KINDS = {
  webhooks: {
    tab: "Webhooks",
    one: "webhook",
    article: "a",
    fields: () => {
      const url = h("input", { name: "url", required: true, placeholder: "https://hooks.example.com/orders" });
      const size = h("input", { name: "batch_size", type: "number", min: 1, max: 1000, value: 1 });
      return { inputs: [field("URL", url), field("Batch size", size)], body: () => ({ url: url.value, batch_size: Number(size.value) }) };
    },
  },
  deliveries: {
    tab: "Deliveries",
    one: "delivery",
    article: "a",
    fields: () => spec('{"to": "s3://bucket/orders/?region=us-east-1", "format": "parquet", "max_wait_ms": 60000}'),
  },
  aggregations: {
    tab: "Aggregations",
    one: "aggregation",
    article: "an",
    fields: () => spec('{"to": "OrdersPerMinute", "window": "tumbling 1m", "group_by": ["region"], "measures": ["orders = count", "total = sum(amount)"]}'),
  },
};

/** A JSON settings field: the whole body of the registration. */
function spec(example) {
  const text = h("textarea", { name: "spec", required: true, placeholder: example });
  return { inputs: [field("Settings (JSON)", text)], body: () => JSON.parse(text.value) };
}

/** `#/streams/NAME/{webhooks|deliveries|aggregations}`. */
export async function page(el, name, kind) {
  const k = KINDS[kind];
  const who = await whoami();
  const why = gate(who, "admin", name);
  const path = (id = "") => streamPath(name, `/${kind}${id && `/${encodeURIComponent(id)}`}`);
  const rows = h("div", {}, h("p", { class: "muted" }, why ? `Seeing ${kind} ${why}.` : "Loading…"));
  const out = status();
  const refresh = async () => {
    const jobs = (await api("GET", path()))[kind];
    rows.replaceChildren(table(jobs, [
      ["Id", (j) => j.id],
      ["To", (j) => j.url ?? j.to],
      ["Start", (j) => j.start],
      ["Delivered", (j) => j.delivered, { num: true }],
      ["Failed attempts", (j) => j.failed_attempts, { num: true }],
      ["Dead-lettered", (j) => j.dead_lettered ?? "–", { num: true }],
      ["Last error", (j) => (j.last_error ? h("span", { class: "error" }, j.last_error) : "–")],
      ["", (j) => button("Delete", why, () => attempt(out, async () => {
        if (!(await confirm(`Delete ${k.one} ${j.id}?`, h("p", {}, "It stops, and its consumer's checkpoint is forgotten."), `Delete ${k.one}`))) return;
        await api("DELETE", path(j.id));
        out.show(`Deleted ${j.id}.`);
        await refresh();
      }))],
    ], `No ${kind} yet.`));
  };
  const id = h("input", { name: "id", required: true, placeholder: "billing" });
  const { inputs, body } = k.fields();
  const register = form(async () => {
    await api("PUT", path(id.value), body());
    out.show(`Registered ${id.value}.`);
    await refresh();
  }, out, field("Id", id), ...inputs, button("Register", why, null, { type: "submit" }));
  el.replaceChildren(...streamHeading(name, k.tab), rows, h("h2", {}, `Register ${k.article} ${k.one}`), register, out);
  if (!why) poll(rows, 2000, refresh, out);
}
