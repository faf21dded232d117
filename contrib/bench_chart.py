#!/usr/bin/env python3
"""Bar chart of a `make bench` CSV: luksfuse vs qemu-storage-daemon vs plaintext FUSE (raw
payload), MB/s for sequential read and write, kIOPS for 4 KiB random read.

Usage: bench_chart.py BENCH_CSV OUT_PNG
"""
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

TESTS = [
    ("raw seq read 1 MiB qd4", "seq read\n1 MiB qd4", "MB/s"),
    ("raw seq write 1 MiB qd4", "seq write\n1 MiB qd4", "MB/s"),
    ("raw rand read 4 KiB qd16", "rand read\n4 KiB qd16", "kIOPS"),
]
SERIES = [("luksfuse", "#1f77b4"), ("qemu-storage-daemon", "#ff7f0e"), ("plaintext FUSE", "#7f7f7f")]


def main(src, out):
    rows = [r for r in csv.DictReader(open(src)) if r["section"] == "fuse raw"]
    values = {}  # (test, series) -> value
    for r in rows:
        values[(r["test"], "luksfuse")] = float(r["luksfuse"])
        values[(r["test"], r["vs"])] = float(r["other"])
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.6), gridspec_kw={"width_ratios": [2, 1]})
    panels = [(axes[0], TESTS[:2], "MB/s", 1), (axes[1], TESTS[2:], "kIOPS", 1e3)]
    width = 0.26
    for ax, tests, unit, scale in panels:
        for i, (name, color) in enumerate(SERIES):
            xs = [t + (i - 1) * width for t in range(len(tests))]
            ys = [values.get((key, name), 0) / scale for key, _, _ in tests]
            bars = ax.bar(xs, ys, width, label=name, color=color)
            ax.bar_label(bars, fmt="%.0f", fontsize=8, padding=2)
        ax.set_xticks(range(len(tests)), [label for _, label, _ in tests])
        ax.set_ylabel(unit)
        ax.margins(y=0.15)
        ax.spines[["top", "right"]].set_visible(False)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, frameon=False, fontsize=9)
    fig.suptitle("Through FUSE, LUKS1 aes-xts-plain64, raw payload in tmpfs (higher is better)", fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(out, dpi=100)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
