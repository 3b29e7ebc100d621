# allcores: every command sets itself up (virtual environments, packages, the build).
#   make          .venv/bin/python with allcores importable (Python 3.11, the machine's python3)
#   make demo     the seeds' experiment, measured on this machine
#   make test     C unit tests under ASan+UBSan, then pytest on Python 3.11, 3.12 and 3.13
#   make bench    allcores against multiprocessing, ProcessPoolExecutor, loky, joblib and mpire
SHELL := /bin/bash
PYTHONS ?= 3.11 3.12 3.13
DEFAULT_PY ?= 3.11
VENV := .venv
PY := $(VENV)/bin/python
SOURCES := $(shell find include src meson.build pyproject.toml -type f -not -path '*/__pycache__/*' 2>/dev/null)
PYTEST_ARGS ?=
# The Pool API suite runs on each other backend on one Python only (see backend_impls.py): the
# interpreter backend where its bar is (3.13), the others on the default Python.
AC_TEST_BACKEND_PYTHONS ?= thread:$(DEFAULT_PY),interpreter:3.13,dask:$(DEFAULT_PY)
export AC_TEST_BACKEND_PYTHONS
# The quick bench run (tests/python/test_bench.py, 45 s) likewise runs on the default Python.
AC_TEST_BENCH_PYTHON ?= $(DEFAULT_PY)
export AC_TEST_BENCH_PYTHON
# joblib's own test_parallel.py on the "allcores" backend (tests/python/test_joblib_suite.py, about
# a minute) likewise runs on the default Python.
AC_TEST_JOBLIB_PYTHON ?= $(DEFAULT_PY)
export AC_TEST_JOBLIB_PYTHON

venv_dir = $(if $(filter $(DEFAULT_PY),$(1)),$(VENV),$(VENV)-$(1))

.PHONY: all build demo test ctest pytest bench fuzz clean info $(addprefix pytest-,$(PYTHONS))
all: build
build: $(VENV)/.built

# One virtual environment per Python: .venv (default) and .venv-3.12, .venv-3.13.
define VENV_RULES
$(call venv_dir,$(1))/.deps: requirements-dev.txt tools/find-python
	@py=$$$$(tools/find-python $(1)) || { echo "Python $(1) not found (tried PATH, pyenv, /usr/bin)"; exit 1; }; \
	  rm -rf $(call venv_dir,$(1)) && $$$$py -m venv $(call venv_dir,$(1)) && \
	  $(call venv_dir,$(1))/bin/python -m pip install -q --disable-pip-version-check -U pip && \
	  $(call venv_dir,$(1))/bin/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
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
test:
	@$(MAKE) --no-print-directory -j4 ctest $(foreach v,$(PYTHONS),$(call venv_dir,$(v))/.built)
	@$(MAKE) --no-print-directory pytest

pytest: $(addprefix pytest-,$(PYTHONS))

ctest:
	tools/ctest.sh

fuzz:
	tools/fuzz.sh long

bench: build .venv-3.13/.built
	$(PY) -m allcores bench $(BENCH_ARGS)

info: build
	$(PY) -m allcores info

clean:
	rm -rf build $(VENV) $(VENV)-* tests/c/bin fuzz/bin
