"""The leaderboard: per problem, per optimizer, how often, how fast and at what cost.

Cost is counted in gradient-equivalents (``bench.cost``: a gradient is 1, a function value and a
Hessian-vector product weigh what XLA's flop count of each says, per problem), so a
second-order step of 10-20 HVPs no longer counts like one gradient step.

Selection is honest: where a cell holds several hyperparameter points, each optimizer's point
is chosen on the tuning seeds (the first half of the cell's seeds, in order) by success rate,
then median cost to target (failures count as infinite), then median final loss; every number
in the table is then computed on the held-out seeds (the other half) only. A cell with one
point reports all seeds. Where the cell's point 0 is the optimizer's registered defaults (the
``qmc<K>`` grid rule), the *defaults track* (no tuning) is reported beside the tuned one, on the
same held-out seeds.

Columns:
  success: fraction of held-out runs that end at or below ``f_target`` (status converged),
    with its Wilson 95% interval.
  cost: median gradient-equivalents spent to reach the target over successful runs, with a
    bootstrap 95% interval of the median (``scipy.stats.bootstrap``, percentile method).
  steps: median [IQR] of the first step at the target, over successful runs.
  grads / HVPs / values: median oracle calls spent to reach the target (successful runs).
  gap: median final ``full_loss - f_star`` over all held-out runs.
  seconds: median wall seconds per run (the cell's compiled run time over its runs); seconds
    to target are that times (hit_step + 1) / (steps + 1), the share of the run's evaluations up
    to the one at the target (the program's steps all cost alike).
  statuses: counts of converged / diverged / stalled at a saddle / at a degenerate saddle / at
    another minimum / budget exhausted.
"""

from __future__ import annotations

import functools
import math
import pathlib

import numpy as np
import pandas as pd

import optimizers
from bench import cost as costs
from bench import schema as S

STATUS_ABBREV = {
    S.CONVERGED: "conv",
    S.DIVERGED: "div",
    S.STALLED_AT_SADDLE: "saddle",
    S.STALLED_AT_DEGENERATE_SADDLE: "dsaddle",
    S.STALLED_AT_MINIMUM: "min",
    S.BUDGET_EXHAUSTED: "budget",
}

# Columns the leaderboard adds to the per-run frame.
COST = "cost_to_target"  # gradient-equivalents spent up to the target (NaN: never reached)
BUDGET_COST = "budget_cost"  # gradient-equivalents of the whole run
SECONDS = "seconds_to_target"  # wall seconds up to the target (NaN: never reached)
RUN_SECONDS = "run_seconds"  # wall seconds of the whole run
SUCCESS = "success"


def tau_cost(tau: float) -> str:
    """The per-run column: gradient-equivalents up to the first step at relative target ``tau`` (NaN: never)."""
    return f"cost_to_target@{S.tau_label(tau)}"


def tau_success(tau: float) -> str:
    """The per-run column: whether the run reached relative target ``tau`` (and did not diverge)."""
    return f"success@{S.tau_label(tau)}"

BOOTSTRAP_RESAMPLES = 2000


def wilson(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (Wilson 1927)."""
    if n == 0:
        return (math.nan, math.nan)
    p = successes / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (max(0.0, centre - half), min(1.0, centre + half))


def median_interval(x, confidence: float = 0.95) -> tuple[float, float]:
    """Bootstrap interval of the median (percentile method, fixed seed); NaN below two values."""
    x = np.asarray(x, np.float64)
    if len(x) < 2:
        return (math.nan, math.nan)
    if np.all(x == x[0]):  # every resample has the same median
        return (float(x[0]), float(x[0]))
    from scipy import stats

    res = stats.bootstrap((x,), np.median, confidence_level=confidence, n_resamples=BOOTSTRAP_RESAMPLES,
                          method="percentile", random_state=np.random.default_rng(0), vectorized=True)
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def problem_weights(problem: str) -> costs.Weights | None:
    """The problem's oracle weights, or None when it cannot be built here (e.g. no longer registered)."""
    try:
        return costs.weights(problem)
    except (KeyError, TypeError, ValueError):
        return None


def _weights_by_problem(runs: pd.DataFrame):
    for problem, idx in runs.groupby(S.PROBLEM, sort=False).indices.items():
        yield idx, problem_weights(problem) or costs.Weights(value=1.0, hvp=1.0, grad_flops=math.nan)


def with_costs_from_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """A per-run frame (``schema.summarize``) with success and the cost to target added."""
    runs = runs.astype({c: object for c in runs.columns if c != S.STATUS and (
        pd.api.types.is_string_dtype(runs[c]) or isinstance(runs[c].dtype, pd.CategoricalDtype))})
    runs[SUCCESS] = (runs[S.STATUS] == S.CONVERGED).to_numpy()
    cost = np.full(len(runs), np.nan)
    for idx, w in _weights_by_problem(runs):
        r = runs.iloc[idx]
        cost[idx] = costs.gradient_equivalents(r[S.HIT_VALUES], r[S.HIT_GRADS], r[S.HIT_HVPS], w)
    runs[COST] = np.where(runs[SUCCESS], cost, np.nan)
    has_taus = all(S.tau_column(S.HIT_STEP, tau) in runs for tau in S.TAUS)
    for tau in S.TAUS if has_taus else ():
        col = functools.partial(S.tau_column, tau=tau)
        ok = (runs[col(S.HIT_STEP)].to_numpy() >= 0) & (runs[S.STATUS] != S.DIVERGED).to_numpy()
        c = np.full(len(runs), np.nan)
        for idx, w in _weights_by_problem(runs):
            r = runs.iloc[idx]
            c[idx] = costs.gradient_equivalents(r[col(S.HIT_VALUES)], r[col(S.HIT_GRADS)], r[col(S.HIT_HVPS)], w)
        runs[tau_success(tau)] = ok
        runs[tau_cost(tau)] = np.where(ok, c, np.nan)
    return runs


def with_costs(df: pd.DataFrame) -> pd.DataFrame:
    """The per-run frame of logged rows ``df`` with costs and seconds, to target and of the whole run."""
    runs = with_costs_from_runs(S.summarize(df))
    last = df.loc[df[S.STEP].to_numpy() == df[S.STEPS].to_numpy(),
                  [S.PROBLEM, S.OPTIMIZER, S.HP_INDEX, S.SEED, S.N_VALUES, S.N_GRADS, S.N_HVPS]]
    last = last.sort_values([S.PROBLEM, S.OPTIMIZER, S.HP_INDEX, S.SEED]).reset_index(drop=True)  # as summarize
    budget = np.full(len(runs), np.nan)
    for idx, w in _weights_by_problem(runs):
        lr = last.iloc[idx]
        budget[idx] = costs.gradient_equivalents(lr[S.N_VALUES], lr[S.N_GRADS], lr[S.N_HVPS], w)
    runs[BUDGET_COST] = budget
    run_seconds = runs[S.RUN_S_AMORTIZED].to_numpy(np.float64)
    runs[RUN_SECONDS] = run_seconds
    # the share of the run's evaluations up to and including the one at the target (never 0)
    frac = (runs[S.HIT_STEP].to_numpy(np.float64) + 1) / (runs[S.STEPS].to_numpy(np.float64) + 1)
    runs[SECONDS] = np.where(runs[SUCCESS], run_seconds * frac, np.nan)
    return runs


def _groups(frame: pd.DataFrame, keys: list[str]) -> list[tuple[tuple, np.ndarray]]:
    """(key, row positions) of each group of ``frame`` by ``keys``, in ``groupby(keys, sort=True)``'s
    order: the rows are then read from whole columns as numpy arrays (a per-group frame of every
    column cost most of a report's time)."""
    pos = frame[keys].assign(_pos=np.arange(len(frame)))
    return [(key, g["_pos"].to_numpy()) for key, g in pos.groupby(keys, sort=True)]


def _nunique(a: np.ndarray) -> int:
    """``Series.nunique``: distinct values, missing ones not counted."""
    u = pd.unique(a)
    return int((~pd.isna(u)).sum())


def _split_seeds(seeds: np.ndarray, tuning: np.ndarray | None) -> tuple[set, set]:
    """A cell's (tuning seeds, held-out seeds) from its rows' ``seeds`` and ``tuning`` flags, else
    (no ``tuning`` column) the first half of its seeds (in order) and the rest."""
    if tuning is not None:
        return set(seeds[tuning].tolist()), set(seeds[~tuning].tolist())
    s = sorted(set(seeds.tolist()))
    half = len(s) // 2
    return set(s[:half]), set(s[half:])


def _score(ok: np.ndarray, cost: np.ndarray, final: np.ndarray) -> tuple:
    """How a point did on its tuning runs (success flags, costs, final losses with NaN as inf): the
    key ``selection`` minimises."""
    return (-ok.mean(), float(np.median(np.where(ok, cost, np.inf))), float(np.median(final)))


def _q(x, q: float) -> float:
    return float(np.quantile(x, q)) if len(x) else math.nan


def selection(runs: pd.DataFrame) -> dict[tuple, tuple[int, set, str]]:
    """(problem, optimizer, steps) -> (chosen hp_index, held-out seeds, how it was chosen).

    ``runs`` is ``with_costs``'s frame (a plain ``summarize`` frame is costed first).
    """
    if COST not in runs:
        runs = with_costs_from_runs(runs)
    hp, seed = runs[S.HP_INDEX].to_numpy(), runs[S.SEED].to_numpy()
    tuning = runs[S.TUNING].to_numpy(bool) if S.TUNING in runs else None
    ok, cost = runs[SUCCESS].to_numpy(), runs[COST].to_numpy()
    final = runs[S.FINAL_LOSS].fillna(np.inf).to_numpy()
    out = {}
    for key, pos in _groups(runs, [S.PROBLEM, S.OPTIMIZER, S.STEPS]):
        n_points = _nunique(hp[pos])
        tune, held = _split_seeds(seed[pos], None if tuning is None else tuning[pos])
        if n_points > 1 and tune and held:
            on_tune = pos[np.isin(seed[pos], list(tune))]  # filtered once, then split by point
            scores = {}
            for i in sorted(pd.unique(hp[pos])):
                p = on_tune[hp[on_tune] == i]
                scores[i] = _score(ok[p], cost[p], final[p])
            best = min(scores, key=lambda i: scores[i])
            out[key] = (int(best), held, f"best of {n_points} on {len(tune)} tuning seeds")
        else:
            out[key] = (int(hp[pos[0]]), set(seed[pos].tolist()), "single point")
    return out


def _is_defaults(g: pd.DataFrame, optimizer: str, pos: np.ndarray | None = None) -> bool:
    """Whether hyperparameter point 0 of this cell (``g``, or its rows at positions ``pos``) is the
    optimizer's registered defaults."""
    try:
        defaults = optimizers.spec(optimizer).defaults
    except KeyError:
        return False
    pos = np.arange(len(g)) if pos is None else pos
    p0 = pos[g[S.HP_INDEX].to_numpy()[pos] == 0]
    if not len(p0):
        return False
    for c in S.hp_columns(g.columns):
        name = c[len(S.HP_PREFIX):]
        if name not in defaults:
            continue
        v = g[c].iloc[p0[0]]
        if not (isinstance(v, float) and math.isnan(v)):
            d = defaults[name]
            if isinstance(d, float) and not math.isclose(float(v), float(np.float32(d)), rel_tol=1e-6) \
                    and not math.isclose(float(v), d, rel_tol=1e-9):
                return False
            if not isinstance(d, float) and v != d:
                return False
    return True


def _chosen_mask(runs: pd.DataFrame, chosen: dict, point: int | None = None) -> np.ndarray:
    """Per run: a held-out run at its cell's chosen point; with ``point``, at that point instead, in
    cells of several points whose point 0 is the registered defaults (``_is_defaults``)."""
    keep = np.zeros(len(runs), bool)
    hp, seed = runs[S.HP_INDEX].to_numpy(), runs[S.SEED].to_numpy()
    for (problem, optimizer, steps), idx in runs.groupby([S.PROBLEM, S.OPTIMIZER, S.STEPS], sort=True).indices.items():
        best, held, _ = chosen[(problem, optimizer, steps)]
        if point is not None:
            if _nunique(hp[idx]) < 2 or not _is_defaults(runs, optimizer, idx):
                continue
            best = point
        keep[idx] = (hp[idx] == best) & np.isin(seed[idx], list(held))
    return keep


def evaluated_runs(runs: pd.DataFrame, chosen: dict) -> pd.DataFrame:
    """The held-out runs at each cell's chosen point: what every reported number is computed on."""
    return runs[_chosen_mask(runs, chosen)].reset_index(drop=True)


def defaults_runs(runs: pd.DataFrame, chosen: dict) -> pd.DataFrame:
    """The held-out runs at point 0 of cells whose point 0 is the registered defaults (the defaults track)."""
    return runs[_chosen_mask(runs, chosen, point=0)].reset_index(drop=True)


def _first_valid(col: pd.Series | np.ndarray, pos: np.ndarray):
    """``col.iloc[pos].dropna().unique()[0]`` (NaN where every value is missing); a column with a
    numpy dtype comes as its numpy array."""
    if isinstance(col, pd.Series):
        vals = col.iloc[pos].dropna().unique()
        return vals[0] if len(vals) else math.nan
    v = col[pos]
    if v.dtype.kind in "fc":
        v = v[~np.isnan(v)]
    elif v.dtype.kind not in "biu":
        v = v[~pd.isna(v)]
    return v[0] if len(v) else math.nan


def table(df: pd.DataFrame, runs: pd.DataFrame | None = None, chosen: dict | None = None) -> pd.DataFrame:
    """One row per (problem, optimizer, steps): the leaderboard numbers (see module doc)."""
    runs = with_costs(df) if runs is None else runs
    hp_cols = [S.HP_INDEX] + S.hp_columns(runs.columns)  # the chosen point and its values
    chosen = selection(runs) if chosen is None else chosen
    col = {c: runs[c].to_numpy() for c in (S.HP_INDEX, S.SEED, SUCCESS, COST, SECONDS, S.HIT_STEP, S.HIT_GRADS,
                                           S.HIT_HVPS, S.HIT_VALUES, S.FINAL_GAP, S.FINAL_LOSS, RUN_SECONDS)}
    status = runs[S.STATUS].to_numpy()
    taus = [tau for tau in S.TAUS if tau_success(tau) in runs and S.F_REF in runs]
    f_ref_ok = runs[S.F_REF].notna().to_numpy() if S.F_REF in runs else None
    tau_col = {c: runs[c].to_numpy() for tau in taus for c in (tau_success(tau), tau_cost(tau))}
    hp_values = {c: runs[c] for c in hp_cols}
    hp_values = {c: v.to_numpy() if isinstance(v.dtype, np.dtype) and v.dtype.kind in "biufc" else v
                 for c, v in hp_values.items()}
    rows = []
    for (problem, optimizer, steps), pos in _groups(runs, [S.PROBLEM, S.OPTIMIZER, S.STEPS]):
        best, held, how = chosen[(problem, optimizer, steps)]
        held_rows = np.isin(col[S.SEED][pos], list(held))
        ev = pos[(col[S.HP_INDEX][pos] == best) & held_rows]
        ok = ev[col[SUCCESS][ev].astype(bool)]
        n, k = len(ev), len(ok)
        lo, hi = wilson(k, n)
        cost = col[COST][ok]
        c_lo, c_hi = median_interval(cost)
        hit_step = col[S.HIT_STEP][ok]
        row = {
            "problem": problem,
            "optimizer": optimizer,
            "steps_budget": int(steps),
            "runs": n,
            "success": k / n if n else math.nan,
            "success_lo": lo,
            "success_hi": hi,
            "cost_median": _q(cost, 0.5),
            "cost_lo": c_lo,
            "cost_hi": c_hi,
            "seconds_to_target_median": _q(col[SECONDS][ok], 0.5),
            "steps_median": _q(hit_step, 0.5),
            "steps_q25": _q(hit_step, 0.25),
            "steps_q75": _q(hit_step, 0.75),
            "grads_median": _q(col[S.HIT_GRADS][ok], 0.5),
            "hvps_median": _q(col[S.HIT_HVPS][ok], 0.5),
            "values_median": _q(col[S.HIT_VALUES][ok], 0.5),
            "gap_median": float(np.median(col[S.FINAL_GAP][ev])) if n else math.nan,
            "final_loss_median": float(np.median(col[S.FINAL_LOSS][ev])) if n else math.nan,
            "run_seconds_median": float(np.median(col[RUN_SECONDS][ev])) if n else math.nan,
            "selection": how,
        }
        if _nunique(col[S.HP_INDEX][pos]) > 1 and _is_defaults(runs, optimizer, pos):
            dv = pos[(col[S.HP_INDEX][pos] == 0) & held_rows]
            d_ok = col[SUCCESS][dv].astype(bool)
            row["defaults_success"] = float(col[SUCCESS][dv].mean()) if len(dv) else math.nan
            row["defaults_cost_median"] = _q(col[COST][dv[d_ok]], 0.5)
        for tau in taus if f_ref_ok is not None and f_ref_ok[ev].all() else ():
            reached = tau_col[tau_success(tau)][ev]
            row[tau_success(tau)] = float(reached.mean()) if n else math.nan
            row[tau_cost(tau)] = _q(tau_col[tau_cost(tau)][ev][reached.astype(bool)], 0.5)
        for s in S.STATUSES:
            row[f"n_{s}"] = int((status[ev] == s).sum())
        for c in hp_cols:
            row[c] = _first_valid(hp_values[c], ev)
        rows.append(row)
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    out["_cost_key"] = out["cost_median"].fillna(np.inf)
    out = out.sort_values([S.PROBLEM, "success", "_cost_key", "gap_median"],
                          ascending=[True, False, True, True]).drop(columns="_cost_key")
    return out.reset_index(drop=True)


# The cost of a run that starts at the target is 0 oracle calls; +1 counts the evaluation at
# which the target was seen, so performance ratios are defined (``score.ratios``).
COST_SHIFT = 1.0


def scored_problems(ev: pd.DataFrame) -> list[str]:
    """Problems on which at least one evaluated run reached the target: only they can rank anything."""
    return sorted(ev.loc[ev[SUCCESS], S.PROBLEM].unique())


def overall(ev: pd.DataFrame, defaults: pd.DataFrame | None = None) -> dict[str, pd.DataFrame]:
    """Scores across problems from the evaluated runs (``evaluated_runs``).

    Returns ``costs`` and ``seconds`` (problems x optimizers: median over held-out runs of the
    cost to target, failures +inf), ``art`` (COCO's aRT in gradient-equivalents) and ``summary``
    (per optimizer: AlgoPerf score in gradient-equivalents and in seconds, problems solved, and
    the defaults track's score where ``defaults`` runs are given), all over ``scored_problems``.
    """
    from bench.reports import score

    out: dict[str, pd.DataFrame] = {}
    taus = relative_target_scores(ev)
    if taus:
        out.update(taus)
    keep = set(scored_problems(ev))
    ev = ev[ev[S.PROBLEM].isin(keep)]
    if ev.empty:
        return out
    out["runs"] = ev  # the evaluated runs of the scored problems
    out["costs"] = score.cost_to_target(ev, COST, success_col=SUCCESS)
    out["seconds"] = score.cost_to_target(ev, SECONDS, success_col=SUCCESS)
    out["art"] = score.expected_runtime(ev, COST, BUDGET_COST, success_col=SUCCESS)
    summary = pd.DataFrame({
        "score_cost": score.algoperf_score(out["costs"], shift=COST_SHIFT),
        "score_seconds": score.algoperf_score(out["seconds"]),
        "solved": np.isfinite(out["costs"].to_numpy()).sum(axis=0),
        "success_mean": ev.groupby(S.OPTIMIZER)[SUCCESS].mean(),
    })
    if defaults is not None and not defaults.empty:
        d = defaults[defaults[S.PROBLEM].isin(keep)]
        dc = score.cost_to_target(d, COST, success_col=SUCCESS).reindex(index=out["costs"].index)
        # the defaults are scored against the tuned field: best cost per problem from either
        both = pd.concat([out["costs"], dc.add_suffix(" (defaults)")], axis=1)
        dscore = score.algoperf_score(both, shift=COST_SHIFT)
        summary["score_cost_defaults"] = pd.Series({c[: -len(" (defaults)")]: v for c, v in dscore.items()
                                                    if c.endswith(" (defaults)")})
    out["summary"] = by_family(summary)
    out["n_problems"] = pd.DataFrame({"n": [len(keep)]})
    return out


def optimizer_family(name: str) -> str:
    """The optimizer's family (``optimizers.Spec.family``); "other" for a stored name no longer registered."""
    try:
        return optimizers.spec(name).family or "other"
    except KeyError:
        return "other"


def by_family(summary: pd.DataFrame) -> pd.DataFrame:
    """``summary`` (indexed by optimizer) with a ``family`` column, grouped by family in the order of
    ``optimizers.base.FAMILIES`` ("other" last) and by ``score_cost``, best first, within a family."""
    from optimizers.base import FAMILIES

    family = pd.Series([optimizer_family(o) for o in summary.index], index=summary.index)
    rank = family.map({f: i for i, f in enumerate(FAMILIES)}).fillna(len(FAMILIES))
    score = summary["score_cost"].fillna(-np.inf)
    order = sorted(summary.index, key=lambda o: (rank[o], -score[o], o))
    return summary.assign(family=family).loc[order]


def relative_target_scores(ev: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The relative targets' view across problems, from the evaluated runs.

    Over the problems with a reference value (``f_ref``), per tau in ``schema.TAUS``: ``taus``
    (per optimizer: the AlgoPerf score of the cost to that target over the problems where some
    run reached it, and the share of all (problem, held-out run) pairs that reached it) and
    ``tau_ecdf`` (the runtime ECDF of each tau, ``score.runtime_ecdf``'s frame with a ``tau``
    column): Moré and Wild's data profiles with cost in gradient-equivalents. Empty when the
    runs carry no relative-target columns.
    """
    from bench.reports import score

    if tau_success(S.TAUS[0]) not in ev or S.F_REF not in ev:
        return {}
    ev = ev[ev[S.F_REF].notna()]
    if ev.empty:
        return {}
    cols, ecdfs = {}, []
    for tau in S.TAUS:
        label = S.tau_label(tau)
        reached = set(ev.loc[ev[tau_success(tau)], S.PROBLEM])
        c = score.cost_to_target(ev[ev[S.PROBLEM].isin(reached)], tau_cost(tau), success_col=tau_success(tau))
        sc = score.algoperf_score(c, shift=COST_SHIFT) if not c.empty else pd.Series(dtype=np.float64)
        cols[f"score@{label}"] = sc
        cols[f"share@{label}"] = ev.groupby(S.OPTIMIZER)[tau_success(tau)].mean()
        cols[f"scored@{label}"] = pd.Series(len(reached), index=cols[f"share@{label}"].index)
        e = score.runtime_ecdf(ev, tau_cost(tau), success_col=tau_success(tau))
        ecdfs.append(e.assign(tau=tau))
    table_ = pd.DataFrame(cols)
    table_ = table_.sort_values([f"share@{S.tau_label(t)}" for t in reversed(S.TAUS)], ascending=False)
    return {"taus": table_, "tau_ecdf": pd.concat(ecdfs, ignore_index=True),
            "tau_problems": pd.DataFrame({"problem": sorted(ev[S.PROBLEM].unique())})}


def _fmt_num(x: float, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, (int, np.integer)) or float(x).is_integer() and abs(x) < 1e7:
        return f"{int(x)}"
    return f"{x:.{digits}g}"


def _hp_text(row: pd.Series) -> str:
    """The learning rate, and every other hyperparameter that differs from its registered default."""
    keys = S.hp_columns(row.index)
    try:
        defaults = optimizers.spec(row[S.OPTIMIZER]).defaults
    except KeyError:  # a stored cell of an optimizer no longer registered
        defaults = {}
    parts = []
    for c in keys:
        v = row[c]
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        name = c[len(S.HP_PREFIX):]
        if name == "learning_rate":
            parts.insert(0, f"lr={v:.3g}")
        elif name in defaults and v != defaults[name]:
            parts.append(f"{name}={v:.3g}" if isinstance(v, float) else f"{name}={v}")
    return ", ".join(parts) if parts else "defaults"


def _short_names(problems_: list[str]) -> dict[str, str]:
    short = {p: p.split("(")[0] for p in problems_}
    return short if len(set(short.values())) == len(problems_) else {p: p for p in problems_}


def _matrix(lines: list[str], frame: pd.DataFrame, fmt, order: list[str] | None = None) -> None:
    """A problems x optimizers frame as a Markdown table with optimizers as rows."""
    probs = list(frame.index)
    short = _short_names(probs)
    lines.append("| optimizer | " + " | ".join(short[p] for p in probs) + " |")
    lines.append("|---|" + "---:|" * len(probs))
    for opt in order or list(frame.columns):
        if opt in frame.columns:
            lines.append(f"| {opt} | " + " | ".join(fmt(frame.loc[p, opt]) for p in probs) + " |")
    lines.append("")


def _best_known_text(problem: str) -> str:
    """", best known f = ..." where the problem's reference records a campaign's best value."""
    try:
        import problems

        best = problems.get(problem).reference.extra.get("best_known")
    except (KeyError, TypeError, ValueError):
        return ""
    return "" if best is None else f" (best known f = {best:.7g}, from the reference campaign)"


def distinct_text(frame: pd.DataFrame, col: str) -> list[str]:
    """``sorted(set(frame[col].dropna().astype(str)))``, distinct values first (the frame is every logged
    row); [] without the column."""
    if col not in frame:
        return []
    return sorted(set(frame[col].dropna().drop_duplicates().astype(str)))


def first_rows(frame: pd.DataFrame, col: str) -> dict:
    """Each value of ``frame[col]`` -> the position of its first row (``frame[frame[col] == v].iloc[0]``
    is ``frame.iloc[first_rows(frame, col)[v]]``, without a mask over every row)."""
    pos = np.flatnonzero(~frame[col].duplicated().to_numpy())
    return dict(zip(frame[col].iloc[pos].tolist(), pos.tolist()))


def _fmt_cost(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return "∞" if math.isinf(x) else _fmt_num(x)


def markdown(tab: pd.DataFrame, runs_frame: pd.DataFrame, ov: dict | None = None) -> str:
    """The leaderboard as Markdown: provenance, scores across problems, a success matrix, one table per problem."""
    lines = ["# Leaderboard", ""]
    if tab.empty:
        return "\n".join(lines + ["No results yet: run `python -m bench run --suite quick`.", ""])
    ov = ov or {}
    prov = runs_frame.iloc[0]
    commits = distinct_text(runs_frame, "git_commit")
    lines += [
        (f"Backend **{prov.get('backend', '?')}** ({prov.get('device_kind', '?')} x{prov.get('device_count', '?')}), "
         if "device" not in runs_frame or runs_frame["device"].nunique() < 2 else
         f"Devices **{'**, **'.join(sorted(map(str, runs_frame['device'].unique())))}** (see Devices), ")
        + f"jax {prov.get('jax_version', '?')}, optax {prov.get('optax_version', '?')}, "
        f"flax {prov.get('flax_version', '?')}; commit {', '.join(c[:12] for c in commits) or 'unknown'}; "
        f"{runs_frame['cell_key'].nunique()} cells, newest written {runs_frame['utc_time'].max()}.",
        "",
        "How to read it: each optimizer's hyperparameters are chosen on the tuning seeds (the first seeds",
        "of each cell) and every number below is measured on the held-out seeds (the others; the count is",
        "in each problem's header). *success*: share of held-out runs ending at or below the problem's",
        "target value, with its Wilson 95% interval.",
        "*cost*: median gradient-equivalents to the target over successful runs (a gradient is 1; a",
        "function value and a Hessian-vector product weigh their XLA flop count relative to a gradient,",
        "per problem: see the weights below), with a bootstrap 95% interval of the median. *steps*,",
        "*grads*, *HVPs*, *values*: medians over successful runs of the first step at the target and of",
        "the oracle calls spent to get there ([IQR] for steps). *gap*: median final loss minus the known",
        "optimum f* (float32: a gap of -1e-5 at |f*| = 700 is round-off). *s/run*: median wall seconds",
        "per run. *end*: how runs ended (conv / div = diverged / saddle = stalled at a strict saddle /",
        "dsaddle = at a degenerate saddle, where the end-point probe found descent / min = at a",
        "non-target minimum, no descent found / budget = still moving). *at τ*: share of held-out runs",
        "that reached each relative target f_ref + τ (f_0 - f_ref) (Moré and Wild 2009; f_0 the run's start",
        "value, f_ref the best known value or f*), for τ = " + ", ".join(S.tau_label(t) for t in S.TAUS) + ".",
        "",
    ]
    summary = ov.get("summary")
    if summary is not None and not summary.empty:
        n_prob = int(ov["n_problems"]["n"].iloc[0])
        excluded = sorted(set(tab["problem"]) - set(ov["costs"].index))
        has_defaults = "score_cost_defaults" in summary
        lines += [
            "## Scores across problems",
            "",
            "AlgoPerf performance-profile score (Dahl et al. 2023): per problem, each optimizer's median",
            "cost to target over held-out runs (infinite when half or more fail) divided by the best",
            "optimizer's; the profile rho(tau), the share of problems within a factor tau of the best,",
            "integrated over tau in [1, 4] and normalised to [0, 1]. 1: cheapest on every problem; 0: never",
            f"within 4x of the best. Over the {n_prob} problems where some run reached the target"
            + (f"; not scored, as no held-out run of any optimizer reached their target: "
               f"{', '.join(excluded)}." if excluded else "."),
            "*solved*: problems whose median held-out run reached the target."
            + (" *defaults*: the same score for the registered defaults, untuned, against the tuned field."
               if has_defaults else ""),
            "",
            "Grouped by family (first-order, noise-injecting, quasi-Newton, Hessian-vector, sub-sampled),",
            "best score first within each.",
            "",
            "| family | optimizer | score (gradient-equivalents) | score (seconds) | solved | mean success |"
            + (" score, defaults |" if has_defaults else ""),
            "|---|---|---:|---:|---:|---:|" + ("---:|" if has_defaults else ""),
        ]
        for opt, r in summary.iterrows():
            secs = "–" if math.isnan(r["score_seconds"]) else f"{r['score_seconds']:.3f}"  # –: several devices
            lines.append(f"| {r['family']} | {opt} | {r['score_cost']:.3f} | {secs} | {int(r['solved'])}/{n_prob} | "
                         f"{_fmt_pct(r['success_mean'])} |"
                         + (f" {_fmt_num(r['score_cost_defaults'])} |" if has_defaults else ""))
        lines += ["", "Performance profiles and runtime ECDF: `plots/performance_profile.png`, "
                  "`plots/performance_profile_seconds.png`, `plots/runtime_ecdf.png`.", "",
                  "### Average running time (COCO aRT, gradient-equivalents)", "",
                  "Total cost of all held-out runs (successful ones up to the target, failed ones their whole budget)",
                  "divided by the number that reached the target (Hansen et al. 2021); ∞: none did.", ""]
        _matrix(lines, ov["art"], _fmt_cost, order=list(summary.index))
    _relative_targets_markdown(lines, ov)
    lines += ["## Success rate by problem", ""]
    pivot = tab.pivot_table(index="problem", columns="optimizer", values="success", aggfunc="first")
    order = list(pivot.mean(axis=0).sort_values(ascending=False).index)
    _matrix(lines, pivot, _fmt_pct, order=order)
    first = first_rows(runs_frame, S.PROBLEM)
    for problem, g in tab.groupby(S.PROBLEM, sort=True):
        g0 = g.iloc[0]
        ref = runs_frame.iloc[first[problem]]
        f_star = ref[S.F_STAR]
        w = problem_weights(problem)
        weights = (f"oracle weights: value {w.value:.2f}, HVP {w.hvp:.2f} gradients (gradient "
                   f"{w.grad_flops:.3g} flops)" if w is not None and not math.isnan(w.grad_flops)
                   else "oracle weights unknown: every call counts as a gradient")
        has_defaults = "defaults_success" in g and g["defaults_success"].notna().any()
        tau_cols = [tau_success(t) for t in S.TAUS]
        has_taus = all(c in g and g[c].notna().all() for c in tau_cols)
        f_ref = ref.get(S.F_REF, math.nan)
        lines += [
            f"## {problem}",
            "",
            f"f* = {_fmt_num(f_star, 7)}{_best_known_text(problem)}, target f <= {_fmt_num(ref[S.F_TARGET], 7)}, "
            f"budget {int(g0['steps_budget'])} steps, {int(g0['runs'])} held-out runs per optimizer "
            f"({g0['selection']}); {weights}."
            + (f" Relative targets measured against f_ref = {_fmt_num(f_ref, 7)}." if has_taus else ""),
            "",
            "| optimizer | hparams | success [95% CI] | cost [95% CI] | steps [IQR] | grads | HVPs | values | gap "
            "| s/run | end |" + (" at τ = " + " / ".join(S.tau_label(t) for t in S.TAUS) + " |" if has_taus else "")
            + (" defaults: success, cost |" if has_defaults else ""),
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|" + ("---:|" if has_taus else "")
            + ("---:|" if has_defaults else ""),
        ]
        for _, r in g.iterrows():
            steps = "–" if math.isnan(r["steps_median"]) else (
                f"{_fmt_num(r['steps_median'])} [{_fmt_num(r['steps_q25'])}, {_fmt_num(r['steps_q75'])}]")
            cost = "–" if math.isnan(r["cost_median"]) else (
                f"{_fmt_num(r['cost_median'])}" + ("" if math.isnan(r["cost_lo"]) else
                                                   f" [{_fmt_num(r['cost_lo'])}, {_fmt_num(r['cost_hi'])}]"))
            end = " ".join(f"{STATUS_ABBREV[s]} {r[f'n_{s}']}" for s in S.STATUSES if r[f"n_{s}"])
            at_tau = (" " + " / ".join(f"{100 * r[c]:.0f}" for c in tau_cols) + "% |") if has_taus else ""
            dflt = ""
            if has_defaults:
                dflt = (f" {_fmt_pct(r['defaults_success'])}, {_fmt_num(r['defaults_cost_median'])} |"
                        if not math.isnan(r.get("defaults_success", math.nan)) else " – |")
            lines.append(
                f"| {r['optimizer']} | {_hp_text(r)} | {_fmt_pct(r['success'])} "
                f"[{_fmt_pct(r['success_lo'])}, {_fmt_pct(r['success_hi'])}] | {cost} | {steps} | "
                f"{_fmt_num(r['grads_median'])} | {_fmt_num(r['hvps_median'])} | {_fmt_num(r['values_median'])} | "
                f"{_fmt_num(r['gap_median'])} | {_fmt_num(r['run_seconds_median'], 2)} | {end} |" + at_tau + dflt
            )
        lines.append("")
    return "\n".join(lines)


def _relative_targets_markdown(lines: list[str], ov: dict) -> None:
    """The section on the relative targets (``relative_target_scores``), where there are any."""
    taus = ov.get("taus")
    if taus is None or taus.empty:
        return
    n_prob = len(ov["tau_problems"])
    labels = [S.tau_label(t) for t in S.TAUS]
    lines += [
        "## Relative targets: from loose to tight",
        "",
        f"Per run, the targets f_ref + τ (f_0 - f_ref) (Moré and Wild 2009), over the {n_prob} problems with a",
        "reference value f_ref (the best known value where a reference campaign recorded one, else f*); f_0 is",
        "the run's own start value. *share*: fraction of all (problem, held-out run) pairs that reached the",
        "target within the budget (and did not diverge), at the hyperparameters chosen for the headline target.",
        "*score*: the AlgoPerf score of the cost to that target (gradient-equivalents), over the problems where",
        "some optimizer's held-out run reached it (their number in the header). Data profiles (the runtime ECDF",
        "per τ): `plots/data_profiles.png`.",
        "",
        "| optimizer | " + " | ".join(f"τ = {lb}: share, score on {int(taus[f'scored@{lb}'].max())}" for lb in labels)
        + " |",
        "|---|" + "---:|" * len(labels),
    ]
    for opt, r in taus.iterrows():
        lines.append(f"| {opt} | " + " | ".join(
            f"{_fmt_pct(r[f'share@{lb}'])}, {_fmt_num(r[f'score@{lb}'])}" for lb in labels) + " |")
    lines.append("")


def _fmt_pct(x: float) -> str:
    return "–" if x is None or math.isnan(x) else f"{100 * x:.0f}%"


def failures_markdown(failures: dict) -> str:
    if not failures:
        return ""
    lines = ["## Cells without results", "",
             "These cells raised, hung past the time limit or crashed; they are not in the tables above.", "",
             "| optimizer | problem | error |", "|---|---|---|"]
    for f in sorted(failures.values(), key=lambda f: (f["problem"], f["optimizer"])):
        lines.append(f"| {f['optimizer']} | {f['problem']} | {f['error'].splitlines()[0][:160]} |")
    return "\n".join(lines) + "\n"


def build(df: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """The per-problem table and the scores across problems (``overall``) of a logged frame."""
    runs = with_costs(df)
    chosen = selection(runs)
    tab = table(df, runs, chosen)
    ev = evaluated_runs(runs, chosen)
    ov = overall(ev, defaults_runs(runs, chosen))
    ov["evaluated"] = ev  # every problem's evaluated runs (``runs``: the scored problems')
    return tab, ov


def write(df: pd.DataFrame, out_dir: str | pathlib.Path, failures: dict | None = None,
          built: tuple[pd.DataFrame, dict] | None = None, extra: list[str] | None = None
          ) -> tuple[pathlib.Path, pathlib.Path]:
    """Write ``LEADERBOARD.md``, ``leaderboard.csv`` and ``scores.csv`` into ``out_dir``; return
    the first two paths. ``built``: ``build(df)`` when the caller already has it; ``extra``: more
    Markdown lines (the landscape section) after the tables."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if built is None:
        built = build(df) if not df.empty else (pd.DataFrame(), {})
    tab, ov = built
    md = out_dir / "LEADERBOARD.md"
    csv = out_dir / "leaderboard.csv"
    md.write_text(markdown(tab, df, ov) + "\n" + ("\n".join(extra) + "\n" if extra else "")
                  + failures_markdown(failures or {}))
    tab.to_csv(csv, index=False)
    if ov.get("summary") is not None:
        ov["summary"].to_csv(out_dir / "scores.csv", index_label="optimizer")
    return md, csv


def write_score_plots(ov: dict, plot_dir: str | pathlib.Path) -> list[pathlib.Path]:
    """Performance profiles (gradient-equivalents, seconds) and the runtime ECDF as PNGs, from
    ``overall``'s scores (``build(df)[1]``); none where nothing was scored."""
    from bench.reports import profiles, score

    if not ov:
        return []
    plot_dir = pathlib.Path(plot_dir)
    plot_dir.mkdir(parents=True, exist_ok=True)
    out = []
    if "tau_ecdf" in ov:
        out.append(profiles.write_ecdf_panels(
            {f"τ = {S.tau_label(t)}": e.drop(columns="tau") for t, e in ov["tau_ecdf"].groupby("tau", sort=False)},
            plot_dir / "data_profiles.png", "gradient-equivalents to target",
            "Data profiles: share of (problem, held-out run) pairs at f_ref + τ (f_0 - f_ref)"))
    if "runs" not in ov:
        return out
    ev = ov["runs"]
    # no seconds profile across devices (bench.multistore sets their score to NaN): times compare within one
    mixed = "summary" in ov and ov["summary"]["score_seconds"].isna().all()
    return out + [
        profiles.write_profile(ov["costs"], plot_dir / "performance_profile.png",
                               "gradient-equivalents to target (median over held-out runs)", shift=COST_SHIFT),
        *([] if mixed else [profiles.write_profile(ov["seconds"], plot_dir / "performance_profile_seconds.png",
                                                   "seconds to target (median over held-out runs)")]),
        profiles.write_ecdf(score.runtime_ecdf(ev, COST, success_col=SUCCESS), plot_dir / "runtime_ecdf.png",
                            "gradient-equivalents to target"),
    ]
