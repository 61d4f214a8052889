"""Convergence plots: per problem, the median gap to f* (IQR band) against steps and against
the cost spent in gradient-equivalents (``bench.cost``), one line per optimizer at its selected
hyperparameters on held-out seeds."""

from __future__ import annotations

import pathlib
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from bench import cost as costs  # noqa: E402
from bench import schema as S  # noqa: E402
from bench.reports.leaderboard import problem_weights, selection  # noqa: E402


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")


# the columns ``write`` reads of ``selected_curves``' frame (besides the two it adds)
_PLOT_COLUMNS = [S.PROBLEM, S.OPTIMIZER, S.STEP, S.LOSS, S.F_STAR, S.F_TARGET, S.N_VALUES, S.N_GRADS, S.N_HVPS]


def selected_curves(df: pd.DataFrame, columns: list[str] | None = None) -> pd.DataFrame:
    """The logged rows of each optimizer's selected point on its held-out seeds; ``columns``: only
    these of ``df``'s columns (and the run keys), else every one."""
    chosen = selection(S.summarize(df))
    keys = [S.PROBLEM, S.OPTIMIZER, S.STEPS, S.HP_INDEX, S.SEED]
    wanted = pd.MultiIndex.from_tuples(
        [(problem, optimizer, steps, best, seed)
         for (problem, optimizer, steps), (best, held, _) in chosen.items() for seed in held], names=keys)
    if columns is not None:  # rows are taken from fewer columns (the text ones cost most)
        df = df[[c for c in df.columns if c in keys or c in columns]]
    out = df[pd.MultiIndex.from_frame(df[keys]).isin(wanted)].reset_index(drop=True)
    floor = 1e-12
    gap = out[S.LOSS] - out[S.F_STAR].fillna(out.groupby(S.PROBLEM)[S.LOSS].transform("min"))
    out["gap"] = np.maximum(gap.to_numpy(), floor)
    spent = np.zeros(len(out))
    for problem, idx in out.groupby(S.PROBLEM, observed=True, sort=False).indices.items():
        w = problem_weights(problem) or costs.Weights(value=1.0, hvp=1.0, grad_flops=np.nan)
        r = out.iloc[idx]
        spent[idx] = costs.gradient_equivalents(r[S.N_VALUES], r[S.N_GRADS], r[S.N_HVPS], w)
    out["oracle_cost"] = spent  # gradient-equivalents spent so far (bench.cost)
    return out


def write(df: pd.DataFrame, out_dir: str | pathlib.Path) -> list[pathlib.Path]:
    """One PNG per problem: median gap (IQR band) vs steps, and median gap vs gradient+HVP calls."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    curves = selected_curves(df, columns=_PLOT_COLUMNS)
    paths = []
    sns.set_theme(style="whitegrid", context="notebook")
    for problem, g in curves.groupby(S.PROBLEM, observed=True):
        fig, axes = plt.subplots(1, 2, figsize=(13, 4.8), sharey=True)
        order = sorted(g[S.OPTIMIZER].unique())
        palette = dict(zip(order, sns.color_palette("tab20", len(order))))
        by = g.groupby([S.OPTIMIZER, S.STEP], observed=True)
        stats = pd.DataFrame({"gap": by["gap"].median(), "lo": by["gap"].quantile(0.25),
                              "hi": by["gap"].quantile(0.75), "cost": by["oracle_cost"].median()}).reset_index()
        for opt in order:
            d = stats[stats[S.OPTIMIZER] == opt]
            color = palette[opt]
            axes[0].plot(d[S.STEP], d["gap"], color=color, lw=1.5, label=opt)
            axes[0].fill_between(d[S.STEP], d["lo"], d["hi"], color=color, alpha=0.15, lw=0)
            # against the median cost at each logged step (gradient-equivalents spent so far)
            axes[1].plot(np.maximum(d["cost"], 1), d["gap"], color=color, lw=1.5, label=opt)
        for ax in axes:
            ax.set_yscale("log")
        axes[0].set_xlabel("step")
        axes[1].set_xscale("log")
        axes[1].set_xlabel("gradient-equivalents spent (median over runs)")
        has_star = g[S.F_STAR].notna().any()
        axes[0].set_ylabel("loss - f*" if has_star else "loss - best seen")
        target_gap = float(g[S.F_TARGET].iloc[0] - (g[S.F_STAR].iloc[0] if has_star else g[S.LOSS].min()))
        if target_gap > 0:
            for ax in axes:
                ax.axhline(target_gap, color="k", ls=":", lw=1)
        axes[1].legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
        fig.suptitle(f"{problem} (median and IQR over held-out seeds; dotted: target)", fontsize=10)
        fig.tight_layout()
        path = out_dir / f"{_slug(problem)}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths
