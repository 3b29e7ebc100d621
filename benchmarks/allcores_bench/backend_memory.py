"""`python -m allcores_bench.backend_memory BACKEND W`: in a fresh process, what a pool of W
warm workers of BACKEND adds to the machine, printed as JSON (MiB): the growth of this process's
USS (private memory: Private_Clean + Private_Dirty), plus, for processes, the template's and
every worker's own USS. A subinterpreter's memory is in this process, a worker process's in its
own: only the total compares them."""
from __future__ import annotations

import gc
import json
import sys
import time

from .pool_cases import private_mib
from .workloads import pid_after, work


def main(backend, workers):
    import os

    import allcores
    gc.collect()
    before = private_mib(os.getpid())[0]
    pool = allcores.Pool(workers, backend=backend)
    pool.map(pid_after, [0.1] * workers, chunksize=1)  # every worker ran a task
    pool.map(work, [1000] * (8 * workers), chunksize=1)
    time.sleep(0.2)
    gc.collect()
    grown = private_mib(os.getpid())[0] - before
    workers_mib = [private_mib(pid)[0] for pid in pool.worker_pids()]
    template = getattr(pool._engine, "_template_pid", None) if backend == "process" else None
    others = private_mib(template)[0] if template else 0.0
    pool.terminate()
    pool.join()
    print(json.dumps({"total_mib": grown + sum(workers_mib) + others, "parent_mib": grown,
                      "workers_mib": workers_mib, "template_mib": others}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
