"""test_pool_lifecycle.py on the thread, interpreter and dask backends (see backend_impls.py)."""
from backend_impls import allcores_impl, backend, impl  # noqa: F401 - fixtures
from test_pool_lifecycle import *  # noqa: F401,F403 - the tests themselves
