"""How the bench starts the Pythons of its own (a row's child, a sibling virtual environment's
interpreter, a fresh process a case measures): with this package importable. The bench lives
beside the allcores package in a checkout, not in the installed package, so every such process
gets the folder that holds allcores_bench first on its PYTHONPATH."""
from __future__ import annotations

import os

FOLDER = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def env() -> dict:
    """os.environ with FOLDER first on PYTHONPATH."""
    out = dict(os.environ)
    out["PYTHONPATH"] = os.pathsep.join(p for p in (FOLDER, out.get("PYTHONPATH")) if p)
    return out
