"""The leaderboard: per problem, per optimizer, how often, how fast and at what cost.

Selection is honest: where a cell holds several hyperparameter points, each optimizer's point
is chosen on the tuning seeds (the first half of the cell's seeds, in order) by success rate,
then median steps to target, then median final loss; every number in the table is then
computed on the held-out seeds (the other half) only. A cell with one point reports all seeds.

Columns:
  success: fraction of held-out runs that end at or below ``f_target`` (status converged),
    with its Wilson 95% interval.
  steps: median [IQR] of the first step at the target, over successful runs.
  grads / HVPs / values: median oracle calls spent to reach the target (successful runs).
  gap: median final ``full_loss - f_star`` over all held-out runs.
  seconds: median wall seconds per run (the cell's compiled run time over its runs).
  statuses: counts of converged / diverged / stalled at a saddle / stalled at another
    minimum / budget exhausted.
"""

from __future__ import annotations

import math
import pathlib

import numpy as np
import pandas as pd

import optimizers
from bench import schema as S

STATUS_ABBREV = {
    S.CONVERGED: "conv",
    S.DIVERGED: "div",
    S.STALLED_AT_SADDLE: "saddle",
    S.STALLED_AT_MINIMUM: "min",
    S.BUDGET_EXHAUSTED: "budget",
}


def wilson(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (Wilson 1927)."""
    if n == 0:
        return (math.nan, math.nan)
    p = successes / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (max(0.0, centre - half), min(1.0, centre + half))


def _split_seeds(seeds: np.ndarray) -> tuple[set, set]:
    s = sorted(set(seeds.tolist()))
    half = len(s) // 2
    return set(s[:half]), set(s[half:])


def _score(runs: pd.DataFrame) -> tuple:
    ok = runs[S.STATUS] == S.CONVERGED
    steps = np.where(ok, runs[S.HIT_STEP], np.inf)
    final = runs[S.FINAL_LOSS].fillna(np.inf)
    return (-ok.mean(), float(np.median(steps)), float(np.median(final)))


def _q(x: pd.Series, q: float) -> float:
    return float(np.quantile(x, q)) if len(x) else math.nan


def selection(runs: pd.DataFrame) -> dict[tuple, tuple[int, set, str]]:
    """(problem, optimizer, steps) -> (chosen hp_index, held-out seeds, how it was chosen)."""
    out = {}
    for key, g in runs.groupby([S.PROBLEM, S.OPTIMIZER, S.STEPS], sort=True):
        n_points = g[S.HP_INDEX].nunique()
        if n_points > 1 and g[S.SEED].nunique() >= 2:
            tune, held = _split_seeds(g[S.SEED].to_numpy())
            scores = {i: _score(p[p[S.SEED].isin(tune)]) for i, p in g.groupby(S.HP_INDEX)}
            best = min(scores, key=lambda i: scores[i])
            out[key] = (int(best), held, f"best of {n_points} on {len(tune)} tuning seeds")
        else:
            out[key] = (int(g[S.HP_INDEX].iloc[0]), set(g[S.SEED].tolist()), "single point")
    return out


def table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (problem, optimizer, steps): the leaderboard numbers (see module doc)."""
    runs = S.summarize(df)
    # plain object columns: the per-group boolean selections below are ~100x cheaper than on
    # pyarrow-backed strings
    runs = runs.astype({c: object for c in runs.columns if pd.api.types.is_string_dtype(runs[c])})
    hp_cols = [S.HP_INDEX] + S.hp_columns(runs.columns)  # the chosen point and its values
    chosen = selection(runs)
    rows = []
    for (problem, optimizer, steps), g in runs.groupby([S.PROBLEM, S.OPTIMIZER, S.STEPS], sort=True):
        best, held, how = chosen[(problem, optimizer, steps)]
        ev = g[(g[S.HP_INDEX] == best) & g[S.SEED].isin(held)]
        ok = ev[ev[S.STATUS] == S.CONVERGED]
        n, k = len(ev), len(ok)
        lo, hi = wilson(k, n)
        row = {
            "problem": problem,
            "optimizer": optimizer,
            "steps_budget": int(steps),
            "runs": n,
            "success": k / n if n else math.nan,
            "success_lo": lo,
            "success_hi": hi,
            "steps_median": _q(ok[S.HIT_STEP], 0.5),
            "steps_q25": _q(ok[S.HIT_STEP], 0.25),
            "steps_q75": _q(ok[S.HIT_STEP], 0.75),
            "grads_median": _q(ok[S.HIT_GRADS], 0.5),
            "hvps_median": _q(ok[S.HIT_HVPS], 0.5),
            "values_median": _q(ok[S.HIT_VALUES], 0.5),
            "gap_median": float(np.median(ev[S.FINAL_GAP])) if n else math.nan,
            "final_loss_median": float(np.median(ev[S.FINAL_LOSS])) if n else math.nan,
            "run_seconds_median": float(np.median(ev[S.RUN_S_AMORTIZED])) if n else math.nan,
            "selection": how,
        }
        for s in S.STATUSES:
            row[f"n_{s}"] = int((ev[S.STATUS] == s).sum())
        for c in hp_cols:
            vals = ev[c].dropna().unique()
            row[c] = vals[0] if len(vals) else math.nan
        rows.append(row)
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    out["_steps_key"] = out["steps_median"].fillna(np.inf)
    out = out.sort_values([S.PROBLEM, "success", "_steps_key", "gap_median"],
                          ascending=[True, False, True, True]).drop(columns="_steps_key")
    return out.reset_index(drop=True)


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


def markdown(tab: pd.DataFrame, runs_frame: pd.DataFrame) -> str:
    """The leaderboard as Markdown: provenance, a success matrix, one table per problem."""
    lines = ["# Leaderboard", ""]
    if tab.empty:
        return "\n".join(lines + ["No results yet: run `python -m bench run --suite quick`.", ""])
    prov = runs_frame.iloc[0]
    commits = sorted(set(runs_frame["git_commit"].dropna().astype(str))) if "git_commit" in runs_frame else []
    lines += [
        f"Backend **{prov.get('backend', '?')}** ({prov.get('device_kind', '?')} x{prov.get('device_count', '?')}), "
        f"jax {prov.get('jax_version', '?')}, optax {prov.get('optax_version', '?')}, "
        f"flax {prov.get('flax_version', '?')}; commit {', '.join(c[:12] for c in commits) or 'unknown'}; "
        f"{len(runs_frame.groupby(['cell_key']))} cells, newest written {runs_frame['utc_time'].max()}.",
        "",
        "How to read it: each optimizer's hyperparameters are chosen on the tuning seeds (first half)",
        "and every number below is measured on the held-out seeds (second half). *success*: share of",
        "held-out runs ending at or below the problem's target value, with its Wilson 95% interval.",
        "*steps*, *grads*, *HVPs*, *values*: medians over successful runs of the first step at the",
        "target and of the oracle calls (gradients, Hessian-vector products, function values) spent",
        "to get there ([IQR] for steps). *gap*: median final loss minus the known optimum f* (float32:",
        "a gap of -1e-5 at |f*| = 700 is round-off). *s/run*: median wall seconds per run. *end*: how",
        "runs ended (conv / div = diverged / saddle = stalled at a saddle / min = stalled at a",
        "non-target minimum / budget = still moving).",
        "",
        "## Success rate by problem",
        "",
    ]
    pivot = tab.pivot_table(index="optimizer", columns="problem", values="success", aggfunc="first")
    probs = list(pivot.columns)
    short = {p: p.split("(")[0] for p in probs}
    if len(set(short.values())) < len(probs):
        short = {p: p for p in probs}
    pivot = pivot.assign(_mean=pivot.mean(axis=1)).sort_values("_mean", ascending=False)
    lines.append("| optimizer | " + " | ".join(short[p] for p in probs) + " | mean |")
    lines.append("|---|" + "---:|" * (len(probs) + 1))
    for opt, r in pivot.iterrows():
        cells = [_fmt_pct(r[p]) for p in probs]
        lines.append(f"| {opt} | " + " | ".join(cells) + f" | {_fmt_pct(r['_mean'])} |")
    lines.append("")
    for problem, g in tab.groupby(S.PROBLEM, sort=True):
        g0 = g.iloc[0]
        ref = runs_frame[runs_frame[S.PROBLEM] == problem].iloc[0]
        f_star = ref[S.F_STAR]
        lines += [
            f"## {problem}",
            "",
            f"f* = {_fmt_num(f_star, 7)}, target f <= {_fmt_num(ref[S.F_TARGET], 7)}, "
            f"budget {int(g0['steps_budget'])} steps, {int(g0['runs'])} held-out runs per optimizer "
            f"({g0['selection']}).",
            "",
            "| optimizer | hparams | success [95% CI] | steps [IQR] | grads | HVPs | values | gap | s/run | end |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for _, r in g.iterrows():
            steps = "–" if math.isnan(r["steps_median"]) else (
                f"{_fmt_num(r['steps_median'])} [{_fmt_num(r['steps_q25'])}, {_fmt_num(r['steps_q75'])}]")
            end = " ".join(f"{STATUS_ABBREV[s]} {r[f'n_{s}']}" for s in S.STATUSES if r[f"n_{s}"])
            lines.append(
                f"| {r['optimizer']} | {_hp_text(r)} | {_fmt_pct(r['success'])} "
                f"[{_fmt_pct(r['success_lo'])}, {_fmt_pct(r['success_hi'])}] | {steps} | "
                f"{_fmt_num(r['grads_median'])} | {_fmt_num(r['hvps_median'])} | {_fmt_num(r['values_median'])} | "
                f"{_fmt_num(r['gap_median'])} | {_fmt_num(r['run_seconds_median'], 2)} | {end} |"
            )
        lines.append("")
    return "\n".join(lines)


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


def write(df: pd.DataFrame, out_dir: str | pathlib.Path, failures: dict | None = None
          ) -> tuple[pathlib.Path, pathlib.Path]:
    """Write ``LEADERBOARD.md`` and ``leaderboard.csv`` into ``out_dir``; return their paths."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tab = table(df) if not df.empty else pd.DataFrame()
    md = out_dir / "LEADERBOARD.md"
    csv = out_dir / "leaderboard.csv"
    md.write_text(markdown(tab, df) + "\n" + failures_markdown(failures or {}))
    tab.to_csv(csv, index=False)
    return md, csv
