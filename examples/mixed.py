"""Processes with threads inside: fetch in threads, compute in processes.

Each document is fetched over HTTP from a local server (http.server on 127.0.0.1, a thread of
this process, answering after a delay like a remote API) and then scored by pure-Python CPU work.
Three ways:
  threads only     one ThreadPoolExecutor fetches and scores: the waits overlap, but the scoring
                   runs on one core at a time (the GIL)
  processes only   allcores.Pool, one document a task: the scoring uses every core, but each
                   worker waits for its fetches one after another
  mixed            allcores.Pool, a batch of documents a task; inside the task a
                   ThreadPoolExecutor fetches the batch at once, then the process scores it

    python examples/mixed.py --docs 32 --batch 8 --delay-ms 100
"""
import argparse
import concurrent.futures as cf
import http.server
import os
import sys
import threading
import time
import urllib.request
from typing import Any, cast

import allcores

from _timing import compare, print_table, say_identical, speedup

WORDS = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi "
         "rho sigma tau upsilon phi chi psi omega").split()


class DocHandler(http.server.BaseHTTPRequestHandler):
    """GET /doc/<n>: a deterministic text of 2,000 words, sent after the server's delay."""

    def do_GET(self) -> None:
        n = int(self.path.rsplit("/", 1)[1])
        body = " ".join(WORDS[(n * 7 + i * i) % len(WORDS)] for i in range(2000)).encode()
        time.sleep(cast(DocServer, self.server).delay)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep the example's output to its results


class DocServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    delay = 0.0  # seconds before each answer


def start_server(delay: float) -> DocServer:
    server = DocServer(("127.0.0.1", 0), DocHandler)
    server.delay = delay
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as resp:
        body: bytes = resp.read()
        return body


def score(body: bytes, rounds: int) -> tuple[int, int]:
    """Pure-Python CPU work on a response: a rolling hash over its words, `rounds` times."""
    words = body.split()
    h = 0
    for _ in range(rounds):
        for w in words:
            h = (h * 31 + len(w)) & 0xFFFFFFFF
    return len(words), h


def fetch_and_score(job: tuple[str, int]) -> tuple[int, int]:
    url, rounds = job
    return score(fetch(url), rounds)


def fetch_batch_and_score(job: tuple[list[str], int]) -> list[tuple[int, int]]:
    """One task of the mixed run: fetch every URL of the batch at once in threads (the waits
    overlap), then score them in this process (the CPU work runs in parallel across tasks)."""
    urls, rounds = job
    with cf.ThreadPoolExecutor(len(urls)) as ex:
        bodies = list(ex.map(fetch, urls))
    return [score(body, rounds) for body in bodies]


def run_threads(urls: list[str], rounds: int, batch: int, workers: int) -> list[tuple[int, int]]:
    with cf.ThreadPoolExecutor(workers * batch) as ex:
        return list(ex.map(fetch_and_score, [(u, rounds) for u in urls]))


def run_processes(urls: list[str], rounds: int, batch: int,
                  workers: int) -> list[tuple[int, int]]:
    with allcores.Pool(workers) as pool:
        return pool.map(fetch_and_score, [(u, rounds) for u in urls], chunksize=1)


def run_mixed(urls: list[str], rounds: int, batch: int, workers: int) -> list[tuple[int, int]]:
    batches = [(urls[i:i + batch], rounds) for i in range(0, len(urls), batch)]
    with allcores.Pool(workers) as pool:
        return [r for part in pool.map(fetch_batch_and_score, batches, chunksize=1) for r in part]


RUNS = [("threads only", run_threads), ("processes only", run_processes),
        ("processes + threads", run_mixed)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--docs", type=int, default=32)
    ap.add_argument("--batch", type=int, default=8, help="documents per task in the mixed run")
    ap.add_argument("--delay-ms", type=float, default=100.0, help="the server's answer delay")
    ap.add_argument("--rounds", type=int, default=300, help="scoring work per document")
    ap.add_argument("--workers", type=int, default=os.cpu_count(), help="processes")
    args = ap.parse_args(argv)
    server = start_server(args.delay_ms / 1000)
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/doc/"
        urls = [f"{base}{n}" for n in range(args.docs)]
        rows, _, same = compare(RUNS, urls, args.rounds, args.batch, args.workers)
    finally:
        server.shutdown()
        server.server_close()
    print_table(rows, title=f"{args.docs} documents, {args.delay_ms:g} ms to fetch each, "
                            f"{args.workers} processes, batches of {args.batch}:")
    say_identical(same)
    print(f"-> threads overlap the waits but score on one core; processes score on every core "
          f"but wait in turn; processes with threads inside do both: "
          f"{speedup(rows, 'processes + threads'):.2f}x faster than threads only and "
          f"{speedup(rows, 'processes + threads', 'processes only'):.2f}x faster than processes "
          f"only")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
