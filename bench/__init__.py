"""Runner, store, suites, reports and CLI: everything that crosses problems and optimizers.

    import bench
    df = bench.run_cell(problems.get("rosenbrock", dim=5), "adam", hparams={"learning_rate": [1e-2, 1e-1]},
                        seeds=8, steps=1000, log_every=10)
    bench.summarize(df)        # one row per run: final gap, steps to target, oracle cost, status

Modules: ``grid`` (hyperparameter points), ``program`` (the compiled program of a cell),
``landscape`` (Hessian eigenvalues at end points), ``schema`` (columns, statuses, frames),
``runner`` (``run_cell``), ``store`` (Parquet files), ``suites``, ``execute`` (executors),
``reports``, ``cli``.
"""

from bench.grid import Grid
from bench.program import build_program
from bench.runner import run_cell
from bench.schema import STATUSES, summarize
from bench.store import CellSpec, Store

__all__ = ["STATUSES", "CellSpec", "Grid", "Store", "build_program", "run_cell", "summarize"]
