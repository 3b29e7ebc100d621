"""One row in a fresh process: `python -m allcores_bench.child SPEC_JSON RESULT_PATH`.

Every row runs in a process of its own, in a session of its own: each pool forks from a small,
fresh parent, and the parent can kill the row and every process it started when it passes its
time limit. The figures go to RESULT_PATH, not to stdout: a peer's workers inherit stdout and
may outlive the row. The process ends with os._exit, so no library's exit handler can hang it.
"""
from __future__ import annotations

import json
import os
import sys
import traceback


def run(spec):
    from .case import UNAVAILABLE, Skip, load
    cases = load()
    if spec["case"] not in cases:  # its module did not import here (a sibling venv's allcores
        # older than the checkout: make .venv-3.13/.built rebuilds it)
        why = "; ".join(f"{m}: {w}" for m, w in UNAVAILABLE.items()) or "no case module has it"
        return {"error": f"case {spec['case']!r} is not available under {sys.executable} "
                         f"({why})"}
    case = cases[spec["case"]]
    try:
        return case.fn(spec["lib"], spec["workers"], spec["params"])
    except ImportError as exc:
        return {"skip": f"not installed: {exc.name or exc}"}
    except Skip as exc:
        return {"skip": str(exc)}
    except Exception as exc:  # a peer's failure is a result, not a crash of the bench
        traceback.print_exc()
        return {"error": f"{type(exc).__name__}: {exc}"}


def main():
    spec, path = json.loads(sys.argv[1]), sys.argv[2]
    out = run(spec)
    with open(path, "w") as f:
        json.dump(out, f)
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
