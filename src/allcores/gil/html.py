"""One self-contained HTML page for a GIL report: inline SVG and CSS, no network.

The timeline draws one lane per thread (held solid in the thread's colour, waiting for the GIL
shaded, running C code without the GIL outlined, blocked in I/O or sleep grey) under a "GIL"
lane coloured by the holder; a chart of cores used over time; the numbers; the verdict; and a
table of the first holds ("Thread A 0-5 ms, Thread B 5-10 ms"). Lanes are drawn per pixel
column (the state that covered most of the column wins), so a long run stays a small page.
"""
from __future__ import annotations

import html
import math

from .processes import is_busy

COLUMNS = 1000
LANE_H = 20
LANE_GAP = 6
LABEL_W = 170
PLOT_W = 1000
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf",
           "#bcbd22", "#7f7f7f"]
STATES = ("held", "waiting", "running", "blocked")


def _esc(s) -> str:
    return html.escape(str(s), quote=True)


def _fmt_t(t: float, span: float) -> str:
    if span < 0.02:
        return f"{t * 1e3:.1f} ms"
    if span < 5:
        return f"{t * 1e3:.0f} ms"
    return f"{t:.1f} s"


def _ticks(span: float, n: int = 8) -> list[float]:
    if span <= 0:
        return [0.0]
    raw = span / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    return [k * step for k in range(int(span / step) + 1)]


def _columns(segments, span: float):
    """For each lane key, the dominant state per pixel column: {key: [state or None] * COLUMNS}."""
    width = span / COLUMNS
    cover: dict = {}
    for key, state, a, b in segments:
        lane = cover.setdefault(key, [dict() for _ in range(COLUMNS)])
        c0 = max(0, int(a / width))
        c1 = min(COLUMNS - 1, int(b / width))
        for c in range(c0, c1 + 1):
            lo, hi = max(a, c * width), min(b, (c + 1) * width)
            if hi > lo:
                lane[c][state] = lane[c].get(state, 0.0) + hi - lo
    out = {}
    for key, lane in cover.items():
        cols = []
        for cell in lane:
            if not cell:
                cols.append(None)
                continue
            state, t = max(cell.items(), key=lambda kv: kv[1])
            cols.append(state if t >= 0.3 * width else None)
        out[key] = cols
    return out


def _runs(cols):
    """Run-length encodes a column list into (start_col, end_col_exclusive, value)."""
    start = 0
    for c in range(1, len(cols) + 1):
        if c == len(cols) or cols[c] != cols[start]:
            if cols[start] is not None:
                yield start, c, cols[start]
            start = c


def _timeline_svg(r) -> str:
    span = max(r.wall_s, 1e-9)
    threads = r.threads
    segs = [(s.thread, s.state, s.start_s, s.end_s) for s in r.segments]
    # The GIL lane: coloured by the holder.
    segs += [("gil", s.thread, s.start_s, s.end_s) for s in r.segments if s.state == "held"]
    cols = _columns(segs, span)
    lanes = ["gil"] + list(range(len(threads)))
    height = 24 + len(lanes) * (LANE_H + LANE_GAP) + 20
    px = PLOT_W / COLUMNS
    out = [f'<svg id="timeline" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {LABEL_W + PLOT_W + 10} {height}" '
           f'width="{LABEL_W + PLOT_W + 10}" height="{height}" role="img" aria-label="GIL timeline">',
           '<defs>']
    for i in range(len(threads)):
        c = PALETTE[i % len(PALETTE)]
        out.append(f'<pattern id="wait{i}" width="6" height="6" patternUnits="userSpaceOnUse" '
                   f'patternTransform="rotate(45)"><rect width="6" height="6" fill="{c}" fill-opacity="0.12"/>'
                   f'<rect width="2.5" height="6" fill="{c}" fill-opacity="0.55"/></pattern>')
    out.append("</defs>")
    for t in _ticks(span):
        x = LABEL_W + t / span * PLOT_W
        out.append(f'<line x1="{x:.1f}" y1="16" x2="{x:.1f}" y2="{height - 18}" stroke="#ddd"/>'
                   f'<text x="{x:.1f}" y="12" font-size="10" text-anchor="middle" fill="#555">'
                   f'{_esc(_fmt_t(t, span))}</text>')
    y = 24
    for lane in lanes:
        label = "GIL holder" if lane == "gil" else threads[lane].name
        out.append(f'<text x="{LABEL_W - 8}" y="{y + LANE_H - 6}" font-size="12" text-anchor="end" '
                   f'class="lane-label">{_esc(label)}</text>')
        out.append(f'<rect x="{LABEL_W}" y="{y}" width="{PLOT_W}" height="{LANE_H}" fill="#fafafa" '
                   f'stroke="#eee"/>')
        for c0, c1, v in _runs(cols.get(lane, [None] * COLUMNS)):
            x, w = LABEL_W + c0 * px, (c1 - c0) * px
            t0, t1 = c0 / COLUMNS * span, c1 / COLUMNS * span
            if lane == "gil":
                name = threads[v].name
                fill, cls, tip = PALETTE[v % len(PALETTE)], "seg gil", f"{name} holds the GIL"
                extra = ""
            else:
                c = PALETTE[lane % len(PALETTE)]
                cls, tip = f"seg {v}", {"held": "holds the GIL", "waiting": "waits for the GIL",
                                         "running": "runs without the GIL", "blocked": "blocked (I/O, sleep, lock)"}[v]
                fill = {"held": c, "waiting": f"url(#wait{lane})", "running": "#ffffff", "blocked": "#d9d9d9"}[v]
                extra = f' stroke="{c}" stroke-width="1.5"' if v == "running" else ""
                tip = f"{threads[lane].name} {tip}"
            out.append(f'<rect class="{cls}" x="{x:.2f}" y="{y + 2}" width="{max(w, 0.5):.2f}" height="{LANE_H - 4}" '
                       f'fill="{fill}"{extra}><title>{_esc(tip)}, {_esc(_fmt_t(t0, span))} - '
                       f'{_esc(_fmt_t(t1, span))}</title></rect>')
        y += LANE_H + LANE_GAP
    out.append("</svg>")
    return "\n".join(out)


def _processes_svg(r) -> str:
    """A lane group per process: a lane that says when it worked (busy: it used half a core or
    its threads wanted one half the time) or sat idle, then, for a Python process whose collector reported, a lane
    per thread with its GIL states."""
    span = max(r.wall_s, 1e-9)
    px = PLOT_W / COLUMNS
    rows = []  # (label, key, kind) kind: "busy" or thread index
    segs = []
    for k, p in enumerate(r.processes):
        rows.append((f"{p.pid} {p.role}", ("busy", k), "header"))
        for a, b, c, n in p.busy:
            segs.append((("busy", k), "busy" if is_busy(c, n) else "idle", a, b))
        if k > 0:
            shown = {i for i, t in enumerate(p.threads) if t.get("held")}
            for i in sorted(shown):
                rows.append((f"  {p.threads[i]['name']}", ("thr", k, i), "thread"))
            segs += [(("thr", k, i), st, a, b) for i, st, a, b in p.segments if i in shown]
    cols = _columns(segs, span)
    height = 24 + len(rows) * (LANE_H + LANE_GAP) + 20
    out = [f'<svg id="processes" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {LABEL_W + PLOT_W + 10} {height}" '
           f'width="{LABEL_W + PLOT_W + 10}" height="{height}" role="img" aria-label="processes over time">']
    for t in _ticks(span):
        x = LABEL_W + t / span * PLOT_W
        out.append(f'<line x1="{x:.1f}" y1="16" x2="{x:.1f}" y2="{height - 18}" stroke="#ddd"/>'
                   f'<text x="{x:.1f}" y="12" font-size="10" text-anchor="middle" fill="#555">'
                   f'{_esc(_fmt_t(t, span))}</text>')
    y = 24
    fills = {"busy": "#2ca02c", "idle": "#eeeeee", "held": "#1f77b4", "waiting": "url(#pwait)",
             "running": "#ffffff", "blocked": "#d9d9d9"}
    out.append('<defs><pattern id="pwait" width="6" height="6" patternUnits="userSpaceOnUse" '
               'patternTransform="rotate(45)"><rect width="6" height="6" fill="#d62728" fill-opacity="0.12"/>'
               '<rect width="2.5" height="6" fill="#d62728" fill-opacity="0.6"/></pattern></defs>')
    for label, key, kind in rows:
        weight = ' font-weight="600"' if kind == "header" else ""
        out.append(f'<text x="{LABEL_W - 8}" y="{y + LANE_H - 6}" font-size="12" text-anchor="end" '
                   f'class="lane-label"{weight}>{_esc(label)}</text>')
        out.append(f'<rect x="{LABEL_W}" y="{y}" width="{PLOT_W}" height="{LANE_H}" fill="#fafafa" stroke="#eee"/>')
        for c0, c1, v in _runs(cols.get(key, [None] * COLUMNS)):
            x, w = LABEL_W + c0 * px, (c1 - c0) * px
            t0, t1 = c0 / COLUMNS * span, c1 / COLUMNS * span
            extra = ' stroke="#1f77b4" stroke-width="1.5"' if v == "running" else ""
            out.append(f'<rect class="pseg {v}" x="{x:.2f}" y="{y + 2}" width="{max(w, 0.5):.2f}" '
                       f'height="{LANE_H - 4}" fill="{fills[v]}"{extra}><title>{_esc(label.strip())}: {v}, '
                       f'{_esc(_fmt_t(t0, span))} - {_esc(_fmt_t(t1, span))}</title></rect>')
        y += LANE_H + LANE_GAP
    out.append("</svg>")
    return "\n".join(out)


def _processes_table(r) -> str:
    out = ['<table id="process-table"><thead><tr><th>pid</th><th>role</th><th>name</th><th>start s</th>'
           '<th>end s</th><th>CPU s</th><th>cores</th><th>idle</th><th>GIL held</th></tr></thead><tbody>']
    for p in r.processes:
        out.append(f"<tr><td>{p.pid}</td><td>{_esc(p.role)}</td><td>{_esc(p.name)}</td><td>{p.start_s:.2f}</td>"
                   f"<td>{p.end_s:.2f}</td><td>{p.cpu_s:.3f}</td><td>{p.cores_used:.2f}</td>"
                   f"<td>{_pct(p.idle)}</td><td>{_pct(p.held)}</td></tr>")
    out.append("</tbody></table>")
    out.append(f"<p>The doctor's own CPU in all processes: {r.doctor_cpu_s * 1e3:.1f} ms "
               f"({r.doctor_cost * 100:.1f}% of the program's CPU).</p>")
    return "\n".join(out)


def _cores_svg(r) -> str:
    span = max(r.wall_s, 1e-9)
    pts = r.cores_timeline
    top = max([r.cores_available] + [c for _, c in pts]) or 1
    h, pad = 140, 24
    out = [f'<svg id="cores" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {LABEL_W + PLOT_W + 10} {h + pad}" '
           f'width="{LABEL_W + PLOT_W + 10}" height="{h + pad}" role="img" aria-label="cores used over time">']
    for k in range(int(math.ceil(top)) + 1):
        y = pad + h - k / top * h
        out.append(f'<line x1="{LABEL_W}" y1="{y:.1f}" x2="{LABEL_W + PLOT_W}" y2="{y:.1f}" stroke="#ddd"/>'
                   f'<text x="{LABEL_W - 8}" y="{y + 4:.1f}" font-size="10" text-anchor="end">{k}</text>')
    for t in _ticks(span):
        x = LABEL_W + t / span * PLOT_W
        out.append(f'<text x="{x:.1f}" y="12" font-size="10" text-anchor="middle" fill="#555">'
                   f'{_esc(_fmt_t(t, span))}</text>')
    if pts:
        path = " ".join(f"{LABEL_W + t / span * PLOT_W:.1f},{pad + h - c / top * h:.1f}" for t, c in pts)
        out.append(f'<polyline id="cores-line" points="{path}" fill="none" stroke="#1f77b4" stroke-width="2"/>')
    else:
        out.append(f'<text x="{LABEL_W + 10}" y="{pad + h / 2}" font-size="12">no points recorded</text>')
    out.append(f'<text x="{LABEL_W - 40}" y="{pad - 8}" font-size="10">cores</text></svg>')
    return "\n".join(out)


def _pct(x) -> str:
    return "-" if x is None else f"{x * 100:.1f}%"


def _numbers(r) -> str:
    rows = [("GIL held", _pct(r.held)), ("cores used", f"{r.cores_used:.2f} of {r.cores_available}"),
            ("GIL switches", "-" if r.switches is None else f"{r.switches} ({r.switches / r.wall_s:.0f}/s)"),
            ("switch interval", "-" if r.switch_interval_s is None else f"{r.switch_interval_s * 1e3:g} ms"),
            ("GIL-hog pressure", _pct(r.hog)), ("run time", f"{r.wall_s:.3f} s"),
            ("samples", f"{r.samples}, one per {r.mean_interval_us or r.interval_us:.0f} us "
                         f"({r.state_samples} with thread states)"),
            ("sampler's own CPU", f"{r.sampler_cpu_s * 1e3:.1f} ms ({r.sampler_cost * 100:.1f}% of the run), "
                                  f"{r.sampler_priority} priority"),
            ("Python", r.python_version)]
    out = ['<table id="numbers"><tbody>']
    out += [f"<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>" for k, v in rows]
    out.append("</tbody></table>")
    out.append('<table id="threads"><thead><tr><th>thread</th><th>held</th><th>waiting</th>'
               '<th>running without GIL</th><th>blocked</th><th>CPU s</th><th>starved of CPU s</th></tr></thead><tbody>')
    for i, t in enumerate(r.threads):
        c = PALETTE[i % len(PALETTE)]
        out.append(f'<tr><td><span class="sw" style="background:{c}"></span>{_esc(t.name)}</td><td>{_pct(t.held)}</td>'
                   f"<td>{_pct(t.waiting)}</td><td>{_pct(t.running)}</td><td>{_pct(t.blocked)}</td>"
                   f"<td>{t.cpu_s:.3f}</td><td>{t.runq_s:.3f}</td></tr>")
    out.append("</tbody></table>")
    for i in r.interpreters:
        out.append(f"<p>Subinterpreter {i['id']} (own GIL): held {_pct(i['held'])}, {i['switches']} switches.</p>")
    return "\n".join(out)


def _holds(r, limit: int = 60) -> str:
    holds = r.holds()
    if not holds:
        return "<p>No GIL holds were recorded.</p>"
    span = r.wall_s
    out = ['<table id="holds"><thead><tr><th>thread</th><th>from</th><th>to</th><th>length</th></tr></thead><tbody>']
    for name, a, b in holds[:limit]:
        out.append(f"<tr><td>{_esc(name)}</td><td>{_esc(_fmt_t(a, span))}</td><td>{_esc(_fmt_t(b, span))}</td>"
                   f"<td>{(b - a) * 1e3:.2f} ms</td></tr>")
    out.append("</tbody></table>")
    if len(holds) > limit:
        out.append(f"<p>... and {len(holds) - limit} more holds.</p>")
    return "\n".join(out)


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1220px}
h1{font-size:22px;margin:0 0 8px} h2{font-size:16px;margin:24px 0 8px}
.verdict{background:#f3f7ff;border-left:4px solid #1f77b4;padding:10px 14px;white-space:pre-wrap}
.notes{color:#8a5a00} table{border-collapse:collapse;margin:8px 0} th,td{padding:3px 10px;text-align:left;
border-bottom:1px solid #eee;font-variant-numeric:tabular-nums} #numbers th{font-weight:600;color:#444}
.sw{display:inline-block;width:10px;height:10px;margin-right:6px;border-radius:2px}
.legend span{display:inline-block;margin-right:18px} .legend i{display:inline-block;width:22px;height:12px;
vertical-align:middle;margin-right:5px;border:1px solid #999} svg{max-width:100%;height:auto}
"""

# Measures what the browser actually laid out, so that a test (or a reader of the DOM) can tell
# that the timeline rendered: its size and how many of its segments have a visible box.
_JS = """
(function(){
  var tl=document.getElementById('timeline'); if(!tl) return;
  var box=tl.getBoundingClientRect(), segs=tl.querySelectorAll('rect.seg'), n=0;
  for(var i=0;i<segs.length;i++){var b=segs[i].getBoundingClientRect(); if(b.width>0&&b.height>0) n++;}
  document.body.setAttribute('data-timeline-width', Math.round(box.width));
  document.body.setAttribute('data-timeline-height', Math.round(box.height));
  document.body.setAttribute('data-visible-segments', n);
  var pr=document.getElementById('processes');
  if(pr){var ps=pr.querySelectorAll('rect.pseg'), m=0;
    for(var j=0;j<ps.length;j++){var c=ps[j].getBoundingClientRect(); if(c.width>0&&c.height>0) m++;}
    document.body.setAttribute('data-process-segments', m);
    document.body.setAttribute('data-process-height', Math.round(pr.getBoundingClientRect().height));}
})();
"""


def render(r) -> str:
    notes = "".join(f"<li>{_esc(n)}</li>" for n in r.notes)
    legend = ('<div class="legend"><span><i style="background:#1f77b4"></i>holds the GIL (thread colour)</span>'
              '<span><i style="background:repeating-linear-gradient(45deg,#1f77b4aa 0 3px,#1f77b420 3px 7px)">'
              '</i>waits for the GIL</span><span><i style="background:#fff;border:1.5px solid #1f77b4"></i>runs '
              'without the GIL (C code)</span><span><i style="background:#d9d9d9"></i>blocked: I/O, sleep, lock'
              '</span></div>')
    body = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        "<title>allcores: GIL report</title>", f"<style>{_CSS}</style></head><body>",
        "<h1>GIL report</h1>" if len(r.processes) <= 1 else "<h1>allcores doctor: the program's processes and GIL</h1>",
        f'<div class="verdict" id="verdict">{_esc(r.verdict)}</div>',
        f'<ul class="notes">{notes}</ul>' if notes else "",
        "<h2>Who held the GIL when</h2>", legend, _timeline_svg(r),
        *(["<h2>Processes: when each one worked</h2>",
           '<div class="legend"><span><i style="background:#2ca02c"></i>busy</span><span><i style="background:#eee">'
           '</i>idle</span><span><i style="background:#1f77b4"></i>holds its GIL</span><span><i style="background:'
           'repeating-linear-gradient(45deg,#d62728aa 0 3px,#d6272820 3px 7px)"></i>waits for its GIL</span></div>',
           _processes_svg(r), _processes_table(r)] if len(r.processes) > 1 else []),
        "<h2>Cores used over time</h2>", _cores_svg(r),
        "<h2>Numbers</h2>", _numbers(r),
        "<h2>GIL holds, in order</h2>", _holds(r),
        f"<script>{_JS}</script>", "</body></html>",
    ]
    return "\n".join(body)
