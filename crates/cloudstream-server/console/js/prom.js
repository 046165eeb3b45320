// The Prometheus text format, as far as the server page needs it: histogram buckets by
// label, and quantiles from the difference of two scrapes (as PromQL's histogram_quantile
// over a rate does).

/** A sample value: a float, `+Inf`, `-Inf` or `NaN`. */
const SPECIAL = { "+Inf": Infinity, "-Inf": -Infinity, NaN: NaN };
const number = (text) => (Object.hasOwn(SPECIAL, text) ? SPECIAL[text] : Number(text));

/** A label value as written (`\\`, `\"` and `\n` escaped) as it is. */
const unquote = (text) => text.replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));

/** The samples of `text` named `name`: [{labels: {...}, value}]. */
export function samples(text, name) {
  const out = [];
  for (const line of text.split("\n")) {
    if (!line.startsWith(name)) continue;
    const match = line.match(/^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/);
    if (!match || match[1] !== name) continue;
    const labels = {};
    for (const [, k, v] of (match[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[k] = unquote(v);
    out.push({ labels, value: number(match[3]) });
  }
  return out;
}

/**
 * The cumulative buckets of histogram `name` whose labels match `pick`, summed over the
 * series that match: [[le, count], ...] by rising `le`.
 */
export function buckets(text, name, pick) {
  const byLe = new Map();
  for (const { labels, value } of samples(text, `${name}_bucket`)) {
    if (!pick(labels)) continue;
    const le = labels.le === "+Inf" ? Infinity : Number(labels.le);
    byLe.set(le, (byLe.get(le) ?? 0) + value);
  }
  return [...byLe.entries()].sort((a, b) => a[0] - b[0]);
}

/**
 * The `q` quantile (0..1) of what was observed between scrapes `before` and `after` (both
 * from `buckets`), interpolated within its bucket; null if nothing was observed.
 */
export function quantile(before, after, q) {
  const counts = after.map(([le, n], i) => [le, n - (before[i]?.[0] === le ? before[i][1] : 0)]);
  const total = counts.length ? counts[counts.length - 1][1] : 0;
  if (!(total > 0)) return null;
  const rank = q * total;
  let lower = 0;
  let below = 0;
  for (const [le, n] of counts) {
    if (n >= rank) {
      if (le === Infinity) return lower;
      return lower + (le - lower) * ((rank - below) / Math.max(n - below, 1e-9));
    }
    lower = le;
    below = n;
  }
  return lower;
}
