// Unit checks of the console's pure modules, run by node without a browser: prom.js (the
// Prometheus text format and histogram quantiles the server page draws) against values
// worked out by hand as PromQL's histogram_quantile gives them: the rank q * total falls in
// the first bucket whose cumulative count reaches it, interpolated linearly within that
// bucket (whose lower bound is the previous bucket's upper bound, 0 for the first); a rank
// in the +Inf bucket gives the previous bucket's upper bound; no observations give null
// (PromQL's NaN). Every check runs; a failure lists each one that failed.

import fs from "node:fs";

const PROM = new URL("../../console/js/prom.js", import.meta.url);

/** prom.js as a module: imported from its file, or (a node that takes `.js` as CommonJS) from its text. */
async function loadProm() {
  try {
    return await import(PROM.href);
  } catch (e) {
    if (!(e instanceof SyntaxError)) throw e;
    const source = fs.readFileSync(PROM, "utf8");
    return import(`data:text/javascript;charset=utf-8,${encodeURIComponent(source)}`);
  }
}

const close = (a, b) => (a === null || b === null ? a === b : Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(b)));
const show = (v) => JSON.stringify(v, (_, x) =>
  (x === Infinity ? "Infinity" : x === -Infinity ? "-Infinity" : Number.isNaN(x) ? "NaN" : x));

// One exposition, as the server writes it: HELP and TYPE comments, a timestamp on one
// sample, a name that prefixes others, label values with braces, commas and escapes.
const TEXT = String.raw`# HELP cloudstream_http_requests_total Requests answered.
# TYPE cloudstream_http_requests_total counter
cloudstream_http_requests_total{route="/v1/streams/{name}",method="GET",status="200"} 7
cloudstream_http_requests_total{route="/v1/streams/{name}/tail",method="GET",status="200"} 2 1700000000000
cloudstream_http_requests_total_extra{route="/x"} 99
cloudstream_http_requests 98
cloudstream_up 1
cloudstream_small 1.5e-3
cloudstream_inf +Inf
cloudstream_neg_inf -Inf
cloudstream_escaped{msg="say \"hi\", {a=b}",path="C:\\dir"} 3
`;

// A histogram in two series (a route and the tail), with _sum and _count beside the buckets.
const histogram = (a, tail) => {
  const les = ["0.1", "0.5", "1", "+Inf"];
  const lines = (route, counts) => les.map((le, i) =>
    `cloudstream_http_request_duration_seconds_bucket{route="${route}",le="${le}"} ${counts[i]}`);
  return [
    "# TYPE cloudstream_http_request_duration_seconds histogram",
    // +Inf first in one series: the order on the page does not matter.
    ...lines("/v1/streams/{name}/tail", tail).reverse(),
    ...lines("/v1/streams", a),
    `cloudstream_http_request_duration_seconds_sum{route="/v1/streams"} 12.5`,
    `cloudstream_http_request_duration_seconds_count{route="/v1/streams"} ${a.at(-1)}`,
    `cloudstream_http_request_duration_seconds_bucket_total{le="1"} 1000`,
    "",
  ].join("\n");
};

export async function promUnits(t) {
  t.step("import prom.js");
  const { samples, buckets, quantile } = await loadProm();
  const failures = [];
  const check = (what, got, want, same = (x, y) => show(x) === show(y)) => {
    if (!same(got, want)) failures.push(`${what}: got ${show(got)}, want ${show(want)}`);
  };
  const run = (what, fn) => {
    try {
      fn();
    } catch (e) {
      failures.push(`${what}: threw ${e.message}`);
    }
  };

  t.step("samples");
  run("samples", () => {
    check("samples of a counter with labels (timestamp ignored, prefixed names left out)",
      samples(TEXT, "cloudstream_http_requests_total"), [
        { labels: { route: "/v1/streams/{name}", method: "GET", status: "200" }, value: 7 },
        { labels: { route: "/v1/streams/{name}/tail", method: "GET", status: "200" }, value: 2 },
      ]);
    check("samples of a name others start with", samples(TEXT, "cloudstream_http_requests"), [{ labels: {}, value: 98 }]);
    check("samples without labels", samples(TEXT, "cloudstream_up"), [{ labels: {}, value: 1 }]);
    check("a value in exponent notation", samples(TEXT, "cloudstream_small")[0]?.value, 0.0015, close);
    check("a value of +Inf", samples(TEXT, "cloudstream_inf")[0]?.value, Infinity);
    check("a value of -Inf", samples(TEXT, "cloudstream_neg_inf")[0]?.value, -Infinity);
    check("a name that is only a comment's", samples(TEXT, "HELP"), []);
    check("an absent name", samples(TEXT, "cloudstream_absent"), []);
    check("escaped label values (\\\" and \\\\) unescaped", samples(TEXT, "cloudstream_escaped")[0]?.labels,
      { msg: 'say "hi", {a=b}', path: "C:\\dir" });
  });

  t.step("buckets");
  run("buckets", () => {
    const text = histogram([1, 2, 3, 4], [10, 20, 30, 40]);
    const name = "cloudstream_http_request_duration_seconds";
    check("buckets of the series picked, by rising le, +Inf as Infinity",
      buckets(text, name, (l) => !String(l.route).endsWith("/tail")), [[0.1, 1], [0.5, 2], [1, 3], [Infinity, 4]]);
    check("buckets summed over the series picked", buckets(text, name, () => true),
      [[0.1, 11], [0.5, 22], [1, 33], [Infinity, 44]]);
    check("buckets when no series is picked", buckets(text, name, () => false), []);
  });

  t.step("quantile");
  run("quantile", () => {
    const zero = [[0.1, 0], [0.5, 0], [1, 0], [Infinity, 0]];
    const after = [[0.1, 10], [0.5, 30], [1, 40], [Infinity, 40]];
    const q = (what, before, now, quant, want) => check(`${what} (q=${quant})`, quantile(before, now, quant), want, close);
    // rank 20 falls in (0.1, 0.5], 10 of its 20: 0.1 + 0.4 * 10/20.
    q("the median, interpolated in its bucket", zero, after, 0.5, 0.3);
    // rank 4 in the first bucket, whose lower bound is 0: 0.1 * 4/10.
    q("a rank in the first bucket, from 0", zero, after, 0.1, 0.04);
    // rank 10 exactly fills the first bucket.
    q("a rank at a bucket's top", zero, after, 0.25, 0.1);
    // rank 39.6 in (0.5, 1], 9.6 of its 10: 0.5 + 0.5 * 0.96.
    q("p99", zero, after, 0.99, 0.98);
    q("q=1: the top of the last finite bucket reached", zero, after, 1, 1);
    // An empty bucket (0.1, 0.5]: rank 10 is reached in the first one already.
    q("an empty bucket between", zero, [[0.1, 10], [0.5, 10], [1, 20], [Infinity, 20]], 0.5, 0.1);
    // rank 5 of 10 only in +Inf: the upper bound of the bucket before it.
    q("a rank in the +Inf bucket", zero, [[0.1, 1], [0.5, 2], [1, 3], [Infinity, 10]], 0.5, 1);
    q("p99 in the +Inf bucket", zero, [[0.1, 0], [0.5, 0], [1, 50], [Infinity, 100]], 0.99, 1);
    // Between two scrapes only the differences count: 10 new observations, all in (0.5, 1].
    q("the difference of two scrapes", [[0.1, 5], [0.5, 10], [1, 10], [Infinity, 10]],
      [[0.1, 5], [0.5, 10], [1, 20], [Infinity, 20]], 0.5, 0.75);
    q("no observation between two scrapes", after, after, 0.5, null);
    q("no observation at all", zero, zero, 0.99, null);
    q("no buckets", [], [], 0.5, null);
    // End to end: two scrapes of the text, the tail left out as the server page does.
    const name = "cloudstream_http_request_duration_seconds";
    const pick = (l) => !String(l.route).endsWith("/tail");
    const b = buckets(histogram([4, 8, 10, 10], [0, 0, 0, 0]), name, pick);
    const a = buckets(histogram([4, 8, 14, 18], [100, 100, 100, 100]), name, pick);
    // 8 new: 4 in (0.5, 1], 4 in +Inf. p50: rank 4 fills (0.5, 1] → 1; p25: rank 2 → 0.75.
    q("two scrapes of the text, p50", b, a, 0.5, 1);
    q("two scrapes of the text, p25", b, a, 0.25, 0.75);
    q("two scrapes of the text, p99", b, a, 0.99, 1);
  });

  t.step("the checks' results");
  if (failures.length) throw new Error(`${failures.length} prom.js checks failed: ${failures.join("; ")}`);
}
