"""Plateaus: log intervals where the loss barely falls while the gradient is small, per run.

Saxe, McClelland and Ganguli 2014 ("Exact solutions to the nonlinear dynamics of learning in deep
linear neural networks") show that gradient descent from a small initialization sits on long
plateaus near the saddles of a deep linear network (the origin, then the rank-k critical points) and
leaves each in a sudden drop; the time on a plateau grows as the initial scale u0 shrinks (~ ln(1/u0)
at depth 2, ~ 1/u0^(D-2) at depth D >= 3) and with depth. This module finds such episodes in the
logged curves of any run.

Definition. A run logs (t_i, f_i, |g_i|), i = 0..L (``schema.STEP``, ``LOSS``, ``GRAD_NORM``). With
f_ref the problem's reference value (``schema.F_REF``; where unknown, the run's lowest logged loss),
the relative rate of descent over interval i is

    r_i = (f_i - f_{i+1}) / ((t_{i+1} - t_i) max(f_i - f_ref, tiny)),

the fraction of the remaining gap removed per step (for GD on a quadratic, the constant 2 eta lambda
of the slowest mode in play). Interval i is *flat* when, with R = max_j r_j and G = max_j |g_j| over
the run's intervals that are not yet solved (f_i > f_target),

    r_i <= rtol R   and   max(|g_i|, |g_{i+1}|) <= max(gtol G, GRAD_TOL)   and   f_i > f_target.

Why relative to the run's own fastest rate and largest gradient, not to the initial gradient or an
absolute tolerance: a run that starts on a plateau (the showcase, a small init) has a tiny initial
gradient, so "small relative to the start" would miss the very plateau it starts on; and absolute
tolerances depend on the loss's units and the learning rate. Against the run's own peak, a plateau is
where the optimizer goes rtol = 5% as fast as it can and sees under gtol = 10% of its largest
gradient; GD's slow linear tail on an ill-conditioned bowl is not flagged, because its relative rate
is constant (= R). The absolute floor ``schema.GRAD_TOL`` keeps a run that never leaves its saddle
(R and G both from the plateau itself) flagged as one plateau to the end, consistent with the
``stalled_at_*`` statuses. Solved intervals (f_i <= f_target) never count: float32 round-off stops a
converged run's loss from falling, which is not a plateau.

An *episode* is a maximal run of consecutive flat intervals (at least ``min_intervals`` of them); its
length in steps is t_end - t_start. The resolution is the logging interval.

Hessian index on a plateau. For runs recorded with the runner's ``curvature`` flag (columns
``hessian_index`` and ``lambda_min`` at every logged step, ``bench.landscape.curvature``), each episode
also gets the median Hessian index and the lowest lambda_min over its logged steps t_start <= t <= t_end:
an index >= 1 says the run sits in a saddle region (negative curvature it has not used yet), index 0 with
a tiny gradient a flat region or a degenerate saddle (Saxe et al.'s deep networks near the origin at
depth >= 3, where the Hessian vanishes to order init_scale^(D-2)).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from bench import schema

RTOL = 0.05  # flat: relative rate at most 5% of the run's fastest
GTOL = 0.1  # and gradient norm at most 10% of the run's largest (or GRAD_TOL)
TINY = 1e-30

N_PLATEAUS = "n_plateaus"
PLATEAU_STEPS = "plateau_steps"  # steps spent on plateau episodes in all
FIRST_PLATEAU_START = "first_plateau_start"  # -1: no plateau
FIRST_PLATEAU_END = "first_plateau_end"
LONGEST_PLATEAU = "longest_plateau_steps"
LAST_PLATEAU_OPEN = "last_plateau_open"  # the last episode lasts to the end of the run
EPISODES = "plateau_episodes"  # list of (start, end) steps
# with the runner's curvature columns (else absent / NaN):
EPISODE_INDEX = "plateau_index"  # per episode: median Hessian index over its logged steps
FIRST_PLATEAU_INDEX = "first_plateau_index"  # the first episode's (NaN: no plateau)
FIRST_PLATEAU_LAMBDA_MIN = "first_plateau_lambda_min"  # lowest lambda_min over the first episode's logged steps

RUN_KEYS = [schema.PROBLEM, schema.OPTIMIZER, schema.HP_INDEX, schema.SEED]
# the columns plateau_runs reads (besides the hp_<name> ones, which it carries over)
COLUMNS = [*RUN_KEYS, schema.STEP, schema.LOSS, schema.GRAD_NORM, schema.TUNING, schema.HIT_STEP, schema.STEPS,
           schema.HESSIAN_INDEX, schema.LAMBDA_MIN, schema.F_REF, schema.F_TARGET]


def flat_intervals(t, f, g, f_ref: float, f_target: float, rtol: float = RTOL, gtol: float = GTOL) -> np.ndarray:
    """Boolean (L,) per log interval of one run: flat or not (see the module docstring)."""
    t = np.asarray(t, np.float64)
    f = np.asarray(f, np.float64)
    g = np.asarray(g, np.float64)
    if f.size < 2:
        return np.zeros(0, bool)
    if not np.isfinite(f_ref):
        finite = f[np.isfinite(f)]
        f_ref = float(finite.min()) if finite.size else 0.0
    dt = np.diff(t)
    gap = np.maximum(f[:-1] - f_ref, TINY)
    with np.errstate(invalid="ignore", over="ignore"):
        rate = (f[:-1] - f[1:]) / (dt * gap)
    active = np.isfinite(f[:-1]) & np.isfinite(f[1:]) & np.isfinite(rate) & (f[:-1] > f_target)
    if not active.any():
        return np.zeros(f.size - 1, bool)
    r_max = max(float(np.max(rate[active])), 0.0)
    g_pair = np.maximum(g[:-1], g[1:])
    g_max = float(np.max(g[:-1][active]))
    return active & (rate <= rtol * r_max) & (g_pair <= max(gtol * g_max, schema.GRAD_TOL))


def episodes(t, flat, min_intervals: int = 1) -> list[tuple[int, int]]:
    """Maximal runs of consecutive flat intervals, as (start step, end step) pairs."""
    t = np.asarray(t)
    out = []
    i, n = 0, len(flat)
    while i < n:
        if flat[i]:
            j = i
            while j + 1 < n and flat[j + 1]:
                j += 1
            if j - i + 1 >= min_intervals:
                out.append((int(t[i]), int(t[j + 1])))
            i = j + 1
        else:
            i += 1
    return out


def _episode_curvature(t, index, lam_min, eps: list[tuple[int, int]]) -> dict:
    """Per episode, the median Hessian index over its logged steps (start and end included); the first
    episode's median index and lowest lambda_min."""
    per = []
    first_min = float("nan")
    for i, (a, b) in enumerate(eps):
        inside = (t >= a) & (t <= b) & np.isfinite(index)
        per.append(float(np.median(index[inside])) if inside.any() else float("nan"))
        if i == 0 and inside.any():
            first_min = float(np.min(lam_min[inside]))
    return {EPISODE_INDEX: per, FIRST_PLATEAU_INDEX: per[0] if per else float("nan"),
            FIRST_PLATEAU_LAMBDA_MIN: first_min}


def plateau_runs(df: pd.DataFrame, rtol: float = RTOL, gtol: float = GTOL, min_intervals: int = 1) -> pd.DataFrame:
    """One row per run of a runner frame: its plateau episodes.

    Columns: problem, optimizer, hp_index, seed, (tuning, the ``hp_*`` columns, hit_step where the frame
    has them), ``n_plateaus``, ``plateau_steps`` (sum of episode lengths), ``first_plateau_start`` and
    ``first_plateau_end`` (steps; -1 without a plateau), ``longest_plateau_steps``,
    ``last_plateau_open`` (the last episode reaches the run's last logged step) and
    ``plateau_episodes`` (the (start, end) pairs). With the runner's curvature columns also
    ``plateau_index`` (per episode, the median Hessian index over its logged steps),
    ``first_plateau_index`` and ``first_plateau_lambda_min`` (the first episode's median index and lowest
    lambda_min; NaN without a plateau).
    """
    need = [*RUN_KEYS, schema.STEP, schema.LOSS, schema.GRAD_NORM]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise ValueError(f"plateau_runs: the frame lacks columns {missing}")
    extra = [c for c in (schema.TUNING, schema.HIT_STEP, schema.STEPS, *schema.hp_columns(df.columns))
             if c in df.columns]
    curv = schema.HESSIAN_INDEX in df.columns and schema.LAMBDA_MIN in df.columns
    rows = []
    df = df.sort_values([*RUN_KEYS, schema.STEP])
    # whole columns as numpy arrays once, each run a slice of them (per-group pandas access cost
    # most of a report's time)
    col = {c: df[c].to_numpy() for c in (schema.STEP, schema.LOSS, schema.GRAD_NORM, *extra)}
    if curv:
        col[schema.HESSIAN_INDEX] = df[schema.HESSIAN_INDEX].to_numpy(np.float64)
        col[schema.LAMBDA_MIN] = df[schema.LAMBDA_MIN].to_numpy(np.float64)
    f_refs = df[schema.F_REF].to_numpy(np.float64) if schema.F_REF in df.columns else None
    f_targets = df[schema.F_TARGET].to_numpy(np.float64) if schema.F_TARGET in df.columns else None
    for key, pos in df.groupby(RUN_KEYS, observed=True, sort=False).indices.items():
        first = pos[0]
        f_ref = float(f_refs[first]) if f_refs is not None else float("nan")
        f_target = float(f_targets[first]) if f_targets is not None else -np.inf
        t = col[schema.STEP][pos]
        flat = flat_intervals(t, col[schema.LOSS][pos], col[schema.GRAD_NORM][pos], f_ref, f_target, rtol, gtol)
        eps = episodes(t, flat, min_intervals)
        lengths = [b - a for a, b in eps]
        row = dict(zip(RUN_KEYS, key))
        row.update({c: col[c][first] for c in extra})
        if curv:
            row.update(_episode_curvature(t, col[schema.HESSIAN_INDEX][pos], col[schema.LAMBDA_MIN][pos], eps))
        row.update({
            N_PLATEAUS: len(eps),
            PLATEAU_STEPS: int(sum(lengths)),
            FIRST_PLATEAU_START: eps[0][0] if eps else -1,
            FIRST_PLATEAU_END: eps[0][1] if eps else -1,
            LONGEST_PLATEAU: max(lengths) if eps else 0,
            LAST_PLATEAU_OPEN: bool(eps) and eps[-1][1] == int(t[-1]),
            EPISODES: eps,
        })
        rows.append(row)
    out = pd.DataFrame(rows)
    for c in (schema.PROBLEM, schema.OPTIMIZER):
        if c in out.columns:
            out[c] = out[c].astype(str)
    return out


def _fmt(x) -> str:
    if x is None or not np.isfinite(x):
        return "-"
    return f"{x:.0f}" if abs(x) >= 10 else f"{x:.3g}"


def markdown(runs_with_plateaus: pd.DataFrame, evaluated_selection: pd.DataFrame | Sequence | None = None,
             heading: str = "### Plateaus") -> list[str]:
    """A Markdown section: per problem and optimizer, median plateau steps beside median steps to target.

    ``runs_with_plateaus``: ``plateau_runs``'s frame. ``evaluated_selection``: the runs to report, as a
    frame with columns problem, optimizer, hp_index (the chosen hyperparameter point per cell, e.g. the
    leaderboard's selection; with a ``tuning`` column in ``runs_with_plateaus``, the held-out seeds of
    those points are reported) or a sequence of such (problem, optimizer, hp_index) triples; None
    reports every run. Steps to target: the median over runs of ``hit_step`` counting runs that never
    reached the target as infinite ("> budget" when more than half never did).
    """
    r = runs_with_plateaus
    if r.empty:
        return [heading, "", "No runs."]
    if evaluated_selection is not None:
        sel = evaluated_selection if isinstance(evaluated_selection, pd.DataFrame) else pd.DataFrame(
            list(evaluated_selection), columns=[schema.PROBLEM, schema.OPTIMIZER, schema.HP_INDEX])
        sel = sel[[schema.PROBLEM, schema.OPTIMIZER, schema.HP_INDEX]].astype(
            {schema.PROBLEM: str, schema.OPTIMIZER: str})
        r = r.merge(sel.drop_duplicates(), on=[schema.PROBLEM, schema.OPTIMIZER, schema.HP_INDEX])
        if schema.TUNING in r.columns and (~r[schema.TUNING].astype(bool)).any():
            r = r[~r[schema.TUNING].astype(bool)]
    lines = [heading, "",
             f"A plateau episode is a maximal stretch of log intervals on which the loss falls at most {RTOL:g} "
             f"times as fast (relative to the remaining gap) as the run's fastest and the gradient norm is at "
             f"most {GTOL:g} of the run's largest (or {schema.GRAD_TOL:g}), before the target is reached "
             "(`bench/plateaus.py`). Medians over runs; steps at log resolution.", "",
             "| problem | optimizer | runs | runs with a plateau | median plateaus | median plateau steps "
             "[IQR] | median first plateau ends at | median steps to target |",
             "|---|---|---|---|---|---|---|---|"]
    for (prob, opt), g in r.groupby([schema.PROBLEM, schema.OPTIMIZER], sort=True):
        ps = g[PLATEAU_STEPS].to_numpy(np.float64)
        q1, med, q3 = np.percentile(ps, [25, 50, 75])
        with_p = int((g[N_PLATEAUS] > 0).sum())
        ends = g.loc[g[N_PLATEAUS] > 0, FIRST_PLATEAU_END].to_numpy(np.float64)
        if schema.HIT_STEP in g.columns:
            hit = g[schema.HIT_STEP].to_numpy(np.float64)
            hit = np.where(hit >= 0, hit, np.inf)
            m = float(np.median(hit))
            target = _fmt(m) if np.isfinite(m) else "> budget"
        else:
            target = "-"
        lines.append(f"| `{prob}` | {opt} | {len(g)} | {with_p} | {_fmt(float(np.median(g[N_PLATEAUS])))} | "
                     f"{_fmt(med)} [{_fmt(q1)}, {_fmt(q3)}] | {_fmt(float(np.median(ends)) if ends.size else None)} "
                     f"| {target} |")
    return lines


def index_lines(runs_with_plateaus: pd.DataFrame, heading: str = "#### Hessian index on plateaus") -> list[str]:
    """Markdown: per problem and optimizer with curvature columns, where the first plateau sits.

    ``runs_with_plateaus``: ``plateau_runs``'s frame (already restricted to the runs to report). Per
    cell: runs with a plateau, the median [min, max] over them of the first episode's median Hessian
    index, and the median of its lowest lambda_min. Empty where no run has curvature data.
    """
    r = runs_with_plateaus
    if r.empty or FIRST_PLATEAU_INDEX not in r.columns:
        return []
    r = r[np.isfinite(r[FIRST_PLATEAU_INDEX].to_numpy(np.float64))]
    if r.empty:
        return []
    lines = [heading, "",
             "Runs recorded with `--curvature`: the Hessian index (eigenvalues below -EIG_TOL max(1, |lambda_max|), "
             "`bench.landscape.curvature`) at the logged steps of each run's first plateau episode, its median per "
             "run, then median [min, max] over the runs; and the median of the lowest lambda_min on that plateau. "
             "Index >= 1: the plateau is a saddle region; 0: flat or degenerate.", "",
             "| problem | optimizer | runs with a plateau | index on the first plateau | lambda_min there |",
             "|---|---|---:|---:|---:|"]
    for (prob, opt), g in r.groupby([schema.PROBLEM, schema.OPTIMIZER], sort=True):
        k = g[FIRST_PLATEAU_INDEX].to_numpy(np.float64)
        lam = g[FIRST_PLATEAU_LAMBDA_MIN].to_numpy(np.float64)
        lines.append(f"| `{prob}` | {opt} | {len(g)} | {np.median(k):g} [{k.min():g}, {k.max():g}] | "
                     f"{np.median(lam):.3g} |")
    return lines + [""]
