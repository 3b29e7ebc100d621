"""The tables of a run, as text for the terminal and as Markdown for BENCHMARKS.md."""
from __future__ import annotations

from .adapters import ADAPTERS
from .bars import advantage
from .case import load

COMPANIONS = {"serial": "serial (one process, W calls)",
              "ideal": "ideal: W processes started in advance"}


def label(lib, case=None):
    if case is not None and lib in case.labels:
        return case.labels[lib]
    if lib in ADAPTERS:
        return ADAPTERS[lib].label
    return COMPANIONS.get(lib, lib)


def add_ratios(results):
    """results[case]["ratios"][lib]: how many times better allcores.Pool is than lib."""
    for name, c in results.items():
        c["ratios"] = {lib: x for lib in c["rows"] if lib != "allcores"
                       for x in [advantage(results, name, lib)] if x is not None}


def _versus(x):
    if x is None:
        return ""
    return f"{x:.2f}x better" if x >= 1 else f"{1 / x:.2f}x worse"


def _rows(results, name):
    """(label, headline, extra cells, ratio, note) for each row of a case, formatted."""
    c = results[name]
    case = load().get(name)
    columns = case.columns if case else []
    for lib, r in c["rows"].items():
        v = r.get(c["figure"])
        if not isinstance(v, (int, float)):
            note = (r.get("skip") or r.get("error") or "no figure")[:100]
            yield label(lib, case), "-", ["" for _ in columns], "", note
            continue
        cells = [fmt.format(r[key]) if isinstance(r.get(key), (int, float)) else ""
                 for key, _, fmt in columns]
        ratio = "" if lib in ("allcores", *COMPANIONS) else _versus(c.get("ratios", {}).get(lib))
        note = f"{len(r['failed_runs'])} run(s) failed" if r.get("failed_runs") else ""
        yield label(lib, case), f"{v:.3f}" if v < 10 else f"{v:,.1f}", cells, ratio, note


def size(mib):
    """1 -> "1 MiB", 1024 -> "1 GiB"."""
    return f"{mib // 1024} GiB" if mib >= 1024 and mib % 1024 == 0 else f"{mib:g} MiB"


def sizes(params):
    """The payload sizes a case really used, from its parameters ("64 MiB"; "1 GiB against
    1 MiB"), or "" for a case without any: the titles leave sizes out, since --quick moves
    smaller payloads than a full run."""
    if "mib" in params:
        return size(params["mib"])
    if "big_mib" in params and "small_mib" in params:
        return f"{size(params['big_mib'])} against {size(params['small_mib'])}"
    return ""


def payload_sizes(doc, names):
    """"64 MiB" (or "1 MiB and 64 MiB"): the sizes the cases `names` of a run moved."""
    found = sorted({doc["results"][n]["params"]["mib"] for n in names
                    if "mib" in doc["results"].get(n, {}).get("params", {})})
    return " and ".join(size(m) for m in found)


def _headers(name, c):
    """(the figures' headers, the case's title line, the ratio column's header)."""
    case = load().get(name)
    direction = "lower is better" if c["lower_is_better"] else "higher is better"
    # A case run under another Python (the interpreter backend) says which.
    python = f" (Python {c['python']})" if c.get("python") else ""
    used = sizes(c.get("params", {}))
    title = f"{c['title']}: {used}" if used else c["title"]
    return ([c["unit"]] + [h for _, h, _ in (case.columns if case else [])],
            f"{title}{python} [{c['unit']}; {direction}]", f"{label('allcores', case)} vs it")


def table(results) -> str:
    lines = []
    for name, c in results.items():
        heads, title, versus = _headers(name, c)
        head = ["library", *heads, versus, ""]
        body = [[lab, v, *cells, ratio, note]
                for lab, v, cells, ratio, note in _rows(results, name)]
        widths = [max(len(row[i]) for row in [head, *body]) for i in range(len(head) - 1)]
        lines.append(f"\n{title}")
        for row in [head, *body]:
            text = [row[0].ljust(widths[0])] + [cell.rjust(w) for cell, w in
                                                zip(row[1:-1], widths[1:])]
            lines.append(("  " + "  ".join(text) + "  " + row[-1]).rstrip())
    return "\n".join(lines)


def bar_lines(checks):
    return [f"  {'PASS' if ok else 'FAIL'}  {text}: {detail}" for text, ok, detail in checks]


def busy_warning(doc):
    """A sentence when other work competed with the run (a load average above the cores)."""
    loads = [doc["machine"]["loadavg"][0], *doc.get("loadavg_end", [])[:1]]
    cores = doc["machine"]["cores"] or 1
    if max(loads) <= cores:
        return ""
    return (f"Other work competed with this run: the load average reached {max(loads):.1f} on "
            f"{cores} cores, so its figures are noisier than a quiet machine's.")


#: A machine this big gets a second run beside the 2-core one.
BIG_MACHINE = 16


def markdown(doc) -> str:
    m, results = doc["machine"], doc["results"]
    packages = ", ".join(f"{k} {v}" for k, v in m["packages"].items() if v)
    mem = f", {m['mem_gib']:.0f} GiB" if m.get("mem_gib") else ""
    lines = [
        "# Benchmarks", "",
        f"`{doc['command']}`, {m['started_utc']}, {doc['seconds']:.0f} s"
        f"{' (quick: small sizes, one repetition)' if doc['quick'] else ''}.", "",
        f"- Machine: {m['cpu']}, {m['cores']} cores ({m['cores_usable']} usable){mem}; "
        f"{m['platform']}; load average at start "
        f"{', '.join(f'{x:.2f}' for x in m['loadavg'])}, at the end "
        f"{', '.join(f'{x:.2f}' for x in doc.get('loadavg_end', []))}.",
        f"- Python {m['python']} ({m['implementation']}, GIL "
        f"{'enabled' if m['gil_enabled'] else 'disabled'}); allcores at `{m.get('git') or '?'}`; "
        f"{packages}.",
        f"- W = {doc['workers']} workers for every library; {doc['reps']} repetition(s) per row, "
        "each row in a fresh process, the libraries alternating in rotating order; medians"
        f"{_once(results) if doc['reps'] > 1 else ''}.",
        "- Ratios come from this one run. The machine is a shared VM: trust the ratios more than "
        "the absolute times. How each case is measured: benchmarks/README.md.", ""]
    if m["cores"] < BIG_MACHINE:
        lines[-1:-1] = [f"- Only this {m['cores']}-core run is shown: no {BIG_MACHINE}-core "
                        f"machine has been available so far (a {BIG_MACHINE}-core run will go "
                        f"beside it when one is)."]
    if busy_warning(doc):
        lines[-1:-1] = [f"- **{busy_warning(doc)}**"]
    for name, c in results.items():
        heads, title, versus = _headers(name, c)
        head = ["library", *heads, versus, "note"]
        lines += [f"## {title}", "", "| " + " | ".join(head) + " |",
                  "|" + "|".join(["---"] + ["---:"] * (len(head) - 2) + ["---"]) + "|"]
        for lab, v, cells, ratio, note in _rows(results, name):
            lines.append("| " + " | ".join([lab, v, *cells, ratio, note]) + " |")
        lines.append("")
    lines += _charts(doc)
    lines += ["## Performance targets", "", "allcores.Pool unless the target names another row "
              "(allcores.ProcessPoolExecutor, allcores.Counter, the interpreter backend).", "",
              "| target | result | figures |", "|---|---|---|"]
    for b in doc["bars"]:
        lines.append(f"| {b['bar']} | {'PASS' if b['pass'] else 'FAIL'} | {b['detail']} |")
    return "\n".join(lines) + "\n"


def _once(results):
    """The cases whose rows ran once (the CPU-bound ones repeat paired rounds inside instead)."""
    cases = load()
    once = [name for name, c in results.items() if name in cases and cases[name].reps == 1
            and all(r.get("runs") == 1 for lib, r in c["rows"].items()
                    if lib in cases[name].libs)]
    return f" ({', '.join(f'`{n}`' for n in once)}: one repetition, rounds inside)" if once else ""


def _charts(doc):
    """The charts section: links to the PNGs the run drew (paths relative to the Markdown)."""
    if doc.get("plots_skipped"):
        return ["## Charts", "", doc["plots_skipped"] + ".", ""]
    if not doc.get("plots"):
        return []
    lines = ["## Charts", ""]
    titles = dict(CHART_TITLES, transfer=f"{payload_sizes(doc, TRANSFER_CASES)} transfer rates")
    for name, path in doc["plots"].items():
        lines += [f"![{titles.get(name, name)}]({path})", ""]
    return lines


CHART_TITLES = {"speedup": "CPU-bound speedup against workers",
                "latency": "one tiny task's round trip"}
TRANSFER_CASES = ("bytes64", "numpy64")  # the cases the transfer chart draws
