#!/usr/bin/env python3
"""Plots of a side-by-side run (crates/cloudstream-bench): reads DIR/results.json and writes
DIR/throughput.png (events/s of (a), (b), (c) and (e), a bar per peer), DIR/latency.png
(send latency p50 and p99 of (c)) and DIR/end-to-end.png (p50, p99 and p99.9 of (d)
against the rate; a rate a peer did not sustain is marked x). A peer has one colour in
every plot. Usage: bench_plot.py DIR"""

import json
import sys
from collections import OrderedDict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

THROUGHPUT = OrderedDict(
    a="(a) 1 partition, 100 B, batches",
    b="(b) 16 partitions, 1 KiB, 4 producers",
    c="(c) single durable sends, 100 B",
    e="(e) catch-up read",
)
PERCENTILES = (("p50_us", "-", "o", "p50"), ("p99_us", "--", "s", "p99"), ("p999_us", ":", "^", "p99.9"))


def colours(rows):
    """One colour per peer, in the order peers ran."""
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    peers = list(OrderedDict.fromkeys(r["peer"] for r in rows))
    return {p: cycle[i % len(cycle)] for i, p in enumerate(peers)}


def bars(ax, rows, title, colour):
    """A group of bars per setting, a bar per peer, events/s on a log scale."""
    settings = list(OrderedDict.fromkeys(r["setting"] for r in rows))
    peers = [p for p in colour if any(r["peer"] == p for r in rows)]
    width = 0.8 / max(len(peers), 1)
    for j, peer in enumerate(peers):
        xs, ys = [], []
        for i, setting in enumerate(settings):
            for r in rows:
                if r["peer"] == peer and r["setting"] == setting:
                    xs.append(i + j * width)
                    ys.append(r["events_per_s"])
        ax.bar(xs, ys, width, color=colour[peer])
    ax.set_xticks([i + width * (len(peers) - 1) / 2 for i in range(len(settings))], settings)
    ax.set_yscale("log")
    ax.set_ylabel("events/s")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)


def legend(fig, colour):
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colour.values()]
    fig.legend(handles, list(colour), loc="upper center", ncol=min(len(colour), 6), fontsize=8)


def main(directory):
    out = Path(directory)
    rows = json.loads((out / "results.json").read_text())["rows"]
    colour = colours(rows)
    present = [w for w in THROUGHPUT if any(r["workload"] == w for r in rows)]
    if present:
        fig, axes = plt.subplots(len(present), 1, figsize=(11, 3.4 * len(present) + 0.6), squeeze=False)
        for ax, w in zip(axes[:, 0], present):
            bars(ax, [r for r in rows if r["workload"] == w], THROUGHPUT[w], colour)
        legend(fig, colour)
        fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / (3.4 * len(present) + 0.6)))
        fig.savefig(out / "throughput.png", dpi=110)
    single = [r for r in rows if r["workload"] == "c" and r.get("latency")]
    if single:
        fig, ax = plt.subplots(figsize=(11, 4.4))
        settings = list(OrderedDict.fromkeys(r["setting"] for r in single))
        for peer in OrderedDict.fromkeys(r["peer"] for r in single):
            mine = [r for r in single if r["peer"] == peer]
            for key, line, mark, _ in PERCENTILES[:2]:
                ax.plot([settings.index(r["setting"]) for r in mine], [r["latency"][key] / 1000 for r in mine],
                        linestyle=line, marker=mark, color=colour[peer])
        ax.set_xticks(range(len(settings)), settings)
        ax.set_yscale("log")
        ax.set_ylabel("send latency, ms (solid p50, dashed p99)")
        ax.set_title("(c) single durable sends: latency")
        ax.grid(alpha=0.3)
        legend(fig, {p: colour[p] for p in OrderedDict.fromkeys(r["peer"] for r in single)})
        fig.tight_layout(rect=(0, 0, 1, 0.9))
        fig.savefig(out / "latency.png", dpi=110)
    e2e = [r for r in rows if r["workload"] == "d" and r.get("latency")]
    if e2e:
        fig, ax = plt.subplots(figsize=(11, 4.4))
        for peer in OrderedDict.fromkeys(r["peer"] for r in e2e):
            mine = sorted((r for r in e2e if r["peer"] == peer), key=lambda r: float(r["setting"].split()[0]))
            rates = [float(r["setting"].split()[0]) for r in mine]
            for key, line, mark, _ in PERCENTILES:
                ax.plot(rates, [r["latency"][key] / 1000 for r in mine], linestyle=line, marker=mark, color=colour[peer])
            for rate, r in zip(rates, mine):
                if r["note"].startswith("NOT SUSTAINED"):
                    ax.plot([rate], [r["latency"]["p50_us"] / 1000], marker="x", markersize=12, color="black")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("events/s sent")
        ax.set_ylabel("send to consumer, ms (solid p50, dashed p99, dotted p99.9)")
        ax.set_title("(d) end-to-end latency (x: rate not sustained)")
        ax.grid(alpha=0.3)
        legend(fig, {p: colour[p] for p in OrderedDict.fromkeys(r["peer"] for r in e2e)})
        fig.tight_layout(rect=(0, 0, 1, 0.9))
        fig.savefig(out / "end-to-end.png", dpi=110)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "bench-results")
