// Line charts over uPlot (vendored in console/vendor/uplot, loaded by index.html as the
// global `uPlot`), and the rolling series the pages sample into them.

const COLORS = ["#2a6cdb", "#d9480f", "#2f9e44", "#ae3ec9", "#e8590c", "#1098ad"];

/**
 * A chart of time series in a new element: `series` names each line, `unit` goes on the
 * y axis; a `spark` is a small line with no axes, for a table cell. `chart.set(times, ...lines)` draws new data (times in seconds since the epoch).
 */
export function lineChart(title, series, unit, { spark = false } = {}) {
  const el = document.createElement("div");
  el.className = spark ? "spark" : "chart";
  let plot = null;
  let data = [[], ...series.map(() => [])];
  const options = () => (spark ? {
    width: 160,
    height: 32,
    series: [{}, { stroke: COLORS[0], width: 1, fill: "rgba(42,108,219,.15)", points: { show: false } }],
    axes: [{ show: false }, { show: false }],
    scales: { y: { range: (u, min, max) => [0, max > 0 ? max : 1] } },
    legend: { show: false },
    cursor: { show: false },
  } : {
    title,
    width: Math.max(300, Math.min(el.clientWidth || 600, 900)),
    height: 180,
    series: [{}, ...series.map((label, i) => ({ label, stroke: COLORS[i % COLORS.length], width: 1.5, points: { show: false } }))],
    axes: [{}, { label: unit, size: 60 }],
    scales: { y: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] } },
    legend: { live: false },
  });
  el.set = (times, ...lines) => {
    data = [times, ...lines];
    if (!plot && el.isConnected) plot = new uPlot(options(), data, el);
    else plot?.setData(data);
  };
  // Drawn once it is on the page (it needs its width).
  queueMicrotask(() => requestAnimationFrame(() => el.set(...data)));
  return el;
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
