"""``python -m bench census``: the spin glass's critical points, and where the optimizers end among them.

Runs ``bench.census.run`` on one instance (index fraction against energy per spin, with the
theory curve F(u / E_inf)), and, where the results store holds cells of that instance, re-runs
each optimizer's reported runs (the leaderboard's chosen hyperparameter point on the held-out
seeds, through the same compiled program as the stored cell: ``bench.runner.end_points``) to place
their end points on the same picture (``bench.census.place``: energy, Riemannian gradient norm,
index). Writes ``<results>/census/`` : ``census.csv`` (the critical points), ``agreement.csv``
(per energy bin: census against theory), ``end_points.csv``, ``CENSUS_<instance>.md`` (the section
``python -m bench report`` includes) and ``plots/census_<instance>.png``; returns the Markdown lines.
"""

from __future__ import annotations

import pathlib

import numpy as np
import pandas as pd

import problems
from bench import census
from bench import schema as S
from problems.spin_glass import threshold_energy


def optimizer_end_points(df: pd.DataFrame, problem: problems.Problem) -> pd.DataFrame:
    """The held-out end points of each optimizer's chosen point on ``problem``, placed on the census."""
    from bench.reports import leaderboard
    from bench.runner import end_points

    df = df[df[S.PROBLEM].astype(str) == problem.name]
    if df.empty:
        return pd.DataFrame()
    runs = leaderboard.with_costs(df)
    chosen = leaderboard.selection(runs)
    ev = leaderboard.evaluated_runs(runs, chosen)
    frames = []
    for (optimizer, steps), g in ev.groupby([S.OPTIMIZER, S.STEPS], sort=True):
        hp_cols = S.hp_columns(g.columns)
        point = {c[len(S.HP_PREFIX):]: g[c].iloc[0] for c in hp_cols if pd.notna(g[c].iloc[0])}
        point = {k: (v.item() if hasattr(v, "item") else v) for k, v in point.items()}
        log_every = int(df.loc[df[S.OPTIMIZER] == optimizer, S.LOG_EVERY].iloc[0])
        seeds = sorted(int(s) for s in g[S.SEED])
        x = end_points(problem, optimizer, [point], seeds, int(steps), log_every)
        placed = census.place(problem, np.asarray(x)[0])
        frames.append(placed.assign(optimizer=optimizer, seed=seeds))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def run(results: str | pathlib.Path, p: int = 3, n: int = 30, instance: int = 0, starts: int = 256,
        key: int = 0, end_points: bool = True) -> list[str]:
    """The census of ``spin_glass(p, n, instance)`` and the optimizers' end points (module doc)."""
    from bench.reports import landscape_plots
    from bench.store import Store

    problem = problems.get("spin_glass", p=p, n=n, instance=instance)
    out = pathlib.Path(results) / "census"
    out.mkdir(parents=True, exist_ok=True)
    ends = pd.DataFrame()
    if end_points:
        df = Store(results).load_all()
        if not df.empty:
            ends = optimizer_end_points(df, problem)
    tag = f"p{p}_n{n}_instance{instance}"
    fig, crit = landscape_plots.census_figure(pathlib.Path(results) / "plots" / f"census_{tag}.png", p, n, instance,
                                              starts, key, end_points=ends if len(ends) else None)
    crit.drop(columns=["point"], errors="ignore").to_csv(out / f"census_{tag}.csv", index=False)
    agree = census.agreement(crit, p, n)
    agree.to_csv(out / f"agreement_{tag}.csv", index=False)
    if len(ends):
        ends.to_csv(out / f"end_points_{tag}.csv", index=False)
    lines = markdown(problem, crit, agree, ends, fig.name, starts)
    (out / f"CENSUS_{tag}.md").write_text("\n".join(lines) + "\n")  # the report includes it
    return lines


def markdown(problem, crit: pd.DataFrame, agree: pd.DataFrame, ends: pd.DataFrame, figure: str,
             starts: int) -> list[str]:
    p = int(problem.params["p"])
    e_inf = threshold_energy(p)
    lines = [
        f"### Critical points of {problem.name}",
        "",
        f"{len(crit)} distinct critical points from {starts} starts (`bench.census`: gradient descent for a random",
        "number of steps, then Newton's method on the gradient, float64; index from the Riemannian Hessian). Theory:",
        "the index fraction at energy u is F(u / E_inf), F(t) = 1/2 + (t sqrt(1 - t^2) + arcsin t) / pi",
        f"(Auffinger, Ben Arous and Cerny 2013; E_inf = {e_inf:.6f}). Figure: `plots/{figure}`.",
        "",
        "| energy bin (mean) | points | index fraction | theory F | finite-N Kac-Rice |",
        "|---:|---:|---:|---:|---:|",
    ]
    for _, r in agree.iterrows():
        lines.append(f"| {r['energy']:.4f} | {int(r['count'])} | {r['index_fraction']:.3f} "
                     f"| {r['theory']:.3f} | {r['kac_rice']:.3f} |")
    if len(ends):
        lines += ["", "Where the optimizers' held-out runs end (energy per spin, Hessian index at the end point):", "",
                  "| optimizer | runs | median energy | lowest energy | at a minimum (index 0) | median index |",
                  "|---|---:|---:|---:|---:|---:|"]
        for opt, g in ends.groupby("optimizer", sort=True):
            lines.append(f"| {opt} | {len(g)} | {g['energy'].median():.4f} | {g['energy'].min():.4f} | "
                         f"{(g['index'] == 0).mean():.0%} | {g['index'].median():.0f} |")
    return lines + [""]
