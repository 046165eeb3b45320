// The server page: the provider and what it can do, and, for an admin token, fsync and
// request latency (p50, p99) and requests per second, from /metrics scraped every 5 s (the
// differences between two scrapes, as histogram_quantile over a rate gives them).

import { api, can, h, poll, status, table, text, whoami } from "./lib.js";
import { Rolling, lineChart } from "./charts.js";
import { buckets, quantile, samples } from "./prom.js";

/** A capability's value as shown. */
const shown = (v) => (v === null ? "no limit" : Array.isArray(v) ? v.join(" – ") : String(v));

/** `#/server`. */
export async function page(el) {
  const [who, caps] = await Promise.all([whoami(), api("GET", "/v1/capabilities")]);
  const out = status();
  const parts = [
    h("h1", {}, "Server"),
    h("p", {}, `Provider: ${caps.backend}`),
    table(Object.entries(caps.capabilities), [["Capability", ([k]) => k], ["Value", ([, v]) => shown(v)]]),
  ];
  if (!can(who, "admin")) {
    el.replaceChildren(...parts, h("p", { class: "muted" }, "Latency charts read /metrics, which needs the admin scope."));
    return;
  }
  const fsync = lineChart("fsync latency", ["p50", "p99"], "ms");
  const latency = lineChart("Request latency (every route but the tail)", ["p50", "p99"], "ms");
  const rate = lineChart("Requests", ["per second"], "req/s");
  const series = { fsync: new Rolling(120, 2), latency: new Rolling(120, 2), rate: new Rolling(120, 1) };
  let last = null;
  const scrape = async () => {
    const metrics = await text("/metrics");
    const now = {
      time: Date.now() / 1000,
      fsync: buckets(metrics, "cloudstream_backend_latency_seconds", (l) => l.op === "fsync"),
      latency: buckets(metrics, "cloudstream_http_request_duration_seconds", (l) => !String(l.route).endsWith("/tail")),
      requests: samples(metrics, "cloudstream_http_requests_total").reduce((a, s) => a + s.value, 0),
    };
    if (last) {
      const ms = (b, a, q) => {
        const v = quantile(b, a, q);
        return v == null ? null : v * 1000;
      };
      series.fsync.push(now.time, ms(last.fsync, now.fsync, 0.5), ms(last.fsync, now.fsync, 0.99));
      series.latency.push(now.time, ms(last.latency, now.latency, 0.5), ms(last.latency, now.latency, 0.99));
      series.rate.push(now.time, (now.requests - last.requests) / (now.time - last.time));
      series.fsync.draw(fsync);
      series.latency.draw(latency);
      series.rate.draw(rate);
    }
    last = now;
  };
  el.replaceChildren(...parts,
    h("h2", {}, "Latency, sampled every 5 s"),
    h("p", { class: "muted" }, "From this server's /metrics; a point is what happened since the one before it."),
    h("div", { class: "charts" }, fsync, latency, rate), out);
  // A first point after a second rather than five.
  await scrape();
  setTimeout(() => poll(out, 5000, scrape, out), 1000);
}
