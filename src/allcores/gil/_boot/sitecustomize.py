"""Put first on PYTHONPATH by `allcores doctor`: starts the doctor's collector in each Python
process of the program, then loads the sitecustomize this one hides, if there is one."""
import os as _os
import sys as _sys


def _run():
    here = _os.path.dirname(_os.path.abspath(__file__))
    try:
        from allcores.gil import child
        child.install()
    except Exception:  # another interpreter without allcores, or a broken install: stay out of the way
        pass
    # load the next sitecustomize on the path, as if this one were not there
    mod = _sys.modules.pop("sitecustomize", None)
    saved = _sys.path[:]
    _sys.path[:] = [p for p in _sys.path if _os.path.abspath(p or ".") != here]
    try:
        import sitecustomize  # noqa: F401
    except ImportError:
        if mod is not None:
            _sys.modules["sitecustomize"] = mod
    except Exception:
        pass
    finally:
        _sys.path[:] = saved


_run()
