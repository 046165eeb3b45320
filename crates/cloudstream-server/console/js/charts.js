// Line charts over uPlot (vendored in console/vendor/uplot, loaded by index.html as the
// global `uPlot`), and the rolling series the pages sample into them.

const COLORS = ["#2a6cdb", "#d9480f", "#2f9e44", "#ae3ec9", "#e8590c", "#1098ad"];

/** uPlot's options for a chart, or for a `spark` (a small line with no axes, in a cell). */
function options(el, title, series, unit, spark) {
  if (spark) {
    return {
      width: 160,
      height: 32,
      series: [{}, { stroke: COLORS[0], width: 1, fill: "rgba(42,108,219,.15)", points: { show: false } }],
      axes: [{ show: false }, { show: false }],
      scales: { y: { range: (u, min, max) => [0, max > 0 ? max : 1] } },
      legend: { show: false },
      cursor: { show: false },
    };
  }
  return {
    title,
    width: Math.max(300, Math.min(el.clientWidth || 600, 900)),
    height: 180,
    // Points only while there are too few to draw a line.
    series: [{}, ...series.map((label, i) => ({ label, stroke: COLORS[i % COLORS.length], width: 1.5, points: { show: (u) => u.data[0].length < 3 } }))],
    axes: [{}, { label: unit, size: 60 }],
    scales: { y: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] } },
    legend: { live: false },
  };
}

/**
 * A chart of time series in a new element: `series` names each line, `unit` goes on the y
 * axis. `chart.set(times, ...lines)` draws new data (times in seconds since the epoch), once
 * the element is on the page (it needs its width); `chart.destroy()` frees it (uPlot keeps
 * window listeners until then). `data-points` counts the first line's values drawn.
 */
export function lineChart(title, series, unit, { spark = false } = {}) {
  const el = document.createElement("div");
  el.className = spark ? "spark chart-any" : "chart chart-any";
  el.dataset.points = "0";
  let plot = null;
  let data = [[], ...series.map(() => [])];
  el.set = (times, ...lines) => {
    data = [times, ...lines];
    el.dataset.points = String((lines[0] ?? []).filter((v) => v != null).length);
    if (!plot && el.isConnected) plot = new uPlot(options(el, title, series, unit, spark), data, el);
    else plot?.setData(data);
    // At least a minute wide: a first sample alone would otherwise span years.
    if (plot && !spark && times.length) plot.setScale("x", { min: Math.min(times[0], times.at(-1) - 60), max: times.at(-1) });
  };
  el.destroy = () => {
    plot?.destroy();
    plot = null;
  };
  requestAnimationFrame(() => el.set(...data));
  return el;
}

/** Frees every chart below `root`. */
export function destroyCharts(root) {
  for (const chart of root.querySelectorAll(".chart-any")) chart.destroy?.();
}

/** The last `size` samples of some values, each taken at a time. */
export class Rolling {
  constructor(size, lines) {
    this.size = size;
    this.times = [];
    this.lines = Array.from({ length: lines }, () => []);
  }

  /** Adds one sample: its time (seconds) and a value per line. */
  push(time, ...values) {
    this.times.push(time);
    values.forEach((v, i) => this.lines[i].push(v));
    if (this.times.length > this.size) {
      this.times.shift();
      this.lines.forEach((l) => l.shift());
    }
  }

  /** Draws the samples on `chart`. */
  draw(chart) {
    chart.set(this.times, ...this.lines);
  }
}
