"""``bench.load``: the stored results as tidy pandas frames, for your own analyses.

    import bench
    runs = bench.load("results")                      # one row per run
    runs, steps = bench.load("results", steps=True)   # and one row per logged step

The runs frame holds one row per run (problem x optimizer x hyperparameter point x seed), with the
columns below; the numbers are exactly those the leaderboard computes from (``schema.summarize``
and ``leaderboard.with_costs``), plus each run's provenance and whether the leaderboard reports it.

Identity: ``problem`` (canonical name with parameters), ``family``, ``dim``, ``optimizer``,
``hp_index`` (the point within its cell), ``hp_<name>`` (that point's hyperparameters), ``seed``,
``tuning`` (True: a tuning seed, which chooses the point; False: held out, reported),
``evaluated`` (True: a held-out run at the point the leaderboard chose on the tuning seeds; every
number of the leaderboard is computed on these rows), ``cell_key`` (the cell's content hash: its
file in ``results/cells``).

Outcome: ``status`` (``converged``, ``diverged``, ``stalled_at_saddle``,
``stalled_at_degenerate_saddle``, ``stalled_at_minimum``, ``budget_exhausted``), ``success``
(status converged), ``final_loss`` and ``final_grad_norm`` (full loss and its gradient norm at the
last step), ``final_gap`` (final loss - f*, NaN where f* is unknown), ``final_lambda_min``,
``final_lambda_max`` (extreme Hessian eigenvalues at the end point), ``final_probe_drop`` (the
end-point probe's largest drop below the tangent plane), ``diverged_step`` (-1: never).

Cost to the problem's target ``f_target``: ``hit_step`` (first step at the target, -1: never),
``hit_values``, ``hit_grads``, ``hit_hvps`` (oracle calls up to it), ``cost_to_target`` (those in
gradient-equivalents, ``bench.cost``; NaN unless success), ``seconds_to_target``; the whole run:
``budget_cost`` (gradient-equivalents), ``run_seconds`` (= ``run_s_amortized``: the cell's
compiled wall time over its runs). Relative targets f_ref + tau (f_0 - f_ref) for tau in
``schema.TAUS``: ``hit_step@1e-1`` ... ``hit_hvps@1e-5``, ``success@<tau>``,
``cost_to_target@<tau>``; the saddle escape: ``hit_step@escape`` ... (-1: never).

Problem and budget: ``f_star`` (NaN: unknown), ``f_target``, ``f_ref``, ``steps`` (the step
budget), ``log_every``, ``dtype``. Provenance of the cell: ``jax_version``, ``jaxlib_version``,
``optax_version``, ``flax_version``, ``backend``, ``device_kind``, ``device_count``, ``device``
(what the times were measured on, e.g. ``cpu:<model> x<cores>``; compare seconds within one device;
absent from older stores), ``x64``, ``git_commit``, ``code_fingerprint``, ``utc_time``,
``compile_s``, ``cell_run_s``.

The per-step frame is the store's own tidy frame: one row per (run, logged step) with ``step``,
``loss`` (full loss), ``grad_norm``, the cumulative oracle calls ``n_values``, ``n_grads``,
``n_hvps``, their cost ``cost`` in gradient-equivalents, ``lambda_min``, ``lambda_max``,
``hessian_index`` (cells run with ``--curvature``), the run's columns above repeated, and three
more of the cell: ``compile_cached`` (the program came from the compilation cache),
``landscape_s`` (seconds of the end-point eigenvalues) and ``cell_spec`` (the cell's spec as JSON).
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from bench import schema as S
from bench.store import PROVENANCE_COLUMNS, Store

EVALUATED = "evaluated"
STEP_COST = "cost"  # per-step frame: cumulative gradient-equivalents spent up to the step
_CELL_COLUMNS = [S.LOG_EVERY, S.DTYPE, S.COMPILE_S, S.CELL_RUN_S,
                 *[c for c in PROVENANCE_COLUMNS if c != "cell_spec"]]
_KEYS = [S.PROBLEM, S.OPTIMIZER, S.HP_INDEX, S.SEED]


def _plain(df: pd.DataFrame) -> pd.DataFrame:
    """Categorical text columns (the store keeps constants as categoricals) as plain strings,
    except ``status``, whose categories are the statuses in ``schema.STATUSES`` order."""
    cats = [c for c in df.columns if c != S.STATUS and isinstance(df[c].dtype, pd.CategoricalDtype)]
    return df.astype(dict.fromkeys(cats, str)) if cats else df


def runs_frame(df: pd.DataFrame) -> pd.DataFrame:
    """The runs frame (module docstring) of a logged frame ``df`` (``Store.load_all``)."""
    from bench.reports import leaderboard as lb

    runs = lb.with_costs(df)
    # with_costs is summarize's row order: the last rows sorted (stably) by the run keys
    last = df.loc[df[S.STEP].to_numpy() == df[S.STEPS].to_numpy(), _KEYS + [c for c in _CELL_COLUMNS if c in df]]
    last = last.sort_values(_KEYS).reset_index(drop=True)
    assert (last[_KEYS].astype(str).to_numpy() == runs[_KEYS].astype(str).to_numpy()).all()
    for c in last.columns[len(_KEYS):]:
        runs[c] = last[c].to_numpy()
    runs[EVALUATED] = False
    if len(runs):
        chosen = lb.selection(runs)
        for (problem, optimizer, steps), idx in runs.groupby([S.PROBLEM, S.OPTIMIZER, S.STEPS], sort=False,
                                                             observed=True).indices.items():
            best, held, _ = chosen[(problem, optimizer, steps)]
            g = runs.iloc[idx]
            runs.loc[runs.index[idx], EVALUATED] = ((g[S.HP_INDEX] == best) & g[S.SEED].isin(held)).to_numpy()
    return _plain(runs)


def steps_frame(df: pd.DataFrame) -> pd.DataFrame:
    """The per-step frame (module docstring): ``df`` with the cumulative cost in gradient-equivalents."""
    from bench import cost as costs
    from bench.reports import leaderboard as lb

    df = _plain(df.reset_index(drop=True))
    spent = np.full(len(df), np.nan)
    for problem, idx in df.groupby(S.PROBLEM, sort=False).indices.items():
        w = lb.problem_weights(problem) or costs.Weights(value=1.0, hvp=1.0, grad_flops=np.nan)
        r = df.iloc[idx]
        spent[idx] = costs.gradient_equivalents(r[S.N_VALUES], r[S.N_GRADS], r[S.N_HVPS], w)
    df[STEP_COST] = spent
    return df


def load(results_dir: str | os.PathLike = "results", *, steps: bool = False, keys: set[str] | None = None):
    """The stored results of ``results_dir`` as the runs frame, and with ``steps=True`` also the
    per-step frame: ``(runs, steps)``. ``keys``: only these cells (``Cell.spec().key``).

    The columns are listed in this module's docstring (``help(bench.load)``). An empty store gives
    empty frames. Raises ``FileNotFoundError`` if ``results_dir`` does not exist.
    """
    if not os.path.isdir(results_dir):
        raise FileNotFoundError(f"no results directory {os.fspath(results_dir)!r}; "
                                "run `python -m bench run --suite quick` first")
    df = Store(results_dir).load_all(keys)
    runs = runs_frame(df) if not df.empty else pd.DataFrame()
    if not steps:
        return runs
    return runs, (steps_frame(df) if not df.empty else pd.DataFrame())


load.__doc__ += "\n" + __doc__.split("\n\n", 2)[2]  # the column list, for help(bench.load)
