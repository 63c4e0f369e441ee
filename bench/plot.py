#!/usr/bin/env python3
"""Throughput against clients, stead and etcd side by side, as an SVG on stdout.

Usage: bench/plot.py bench/results/1.csv [bench/results/3.csv]

Each CSV has the header `members,workload,clients,stead,etcd` (written by
bench/compare.sh). One panel per (members, workload); the x axis is the number of clients
(1, 16, 256, log scale), the y axis requests per second. Standard library only.
"""

import csv
import math
import sys

PANEL_W, PANEL_H, PAD = 260, 190, 46
COLORS = {"stead": "#1f77b4", "etcd": "#d62728"}


def load(paths):
    panels = {}
    for path in paths:
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                key = (row["members"], row["workload"])
                panels.setdefault(key, []).append(
                    (int(row["clients"]), float(row["stead"]), float(row["etcd"]))
                )
    return panels


def panel(x0, y0, title, points):
    points.sort()
    top = max(max(s, e) for _, s, e in points) * 1.1 or 1.0
    clients = [c for c, _, _ in points]
    lo, hi = math.log(min(clients)), math.log(max(clients))

    def px(c):
        return x0 + PAD + (math.log(c) - lo) / ((hi - lo) or 1) * (PANEL_W - PAD - 10)

    def py(v):
        return y0 + PANEL_H - PAD + 10 - v / top * (PANEL_H - PAD - 10)

    out = [
        f'<text x="{x0 + PANEL_W / 2}" y="{y0 + 14}" text-anchor="middle" '
        f'font-size="12" font-weight="bold">{title}</text>',
        f'<line x1="{x0 + PAD}" y1="{py(0)}" x2="{x0 + PANEL_W - 10}" y2="{py(0)}" stroke="#888"/>',
        f'<line x1="{x0 + PAD}" y1="{py(0)}" x2="{x0 + PAD}" y2="{py(top)}" stroke="#888"/>',
        f'<text x="{x0 + PAD - 4}" y="{py(top) + 4}" text-anchor="end" font-size="9">'
        f"{top:,.0f}</text>",
        f'<text x="{x0 + PAD - 4}" y="{py(0)}" text-anchor="end" font-size="9">0</text>',
    ]
    for c in clients:
        out.append(
            f'<text x="{px(c)}" y="{py(0) + 12}" text-anchor="middle" font-size="9">{c}</text>'
        )
    for i, name in ((1, "stead"), (2, "etcd")):
        pts = " ".join(f"{px(p[0]):.1f},{py(p[i]):.1f}" for p in points)
        out.append(
            f'<polyline points="{pts}" fill="none" stroke="{COLORS[name]}" stroke-width="2"/>'
        )
        for p in points:
            out.append(f'<circle cx="{px(p[0]):.1f}" cy="{py(p[i]):.1f}" r="3" fill="{COLORS[name]}"/>')
    return out


def main():
    panels = load(sys.argv[1:])
    if not panels:
        sys.exit("no results to plot")
    keys = sorted(panels)
    cols = 3
    rows = math.ceil(len(keys) / cols)
    width, height = cols * PANEL_W, rows * PANEL_H + 40
    body = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="10" y="{height - 12}" font-size="11">requests/s against clients '
        f'(log scale); <tspan fill="{COLORS["stead"]}">stead</tspan> vs '
        f'<tspan fill="{COLORS["etcd"]}">etcd 3.4</tspan>, same machine, same load generator</text>',
    ]
    for i, (members, workload) in enumerate(keys):
        x0, y0 = (i % cols) * PANEL_W, (i // cols) * PANEL_H
        title = f"{workload}, {members} member{'s' if members != '1' else ''}"
        body += panel(x0, y0, title, panels[(members, workload)])
    body.append("</svg>")
    print("\n".join(body))


if __name__ == "__main__":
    main()
