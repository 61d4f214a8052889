"""Figures of the curvature along the way (cells run with the ``curvature`` flag).

Per problem, two panels over the held-out runs at each optimizer's chosen hyperparameters:

* lambda_min of the Hessian against the loss, one line per optimizer (its median run over the
  logged steps; the loss axis reversed, so time runs left to right as the loss falls): does an
  optimizer leave the saddle region because of the negative curvature it meets (Dauphin et al.
  2014), and where does lambda_min turn positive?
* the sharpness lambda_max against the step for the methods with a learning rate eta, each with
  its stability threshold 2/eta dashed (gradient descent on a quadratic diverges once
  lambda_max > 2/eta; Cohen, Kaur, Li, Kolter and Talwalkar 2021, "Gradient descent on neural
  networks typically occurs at the edge of stability").
"""

from __future__ import annotations

import pathlib
import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from bench import schema as S  # noqa: E402
from bench.reports import save_figure  # noqa: E402


def median_paths(df: pd.DataFrame, keep: pd.DataFrame) -> pd.DataFrame:
    """Per (problem, optimizer, step): the median over the ``keep`` runs (columns problem,
    optimizer, hp_index, seed) of the loss, lambda_min, lambda_max and Hessian index."""
    key = [S.PROBLEM, S.OPTIMIZER, S.HP_INDEX, S.SEED]
    rows = df.merge(keep[key].drop_duplicates(), on=key, how="inner")
    cols = [S.LOSS, S.LAMBDA_MIN, S.LAMBDA_MAX, S.HESSIAN_INDEX]
    out = rows.groupby([S.PROBLEM, S.OPTIMIZER, S.STEP], observed=True)[cols].median().reset_index()
    lr = rows.groupby([S.PROBLEM, S.OPTIMIZER], observed=True)
    if S.HP_PREFIX + "learning_rate" in rows:
        eta = lr[S.HP_PREFIX + "learning_rate"].first().rename("eta").reset_index()
        out = out.merge(eta, on=[S.PROBLEM, S.OPTIMIZER], how="left")
    return out


def write_problem(paths: pd.DataFrame, problem: str, path: str | pathlib.Path) -> pathlib.Path:
    """The two panels (module docstring) of ``problem`` from ``median_paths``'s frame."""
    g = paths[paths[S.PROBLEM] == problem]
    names = sorted(g[S.OPTIMIZER].astype(str).unique())
    colors = dict(zip(names, sns.color_palette("tab10" if len(names) <= 10 else "tab20", len(names))))
    thresholds = []
    with sns.axes_style("whitegrid"), sns.plotting_context("notebook"):
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(14, 5.2))
        for name in names:
            h = g[g[S.OPTIMIZER] == name].sort_values(S.STEP)
            ax1.plot(h[S.LOSS], h[S.LAMBDA_MIN], marker=".", ms=4, lw=1.4, color=colors[name], label=name)
            ax2.plot(h[S.STEP], h[S.LAMBDA_MAX], lw=1.4, color=colors[name], label=name)
            eta = h["eta"].iloc[0] if "eta" in h else np.nan
            if np.isfinite(eta) and eta > 0:
                ax2.axhline(2.0 / eta, color=colors[name], lw=1.0, ls="--", alpha=0.7)
                thresholds.append(2.0 / eta)
        ax1.axhline(0.0, color="0.3", lw=1.0)
        loss = g[S.LOSS].to_numpy(np.float64)
        f_lo, f_hi = np.nanmin(loss), np.nanmax(loss)
        if f_lo > 0 and f_hi / max(f_lo, 1e-300) > 100:
            ax1.set_xscale("log")
        ax1.invert_xaxis()
        ax1.set_xlabel("full loss (decreasing: time runs left to right)")
        ax1.set_ylabel("λ_min of the Hessian")
        ax1.set_title("Negative curvature met on the way (median run)", fontsize=11)
        ax2.set_xlabel("step")
        ax2.set_ylabel("λ_max of the Hessian (sharpness)")
        ax2.set_title("Sharpness; dashed: 2/η of the methods with a learning rate", fontsize=11)
        lam_max = g[S.LAMBDA_MAX].to_numpy(np.float64)
        top = np.nanmax(lam_max) if np.isfinite(lam_max).any() else 1.0
        if thresholds and min(thresholds) < 10 * top:  # show the nearest threshold unless it is far above
            top = max(top, min(thresholds))
        ax2.set_ylim(min(0.0, np.nanmin(lam_max)), 1.15 * top)
        ax2.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False, title="optimizer")
        fig.suptitle("\n".join(textwrap.wrap(f"Curvature along the trajectories: {problem}", 110)), fontsize=12)
        return save_figure(fig, path, tight=True)


def file_name(problem: str) -> str:
    return "curvature_" + "".join(c if c.isalnum() else "_" for c in problem.split("(")[0]) + ".png"


def write(df: pd.DataFrame, keep: pd.DataFrame, plot_dir: str | pathlib.Path) -> list[pathlib.Path]:
    """One figure per problem that has curvature columns; ``keep`` the runs to draw (e.g. the
    leaderboard's evaluated runs)."""
    if S.LAMBDA_MIN not in df:
        return []
    df = df[df[S.LAMBDA_MIN].notna()]
    if df.empty:
        return []
    paths = median_paths(df, keep)
    plot_dir = pathlib.Path(plot_dir)
    names = sorted(paths[S.PROBLEM].astype(str).unique())
    short = {p: file_name(p) for p in names}
    if len(set(short.values())) < len(names):  # two instances of a family: name them in full
        short = {p: "curvature_" + "".join(c if c.isalnum() else "_" for c in p) + ".png" for p in names}
    return [write_problem(paths, p, plot_dir / short[p]) for p in names]
