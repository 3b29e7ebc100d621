"""I/O-bound work overlaps in threads: a thread waiting on sleep() or a socket releases the GIL,
so the others run meanwhile.

Two workloads, each run serially, with a ThreadPoolExecutor and with
allcores.Pool(backend="thread"): tasks that sleep, and requests over real TCP sockets to a tiny
server on 127.0.0.1 (a thread of this process) that answers after a delay, as a remote service
would.

    python examples/io_threads.py --tasks 40 --delay-ms 50
"""
import argparse
import concurrent.futures as cf
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

import allcores

from _timing import Rows, compare, print_table, say_identical, speedup

_T = TypeVar("_T")
_R = TypeVar("_R")


class DelayedEcho(socketserver.StreamRequestHandler):
    """Reads one line, waits the server's delay (the remote side's latency), sends it back."""

    def handle(self) -> None:
        line = self.rfile.readline()
        time.sleep(cast(Server, self.server).delay)
        self.wfile.write(line.upper())


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # every client may connect at once
    delay = 0.0  # seconds before each answer


def start_server(delay: float) -> Server:
    server = Server(("127.0.0.1", 0), DelayedEcho)
    server.delay = delay
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def sleep_task(args: tuple[int, float]) -> int:
    i, delay = args
    time.sleep(delay)
    return i


def socket_task(args: tuple[int, Any]) -> str:
    """One request: connect, send a line, read the reply."""
    i, address = args
    with socket.create_connection(address, timeout=10) as s:
        s.sendall(f"request {i}\n".encode())
        return s.makefile("rb").readline().decode().strip()


def run_serial(fn: Callable[[_T], _R], items: Sequence[_T], workers: int) -> list[_R]:
    return list(map(fn, items))


def run_threads(fn: Callable[[_T], _R], items: Sequence[_T], workers: int) -> list[_R]:
    with cf.ThreadPoolExecutor(workers) as ex:
        return list(ex.map(fn, items))


def run_allcores_threads(fn: Callable[[_T], _R], items: Sequence[_T],
                         workers: int) -> list[_R]:
    with allcores.Pool(workers, backend="thread") as pool:
        return pool.map(fn, items, chunksize=1)  # one task a thread: each mostly waits


RUNS = [("serial", run_serial), ("ThreadPoolExecutor", run_threads),
        ("allcores.Pool(thread)", run_allcores_threads)]


def measure(title: str, fn: Callable[[Any], object], items: Sequence[Any],
            workers: int) -> tuple[Rows, bool]:
    """Time every method on the same items; return (rows, whether all results were equal)."""
    rows, _, same = compare(RUNS, fn, items, workers)
    print_table(rows, title=title)
    return rows, same


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=" ".join((__doc__ or "").split("\n\n")[0].split()))
    ap.add_argument("--tasks", type=int, default=40)
    ap.add_argument("--delay-ms", type=float, default=50.0, help="each task's wait")
    ap.add_argument("--workers", type=int, default=20, help="threads (I/O needs no core each)")
    args = ap.parse_args(argv)
    delay = args.delay_ms / 1000
    sleep_rows, same_sleep = measure(
        f"{args.tasks} tasks sleeping {args.delay_ms:g} ms:", sleep_task,
        [(i, delay) for i in range(args.tasks)], args.workers)
    server = start_server(delay)
    try:
        sock_rows, same_sock = measure(
            f"{args.tasks} requests to 127.0.0.1:{server.server_address[1]}, "
            f"answered after {args.delay_ms:g} ms:", socket_task,
            [(i, server.server_address) for i in range(args.tasks)], args.workers)
    finally:
        server.shutdown()
        server.server_close()
    same = same_sleep and same_sock
    say_identical(same)
    print(f"-> waiting releases the GIL: {args.workers} threads run the sleeps "
          f"{speedup(sleep_rows, 'ThreadPoolExecutor'):.1f}x and the socket requests "
          f"{speedup(sock_rows, 'ThreadPoolExecutor'):.1f}x faster than serial "
          f"(allcores.Pool(backend='thread') {speedup(sleep_rows, 'allcores.Pool(thread)'):.1f}x "
          f"and {speedup(sock_rows, 'allcores.Pool(thread)'):.1f}x), with no extra process")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
