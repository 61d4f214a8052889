"""The leaderboard as LaTeX tables for a paper: ``results/leaderboard.tex``.

Booktabs tables (``\\toprule``, ``\\midrule``, ``\\bottomrule``) written by pandas' Styler
(``Styler.to_latex(hrules=True)``): the scores across problems, and one table per problem with
success rate, cost to target, steps, final gap and seconds per run, each interval written
``a [lo, hi]``. The best value of each column is in bold (every value equal to it: ties are all
bold; a column whose values are all equal has none). Each caption states the protocol
(hyperparameters chosen on tuning seeds, numbers on held-out seeds, what the intervals are) and
the budgets. The file is a fragment: ``\\input`` it
in a document that loads ``booktabs``; names are escaped for LaTeX (``cubic\\_reg``).
"""

from __future__ import annotations

import math
import pathlib

import numpy as np
import pandas as pd

from bench import schema as S
from bench.reports import leaderboard as lb

_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
            "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "τ": r"$\tau$", "–": "--",
            "∞": r"$\infty$", "≤": r"$\le$"}
BOLD = "textbf:--rwrap;"


def escape(text: str) -> str:
    """``text`` with LaTeX's special characters escaped (and τ, –, ∞ as LaTeX)."""
    return "".join(_ESCAPES.get(ch, ch) for ch in str(text))


def _num(x: float, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "--"
    if math.isinf(x):
        return r"$\infty$"
    return escape(lb._fmt_num(x, digits))


def _fixed(x: float) -> str:
    """A score to three decimals; ``--`` where it is undefined."""
    return "--" if x is None or math.isnan(x) else f"{x:.3f}"


def _pct(x: float) -> str:
    """A share in percent (points), to the unit: 0.99999 -> 100."""
    s = f"{100 * x:.0f}"
    return "0" if s == "-0" else s


def _interval(x: float, lo: float, hi: float, fmt=_num) -> str:
    """``a [lo, hi]``; ``a`` alone where the interval is undefined."""
    if x is None or math.isnan(x):
        return "--"
    if lo is None or hi is None or math.isnan(lo) or math.isnan(hi):
        return fmt(x)
    return f"{fmt(x)} [{fmt(lo)}, {fmt(hi)}]"


def _best_mask(values: pd.DataFrame, better: dict[str, str]) -> np.ndarray:
    """True where a value equals its column's best (``better[col]``: "max" or "min"; NaN never); a
    column whose values are all equal has no best and nothing bold."""
    mask = np.zeros(values.shape, bool)
    for j, col in enumerate(values.columns):
        how = better.get(col)
        v = pd.to_numeric(values[col], errors="coerce").to_numpy(np.float64)
        if how is None or np.unique(v[~np.isnan(v)]).size < 2:
            continue
        best = np.nanmax(v) if how == "max" else np.nanmin(v)
        mask[:, j] = v == best
    return mask


def _styled(text: pd.DataFrame, values: pd.DataFrame, better: dict[str, str], caption: str, label: str) -> str:
    """``text`` (LaTeX cells, first column the row names) as a booktabs table, the best values bold."""
    from pandas.io.formats.style import Styler

    mask = _best_mask(values, better)
    styler = Styler(text, escape=None).hide(axis="index")
    styler = styler.apply(lambda _: np.where(mask, BOLD, ""), axis=None)
    return styler.to_latex(hrules=True, caption=caption, label=label, position_float="centering",
                           column_format="l" + "r" * (text.shape[1] - 1))


def scores_table(ov: dict) -> str | None:
    """The scores across problems (``leaderboard.overall``'s summary), or None where nothing was scored."""
    summary = ov.get("summary")
    if summary is None or summary.empty:
        return None
    n_prob = int(ov["n_problems"]["n"].iloc[0])
    values = pd.DataFrame({
        "optimizer": list(summary.index),
        "score (gradient-equivalents)": summary["score_cost"].to_numpy(),
        "score (seconds)": summary["score_seconds"].to_numpy(),
        "solved": summary["solved"].to_numpy(),
        "mean success (%)": 100 * summary["success_mean"].to_numpy(),
    })
    text = pd.DataFrame({
        "optimizer": [escape(o) for o in summary.index],
        "score (gradient-equivalents)": [_fixed(v) for v in summary["score_cost"]],
        "score (seconds)": [_fixed(v) for v in summary["score_seconds"]],  # NaN: stores from several devices
        "solved": [f"{int(v)}/{n_prob}" for v in summary["solved"]],
        "mean success (%)": [f"{100 * v:.0f}" for v in summary["success_mean"]],
    })
    text.columns = [escape(c) for c in text.columns]
    values.columns = text.columns
    better = {c: "max" for c in text.columns[1:]}
    caption = escape(
        f"AlgoPerf performance-profile score (Dahl et al. 2023) over the {n_prob} problem{'s' * (n_prob != 1)} on "
        "which some held-out run reached the target: per problem, each optimizer's median cost to target over its "
        "held-out runs (infinite when half or more fail) divided by the best optimizer's, the profile integrated "
        "over ratios 1 to 4 and normalised to [0, 1]. Hyperparameters chosen per cell on the tuning seeds (by "
        "success, then median cost, then final loss); all numbers on the held-out seeds. Solved: problems whose "
        "median held-out run reached the target. Bold: best in column.")
    return _styled(text, values, better, caption, "tab:scores")


def problem_table(problem: str, g: pd.DataFrame, ref: pd.Series) -> str:
    """One problem's rows of ``leaderboard.table`` as a booktabs table."""
    g = g.reset_index(drop=True)
    values = pd.DataFrame({
        "optimizer": g["optimizer"],
        "success (%)": 100 * g["success"],
        "cost": g["cost_median"],
        "steps": g["steps_median"],
        "gap": g["gap_median"],
        "s/run": g["run_seconds_median"],
    })
    text = pd.DataFrame({
        "optimizer": [escape(o) for o in g["optimizer"]],
        "success (%)": [_interval(r["success"], r["success_lo"], r["success_hi"], _pct)
                        for _, r in g.iterrows()],
        "cost": [_interval(r["cost_median"], r["cost_lo"], r["cost_hi"]) for _, r in g.iterrows()],
        "steps": [_num(v) for v in g["steps_median"]],
        "gap": [_num(v) for v in g["gap_median"]],
        "s/run": [_num(v, 2) for v in g["run_seconds_median"]],
    })
    text.columns = [escape(c) for c in text.columns]
    values.columns = text.columns
    better = dict(zip(text.columns[1:], ["max", "min", "min", "min", "min"]))
    g0 = g.iloc[0]
    how = (f"{escape(g0['selection'])} (by success, then median cost to target, then median final loss)"
           if str(g0["selection"]).startswith("best of") else "a single point, every seed reported")
    f_star = ref.get(S.F_STAR, math.nan)
    caption = (
        f"{escape(problem)}: budget {int(g0['steps_budget'])} steps, {int(g0['runs'])} held-out runs per "
        f"optimizer; hyperparameters: {how}. Success: share of held-out runs ending at or below the target "
        f"f $\\le$ {_num(float(ref[S.F_TARGET]), 7)}"
        + ("" if f_star is None or math.isnan(f_star) else f" (f* = {_num(float(f_star), 7)})")
        + ", with its Wilson 95\\% interval. Cost: median gradient-equivalents to the target over successful runs "
        "(a function value and a Hessian-vector product weighted by their flop count relative to a gradient), "
        "with a bootstrap 95\\% interval of the median. Steps: median first step at the target; gap: median final "
        "loss minus f*; s/run: median wall seconds per run. Bold: best in column.")
    label = "tab:" + "".join(c if c.isalnum() else "-" for c in problem.split("(")[0]).strip("-")
    return _styled(text, values, better, caption, label)


def head_to_head_table(h2h: pd.DataFrame, a: str, b: str) -> str:
    """The head-to-head rows (``compare.head_to_head``) as a booktabs table (no bold: the winner column says)."""
    from bench.reports import compare

    w = compare.win_rates(h2h, a, b)
    text = pd.DataFrame({
        "problem": [escape(p.split("(")[0]) for p in h2h["problem"]],
        f"success difference {a} - {b} (points)": [
            _interval(r["success_diff"], r["diff_lo"], r["diff_hi"], _pct) for _, r in h2h.iterrows()],
        f"cost ratio {a} / {b}": [_interval(r["cost_ratio"], r["ratio_lo"], r["ratio_hi"]) for _, r in h2h.iterrows()],
        "winner": [escape(x) for x in h2h["winner"]],
    })
    text.columns = [escape(c) for c in text.columns]
    caption = escape(
        f"Head to head, {a} against {b}, on the held-out runs at each one's chosen hyperparameters: success "
        "difference in percentage points and the ratio of median costs to target (plus one), with percentile "
        "bootstrap 95% intervals; the winner has the higher success rate where that interval excludes 0, else the "
        f"lower cost where the ratio's excludes 1. {a} wins {w['wins_a']}, {b} wins {w['wins_b']}, "
        f"{w['ties']} ties of {w['problems']} problems.")
    return _styled(text, text, {}, caption, "tab:head-to-head")


def render(tab: pd.DataFrame, ov: dict, df: pd.DataFrame, head_to_head: tuple | None = None) -> str:
    """The whole file: provenance as comments, the scores table, one table per problem, and the
    head-to-head table where ``head_to_head`` = (frame, a, b) is given."""
    prov = df.iloc[0] if not df.empty else pd.Series(dtype=object)
    commits = lb.distinct_text(df, "git_commit")
    parts = [
        "% saddlebench leaderboard: \\input{leaderboard.tex} in a document with \\usepackage{booktabs}",
        f"% backend {prov.get('backend', '?')} ({prov.get('device_kind', '?')} x{prov.get('device_count', '?')}), "
        f"jax {prov.get('jax_version', '?')}, optax {prov.get('optax_version', '?')}, "
        f"flax {prov.get('flax_version', '?')}; commit {', '.join(c[:12] for c in commits) or 'unknown'}; "
        f"newest cell written {df['utc_time'].max() if 'utc_time' in df else '?'}",
        "",
    ]
    if tab.empty:
        return "\n".join(parts + ["% no results yet", ""])
    scores = scores_table(ov)
    if scores:
        parts += [scores]
    first = lb.first_rows(df, S.PROBLEM)
    for problem, g in tab.groupby(S.PROBLEM, sort=True):
        ref = df.iloc[first[problem]]
        parts += [problem_table(problem, g, ref)]
    if head_to_head is not None:
        parts += [head_to_head_table(*head_to_head)]
    return "\n".join(parts)


def write(tab: pd.DataFrame, ov: dict, df: pd.DataFrame, out: str | pathlib.Path,
          head_to_head: tuple | None = None) -> pathlib.Path:
    """Write ``render``'s text to ``out`` (``results/leaderboard.tex``)."""
    out = pathlib.Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(tab, ov, df, head_to_head), encoding="utf-8")
    return out
