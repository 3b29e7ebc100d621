"""The verdict: what the numbers of a GIL report mean, in plain words.

decide(report) returns (findings, text): short codes for programs and tests, and one paragraph
per finding, the most important first. Every threshold is a named constant with its reason.
"""
from __future__ import annotations

#: A thread takes part in GIL contention when it holds the GIL at least this often...
CONTEND_HELD = 0.05
#: ...and waits for it at least this often (two spinners wait about half of the time each)...
CONTEND_WAIT = 0.10
#: ...and holds it at least this share of what the busiest thread holds (a main thread that
#: starts the workers and waits a little for the GIL is not one of them).
CONTEND_SHARE = 0.25
#: The GIL counts as busy above this share; below IO_HELD it is mostly free.
BUSY_HELD = 0.5
IO_HELD = 0.3
#: Nobody waits: total waiting of all threads below this share.
NOBODY_WAITS = 0.10
#: More than one core was used (1.0 plus the noise of a few percent of other threads).
PARALLEL_CORES = 1.25
#: A thread runs C code without the GIL at least this often (a woken thread waiting for a CPU
#: also reads as running, a few percent on a busy machine).
RUNNING_NOGIL = 0.2
#: GIL-hog: a drop request pending in this share of held samples, and one hold under pressure
#: longer than HOG_HOLD_S and HOG_INTERVALS switch intervals. Pure Python answers a drop request
#: within microseconds, so long pressed holds mean a C call that keeps the GIL.
HOG_SHARE = 0.10
HOG_HOLD_S = 0.05
HOG_INTERVALS = 10
#: An own-GIL subinterpreter counts as busy when its GIL is held this often.
SUB_BUSY = 0.3
#: CPU starvation: threads spent at least this share of their time runnable without a CPU, and
#: at least STARVED_WALL of the wall time in total.
STARVED_SHARE = 0.2
STARVED_WALL = 0.2


def _cores(n: int) -> str:
    return f"{n} core" if n == 1 else f"{n} cores"


def _pct(x: float) -> str:
    return f"{x * 100:.0f}%"


def _names(threads, limit: int = 4) -> str:
    names = [t.name for t in threads]
    if len(names) > limit:
        return ", ".join(names[:limit]) + f" and {len(names) - limit} more"
    return ", ".join(names)


def _speedup(contending, cores: int) -> tuple[float, float]:
    """What a process pool would give the contending threads: their span now over the time their
    measured CPU work would take in parallel; capped by the threads and the cores available."""
    work = [t.cpu_s for t in contending]
    span = max(t.alive_s for t in contending)
    ideal = max(max(work), sum(work) / max(cores, 1))
    cap = min(len(contending), cores)
    if ideal <= 0 or span <= 0:
        return 1.0, cap
    return max(1.0, min(span / ideal, cap)), cap


def decide(r) -> tuple[list[str], str]:
    findings: list[tuple[str, str]] = []
    py = [t for t in r.threads if t.python]
    cores = r.cores_available
    # Threads that ran C code without the GIL; on a starved machine they may still have used
    # less than a core in total, so their share of time counts as much as the cores used.
    nogil = [t for t in r.threads if t.running >= RUNNING_NOGIL]
    subs = [i for i in r.interpreters if i["held"] >= SUB_BUSY]
    procs = getattr(r, "processes", None) or []
    pool = any(p.role == "pool worker" for p in procs)
    # with a pool, cores_used counts every process: the thread findings look at this one's own
    own_cores = procs[0].cores_used if procs else r.cores_used
    # with a pool, the main process's threads are mostly the pool's machinery: the pool findings
    # say what they cost, and the advice for threads would be wrong
    c_parallel = not r.gil_disabled and not pool and (own_cores >= PARALLEL_CORES or bool(nogil))

    if r.gil_disabled:
        par = r.parallelism()
        text = (f"This Python is a free-threaded build: the GIL is disabled, so there is no GIL to wait for and "
                f"threads can run Python in parallel. The program used {r.cores_used:.2f} cores")
        if par["threads"] >= 2:
            text += (f"; its {par['threads']} busy threads ran {par['reached']:.2f} at a time on average "
                     f"(peak {par['peak']:.2f} cores). ")
            if par["reached"] >= PARALLEL_CORES:
                text += "They ran in parallel."
            elif cores > 1:
                text += ("They did not run in parallel: with no GIL to wait for, they were serialised by a "
                         "lock, a shared object, or waiting on each other.")
        else:
            text += "."
        findings.append(("free-threaded", text))
    elif not r.gil_measured:
        findings.append(("no-gil-data", "The GIL itself could not be read in this Python (see the notes); what "
                                        f"follows comes from CPU time alone: {r.cores_used:.2f} cores used."))

    if r.gil_measured:
        held = r.held or 0.0
        top_held = max((t.held or 0 for t in py), default=0)
        contending = [t for t in py if (t.held or 0) >= max(CONTEND_HELD, CONTEND_SHARE * top_held)
                      and (t.waiting or 0) >= CONTEND_WAIT]
        total_wait = sum(t.waiting or 0 for t in py)
        if len(contending) >= 2 and held >= BUSY_HELD and not pool:
            speedup, cap = _speedup(contending, cores)
            avg_wait = sum(t.waiting for t in contending) / len(contending)
            text = (f"{len(contending)} threads ({_names(contending)}) are CPU-bound in Python and take turns on the "
                    f"GIL: it was held {_pct(held)} of the time and each of them waited for it {_pct(avg_wait)} "
                    f"of the time, so together they used {r.cores_used:.2f} cores. ")
            if cores > 1:
                text += (f"A process pool (allcores.Pool or allcores.ProcessPoolExecutor) would run them in "
                         f"parallel: from their measured CPU time, about {speedup:.1f}x faster on this "
                         f"machine's {_cores(cores)}.")
            else:
                text += ("This machine has one usable core, so a process pool would not be faster here; on "
                         f"{len(contending)} or more cores it would run them in parallel.")
            findings.append(("gil-contention", text))
        elif held >= BUSY_HELD and total_wait < NOBODY_WAITS and not pool:
            top = max(py, key=lambda t: t.held or 0, default=None)
            who = f"One thread ({top.name})" if top else "One thread"
            findings.append(("single-thread", f"{who} runs Python {_pct(held)} of the time and nobody waits for the "
                                              "GIL: the GIL is not what limits this program, a single thread of "
                                              "work is. To use more cores, split the work into pieces and run "
                                              "them in processes (allcores.Pool().map)."))
        elif held < IO_HELD and not c_parallel and not subs and not pool:
            blockers = [t for t in py if t.blocked >= 0.3]
            who = f" ({_names(blockers)})" if blockers else ""
            findings.append(("io-bound", f"The GIL was free {_pct(1 - held)} of the time: the threads{who} mostly "
                                         "wait on I/O, sleep or locks, and hold the GIL only briefly. Threads are "
                                         "the right tool here; processes would not make this faster."))

        hogs = sorted(py, key=lambda t: t.hog, reverse=True)
        if (r.hog or 0) >= HOG_SHARE and hogs and hogs[0].hog > 0 and \
                r.max_hold_pressed_s >= max(HOG_HOLD_S, HOG_INTERVALS * (r.switch_interval_s or 0.005)):
            findings.append(("gil-hog", f"GIL-hog: {hogs[0].name} kept the GIL for up to "
                                        f"{r.max_hold_pressed_s * 1e3:.0f} ms at a stretch while other threads "
                                        f"asked for it (a drop request was pending in {_pct(r.hog)} of the held "
                                        "samples). That is a long C call that does not release the GIL (a big "
                                        "sort, a regular expression, a C extension); every other thread stalls "
                                        "meanwhile. Move it to a process, or use a version of the call that "
                                        "releases the GIL."))

    if subs:
        findings.append(("subinterpreters", f"{len(subs)} subinterpreter(s) with their own GIL ran Python "
                                            f"({', '.join(_pct(i['held']) for i in subs[:4])} of the time held) "
                                            f"beside the main interpreter's GIL (held {_pct(r.held or 0)}): "
                                            "they do not wait for each other."))
    if c_parallel:
        who = (f"; {_names(nogil)} ran without the GIL "
               f"{', '.join(_pct(t.running) for t in nogil[:4])} of the time") if nogil else ""
        if own_cores >= PARALLEL_CORES:
            text = (f"C code that releases the GIL ran in parallel: {own_cores:.2f} cores were used{who}. "
                    "Threads work well for this part.")
        else:
            text = (f"C code that releases the GIL ran beside the Python threads{who}: that part can run in "
                    f"parallel, and threads work for it. This run used {r.cores_used:.2f} cores.")
        findings.append(("c-parallel", text))

    runq = sum(t.runq_s for t in r.threads)
    cpu = sum(t.cpu_s for t in r.threads)
    if runq >= STARVED_WALL * r.wall_s and runq >= STARVED_SHARE * (runq + cpu):
        findings.append(("cpu-starved", f"CPU starvation: the threads spent {runq:.2f} s runnable but without a CPU "
                                        f"({_pct(runq / (runq + cpu))} of their time), so other processes are "
                                        f"competing for this machine's {_cores(cores)}. The program would run "
                                        "faster on a quieter machine; a thread that holds the GIL while it waits "
                                        "for a CPU still counts as holding it."))

    if procs:
        findings = pool_findings(r) + findings
    if not findings:
        if r.gil_measured:
            findings.append(("mixed", f"The GIL was held {_pct(r.held or 0)} of the time and the program used "
                                      f"{r.cores_used:.2f} cores; no single pattern dominates."))
        else:
            findings.append(("mixed", f"The program used {r.cores_used:.2f} cores."))
    return [code for code, _ in findings], "\n\n".join(text for _, text in findings)


# ---- the pool findings: a program whose processes the doctor followed ----

#: The pool's workers used at least this share of the cores they could use (min(workers, cores)).
POOL_PARALLEL = 0.7
#: The parent is busy at this share of a core or more while the workers are idle at least
#: PARENT_WORKERS_IDLE of their time: the workers wait for it.
PARENT_BUSY = 0.6
PARENT_WORKERS_IDLE = 0.3
#: The pool's own machinery (sending, receiving, pickling tasks) took at least this share of the
#: CPU spent on the tasks: each task costs more to send than to run.
TINY_OVERHEAD = 0.5
#: A chunksize that makes the per-task cost this share of the work.
TINY_TARGET = 0.1
#: One worker ran alone at the end for at least this share of the pool's run, and the others' idle
#: time then is at least IMBALANCE_IDLE of all the workers' time.
IMBALANCE_TAIL = 0.25
IMBALANCE_IDLE = 0.15
IMBALANCE_LAST_BUSY = 0.7
#: Threads wanting a CPU (running or runnable, from schedstat) above the cores by this factor on
#: average while the pool worked, with a worker running more than one thread at once (a thread
#: woken for a moment waits longer for a CPU on a loaded machine; a CPU-bound one counts 1.0
#: however loaded the machine is, so the per-worker figure is the steadier one).
OVERSUB_FACTOR = 1.4
OVERSUB_PER_PROCESS = 1.7
#: Workers spent at least this share of their lifetime starting (imports, unpickling the main
#: module) before their worker loop, and at least STARTUP_MIN_S.
STARTUP_SHARE = 0.3
STARTUP_MIN_S = 0.2
#: The main thread's stack samples needed before the verdict says what it spent its time on
#: (at 20 samples a second; fewer say little: one or two can land in the pool's code by chance).
PARENT_MIN_SAMPLES = 8
_OVERHEAD_KINDS = ("pool", "pickling", "unpickling")


def _busy(cores, runnable):
    from .processes import is_busy
    return is_busy(cores, runnable)


def _kind_shares(stacks: dict) -> dict:
    kinds = stacks.get("kinds") or {}
    n = sum(kinds.values())
    return {k: v / n for k, v in kinds.items()} if n else {}


def _tail(workers) -> tuple[float, float, float, float]:
    """(tail_s, window_s, idle share, last worker's busy share in the tail): how long one worker
    ran alone at the end of the pool's work."""
    spans = []
    for w in workers:
        busy = [(a, b) for a, b, c, n in w.busy if _busy(c, n)]
        if busy:
            spans.append((busy[0][0], busy[-1][1], busy, w))
    if len(spans) < 2:
        return 0.0, 0.0, 0.0, 0.0
    spans.sort(key=lambda s: s[1])
    window = max(spans[-1][1] - min(s[0] for s in spans), 1e-9)
    t_a, t_b = spans[-2][1], spans[-1][1]
    tail = t_b - t_a
    covered = sum(max(0.0, min(b, t_b) - max(a, t_a)) for a, b in spans[-1][2])
    idle = tail * (len(workers) - 1) / (len(workers) * window)
    return tail, window, idle, covered / tail if tail > 0 else 0.0


def _nice_chunk(x: float) -> int:
    for n in (2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000):
        if n >= x:
            return n
    return 10000


def pool_findings(r) -> list[tuple[str, str]]:
    procs = r.processes
    main = procs[0]
    workers = [p for p in procs if p.role == "pool worker"]
    if not workers:
        return []
    out = []
    cores = r.cores_available
    t0 = min(w.start_s for w in workers)
    t1 = max(w.end_s for w in workers)
    span = max(t1 - t0, 1e-9)
    w_cpu = sum(w.cpu_s for w in workers)
    w_cores = w_cpu / span
    w_idle = sum(w.idle * (w.end_s - w.start_s) for w in workers) / max(sum(w.end_s - w.start_s for w in workers), 1e-9)
    main_in = [(b - a, c, _busy(c, n)) for a, b, c, n in main.busy if a >= t0 and b <= t1 + 0.2]
    main_t = sum(d for d, _, _ in main_in)
    main_cores = sum(d * c for d, c, _ in main_in) / main_t if main_t else main.cores_used
    main_busy = sum(d for d, _, b in main_in if b) / main_t if main_t else 0.0
    usable = min(len(workers), cores)

    # overhead: the pool's machinery in the parent and the workers, against the task code in the workers
    w_kinds: dict = {}
    for w in workers:
        for k, v in (w.stacks.get("kinds") or {}).items():
            w_kinds[k] = w_kinds.get(k, 0) + v
    w_n = sum(w_kinds.values())
    # the task code's share, smoothed so that workers never seen in it still count a little
    w_over = 1 - (w_kinds.get("code", 0) + 0.5) / (w_n + 1)
    m_sh = _kind_shares(main.stacks)
    m_over = sum(m_sh.get(k, 0) for k in _OVERHEAD_KINDS)
    main_cpu_in = main_cores * span
    work_cpu = w_cpu * (1 - w_over)
    over_cpu = w_cpu * w_over + main_cpu_in * m_over
    # tiny tasks: the pool's machinery itself (not pickling big data) is what runs, in the
    # workers or in the parent's main thread
    w_pool = w_kinds.get("pool", 0) / w_n if w_n else 0.0
    main_sh = _kind_shares({"kinds": main.stacks.get("main_kinds") or {}})
    main_pool = main_sh.get("pool", 0.0)
    # a handful of the main thread's samples can land in the pool's code by chance
    n_main = sum((main.stacks.get("main_kinds") or main.stacks.get("kinds") or {}).values())
    main_pool = main_pool if n_main >= PARENT_MIN_SAMPLES else 0.0
    # a busy main thread in the caller's own code is the bottleneck whatever the workers do
    own_code = main_busy >= PARENT_BUSY and main_sh.get("code", 0.0) >= 0.5
    tiny = work_cpu > 0 and over_cpu >= TINY_OVERHEAD * work_cpu and not own_code and \
        ((w_n >= 3 and w_pool >= 0.5) or (main_busy >= PARENT_BUSY and main_pool >= 0.5))

    tail, window, tail_idle, tail_busy = _tail(workers)
    # the last worker must have worked through the tail: a long task, not a worker waiting too
    imbalance = len(workers) >= 2 and tail >= IMBALANCE_TAIL * window and tail_idle >= IMBALANCE_IDLE \
        and tail_busy >= IMBALANCE_LAST_BUSY

    ups = [w.startup_s for w in workers if w.startup_s is not None]
    lives = [w.end_s - w.start_s for w in workers if w.startup_s is not None]
    startup = bool(ups) and sum(ups) / len(ups) >= STARTUP_MIN_S and sum(ups) >= STARTUP_SHARE * sum(lives)

    busy_polls = [(n, b) for t, n, b in r.runnable if b > 0 and t0 <= t <= t1]
    runnable = sum(n for n, _ in busy_polls) / len(busy_polls) if busy_polls else 0.0
    multi = [w for w in workers if w.runnable >= OVERSUB_PER_PROCESS]
    oversub = runnable >= max(OVERSUB_FACTOR * cores, cores + 1) and bool(multi)

    parent = main_busy >= PARENT_BUSY and w_idle >= PARENT_WORKERS_IDLE and not tiny
    # workers idle waiting for the parent end their work in whatever order it hands results on,
    # and tiny tasks are too short for one of them to be the long last task: which worker
    # finished last then says nothing about the tasks' sizes
    imbalance = imbalance and not parent and not tiny

    if 1 - w_idle >= POOL_PARALLEL and not (parent or imbalance or startup or oversub or tiny):
        out.append(("parallel", f"The work uses the cores: the pool's {len(workers)} workers were busy "
                                f"{_pct(1 - w_idle)} of the {span:.2f} s they ran and used {w_cores:.2f} cores "
                                f"({w_cpu:.2f} s of CPU; {usable} could be used). The whole program used "
                                f"{r.cores_used:.2f} cores over {r.wall_s:.2f} s."
                                + ("" if w_cores >= POOL_PARALLEL * usable else
                                   " They got less CPU than they asked for: other programs are competing for "
                                   "this machine's cores.")))
    if parent:
        what = sorted(((k, v) for k, v in (main_sh or m_sh).items()), key=lambda kv: -kv[1])
        said = {"code": "its own code", "pickling": "pickling", "unpickling": "unpickling",
                "pool": "the pool's machinery"}
        doing = ", ".join(f"{said.get(k, k)} {_pct(v)}" for k, v in what[:3] if v >= 0.05)
        if n_main < PARENT_MIN_SAMPLES:
            doing = (f"too few ({n_main}) to tell what it was doing, a run of a second or more "
                     "gives enough") if n_main else ""
        top = (main.stacks.get("top_code") or [])
        top_s = f"; the busiest code: {top[0][0]}" if top and n_main >= PARENT_MIN_SAMPLES else ""
        out.append(("parent-bound", f"The main process is the bottleneck: it was busy {_pct(main_busy)} of the time "
                                    f"the pool ran ({main_cores:.2f} of a core), and the {len(workers)} workers sat idle {_pct(w_idle)} of their "
                                    f"time waiting for it. Its main thread's stack samples: {doing or 'no Python running'}{top_s}. "
                                    "Move that work into the tasks (merge or reduce in the workers, return less "
                                    "data), so the parent only hands out and collects."))
    if tiny:
        ratio = over_cpu / work_cpu
        chunk = _nice_chunk(ratio / TINY_TARGET)
        out.append(("tiny-tasks", f"The tasks are too small for what sending them costs: the pool's machinery "
                                  f"(sending, receiving and pickling tasks, in the parent and the workers) took "
                                  f"{over_cpu:.2f} s of CPU for {work_cpu:.2f} s of work in the task function, "
                                  f"{ratio:.1f}x the work. Send them in chunks: chunksize={chunk} (or more) would "
                                  f"make that cost about a tenth of the work."))
    if imbalance:
        out.append(("imbalance", f"Imbalance: for the last {tail:.2f} s of the pool's {window:.2f} s of work one "
                                 f"worker ran alone while the other {len(workers) - 1} sat idle, "
                                 f"{_pct(tail_idle)} of the workers' time. Split the long task, or send the "
                                 "longest tasks first (imap_unordered with chunksize=1 keeps the others busy)."))
    if oversub:
        per = max(p.runnable for p in multi)
        k = max(1, cores // max(len(workers), 1))
        out.append(("oversubscribed", f"Oversubscribed: {runnable:.1f} threads wanted a CPU at once on average "
                                      f"(running or waiting to run) on {_cores(cores)} while the pool worked; a "
                                      f"process ran up to {per:.1f} threads at once (a BLAS or OpenMP pool in every worker). Limit "
                                      f"each worker to {k} thread{'s' if k > 1 else ''}: OMP_NUM_THREADS={k} "
                                      f"OPENBLAS_NUM_THREADS={k} MKL_NUM_THREADS={k} before start, or "
                                      f"threadpoolctl.threadpool_limits({k}) in the workers."))
    if startup:
        mean_up = sum(ups) / len(ups)
        out.append(("startup-bound", f"Start-up dominates: the workers spent {mean_up:.2f} s each on average "
                                     f"starting (importing, unpickling the main module) before they took a task, "
                                     f"{_pct(sum(ups) / sum(lives))} of their lifetime. Keep the pool open across "
                                     "calls, import heavy modules only where needed, or use the fork start "
                                     "method (allcores pools fork from a ready template)."))
    return out
