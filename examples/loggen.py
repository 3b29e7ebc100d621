"""A generator of realistic web-server access logs, deterministic for a given seed.

Each line is the combined log format followed by the request's latency in milliseconds:

    198.51.100.23 - - [03/Mar/2026:10:00:01 +0000] "GET /api/items?page=2 HTTP/1.1" 200 5120 \
"https://example.com/" "Mozilla/5.0 (X11; Linux x86_64) ..." 37

Clients follow a Zipf-like law (a few addresses make most requests, as with crawlers and
proxies); each endpoint has its own latency distribution (log-normal, with a slow tail) and its
own mix of status codes. Run it alone to write a file: python loggen.py --mb 50 out.log
"""
import argparse
import itertools
import math
import random
import time
from collections.abc import Callable, Iterator

START = 1772532000  # 2026-03-03 10:00:00 UTC: a fixed origin keeps the output reproducible

# (method, path, query choices, median latency ms, weight). Query strings vary the request line
# so the parser must strip them before grouping by endpoint.
ENDPOINTS: list[tuple[str, str, tuple[str, ...], int, int]] = [
    ("GET", "/", ("",), 8, 30),
    ("GET", "/static/app.js", ("", "?v=3"), 2, 25),
    ("GET", "/static/style.css", ("", "?v=3"), 2, 20),
    ("GET", "/api/items", ("?page=1", "?page=2", "?page=3", "?q=shoes"), 35, 40),
    ("GET", "/api/items/detail", ("?id=17", "?id=42", "?id=99"), 22, 25),
    ("POST", "/api/cart", ("",), 60, 10),
    ("POST", "/api/checkout", ("",), 240, 3),
    ("GET", "/search", ("?q=red", "?q=blue+shirt", "?q=sale"), 120, 12),
    ("POST", "/login", ("",), 90, 4),
    ("GET", "/health", ("",), 1, 6),
]

# Status codes and their weights per kind of endpoint (API calls fail more often than files).
STATUS_STATIC = ([200, 304, 404], [85, 13, 2])
STATUS_API = ([200, 201, 400, 401, 404, 429, 500, 503], [80, 5, 4, 3, 3, 2, 2, 1])

AGENTS = [
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 "
    "Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:127.0) Gecko/20100101 Firefox/127.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "curl/8.5.0",
    "python-requests/2.32.3",
]
AGENT_WEIGHTS = [40, 25, 20, 8, 4, 3]
REFERERS = ["-", "https://example.com/", "https://www.google.com/", "https://example.com/search"]
REFERER_WEIGHTS = [50, 30, 15, 5]

BATCH = 10_000  # lines drawn per round of rng.choices: bulk draws are far faster than one by one


def client_pool(rng: random.Random, n: int) -> tuple[list[str], list[float]]:
    """n distinct IPv4 addresses (documentation and private ranges) and Zipf weights 1/rank^1.1."""
    ips = [f"{rng.choice((10, 172, 192, 198, 203))}.{rng.randrange(256)}."
           f"{rng.randrange(256)}.{rng.randrange(1, 255)}" for _ in range(n)]
    weights = [1.0 / (rank ** 1.1) for rank in range(1, n + 1)]
    return ips, list(itertools.accumulate(weights))


def _latency(rng: random.Random, median_ms: float) -> int:
    """Log-normal around the median, with 1% of requests ten times slower (GC pauses, cold
    caches): that tail is what p99 is meant to show."""
    ms = median_ms * math.exp(rng.gauss(0.0, 0.6))
    if rng.random() < 0.01:
        ms *= 10
    return max(1, int(ms))


def _stamp_cache() -> Callable[[float], str]:
    """Formats a Unix time as [dd/Mon/yyyy:HH:MM:SS +0000], reusing the last result: timestamps
    advance by milliseconds, so most lines share their second with the previous one."""
    last_sec, last_text = -1, ""

    def stamp(t: float) -> str:
        nonlocal last_sec, last_text
        sec = int(t)
        if sec != last_sec:
            last_sec = sec
            last_text = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(sec))
        return last_text
    return stamp


def lines(seed: int = 1, clients: int = 5000, rate_per_s: float = 400.0) -> Iterator[str]:
    """An endless iterator of log lines (str, ending with a newline)."""
    rng = random.Random(seed)
    ips, ip_cum = client_pool(rng, clients)
    endpoint_cum = list(itertools.accumulate(e[4] for e in ENDPOINTS))
    stamp = _stamp_cache()
    t = float(START)
    while True:
        picks = zip(rng.choices(ips, cum_weights=ip_cum, k=BATCH),
                    rng.choices(ENDPOINTS, cum_weights=endpoint_cum, k=BATCH),
                    rng.choices(AGENTS, AGENT_WEIGHTS, k=BATCH),
                    rng.choices(REFERERS, REFERER_WEIGHTS, k=BATCH))
        for ip, (method, path, queries, median, _), agent, referer in picks:
            t += rng.expovariate(rate_per_s)
            codes, weights = STATUS_STATIC if path.startswith("/static") else STATUS_API
            status = rng.choices(codes, weights)[0]
            size = 0 if status in (204, 304) else int(rng.lognormvariate(8.0, 1.2))
            yield (f'{ip} - - [{stamp(t)}] "{method} {path}{rng.choice(queries)} HTTP/1.1" '
                   f'{status} {size} "{referer}" "{agent}" {_latency(rng, median)}\n')


def write_log(path: str, megabytes: float, seed: int = 1) -> tuple[int, int]:
    """Write whole lines to path until it holds at least `megabytes` MB (10^6 bytes); returns
    (bytes written, lines written)."""
    target = int(megabytes * 1_000_000)
    written = count = 0
    with open(path, "w", encoding="ascii", buffering=1 << 20) as f:
        for line in lines(seed):
            f.write(line)
            written += len(line)
            count += 1
            if written >= target:
                break
    return written, count


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("path")
    ap.add_argument("--mb", type=float, default=50.0, help="size in MB (default 50)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    size, count = write_log(args.path, args.mb, args.seed)
    print(f"wrote {count:,} lines, {size / 1e6:.1f} MB to {args.path}")


if __name__ == "__main__":
    main()
