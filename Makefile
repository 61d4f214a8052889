# Two commands from a fresh clone: `make bench` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
SUITE ?= quick
# `make bench SUITE=full JAX_PLATFORMS=cuda` on a GPU machine (README: Running on a GPU); tests stay on the CPU.
JAX_PLATFORMS ?= cpu
# seconds before a cell's worker is killed and the cell recorded as failed (the full suite's cells need more)
CELL_TIMEOUT ?= 240
# pytest workers: JAX compiles dominate the tests and parallelize across processes; worksteal
# rebalances the uneven tail (one test of 37 s, most under 1 s).
TEST_WORKERS ?= 2

.PHONY: bench landscape reproduce test report perf lint clean

# Reinstall only when pyproject.toml changes.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

bench: $(STAMP)
	JAX_PLATFORMS=$(JAX_PLATFORMS) $(PY) -m bench run --suite $(SUITE) --cell-timeout $(CELL_TIMEOUT)
	$(PY) -m bench report --suite $(SUITE)

# The landscape diagnostics on top of `make bench`'s store: saddle-escape sweeps, the spin-glass
# census with the optimizers' end points, and the report with the pictures of the way.
landscape: $(STAMP)
	JAX_PLATFORMS=$(JAX_PLATFORMS) $(PY) -m bench escape --out results/escape
	JAX_PLATFORMS=$(JAX_PLATFORMS) $(PY) -m bench census --results results
	JAX_PLATFORMS=$(JAX_PLATFORMS) $(PY) -m bench report --suite $(SUITE) --landscape

# The paper checks: results/REPRODUCTIONS.md (fails if any does not reproduce).
reproduce: $(STAMP)
	JAX_PLATFORMS=$(JAX_PLATFORMS) $(PY) -m bench reproduce --results results

# Lint first: style drift fails CI before any test runs.
test: $(STAMP)
	$(PY) -m ruff check problems optimizers bench tests
	JAX_PLATFORMS=cpu $(PY) -m pytest -q -n $(TEST_WORKERS) --dist worksteal tests

report: $(STAMP)
	$(PY) -m bench report --suite $(SUITE)

perf: $(STAMP)
	$(PY) -m bench perf

lint: $(STAMP)
	$(PY) -m ruff check problems optimizers bench tests

clean:
	rm -rf $(VENV) results
