# Two commands from a fresh clone: `make bench` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
SUITE ?= quick
# pytest workers: JAX compiles dominate the tests and parallelize across processes.
TEST_WORKERS ?= 2

.PHONY: bench test report perf lint clean

# Reinstall only when pyproject.toml changes.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

bench: $(STAMP)
	JAX_PLATFORMS=cpu $(PY) -m bench run --suite $(SUITE) --cell-timeout 240
	$(PY) -m bench report --suite $(SUITE)

# Lint first: style drift fails CI before any test runs.
test: $(STAMP)
	$(PY) -m ruff check problems optimizers bench tests
	JAX_PLATFORMS=cpu $(PY) -m pytest -q -n $(TEST_WORKERS) tests

report: $(STAMP)
	$(PY) -m bench report --suite $(SUITE)

perf: $(STAMP)
	$(PY) -m bench perf

lint: $(STAMP)
	$(PY) -m ruff check problems optimizers bench tests

clean:
	rm -rf $(VENV) results
