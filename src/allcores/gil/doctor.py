"""allcores doctor: run a program under the GIL meter and say why it uses the cores it does.

    allcores doctor [--html F] [--json F] [--interval US] script.py [args...]
    allcores doctor [options] -m module [args...]

The program runs in this process, as with cProfile: sys.argv is set to the script and its
arguments, and it runs as __main__. When it ends (normally, by sys.exit, by an exception or by
Ctrl-C) the numbers and the verdict are printed, and written as JSON or HTML if asked.
"""
from __future__ import annotations

import os
import runpy
import sys
import traceback

from .meter import DEFAULT_INTERVAL_US, meter

USAGE = """usage: allcores doctor [--html FILE] [--json FILE] [--interval US] script.py [args...]
       allcores doctor [options] -m module [args...]

Runs a Python program under the GIL meter, then prints the GIL's use, each thread's share
(held, waiting for the GIL, running without it, blocked), the cores used, and a verdict.

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
    m = meter(opts["interval"])
    m.start()
    try:
        status = _run(opts, rest)
    except _UsageError as e:
        m.stop()
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
