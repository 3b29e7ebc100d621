"""A pytest plugin that runs joblib's own tests on the "allcores" backend (test_joblib_suite.py).

Loaded with -p into a pytest run of joblib's installed test package: it registers the backend
before joblib's test modules are imported (so their lists built from joblib's registry include
it), and adds "allcores" wherever a test's backend parametrization ("backend", "inner_backend", ...)
admits one of joblib's process backends (loky, multiprocessing). Nothing of joblib's tests is
copied.
"""
import allcores.joblib_backend  # noqa: F401 - registers "allcores"

PROCESS_BACKENDS = ("loky", "multiprocessing")


def _admits_process_backend(values):
    names = [v.values[0] if hasattr(v, "values") else v for v in values]  # pytest.param(...)
    return any(n in PROCESS_BACKENDS for n in names if isinstance(n, str))


def pytest_generate_tests(metafunc):
    for marker in metafunc.definition.iter_markers(name="parametrize"):
        argnames = marker.args[0] if marker.args else marker.kwargs.get("argnames")
        values = marker.args[1] if len(marker.args) > 1 else marker.kwargs.get("argvalues")
        if isinstance(argnames, str) and argnames.endswith("backend") and "," not in argnames \
                and isinstance(values, list) and "allcores" not in values \
                and _admits_process_backend(values):
            values.append("allcores")
