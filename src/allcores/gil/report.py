"""The GIL meter's report: fractions from the sampler's counters, names, a timeline, a verdict."""
from __future__ import annotations

import json
import os
import struct
import sys
from dataclasses import asdict, dataclass, field

from . import verdict as _verdict
from .stacks import DOCTOR_THREADS

# Thread states, as sampler.h numbers them.
UNKNOWN, HELD, WAITING, RUNNING, BLOCKED, GONE = range(6)
STATE_NAMES = {HELD: "held", WAITING: "waiting", RUNNING: "running", BLOCKED: "blocked"}

_EVENT = struct.Struct("=qii")
_CPU = struct.Struct("=qqq")

#: A thread that never held a GIL and has no threading name is listed only if it used at least
#: this share of one CPU over the run (a C library's worker thread, for instance).
NATIVE_CPU_SHARE = 0.01
#: Above this share of late samples (and without real-time priority), the report says so.
LATE_NOTE = 0.1


@dataclass
class ThreadReport:
    """One thread's share of the run. Fractions are of the whole measured run (0..1)."""
    name: str
    native_id: int
    held: float | None      # holding its interpreter's GIL
    waiting: float | None   # blocked waiting for the GIL
    running: float          # on a CPU without the GIL (C code that released it)
    blocked: float          # in another system call: I/O, sleep, locks, join
    cpu_s: float            # CPU seconds used during the run
    runq_s: float           # seconds runnable but without a CPU (starved by other work)
    python: bool            # ran Python (held a GIL) during the run
    alive_s: float          # seconds the thread was seen alive during the run
    hog: float = 0.0        # share of samples holding the GIL while a drop request was pending
    interpreter: int = 0    # the interpreter whose GIL it held last

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Segment:
    """A thread was in `state` from start_s to end_s (seconds from the meter's start)."""
    thread: int      # index into Report.threads
    state: str
    start_s: float
    end_s: float


@dataclass
class Report:
    held: float | None                    # share of samples where the main GIL was held
    cores_used: float                     # process CPU / wall, the sampler's own CPU excluded
    switches: int | None                  # holder changes of the main GIL (the interpreter's count)
    threads: list[ThreadReport]
    wall_s: float
    interval_us: float
    samples: int = 0
    mean_interval_us: float = 0.0         # the interval achieved (stretched when sampling is costly)
    state_samples: int = 0
    switch_interval_s: float | None = None
    hog: float | None = None              # share of held samples with a drop request pending
    max_hold_pressed_s: float = 0.0       # longest hold during which someone asked for the GIL
    holder_changes_seen: int = 0
    sampler_cpu_s: float = 0.0
    sampler_priority: str = "normal"      # how the sampling thread was scheduled (see meter())
    sampler_late_share: float = 0.0       # share of samples taken > 0.2 ms after they were due
    process_cpu_s: float = 0.0
    interpreters: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    gil_measured: bool = True
    gil_disabled: bool = False
    segments: list[Segment] = field(default_factory=list)
    cores_timeline: list[tuple[float, float]] = field(default_factory=list)
    timeline_truncated: bool = False
    cores_available: int = field(default_factory=lambda: len(os.sched_getaffinity(0)))
    python_version: str = field(default_factory=lambda: ".".join(map(str, sys.version_info[:3])))
    findings: list[str] = field(default_factory=list)
    verdict: str = ""
    # Filled by the doctor, which follows the whole process tree (processes.attach):
    processes: list = field(default_factory=list)   # ProcessReport per process, the program's own first
    program_cpu_s: float | None = None    # CPU of every process of the program
    doctor_cpu_s: float = 0.0             # the doctor's own CPU in all of them
    runnable: list = field(default_factory=list)    # (t, runnable threads, busy processes) per poll

    # ---- construction ----

    @classmethod
    def from_cpu_only(cls, *, wall_s, cpu_s, notes, interval_us) -> "Report":
        r = cls(held=None, cores_used=cpu_s / wall_s, switches=None, threads=[], wall_s=wall_s,
                interval_us=interval_us, process_cpu_s=cpu_s, notes=notes, gil_measured=False)
        r._decide()
        return r

    @classmethod
    def from_sampler(cls, *, totals, threads, interpreters, events, cpu_points, names, notes, interval_us,
                     gil_measured, gil_disabled, main_native_id) -> "Report":
        wall = max(totals["wall_ns"], 1) / 1e9
        ticks = totals["ticks"]
        proc = max(totals["proc_ticks"], 1)
        sampler_cpu = totals["sampler_cpu_ns"] / 1e9
        process_cpu = totals["process_cpu_ns"] / 1e9
        gil = gil_measured and totals["have_gil"] and ticks > 0

        rows: list[ThreadReport] = []
        slot_to_row: dict[int, int] = {}
        for slot, t in enumerate(threads):
            name = names.get(t["tid"])
            if name in DOCTOR_THREADS:
                continue
            python = bool(t["held_gil"] or name is not None)
            cpu_s = t["cpu_ns"] / 1e9
            if name is None and not python and cpu_s < NATIVE_CPU_SHARE * wall:
                continue
            if name is None:
                name = ("MainThread" if t["tid"] == main_native_id else
                        f"native-{t['tid']}" + (f" ({t['comm']})" if t["comm"] else ""))
            held = (t["held"] + t["held_sub"]) / ticks if gil else None
            rows.append(ThreadReport(
                name=name, native_id=t["tid"], held=held,
                waiting=t["waiting"] / proc if gil else None,
                running=t["running"] / proc, blocked=t["blocked"] / proc,
                cpu_s=cpu_s, runq_s=t["runq_ns"] / 1e9, python=python,
                alive_s=max(t["last_ns"] - t["first_ns"], 0) / 1e9,
                hog=t["hog"] / ticks if gil else 0.0, interpreter=t["interp_id"]))
            slot_to_row[slot] = len(rows) - 1

        interps = [{"id": i["id"], "held": i["locked"] / i["ticks"] if i["ticks"] else 0.0,
                    "switches": i["switches"]} for i in interpreters]
        r = cls(
            held=totals["locked"] / ticks if gil else None,
            cores_used=max(process_cpu - sampler_cpu, 0.0) / wall,
            switches=totals["switches"] if gil else None,
            threads=rows, wall_s=wall, interval_us=interval_us, samples=ticks,
            state_samples=totals["proc_ticks"],
            switch_interval_s=totals["switch_interval_us"] / 1e6 if gil else None,
            mean_interval_us=totals["mean_interval_ns"] / 1e3,
            hog=totals["drop_request"] / totals["locked"] if gil and totals["locked"] else (0.0 if gil else None),
            max_hold_pressed_s=totals["max_hold_pressed_ns"] / 1e9,
            holder_changes_seen=totals["holder_changes"],
            sampler_cpu_s=sampler_cpu, process_cpu_s=process_cpu, interpreters=interps, notes=notes,
            sampler_priority=totals["priority"], sampler_late_share=totals["late_share"],
            gil_measured=gil, gil_disabled=gil_disabled,
            timeline_truncated=totals["events_truncated"])
        r.segments = _segments(events, slot_to_row, wall)
        r.cores_timeline = _cores(cpu_points)
        if gil and totals["unresolved"] > 0.01 * max(totals["locked"], 1):
            r.notes.append(f"{totals['unresolved']} held samples could not name their holder")
        if gil and r.switches and r.switches > 4 * max(r.holder_changes_seen, 1) and r.switches > 100:
            r.notes.append(f"the GIL changed hands {r.switches} times but the samples saw {r.holder_changes_seen} "
                           f"of them: holds are shorter than the sampling interval, so the per-thread shares "
                           f"are statistical; --interval lowers it")
        if r.sampler_priority == "normal" and r.sampler_late_share > LATE_NOTE:
            r.notes.append(f"{r.sampler_late_share:.0%} of the samples were taken more than 50 us late: on busy "
                           f"CPUs the sampler runs after short GIL holds, so those are under-counted. Linux 6.12+ "
                           f"or real-time priority (root, CAP_SYS_NICE, ulimit -r >= 1) avoids it")
        if r.timeline_truncated:
            r.notes.append("the timeline was cut short (too many state changes to keep)")
        r._decide()
        return r

    def _decide(self):
        self.findings, self.verdict = _verdict.decide(self)

    # ---- access ----

    @property
    def sampler_cost(self) -> float:
        """The sampler's own CPU as a share of the run's wall time."""
        return self.sampler_cpu_s / self.wall_s if self.wall_s else 0.0

    @property
    def doctor_cost(self) -> float:
        """The doctor's CPU in every process as a share of the program's CPU, children included."""
        cpu = self.program_cpu_s if self.program_cpu_s is not None else self.process_cpu_s
        return self.doctor_cpu_s / cpu if cpu else 0.0

    def parallelism(self) -> dict:
        """Without a GIL: how many threads ran Python at once. `reached` is the threads' CPU over
        the span they were alive (1.0: one at a time, N: N in parallel); `peak` the highest
        cores-used window."""
        busy = [t for t in self.threads if t.cpu_s >= NATIVE_CPU_SHARE * self.wall_s]
        span = max((t.alive_s for t in busy), default=0.0)
        reached = sum(t.cpu_s for t in busy) / span if span > 0 else 0.0
        peak = max((c for _, c in self.cores_timeline), default=self.cores_used)
        return {"threads": len(busy), "reached": reached, "peak": peak}

    def thread(self, name: str) -> ThreadReport:
        for t in self.threads:
            if t.name == name:
                return t
        raise KeyError(name)

    def to_dict(self, timeline: bool = False) -> dict:
        d = {
            "held": self.held, "cores_used": self.cores_used, "switches": self.switches,
            "threads": [t.to_dict() for t in self.threads], "verdict": self.verdict,
            "findings": self.findings, "notes": self.notes, "wall_s": self.wall_s,
            "samples": self.samples, "mean_interval_us": self.mean_interval_us, "state_samples": self.state_samples, "interval_us": self.interval_us,
            "switch_interval_s": self.switch_interval_s, "gil_hog_pressure": self.hog,
            "max_hold_pressed_s": self.max_hold_pressed_s, "holder_changes_seen": self.holder_changes_seen,
            "sampler_cpu_s": self.sampler_cpu_s, "sampler_cost": self.sampler_cost,
            "sampler_priority": self.sampler_priority, "sampler_late_share": self.sampler_late_share,
            "process_cpu_s": self.process_cpu_s, "cores_available": self.cores_available,
            "interpreters": self.interpreters, "gil_measured": self.gil_measured,
            "gil_disabled": self.gil_disabled, "python": self.python_version,
        }
        if self.gil_disabled:
            d["parallelism"] = self.parallelism()
        if self.processes:
            d["processes"] = [p.to_dict(timeline) for p in self.processes]
            d["program_cpu_s"] = self.program_cpu_s
            d["doctor_cpu_s"] = self.doctor_cpu_s
            d["doctor_cost"] = self.doctor_cost
        if timeline:
            d["timeline"] = [[s.thread, s.state, s.start_s, s.end_s] for s in self.segments]
            d["cores_timeline"] = self.cores_timeline
        return d

    def to_json(self, path: str | os.PathLike | None = None, *, timeline: bool = False) -> str:
        """The report as JSON (held, cores_used, switches, threads[{name, held, waiting, cpu_s,
        ...}], verdict, ...); written to `path` too when given."""
        text = json.dumps(self.to_dict(timeline=timeline), indent=2)
        if path is not None:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text + "\n")
        return text

    def to_html(self, path: str | os.PathLike | None = None) -> str:
        """One self-contained HTML page (no network): timeline, cores over time, numbers, verdict."""
        from .html import render
        page = render(self)
        if path is not None:
            with open(path, "w", encoding="utf-8") as f:
                f.write(page)
        return page

    def holds(self, limit: int | None = None) -> list[tuple[str, float, float]]:
        """Who held the GIL when: (thread name, start_s, end_s), in time order."""
        out = [(self.threads[s.thread].name, s.start_s, s.end_s) for s in self.segments if s.state == "held"]
        out.sort(key=lambda h: h[1])
        return out[:limit] if limit else out

    def summary(self) -> str:
        """A short text table of the numbers, then the verdict."""
        pct = lambda x: "   -" if x is None else f"{x * 100:4.0f}%"  # noqa: E731
        lines = []
        if self.gil_measured:
            lines.append(f"GIL held {pct(self.held).strip()} of {self.wall_s:.2f} s; {self.switches} switches "
                         f"(switch interval {self.switch_interval_s * 1e3:g} ms); "
                         f"cores used {self.cores_used:.2f} of {self.cores_available}")
        else:
            lines.append(f"cores used {self.cores_used:.2f} of {self.cores_available} over {self.wall_s:.2f} s")
        if self.threads:
            w = max(12, *(len(t.name) for t in self.threads))
            lines.append(f"  {'thread':<{w}}  held  wait  run(no GIL)  blocked   cpu s  starved s")
            for t in self.threads:
                lines.append(f"  {t.name:<{w}} {pct(t.held)} {pct(t.waiting)}        {pct(t.running)}    "
                             f"{pct(t.blocked)} {t.cpu_s:7.2f}    {t.runq_s:7.2f}")
        for i in self.interpreters:
            lines.append(f"  subinterpreter {i['id']} (own GIL): held {i['held'] * 100:.0f}%, "
                         f"{i['switches']} switches")
        if self.gil_disabled and self.threads:
            par = self.parallelism()
            lines.append(f"no GIL (free-threaded build): {par['threads']} busy thread(s) ran "
                         f"{par['reached']:.2f} at a time on average (peak {par['peak']:.2f} cores)")
        if len(self.processes) > 1:
            lines.append(f"processes: {len(self.processes)}; the program's CPU {self.program_cpu_s:.2f} s, "
                         f"cores used {self.cores_used:.2f} of {self.cores_available}")
            lines.append(f"  {'pid':>7}  {'role':<11}  {'name':<20} {'start s':>7} {'end s':>7} {'cpu s':>7} "
                         f"{'cores':>5}  idle  GIL held")
            for p in self.processes:
                lines.append(f"  {p.pid:>7}  {p.role:<11}  {p.name[:20]:<20} {p.start_s:7.2f} {p.end_s:7.2f} "
                             f"{p.cpu_s:7.2f} {p.cores_used:5.2f} {pct(p.idle)}  {pct(p.held).strip()}")
            lines.append(f"doctor: {self.doctor_cpu_s * 1e3:.0f} ms of CPU in all processes "
                         f"({self.doctor_cost * 100:.1f}% of the program's CPU)")
        lines.append(f"sampler: {self.samples or self.state_samples} samples, one per {self.mean_interval_us or self.interval_us:.0f} us, "
                     f"{self.sampler_cpu_s * 1e3:.0f} ms of CPU ({self.sampler_cost * 100:.1f}% of the run), "
                     f"{self.sampler_priority} priority")
        for n in self.notes:
            lines.append(f"note: {n}")
        lines.append("")
        lines.append(self.verdict)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def _segments(events: bytes, slot_to_row: dict[int, int], wall: float) -> list[Segment]:
    """Turns state changes into per-thread segments (UNKNOWN and GONE spans are left out)."""
    per: dict[int, list[tuple[float, int]]] = {}
    for t_ns, slot, state in _EVENT.iter_unpack(events):
        row = slot_to_row.get(slot)
        if row is not None:
            per.setdefault(row, []).append((t_ns / 1e9, state))
    out = []
    for row, evs in per.items():
        evs.sort(key=lambda e: e[0])  # held-back readings are recorded after later ones
        for k, (t, state) in enumerate(evs):
            end = evs[k + 1][0] if k + 1 < len(evs) else wall
            if state in STATE_NAMES and end > t:
                out.append(Segment(row, STATE_NAMES[state], t, end))
    out.sort(key=lambda s: (s.start_s, s.thread))
    return out


def _cores(points: bytes, window_s: float = 0.05) -> list[tuple[float, float]]:
    """Cores used over time (sampler excluded), averaged over windows of about window_s."""
    pts = list(_CPU.iter_unpack(points))
    out = []
    if not pts:
        return out
    t_prev, c_prev, s_prev = 0, 0, 0
    for t, c, s in pts:
        if (t - t_prev) / 1e9 >= window_s:
            dt = t - t_prev
            out.append(((t_prev + t) / 2e9, max((c - c_prev) - (s - s_prev), 0) / dt))
            t_prev, c_prev, s_prev = t, c, s
    return out
