# allcores: every command sets itself up (virtual environments, packages, the build).
#   make          .venv/bin/python with allcores importable (Python 3.11, the machine's python3)
#   make demo     threads vs processes vs allcores, measured on this machine
#   make test     C unit tests under ASan+UBSan, then pytest on Python 3.11 to 3.15 and the
#                 free-threaded 3.13t; a Python this machine lacks is skipped with a line that
#                 says how to get it (tools/get-python VERSION)
#   make bench    allcores against multiprocessing, ProcessPoolExecutor, loky, joblib and mpire
#                 (and, under 3.14+, the interpreter backend against InterpreterPoolExecutor;
#                 under the free-threaded 3.13t, the thread backend against threads)
SHELL := /bin/bash
PYTHONS ?= 3.11 3.12 3.13 3.14 3.15 3.13t
DEFAULT_PY ?= 3.11
VENV := .venv
PY := $(VENV)/bin/python
SOURCES := $(shell find include src meson.build pyproject.toml -type f -not -path '*/__pycache__/*' 2>/dev/null)
PYTEST_ARGS ?=
# Time budget: the long suites (those marked long_suite in tests/python/budget.py: CPython's and
# joblib's own suites run against allcores, and the slow tests that check the same thing on every
# Python) run on the oldest and the newest Python (AC_TEST_LONG_PYTHONS); the Pythons between run
# the core suite. The tests of the repository's tools (tools_suite: the quick bench, the demo,
# building the sdist and wheel, mypy) run on the first of them only.
AC_TEST_LONG_PYTHONS ?= 3.11 3.15
export AC_TEST_LONG_PYTHONS
# The Pool API suite runs on each other backend on one Python only (see backend_impls.py): the
# thread backend where its threads run in parallel (3.13t), the interpreter backend on the
# newest Python, dask on the default one; on a machine without 3.13t or 3.15, on 3.11 and 3.13.
ifndef AC_TEST_BACKEND_PYTHONS
AC_TEST_BACKEND_PYTHONS := thread:$(if $(shell tools/find-python 3.13t),3.13t,$(DEFAULT_PY)),$\
  interpreter:$(if $(shell tools/find-python 3.15),3.15,3.13),dask:$(DEFAULT_PY)
endif
export AC_TEST_BACKEND_PYTHONS
# The Pythons of PYTHONS this machine has (tools/find-python; evaluated only when used).
PRESENT = $(foreach v,$(PYTHONS),$(if $(shell tools/find-python $(v)),$(v)))
MISSING = $(filter-out $(PRESENT),$(PYTHONS))

venv_dir = $(if $(filter $(DEFAULT_PY),$(1)),$(VENV),$(VENV)-$(1))

.PHONY: all build demo test pythons ctest pytest bench fuzz clean info $(addprefix pytest-,$(PYTHONS))
all: build
build: $(VENV)/.built

# One virtual environment per Python: .venv (default) and .venv-3.12, ..., .venv-3.13t.
define VENV_RULES
$(call venv_dir,$(1))/.deps: requirements-dev.txt tools/find-python tools/make-venv
	@tools/make-venv $(1) $(call venv_dir,$(1))
	@touch $$@
$(call venv_dir,$(1))/.built: $(call venv_dir,$(1))/.deps $(SOURCES)
	@$(call venv_dir,$(1))/bin/python -m pip install -q --disable-pip-version-check --no-build-isolation --no-deps \
	  -Cbuild-dir=build/py$(1) . > build-$(1).log 2>&1 || { cat build-$(1).log; exit 1; }
	@rm -f build-$(1).log
	@touch $$@
pytest-$(1): $(call venv_dir,$(1))/.built
	cd tests/python && ../../$(call venv_dir,$(1))/bin/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS) .
endef
$(foreach v,$(PYTHONS),$(eval $(call VENV_RULES,$(v))))

demo: build
	$(PY) -m allcores demo

# The C tests run while the virtual environments are made (pip waits on the network and the
# disk, the C tests on the CPU); then pytest runs on each Python in turn.
# Each Python's pytest run is timed (the CI budget is 30 minutes on 2 cores).
test: pythons
	@$(MAKE) --no-print-directory -j4 ctest $(foreach v,$(PRESENT),$(call venv_dir,$(v))/.built)
	@$(MAKE) --no-print-directory pytest PYTHONS="$(PRESENT)"

pythons:
	@$(foreach v,$(MISSING),echo "make test: skipping Python $(v), not on this machine (tools/get-python $(v) provides it)";)

pytest:
	@set -e; for v in $(PYTHONS); do t0=$$(date +%s); \
	  $(MAKE) --no-print-directory pytest-$$v; \
	  echo "make test: Python $$v took $$(( $$(date +%s) - t0 )) s"; done

ctest:
	tools/ctest.sh

fuzz:
	tools/fuzz.sh long

# The interpreter backend's rows run under 3.14 where the machine has it (against the standard
# library's InterpreterPoolExecutor), else under 3.13; the thread backend's free-threaded rows
# under 3.13t where the machine has it.
bench: build $(if $(shell tools/find-python 3.14),.venv-3.14/.built,.venv-3.13/.built) \
  $(if $(shell tools/find-python 3.13t),.venv-3.13t/.built)
	$(PY) -m allcores bench $(BENCH_ARGS)

info: build
	$(PY) -m allcores info

clean:
	rm -rf build $(VENV) $(VENV)-* tests/c/bin fuzz/bin
