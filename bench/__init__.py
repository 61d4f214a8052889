"""Runner, store, suites, reports and CLI: everything that crosses problems and optimizers.

    import bench
    df = bench.run_cell(problems.get("rosenbrock", dim=5), "adam", hparams={"learning_rate": [1e-2, 1e-1]},
                        seeds=8, steps=1000, log_every=10)
    bench.summarize(df)        # one row per run: final gap, steps to target, oracle cost, status
"""

from bench.runner import STATUSES, build_program, hparam_grid, run_cell, summarize
from bench.store import CellSpec, Store

__all__ = ["STATUSES", "CellSpec", "Store", "build_program", "hparam_grid", "run_cell", "summarize"]
