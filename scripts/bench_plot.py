#!/usr/bin/env python3
"""Plots of a side-by-side run (crates/cloudstream-bench): reads DIR/results.json, writes
DIR/throughput.png (events/s per workload and setting, a bar per peer), DIR/latency.png
(send latency p50 and p99 of the single-send workload) and DIR/end-to-end.png (p50, p99
and p99.9 of the end-to-end workload against the rate). Usage: bench_plot.py DIR"""

import json
import sys
from collections import OrderedDict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

WORKLOADS = OrderedDict(
    a="(a) 1 partition, 100 B, batches",
    b="(b) 16 partitions, 1 KiB, 4 producers",
    c="(c) single durable sends, 100 B",
    d="(d) end to end at a fixed rate",
    e="(e) catch-up read",
)


def bars(ax, rows, title):
    """A group of bars per setting, a bar per peer, events/s on a log scale."""
    settings = list(OrderedDict.fromkeys(r["setting"] for r in rows))
    peers = list(OrderedDict.fromkeys(r["peer"] for r in rows))
    width = 0.8 / max(len(peers), 1)
    for j, peer in enumerate(peers):
        xs, ys = [], []
        for i, setting in enumerate(settings):
            for r in rows:
                if r["peer"] == peer and r["setting"] == setting:
                    xs.append(i + j * width)
                    ys.append(r["events_per_s"])
        ax.bar(xs, ys, width, label=peer)
    ax.set_xticks([i + width * (len(peers) - 1) / 2 for i in range(len(settings))], settings)
    ax.set_yscale("log")
    ax.set_ylabel("events/s")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)


def main(directory):
    out = Path(directory)
    results = json.loads((out / "results.json").read_text())
    rows = results["rows"]
    present = [w for w in WORKLOADS if any(r["workload"] == w for r in rows)]
    if present:
        fig, axes = plt.subplots(len(present), 1, figsize=(11, 3.6 * len(present)), squeeze=False)
        for ax, w in zip(axes[:, 0], present):
            bars(ax, [r for r in rows if r["workload"] == w], WORKLOADS[w])
        axes[0, 0].legend(fontsize=8, ncol=4)
        fig.tight_layout()
        fig.savefig(out / "throughput.png", dpi=110)
    single = [r for r in rows if r["workload"] == "c" and r.get("latency")]
    if single:
        fig, ax = plt.subplots(figsize=(11, 4))
        peers = list(OrderedDict.fromkeys(r["peer"] for r in single))
        settings = list(OrderedDict.fromkeys(r["setting"] for r in single))
        for peer in peers:
            for q, style in (("p50_us", "o-"), ("p99_us", "s--")):
                points = [(settings.index(r["setting"]), r["latency"][q] / 1000) for r in single if r["peer"] == peer]
                ax.plot([p[0] for p in points], [p[1] for p in points], style, label=f"{peer} {q[:3]}")
        ax.set_xticks(range(len(settings)), settings)
        ax.set_yscale("log")
        ax.set_ylabel("send latency, ms")
        ax.set_title("(c) single durable sends: latency")
        ax.legend(fontsize=8, ncol=3)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / "latency.png", dpi=110)
    e2e = [r for r in rows if r["workload"] == "d" and r.get("latency")]
    if e2e:
        fig, ax = plt.subplots(figsize=(11, 4))
        for peer in OrderedDict.fromkeys(r["peer"] for r in e2e):
            mine = sorted((r for r in e2e if r["peer"] == peer), key=lambda r: float(r["setting"].split()[0]))
            rates = [float(r["setting"].split()[0]) for r in mine]
            for q, style in (("p50_us", "o-"), ("p99_us", "s--"), ("p999_us", "^:")):
                ax.plot(rates, [r["latency"][q] / 1000 for r in mine], style, label=f"{peer} {q[:-3]}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("events/s sent")
        ax.set_ylabel("send to consumer, ms")
        ax.set_title("(d) end-to-end latency")
        ax.legend(fontsize=7, ncol=3)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / "end-to-end.png", dpi=110)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "bench-results")
