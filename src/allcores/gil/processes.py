"""The doctor's figures for every process of the program: the poller's CPU and the collectors' files.

attach(report, poller, folder) gives the report a `processes` list (one ProcessReport per
process, the program's own first), makes cores_used count the whole program, and keeps the
figures the pool findings are made from in report.pool (see verdict.pool_findings).
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field

#: A process counts as busy in a poll interval when it used at least this share of a core.
BUSY_CORE = 0.5

_HELPER_MARKS = ("multiprocessing.resource_tracker", "multiprocessing.forkserver", "semaphore_tracker")
_WORKER_MARKS = ("--multiprocessing-fork", "loky.backend.popen_loky", "spawn_main")


@dataclass
class ProcessReport:
    """One process of the program over the doctor's time axis (seconds from its start)."""
    pid: int
    ppid: int
    role: str                    # main, pool worker, pool helper, other
    name: str                    # multiprocessing's name for it, else its command name
    cmd: str
    start_s: float
    end_s: float
    cpu_s: float                 # CPU seconds it used (the doctor's share in it removed)
    cores_used: float            # cpu_s over its lifetime
    idle: float                  # share of its lifetime it used less than half a core
    python: bool                 # its GIL figures were measured
    held: float | None = None
    switches: int | None = None
    threads: list[dict] = field(default_factory=list)
    stacks: dict = field(default_factory=dict)
    startup_s: float | None = None   # a pool worker's time from start to its worker loop
    runnable: float = 0.0        # threads wanting a CPU (running or runnable), on average while busy
    doctor_cpu_s: float = 0.0
    busy: list = field(default_factory=list)      # [start_s, end_s, cores, runnable] per poll interval
    segments: list = field(default_factory=list)  # [thread index, state, start_s, end_s]

    def to_dict(self, timeline: bool = False) -> dict:
        d = asdict(self)
        if not timeline:
            d.pop("busy")
            d.pop("segments")
        return d


def is_busy(cores: float, wanting: float) -> bool:
    """A poll interval in which the process worked: it used half a core, or its threads wanted
    a CPU (ran or waited for one) half the interval: on a loaded machine it gets less than it
    wants."""
    return cores >= BUSY_CORE or wanting >= BUSY_CORE


def _load(folder: str) -> dict[int, dict]:
    out = {}
    try:
        names = os.listdir(folder)
    except OSError:
        return out
    for n in names:
        if n.endswith(".json"):
            try:
                with open(os.path.join(folder, n), encoding="utf-8") as f:
                    d = json.load(f)
                out[int(d["pid"])] = d
            except (OSError, ValueError, KeyError):
                continue
    return out


def _role(p, snap, procs, root) -> str:
    if p.pid == root:
        return "main"
    if snap and snap.get("pool_worker"):
        return "pool worker"
    cmd = " ".join(p.cmdline)
    if any(m in cmd for m in _HELPER_MARKS):
        return "pool helper"
    if any(m in cmd for m in _WORKER_MARKS):
        return "pool worker"
    name = (snap or {}).get("mp_name") or ""
    if "PoolWorker" in name:
        return "pool worker"
    return "other"


def attach(r, poller, folder: str | None, main_stacks: dict | None = None) -> None:
    snaps = _load(folder) if folder else {}
    root = poller.root
    wall = poller.wall_s or r.wall_s
    procs = []
    doctor_cpu = poller.cpu_s + r.sampler_cpu_s
    for p in poller.procs.values():
        snap = snaps.get(p.pid)
        end = p.end_s if p.end_s is not None else wall
        life = max(end - p.start_s, 1e-9)
        cpu = p.cpu_s
        dcpu = 0.0
        if snap:
            rep = snap["report"]
            cpu = max(cpu, rep.get("process_cpu_s", 0.0))
            dcpu = snap.get("doctor_cpu_s", 0.0)
        if p.pid == root:
            dcpu = poller.cpu_s + r.sampler_cpu_s
        else:
            doctor_cpu += dcpu
        cpu = max(cpu - dcpu, 0.0)
        busy = [[a, b, c, n] for a, b, c, n in poller.busy_series(p)]
        idle_t = sum(b - a for a, b, c, n in busy if not is_busy(c, n))
        pr = ProcessReport(pid=p.pid, ppid=p.ppid, role="", name=p.comm, cmd=" ".join(p.cmdline)[:200],
                           start_s=p.start_s, end_s=end, cpu_s=cpu, cores_used=cpu / life,
                           idle=min(idle_t / life, 1.0), python=False, busy=busy, doctor_cpu_s=dcpu,
                           runnable=p.runnable_sum / p.runnable_polls if p.runnable_polls else 0.0)
        if p.pid == root:
            pr.python = r.gil_measured
            pr.held, pr.switches = r.held, r.switches
            pr.threads = [{"name": t.name, "native_id": t.native_id, "held": t.held, "waiting": t.waiting,
                           "cpu_s": t.cpu_s} for t in r.threads]
            pr.stacks = main_stacks or {}
            pr.name = "MainProcess"
        elif snap:
            rep = snap["report"]
            shift = (snap["t0_ns"] / 1e9) - poller.t0_mono
            pr.python = bool(rep.get("gil_measured"))
            pr.held, pr.switches = rep.get("held"), rep.get("switches")
            pr.threads = [{"name": t["name"], "native_id": t["native_id"], "held": t["held"],
                           "waiting": t["waiting"], "cpu_s": t["cpu_s"]} for t in rep.get("threads", [])
                          if t["name"] != "allcores-doctor"]
            keep = {i for i, t in enumerate(rep.get("threads", [])) if t["name"] != "allcores-doctor"}
            pr.segments = [[i, st, a + shift, b + shift] for i, st, a, b in rep.get("timeline", []) if i in keep]
            pr.stacks = snap.get("stacks", {})
            pr.name = snap.get("mp_name") or p.comm
            if snap.get("loop_s") is not None:
                pr.startup_s = min(max(snap["loop_s"] + shift - p.start_s, 0.0), life)
        pr.role = _role(p, snap, poller.procs, root)
        procs.append(pr)
    # a process whose children are pool workers runs the pool (a template, a fork server)
    worker_parents = {pr.ppid for pr in procs if pr.role == "pool worker"}
    for pr in procs:
        if pr.role == "other" and pr.pid in worker_parents:
            pr.role = "pool helper"
    procs.sort(key=lambda pr: (pr.pid != root, pr.start_s, pr.pid))
    program_cpu = poller.program_cpu_s()
    r.processes = procs
    r.program_cpu_s = program_cpu
    r.doctor_cpu_s = doctor_cpu
    r.wall_s = max(r.wall_s, wall)
    r.cores_used = max(program_cpu - doctor_cpu, 0.0) / max(r.wall_s, 1e-9)
    r.runnable = poller.runnable
