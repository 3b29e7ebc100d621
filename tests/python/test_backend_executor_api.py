"""test_executor_api.py on the thread, interpreter and dask backends (see backend_impls.py)."""
from backend_impls import allcores_impl, backend, impl  # noqa: F401 - fixtures
from test_executor_api import *  # noqa: F401,F403 - the tests themselves
