#!/usr/bin/env python3
"""The report of benches/load.sh: medians over rounds, ratios, targets, plot.

Usage: load_report.py RESULTS.tsv PLOT.svg [CAPTION]

RESULTS.tsv has one line per wrk run: round, scenario, server, req/s, p50 µs,
p99 µs, non-2xx. Prints a Markdown table (medians over rounds; throughput and
p99 ratios to the native baseline; the throughput ratio to `wasmtime serve`
where it ran the scenario), the per-round ratios behind the targets of issue
#6, and writes an SVG with two panels: throughput relative to native per
scenario, and logreg-1 latency per server. Standard library only.
"""

import collections
import statistics
import sys

SERVERS = ["native", "scorehost", "scorehost-before", "scorehost-blocking", "wasmtime-serve", "wasmtime-serve-reuse"]
COLOURS = {"native": "#7f7f7f", "scorehost": "#1f77b4", "scorehost-before": "#2ca02c", "scorehost-blocking": "#9ecae1",
           "wasmtime-serve": "#d62728", "wasmtime-serve-reuse": "#ff9896"}


def load(path):
    runs = collections.defaultdict(list)  # (scenario, server) -> [(round, rps, p50, p99, bad)]
    for line in open(path):
        rnd, scenario, server, rps, p50, p99, bad = line.rstrip("\n").split("\t")
        runs[(scenario, server)].append((int(rnd), float(rps), float(p50), float(p99), int(bad)))
    return runs


def med(xs, i):
    return statistics.median(x[i] for x in xs)


def table(runs, scenarios):
    print("| scenario | server | req/s | p50 µs | p99 µs | non-2xx | req/s vs native | p99 vs native | req/s vs wasmtime serve |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for sc in scenarios:
        base = runs[(sc, "native")]
        wt = runs.get((sc, "wasmtime-serve"))
        for server in SERVERS:
            xs = runs.get((sc, server))
            if not xs:
                continue
            vs_wt = f"{med(xs, 1) / med(wt, 1):.2f}x" if wt else "—"
            print(f"| {sc} | {server} | {med(xs, 1):,.0f} | {med(xs, 2):,.0f} | {med(xs, 3):,.0f} | "
                  f"{sum(x[4] for x in xs)} | {med(xs, 1) / med(base, 1):.2f}x | {med(xs, 3) / med(base, 3):.2f}x | {vs_wt} |")


def per_round(runs, scenario, server, baseline):
    base = {x[0]: x[1] for x in runs.get((scenario, baseline), [])}
    return [x[1] / base[x[0]] for x in runs.get((scenario, server), []) if x[0] in base]


def targets(runs):
    print()
    print("Targets (issue #15), single-row scenarios, ratio of medians [per round]:")
    for sc in ["logreg-1", "gbdt-1"]:
        if not runs.get((sc, "native")) or not runs.get((sc, "scorehost")):
            continue
        thr = med(runs[(sc, "scorehost")], 1) / med(runs[(sc, "native")], 1)
        p99 = med(runs[(sc, "scorehost")], 3) / med(runs[(sc, "native")], 3)
        rounds = ", ".join(f"{r:.2f}" for r in per_round(runs, sc, "scorehost", "native"))
        print(f"  {sc} req/s vs native: {thr:.2f}x (target >= 0.9x) {'met' if thr >= 0.9 else 'MISSED'} [{rounds}]")
        print(f"  {sc} p99 vs native: {p99:.2f}x (target <= 1.5x) {'met' if p99 <= 1.5 else 'MISSED'}")
    for sc in ["logreg-1", "gbdt-1", "logreg-100"]:
        if runs.get((sc, "scorehost-before")) and runs.get((sc, "native")):
            now = med(runs[(sc, "scorehost")], 1) / med(runs[(sc, "native")], 1)
            was = med(runs[(sc, "scorehost-before")], 1) / med(runs[(sc, "native")], 1)
            change = (now / was - 1) * 100
            rounds = ", ".join(f"{r:.2f}" for r in per_round(runs, sc, "scorehost", "scorehost-before"))
            verdict = "met" if change >= -3 else "MISSED"
            print(f"  {sc} vs native, before -> after: {was:.2f}x -> {now:.2f}x ({change:+.1f}%; "
                  f"target: no drop over 3%) {verdict} [after/before per round: {rounds}]")
    for baseline in ["wasmtime-serve", "wasmtime-serve-reuse"]:
        if runs.get(("logreg-1", baseline)):
            ratio = med(runs[("logreg-1", "scorehost")], 1) / med(runs[("logreg-1", baseline)], 1)
            print(f"  logreg-1 scorehost vs {baseline}: {ratio:.2f}x")


def svg(runs, scenarios, path, caption):
    w, h = 960, 440
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
           f'<rect width="{w}" height="{h}" fill="white"/>']

    def text(x, y, s, anchor="middle", size=12, weight="normal"):
        out.append(f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}" font-weight="{weight}">{s}</text>')

    def bars(x0, y0, pw, ph, groups, ymax, fmt, title, ylabel, line=None):
        text(x0 + pw / 2, y0 - 22, title, size=14, weight="bold")
        out.append(f'<text x="{x0 - 48}" y="{y0 + ph / 2}" text-anchor="middle" font-size="11" '
                   f'transform="rotate(-90 {x0 - 48} {y0 + ph / 2})">{ylabel}</text>')
        out.append(f'<line x1="{x0}" y1="{y0 + ph}" x2="{x0 + pw}" y2="{y0 + ph}" stroke="black"/>')
        out.append(f'<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y0 + ph}" stroke="black"/>')
        for i in range(5):
            v = ymax * i / 4
            y = y0 + ph - ph * i / 4
            out.append(f'<line x1="{x0 - 4}" y1="{y:.1f}" x2="{x0}" y2="{y:.1f}" stroke="black"/>')
            text(x0 - 6, y + 4, fmt(v), anchor="end", size=10)
        if line is not None:
            y = y0 + ph - ph * line[0] / ymax
            out.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x0 + pw}" y2="{y:.1f}" stroke="#2ca02c" stroke-dasharray="6,4"/>')
            text(x0 + pw + 4, y + 4, line[1], anchor="start", size=10)
        gw = pw / len(groups)
        for gi, (label, values) in enumerate(groups):
            bw = gw * 0.8 / max(1, len(values))
            gx = x0 + gi * gw + gw * 0.1
            for bi, (server, v) in enumerate(values):
                bh = ph * min(v, ymax) / ymax
                x = gx + bi * bw
                out.append(f'<rect x="{x:.1f}" y="{y0 + ph - bh:.1f}" width="{bw - 2:.1f}" height="{bh:.1f}" fill="{COLOURS[server]}"/>')
                text(x + bw / 2 - 1, y0 + ph - bh - 4, fmt(v), size=9)
            text(x0 + gi * gw + gw / 2, y0 + ph + 16, label)

    ratio_groups = []
    for sc in scenarios:
        base = med(runs[(sc, "native")], 1)
        ratio_groups.append((sc, [(s, med(runs[(sc, s)], 1) / base) for s in SERVERS if runs.get((sc, s))]))
    ymax = max(1.0, max(v for _, vs in ratio_groups for _, v in vs)) * 1.15
    bars(80, 60, 470, 280, ratio_groups, ymax, lambda v: f"{v:.2f}", "Throughput relative to native (median req/s)",
         "x native", line=(0.9, "target 0.9x"))

    lat = [(s, runs[("logreg-1", s)]) for s in SERVERS if runs.get(("logreg-1", s))]
    lat_groups = [("p50", [(s, med(xs, 2)) for s, xs in lat]), ("p99", [(s, med(xs, 3)) for s, xs in lat])]
    ymax = max(v for _, vs in lat_groups for _, v in vs) * 1.15
    bars(680, 60, 250, 280, lat_groups, ymax, lambda v: f"{v / 1000:.2f}", "logreg-1 latency (ms)", "ms")

    text(w / 2, h - 12, caption, size=10)
    lx = 80
    for s in SERVERS:
        out.append(f'<rect x="{lx}" y="{h - 52}" width="12" height="12" fill="{COLOURS[s]}"/>')
        text(lx + 16, h - 42, s, anchor="start")
        lx += 30 + 8 * len(s)
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
    print(f"\nplot: {path}")


def main():
    runs = load(sys.argv[1])
    scenarios = list(dict.fromkeys(sc for sc, _ in runs))
    table(runs, scenarios)
    targets(runs)
    svg(runs, scenarios, sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "")


if __name__ == "__main__":
    main()
