"""allcores doctor: run a program under the GIL meter and say why it uses the cores it does.

    allcores doctor [--html F] [--json F] [--interval US] script.py [args...]
    allcores doctor [options] -m module [args...]

The program runs in this process, as with cProfile: sys.argv is set to the script and its
arguments, and it runs as __main__. When it ends (normally, by sys.exit, by an exception or by
Ctrl-C) the numbers and the verdict are printed, and written as JSON or HTML if asked.

The doctor follows every process the program starts (tree.TreePoller reads their CPU from
/proc; child.install starts a collector in each Python process, through a sitecustomize shim on
PYTHONPATH for spawned ones and an at-fork hook for forked ones), and the report gains one entry
per process and the pool findings.
"""
from __future__ import annotations

import os
import runpy
import shutil
import sys
import tempfile
import traceback

from .meter import DEFAULT_INTERVAL_US, Meter

#: The GIL meter's share of one CPU in the program's process under the doctor (the meter's own
#: default is 2.5%): the doctor also pays for its poller and for a collector in every child, and
#: all of it stays under 3% of the program's CPU.
DOCTOR_BUDGET = 0.008

USAGE = """usage: allcores doctor [--html FILE] [--json FILE] [--interval US] script.py [args...]
       allcores doctor [options] -m module [args...]

Runs a Python program under the GIL meter, then prints the GIL's use, each thread's share
(held, waiting for the GIL, running without it, blocked), the cores used, and a verdict. It
follows every process the program starts (pools, subprocesses): one row per process, the cores
the whole program used, and why a pool is not N times faster.

options:
  --html FILE     write a self-contained HTML report (timeline, cores over time, numbers)
  --json FILE     write the report as JSON
  --interval US   mean time between samples in microseconds (default %d, stretched
                  when sampling is costly; a given interval is kept as given)
  -m MODULE       run a module as a script, like python -m
""" % DEFAULT_INTERVAL_US


class _UsageError(Exception):
    pass


def _parse(argv):
    opts = {"html": None, "json": None, "interval": None, "module": None}
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("-h", "--help"):
            raise SystemExit(print(USAGE) or 0)
        if a == "-m":
            if i + 1 >= len(argv):
                raise _UsageError("-m needs a module name")
            opts["module"] = argv[i + 1]
            return opts, argv[i + 2:]
        key, eq, val = a.partition("=")
        if key in ("--html", "--json", "--interval"):
            if not eq:
                if i + 1 >= len(argv):
                    raise _UsageError(f"{key} needs a value")
                val = argv[i + 1]
                i += 1
            if key == "--interval":
                try:
                    opts["interval"] = float(val)
                except ValueError:
                    raise _UsageError(f"--interval takes microseconds, not {val!r}") from None
                if not 10 <= opts["interval"] <= 10_000_000:
                    raise _UsageError("--interval must be between 10 and 10000000 microseconds")
            else:
                opts[key[2:]] = val
            i += 1
            continue
        if a.startswith("-") and a != "-":
            raise _UsageError(f"unknown option {a}")
        return opts, argv[i:]
    raise _UsageError("no script given")


def _run(opts, rest) -> int:
    """Runs the target as __main__; returns its exit status."""
    if opts["module"]:
        sys.argv[:] = [opts["module"], *rest]
        runpy.run_module(opts["module"], run_name="__main__", alter_sys=True)
        return 0
    script = rest[0]
    if not os.path.exists(script):
        raise _UsageError(f"no such file: {script}")
    sys.argv[:] = list(rest)
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    runpy.run_path(script, run_name="__main__")
    return 0


def main(argv=None) -> int:
    """Entry point of `allcores doctor ...`; argv is what follows `doctor`. Returns an exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        opts, rest = _parse(argv)
    except _UsageError as e:
        print(f"allcores doctor: {e}\n\n{USAGE}", file=sys.stderr)
        return 2
    except SystemExit as e:
        return e.code or 0

    saved_argv, saved_path = sys.argv[:], sys.path[:]
    status = 0
    follow = _Follow()
    m = Meter(opts["interval"], cost_budget=None if opts["interval"] else DOCTOR_BUDGET)
    m.start()
    follow.start()
    try:
        status = _run(opts, rest)
    except _UsageError as e:
        m.stop()
        follow.stop(None)
        print(f"allcores doctor: {e}", file=sys.stderr)
        return 2
    except SystemExit as e:
        status = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if not isinstance(e.code, (int, type(None))):
            print(e.code, file=sys.stderr)
    except KeyboardInterrupt:
        status = 130
        print("allcores doctor: interrupted; reporting what was measured", file=sys.stderr)
    except BaseException:  # the program's own error: show it, then still report
        traceback.print_exc()
        status = 1
    finally:
        report = m.stop()
        follow.stop(report)
        sys.argv[:], sys.path[:] = saved_argv, saved_path

    sys.stdout.flush()
    print("\n=== allcores doctor ===")
    print(report.summary())
    if opts["json"]:
        report.to_json(opts["json"], timeline=True)
        print(f"\nJSON written to {opts['json']}")
    if opts["html"]:
        report.to_html(opts["html"])
        print(f"HTML report written to {opts['html']}")
    return status


class _Follow:
    """The doctor's reach beyond this process: the collectors' folder, the environment that makes
    every Python child start one, and the /proc poller."""

    def __init__(self):
        from . import child
        from .tree import TreePoller
        self.child = child
        self.folder = tempfile.mkdtemp(prefix="allcores-doctor-")
        self.saved = {k: os.environ.get(k) for k in (child.ENV, "PYTHONPATH")}
        self.poller = TreePoller()

    def start(self):
        boot = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_boot")
        os.environ[self.child.ENV] = self.folder
        old = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = boot + (os.pathsep + old if old else "")
        self.child.install(start=False)
        self.poller.start()

    def stop(self, report):
        from . import processes
        self.poller.stop()
        for k, v in self.saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        try:
            if report is not None:
                processes.attach(report, self.poller, self.folder, self.poller.stacks.to_dict())
                report._decide()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)
