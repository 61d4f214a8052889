"""The results schema: column names, run statuses, the frame of a cell and its per-run summary.

A cell's frame is tidy: one row per (hyperparameter point, seed, logged step), with the logged
measurements, the run's summary repeated on each of its rows, and constants of the cell
(problem, budget, timings). The store adds provenance columns (``bench.store``). Every other
module names columns through the constants below, never as bare strings.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

import problems
from bench.grid import Grid

# --- identity of a row --------------------------------------------------------------------
PROBLEM = "problem"
FAMILY = "family"
DIM = "dim"
OPTIMIZER = "optimizer"
HP_INDEX = "hp_index"  # the hyperparameter point within its cell
HP_PREFIX = "hp_"  # hp_<name>: the value of hyperparameter <name> at the row's point
SEED = "seed"
STEP = "step"

# --- per logged step ----------------------------------------------------------------------
LOSS = "loss"  # full loss
GRAD_NORM = "grad_norm"  # norm of the full gradient
N_VALUES = "n_values"  # cumulative oracle calls: function values,
N_GRADS = "n_grads"  # gradients
N_HVPS = "n_hvps"  # and Hessian-vector products
# with the curvature flag (``run_cell(..., curvature=True)``): the Hessian of the full loss
LAMBDA_MIN = "lambda_min"
LAMBDA_MAX = "lambda_max"
HESSIAN_INDEX = "hessian_index"  # eigenvalues below -EIG_TOL max(1, |lambda_max|) (``bench.landscape.curvature``)

# --- per run (repeated on each of the run's rows) -----------------------------------------
FINAL_LOSS = "final_loss"
FINAL_GRAD_NORM = "final_grad_norm"
FINAL_GAP = "final_gap"  # final loss - f* (NaN where f* is unknown)
HIT_STEP = "hit_step"  # first step at the target (-1: never)
HIT_VALUES = "hit_values"  # oracle calls spent up to hit_step (-1: never)
HIT_GRADS = "hit_grads"
HIT_HVPS = "hit_hvps"
DIVERGED_STEP = "diverged_step"  # first step with a non-finite or blown-up loss (-1: never)
TUNING = "tuning"  # whether the run's seed is one of the cell's tuning seeds (else held out)
FINAL_LAMBDA_MIN = "final_lambda_min"  # extreme Hessian eigenvalues of the full loss at the end point
FINAL_LAMBDA_MAX = "final_lambda_max"
FINAL_PROBE_DROP = "final_probe_drop"  # largest drop below the first-order model found near the end point
STATUS = "status"

# Relative targets f <= f_ref + tau (f_0 - f_ref) (More and Wild 2009), f_0 the run's own start
# value and f_ref the problem's reference (``reference_value``): solved once all but a fraction tau
# of the way from the start to the reference is gone. Reported beside the headline ``f_target``.
TAUS = (1e-1, 1e-2, 1e-3, 1e-5)


# Escape from the saddle a problem's runs start near (``Problem.saddles[0]``, value f_s): the first
# step with f <= f_s - ESCAPE_FRACTION (f_s - f_ref), a tenth of the way down from the saddle to the
# reference value (``escape_threshold``; columns hit_step@escape ...).
ESCAPE = "escape"
ESCAPE_FRACTION = 0.1


def tau_label(tau: float | str) -> str:
    return tau if isinstance(tau, str) else f"{tau:.0e}".replace("e-0", "e-")


def tau_column(kind: str, tau: float | str) -> str:
    """The run column of ``kind`` (``hit_step``, ``hit_values``, ``hit_grads``, ``hit_hvps``) at
    relative target ``tau`` (or at ``ESCAPE``, the escape threshold)."""
    return f"{kind}@{tau_label(tau)}"


TAU_KINDS = (HIT_STEP, HIT_VALUES, HIT_GRADS, HIT_HVPS)
TAU_COLUMNS = [tau_column(k, tau) for tau in (*TAUS, ESCAPE) for k in TAU_KINDS]

# --- per cell -----------------------------------------------------------------------------
F_STAR = "f_star"
F_REF = "f_ref"  # the reference of the relative targets: the best known value, else f* (NaN: none)
F_TARGET = "f_target"
STEPS = "steps"  # the step budget
LOG_EVERY = "log_every"
DTYPE = "dtype"
COMPILE_S = "compile_s"  # seconds to compile the cell's program (0 when cached)
COMPILE_CACHED = "compile_cached"
CELL_RUN_S = "cell_run_s"  # wall seconds of the cell's compiled program, all its runs at once
LANDSCAPE_S = "landscape_s"  # wall seconds of the end-point eigenvalues (overlapping the frame build)
RUN_S_AMORTIZED = "run_s_amortized"  # cell_run_s / number of runs: a run's share of the cell's wall time

STATUSES = (
    "converged",
    "diverged",
    "stalled_at_saddle",
    "stalled_at_degenerate_saddle",
    "stalled_at_minimum",
    "budget_exhausted",
)
(CONVERGED, DIVERGED, STALLED_AT_SADDLE, STALLED_AT_DEGENERATE_SADDLE, STALLED_AT_MINIMUM,
 BUDGET_EXHAUSTED) = STATUSES

# End-point classification thresholds: a run has stalled when its full-gradient norm is at
# most GRAD_TOL; the end point is a saddle when lambda_min < -EIG_TOL * max(1, |lambda_max|),
# else a degenerate saddle when the landscape probe found a drop of more than PROBE_RTOL * |f|
# below the first-order model (``bench.landscape``), else a minimum.
GRAD_TOL = 1e-3
EIG_TOL = 1e-3
# The probe's drop is a difference of two float32 loss values (plus a tiny first-order term);
# each carries a relative round-off of a few tens of eps32 = 1.2e-7 in a reduction over up to
# ~10^4 terms (pairwise summation: ~log2(terms) eps), so 1e-5 |f| (~84 eps) is round-off's ceiling
# with room to spare: a loss of 10^6 computed through cancelling terms of 10^6 moves by ~0.06 along
# a flat direction, under the 10 this allows. A real cubic term c r^3 at r = 0.1 clears it for
# |c| > 1e-2 |f| (the depth-3 deep linear origin: f = 4.7, drop 4.7e-4 after the power steps).
PROBE_RTOL = 1e-5

RUN_COLUMNS = [
    PROBLEM, FAMILY, DIM, OPTIMIZER, HP_INDEX, SEED, FINAL_LOSS, FINAL_GRAD_NORM, FINAL_GAP, HIT_STEP,
    HIT_VALUES, HIT_GRADS, HIT_HVPS, DIVERGED_STEP, FINAL_LAMBDA_MIN, FINAL_LAMBDA_MAX, FINAL_PROBE_DROP,
    STATUS, F_STAR, F_TARGET, STEPS, RUN_S_AMORTIZED, TUNING, F_REF, *TAU_COLUMNS,
]


def reference_value(problem: problems.Problem) -> float | None:
    """The value the relative targets are measured against: the instance's best known value where
    a reference campaign recorded one (``reference.extra["best_known"]``), else the known optimum
    f*; None where neither is known."""
    ref = problem.reference
    best = ref.extra.get("best_known")
    if best is not None:
        return float(best)
    return None if ref.f_star is None else float(ref.f_star)


def escape_threshold(problem: problems.Problem) -> float | None:
    """f_s - ESCAPE_FRACTION (f_s - f_ref) for the problem's first known saddle (value f_s) and its
    ``reference_value`` f_ref; None where it has no saddle or no reference value. It means "escaped"
    for runs that start near that saddle (the saddle-start problems and the escape suite)."""
    f_ref = reference_value(problem)
    if not problem.saddles or f_ref is None:
        return None
    f_s = float(problem.saddles[0].value)
    return f_s - ESCAPE_FRACTION * (f_s - f_ref)


def hp_columns(columns) -> list[str]:
    """The ``hp_<name>`` hyperparameter columns among ``columns`` (not ``hp_index``)."""
    return [c for c in columns if c.startswith(HP_PREFIX) and c != HP_INDEX]


def classify(final_loss, final_grad, diverged, lam_min, lam_max, target, *, probe_drop) -> np.ndarray:
    """Status of each run from its end point (vectorized over runs).

    In order of precedence: ``diverged``; ``converged`` (final loss <= target); else, if the
    gradient norm is at most ``GRAD_TOL`` (stalled): ``stalled_at_saddle`` when
    lambda_min < -EIG_TOL max(1, |lambda_max|) (a strict saddle: second order proves descent),
    ``stalled_at_degenerate_saddle`` when there is no such negative curvature but the landscape
    probe (``bench.landscape.end_point_probe``) found f more than PROBE_RTOL |f| below its
    first-order model near the end point (higher-order descent: at a singular Hessian the
    second-order test decides nothing), ``stalled_at_minimum`` when it found none (no proof of
    minimality: "no descent found"); else ``budget_exhausted``. A NaN ``probe_drop`` counts as no
    descent found.
    """
    scale = np.maximum(1.0, np.abs(lam_max))
    flat = final_grad <= GRAD_TOL
    negative = lam_min < -EIG_TOL * scale
    descent = np.asarray(probe_drop) > PROBE_RTOL * np.abs(final_loss)
    status = np.full(final_loss.shape, BUDGET_EXHAUSTED, dtype=object)
    status[flat & negative] = STALLED_AT_SADDLE
    status[flat & ~negative & descent] = STALLED_AT_DEGENERATE_SADDLE
    status[flat & ~negative & ~descent] = STALLED_AT_MINIMUM
    status[final_loss <= target] = CONVERGED
    status[diverged] = DIVERGED
    return status


@dataclasses.dataclass
class CellOutputs:
    """Everything a cell produced, as the frame builder needs it.

    Attributes:
      problem, grid, seeds, steps, log_every, dtype: what the cell ran.
      n_tune: how many of ``seeds`` (the first ones) are tuning seeds; the rest are held out.
      arrays: the program's outputs as numpy arrays (``bench.program.Outputs`` without ``params``).
      eigenvalues: waits for and returns the end points' ``bench.landscape.EndPoint``
        (lambda_min, lambda_max, probe_drop), each of shape (H, S).
      compile_s, compile_cached, cell_run_s: timings of the compiled program.
      landscape_t0: ``time.perf_counter()`` when the end-point eigenvalues were started.
    """

    problem: problems.Problem
    grid: Grid
    seeds: list[int]
    steps: int
    log_every: int
    dtype: str
    n_tune: int
    arrays: dict[str, np.ndarray]
    eigenvalues: Callable[[], tuple[np.ndarray, np.ndarray, np.ndarray]]
    compile_s: float
    compile_cached: bool
    cell_run_s: float
    landscape_t0: float


def to_frame(out: CellOutputs) -> pd.DataFrame:
    """The tidy frame of a cell (see the module docstring)."""
    import time

    a = out.arrays
    H, S, L = a[LOSS].shape
    ref = out.problem.reference
    n_runs = H * S
    n_rows = n_runs * L
    hp_idx = np.repeat(np.arange(H), S * L)

    def per_run(v):  # a run-level value, repeated on each logged row of the run
        return np.repeat(np.asarray(v).reshape(n_runs), L)

    frame = {
        PROBLEM: _const(out.problem.name, n_rows),
        FAMILY: _const(out.problem.family, n_rows),
        DIM: _const(out.problem.dim, n_rows),
        OPTIMIZER: _const(out.grid.optimizer, n_rows),
        HP_INDEX: hp_idx,
    }
    for k in out.grid.traced_names:
        frame[HP_PREFIX + k] = np.asarray([p[k] for p in out.grid.points], np.float64)[hp_idx]
    for k, v in out.grid.static.items():
        frame[HP_PREFIX + k] = _const(v, n_rows)
    counts = a["counts"].astype(np.int64)
    frame.update({
        SEED: np.tile(np.repeat(np.asarray(out.seeds, np.int64), L), H),
        STEP: np.tile(np.arange(L, dtype=np.int64) * out.log_every, n_runs),
        LOSS: a[LOSS].ravel().astype(np.float64),
        GRAD_NORM: a[GRAD_NORM].ravel().astype(np.float64),
        N_VALUES: counts[..., 0].ravel(),
        N_GRADS: counts[..., 1].ravel(),
        N_HVPS: counts[..., 2].ravel(),
    })
    if a.get("curvature") is not None:
        lam_lo, lam_hi, index = a["curvature"]
        frame[LAMBDA_MIN] = np.asarray(lam_lo).ravel().astype(np.float64)
        frame[LAMBDA_MAX] = np.asarray(lam_hi).ravel().astype(np.float64)
        frame[HESSIAN_INDEX] = np.asarray(index).ravel().astype(np.int64)
    final_loss = a[LOSS][..., -1].astype(np.float64)
    final_grad = a[GRAD_NORM][..., -1].astype(np.float64)
    diverged = (a[DIVERGED_STEP] >= 0) | ~np.isfinite(final_loss)
    hit = a[HIT_STEP].astype(np.int64)
    reached = hit >= 0
    hit_counts = a["hit_counts"].astype(np.int64)
    run = {
        FINAL_LOSS: final_loss,
        FINAL_GRAD_NORM: final_grad,
        FINAL_GAP: final_loss - ref.f_star if ref.f_star is not None else np.full_like(final_loss, np.nan),
        HIT_STEP: np.where(reached, hit, -1),
        HIT_VALUES: np.where(reached, hit_counts[..., 0], -1),
        HIT_GRADS: np.where(reached, hit_counts[..., 1], -1),
        HIT_HVPS: np.where(reached, hit_counts[..., 2], -1),
        DIVERGED_STEP: a[DIVERGED_STEP].astype(np.int64),
        TUNING: np.tile(np.arange(S) < out.n_tune, H),
    }
    further_hit = a["target_hit_step"].astype(np.int64)  # (H, S, T + 1): the taus, then the escape
    further_counts = a["target_hit_counts"].astype(np.int64)  # (H, S, T + 1, 3)
    for j, label in enumerate([*TAUS, ESCAPE]):
        ok = further_hit[..., j] >= 0
        run[tau_column(HIT_STEP, label)] = np.where(ok, further_hit[..., j], -1)
        for c, kind in enumerate((HIT_VALUES, HIT_GRADS, HIT_HVPS)):
            run[tau_column(kind, label)] = np.where(ok, further_counts[..., j, c], -1)
    for k, v in run.items():
        frame[k] = per_run(v)
    lam_min, lam_max, probe_drop = out.eigenvalues()  # the landscape program ran while the columns above were built
    landscape_s = time.perf_counter() - out.landscape_t0
    frame[FINAL_LAMBDA_MIN] = per_run(lam_min.astype(np.float64))
    frame[FINAL_LAMBDA_MAX] = per_run(lam_max.astype(np.float64))
    frame[FINAL_PROBE_DROP] = per_run(probe_drop.astype(np.float64))
    status = classify(final_loss, final_grad, diverged, lam_min, lam_max, ref.f_target, probe_drop=probe_drop)
    codes = np.searchsorted(_STATUS_SORTED, status.reshape(n_runs))
    frame[STATUS] = pd.Categorical.from_codes(per_run(_STATUS_CODE[codes]), dtype=STATUS_DTYPE, validate=False)
    frame.update({
        F_STAR: _const(np.nan if ref.f_star is None else float(ref.f_star), n_rows),
        F_TARGET: _const(float(ref.f_target), n_rows),
        F_REF: _const(np.nan if (f_ref := reference_value(out.problem)) is None else f_ref, n_rows),
        STEPS: _const(out.steps, n_rows),
        LOG_EVERY: _const(out.log_every, n_rows),
        DTYPE: _const(out.dtype, n_rows),
        COMPILE_S: _const(out.compile_s, n_rows),
        COMPILE_CACHED: _const(out.compile_cached, n_rows),
        CELL_RUN_S: _const(out.cell_run_s, n_rows),
        LANDSCAPE_S: _const(landscape_s, n_rows),
        RUN_S_AMORTIZED: _const(out.cell_run_s / n_runs, n_rows),
    })
    return pd.DataFrame(frame, copy=False)


STATUS_DTYPE = pd.CategoricalDtype(list(STATUSES))
_STATUS_SORTED = np.asarray(sorted(STATUSES), dtype=object)
_STATUS_CODE = np.asarray([STATUSES.index(x) for x in sorted(STATUSES)], np.int8)


@functools.lru_cache(maxsize=256)
def _one_category(value: str) -> pd.CategoricalDtype:
    return pd.CategoricalDtype([value])


def _const(value: Any, n: int):
    """A constant column; strings as a one-category Categorical (cheap to build and to store)."""
    if isinstance(value, str):
        return pd.Categorical.from_codes(np.zeros(n, np.int8), dtype=_one_category(value), validate=False)
    return np.full(n, value)


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run (hyperparameter point x seed) from a cell frame (or several)."""
    cols = [c for c in RUN_COLUMNS if c in df.columns] + hp_columns(df.columns)
    last = df.loc[df[STEP].to_numpy() == df[STEPS].to_numpy(), cols]  # every run logs its last step
    return last.sort_values([PROBLEM, OPTIMIZER, HP_INDEX, SEED]).reset_index(drop=True)
