"""One score across problems: performance profiles, the AlgoPerf score, COCO's aRT and runtime ECDFs.

Everything here is pure pandas/numpy on two kinds of input:

* a *runs* frame, one row per run (``bench.schema.summarize``; the leaderboard passes each
  optimizer's selected hyperparameter point on its held-out seeds), with the problem, the
  optimizer, whether the run succeeded (default: ``status == converged``) and its cost to the
  target (default: ``hit_grads``, gradients spent before the step at which the target was first
  seen, ``-1`` for a run that never got there);
* a *costs* frame, one row per problem and one column per optimizer, holding that optimizer's
  cost to reach the target on that problem; NaN or +inf means it failed (or was not run).
  ``cost_to_target`` and ``expected_runtime`` build it from runs.

Notation: P the problems, s an optimizer ("solver"), c_{p,s} > 0 the cost of s on p.

Performance profile (Dolan and Moré 2002, "Benchmarking optimization software with performance
profiles", Math. Program. 91:201-213)::

    r_{p,s}    = c_{p,s} / min_{s'} c_{p,s'}              (+inf when s failed on p)
    rho_s(tau) = #{p in P : r_{p,s} <= tau} / |P|          tau >= 1

rho_s is a non-decreasing, right-continuous step function with values in [0, 1]: rho_s(1) is
the share of problems on which s was (one of) the cheapest, rho_s(tau) for large tau the share it
solved at all. A problem that no optimizer solves stays in |P| and counts as failed for all
(as in AlgoPerf, whose denominator is the fixed number of workloads).

AlgoPerf benchmark score (Dahl et al. 2023, "Benchmarking Neural Network Training Algorithms",
arXiv:2306.07179, the section on scoring; mlcommons/algorithmic-efficiency
``scoring/performance_profile.py``)::

    B_s = 1 / (r_max - 1) * integral_1^{r_max} rho_s(tau) dtau,       r_max = 4

Because rho_s is a step function the integral is exact in closed form. Swapping the sum over
problems and the integral, each problem contributes the length of [1, r_max] on which its
indicator 1[r_{p,s} <= tau] is on, that is max(0, r_max - r_{p,s}) (r_{p,s} >= 1; 0 if failed)::

    B_s = (1 / |P|) * sum_p max(0, r_max - r_{p,s}) / (r_max - 1)

so B_s is in [0, 1]; 1 exactly when s is (jointly) cheapest on every problem, 0 when it never
comes within a factor r_max of the best. AlgoPerf's code samples rho on a grid of tau and applies
the trapezoidal rule (``np.trapz``, then divides by the tau range); that converges to the value
here as the grid is refined. The paper takes a workload's time as the median over its studies;
the code scores a workload as missed (time +inf) when fewer than 3 of its 5 trials reach the
target, i.e. when the median trial missed it. ``cost_to_target`` applies that rule to runs.

Expected running time, aRT (Auger and Hansen 2005, "Performance evaluation of an advanced local
search evolutionary algorithm", CEC; Hansen et al. 2021, "COCO: a platform for comparing
continuous optimizers in a black-box setting", Optim. Methods Softw. 36:114-144)::

    aRT = (sum over successful runs of their cost to target
           + sum over unsuccessful runs of the cost they spent, their whole budget)
          / #successful runs                               (+inf when no run succeeded)

the expected cost to the target of restarting the optimizer with independent seeds until one
run succeeds (restarts cost a whole budget each).

Runtime ECDF (COCO's empirical runtime distribution, Hansen et al. 2021): per
optimizer, over all (problem, run) pairs, F_s(c) = #{(p, run) : run succeeded with cost <= c} /
#(p, run); failed runs never reach the target, so F_s stays below 1 when any run failed. COCO
divides costs by the dimension (``per_dim``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

import bench.schema as S

SCORE = "score"
TAU = "tau"
COST = "cost"
FRACTION = "fraction"
N_PAIRS = "n_pairs"


# --- from runs -------------------------------------------------------------------------------


def _success(runs: pd.DataFrame, success_col: str | None, status_col: str, success_status: str) -> np.ndarray:
    if success_col is not None:
        return pd.array(runs[success_col], dtype="boolean").fillna(False).to_numpy(dtype=bool)
    return (runs[status_col].astype(object) == success_status).to_numpy(dtype=bool)


def run_costs(runs: pd.DataFrame, cost_col: str = S.HIT_GRADS, *, success_col: str | None = None,
              status_col: str = S.STATUS, success_status: str = S.CONVERGED) -> np.ndarray:
    """Each run's cost to the target: ``cost_col`` for a successful run, +inf for a failed one.

    A run succeeds where ``success_col`` (a boolean column) is true or, when it is None, where
    ``status_col == success_status`` (default: the run ended converged). A "successful" run whose
    cost is missing, non-finite or negative (the ``-1`` "never" sentinel) counts as failed.
    """
    cost = pd.to_numeric(runs[cost_col], errors="coerce").to_numpy(dtype=np.float64)
    ok = _success(runs, success_col, status_col, success_status) & np.isfinite(cost) & (cost >= 0)
    return np.where(ok, cost, np.inf)


def _median_with_inf(x) -> float:
    """The median where +inf (failed) values sort last: (x[(n-1)//2] + x[n//2]) / 2 of the sorted values.

    Finite exactly when strictly more than half of the values are finite (for even n the upper
    of the two middle values must be finite); no 0 * inf interpolation, unlike ``np.quantile``.
    """
    x = np.sort(np.asarray(x, dtype=np.float64))
    n = len(x)
    if n == 0:
        return np.inf
    return float((x[(n - 1) // 2] + x[n // 2]) / 2)


def _per_cell(runs: pd.DataFrame, values: dict[str, np.ndarray], fn, problem_col: str, optimizer_col: str
              ) -> pd.DataFrame:
    """Apply ``fn(group)`` per (problem, optimizer) and return the wide problem x optimizer frame."""
    frame = pd.DataFrame({problem_col: runs[problem_col].astype(object).to_numpy(),
                          optimizer_col: runs[optimizer_col].astype(object).to_numpy(), **values})
    if frame.empty:
        return pd.DataFrame(index=pd.Index([], name=problem_col), columns=pd.Index([], name=optimizer_col),
                            dtype=np.float64)
    cells = frame.groupby([problem_col, optimizer_col], sort=True).apply(fn, include_groups=False)
    return cells.astype(np.float64).unstack(optimizer_col)


def cost_to_target(runs: pd.DataFrame, cost_col: str = S.HIT_GRADS, *, success_col: str | None = None,
                   status_col: str = S.STATUS, success_status: str = S.CONVERGED,
                   problem_col: str = S.PROBLEM, optimizer_col: str = S.OPTIMIZER) -> pd.DataFrame:
    """Per (problem, optimizer): the median over runs of the cost to target, failed runs counting +inf.

    This is the per-problem cost a performance profile and the AlgoPerf score take ("time to
    target, infinite when not reached"; AlgoPerf's code scores a workload as missed when fewer
    than 3 of its 5 trials reach the target). With n runs of which k failed the median is finite
    iff k < n / 2, i.e. strictly more than half the runs succeeded; it is then the ordinary
    median, (x[(n-1)//2] + x[n//2]) / 2 of the sorted costs.

    Args:
      runs: one row per run (pass the runs to be scored, e.g. the selected point's held-out seeds).
      cost_col: the cost of a successful run (``hit_grads``, ``hit_step``, ``hit_hvps``...).
      success_col, status_col, success_status: which runs succeeded (see ``run_costs``).
      problem_col, optimizer_col: the identity columns; pass a composite key column as
        ``problem_col`` to score e.g. (problem, budget) pairs as separate problems.

    Returns:
      A frame indexed by problem with one column per optimizer (both sorted); +inf where the
      median run failed, NaN where the optimizer has no runs on the problem (also a failure for
      ``performance_profile`` and ``algoperf_score``).
    """
    c = run_costs(runs, cost_col, success_col=success_col, status_col=status_col, success_status=success_status)
    return _per_cell(runs, {"_c": c}, lambda g: _median_with_inf(g["_c"].to_numpy()), problem_col, optimizer_col)


def expected_runtime(runs: pd.DataFrame, cost_col: str = S.HIT_GRADS, budget_col: str = S.N_GRADS, *,
                     success_col: str | None = None, status_col: str = S.STATUS,
                     success_status: str = S.CONVERGED, problem_col: str = S.PROBLEM,
                     optimizer_col: str = S.OPTIMIZER) -> pd.DataFrame:
    """COCO's average running time aRT per (problem, optimizer) (see the module doc for the formula).

    aRT = (sum of ``cost_col`` over successful runs + sum of ``budget_col`` over failed runs)
    / number of successful runs; +inf when no run succeeded.

    Args:
      cost_col: the cost to the target of a successful run.
      budget_col: the total cost a run spent by its end, in the same unit as ``cost_col``. Pair
        ``hit_grads`` with ``n_grads`` (``hit_values`` with ``n_values``, ``hit_hvps`` with
        ``n_hvps``) read on the run's last logged row (the logged frame at ``step == steps``;
        ``bench.schema.summarize`` drops them), or ``hit_step`` with ``steps``.
      success_col, status_col, success_status, problem_col, optimizer_col: as in ``cost_to_target``.

    Returns:
      A frame indexed by problem with one column per optimizer, like ``cost_to_target``; it can
      be passed to ``performance_profile`` / ``algoperf_score`` as the costs.
    """
    if budget_col not in runs.columns:
        raise KeyError(f"expected_runtime needs the budget column {budget_col!r}: the cost each run spent by its "
                       f"end (e.g. n_grads on the run's last logged row, or steps for hit_step)")
    c = run_costs(runs, cost_col, success_col=success_col, status_col=status_col, success_status=success_status)
    budget = pd.to_numeric(runs[budget_col], errors="coerce").to_numpy(dtype=np.float64)
    ok = np.isfinite(c)
    spent = np.where(ok, c, budget)

    def art(g: pd.DataFrame) -> float:
        n_ok = int(g["_ok"].sum())
        return float(g["_spent"].sum()) / n_ok if n_ok else np.inf

    return _per_cell(runs, {"_spent": spent, "_ok": ok}, art, problem_col, optimizer_col)


def runtime_ecdf(runs: pd.DataFrame, cost_col: str = S.HIT_GRADS, *, per_dim: bool = False, dim_col: str = S.DIM,
                 success_col: str | None = None, status_col: str = S.STATUS, success_status: str = S.CONVERGED,
                 problem_col: str = S.PROBLEM, optimizer_col: str = S.OPTIMIZER) -> pd.DataFrame:
    """COCO-style runtime ECDF per optimizer over all its (problem, run) pairs, as a tidy frame.

    F_s(c) = #{successful (problem, run) pairs of s with cost <= c} / #{(problem, run) pairs of s}.
    Failed runs never reach the target: they count in the denominator only. Every run is one
    pair, so a problem with more runs weighs more (with equal runs per problem, as in a suite,
    F_s is the mean over problems of the share of the problem's runs solved within c).

    Args:
      cost_col: the cost to the target (``hit_grads`` by default).
      per_dim: divide each cost by the problem's dimension (``dim_col``), as COCO's plots do.
      success_col, status_col, success_status, problem_col: as in ``cost_to_target``
        (``problem_col`` is not used for the counts: pairs are rows).

    Returns:
      Columns ``optimizer_col``, ``cost``, ``fraction``, ``n_pairs``: one row per optimizer and
      distinct successful cost, sorted by cost, ``fraction`` = F_s(cost), the value of the
      right-continuous step function from that cost on (0 before the first row). An optimizer
      with no successful run has one row with cost NaN and fraction 0. ``ecdf_at`` evaluates it.
    """
    del problem_col  # the pairs are the rows; kept in the signature for symmetry with the others
    c = run_costs(runs, cost_col, success_col=success_col, status_col=status_col, success_status=success_status)
    if per_dim:
        c = c / pd.to_numeric(runs[dim_col], errors="coerce").to_numpy(dtype=np.float64)
    opt = runs[optimizer_col].astype(object).to_numpy()
    rows = []
    for name in sorted(set(opt.tolist())):
        x = c[opt == name]
        n = len(x)
        solved = np.sort(x[np.isfinite(x)])
        if len(solved) == 0:
            rows.append(pd.DataFrame({optimizer_col: [name], COST: [np.nan], FRACTION: [0.0], N_PAIRS: [n]}))
            continue
        values, counts = np.unique(solved, return_counts=True)
        rows.append(pd.DataFrame({optimizer_col: name, COST: values, FRACTION: np.cumsum(counts) / n, N_PAIRS: n}))
    if not rows:
        return pd.DataFrame({optimizer_col: pd.Series(dtype=object), COST: pd.Series(dtype=np.float64),
                             FRACTION: pd.Series(dtype=np.float64), N_PAIRS: pd.Series(dtype=np.int64)})
    return pd.concat(rows, ignore_index=True)


def ecdf_at(ecdf: pd.DataFrame, costs: float | Sequence[float], optimizer_col: str = S.OPTIMIZER) -> pd.DataFrame:
    """F_s(c) from a ``runtime_ecdf`` frame at the given costs: a frame indexed by cost, one column per optimizer."""
    costs = np.atleast_1d(np.asarray(costs, dtype=np.float64))
    out = {}
    for name, g in ecdf.groupby(optimizer_col, sort=True):
        g = g[np.isfinite(g[COST].to_numpy(dtype=np.float64))]
        x, f = g[COST].to_numpy(dtype=np.float64), g[FRACTION].to_numpy(dtype=np.float64)
        i = np.searchsorted(x, costs, side="right")  # number of steps at or below each cost
        out[name] = np.where(i > 0, f[np.maximum(i - 1, 0)], 0.0) if len(x) else np.zeros(len(costs))
    return pd.DataFrame(out, index=pd.Index(costs, name=COST))


# --- from costs ------------------------------------------------------------------------------


def ratios(costs: pd.DataFrame, *, shift: float = 0.0) -> pd.DataFrame:
    """Performance ratios r_{p,s} = (c_{p,s} + shift) / min_s' (c_{p,s'} + shift); +inf where s failed.

    Failed cells (NaN or +inf) are +inf, and so is every cell of a problem that no optimizer
    solved. Ratios need positive costs: a cost of 0 (a run that starts at the target spends no
    gradient before its hit) raises unless ``shift`` > 0 makes it positive. For oracle counts
    ``shift=1`` has a meaning: ``hit_grads`` counts the gradients before the hit step, + 1 counts
    the evaluation at which the target was seen.
    """
    c = costs.astype(np.float64) + shift
    v = c.to_numpy()
    finite = np.isfinite(v)
    if (v[finite] < 0).any():
        raise ValueError("costs must be non-negative")
    if (v[finite] == 0).any():
        raise ValueError("a cost of 0 makes the ratios undefined; pass shift > 0 (e.g. shift=1 for oracle counts)")
    v = np.where(finite, v, np.inf)
    best = v.min(axis=1, keepdims=True) if v.shape[1] else np.full((v.shape[0], 1), np.inf)
    with np.errstate(invalid="ignore"):
        r = np.where(finite & np.isfinite(best), v / best, np.inf)
    return pd.DataFrame(r, index=costs.index, columns=costs.columns)


def performance_profile(costs: pd.DataFrame, taus: Sequence[float] | np.ndarray | None = None, *,
                        shift: float = 0.0) -> pd.DataFrame:
    """Dolan-Moré performance profiles rho_s(tau) (see the module doc), exact at each tau.

    Args:
      costs: problems x optimizers, the cost to reach the target (NaN or +inf: failed).
      taus: where to evaluate rho (values >= 1). Default: 1 and every distinct finite ratio, the
        points where some rho_s jumps; rho_s is constant from each of them up to the next.
      shift: added to every cost before the ratios (see ``ratios``).

    Returns:
      A frame indexed by tau (ascending, named ``tau``) with one column per optimizer, values in
      [0, 1], non-decreasing down each column.
    """
    r = ratios(costs, shift=shift)
    v = r.to_numpy()
    if taus is None:
        taus = np.union1d([1.0], v[np.isfinite(v)])
    taus = np.sort(np.asarray(taus, dtype=np.float64))
    n = max(len(r.index), 1)
    out = {}
    for j, name in enumerate(r.columns):
        col = np.sort(v[:, j])  # +inf (failed) last
        out[name] = np.searchsorted(col, taus, side="right") / n  # #{p : r_p <= tau} / |P|
    return pd.DataFrame(out, index=pd.Index(taus, name=TAU), columns=r.columns)


def algoperf_score(costs: pd.DataFrame, tau_max: float = 4.0, *, shift: float = 0.0) -> pd.Series:
    """The AlgoPerf benchmark score B_s = 1/(tau_max - 1) * integral_1^tau_max rho_s(tau) dtau, exactly.

    The integral of the step function rho_s is computed in closed form (module doc):
    B_s = mean over problems of max(0, tau_max - r_{p,s}) / (tau_max - 1), failed cells 0.
    In [0, 1]: 1 for an optimizer (jointly) cheapest on every problem, 0 for one never within a
    factor tau_max of the best. Unchanged when one problem's costs are all scaled by a constant.

    Returns:
      A Series named ``score`` indexed by optimizer (the columns of ``costs``, in order).
    """
    if not tau_max > 1:
        raise ValueError(f"tau_max must be > 1, got {tau_max}")
    r = ratios(costs, shift=shift).to_numpy()
    area = np.where(np.isfinite(r), np.maximum(0.0, tau_max - r), 0.0)  # length of [1, tau_max] with r <= tau
    score = area.mean(axis=0) / (tau_max - 1) if r.shape[0] else np.zeros(r.shape[1])
    return pd.Series(score, index=costs.columns, name=SCORE)
