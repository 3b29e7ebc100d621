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
    c_parallel = not r.gil_disabled and (r.cores_used >= PARALLEL_CORES or bool(nogil))

    if r.gil_disabled:
        findings.append(("free-threaded", f"This Python is a free-threaded build: the GIL is disabled, so threads run "
                                          f"Python in parallel. The program used {r.cores_used:.2f} cores."))
    elif not r.gil_measured:
        findings.append(("no-gil-data", "The GIL itself could not be read in this Python (see the notes); what "
                                        f"follows comes from CPU time alone: {r.cores_used:.2f} cores used."))

    if r.gil_measured:
        held = r.held or 0.0
        top_held = max((t.held or 0 for t in py), default=0)
        contending = [t for t in py if (t.held or 0) >= max(CONTEND_HELD, CONTEND_SHARE * top_held)
                      and (t.waiting or 0) >= CONTEND_WAIT]
        total_wait = sum(t.waiting or 0 for t in py)
        if len(contending) >= 2 and held >= BUSY_HELD:
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
        elif held >= BUSY_HELD and total_wait < NOBODY_WAITS:
            top = max(py, key=lambda t: t.held or 0, default=None)
            who = f"One thread ({top.name})" if top else "One thread"
            findings.append(("single-thread", f"{who} runs Python {_pct(held)} of the time and nobody waits for the "
                                              "GIL: the GIL is not what limits this program, a single thread of "
                                              "work is. To use more cores, split the work into pieces and run "
                                              "them in processes (allcores.Pool().map)."))
        elif held < IO_HELD and not c_parallel and not subs:
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
        if r.cores_used >= PARALLEL_CORES:
            text = (f"C code that releases the GIL ran in parallel: {r.cores_used:.2f} cores were used{who}. "
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

    if not findings:
        if r.gil_measured:
            findings.append(("mixed", f"The GIL was held {_pct(r.held or 0)} of the time and the program used "
                                      f"{r.cores_used:.2f} cores; no single pattern dominates."))
        else:
            findings.append(("mixed", f"The program used {r.cores_used:.2f} cores."))
    return [code for code, _ in findings], "\n\n".join(text for _, text in findings)
