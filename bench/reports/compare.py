"""Head to head: two optimizers, problem by problem, with bootstrap intervals.

The runs compared are the leaderboard's: on each cell, the hyperparameter point chosen on the
tuning seeds and its held-out seeds only (``leaderboard.selection`` and ``evaluated_runs``), so a
head-to-head verdict and the leaderboard never disagree about which runs count.

Per problem (and step budget), for optimizers A and B:

* success difference d = s_A - s_B, the difference of the shares of held-out runs that reached the
  target, with a percentile-bootstrap 95% interval (``scipy.stats.bootstrap``, the two optimizers'
  runs resampled independently, ``BOOTSTRAP_RESAMPLES`` resamples, fixed seed);
* cost ratio r = (m_A + 1) / (m_B + 1), m the median cost to target in gradient-equivalents over the
  successful runs (the leaderboard's *cost* column), shifted by ``leaderboard.COST_SHIFT`` = 1 as the
  performance ratios are (a run that starts at the target costs 0); r < 1: A is cheaper. Its interval
  is the percentile bootstrap of the same statistic over the successful runs of each. Undefined
  (NaN) where either has no successful run; no interval below two successful runs each.

Who wins, in order (the leaderboard's own selection order: success first, then cost): the one with
the higher success rate where d's interval excludes 0; else the cheaper one where r's interval
excludes 1; else a tie. A sample whose bootstrap distribution is a single value (all runs alike)
has that value as its interval. The overall win rate is each optimizer's share of the compared
problems won (ties counted apart). This is a per-problem descriptive verdict at the 95% level, not a
multiple-testing-corrected one: with many problems, expect about one spurious decision in twenty
among problems where the two do not differ (Efron and Tibshirani 1993 for the bootstrap).
"""

from __future__ import annotations

import math
import pathlib

import numpy as np
import pandas as pd

from bench import schema as S
from bench.reports import leaderboard as lb

BOOTSTRAP_RESAMPLES = 2000
CONFIDENCE = 0.95
TIE = "tie"


def evaluated(df: pd.DataFrame, a: str, b: str) -> pd.DataFrame:
    """The held-out runs at the chosen points of optimizers ``a`` and ``b`` (logged frame ``df``)."""
    df = df[df[S.OPTIMIZER].astype(str).isin([a, b])]
    runs = lb.with_costs(df)
    return lb.evaluated_runs(runs, lb.selection(runs))


def _interval(samples: tuple[np.ndarray, np.ndarray], stat, seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap interval of ``stat(x, y, axis)`` resampling x and y independently."""
    x, y = samples
    if len(x) < 2 or len(y) < 2:
        return (math.nan, math.nan)
    if np.all(x == x[0]) and np.all(y == y[0]):  # every resample gives the same value
        v = float(stat(x, y, axis=-1))
        return (v, v)
    from scipy import stats

    res = stats.bootstrap((x, y), stat, paired=False, vectorized=True, confidence_level=CONFIDENCE,
                          n_resamples=BOOTSTRAP_RESAMPLES, method="percentile",
                          random_state=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def _diff(x, y, axis=-1):
    return np.mean(x, axis=axis) - np.mean(y, axis=axis)


def _ratio(x, y, axis=-1):
    return (np.median(x, axis=axis) + lb.COST_SHIFT) / (np.median(y, axis=axis) + lb.COST_SHIFT)


def head_to_head(ev: pd.DataFrame, a: str, b: str) -> pd.DataFrame:
    """One row per (problem, steps budget) on which both ``a`` and ``b`` have evaluated runs.

    ``ev``: evaluated runs (``evaluated``, or ``leaderboard.build(df)[1]["evaluated"]``) with the
    leaderboard's ``success`` and ``cost_to_target`` columns. Columns: problem, steps, runs_a, runs_b,
    success_a, success_b, success_diff, diff_lo, diff_hi, cost_a, cost_b (median cost to target over
    successful runs), cost_ratio, ratio_lo, ratio_hi, winner (``a``, ``b`` or ``"tie"``), decided_by
    (``"success"``, ``"cost"`` or ``""``). See the module docstring for the statistics.
    """
    if a == b:
        raise ValueError(f"compare two different optimizers, got {a!r} twice")
    rows = []
    ev = ev[ev[S.OPTIMIZER].astype(str).isin([a, b])]
    for (problem, steps), g in ev.groupby([S.PROBLEM, S.STEPS], sort=True, observed=True):
        ga, gb = (g[g[S.OPTIMIZER].astype(str) == o] for o in (a, b))
        if ga.empty or gb.empty:
            continue
        sa, sb = (x[lb.SUCCESS].to_numpy(np.float64) for x in (ga, gb))
        ca, cb = (x.loc[x[lb.SUCCESS], lb.COST].to_numpy(np.float64) for x in (ga, gb))
        d_lo, d_hi = _interval((sa, sb), _diff)
        defined = len(ca) > 0 and len(cb) > 0
        ratio = float(_ratio(ca, cb)) if defined else math.nan
        r_lo, r_hi = _interval((ca, cb), _ratio) if defined else (math.nan, math.nan)
        winner, by = TIE, ""
        if d_lo > 0 or d_hi < 0:
            winner, by = (a if d_lo > 0 else b), "success"
        elif r_lo > 1 or r_hi < 1:
            winner, by = (a if r_hi < 1 else b), "cost"
        rows.append({
            "problem": problem, "steps": int(steps), "runs_a": len(sa), "runs_b": len(sb),
            "success_a": float(sa.mean()), "success_b": float(sb.mean()), "success_diff": float(_diff(sa, sb)),
            "diff_lo": d_lo, "diff_hi": d_hi,
            "cost_a": float(np.median(ca)) if len(ca) else math.nan,
            "cost_b": float(np.median(cb)) if len(cb) else math.nan,
            "cost_ratio": ratio, "ratio_lo": r_lo, "ratio_hi": r_hi, "winner": winner, "decided_by": by,
        })
    return pd.DataFrame(rows, columns=[
        "problem", "steps", "runs_a", "runs_b", "success_a", "success_b", "success_diff", "diff_lo", "diff_hi",
        "cost_a", "cost_b", "cost_ratio", "ratio_lo", "ratio_hi", "winner", "decided_by"])


def win_rates(h2h: pd.DataFrame, a: str, b: str) -> dict[str, float]:
    """Problems compared, wins of ``a``, of ``b``, ties, and each one's win rate (wins / compared)."""
    n = len(h2h)
    wa, wb = int((h2h["winner"] == a).sum()), int((h2h["winner"] == b).sum())
    return {"problems": n, "wins_a": wa, "wins_b": wb, "ties": n - wa - wb,
            "win_rate_a": wa / n if n else math.nan, "win_rate_b": wb / n if n else math.nan}


def _num(x: float) -> str:
    return lb._fmt_num(x)


def _signed_pct(x: float) -> str:
    return "–" if math.isnan(x) else f"{100 * x:+.0f}"


def markdown(h2h: pd.DataFrame, a: str, b: str, plot: str | None = None) -> list[str]:
    """The ``## Head to head`` section (also what ``python -m bench compare`` prints)."""
    w = win_rates(h2h, a, b)
    lines = [
        f"## Head to head: {a} vs {b}",
        "",
        "Per problem, on the held-out runs at each optimizer's chosen hyperparameters (as in the tables above):",
        f"*success*: {a}'s minus {b}'s share of runs that reached the target, in percentage points, with a",
        "bootstrap 95% interval; *cost ratio*: (median cost to target of "
        f"{a} + 1) / ({b}'s + 1) in gradient-equivalents over",
        f"successful runs, with a bootstrap 95% interval (below 1: {a} is cheaper). *winner*: the higher success",
        "rate where its interval excludes 0, else the cheaper where the ratio's interval excludes 1, else a tie",
        "(`bench/reports/compare.py`).",
        "",
    ]
    if not w["problems"]:
        return lines + [f"No problem has evaluated runs of both {a} and {b}.", ""]
    steps_differ = h2h.groupby("problem")["steps"].nunique().gt(1).any()
    lines += [f"| problem | success {a} / {b} | success difference [95% CI] | cost {a} / {b} | "
              "cost ratio [95% CI] | winner |", "|---|---:|---:|---:|---:|---|"]
    for _, r in h2h.iterrows():
        name = r["problem"] + (f" ({r['steps']} steps)" if steps_differ else "")
        diff = (f"{_signed_pct(r['success_diff'])} [{_signed_pct(r['diff_lo'])}, {_signed_pct(r['diff_hi'])}]"
                if not math.isnan(r["diff_lo"]) else _signed_pct(r["success_diff"]))
        ratio = "–" if math.isnan(r["cost_ratio"]) else (
            f"{r['cost_ratio']:.3g}" + ("" if math.isnan(r["ratio_lo"]) else
                                        f" [{r['ratio_lo']:.3g}, {r['ratio_hi']:.3g}]"))
        winner = r["winner"] + (f" ({r['decided_by']})" if r["decided_by"] else "")
        lines.append(f"| {name} | {lb._fmt_pct(r['success_a'])} / {lb._fmt_pct(r['success_b'])} | {diff} | "
                     f"{_num(r['cost_a'])} / {_num(r['cost_b'])} | {ratio} | {winner} |")
    lines += ["", f"Overall: {a} wins {w['wins_a']} of {w['problems']} problems ({100 * w['win_rate_a']:.0f}%), "
                  f"{b} wins {w['wins_b']} ({100 * w['win_rate_b']:.0f}%), {w['ties']} ties."
                  + (f" Figure: `{plot}`." if plot else ""), ""]
    return lines


def write_plot(h2h: pd.DataFrame, a: str, b: str, path: str | pathlib.Path) -> pathlib.Path:
    """Forest plot: per problem, the success difference (left) and the cost ratio (right, log scale)
    with their 95% intervals, coloured by the winner; the lines of no difference at 0 and 1."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bench.reports import save_figure

    n = max(len(h2h), 1)
    fig, (ax_d, ax_r) = plt.subplots(1, 2, figsize=(10, 1.2 + 0.4 * n), sharey=True)
    colors = {a: "tab:blue", b: "tab:orange", TIE: "0.5"}
    short = lb._short_names(list(h2h["problem"].unique()))
    y = np.arange(len(h2h))[::-1]
    for yi, (_, r) in zip(y, h2h.iterrows()):
        c = colors[r["winner"]]
        lo, hi = r["diff_lo"], r["diff_hi"]
        ax_d.plot([100 * r["success_diff"]], [yi], "o", color=c)
        if not math.isnan(lo):
            ax_d.plot([100 * lo, 100 * hi], [yi, yi], "-", color=c, lw=2)
        if not math.isnan(r["cost_ratio"]):
            ax_r.plot([r["cost_ratio"]], [yi], "o", color=c)
            if not math.isnan(r["ratio_lo"]):
                ax_r.plot([r["ratio_lo"], r["ratio_hi"]], [yi, yi], "-", color=c, lw=2)
    ax_d.axvline(0.0, color="k", lw=0.8)
    ax_r.axvline(1.0, color="k", lw=0.8)
    ax_r.set_xscale("log")
    from matplotlib.ticker import FuncFormatter, NullFormatter

    ax_r.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: f"{x:g}"))
    ax_r.xaxis.set_minor_formatter(NullFormatter())
    ax_d.set_yticks(y, [short[p] for p in h2h["problem"]])
    ax_d.set_xlabel(f"success {a} - {b} (percentage points)")
    ax_r.set_xlabel(f"cost ratio {a} / {b} (gradient-equivalents)")
    for name, c in colors.items():
        ax_r.plot([], [], "o-", color=c, label=f"{name} wins" if name != TIE else "tie")
    ax_r.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=9)
    w = win_rates(h2h, a, b)
    fig.suptitle(f"{a} vs {b}: {a} wins {w['wins_a']}, {b} wins {w['wins_b']}, {w['ties']} ties "
                 f"of {w['problems']} problems (95% bootstrap intervals)", fontsize=11)
    return save_figure(fig, path, tight=True)


def plot_name(a: str, b: str) -> str:
    return f"head_to_head_{a}_vs_{b}.png"
