"""``run_cell``: one (problem, optimizer) cell, over seeds and hyperparameter points, as a frame.

The jobs are split by module: ``bench.grid`` expands and checks the hyperparameter points,
``bench.program`` builds and compiles the cell's one XLA program, ``bench.landscape`` computes
the end points' Hessian eigenvalues, and ``bench.schema`` turns the outputs into the tidy frame
and classifies each run. This module checks the arguments and runs them in order.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import jax
import numpy as np
import pandas as pd

import optimizers
import problems
from bench import grid as grids
from bench import landscape, program, schema


def seed_array(seeds: int | Sequence[int]) -> tuple[list[int], np.ndarray]:
    """Seeds as a list and as the program's uint32 array (``seeds`` a count or explicit seeds)."""
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seed_list:
        raise ValueError("need at least one seed")
    if min(seed_list) < 0 or max(seed_list) >= 2**32:
        raise ValueError("seeds must be in [0, 2**32)")
    return seed_list, np.asarray(seed_list, np.uint32)


def check_budget(steps: int, log_every: int) -> None:
    if not isinstance(steps, int) or not isinstance(log_every, int) or steps < 1 or log_every < 1:
        raise ValueError(f"steps and log_every must be positive integers, got {steps!r}, {log_every!r}")
    if steps % log_every:
        raise ValueError(f"steps ({steps}) must be a multiple of log_every ({log_every})")


def run_cell(
    problem: problems.Problem | str,
    optimizer: str,
    hparams: grids.HParams | grids.Grid = None,
    seeds: int | Sequence[int] = 8,
    steps: int = 1000,
    log_every: int = 10,
    dtype: str = "float32",
    tune_seeds: int | None = None,
    curvature: bool = False,
    devices: int | None = None,
) -> pd.DataFrame:
    """Run one (problem, optimizer) cell over seeds and hyperparameter points.

    Args:
      problem: a ``problems.Problem`` or a problem name (``"rosenbrock(dim=5)"``).
      optimizer: a registered optimizer name.
      hparams: ``None`` (defaults), a mapping (list values form a Cartesian grid), a list of
        mappings, or a ``bench.grid.Grid``; see ``bench.grid.expand``.
      seeds: a count (seeds 0..S-1) or an explicit list of seeds.
      steps: optimizer steps per run; a multiple of ``log_every``.
      log_every: steps between logged measurements.
      dtype: ``"float32"`` (default) or ``"float64"`` (needs ``jax_enable_x64``).
      tune_seeds: how many of the seeds (the first ones) are tuning seeds, on which the
        leaderboard chooses a hyperparameter point; the rest are held out and reported (the
        ``tuning`` column). Default: half of them (rounded down).
      curvature: also record the Hessian's lambda_min, lambda_max and index at every logged
        step (columns ``lambda_min``, ``lambda_max``, ``hessian_index``; ``bench.landscape.curvature``).
      devices: how many local devices the (hyperparameter point x seed) batch is sharded over
        (``jax.sharding``, ``bench.program.CellExecutable``); default all of them. One device runs
        the program as it always was; several give the same runs (the tidy frame has the same rows).

    Returns:
      A tidy DataFrame, one row per (hyperparameter point, seed, logged step), with the
      logged measurements and, repeated on each row of a run, the run's summary (see
      ``bench.schema``). Failures (NaN, blow-up) are rows with status ``diverged``, not errors.
    """
    if isinstance(problem, str):
        problem = problems.get(problem)
    optimizers.spec(optimizer)  # unknown names fail here, before any work
    check_budget(steps, log_every)
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    if dtype == "float64" and not jax.config.jax_enable_x64:
        raise ValueError("dtype='float64' needs jax_enable_x64 (jax.config.update('jax_enable_x64', True))")
    grid = grids.expand(optimizer, hparams)
    seed_list, keys = seed_array(seeds)
    n_tune = len(seed_list) // 2 if tune_seeds is None else tune_seeds
    if not isinstance(n_tune, int) or not 0 <= n_tune <= len(seed_list):
        raise ValueError(f"tune_seeds must be an integer in [0, {len(seed_list)}] (the number of seeds), "
                         f"got {tune_seeds!r}")

    compiled, compile_s, cached = program.compile_cell(problem, grid, steps, log_every, dtype, len(seed_list),
                                                       curvature, devices)
    t0 = time.perf_counter()
    outputs = jax.tree_util.tree_map(np.asarray, compiled(grid.arrays(), keys))  # waits for the program
    cell_run_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    eigenvalues = landscape.dispatch_end_points(problem, outputs.params)  # runs while the frame is built
    arrays = {k: v for k, v in outputs._asdict().items() if k != "params"}
    return schema.to_frame(schema.CellOutputs(
        problem=problem, grid=grid, seeds=seed_list, steps=steps, log_every=log_every, dtype=dtype,
        n_tune=n_tune, arrays=arrays, eigenvalues=eigenvalues, compile_s=compile_s, compile_cached=cached,
        cell_run_s=cell_run_s, landscape_t0=t0))


def end_points(problem: problems.Problem | str, optimizer: str, hparams: grids.HParams | grids.Grid = None,
               seeds: int | Sequence[int] = 8, steps: int = 1000, log_every: int = 10, dtype: str = "float32",
               devices: int | None = None):
    """The end points of a cell's runs, as ``run_cell`` computes them: a pytree with leading axes
    (hyperparameter points, seeds). The same compiled program (and cache) as ``run_cell``, so the
    points are those whose losses a stored cell of the same spec records."""
    if isinstance(problem, str):
        problem = problems.get(problem)
    check_budget(steps, log_every)
    grid = grids.expand(optimizer, hparams)
    seed_list, keys = seed_array(seeds)
    compiled, _, _ = program.compile_cell(problem, grid, steps, log_every, dtype, len(seed_list), devices=devices)
    return jax.tree_util.tree_map(np.asarray, compiled(grid.arrays(), keys).params)
