"""The charts of a run, drawn by the bench itself with matplotlib's Agg backend (no
display needed): speedup against workers, round-trip latency, transfer rate. Each title names
the machine, so a chart read apart from its BENCHMARKS.md still says where it was measured.
Without matplotlib the bench says so and draws nothing."""
from __future__ import annotations

import os

from .report import TRANSFER_CASES, label, payload_sizes

CHARTS = {"speedup": "scaling", "latency": "rtt", "transfer": TRANSFER_CASES}


def machine_tag(doc):
    """"2core-py3.11": the prefix of the files, so runs on other machines sit side by side."""
    m = doc["machine"]
    return f"{m['cores']}core-py{'.'.join(m['python'].split('.')[:2])}"


def _title(doc, what):
    m = doc["machine"]
    return f"{what}\n{m['cpu']}, {m['cores']} cores, Python {m['python']}, W={doc['workers']}"


def _figure(key, rows):
    return [(lib, r[key]) for lib, r in rows.items() if isinstance(r.get(key), (int, float))]


def _speedup_points(rows, ws):
    """{row: [(w, speedup)]}. The ideal row: its speedup at each w (the median over every
    library's rounds). A library: its ratio to the ideal run of its own rounds times that
    speedup, so that the chart compares libraries as their paired ratios do, not the moments
    their raw timings fell on (a library above the ideal line was drift, not speed). Runs
    without the ratios (older JSON) are drawn from their raw speedups."""
    ideal = rows.get("ideal", {})
    out = {}
    for lib, r in rows.items():
        pts = []
        for w in ws:
            if lib != "ideal" and f"vs_ideal_w{w}" in r and f"speedup_w{w}" in ideal:
                pts.append((w, r[f"vs_ideal_w{w}"] * ideal[f"speedup_w{w}"]))
            elif f"speedup_w{w}" in r:
                pts.append((w, r[f"speedup_w{w}"]))
        if pts:
            out[lib] = pts
    return out


def _speedup(plt, doc):
    c = doc["results"]["scaling"]
    fig, ax = plt.subplots(figsize=(8, 5))
    ws = sorted({int(k[len("speedup_w"):]) for r in c["rows"].values() for k in r
                 if k.startswith("speedup_w")})
    ax.plot(ws, ws, "k:", label="linear (w x one core)")
    for lib, pts in _speedup_points(c["rows"], ws).items():
        style = "k--" if lib == "ideal" else "o-"
        ax.plot(*zip(*pts), style, label=label(lib), linewidth=3 if lib == "allcores" else 1)
    ax.set(xlabel="workers (w tasks on w workers)",
           ylabel="speedup over one serial call\n(paired with the ideal run of its rounds)",
           xticks=ws, title=_title(doc, "CPU-bound speedup against workers (higher is better)"))
    ax.legend(fontsize=8)
    return fig


def _latency(plt, doc):
    c = doc["results"]["rtt"]
    pts = _figure("us", c["rows"])
    fig, ax = plt.subplots(figsize=(8, 5))
    bars = ax.barh([label(lib) for lib, _ in pts], [v for _, v in pts],
                   color=["tab:green" if lib.startswith("allcores") else "tab:gray"
                          for lib, _ in pts])
    ax.bar_label(bars, fmt="%.1f", fontsize=8, padding=2)
    ax.set_xscale("log")
    ax.invert_yaxis()
    ax.set(xlabel="µs, median, log scale",
           title=_title(doc, "one tiny task's round trip (lower is better)"))
    return fig


def _transfer(plt, doc):
    import numpy as np
    cases = [n for n in CHARTS["transfer"] if n in doc["results"]]
    libs = list(dict.fromkeys(lib for n in cases for lib in doc["results"][n]["rows"]))
    bars = []
    for n in cases:
        c = doc["results"][n]
        for way in ("to", "back"):
            bars.append((f"{n.rstrip('64')} {c['params']['mib']} MiB {way}",
                         [c["rows"].get(lib, {}).get(f"{way}_gbs", 0) for lib in libs]))
    fig, ax = plt.subplots(figsize=(9, 5.5))
    y, h = np.arange(len(libs)), 0.8 / max(1, len(bars))
    for i, (name, values) in enumerate(bars):
        ax.barh(y + i * h, values, h, label=name)
    ax.set_yticks(y + h * (len(bars) - 1) / 2, [label(lib, _case(n)) for lib in libs
                                                 for n in cases[:1]])
    ax.invert_yaxis()
    ax.set(xlabel="GB/s (to a worker; back from it)",
           title=_title(doc, f"{payload_sizes(doc, cases)} payloads to a worker and back "
                             f"(higher is better)"))
    # Under the axes, one row: inside them it covered the last rows' bars.
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2,
              frameon=False)
    return fig


def _case(name):
    from .case import load
    return load().get(name)


DRAW = {"speedup": _speedup, "latency": _latency, "transfer": _transfer}


def draw(doc, folder):
    """Writes the charts whose cases ran to folder; returns ({name: path}, why none), where
    why is the reason no chart was drawn (matplotlib missing) or None."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return {}, "matplotlib is not installed (pip install matplotlib): no charts drawn"
    os.makedirs(folder, exist_ok=True)
    out = {}
    for name, cases in CHARTS.items():
        needed = (cases,) if isinstance(cases, str) else cases
        if not any(c in doc["results"] for c in needed):
            continue
        fig = DRAW[name](plt, doc)
        path = os.path.join(folder, f"{machine_tag(doc)}-{name}.png")
        fig.tight_layout()
        fig.savefig(path, dpi=100, bbox_inches="tight")  # legends drawn outside the axes
        plt.close(fig)
        out[name] = path
    return out, None
