"""Parse one byte range of an access log into exact, mergeable statistics.

A worker gets only (path, start, end) and reads its own range, so no log data crosses processes:
what comes back is a few small Counters. Every statistic is exact and merges by addition
(latencies are kept as histograms of whole milliseconds, not as running percentiles), so the
merged result is the same whatever the chunking and whatever ran the chunks.
"""
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

#: A range's statistics: counts under "lines", "bad", "bytes"; Counters under "status" and
#: "clients"; "latency" maps an endpoint to a Counter of milliseconds.
Stats = dict[str, Any]
#: (path, start, end): one byte range of a log file.
Job = tuple[str, int, int]

# The combined log format plus a latency in ms. Bytes, not str: no decoding cost per line.
LINE = re.compile(
    rb'^(\S+) \S+ \S+ \[[^\]]*\] "(\S+) ([^ ?"]+)[^"]*" (\d{3}) (\d+|-) "[^"]*" "[^"]*" (\d+)$',
    re.MULTILINE)


def byte_ranges(path: str, chunk_bytes: int) -> list[Job]:
    """[(path, start, end)] covering the file; a chunk owns the lines that start inside it."""
    size = os.path.getsize(path)
    return [(path, start, min(start + chunk_bytes, size)) for start in range(0, size, chunk_bytes)]


def read_range(path: str, start: int, end: int) -> bytes:
    """The whole lines that start in [start, end): skip the line that began before start (the
    previous chunk owns it) and finish the line that runs past end."""
    with open(path, "rb") as f:
        if start > 0:
            f.seek(start - 1)
            f.readline()  # up to and including the newline that ends the previous chunk's line
        pos = f.tell()
        if pos >= end:
            return b""
        data = f.read(end - pos)
        if not data.endswith(b"\n"):
            data += f.readline()
    return data


def empty_stats() -> Stats:
    return {"lines": 0, "bad": 0, "bytes": 0, "status": Counter(), "clients": Counter(),
            "latency": {}}  # endpoint -> Counter(ms -> requests)


def parse_range(job: Job) -> Stats:
    """job: (path, start, end) -> statistics of those lines."""
    data = read_range(*job)
    stats = empty_stats()
    status, clients, latency = stats["status"], stats["clients"], stats["latency"]
    matched = sent = 0
    for ip, method, path, code, size, ms in LINE.findall(data):
        matched += 1
        status[code] += 1
        clients[ip] += 1
        if size != b"-":
            sent += int(size)
        key = method + b" " + path
        hist = latency.get(key)
        if hist is None:
            hist = latency[key] = Counter()
        hist[int(ms)] += 1
    stats["lines"] = data.count(b"\n")
    stats["bad"] = stats["lines"] - matched
    stats["bytes"] = sent
    return stats


def merge(parts: Iterable[Stats]) -> Stats:
    """Add up the statistics of several ranges (exact: only sums of counts)."""
    total = empty_stats()
    for part in parts:
        for key in ("lines", "bad", "bytes"):
            total[key] += part[key]
        total["status"].update(part["status"])
        total["clients"].update(part["clients"])
        for endpoint, hist in part["latency"].items():
            total["latency"].setdefault(endpoint, Counter()).update(hist)
    return total


def percentiles(hist: Mapping[int, int], qs: Sequence[int] = (50, 95, 99)) -> list[int]:
    """Nearest-rank percentiles of a histogram {value: count}: the smallest value with at least
    q% of the observations at or below it."""
    n = sum(hist.values())
    targets = [max(1, -(-q * n // 100)) for q in qs]  # ceil(q * n / 100), exact in integers
    out: list[int] = []
    seen = i = 0
    for value in sorted(hist):
        seen += hist[value]
        while i < len(targets) and seen >= targets[i]:
            out.append(value)
            i += 1
    return out


def report(stats: Stats, top: int = 5) -> list[str]:
    """Lines of text summarizing merged statistics."""
    out = [f"{stats['lines']:,} lines ({stats['bad']} unparsed), "
           f"{stats['bytes'] / 1e9:.2f} GB sent"]
    codes = ", ".join(f"{c.decode()}: {n:,}" for c, n in sorted(stats["status"].items()))
    out.append(f"status: {codes}")
    out.append(f"top {top} clients of {len(stats['clients']):,}: " + ", ".join(
        f"{ip.decode()} ({n:,})" for ip, n in stats["clients"].most_common(top)))
    out.append(f"  {'endpoint':28} {'requests':>9} {'p50':>6} {'p95':>6} {'p99':>6}  (ms)")
    for endpoint, hist in sorted(stats["latency"].items()):
        p50, p95, p99 = percentiles(hist)
        out.append(f"  {endpoint.decode():28} {sum(hist.values()):9,} {p50:6} {p95:6} {p99:6}")
    return out
