"""One adapter per library, so that every case drives every library with the same verbs.

An adapter opens a pool of W workers in __init__ and offers:
    one(fn, x)        one task, waiting for its result (the round trip)
    submit_all(fn, xs) submit every task, then collect every result
    imap1(fn, xs)     the library's lazy ordered map with one task per message
    map(fn, xs)       the library's map with its own default (or automatic) chunking
    close()           release the workers
A verb a library lacks is None; the case then reports the row as not applicable. Libraries are
imported in prepare(), so that start-up can be timed without the import.
"""
from __future__ import annotations

import concurrent.futures as cf
import multiprocessing

# Row keys in the order tables show them; allcores first, then the peers.
ORDER = ["allcores", "allcores.executor", "multiprocessing", "ProcessPoolExecutor", "loky",
         "joblib", "mpire"]


class Adapter:
    label = ""
    submit_all = imap1 = None

    @classmethod
    def prepare(cls):
        """Import what the library needs; raises ImportError when it is not installed."""

    def close(self):
        pass


class AllcoresPool(Adapter):
    label = "allcores.Pool"

    @classmethod
    def prepare(cls):
        import allcores
        if not hasattr(allcores, "Pool"):
            raise ImportError("allcores.Pool is not built yet", name="allcores.Pool")
        cls.mod = allcores

    def __init__(self, w):
        self.p = self.mod.Pool(w)

    def one(self, fn, x):
        return self.p.submit(fn, x).result()

    def submit_all(self, fn, xs):
        return [f.result() for f in [self.p.submit(fn, x) for x in xs]]

    def imap1(self, fn, xs):
        return list(self.p.imap(fn, xs, chunksize=1))

    def map(self, fn, xs):
        return self.p.map(fn, xs)

    def close(self):
        self.p.terminate()


class Executor(Adapter):
    """Any concurrent.futures.Executor; subclasses say how to open it."""

    def one(self, fn, x):
        return self.p.submit(fn, x).result()

    def submit_all(self, fn, xs):
        return [f.result() for f in [self.p.submit(fn, x) for x in xs]]

    def imap1(self, fn, xs):
        return list(self.p.map(fn, xs, chunksize=1))

    def map(self, fn, xs):
        return list(self.p.map(fn, xs))

    def close(self):
        self.p.shutdown(wait=True, cancel_futures=True)


class AllcoresExecutor(Executor):
    label = "allcores.ProcessPoolExecutor"

    @classmethod
    def prepare(cls):
        import allcores
        if not hasattr(allcores, "ProcessPoolExecutor"):
            raise ImportError("allcores.ProcessPoolExecutor is not built yet",
                              name="allcores.ProcessPoolExecutor")
        cls.mod = allcores

    def __init__(self, w):
        self.p = self.mod.ProcessPoolExecutor(w)


class MPPool(Adapter):
    label = "multiprocessing.Pool (fork)"

    @classmethod
    def prepare(cls):
        import multiprocessing.pool  # noqa: F401

    def __init__(self, w):
        self.p = multiprocessing.get_context("fork").Pool(w)

    def one(self, fn, x):
        return self.p.apply(fn, (x,))

    def submit_all(self, fn, xs):
        return [r.get() for r in [self.p.apply_async(fn, (x,)) for x in xs]]

    def imap1(self, fn, xs):
        return list(self.p.imap(fn, xs, chunksize=1))

    def map(self, fn, xs):
        return self.p.map(fn, xs)

    def close(self):
        self.p.terminate()
        self.p.join()


class PPE(Executor):
    label = "concurrent.futures.ProcessPoolExecutor (fork)"

    def __init__(self, w):
        self.p = cf.ProcessPoolExecutor(w, mp_context=multiprocessing.get_context("fork"))


class Loky(Executor):
    label = "loky get_reusable_executor"

    @classmethod
    def prepare(cls):
        import loky
        cls.mod = loky

    def __init__(self, w):
        self.p = self.mod.get_reusable_executor(max_workers=w)

    def close(self):
        self.p.shutdown(wait=True, kill_workers=True)


class Joblib(Adapter):
    label = "joblib.Parallel (loky)"

    @classmethod
    def prepare(cls):
        import joblib
        cls.mod = joblib

    def __init__(self, w):
        self.w = w
        # Entered once, so that the calls of a case reuse the same workers, as a user's
        # `with Parallel(...) as parallel:` block does.
        self.p = self.mod.Parallel(n_jobs=w, backend="loky")
        self.p.__enter__()
        self.lazy = self.mod.Parallel(n_jobs=w, backend="loky", batch_size=1,
                                      return_as="generator")

    def one(self, fn, x):
        return self.p([self.mod.delayed(fn)(x)])[0]

    def imap1(self, fn, xs):
        call = self.mod.delayed(fn)
        return list(self.lazy(call(x) for x in xs))

    def map(self, fn, xs):
        call = self.mod.delayed(fn)
        return self.p(call(x) for x in xs)

    def close(self):
        self.p.__exit__(None, None, None)
        from joblib.externals.loky import get_reusable_executor
        get_reusable_executor().shutdown(wait=True, kill_workers=True)


class Mpire(Adapter):
    label = "mpire.WorkerPool (fork)"

    @classmethod
    def prepare(cls):
        import mpire
        cls.mod = mpire

    def __init__(self, w):
        self.p = self.mod.WorkerPool(n_jobs=w, keep_alive=True, start_method="fork")

    def one(self, fn, x):
        return self.p.apply(fn, (x,))

    def submit_all(self, fn, xs):
        return [r.get() for r in [self.p.apply_async(fn, (x,)) for x in xs]]

    def imap1(self, fn, xs):
        return list(self.p.imap(fn, xs, chunk_size=1))

    def map(self, fn, xs):
        return self.p.map(fn, xs)

    def close(self):
        self.p.terminate()


ADAPTERS = {
    "allcores": AllcoresPool, "allcores.executor": AllcoresExecutor, "multiprocessing": MPPool,
    "ProcessPoolExecutor": PPE, "loky": Loky, "joblib": Joblib, "mpire": Mpire,
}


def open_adapter(lib, workers):
    """Import the library (ImportError if absent) and open a pool of `workers` workers."""
    cls = ADAPTERS[lib]
    cls.prepare()
    return cls(workers)
