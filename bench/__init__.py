"""Runner, store, suites, reports and CLI: everything that crosses problems and optimizers.

    import bench
    df = bench.run_cell(problems.get("rosenbrock", dim=5), "adam", hparams={"learning_rate": [1e-2, 1e-1]},
                        seeds=8, steps=1000, log_every=10)
    bench.summarize(df)        # one row per run: final gap, steps to target, oracle cost, status
    bench.load("results")      # the stored runs, one row per run, with costs and provenance (``bench.load``)

Modules: ``grid`` (hyperparameter points), ``program`` (the compiled program of a cell),
``landscape`` (Hessian eigenvalues at end points), ``schema`` (columns, statuses, frames),
``runner`` (``run_cell``), ``store`` (Parquet files), ``suites``, ``execute`` (executors),
``reports``, ``cli``; ``suite_file`` (suites as TOML files), ``plugins`` (optimizers and problems
from outside the project: ``--import``, entry points), ``validate`` (input checks before anything
runs), ``multistore`` (stores of several machines in one report).
"""

from bench.grid import Grid
from bench.loader import load
from bench.program import build_program
from bench.runner import run_cell
from bench.schema import STATUSES, summarize
from bench.store import CellSpec, Store

__all__ = ["STATUSES", "CellSpec", "Grid", "Store", "build_program", "load", "run_cell", "summarize"]
